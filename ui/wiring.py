"""Wiring that the Compare tab and the posterior explorer share: how a run's outputs line up with the
API, the live estimate, and the zoom panel's events. Only components and events; nothing computes here."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace


def output_components(outputs_class, holder: SimpleNamespace, **renamed) -> list:
    """An endpoint's output components in the API's order: ``outputs_class`` (``CompareOutputs`` or
    ``PosteriorOutputs``) filled with ``holder``'s components of the same names, or ``renamed[name]``
    where the page calls one otherwise. A missing component raises, so a new output cannot go unwired."""
    slots = {f.name: renamed[f.name] if f.name in renamed else getattr(holder, f.name) for f in fields(outputs_class)}
    return outputs_class(**slots).flat()


def wire_estimate(estimate, inputs: list, output) -> None:
    """Refresh ``output`` with ``estimate(*inputs)`` whenever one of the inputs changes.

    Only the last of a burst of changes runs, and without a spinner: the form stays quiet while it is filled in.
    """
    for control in inputs:
        control.change(estimate, inputs, output, api_name=False, trigger_mode="always_last", show_progress="hidden")


def wire_zoom(holder: SimpleNamespace, handlers, views) -> None:
    """The zoom panel on ``holder`` (see ``ui.zoom_panel``): a click on one of ``views`` zooms there; the
    Zoom button, Enter in a centre box and letting go of a slider zoom at the boxes' centre."""
    zoomed = [holder.crops, holder.zx, holder.zy]
    for view in views:
        view.select(handlers.zoom_at, [holder.state, holder.zsize, holder.zmag], zoomed, api_name=False)
    zoom_inputs = [holder.state, holder.zx, holder.zy, holder.zsize, holder.zmag]
    holder.zgo.click(handlers.zoom, zoom_inputs, zoomed, api_name=False)
    for box in (holder.zx, holder.zy):
        box.submit(handlers.zoom, zoom_inputs, zoomed, api_name=False)
    for control in (holder.zsize, holder.zmag):
        control.release(handlers.zoom, zoom_inputs, zoomed, api_name=False)
