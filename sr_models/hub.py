"""Diffusers pipeline repos as SRModels: a folder's ``model_index.json`` names the pipeline, the
pipeline names the family.

A stock repo (``CompVis/ldm-super-resolution-4x-openimages``, ``stabilityai/stable-diffusion-x4-upscaler``)
has no ``sr_model.json``: ``sr_models.registry.load_model`` falls back to ``load_pipeline_folder``
here, which picks the family from ``_class_name`` and gives it the family's defaults (steps,
sampler, tiles; chosen for CPU use). ``HUB_MODELS`` are the well-known repos listed under short
names by ``discover()``, offline too; they are fetched with ``python -m sr_models.prefetch`` (or
preloaded by the Space: README's ``preload_from_hub``, ``space_preload``), and only the files the
pipeline loads are downloaded: ``HubEntry.files``, the one list of them (safetensors where the repo
has them, else ``.bin``; no fp16 variants, no single-file checkpoints, as ``from_pretrained`` reads
with ``use_safetensors=None``). Other pipeline repos go through ``DiffusionPipeline.download``.

Kept light on purpose (no torch or diffusers import at module level): listing models stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from sr_models.types import SAMPLERS, ModelUnavailableError

PIPELINE_INDEX = "model_index.json"  # diffusers' pipeline folder marker
# what CLIPTokenizer.from_pretrained reads of the SD upscaler's tokenizer folder (no tokenizer.json there)
CLIP_TOKENIZER_FILES = ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")


@dataclass(frozen=True)
class PipelineFamily:
    """How one stock pipeline class becomes an SRModel: the family class and its defaults."""

    family: str
    model_class: str  # "module:Class", imported on first load (torch, diffusers)
    scales: tuple[int, ...]
    description: str
    defaults: dict = field(default_factory=dict)  # the family class's card: defaults a folder doesn't carry
    requires: tuple[str, ...] = ()  # packages the pipeline's components need

    def card(self) -> dict:
        return {
            "family": self.family,
            "scales": list(self.scales),
            "description": self.description,
            "samplers": list(SAMPLERS),
            **self.defaults,
        }

    def missing_packages(self) -> list[str]:
        return [p for p in self.requires if importlib.util.find_spec(p) is None]

    def model_class_(self):
        module, name = self.model_class.split(":")
        return getattr(importlib.import_module(module), name)


# 20 DDIM steps: the stock pipelines' quality at a CPU-sized budget (their own defaults are 100 and 75
# steps); tiles of 128 latent pixels (= LR pixels) bound memory; raw outputs, as the stock pipelines give.
CPU_DEFAULTS = {
    "default_steps": 20,
    "default_sampler": "ddim",
    "timestep_spacing": "leading",
    "tile": 128,
    "tile_overlap": 16,
    "lr_projection": 0,
}
# an empty prompt equals the negative one, so guidance (2 network evaluations a step) is skipped until a
# prompt is set; noise level 20 and guidance 9 are the stock pipeline's defaults
SD_UPSCALE_DEFAULTS = {
    **CPU_DEFAULTS,
    "prompt": "",
    "negative_prompt": "",
    "guidance_scale": 9.0,
    "noise_level": 20,
    "float16_overflows": True,  # its VAE's known float16 NaNs: auto takes bfloat16 or float32 on CUDA
}

# pipeline ``_class_name`` -> family
PIPELINES: dict[str, PipelineFamily] = {
    "LDMSuperResolutionPipeline": PipelineFamily(
        family="stock-ldm",
        model_class="sr_models.stock_sr:StockLDMSR",
        scales=(4,),
        description="CompVis latent diffusion SR (VQ first stage f=4, LR concatenated to the latent), stock weights",
        defaults=CPU_DEFAULTS,
    ),
    "StableDiffusionUpscalePipeline": PipelineFamily(
        family="sd-upscale",
        model_class="sr_models.stock_sr:StableDiffusionUpscaleSR",
        scales=(4,),
        description="Stable Diffusion x4 upscaler (text-conditioned latent diffusion, LR noise level 20, "
        "guidance 9 when a prompt is set), stock weights",
        defaults=SD_UPSCALE_DEFAULTS,
        requires=("transformers",),
    ),
}


@dataclass(frozen=True)
class HubEntry:
    """A well-known pipeline repo listed under a short name."""

    name: str
    repo_id: str
    pipeline: str  # its model_index.json ``_class_name``
    download_size_mb: int  # what ``files`` weigh (fp32 weights), roughly
    files: tuple[str, ...]  # every file the pipeline's ``from_pretrained`` reads: all that is downloaded

    def preload_line(self) -> str:
        """This repo as a Space's ``preload_from_hub`` entry: ``repo_id file1,file2``."""
        return f"{self.repo_id} {','.join(self.files)}"


