"""Man pages made from the one source of tfm's help.

    python -m tfm.cli._manpages            # write man/tfm.1, man/tfm-*.1, man/tfm-stream.5
    python -m tfm.cli._manpages --check    # write nothing; exit 1 if a page is out of date
    python -m tfm.cli._manpages --out DIR  # write (or check) DIR instead of man/

Run it whenever a docstring, an option's help or a MAN dict changes;
tests/test_manpages.py fails while a committed page is out of date.

Where each part of a page comes from:

* NAME: the command's docstring (its first paragraph, the same line that
  `tfm --help` lists);
* SYNOPSIS and OPTIONS: the click command that typer builds from the command
  function (`typer.main.get_command(build_app())`): option names, metavars,
  help texts, defaults and ranges;
* DESCRIPTION and EXAMPLES: the ``MAN`` dict of the command's module; other
  keys of that dict become extra sections before EXAMPLES;
* EXIT STATUS and ENVIRONMENT: the constants below, the same in every page;
* tfm(1): ``main.HELP``, ``main.COMMANDS`` and the group's options;
* tfm-stream(5): ``tfm.cli._streamdoc.MAN``.

MAN texts are plain text with a little structure, no roff:

* paragraphs are separated by blank lines;
* lines indented by 4 or more spaces are a literal block (formulas, code),
  printed as they are, unfilled; a block whose lines are all indented by 2 or
  more spaces is literal too (click's convention for examples in help text);
* a paragraph whose first line starts with "* " is a bullet list (an item's
  continuation lines are indented by 2 spaces);
* a paragraph whose first line is not indented and whose second line is
  indented by exactly 2 spaces is a definition list: unindented lines are
  terms, indented lines describe the term above them;
* in running text, `code` and option names (--pool, -f) are set in bold,
  and so are page references such as tfm-stream(5).

EXAMPLES in a command's MAN dict is one shell command per line, all literal.

The output is deterministic ASCII roff (man(7) macros): no date, the version
from pyproject.toml, every other character as a \\[uXXXX] escape.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
MAN_DIR = ROOT / "man"
MANUAL = "tfm manual"

EXIT_STATUS = """\
0
  All records succeeded.
1
  Some records failed; the run went on to the end (or stopped early with
  --fail-fast). Each failure was reported in one line on standard error and
  has an error record in the output (see tfm-stream(5)).
2
  Usage error or fatal error before any work: a bad option, an unreadable
  model or input file.
130
  Interrupted by SIGINT (Ctrl-C) or SIGTERM; a one-line summary goes to
  standard error and the last record written is complete."""

ENVIRONMENT = """\
TFM_DEBUG
  Any non-empty value shows a traceback with errors, like --debug.
TFM_THREADS
  CPU threads for the model when --threads is not given (default: all
  cores).
TFM_CACHE
  Folder for models fetched from the hub and for cached parts of model
  graphs (default: ~/.cache/tfm).
TFM_MAX_RECORD_BYTES
  The longest JSON Lines record accepted, in bytes (default: 33554432,
  32 MiB).
TFM_MAX_TEXT_BYTES
  The longest plain text line accepted, in bytes (default: 1048576, 1 MiB).
TFM_MAX_TENSOR_BYTES
  The largest array accepted from a NumPy stream, in bytes, checked before
  anything is allocated (default: 1073741824, 1 GiB).
TFM_MAX_ATTENTION_BYTES
  The largest attention weight tensor tfm attend computes in math mode,
  B*H*T*T_k*4 bytes, in math mode and for a model's layer (default:
  2147483648, 2 GiB).
