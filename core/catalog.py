"""What `tfm models` shows: the embedded models and their manifests."""

from __future__ import annotations

import sys

from tfm.core.errors import FatalError


def describe() -> list[dict]:
    from tfm import models

    rows = []
    for name, folder in models.embedded().items():
        info = models.manifest(folder)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        defaults = sorted(k for k, v in models.DEFAULTS.items() if v == name)
        rows.append({
            "name": name,
            "task": info.get("task", ""),
            "default": bool(defaults),
            "size_mb": round(size / 1e6, 1),
            "summary": info.get("summary", "") + _scores(info.get("scores")),
            "source": _source(info.get("source", "")),
            "licence": info.get("licence", ""),
            "path": str(folder),
        })
    return rows


def _scores(scores) -> str:
    """A translation model's held-out scores, next to the copy-the-source baseline."""
    if not scores or "chrf_beam4" not in scores:
        return ""
    return (f". Held-out test split, beam 4: chrF {scores['chrf_beam4']}, BLEU {scores['bleu_beam4']} "
            f"(copying the source: {scores['chrf_copy_baseline']}, {scores['bleu_copy_baseline']})")


def _source(source) -> str:
    if isinstance(source, dict):
        text = source.get("upstream", "")
        if source.get("package"):
            text += f" (from PyPI {source['package']} {source.get('package_version', '')})".replace(" )", ")")
        return text
    return str(source)


def list_models(fmt: str) -> None:
    rows = describe()
    if fmt == "json":
        import json

        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    if fmt != "table":
        raise FatalError("--format must be table or json")
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False)
    for col in ("name", "task", "size", "licence", "source"):
        table.add_column(col, overflow="fold")
    for row in rows:
        star = " *" if row["default"] else ""
        table.add_row(row["name"] + star, row["task"], f"{row['size_mb']} MB", row["licence"], row["source"])
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120)
    console.print(table)
    for row in rows:
        console.print(f"{row['name']}: {row['summary']}", highlight=False)
    console.print("* default for its task", highlight=False)