def component_files(component: str, weights: str, config: str = "config.json") -> tuple[str, str]:
    return f"{component}/{config}", f"{component}/{weights}"


UNET_WEIGHTS = "diffusion_pytorch_model"  # diffusers' weight file name, + .safetensors or .bin
HUB_MODELS: tuple[HubEntry, ...] = (
    HubEntry(  # 2022 upload: .bin weights only (read with torch.load(weights_only=True))
        "ldm-sr-openimages",
        "CompVis/ldm-super-resolution-4x-openimages",
        "LDMSuperResolutionPipeline",
        700,
        (
            PIPELINE_INDEX,
            "scheduler/scheduler_config.json",
            *component_files("unet", f"{UNET_WEIGHTS}.bin"),
            *component_files("vqvae", f"{UNET_WEIGHTS}.bin"),
        ),
    ),
    HubEntry(  # safetensors next to each .bin (fetched: safetensors only), plus single-file checkpoints (not)
        "sd-x4-upscaler",
        "stabilityai/stable-diffusion-x4-upscaler",
        "StableDiffusionUpscalePipeline",
        3500,
        (
            PIPELINE_INDEX,
            "low_res_scheduler/scheduler_config.json",
            "scheduler/scheduler_config.json",
            *component_files("text_encoder", "model.safetensors"),
            *(f"tokenizer/{name}" for name in CLIP_TOKENIZER_FILES),
            *component_files("unet", f"{UNET_WEIGHTS}.safetensors"),
            *component_files("vae", f"{UNET_WEIGHTS}.safetensors"),
        ),
    ),
)


def space_preload() -> list[str]:
    """The README front matter's ``preload_from_hub``: the well-known repos, their loaded files only."""
    return [entry.preload_line() for entry in HUB_MODELS]


def read_index(folder: str | Path) -> dict:
    return json.loads((Path(folder) / PIPELINE_INDEX).read_text())


def name_for(folder: str | Path) -> str:
    """A readable name for a pipeline folder: ``org/repo`` for a Hub cache snapshot, else the folder's name."""
    folder = Path(folder)
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.removeprefix("models--").replace("--", "/")
    return folder.name


def pipeline_family(class_name, where: str = "") -> PipelineFamily:
    """The family of a pipeline class name, or a ModelUnavailableError that lists the known ones."""
    family = PIPELINES.get(class_name) if isinstance(class_name, str) else None
    if family is None:
        known = ", ".join(f"{k} ({v.family})" for k, v in PIPELINES.items())
        raise ModelUnavailableError(
            f"{where}model_index.json names the pipeline {class_name!r}, which has no super-resolution family "
            f"here; the known pipelines are {known}"
        )
    missing = family.missing_packages()
    if missing:
        raise ModelUnavailableError(
            f"{where}the {class_name} family needs the package(s) {', '.join(missing)} "
            f"(pip install {' '.join(missing)})"
        )
    return family


