#!/usr/bin/env python3
"""Build an English <-> Simplified Chinese parallel corpus from Debian gettext catalogs.

Build-time only (standard library only). Nothing here is imported by tfm at run time.

The human translations that Debian packages install as ``.mo`` catalogs under
``/usr/share/locale/zh_CN/LC_MESSAGES/`` (and a few other zh_CN locale folders,
see ``CATALOG_GLOBS``) are read with ``gettext.GNUTranslations``. Each pair keeps
the catalog's domain (the ``.mo`` file name, i.e. the package's text domain): the
data are under the licences of the respective packages (mostly GPL/LGPL).

Steps:

1. extract every (msgid, msgstr) pair; plural entries: the singular msgid with
   plural form 0; the catalog header (empty msgid) is skipped;
2. clean: strip accelerator marks (``_File`` / ``&File`` -> ``File``, the zh_CN
   suffixes ``(_F)`` / ``(&F)``), normalise whitespace, drop pairs whose target is
   empty or equal to the source, whose format placeholders (``%s``, ``%d``,
   ``%1$s``, ``{0}``, ``{name}``, ``%(name)s`` ...) differ as multisets
   (positional ``N$`` ignored), longer than 200 or shorter than 2 characters on
   either side, or with no CJK character on the Chinese side;
3. deduplicate (source, target), then resolve one source -> several targets by
   keeping the most frequent (ties: the shortest, then alphabetical);
4. split by source message (English text, lower-cased, whitespace-normalised)
   with a seeded sha256 hash: ``--test`` messages (default 1,000), ``--dev``
   (500), the rest train. All case variants of an English message fall in the
   same split, so no test English message is ever seen in training in either
   direction;
5. write ``train.tsv``, ``dev.tsv``, ``test.tsv`` (columns: en, zh, domain;
   tabs/newlines cannot occur after whitespace normalisation) and ``stats.json``
   to ``--out`` (default /work/train/corpus; the corpus is not shipped).

Usage::

    python models/recipes/gettext_corpus.py [--out /work/train/corpus]
"""

from __future__ import annotations

import argparse
import glob
import gettext
import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

CATALOG_GLOBS = [
    "/usr/share/locale/zh_CN/LC_MESSAGES/*.mo",
    "/usr/share/locale-langpack/zh_CN/LC_MESSAGES/*.mo",
    "/usr/share/vim/vim*/lang/zh_CN.UTF-8/LC_MESSAGES/*.mo",
]
SEED = "tfm-gettext-zh-v1"
MAX_CHARS = 200
MIN_CHARS = 2

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# zh_CN accelerator suffixes such as "文件(_F)", "打开(&O)", fullwidth "（_F）", with an
# optional trailing "..." / "…" / ":" kept.
ZH_ACCEL = re.compile(r"\s*[(（][_&]([A-Za-z0-9])[)）]")
PRINTF = re.compile(
    r"%(?:\d+\$)?[-+ #0']*(?:\*(?:\d+\$)?|\d+)?(?:\.(?:\*(?:\d+\$)?|\d+))?"
    r"(?:hh|h|ll|l|L|q|j|z|Z|t|I64|I32|I)?[diouxXeEfFgGaAcCsSpnm]"
)
PRINTF_POS = re.compile(r"^%\d+\$")
PY_NAMED = re.compile(r"%\([A-Za-z_][A-Za-z0-9_]*\)[-+ #0]*\d*(?:\.\d+)?[diouxXeEfFgGcrs]")
BRACE = re.compile(r"\{[A-Za-z0-9_]*(?::[^{}]*)?\}")
QT_ARG = re.compile(r"%\d+(?!\$)")


def catalogs() -> list[Path]:
    seen: dict[bytes, Path] = {}
    for pattern in CATALOG_GLOBS:
        for f in sorted(glob.glob(pattern)):
            p = Path(f)
            data = p.read_bytes()
            key = hashlib.sha256(data).digest()
            if key in seen:  # the same catalog installed twice (e.g. vim's encodings)
                continue
            seen[key] = p
    return list(seen.values())


def extract(paths: list[Path]) -> list[tuple[str, str, str]]:
    """(msgid, msgstr, domain) for every non-header entry."""
    out = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                t = gettext.GNUTranslations(f)
        except Exception as exc:  # pragma: no cover - malformed catalog
            print(f"warning: skipping {p}: {exc}", file=sys.stderr)
            continue
        domain = p.stem
        for key, value in t._catalog.items():
            if isinstance(key, tuple):
                msgid, n = key
                if n != 0:
                    continue
            else:
                msgid = key
            if not msgid:  # header
                continue
            out.append((msgid, value, domain))
    return out


