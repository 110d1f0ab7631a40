"""comparisons.provenance (git state, weight hashes, versions, machine) and the run record built on it."""

import hashlib
import json
import re
import zipfile

import pytest
from PIL import Image

from comparisons import provenance
from comparisons.compare import MODE_HR, run_comparison
from comparisons.run_record import write_run_record
from sr_models.bicubic import BicubicSR
from sr_models.registry import FolderModel
from tests.conftest import sample_images, save_tiny_regression


def test_file_hashes_and_the_folder_digest_are_sha256_of_the_weights(tmp_path):
    folder = save_tiny_regression(tmp_path / "m", scale=2, name="m")
    files = provenance.weight_files(folder)
    assert files and all(f.suffix == ".safetensors" for f in files)
    data = b"".join(f.read_bytes() for f in files)
    assert provenance.folder_digest(folder) == hashlib.sha256(data).hexdigest()[:16]
    assert provenance.file_sha256(files[0]) == hashlib.sha256(files[0].read_bytes()).hexdigest()
    hashes = provenance.weight_hashes([BicubicSR(), FolderModel(folder)])  # bicubic has no weights
    assert hashes == {f"m/{f.relative_to(folder).as_posix()}": provenance.file_sha256(f) for f in files}


def test_a_changed_file_is_hashed_again(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"one")
    first = provenance.file_sha256(path)
    path.write_bytes(b"three")
    assert provenance.file_sha256(path) != first == hashlib.sha256(b"one").hexdigest()


def test_git_state_inside_and_outside_a_repository(tmp_path):
    state = provenance.git_state()
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"]) and isinstance(state["dirty"], bool)
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_versions_and_machine_name_this_process():
    import numpy

    assert provenance.versions()["numpy"] == numpy.__version__
    info = provenance.machine()
    assert info["cpu_count"] >= 1 and info["torch_threads"] >= 1
    assert "torch" in provenance.machine_description()


@pytest.mark.slow
def test_run_record_card_uses_the_provenance(tmp_path):
    model = FolderModel(save_tiny_regression(tmp_path / "m", scale=2, name="m"))  # as discover() gives it
    comparison = run_comparison(Image.fromarray(sample_images()["astronaut"]), MODE_HR, 2, [model])
    path = write_run_record(comparison, {"m": model}, tmp_path / "run.zip", mode=MODE_HR)
    with zipfile.ZipFile(path) as zf:
        card = json.loads(zf.read("run_card.json"))
        assert {"metrics.csv", "stages.csv", "input.png", "reference.png", "m_x2_seed0.png"} <= set(zf.namelist())
    assert card["git"] == provenance.git_state()
    assert card["runs"][0]["weights_sha256"] == provenance.weight_hashes([model]) != {}
    assert card["device"]["ran_on"] == ["cpu float32"] and card["device"]["cpu_count"] >= 1
    assert card["versions"]["python"] == provenance.versions()["python"]


def test_a_study_names_the_commit_it_started_from(monkeypatch):
    """run_commit is read once: a commit made while a long study runs does not change what its card says."""
    from comparisons import provenance

    provenance.run_commit.cache_clear()
    states = iter([{"commit": "aaa", "dirty": True}, {"commit": "bbb", "dirty": False}])
    monkeypatch.setattr(provenance, "git_state", lambda *a: next(states))
    assert provenance.run_commit() == "aaa + uncommitted changes"
    assert provenance.run_commit() == "aaa + uncommitted changes"  # not bbb: the first reading stands
    provenance.run_commit.cache_clear()