def load_pipeline_folder(folder: str | Path, name: str | None = None):
    """A diffusers pipeline folder (``model_index.json``, no ``sr_model.json``) as its family's SRModel."""
    folder = Path(folder)
    try:
        index = read_index(folder)
    except (OSError, ValueError) as err:
        raise ModelUnavailableError(f"{folder}: unreadable {PIPELINE_INDEX} ({err})") from err
    family = pipeline_family(index.get("_class_name"), f"{folder}: ")
    cls = family.model_class_()
    name = name or name_for(folder)
    try:
        return cls.from_folder(folder, name, family.card())
    except ModelUnavailableError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:  # missing or broken component files
        raise ModelUnavailableError(
            f"{name}: could not load the {index['_class_name']} components from {folder} ({type(err).__name__}: {err})"
        ) from err


# --- the Hub -----------------------------------------------------------------------------------


def cached_folder(repo_id: str, pipeline: bool) -> Path | None:
    """The local snapshot of ``repo_id`` if it is in the Hub cache (no network), else None."""
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    if pipeline:
        index = try_to_load_from_cache(repo_id, PIPELINE_INDEX)
        if not isinstance(index, str):
            return None
        folder = Path(index).parent
        return folder if is_complete_pipeline(folder) else None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (OSError, ValueError):  # not in the cache (LocalEntryNotFoundError), or not a valid repo id
        return None


def is_complete_pipeline(folder: Path) -> bool:
    """Every component the index names is there, models with their weights (an interrupted download isn't)."""
    try:
        index = read_index(folder)
    except (OSError, ValueError):
        return False
    for component, spec in index.items():
        if component.startswith("_") or not (isinstance(spec, list) and spec and spec[0]):
            continue  # config values and absent optional components ([null, null])
        part = folder / component
        if not part.is_dir() or not any(part.iterdir()):
            return False
        if (part / "config.json").exists() and not any(part.glob("*.safetensors")) and not any(part.glob("*.bin")):
            return False
    return True


def _why_unreachable(err: Exception) -> str:
    """A plain reason for a failed Hub look-up."""
    from huggingface_hub.errors import GatedRepoError, OfflineModeIsEnabled, RepositoryNotFoundError

    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(err, GatedRepoError):
        return "the repo is gated: accept its terms on the Hub and log in with `hf auth login`"
    if isinstance(err, RepositoryNotFoundError):
        return "no such repo on the Hub (or a private one)"
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"the Hub is not reachable from here: {first}"


def download(repo_id: str, pipeline: bool | None = None) -> Path:
    """Download ``repo_id`` (or find it in the cache): a pipeline's loadable files only, else the snapshot.

    ``pipeline`` None: a stock pipeline repo if it has model_index.json and no sr_model.json. Raises
    ModelUnavailableError with a plain message when the Hub cannot be reached or the download fails.
    """
    from huggingface_hub import model_info, snapshot_download

    from sr_models.cards import CARD_FILE

    try:
        files = {s.rfilename for s in (model_info(repo_id).siblings or [])}
    except Exception as err:  # offline, unknown, gated: huggingface_hub and httpx raise many kinds
        raise ModelUnavailableError(
            f"needs internet: could not reach {repo_id} ({_why_unreachable(err)}), and it is not in the local Hub cache"
        ) from err
    if pipeline is None:
        pipeline = PIPELINE_INDEX in files and CARD_FILE not in files
    try:
        entry = find_entry(repo_id)
        if entry is not None:  # a well-known repo: exactly the files its pipeline reads
            return Path(snapshot_download(repo_id, allow_patterns=list(entry.files)))
        if pipeline:
            from diffusers import DiffusionPipeline

            return Path(DiffusionPipeline.download(repo_id, use_safetensors=None))
        return Path(snapshot_download(repo_id))
    except Exception as err:  # the connection dropped, the disk is full, ...
        first = str(err).splitlines()[0] if str(err) else ""
        raise ModelUnavailableError(f"could not download {repo_id} ({type(err).__name__}: {first})") from err


def find_entry(name_or_repo: str) -> HubEntry | None:
    return next((e for e in HUB_MODELS if name_or_repo in (e.name, e.repo_id)), None)
