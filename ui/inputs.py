"""Components whose value reaches our checks as sent, so bad input gets one plain message from the
handler instead of a conversion error (and a stack trace) inside Gradio.

Each component class is written out with its own ``class`` line: Gradio finds a component's source by
its class statement (to write its ``.pyi``), so the classes cannot be made in a loop."""

from __future__ import annotations

import os

import gradio as gr
from gradio import utils as gradio_utils
from gradio.data_classes import ImageData
from gradio.exceptions import InvalidPathError
from pydantic import ConfigDict, ValidationError, model_validator

UPLOAD_ONLY = "the image must be a file uploaded with the request (gradio_client: handle_file(path))"


class LabBlocks(gr.Blocks):
    """gr.Blocks that answers two malformed requests Gradio itself refuses with a plain message instead
    of a stack trace in the server log: too few values, and a file path that was not uploaded. Inputs
    appended to an endpoint later (``appended_input``) take their default when a request leaves them out,
    so scripts written before they existed keep working."""

    def validate_inputs(self, block_fn, inputs):
        missing = block_fn.inputs[len(inputs) :]
        if missing and isinstance(inputs, list) and all(getattr(c, "appended", False) for c in missing):
            inputs.extend(c.value for c in missing)
        try:
            super().validate_inputs(block_fn, inputs)
        except ValueError:
            raise gr.Error(
                f"this endpoint takes {len(block_fn.inputs)} values, got {len(inputs)}", print_exception=False
            ) from None

    async def preprocess_data(self, *args, **kwargs):
        try:
            return await super().preprocess_data(*args, **kwargs)
        except InvalidPathError:
            raise gr.Error(UPLOAD_ONLY, print_exception=False) from None


def appended_input(component):
    """Mark ``component`` as an input appended to an existing endpoint: left out, it takes its value."""
    component.appended = True
    return component


class AnyImageData(ImageData):
    """Gradio's ImageData (same JSON schema, so clients still see a file parameter) that never fails
    validation: a value that is not a file (a bare path string, a number) arrives without a path and
    gets a plain message from ``UploadImage`` instead of a pydantic stack trace in the log."""

    model_config = ConfigDict(title="ImageData")

    @model_validator(mode="wrap")
    @classmethod
    def _lenient(cls, value, handler):
        try:
            return handler(value)
        except ValidationError:
            return handler({"path": None})


class UploadImage(gr.Image):
    """gr.Image whose upload is checked by our loader, not Gradio's: a broken or non-image file
    reaches ``load_image``, which explains the problem instead of failing inside Gradio. Only files
    in Gradio's upload folder are read (uploads and the examples), never another path on the server."""

    is_template = True  # rendered by the frontend of gr.Image
    data_model = AnyImageData

    def preprocess(self, payload):
        if payload is None:
            return None
        path = getattr(payload, "path", None)
        if not path:
            raise gr.Error("send an image file (from gradio_client: handle_file(path))", print_exception=False)
        if not gradio_utils.is_in_or_equal(os.path.abspath(path), gradio_utils.get_upload_folder()):
            raise gr.Error(UPLOAD_ONLY, print_exception=False)
        try:
            return super().preprocess(payload)
        except Exception:  # Pillow could not open it: hand the raw file to our loader
            return path


class RawValue:
    """Mixin for a Gradio input: rendered by its base's frontend (``is_template``), its value reaches
    the handler as sent (checked there, with a plain message)."""

    is_template = True

    def preprocess(self, payload):
        return payload

    def _gradio_base(self) -> type:
        return type(self).__bases__[-1]  # class XIn(RawValue, gr.X): the frontend of gr.X

    def get_block_name(self) -> str:
        return self._gradio_base().__name__.lower()

    def get_block_class(self) -> str:
        return self._gradio_base().__name__.lower()


class NumberIn(RawValue, gr.Number):
    """gr.Number, value unconverted."""


class SliderIn(RawValue, gr.Slider):
    """gr.Slider, value unconverted."""


class DropdownIn(RawValue, gr.Dropdown):
    """gr.Dropdown, value unconverted."""


class CheckboxGroupIn(RawValue, gr.CheckboxGroup):
    """gr.CheckboxGroup, value unconverted."""


class RadioIn(RawValue, gr.Radio):
    """gr.Radio, value unconverted."""


class CheckboxIn(RawValue, gr.Checkbox):
    """gr.Checkbox, value unconverted."""


class TextboxIn(RawValue, gr.Textbox):
    """gr.Textbox, value unconverted."""
