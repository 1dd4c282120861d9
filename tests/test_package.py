"""Packaging: installed as tfm.cli / tfm.core / tfm.models, nothing bare in site-packages."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def config():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    setup = config()["tool"]["setuptools"]
    listed = set(setup["packages"])
    mapping = setup["package-dir"]
    found = set()
    for top in ("cli", "core", "models"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join(["tfm", top, *rel.parts]))
    assert found == listed, f"folders with __init__.py {sorted(found)} vs pyproject packages {sorted(listed)}"
    for name in listed:
        assert name.startswith("tfm."), f"{name} would be a bare top-level package"
        top = name.split(".")[1]
        assert mapping[f"tfm.{top}"] == top


def test_embedded_model_files_are_package_data():
    import fnmatch

    patterns = config()["tool"]["setuptools"]["package-data"]["tfm.models"]
    for f in (ROOT / "models").rglob("*"):
        if f.is_file() and f.parent != ROOT / "models" and "recipes" not in f.parts and "__pycache__" not in f.parts:
            rel = str(f.relative_to(ROOT / "models"))
            assert any(fnmatch.fnmatch(rel, p) for p in patterns), f"{rel} would be left out of the wheel"


def test_manifest_checksums_match_the_shipped_files():
    import hashlib
    import json

    for manifest in (ROOT / "models").glob("*/tfm-model.json"):
        info = json.loads(manifest.read_text())
        for name, digest in info["files"].items():
            assert hashlib.sha256((manifest.parent / name).read_bytes()).hexdigest() == digest, name
        assert {"name", "task", "source", "licence"} <= set(info)


def test_embedded_models_stay_lean():
    total = sum(f.stat().st_size for f in (ROOT / "models").rglob("*") if f.is_file())
    assert total < 120e6, f"embedded models take {total / 1e6:.1f} MB"


def test_imports_as_tfm():
    import tfm.cli.main
    import tfm.core.stream
    import tfm.models

    assert Path(tfm.core.stream.__file__).parent.name == "core"
    assert "core" not in sys.modules and "cli" not in sys.modules
