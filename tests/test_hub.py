"""--model org/name fetches an ONNX export from a hub; tested against a server on loopback."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import numpy as np
import pytest

from conftest import FIXTURES, json_records, stderr_lines, tfm


@pytest.fixture()
def hub(tmp_path):
    """A Hugging Face-style server: /ORG/NAME/resolve/main/FILE, ONNX under onnx/ as on the hub."""
    root = tmp_path / "hub"
    repo = root / "test-org" / "tiny-bert" / "resolve" / "main"
    shutil.copytree(FIXTURES / "tiny-bert-onnx-subdir", repo)
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "TFM_CACHE": str(tmp_path / "cache")}
    yield env, seen
    server.shutdown()


def test_fetch_once_then_use_the_cache(hub):
    env, seen = hub
    local = json_records(tfm("encode", "--model", FIXTURES / "tiny-bert", input="the cat\n", check=True).stdout)
    first = json_records(tfm("encode", "--model", "test-org/tiny-bert", input="the cat\n", env=env, check=True).stdout)
    np.testing.assert_array_equal(np.array(first[0]["last_hidden_state"]), np.array(local[0]["last_hidden_state"]))
    assert "/test-org/tiny-bert/resolve/main/onnx/model.onnx" in seen
    n = len(seen)
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    again = json_records(tfm("encode", "--model", "test-org/tiny-bert", input="the cat\n", env=offline, check=True).stdout)
    assert again == first and len(seen) == n


def test_unknown_hub_model_is_one_line(hub):
    env, _ = hub
    proc = tfm("encode", "--model", "test-org/nothing-here", input="x\n", env=env)
    assert proc.returncode == 2 and proc.stdout == b""
    [line] = stderr_lines(proc)
    assert line.startswith("tfm encode: error: model test-org/nothing-here: no config.json")


def test_offline_without_cache(hub, tmp_path):
    env, _ = hub
    proc = tfm("encode", "--model", "test-org/tiny-bert", input="x\n", env={**env, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "HF_HUB_OFFLINE" in proc.stderr.decode()
