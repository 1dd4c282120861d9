"""Fetching a model folder from a Hugging Face-style hub, once, into the cache.

`--model org/name` downloads the files an ONNX export needs from
``$HF_ENDPOINT/org/name/resolve/REVISION/FILE`` (default endpoint
https://huggingface.co, revision main; ``org/name@rev`` picks another) into
``$TFM_CACHE/hub/org--name/REVISION/``, keeping the repository's layout
(``onnx/model.onnx`` stays there).  ``$HF_TOKEN`` is sent when set;
``HF_HUB_OFFLINE=1`` uses the cache only.  Files are written under a temporary
name and renamed, so an interrupted download never leaves a half file behind.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tfm.core.errors import FatalError
from tfm.core.graph import cache_dir

# files by task: lists of alternatives (the first that exists is taken); "?" marks optional ones
TASK_FILES: dict[str, list[list[str]]] = {
    "feature-extraction": [["onnx/model.onnx", "model.onnx"], ["tokenizer.json"]],
    "image-classification": [["onnx/model.onnx", "model.onnx"], ["preprocessor_config.json"]],
    "text2text-generation": [["onnx/encoder_model.onnx", "encoder_model.onnx"],
                             ["onnx/decoder_model_merged.onnx", "decoder_model_merged.onnx",
                              "onnx/decoder_model.onnx", "decoder_model.onnx"], ["tokenizer.json"]],
}
OPTIONAL = ["tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
            "preprocessor_config.json", "onnx/model.onnx_data", "model.onnx_data",
            "onnx/decoder_with_past_model.onnx", "decoder_with_past_model.onnx"]
TIMEOUT = float(os.environ.get("TFM_HUB_TIMEOUT", 60))


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _download(url: str, target: Path) -> bool:
    """True if fetched, False on 404; anything else is fatal."""
    request = urllib.request.Request(url, headers={"User-Agent": "tfm"})
    token = os.environ.get("HF_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    tmp = target.parent / f".{target.name}.{os.getpid()}.part"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response, open(tmp, "wb") as out:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        os.replace(tmp, target)
        return True
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise FatalError(f"cannot fetch {url}: HTTP {e.code} {e.reason}"
                         + (" (set HF_TOKEN for a private or gated model)" if e.code in (401, 403) else "")) from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise FatalError(f"cannot fetch {url}: {reason}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch(model_id: str, task: str = "feature-extraction") -> Path:
    """The local folder of a hub model, downloaded on first use."""
    repo, _, revision = model_id.partition("@")
    revision = revision or "main"
    folder = cache_dir() / "hub" / repo.replace("/", "--") / revision
    done = folder / ".complete"
    if done.is_file():
        return folder
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "yes"):
        raise FatalError(f"model {model_id} is not in the cache ({folder}) and HF_HUB_OFFLINE is set")
    base = f"{_endpoint()}/{urllib.parse.quote(repo)}/resolve/{urllib.parse.quote(revision, safe='')}"
    if not _download(f"{base}/config.json", folder / "config.json"):
        raise FatalError(f"model {model_id}: no config.json at {base}; is the id right?")
    for alternatives in TASK_FILES.get(task, TASK_FILES["feature-extraction"]):
        if not any(_download(f"{base}/{name}", folder / name) for name in alternatives):
            raise FatalError(f"model {model_id}: none of {', '.join(alternatives)} found at {base} "
                             "(tfm needs an ONNX export, e.g. made with optimum-cli export onnx)")
    for name in OPTIONAL:
        if not (folder / name).exists():
            _download(f"{base}/{name}", folder / name)
    done.write_text(model_id + "\n")
    return folder
