"""Which models exist: the built-in bicubic, model folders (shipped in ``assets/``, user folders)
and Hugging Face Hub ids. A folder and a Hub id load through the same ``load_model``: a Hub id
is just downloaded (or found in the local cache) first.

A model folder holds ``sr_model.json`` (name, family, scales, defaults) next to the family's own
weights (diffusers ``save_pretrained`` layout, safetensors). Families register a loader in
``FAMILY_LOADERS``; nothing else here changes when a family is added. A folder with diffusers'
``model_index.json`` and no ``sr_model.json`` is a stock pipeline (``sr_models.hub`` picks its
family), and the well-known pipeline repos are listed under short names (``sr_models.hub.HUB_MODELS``).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from sr_models.base import Availability, ModelUnavailableError, SRInputError, SRModel
from sr_models.bicubic import BicubicSR
from sr_models.cards import CARD_FILE, read_card
from sr_models.device import pick_device, pick_dtype

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MODEL_DIRS_ENV = "SR_MODEL_DIRS"  # extra folders to scan, separated by os.pathsep
HUB_IDS_ENV = "SR_HUB_MODELS"  # extra Hub ids, comma separated
TICK_HUB_ENV = "SR_HUB"  # 1: the app ticks Hub models that are in the local cache (``python app.py --hub``)


def family_loader(module: str, class_name: str) -> Callable[[Path, dict], SRModel]:
    """A family's loader: ``class_name.from_folder(folder, name, card)`` of ``module``, imported when a folder
    of that family first loads (named by strings, as ``hub.PIPELINES`` names its classes: listing models
    imports no family's code, and no family module imports this one)."""

    def load(folder: Path, card: dict) -> SRModel:
        family_class = getattr(importlib.import_module(module), class_name)
        return family_class.from_folder(folder, card["name"], card)

    return load


# family name -> loader(folder, card) -> SRModel. A new family adds itself here.
FAMILY_LOADERS: dict[str, Callable[[Path, dict], SRModel]] = {
    "regression": family_loader("sr_models.regression", "RegressionSR"),
    "gan": family_loader("sr_models.gan", "GanSR"),
    "ldm": family_loader("sr_models.diffusion_sr", "LatentSR"),
    "sr3": family_loader("sr_models.diffusion_sr", "PixelSR"),
    "liif": family_loader("sr_models.liif", "LIIFSR"),
    "idm": family_loader("sr_models.idm", "ImplicitDiffusionSR"),
}
NOT_SR_FAMILIES = {"first-stage"}  # model folders that are parts of other models (the LDMs' autoencoder)


def load_model(folder: str | Path) -> SRModel:
    """Load a model folder (local path or a downloaded Hub snapshot) into its family's class."""
    folder = Path(folder)
    if not (folder / CARD_FILE).exists():
        # --- stock diffusers pipeline folders (model_index.json, no sr_model.json): sr_models.hub ---
        from sr_models.hub import PIPELINE_INDEX, load_pipeline_folder

        if (folder / PIPELINE_INDEX).exists():
            return load_pipeline_folder(folder)
        # --- end of the pipeline fallback ---
        raise ModelUnavailableError(
            f"{folder} is not a model folder: it has no {CARD_FILE} (nor a diffusers {PIPELINE_INDEX})"
        )
    meta = read_card(folder)
    family = meta.get("family")
    if family not in FAMILY_LOADERS:
        raise ModelUnavailableError(f"{folder}: unknown family {family!r} (known: {', '.join(FAMILY_LOADERS)})")
    return FAMILY_LOADERS[family](folder, meta)


def as_unavailable(name: str, err: Exception) -> Exception:
    """A loader's error as a run reports it (``run_comparison``: the model's error): ours as they are, any
    other as a ModelUnavailableError with its first line only."""
    if isinstance(err, (SRInputError, RuntimeError)):
        return err
    first = str(err).splitlines()[0] if str(err) else ""
    return ModelUnavailableError(f"{name}: could not load its weights ({type(err).__name__}: {first})")


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
        self.continuous, self.max_scale = bool(meta.get("continuous", False)), meta.get("max_scale", self.max_scale)
        self.card = meta  # the card as read: precision and presets are known before loading
        self._model: SRModel | None = None
        self._loading = threading.Lock()  # one load at a time: a run arriving mid-load waits for it
        self._failure: Exception | None = None  # a background load's error, raised by the next run

    def _resolve_folder(self) -> Path:
        raise NotImplementedError

    def load(self) -> SRModel:
        with self._loading:
            if self._model is None:
                failure, self._failure = self._failure, None
                if failure is not None:
                    raise failure  # the background load's error, once: the run after it tries again
                try:
                    self._model = load_model(self._resolve_folder()).to(self.device, self.dtype)
                except Exception as err:  # a broken file, a full disk: the run's plain error, not a stack trace
                    raise as_unavailable(self.name, err) from err
            return self._model

    def preload(self) -> bool:
        """Load now, off the request path (the app's start-up thread). A failure is not raised here: it is
        kept, and the first run of this model reports it."""
        try:
            self.load()
        except (SRInputError, RuntimeError) as err:  # what ``load`` raises: it belongs to the run that needs it
            self._failure = err
            return False
        return True

    def _place(self):
        if self._model is None:
            return
        if self._model.dtype != self.dtype:  # casting live weights down and back up loses bits: reload
            self._model = None
        else:
            self._model.to(self.device, self.dtype)

    def load_weights(self):
        self.load()

    # --- unloading (the app keeps a bounded number of models loaded: comparisons.compare.LoadedModels) ---
    @property
    def loaded(self) -> bool:
        return self._model is not None

    def unload(self) -> None:
        """Drop the loaded weights; the next run loads them again."""
        self._model = None

    # --- end of unloading ---

    def _upscale(self, lr, **kwargs):
        return self.load()._upscale(lr, **kwargs)


class FolderModel(_Deferred):
    def __init__(self, folder: Path):
        meta = read_card(folder)
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
    """A model on the Hugging Face Hub: one of our model repos (``sr_model.json``) or a stock diffusers
    pipeline repo (``model_index.json``, families in ``sr_models.hub``), served from the local Hub cache.

    Small repos download on first use. Entries with a ``download_size_mb`` (the well-known pipelines,
    gigabytes) wait for ``python -m sr_models.prefetch NAME``, so no click in the app starts one; until
    then they are listed, with a plain "needs internet" reason.
    """

    def __init__(
        self,
        repo_id: str,
        name: str | None = None,
        family: str = "hub",
        scales=(4,),
        meta: dict | None = None,
        pipeline: bool | None = None,
        download_size_mb: int | None = None,
        requires: tuple[str, ...] = (),
    ):
        super().__init__(name or f"hub:{repo_id}", family, scales, meta)
        self.repo_id = repo_id
        self.pipeline = pipeline  # None: ask the Hub which kind of repo it is when downloading
        self.download_size_mb = download_size_mb
        self.requires = tuple(requires)

    def _cached_snapshot(self) -> Path | None:
        from sr_models.hub import cached_folder

        return cached_folder(self.repo_id, bool(self.pipeline))

    def cached(self) -> bool:
        """Whether its snapshot is in the local Hub cache (complete, for a pipeline): it loads offline."""
        return self._cached_snapshot() is not None

    def availability(self) -> Availability:
        import importlib.util

        missing = [p for p in self.requires if importlib.util.find_spec(p) is None]
        if missing:
            return Availability(False, f"needs the package(s) {', '.join(missing)} (pip install {' '.join(missing)})")
        if self.cached():
            return Availability(True)
        if self.download_size_mb is not None:
            return Availability(
                False,
                f"needs internet: not in the local Hub cache; `python -m sr_models.prefetch "
                f"{self.name}` downloads {self.repo_id} (about {self.download_size_mb} MB)",
            )
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return Availability(
                False, f"needs internet: {self.repo_id} is not in the local Hub cache (HF_HUB_OFFLINE=1)"
            )
        return Availability(True, f"downloads {self.repo_id} from the Hub on first use")

    def _resolve_folder(self) -> Path:
        cached = self._cached_snapshot()
        if cached is not None:
            return cached
        from sr_models.hub import download

        return download(self.repo_id, self.pipeline)  # ModelUnavailableError with a plain message offline


def ticks_hub_models() -> bool:
    """Whether the app ticks the cached Hub models at start (``--hub`` or SR_HUB=1): they take minutes on a
    CPU, so by default they are listed and left for the user to tick."""
    return os.environ.get(TICK_HUB_ENV, "").strip().lower() in ("1", "true", "yes")


def builtin_models() -> list[HubModel]:
    """The well-known pipeline repos as ``HubModel`` entries, named by ``HUB_MODELS``."""
    from sr_models.hub import HUB_MODELS, PIPELINES

    models = []
    for entry in HUB_MODELS:
        family = PIPELINES[entry.pipeline]
        models.append(
            HubModel(
                entry.repo_id,
                name=entry.name,
                family=family.family,
                scales=family.scales,
                meta=family.card(),
                pipeline=True,
                download_size_mb=entry.download_size_mb,
                requires=family.requires,
            )
        )
    return models


def model_folders(folders) -> list[Path]:
    """Model folders directly inside each folder (or the folder itself if it is one)."""
    found = []
    for root in folders:
        root = Path(root)
        if (root / CARD_FILE).exists():
            found.append(root)
        elif root.is_dir():
            found += sorted(p for p in root.iterdir() if (p / CARD_FILE).exists())
    return found


def discover(model_dirs=(), hub_ids=(), device=None, dtype=None) -> dict[str, SRModel]:
    """All models: bicubic, ``assets/``, ``model_dirs`` and $SR_MODEL_DIRS, ``hub_ids`` and $SR_HUB_MODELS,
    set to run on ``device`` in ``dtype`` (None: $SR_DEVICE / $SR_DTYPE, else the best device, in the
    precision ``auto`` picks per model: ``sr_models.device.auto_dtype``)."""
    models: dict[str, SRModel] = {"bicubic": BicubicSR()}
    dirs = [ASSETS, *model_dirs, *filter(None, os.environ.get(MODEL_DIRS_ENV, "").split(os.pathsep))]
    for folder in model_folders(dirs):
        if read_card(folder).get("family") in NOT_SR_FAMILIES:
            continue
        model = FolderModel(folder)
        models.setdefault(model.name, model)  # first one wins: shipped models can't be shadowed
    # --- the well-known stock pipelines (sr_models.hub.HUB_MODELS), listed offline too ---
    for hub in builtin_models():
        models.setdefault(hub.name, hub)
    # --- end of the well-known pipelines ---
    for repo_id in [*hub_ids, *filter(None, os.environ.get(HUB_IDS_ENV, "").split(","))]:
        hub = HubModel(repo_id.strip())
        models.setdefault(hub.name, hub)
    device = pick_device(device)
    pick_dtype(dtype, device)  # an unknown name is refused here, once
    for model in models.values():
        model.to(device, dtype)  # deferred models only note it: weights move when they load; auto is per model
    return models


def get_models(names, models: dict[str, SRModel] | None = None) -> list[SRModel]:
    """Look up models by name, cascade spec (``a>b``) or routed spec (``a~3``: ``sr_models.resized``), with a
    message listing the known names on a typo."""
    from sr_models.cascade import is_cascade_spec, parse_cascade
    from sr_models.resized import is_routed_spec, parse_routed

    models = models if models is not None else discover()
    unknown = [n for n in names if not is_cascade_spec(n) and not is_routed_spec(n) and n not in models]
    if unknown:
        raise KeyError(
            f"unknown model(s) {', '.join(unknown)}; known: {', '.join(models)} (or a cascade a>b, a routed model a~3)"
        )
    return [
        parse_routed(n, models) if is_routed_spec(n) else parse_cascade(n, models) if is_cascade_spec(n) else models[n]
        for n in names
    ]