HF_ENDPOINT
  Where --model org/name is fetched from: ENDPOINT/org/name/resolve/main/FILE
  (default: https://huggingface.co).
HF_TOKEN
  Sent as a bearer token when fetching, for private or gated models.
HF_HUB_OFFLINE
  When 1, models are taken from the cache only.
NO_COLOR
  When set, no colour is used. tfm colours output and draws progress only
  when standard error is a terminal; TERM=dumb is honoured too."""

# tfm(1): what the group's help does not say.  The command list comes from
# main.COMMANDS and each command's own help.
OVERVIEW = """\
Each command reads records from its input files or standard input and
writes records to standard output: one record out for each record in, in
order, flushed as soon as it is ready, so that tfm works in pipes,
interactively and on endless streams. Records travel as JSON Lines (the
default, readable by jq) or as a NumPy stream (-f npy); every command detects
the format of its input by itself, and the commands that take text also read
plain text lines. tfm-stream(5) specifies the format and its field names,
which follow Hugging Face Transformers (input_ids, attention_mask,
inputs_embeds, hidden_states, last_hidden_state, ...).

Data goes to standard output and nothing else does: warnings, progress,
summaries and errors go to standard error. A record that fails does not stop
the run: it is reported in one line on standard error and replaced by an
error record in the output (--fail-fast stops at the first one).

The options that several commands share mean the same in each: --model,
--device, --threads, --batch-size, --format, --output, --fail-fast, --quiet,
--verbose."""

OVERVIEW_EXAMPLES = """\
echo "A cat sits on the mat." | tfm tokenize | jq -c .tokens
echo "A cat sits on the mat." | tfm tokenize | tfm embed | tfm posenc | tfm attend --layer 0 | jq -c '.attentions[0][1]'
tfm encode --pool mean --normalize --no-hidden < sentences.txt > vectors.jsonl
tfm tokenize -f npy < sentences.txt | tfm encode -f npy > hidden.npy
tfm models"""


# --------------------------------------------------------------------------- roff text

_CHAR = {
    "\\": r"\(rs",
    "-": r"\-",  # a real minus: options and commands must copy and paste
    "'": r"\(aq",  # groff would print a closing quote
    "`": r"\(ga",
    "^": r"\(ha",
    "~": r"\(ti",
}


def esc(text: str) -> str:
    """Text safe to place anywhere in a roff line (macro arguments need quoting as well)."""
    out = []
    for ch in text:
        if ch in _CHAR:
            out.append(_CHAR[ch])
        elif ch == "\t":
            out.append(ch)
        elif ord(ch) > 126 or ord(ch) < 32:
            out.append(f"\\[u{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def line(text: str) -> str:
    """An escaped text line: a leading dot would be read as a request."""
    return "\\&" + text if text.startswith(".") else text


def bold(text: str) -> str:
    return rf"\fB{esc(text)}\fR"


def italic(text: str) -> str:
    return rf"\fI{esc(text)}\fR"


_INLINE = re.compile(
    r"`(?P<code>[^`\n]+)`"
    r"|(?<![\w\-./])(?P<opt>--?[A-Za-z][\w\-]*)"
    r"|\b(?P<page>tfm(?:-[a-z]+)?)\((?P<sect>[1-9])\)"
)
_ABBREV_AT_END = re.compile(r"\b(?:e\.g|i\.e|etc|cf)\.$")


def inline(text: str) -> str:
    """Running text: escaped, with code, options and page references in bold."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(esc(text[pos:m.start()]))
        if m.group("code") is not None:
            out.append(bold(m.group("code")))
        elif m.group("opt") is not None:
            out.append(bold(m.group("opt")))
        else:
            out.append(bold(m.group("page")) + f"({m.group('sect')})")
        pos = m.end()
    out.append(esc(text[pos:]))
    result = "".join(out)
    if _ABBREV_AT_END.search(text):
        result += "\\&"  # not the end of a sentence: no double space after it
    return line(result)


# --------------------------------------------------------------------------- markup


def _indent(s: str) -> int:
    return len(s) - len(s.lstrip(" "))


def _paragraphs(text: str) -> list[list[str]]:
    paras: list[list[str]] = [[]]
    for raw in text.split("\n"):
        raw = raw.rstrip()
        if raw:
            paras[-1].append(raw)
        elif paras[-1]:
            paras.append([])
    return [p for p in paras if p]


def parse(text: str) -> list[tuple[str, Any]]:
    """Blocks of a MAN text: ("prose", lines), ("literal", lines), ("bullets", items), ("terms", items)."""
    blocks: list[tuple[str, Any]] = []

    def add_literal(lines: list[str]) -> None:
        if blocks and blocks[-1][0] == "literal":
            blocks[-1][1].append("")  # a blank line inside a literal block
            blocks[-1][1].extend(lines)
        else:
            blocks.append(("literal", list(lines)))

    for para in _paragraphs(text):
        if all(_indent(s) >= 2 for s in para):
            add_literal(para)
        elif para[0].startswith("* "):
            items: list[list[str]] = []
            for s in para:
                if s.startswith("* "):
                    items.append([s[2:].strip()])
                elif items:
                    items[-1].append(s.strip())
            blocks.append(("bullets", items))
        elif len(para) >= 2 and _indent(para[0]) == 0 and _indent(para[1]) == 2:
            terms: list[tuple[str, list[str]]] = []
            for s in para:
                if _indent(s) == 0:
                    terms.append((s, []))
                else:
                    terms[-1][1].append(s.strip())
            blocks.append(("terms", terms))
        else:
            run: list[str] = []
            literal = False
            for s in para + [None]:  # type: ignore[list-item]
                is_literal = s is not None and _indent(s) >= 4
                if s is None or is_literal != literal:
                    if run:
                        if literal:
                            add_literal(run)
                        else:
                            blocks.append(("prose", run))
                    run, literal = [], is_literal
                if s is not None:
                    run.append(s)
    for i, (kind, lines) in enumerate(blocks):
        if kind == "literal":
            blocks[i] = (kind, _dedent(lines))
    return blocks


def _dedent(lines: list[str]) -> list[str]:
    return textwrap.dedent("\n".join(lines)).split("\n")


def render(text: str) -> list[str]:
    """roff lines for a MAN text placed right after a .SH."""
    out: list[str] = []
    first = True
    for kind, payload in parse(text):
        if kind == "prose":
            if not first:
                out.append(".PP")
            out.extend(inline(s.strip()) for s in payload)
        elif kind == "literal":
            if not first:
                out.append(".PP")
            out.extend(literal_block(payload))
        elif kind == "bullets":
            for item in payload:
                out.append(r".IP \(bu 2")
                out.extend(inline(s) for s in item)
        elif kind == "terms":
            for term, body in payload:
                term = term.strip()
                out.append(".TP")
                # a term with no markup of its own (TFM_DEBUG, 0) is set in bold as a whole
                out.append(inline(term) if _INLINE.search(term) else line(bold(term)))
                out.extend(inline(s) for s in body)
        first = False
    return out


def literal_block(lines: Iterable[str]) -> list[str]:
    out = [".RS 4", ".nf"]
    for s in lines:
        out.append(line(esc(s)) if s else "\\&")
    out += [".fi", ".RE"]
    return out


# --------------------------------------------------------------------------- click


def _unwrap(annotation: Any) -> Any:
    """The element type of Optional[X], List[X], Annotated[X, ...]."""
    import typing

    for _ in range(5):
        origin = typing.get_origin(annotation)
        if origin is None:
            return annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if not args:
            return annotation
        annotation = args[0]
    return annotation


def _kind(param: Any) -> str:
    """int, float, path, bool, choice or text: what a parameter takes."""
    ptype = getattr(param, "type", None)
    if ptype is not None:  # plain click (and older typer)
        if getattr(ptype, "choices", None):
            return "choice"
        name = str(getattr(ptype, "name", "")).lower()
        for key, kind in (("integer", "int"), ("float", "float"), ("path", "path"), ("file", "path"),
                          ("bool", "bool")):
            if key in name:
                return kind
        return "text"
    descriptor = getattr(param, "type_descriptor", None)
    annotation = _unwrap(getattr(descriptor, "annotation", str))
    import enum
    import pathlib

    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "bool"
        if issubclass(annotation, int):
            return "int"
        if issubclass(annotation, float):
            return "float"
        if issubclass(annotation, pathlib.PurePath):
            return "path"
        if issubclass(annotation, enum.Enum):
            return "choice"
    return "text"


def _choices(param: Any) -> list[str]:
    ptype = getattr(param, "type", None)
    if ptype is not None and getattr(ptype, "choices", None):
        return [str(getattr(c, "value", c)) for c in ptype.choices]
    annotation = _unwrap(getattr(getattr(param, "type_descriptor", None), "annotation", None))
    try:
        return [str(m.value) for m in annotation]  # an Enum
    except TypeError:
        return []


def metavar(param: Any) -> str:
    """The placeholder for an option's value: N for numbers, FILE for paths, else the name."""
    if getattr(param, "metavar", None):
        return str(param.metavar)
    kind = _kind(param)
    if kind == "int":
        return "N"
    if kind == "float":
        return "X"
    if kind == "path":
        return "FILE"
    if kind == "choice" and _choices(param):
        return "{" + "|".join(_choices(param)) + "}"
    opts = list(getattr(param, "opts", None) or [])
    name = _long(opts).lstrip("-") if opts else (param.name or "value")
    return name.upper().replace("_", "-")  # --format FORMAT, --model MODEL


def takes_value(param: Any) -> bool:
    return not (getattr(param, "is_flag", False) or getattr(param, "count", False))


def _range(param: Any) -> str:
    lo = getattr(param, "min", None)
    hi = getattr(param, "max", None)
    ptype = getattr(param, "type", None)
    if lo is None and hi is None and ptype is not None:
        lo, hi = getattr(ptype, "min", None), getattr(ptype, "max", None)
    if lo is not None and hi is not None:
        return f"From {lo} to {hi}."
    if lo is not None:
        return f"At least {lo}."
    if hi is not None:
        return f"At most {hi}."
    return ""


def _default(param: Any, ctx: Any) -> str:
    show = getattr(param, "show_default", None)
    if show is None:
        show = getattr(ctx, "show_default", None)
    if show is False or show is None:
        return ""
    if isinstance(show, str):
        return f"Default: {show}."
    default = param.default
    if callable(default) or default is None:
        return ""
    if getattr(param, "is_flag", False):
        secondary = getattr(param, "secondary_opts", None) or []
        if secondary:
            return f"Default: {_long(param.opts if default else secondary)}."
        return "Default: on." if default is True else ""
    if isinstance(default, (list, tuple)):
        if not default:
            return ""
        default = ", ".join(str(getattr(d, "value", d)) for d in default)
    default = getattr(default, "value", default)
    if default == "":
        return ""
    return f"Default: {default}."


def _long(opts: list[str]) -> str:
    longs = [o for o in opts if o.startswith("--")]
    return (longs or opts)[0]


def _sorted_opts(opts: list[str]) -> list[str]:
    return sorted(opts, key=lambda o: o.startswith("--"))  # -f before --format, like --help


def option_tag(param: Any) -> str:
    names = [bold(o) for o in _sorted_opts(list(param.opts))]
    names += [bold(o) for o in _sorted_opts(list(getattr(param, "secondary_opts", None) or []))]
    tag = ", ".join(names)
    if takes_value(param):
        tag += " " + italic(metavar(param))
    return line(tag)


def option_body(param: Any, ctx: Any) -> list[str]:
    help_text = " ".join((getattr(param, "help", None) or "").split())
    extras = []
    if getattr(param, "multiple", False) and "repeat" not in help_text.lower():
        extras.append("May be given more than once.")
    for extra in (_default(param, ctx), _range(param)):
        if extra:
            extras.append(extra)
    body = [inline(help_text)] if help_text else []
    body += [inline(e) for e in extras]
    return body or [inline("(no description)")]


def argument_placeholder(param: Any) -> str:
    """SYNOPSIS form of an argument, e.g. [INPUT]..."""
    if getattr(param, "metavar", None):
        return str(param.metavar)
    name = (param.name or "arg").upper()
    if param.nargs == -1:
        name += "..."
    return name if param.required else f"[{name}]"


def synopsis_text(text: str) -> str:
    """Placeholders (upper-case words) in italics, the rest as it is."""
    out, pos = [], 0
    for m in re.finditer(r"[A-Z][A-Z0-9_]*", text):
        out.append(esc(text[pos:m.start()]))
        out.append(italic(m.group()))
        pos = m.end()
    out.append(esc(text[pos:]))
    return line("".join(out))


def _params(command: Any, ctx: Any) -> list[Any]:
    try:
        params = command.get_params(ctx)  # with the help option
    except Exception:
        params = list(command.params)
    return [p for p in params if not getattr(p, "hidden", False)]


def _context(command: Any, name: str, parent: Any = None) -> Any:
    settings = dict(getattr(command, "context_settings", None) or {})
    try:
        return command.make_context(name, [], parent=parent, resilient_parsing=True)
    except Exception:
        return command.context_class(command, info_name=name, parent=parent, **settings)


def _help(command: Any) -> str:
    return inspect.cleandoc(command.help or "")


def short_help(command: Any) -> str:
    """The first paragraph of a command's help, on one line: the NAME line and `tfm --help` entry."""
    text = _help(command)
    first = text.split("\n\n")[0] if text else (getattr(command, "short_help", None) or "")
    return " ".join(first.split())


def _name_line(page: str, description: str) -> str:
    return line(f"{esc(page)} \\- {esc(description.rstrip('.'))}")


# --------------------------------------------------------------------------- pages


def version() -> str:
    """The version in pyproject.toml (what the next release is), else the installed one."""
    pyproject = ROOT / "pyproject.toml"
    if pyproject.is_file():
        text = pyproject.read_text(encoding="utf-8")
        project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.S | re.M)
        if project:
            m = re.search(r"^version\s*=\s*[\"']([^\"']+)[\"']", project.group(1), re.M)
            if m:
                return m.group(1)
    from tfm.cli.main import version as installed

    return installed()


