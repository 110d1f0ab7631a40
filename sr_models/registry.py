"""Which models exist: the built-in bicubic, model folders (shipped in ``assets/``, user folders)
and Hugging Face Hub ids. A folder and a Hub id load through the same ``load_model``: a Hub id
is just downloaded (or found in the local cache) first.

A model folder holds ``sr_model.json`` (name, family, scales, defaults) next to the family's own
weights (diffusers ``save_pretrained`` layout, safetensors). Families register a loader in
``FAMILY_LOADERS``; nothing else here changes when a family is added.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from sr_models.base import Availability, ModelUnavailableError, SRModel
from sr_models.bicubic import BicubicSR
from sr_models.cards import META_FILE, read_meta
from sr_models.device import pick_device, pick_dtype

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MODEL_DIRS_ENV = "SR_MODEL_DIRS"  # extra folders to scan, separated by os.pathsep
HUB_IDS_ENV = "SR_HUB_MODELS"  # extra Hub ids, comma separated


def _load_regression(folder: Path, meta: dict) -> SRModel:
    from sr_models.regression import RegressionSR

    return RegressionSR.from_folder(folder, meta["name"], meta)


def _load_ldm(folder: Path, meta: dict) -> SRModel:
    from sr_models.diffusion_sr import LatentSR

    return LatentSR.from_folder(folder, meta["name"], meta)


def _load_sr3(folder: Path, meta: dict) -> SRModel:
    from sr_models.diffusion_sr import PixelSR

    return PixelSR.from_folder(folder, meta["name"], meta)


# family name -> loader(folder, meta) -> SRModel. A new family adds itself here.
FAMILY_LOADERS: dict[str, Callable[[Path, dict], SRModel]] = {
    "regression": _load_regression,
    "ldm": _load_ldm,
    "sr3": _load_sr3,
}
NOT_SR_FAMILIES = {"first-stage"}  # model folders that are parts of other models (the LDMs' autoencoder)


def load_model(folder: str | Path) -> SRModel:
    """Load a model folder (local path or a downloaded Hub snapshot) into its family's class."""
    folder = Path(folder)
    if not (folder / META_FILE).exists():
        raise ModelUnavailableError(f"{folder} is not a model folder: it has no {META_FILE}")
    meta = read_meta(folder)
    family = meta.get("family")
    if family not in FAMILY_LOADERS:
        raise ModelUnavailableError(f"{folder}: unknown family {family!r} (known: {', '.join(FAMILY_LOADERS)})")
    return FAMILY_LOADERS[family](folder, meta)


class _Deferred(SRModel):
    """Shows a model's name, family and scales at once; loads its weights on first use."""

    def __init__(self, name: str, family: str, scales, meta: dict | None = None):
        meta = meta or {}
        self.name, self.family, self.scales = name, family, tuple(scales)
        self.description = meta.get("description", "")
        self.default_steps = meta.get("default_steps")
        self.default_sampler = meta.get("default_sampler")
        self.default_spacing = meta.get("timestep_spacing", "leading")
        self.samplers = tuple(meta.get("samplers", ()))
        self.lr_projection_default = int(meta.get("lr_projection", 0))
        self.meta = meta
        self._model: SRModel | None = None

    def _resolve_folder(self) -> Path:
        raise NotImplementedError

    def load(self) -> SRModel:
        if self._model is None:
            self._model = load_model(self._resolve_folder()).to(self.device, self.dtype)
        return self._model

    def _place(self):
        if self._model is None:
            return
        if self._model.dtype != self.dtype:  # casting live weights down and back up loses bits: reload
            self._model = None
        else:
            self._model.to(self.device, self.dtype)

    def load_weights(self):
        self.load()

    def _upscale(self, lr, **kwargs):
        return self.load()._upscale(lr, **kwargs)


class FolderModel(_Deferred):
    def __init__(self, folder: Path):
        meta = read_meta(folder)
        super().__init__(meta["name"], meta["family"], meta["scales"], meta)
        self.folder = folder

    def availability(self) -> Availability:
        if self.family not in FAMILY_LOADERS:
            return Availability(False, f"family {self.family!r} is not installed in this version")
        weights = list(self.folder.glob("**/*.safetensors"))
        if not weights:
            return Availability(False, f"weights missing: no .safetensors file in {self.folder}")
        return Availability(True)

    def _resolve_folder(self) -> Path:
        return self.folder


class HubModel(_Deferred):
    """A model on the Hugging Face Hub, downloaded on first use (then served from the cache)."""

    def __init__(self, repo_id: str, name: str | None = None, family: str = "hub", scales=(4,)):
        super().__init__(name or f"hub:{repo_id}", family, scales)
        self.repo_id = repo_id

    def _cached_snapshot(self) -> Path | None:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(self.repo_id, local_files_only=True))
        except Exception:  # not in the cache (the library raises several kinds)
            return None

    def availability(self) -> Availability:
        if self._cached_snapshot() is not None:
            return Availability(True)
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return Availability(False, f"needs internet: {self.repo_id} is not in the local Hub cache (HF_HUB_OFFLINE=1)")
        return Availability(True, f"downloads {self.repo_id} from the Hub on first use")

    def _resolve_folder(self) -> Path:
        cached = self._cached_snapshot()
        if cached is not None:
            return cached
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(self.repo_id))
        except Exception as err:  # offline, unknown repo, gated, ...
            raise ModelUnavailableError(
                f"needs internet: could not download {self.repo_id} from the Hub ({type(err).__name__}: {err})"
            ) from err


def model_folders(folders) -> list[Path]:
    """Model folders directly inside each folder (or the folder itself if it is one)."""
    found = []
    for root in folders:
        root = Path(root)
        if (root / META_FILE).exists():
            found.append(root)
        elif root.is_dir():
            found += sorted(p for p in root.iterdir() if (p / META_FILE).exists())
    return found


def discover(model_dirs=(), hub_ids=(), device=None, dtype=None) -> dict[str, SRModel]:
    """All models: bicubic, ``assets/``, ``model_dirs`` and $SR_MODEL_DIRS, ``hub_ids`` and $SR_HUB_MODELS,
    set to run on ``device`` in ``dtype`` (None: $SR_DEVICE / $SR_DTYPE, else the best device, float32)."""
    models: dict[str, SRModel] = {"bicubic": BicubicSR()}
    dirs = [ASSETS, *model_dirs, *filter(None, os.environ.get(MODEL_DIRS_ENV, "").split(os.pathsep))]
    for folder in model_folders(dirs):
        if read_meta(folder).get("family") in NOT_SR_FAMILIES:
            continue
        model = FolderModel(folder)
        models.setdefault(model.name, model)  # first one wins: shipped models can't be shadowed
    for repo_id in [*hub_ids, *filter(None, os.environ.get(HUB_IDS_ENV, "").split(","))]:
        hub = HubModel(repo_id.strip())
        models.setdefault(hub.name, hub)
    device, dtype = pick_device(device), pick_dtype(dtype)
    for model in models.values():
        model.to(device, dtype)  # deferred models only note it: weights move when they load
    return models


def get_models(names, models: dict[str, SRModel] | None = None) -> list[SRModel]:
    """Look up models by name or cascade spec (``a>b``), with a message listing the known names on a typo."""
    from sr_models.cascade import is_cascade_spec, parse_cascade

    models = models if models is not None else discover()
    unknown = [n for n in names if not is_cascade_spec(n) and n not in models]
    if unknown:
        raise KeyError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(models)} (or a cascade a>b)")
    return [parse_cascade(n, models) if is_cascade_spec(n) else models[n] for n in names]
