"""Shared helpers: run the real CLI in a subprocess, read its streams back."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
DATA = ROOT / "tests" / "data"
TFM = [sys.executable, "-m", "tfm.cli.main"]

# Cut graphs and hub downloads go to a cache of the test run's own, never a user's.
if "TFM_TEST_KEEP_CACHE" not in os.environ:
    import tempfile

    os.environ["TFM_CACHE"] = tempfile.mkdtemp(prefix="tfm-test-cache-")


def tfm(*args, input: bytes | str | None = None, timeout: float = 120, env: dict | None = None,
        check: bool = False) -> subprocess.CompletedProcess:
    """Run `tfm ARGS...` with stdin ``input``; stdout and stderr kept apart as bytes."""
    if isinstance(input, str):
        input = input.encode("utf-8")
    full_env = {**os.environ, "TFM_THREADS": "2", **(env or {})}
    full_env.pop("TFM_DEBUG", None)
    proc = subprocess.run(TFM + [str(a) for a in args], input=input if input is not None else b"",
                          capture_output=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"tfm {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


def json_records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


class _ReadOnly:
    """What a plain Python user would pass to read_array on a pipe: only .read."""

    def __init__(self, data: bytes):
        self.read = io.BytesIO(data).read


def npy_records(data: bytes) -> list[dict]:
    """Read a tfm NumPy stream with nothing but numpy.lib.format.read_array."""
    from numpy.lib.format import read_array

    f = _ReadOnly(data)
    out = []
    while True:
        try:
            head = read_array(f)
        except ValueError:
            break
        info = json.loads(head.tobytes())
        rec = dict(info["meta"])
        for name in info["tensors"]:
            rec[name] = read_array(f)
        out.append({k: rec[k] for k in info["fields"]})
    return out


@pytest.fixture(scope="session")
def minilm_ref():
    return np.load(DATA / "all-MiniLM-L6-v2.fp32-reference.npz")


def stderr_lines(proc) -> list[str]:
    return proc.stderr.decode("utf-8").splitlines()


@pytest.fixture(scope="session")
def wordpiece() -> str:
    return str(FIXTURES / "tokenizers" / "wordpiece.json")


@pytest.fixture(scope="session")
def tiny_bert() -> str:
    return str(FIXTURES / "tiny-bert")
