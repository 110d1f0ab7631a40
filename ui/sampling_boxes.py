"""The sampling boxes both forms share (the Compare tab's and the posterior explorer's): steps and sampler,
then eta and seed, two to a row."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from sr_models.sampling import SAMPLERS
from ui.inputs import DropdownIn, NumberIn, TextboxIn


def sampling_boxes(
    holder: SimpleNamespace, steps_label: str, sampler_label: str, eta: float, seed_label: str, elem_prefix: str
) -> None:
    """``steps``, ``sampler``, ``eta`` and ``seed`` on ``holder``; their elem_ids are ``elem_prefix`` + the name.

    Number boxes without minimum/maximum: the browser never changes what was typed (1e9 steps, -3, eta 2);
    the handler answers out-of-range values with the same message as the API.
    """
    with gr.Row():
        holder.steps = NumberIn(0, label=steps_label, elem_id=f"{elem_prefix}steps")
        holder.sampler = DropdownIn(["", *SAMPLERS], value="", label=sampler_label)
    with gr.Row():
        holder.eta = NumberIn(eta, step=0.05, label="DDIM eta (0 to 1)", elem_id=f"{elem_prefix}eta")
        holder.seed = TextboxIn("0", label=seed_label, elem_id=f"{elem_prefix}seed")
