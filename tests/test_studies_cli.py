"""The studies command: every sub-command parses, and the examples in the studies' docs are accepted."""

import importlib
import re
import shlex
import subprocess
import sys

import pytest

from comparisons.studies.cli import SUB_COMMANDS, build_parser

STUDY_MODULES = ["steps", "spread", "cascade", "reconstruction", "perception", "scales", "uncertainty"]


def doc_examples(module_name: str) -> list[str]:
    """The ``python -m comparisons.studies ...`` commands of a module's docstring (continuation lines joined)."""
    doc = importlib.import_module(f"comparisons.studies.{module_name}").__doc__
    joined = re.sub(r"\\\n\s*", " ", doc)
    return [m.strip() for m in re.findall(r"python -m comparisons\.studies [^\n]+", joined)]


@pytest.mark.parametrize("module_name", STUDY_MODULES)
def test_the_documented_example_parses(module_name):
    (example,) = doc_examples(module_name)
    args = build_parser().parse_args(shlex.split(example)[3:])  # argparse exits on a flag it rejects
    assert args.study == module_name


def test_a_rejected_flag_is_caught(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["steps", "--models", "a", "--scale", "4", "--steps", "1,2", "--data", "d", "--out", "o"]
        )
    assert "invalid int value" in capsys.readouterr().err  # --steps is the run-wide count, not a list


@pytest.mark.slow
def test_python_m_lists_every_sub_command():
    out = subprocess.run(
        [sys.executable, "-m", "comparisons.studies", "--help"], capture_output=True, text=True, check=True
    ).stdout
    # every study has a module; ``presets`` reads a perception run's CSV (the perception module's)
    assert all(name in out for name in SUB_COMMANDS) and set(SUB_COMMANDS) == {*STUDY_MODULES, "presets"}


def test_the_shipped_steps_table_has_only_columns_the_study_writes():
    from pathlib import Path

    from comparisons.records import read_csv
    from comparisons.studies.steps import COLUMNS

    path = Path(__file__).resolve().parent.parent / "assets" / "studies" / "steps" / "steps.csv"
    rows = read_csv(path)
    assert list(rows[0]) == [c for c in COLUMNS if c in rows[0]]  # a subset, in the writer's order
    assert {"steps", "dataset", "model", "psnr_y"} <= set(rows[0]) and all(r["steps"] >= 1 for r in rows)


def test_presets_come_only_from_a_validation_run(tmp_path, capsys):
    import json

    from comparisons.studies.cli import main

    (tmp_path / "perception.csv").write_text("dataset,model,family,steps,eta,seeds,psnr_y,swd,nfe\n")
    (tmp_path / "run_card.json").write_text(json.dumps({"command": "python -m comparisons.studies perception"}))
    assert main(["presets", "--csv", str(tmp_path / "perception.csv"), "--models", "bicubic"]) == 2
    assert "not a run on the validation split" in capsys.readouterr().err
