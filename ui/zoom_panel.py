"""The zoom panel both result areas share: a centre, a region size, a magnification and a gallery of the
same region of every image (the comparison's outputs, or the posterior's samples and maps)."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ui.inputs import NumberIn, SliderIn


def zoom_panel(holder: SimpleNamespace, gallery_label: str, columns: int, elem_id: str) -> None:
    """The controls (``zx``, ``zy``, ``zsize``, ``zmag``, ``zgo``) and the gallery (``crops``) on ``holder``."""
    with gr.Row():
        holder.zx = NumberIn(None, precision=0, label="centre x (output px)", minimum=0)
        holder.zy = NumberIn(None, precision=0, label="centre y (output px)", minimum=0)
        holder.zsize = SliderIn(8, 256, value=64, step=8, label="region (output px)")
        holder.zmag = SliderIn(1, 8, value=4, step=1, label="magnify (nearest)")
        holder.zgo = gr.Button("Zoom", size="sm")
    holder.crops = gr.Gallery(
        label=gallery_label, columns=columns, format="png", object_fit="contain", height=420, elem_id=elem_id
    )