def _th(title: str, section: int, ver: str) -> str:
    return f'.TH {esc(title.upper())} {section} "" "tfm {esc(ver)}" "{MANUAL}"'


_FALLBACK = {"\u221a": "sqrt", "\u00b7": "*", "\u2265": ">=", "\u2264": "<=", "\u2192": "->",
             "\u00d7": "x", "\u2212": "-", "\u2013": "-", "\u2014": "--", "\u2026": "...",
             "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2248": "~="}


def _fallback(ch: str) -> str | None:
    """ASCII for a character a device may lack: the superscript T of Kᵀ becomes ^T."""
    import unicodedata

    if ch in _FALLBACK:
        return _FALLBACK[ch]
    decomposition = unicodedata.decomposition(ch)
    plain = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if not plain or not plain.isascii() or plain == ch:
        return None
    return "^" + plain if decomposition.startswith("<super>") else plain


def _glyph_fallbacks(roff: str) -> list[str]:
    """.char requests so that devices without a glyph (-Tascii, PostScript) print ASCII instead."""
    out = []
    for code in sorted({int(h, 16) for h in re.findall(r"\\\[u([0-9A-F]{4,6})\]", roff)}):
        ch = chr(code)
        fallback = _fallback(ch)
        if fallback is not None:
            out.append(f".if !c\\[u{ord(ch):04X}] .char \\[u{ord(ch):04X}] {esc(fallback)}")
    return out


