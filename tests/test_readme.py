"""The README is a newcomer's map: every path and module it names must exist in the tree."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TOP = ("sr_models/", "comparisons/", "ui/", "tests/", "assets/", "scripts/", ".ci/")
PLACEHOLDERS = ("OUT", "DIR", "FOLDER", "*")


def named_paths(text: str) -> set[str]:
    """Repository paths in backticks or code blocks: tokens starting with a top-level folder, or top-level files."""
    fences = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", " ", text, flags=re.S))
    tokens = re.findall(r"[\w./*-]+", " ".join(fences + inline))
    paths = {t.rstrip(".,:") for t in tokens if t.startswith(TOP)}
    paths |= {t for t in tokens if re.fullmatch(r"[A-Z]+\.md|requirements[\w-]*\.txt|pyproject\.toml|app\.py", t)}
    return {p for p in paths if not any(h in p for h in PLACEHOLDERS)}


def named_modules(text: str) -> set[str]:
    return set(re.findall(r"python -m ((?:sr_models|comparisons|ui)(?:\.\w+)+)", text))


def module_exists(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file() or (base / "__init__.py").is_file()


def test_every_path_the_readme_names_exists():
    paths = named_paths(README)
    assert len(paths) > 10, "the README should name the layout's paths"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README names paths that do not exist: {missing}"


def test_every_command_module_the_readme_names_exists():
    modules = named_modules(README)
    assert "sr_models.train" in modules and "comparisons.benchmark" in modules
    missing = sorted(m for m in modules if not module_exists(m))
    assert not missing, f"README runs modules that do not exist: {missing}"


def test_checker_catches_a_missing_path():
    assert "sr_models/no_such_module.py" in named_paths("see `sr_models/no_such_module.py` here")
    assert "CONTRIBUTING.md" in named_paths("```bash\ncat CONTRIBUTING.md\n```")
    assert not module_exists("comparisons.no_such_command")
