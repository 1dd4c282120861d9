"""The one place that creates onnxruntime sessions.

``--device`` names map to execution providers.  ``auto`` takes the best one
this onnxruntime build offers; a device that is named explicitly but is not
available is an error, never a silent fallback to the CPU.  Sessions are built
once per process and cached by (graph, device, threads, optimisation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfm.core.errors import FatalError

# device name -> the execution providers it needs, best first
DEVICES: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
    "rocm": ["ROCMExecutionProvider"],
    "migraphx": ["MIGraphXExecutionProvider"],
    "dml": ["DmlExecutionProvider"],
    "coreml": ["CoreMLExecutionProvider"],
    "openvino": ["OpenVINOExecutionProvider"],
}
# what `auto` tries, in order (TensorRT builds engines for minutes: ask for it by name)
AUTO_ORDER = ["cuda", "rocm", "migraphx", "dml", "coreml", "cpu"]

DEVICE_HELP = "Where to run: auto, " + ", ".join(DEVICES) + "."


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_device(device: str) -> tuple[str, list[str]]:
    """(device name, providers) for a --device value."""
    device = (device or "auto").lower()
    have = set(available_providers())
    if device == "auto":
        for name in AUTO_ORDER:
            if all(p in have for p in DEVICES[name]):
                return name, DEVICES[name] + (["CPUExecutionProvider"] if name != "cpu" else [])
        raise FatalError("onnxruntime offers no execution provider")
    if device not in DEVICES:
        raise FatalError(f"unknown device {device!r}; choose auto, {', '.join(DEVICES)}")
    missing = [p for p in DEVICES[device] if p not in have]
    if missing:
        raise FatalError(
            f"device {device!r} is not available: this onnxruntime offers {', '.join(sorted(have))}"
            + (" (install onnxruntime-gpu instead of onnxruntime for CUDA)" if device in ("cuda", "tensorrt") else "")
        )
    # CPU stays as the home of the few operators a GPU provider lacks.
    return device, DEVICES[device] + (["CPUExecutionProvider"] if device != "cpu" else [])


class Engine:
    """Builds and caches sessions for one device/thread setting."""

    _cache: dict[tuple, Any] = {}

    def __init__(self, device: str = "auto", threads: int | None = None, verbose: bool = False):
        self.device, self.providers = resolve_device(device)
        if threads is not None and threads < 1:
            raise FatalError("--threads must be at least 1")
        self.threads = threads
        self.verbose = verbose
        self._told = False

    def _options(self, optimize: bool):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        # Taps need the graph's own tensors: fusions would hide them.
        so.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        )
        return so

    def session(self, model: Path | bytes, key: str | None = None, *, optimize: bool = True):
        """An InferenceSession for a model file, or for a serialized graph with a cache key."""
        import onnxruntime as ort

        if key is None:
            key = str(model)
        cache_key = (key, tuple(self.providers), self.threads, optimize)
        sess = self._cache.get(cache_key)
        if sess is not None:
            return sess
        source = model if isinstance(model, bytes) else str(model)
        try:
            sess = ort.InferenceSession(source, sess_options=self._options(optimize), providers=self.providers)
        except Exception as e:  # onnxruntime raises its own exception types
            name = "graph" if isinstance(model, bytes) else str(model)
            raise FatalError(f"cannot load {name}: {str(e).strip().splitlines()[0][:300]}") from None
        got = sess.get_providers()
        if self.providers[0] not in got:
            raise FatalError(f"device {self.device!r}: onnxruntime could not start {self.providers[0]}")
        if self.verbose and not self._told:
            from tfm.core.process import say

            say(f"running on {self.device} ({', '.join(got)})")
            self._told = True
        self._cache[cache_key] = sess
        return sess


def default_threads() -> int | None:
    value = os.environ.get("TFM_THREADS")
    return int(value) if value else None