def strip_accelerators(s: str, zh: bool) -> str:
    if zh:
        s = ZH_ACCEL.sub("", s)
    # a single mnemonic "_" or "&" in front of a letter/digit
    if s.count("_") == 1:
        s = re.sub(r"_(?=[^\W_])", "", s)
    if s.count("&") == 1 and not re.search(r"&[a-z]+;|&#\d+;", s):
        s = re.sub(r"&(?=[^\W_])", "", s)
    return s


def normalise_ws(s: str) -> str:
    return " ".join(s.split())


def placeholders(s: str) -> Counter:
    found = []
    t = s.replace("%%", "")
    for m in PY_NAMED.finditer(t):
        found.append(m.group(0))
    t = PY_NAMED.sub("", t)
    for m in PRINTF.finditer(t):
        found.append(PRINTF_POS.sub("%", m.group(0)))
    t = PRINTF.sub("", t)
    for m in QT_ARG.finditer(t):
        found.append(m.group(0))
    for m in BRACE.finditer(s):
        found.append(m.group(0))
    return Counter(found)


def clean(pairs, stats: Counter):
    kept = []
    for en, zh, dom in pairs:
        en2 = normalise_ws(strip_accelerators(en, zh=False))
        zh2 = normalise_ws(strip_accelerators(zh, zh=True))
        if not zh2:
            stats["drop_empty_target"] += 1
        elif zh2 == en2:
            stats["drop_identical"] += 1
        elif not (MIN_CHARS <= len(en2) <= MAX_CHARS and MIN_CHARS <= len(zh2) <= MAX_CHARS):
            stats["drop_length"] += 1
        elif not CJK.search(zh2):
            stats["drop_no_cjk"] += 1
        elif placeholders(en2) != placeholders(zh2):
            stats["drop_placeholders"] += 1
        else:
            kept.append((en2, zh2, dom))
    return kept


def dedup(pairs, stats: Counter):
    """Unique (en, zh); one target per source (most frequent, then shortest)."""
    by_pair: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for en, zh, dom in pairs:
        by_pair[(en, zh)][dom] += 1
    stats["unique_pairs"] = len(by_pair)
    by_src: dict[str, list] = defaultdict(list)
    for (en, zh), doms in by_pair.items():
        by_src[en].append((sum(doms.values()), zh, doms))
    out = []
    for en, cands in by_src.items():
        cands.sort(key=lambda c: (-c[0], len(c[1]), c[1]))
        n, zh, doms = cands[0]
        if len(cands) > 1:
            stats["sources_with_several_targets"] += 1
        out.append((en, zh, doms.most_common(1)[0][0]))
    stats["unique_sources"] = len(out)
    return out


def split_key(en: str) -> str:
    return normalise_ws(en).lower()


def split(pairs, n_test: int, n_dev: int):
    keys = sorted({split_key(en) for en, _, _ in pairs},
                  key=lambda k: hashlib.sha256((SEED + "\0" + k).encode()).hexdigest())
    test_keys = set(keys[:n_test])
    dev_keys = set(keys[n_test:n_test + n_dev])
    parts = {"train": [], "dev": [], "test": []}
    for p in pairs:
        k = split_key(p[0])
        parts["test" if k in test_keys else "dev" if k in dev_keys else "train"].append(p)
    for v in parts.values():
        v.sort(key=lambda p: hashlib.sha256((SEED + "\1" + p[0] + "\t" + p[1]).encode()).hexdigest())
    return parts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/work/train/corpus"))
    ap.add_argument("--test", type=int, default=1000, help="test messages (default 1000)")
    ap.add_argument("--dev", type=int, default=500, help="dev messages (default 500)")
    args = ap.parse_args(argv)

    paths = catalogs()
    raw = extract(paths)
    stats: Counter = Counter()
    stats["catalogs"] = len(paths)
    stats["raw_pairs"] = len(raw)
    cleaned = clean(raw, stats)
    stats["clean_pairs"] = len(cleaned)
    final = dedup(cleaned, stats)
    parts = split(final, args.test, args.dev)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in parts.items():
        with open(args.out / f"{name}.tsv", "w", encoding="utf-8") as f:
            for en, zh, dom in rows:
                f.write(f"{en}\t{zh}\t{dom}\n")
        stats[f"{name}_pairs"] = len(rows)
        stats[f"{name}_messages"] = len({split_key(r[0]) for r in rows})
    raw_domains = Counter(d for _, _, d in raw)
    final_domains = Counter(d for _, _, d in final)
    info = {
        "stats": dict(stats),
        "catalog_files": [str(p) for p in paths],
        "top_domains_raw": raw_domains.most_common(30),
        "top_domains_final": final_domains.most_common(30),
        "n_domains": len(final_domains),
        "seed": SEED,
    }
    (args.out / "stats.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for k, v in stats.items():
        print(f"{k:32s} {v}")
    print("top domains:", ", ".join(f"{d} {n}" for d, n in final_domains.most_common(15)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
