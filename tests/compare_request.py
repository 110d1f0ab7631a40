"""/compare's inputs for the tests, by name (imported, never collected: no ``test`` prefix).

The order is read from ``Handlers.compare``, the one place it is stated, so a test names the values it
cares about and the request lines up with the API and the handler alike.
"""

from __future__ import annotations

import inspect

from tests.conftest import NO_CASCADE
from ui.handlers import Handlers

# Positional inputs of /compare and of Handlers.compare (Gradio fills progress and request itself).
COMPARE_INPUTS = tuple(
    name for name in inspect.signature(Handlers.compare).parameters if name not in ("self", "progress", "request")
)
BUILDER_INPUTS = COMPARE_INPUTS[COMPARE_INPUTS.index("stage1") : COMPARE_INPUTS.index("preset")]
# What a request sends where a test names nothing: the form's starting values (the seed as a number).
FORM_DEFAULTS = {"steps": 0, "sampler": "", "eta": 0, "seed": 0, "record": True, "projection": -1}


def compare_inputs(image, mode, scale, names, builder=NO_CASCADE, **values) -> list:
    """The positional inputs of one comparison: ``values`` by name over ``FORM_DEFAULTS``, the cascade
    builder's six boxes (unused by default); the inputs appended later (preset, width) only where given,
    as older scripts send them."""
    unknown = set(values) - set(COMPARE_INPUTS)
    assert not unknown, f"not a /compare input: {sorted(unknown)}"
    given = {**FORM_DEFAULTS, "image": image, "mode": mode, "scale": scale, "names": names}
    given |= dict(zip(BUILDER_INPUTS, builder, strict=True)) | values
    last = max(COMPARE_INPUTS.index(name) for name in given)
    return [given[name] for name in COMPARE_INPUTS[: last + 1]]