def _finish(lines: list[str]) -> str:
    """The page: the .TH line, then fallbacks for the characters it uses, then the rest."""
    # no hyphenation, ragged right: identifiers such as missing-field or tfm-attend(1)
    # must not be split or stretched
    setup = [".nh", ".ad l"]
    return "\n".join(lines[:1] + setup + _glyph_fallbacks("\n".join(lines)) + lines[1:]) + "\n"


def _section(title: str) -> str:
    return f'.SH "{title}"' if " " in title else f".SH {title}"


def _see_also(refs: list[tuple[str, int]]) -> list[str]:
    parts = [f"{bold(name)}({sect})" for name, sect in refs]
    return [line(", ".join(parts))]


def _commands() -> list[tuple[str, str | None, str]]:
    from tfm.cli import main

    return list(main.COMMANDS)


def _group():
    import typer

    from tfm.cli.main import build_app

    return typer.main.get_command(build_app())


def built_commands() -> list[tuple[str, Any]]:
    """(name, module) of every command whose module exists, in COMMANDS order."""
    out = []
    for name, module, _ in _commands():
        if module is not None:
            out.append((name, importlib.import_module(f"tfm.cli.{module}")))
    return out


def command_page(group: Any, group_ctx: Any, name: str, module: Any, ver: str) -> str:
    command = group.commands[name]
    ctx = _context(command, name, group_ctx)
    man = dict(getattr(module, "MAN", None) or {})
    params = _params(command, ctx)
    arguments = [p for p in params if getattr(p, "param_type_name", "") == "argument"]
    options = [p for p in params if getattr(p, "param_type_name", "") != "argument"]
    page = f"tfm-{name}"

    out = [_th(page, 1, ver)]
    out += [".SH NAME", _name_line(page, short_help(command))]

    out += [".SH SYNOPSIS", f".B tfm {esc(name)}"]
    usage = "[OPTION]..." if options else ""
    usage = " ".join([usage] + [argument_placeholder(p) for p in arguments]).strip()
    if usage:
        out.append(synopsis_text(usage))

    out.append(".SH DESCRIPTION")
    description = man.pop("DESCRIPTION", None)
    if description is None:  # no MAN text: the help beyond its first line, or the line itself
        rest = _help(command).split("\n\n", 1)
        description = rest[1] if len(rest) > 1 else short_help(command)
    out += render(description)

    out.append(".SH OPTIONS")
    for p in arguments:
        out += [".TP", synopsis_text(argument_placeholder(p))]
        out += option_body(p, ctx)
    for p in options:
        out += [".TP", option_tag(p)]
        out += option_body(p, ctx)

    out += [_section("EXIT STATUS")] + render(EXIT_STATUS)
    out += [".SH ENVIRONMENT"] + render(ENVIRONMENT)

    examples = man.pop("EXAMPLES", None)
    man.pop("SEE ALSO", None)
    for title, text in man.items():  # extra sections, e.g. NOTES
        out += [_section(title.upper())] + render(text)
    if examples:
        out += [".SH EXAMPLES"] + literal_block(_dedent(examples.strip("\n").split("\n")))

    refs = [("tfm", 1), ("tfm-stream", 5)] + [(f"tfm-{n}", 1) for n, _ in built_commands() if n != name]
    out += [_section("SEE ALSO")] + _see_also(refs)
    return _finish(out)


