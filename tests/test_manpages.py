"""Help, man pages and the command surface come from one source and stay in step."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TFM

from tfm.cli import _manpages as M
from tfm.cli.main import COMMANDS

MAN_DIR = ROOT / "man"
ALL_COMMANDS = [name for name, _, _ in COMMANDS]
MISSION = ["tokenize", "embed", "posenc", "attend", "encode", "translate", "patchify", "classify"]
BUILT = [name for name, module, _ in COMMANDS if module is not None]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def group():
    return M._group()


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return M.pages()


def test_committed_man_pages_are_current():
    proc = run(sys.executable, "-m", "tfm.cli._manpages", "--check")
    assert proc.returncode == 0, (
        "man pages are out of date; run `python -m tfm.cli._manpages` and commit man/:\n"
        + proc.stderr.decode()
    )
    assert proc.stdout == b""


def test_check_names_a_stale_page(tmp_path):
    assert run(sys.executable, "-m", "tfm.cli._manpages", "--out", str(tmp_path)).returncode == 0
    assert run(sys.executable, "-m", "tfm.cli._manpages", "--check", "--out", str(tmp_path)).returncode == 0
    page = tmp_path / "tfm-encode.1"
    page.write_text(page.read_text() + ".\\\" edited by hand\n")
    (tmp_path / "tfm-embed.1").unlink()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = run(sys.executable, "-m", "tfm.cli._manpages", "--check", "--out", str(tmp_path))
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "tfm-encode.1: out of date" in err
    assert "tfm-embed.1: missing" in err
    assert "python -m tfm.cli._manpages" in err
    assert proc.stdout == b""
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # --check writes nothing


def test_generator_is_deterministic_ascii_without_dates(pages):
    assert M.pages() == pages
    for name, text in pages.items():
        text.encode("ascii")
        first = text.split("\n", 1)[0]
        assert re.fullmatch(r'\.TH \S+ [15] "" "tfm [^"]+" "tfm manual"', first), (name, first)
        assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), name


def test_every_built_command_has_a_page_with_all_its_options(group, pages):
    assert {f"tfm-{name}.1" for name in BUILT} | {"tfm.1", "tfm-stream.5"} == set(pages)
    for name in BUILT:
        path = MAN_DIR / f"tfm-{name}.1"
        assert path.is_file(), f"{path} missing: run `python -m tfm.cli._manpages`"
        text = path.read_text()
        command = group.commands[name]
        assert M.esc(M.short_help(command).rstrip(".")) in text.split(".SH SYNOPSIS")[0], name
        ctx = M._context(command, name)
        for param in M._params(command, ctx):
            if param.param_type_name == "argument":
                continue
            for opt in list(param.opts) + list(getattr(param, "secondary_opts", None) or []):
                assert M.bold(opt) in text, f"tfm-{name}.1 lacks {opt}"
            if param.help:
                assert M.inline(" ".join(param.help.split())) in text, f"tfm-{name}.1: help of {param.opts[0]}"
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", '"EXIT STATUS"', "ENVIRONMENT",
                        "EXAMPLES", '"SEE ALSO"'):
            assert f"\n.SH {section}\n" in text, f"tfm-{name}.1 lacks {section}"


def test_overview_lists_every_command_with_its_help(group, pages):
    text = pages["tfm.1"]
    for name in ALL_COMMANDS:
        assert M.bold(f"tfm {name}") in text
        assert M.esc(M.short_help(group.commands[name])) in text
    for opt in ("--version", "--debug", "--help"):
        assert M.bold(opt) in text


def test_exit_status_and_environment_are_in_every_page(pages):
    for name, text in pages.items():
        if name.endswith(".1"):
            for code in ("0", "1", "2", "130"):
                assert f".TP\n\\fB{code}\\fR\n" in text, (name, code)
            for var in ("TFM_DEBUG", "TFM_THREADS", "TFM_CACHE", "TFM_MAX_RECORD_BYTES", "TFM_MAX_TEXT_BYTES",
                        "TFM_MAX_TENSOR_BYTES", "TFM_MAX_ATTENTION_BYTES", "NO_COLOR"):
                assert M.bold(var) in text, (name, var)


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_command_help_exits_0(command):
    proc = run(*TFM, command, "--help")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().startswith(f"Usage: tfm {command} ")
    assert proc.stderr == b""


def test_main_help_lists_the_mission_commands():
    proc = run(*TFM, "--help")
    assert proc.returncode == 0, proc.stderr.decode()
    listed = re.findall(r"^  (\w+) ", proc.stdout.decode().split("Commands:", 1)[1], re.M)
    for name in MISSION:
        assert name in listed, f"tfm --help does not list {name}"


def test_version():
    proc = run(*TFM, "--version")
    assert proc.returncode == 0
    assert proc.stdout.decode() == f"tfm {importlib.metadata.version('tfm')}\n"
    assert re.fullmatch(r"tfm \S+\n", proc.stdout.decode())


def test_help_starts_fast():
    """`tfm --help` must not import the heavy modules (numpy, onnxruntime, onnx, PIL).

    Wall time on a busy machine says little, so the guard is the CPU time the
    process used (best of 3), which a heavy import at module level would blow.
    """
    import resource

    cpu, wall = [], []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = run(*TFM, "--help")
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert proc.returncode == 0
    check = run(sys.executable, "-c", "import sys, tfm.cli.main as m; m.build_app(); "
                "print(sorted(k for k in ('numpy', 'onnxruntime', 'onnx', 'PIL', 'tokenizers') if k in sys.modules))")
    assert check.stdout.decode().strip() == "[]", f"heavy modules imported by the CLI start: {check.stdout.decode()}"
    assert min(cpu) < 0.5, f"`tfm --help` used {min(cpu):.3f} s of CPU at best of 3 (wall {min(wall):.3f} s)"


def test_stream_page_has_python_jq_and_magic(pages):
    text = pages["tfm-stream.5"]
    assert (MAN_DIR / "tfm-stream.5").read_text() == text
    assert "read_array" in text
    assert "jq " in text
    assert M.esc("\\x93NUMPY") == r"\(rsx93NUMPY"
    assert r"\(rsx93NUMPY" in text
    for field in ("input_ids", "attention_mask", "token_type_ids", "inputs_embeds", "hidden_states", "seam",
                  "last_hidden_state", "sentence_embedding", "attentions", "attention_output", "context",
                  "position_encoding", "pixel_values", "logits"):
        assert M.bold(field) in text, field
    for word in ("TFM_MAX_RECORD_BYTES", "TFM_MAX_TENSOR_BYTES", "self.read = f.read", '"ok": false'):
        assert M.esc(word) in text, word


def _example_lines() -> list[tuple[str, str]]:
    """(where, line) for every literal line that may hold a tfm command."""
    import importlib

    from tfm.cli import _streamdoc

    texts = [("tfm-stream(5)", t) for t in _streamdoc.MAN.values()]
    texts.append(("tfm(1)", "\n".join("    " + s for s in M.OVERVIEW_EXAMPLES.split("\n"))))
    for name, module, _ in COMMANDS:
        if module is not None:
            man = getattr(importlib.import_module(f"tfm.cli.{module}"), "MAN", {})
            texts += [(f"tfm-{name}(1)", man.get("DESCRIPTION", ""))]
            texts += [(f"tfm-{name}(1)", "\n".join("    " + s for s in man.get("EXAMPLES", "").split("\n")))]
    out = []
    for where, text in texts:
        for kind, lines in M.parse(text):
            if kind == "literal":
                out += [(where, s) for s in lines if re.search(r"\btfm ", s)]
    return out


def test_examples_use_only_options_that_exist(group):
    lines = _example_lines()
    assert len(lines) > 20
    options = {}
    for name, command in group.commands.items():
        ctx = M._context(command, name)
        options[name] = {o for p in M._params(command, ctx)
                         for o in list(p.opts) + list(getattr(p, "secondary_opts", None) or [])}
    for where, text in lines:
        try:
            lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = list(lexer)
        except ValueError:
            continue
        for i, word in enumerate(words):
            if word != "tfm" or i + 1 >= len(words) or words[i + 1] not in options:
                continue
            command = words[i + 1]
            for arg in words[i + 2:]:
                if arg and set(arg) <= set("|&;<>()"):
                    break
                if arg.startswith("-") and arg != "-":
                    assert arg.split("=")[0] in options[command], f"{where}: `{text}`: tfm {command} has no {arg}"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("device", ["utf8", "ascii"])
def test_pages_render_without_warnings(device):
    for path in sorted(MAN_DIR.iterdir()):
        proc = run("groff", "-man", f"-T{device}", "-ww", "-z", str(path))
        assert proc.returncode == 0 and proc.stderr == b"", f"{path.name}: {proc.stderr.decode()}"
