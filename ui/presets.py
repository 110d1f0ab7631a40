"""Per-model sampling presets (issue 14): "fidelity" and "detail" (steps, eta), picked on the validation split
and written into each model's card as ``"presets": {"fidelity": {"steps": 1, "eta": 0.0}, "detail": {...}}``.

A diffusion model whose card has no presets gets fidelity = its defaults, and no detail preset (said so);
deterministic models have none (nothing to choose). A model routed to another scale (``ldm-x4 then resize
to 3x``) uses the presets of the model it runs; a cascade runs its stages' defaults under "fidelity".
"""

from __future__ import annotations

from dataclasses import replace

from sr_models.cascade import CascadeSR
from sr_models.resized import ResizedSR
from sr_models.types import SamplingSettings
from ui.parse import CUSTOM, DETAIL, FIDELITY


def runs_a_cascade(model) -> bool:
    return isinstance(model, CascadeSR) or (isinstance(model, ResizedSR) and isinstance(model.inner, CascadeSR))


def card_of(model) -> dict:
    """The model's card (``sr_model.json``) as the registry exposes it: ``meta`` on a folder model, a ``card``
    dict on a loaded family; routed models give their inner model's."""
    inner = getattr(model, "inner", None)
    if inner is not None:
        return card_of(inner)
    for attribute in ("meta", "card"):
        card = getattr(model, attribute, None)
        if isinstance(card, dict):
            return card
    return {}


def _preset_value(entry) -> dict | None:
    """{"steps": int, "eta": float} from a card's entry; None when it is not one."""
    if not isinstance(entry, dict) or not isinstance(entry.get("steps"), int) or entry["steps"] < 1:
        return None
    eta = entry.get("eta", 0.0)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
        return None
    return {"steps": entry["steps"], "eta": float(eta)}


def model_presets(model) -> dict[str, dict]:
    """{"fidelity": {...}, "detail": {...}} of a diffusion model (detail only where its card has one)."""
    if not model.is_diffusion or runs_a_cascade(model):
        return {}
    card = card_of(model).get("presets") or {}
    fidelity = _preset_value(card.get(FIDELITY)) or {"steps": model.default_steps, "eta": 0.0}
    out = {FIDELITY: fidelity}
    detail = _preset_value(card.get(DETAIL))
    if detail is not None:
        out[DETAIL] = detail
    return out


def describe(values: dict) -> str:
    steps = values["steps"]
    return f"{steps} step{'s' if steps != 1 else ''}, eta {values['eta']:g}"


def preset_settings(model, settings: SamplingSettings, preset: str) -> tuple[SamplingSettings, str | None]:
    """(the settings ``model`` runs with under ``preset``, a note when the preset is not what it runs)."""
    if preset == CUSTOM or not model.is_diffusion:
        return settings, None
    if runs_a_cascade(model):  # its stages' own defaults
        return replace(settings, steps=None, eta=None), f"{model.name} (a cascade) runs its stages' defaults"
    presets = model_presets(model)
    from_card = bool(card_of(model).get("presets"))
    if preset not in presets:
        note = f"{model.name} has no {preset} preset in its card: it ran its defaults ({describe(presets[FIDELITY])})"
        return replace(settings, steps=presets[FIDELITY]["steps"], eta=presets[FIDELITY]["eta"]), note
    values = presets[preset]
    note = None if from_card else f"{model.name} has no presets in its card: {preset} = its defaults"
    return replace(settings, steps=values["steps"], eta=values["eta"]), note


def presets_text(models, preset: str) -> str:
    """One line for the page: what each ticked diffusion model runs under ``preset``."""
    if preset == CUSTOM:
        return "Preset **custom**: the steps and eta below, for every diffusion model."
    parts = []
    for model in models:
        presets = model_presets(model)
        if not presets:
            continue
        if preset in presets:
            own = "" if card_of(model).get("presets") else " (its defaults: no presets in its card)"
            parts.append(f"{model.name} {describe(presets[preset])}{own}")
        else:
            parts.append(f"{model.name}: no {preset} preset in its card, runs its defaults")
    if not parts:
        return f"Preset **{preset}**: no diffusion model ticked (the others have no settings to choose)."
    return f"Preset **{preset}**: " + "; ".join(parts) + "."