def overview_page(group: Any, group_ctx: Any, ver: str) -> str:
    from tfm.cli.main import HELP

    help_paras = inspect.cleandoc(HELP).split("\n\n")
    name_line = " ".join(help_paras[0].split())
    body = "\n\n".join(p for p in help_paras[1:] if not p.lstrip().startswith("See "))

    out = [_th("tfm", 1, ver)]
    out += [".SH NAME", _name_line("tfm", name_line)]
    out += [".SH SYNOPSIS",
            ".B tfm", synopsis_text("[--debug] COMMAND [OPTION]... [INPUT]..."), ".br",
            ".B tfm", synopsis_text("COMMAND --help"), ".br",
            ".B tfm", synopsis_text("--version")]
    out += [".SH DESCRIPTION"] + render(body + "\n\n" + OVERVIEW)

    out.append(".SH COMMANDS")
    built = dict(built_commands())
    for name, module, planned in _commands():
        command = group.commands.get(name)
        text = short_help(command) if command is not None else f"{planned} (not built yet)"
        out += [".TP", line(bold(f"tfm {name}"))]
        out.append(inline(text))
        if name in built:
            out.append(inline(f"See tfm-{name}(1)."))

    out.append(".SH OPTIONS")
    for p in _params(group, group_ctx):
        if getattr(p, "param_type_name", "") == "argument":
            continue
        out += [".TP", option_tag(p)] + option_body(p, group_ctx)

    out += [_section("EXIT STATUS")] + render(EXIT_STATUS)
    out += [".SH ENVIRONMENT"] + render(ENVIRONMENT)
    out += [".SH EXAMPLES"] + literal_block(OVERVIEW_EXAMPLES.split("\n"))
    refs = [("tfm-stream", 5)] + [(f"tfm-{n}", 1) for n in built]
    out += [_section("SEE ALSO")] + _see_also(refs)
    return _finish(out)


