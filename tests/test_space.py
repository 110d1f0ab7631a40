"""The README's front matter is a valid Space configuration (huggingface_hub's SpaceCard and the documented
key types), and its ``preload_from_hub`` names exactly the files our loaders read (``HubEntry.files``)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import SpaceCard, SpaceCardData

from sr_models.hub import CLIP_TOKENIZER_FILES, HUB_MODELS, find_entry, space_preload
from sr_models.types import SamplingSettings

ROOT = Path(__file__).resolve().parent.parent
COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
# the Spaces configuration reference: "repo_id file1,file2 [revision]" (files and revision optional)
PRELOAD_ENTRY = re.compile(r"[\w.-]+/[\w.-]+( [^\s,]+(,[^\s,]+)*)?( [0-9a-f]{40})?")


def front_matter() -> SpaceCardData:
    return SpaceCard.load(ROOT / "README.md").data


def test_front_matter_has_the_documented_key_types():
    data = front_matter()
    assert isinstance(data, SpaceCardData)
    meta = data.to_dict()
    for key in ("title", "emoji", "sdk", "sdk_version", "app_file", "license", "short_description"):
        assert isinstance(meta[key], str), key
    assert meta["sdk"] in {"gradio", "docker", "static"} and (ROOT / meta["app_file"]).is_file()
    assert len(meta["short_description"]) <= 60  # the Space card's thumbnail line (the Hub's configuration limit)
    assert {meta["colorFrom"], meta["colorTo"]} <= COLORS and isinstance(meta["pinned"], bool)
    preload = meta["preload_from_hub"]
    assert isinstance(preload, list) and all(isinstance(p, str) and PRELOAD_ENTRY.fullmatch(p) for p in preload)


def test_preload_names_exactly_the_files_the_loaders_read():
    preload = front_matter().to_dict()["preload_from_hub"]
    assert preload == space_preload()  # derived from HubEntry.files, the one list
    for line in preload:
        repo_id, files = line.split(" ")[:2]
        assert find_entry(repo_id) is not None and tuple(files.split(",")) == find_entry(repo_id).files


def test_the_hub_downloads_fetch_the_same_files(monkeypatch, tmp_path):
    import huggingface_hub

    from sr_models.hub import download

    asked = {}

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        asked[repo_id] = allow_patterns
        return str(tmp_path)

    siblings = [type("Sibling", (), {"rfilename": "model_index.json"})()]
    monkeypatch.setattr(huggingface_hub, "model_info", lambda repo_id: type("Info", (), {"siblings": siblings})())
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    for entry in HUB_MODELS:
        assert download(entry.repo_id, pipeline=True) == tmp_path
        assert asked[entry.repo_id] == list(entry.files)


def layout_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_stock_layouts_are_the_listed_files_and_load_from_them_alone(tmp_path):
    """Tiny pipelines saved by the stock ``save_pretrained`` (what ``from_pretrained`` reads back), in each
    repo's weight format; the SD tokenizer as the Hub repo has it (the slow CLIP tokenizer's files)."""
    pytest.importorskip("transformers")
    from transformers import CLIPTokenizer
    from transformers.tokenization_utils_base import SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE

    from sr_models.registry import load_model
    from tests.test_hub import tiny_ldm_pipeline, tiny_sd_upscale_pipeline

    ldm, sd = find_entry("ldm-sr-openimages"), find_entry("sd-x4-upscaler")
    tiny_ldm_pipeline().save_pretrained(str(tmp_path / "ldm"), safe_serialization=False)  # the repo's .bin
    assert layout_files(tmp_path / "ldm") == set(ldm.files)

    tiny_sd_upscale_pipeline(tmp_path / "tok").save_pretrained(str(tmp_path / "sd"), safe_serialization=True)
    tokenizer = tmp_path / "sd" / "tokenizer"  # as the Hub repo has it: transformers 5 would save tokenizer.json
    shutil.rmtree(tokenizer)
    shutil.copytree(tmp_path / "tok" / "tokenizer-src", tokenizer)  # vocab.json, merges.txt
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    special["pad_token"] = "<|endoftext|>"
    (tokenizer / SPECIAL_TOKENS_MAP_FILE).write_text(json.dumps(special))
    config = {**special, "tokenizer_class": "CLIPTokenizer", "model_max_length": 16, "do_lower_case": True}
    (tokenizer / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config))
    slow_files = {n for n in CLIPTokenizer.vocab_files_names.values() if n != "tokenizer.json"}
    assert set(CLIP_TOKENIZER_FILES) == slow_files | {TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE}
    assert layout_files(tmp_path / "sd") == set(sd.files)
    for folder in ("ldm", "sd"):
        result = load_model(tmp_path / folder).upscale(
            np.zeros((4, 4, 3), np.uint8), settings=SamplingSettings(steps=1)
        )
        assert result.image.shape == (16, 16, 3)