def stream_page(ver: str) -> str:
    from tfm.cli._streamdoc import MAN

    man = dict(MAN)
    out = [_th("tfm-stream", 5, ver)]
    out += [".SH NAME", _name_line("tfm-stream", man.pop("NAME", "the tfm record stream format"))]
    man.pop("SEE ALSO", None)
    for title, text in man.items():
        out += [_section(title.upper())] + render(text)
    refs = [("tfm", 1)] + [(f"tfm-{n}", 1) for n, _ in built_commands()]
    out += [_section("SEE ALSO")] + _see_also(refs)
    return _finish(out)


def pages() -> dict[str, str]:
    """File name -> roff text of every page, in a stable order."""
    ver = version()
    group = _group()
    group_ctx = _context(group, "tfm")
    out = {"tfm.1": overview_page(group, group_ctx, ver)}
    for name, module in built_commands():
        out[f"tfm-{name}.1"] = command_page(group, group_ctx, name, module, ver)
    out["tfm-stream.5"] = stream_page(ver)
    for name, text in out.items():
        text.encode("ascii")  # esc() leaves nothing else; fail loudly here if it ever does
    return out


def _stale(folder: Path, current: dict[str, str]) -> list[Path]:
    """Generated-looking pages that no longer have a source (e.g. a removed command)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if re.fullmatch(r"tfm(-[a-z0-9-]+)?\.[15]", p.name)]
    return sorted(p for p in found if p.name not in current)


def check(folder: Path) -> list[str]:
    """Problems with the pages in ``folder``: one line each; empty when all are current."""
    current = pages()
    problems = []
    for name, text in current.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: out of date")
    problems += [f"{p}: no longer generated (remove it)" for p in _stale(folder, current)]
    return problems


def write(folder: Path) -> list[Path]:
    """Write every page that changed; returns the paths written (or removed)."""
    current = pages()
    folder.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in current.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="\n")
            changed.append(path)
    for path in _stale(folder, current):
        path.unlink()
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfm.cli._manpages",
                                     description="Generate tfm's man pages from its help texts.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing the pages that are missing or out of date")
    parser.add_argument("--out", type=Path, default=MAN_DIR, help=f"folder of the pages (default: {MAN_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `python -m tfm.cli._manpages` to update the man pages", file=sys.stderr)
            return 1
        return 0
    for path in write(args.out):
        print(f"{'removed' if not path.exists() else 'wrote'} {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
