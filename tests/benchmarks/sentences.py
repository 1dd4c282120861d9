"""Deterministic English-like sentences for the benchmarks (no downloads).

Sentences are built from a small embedded word list with a toy grammar, so
that they tokenize like ordinary prose: 10 to 30 words, common vocabulary,
punctuation, an occasional number.  The same ``(n, seed)`` always gives the
same sentences, on every machine and Python version (``random.Random`` with an
integer seed is stable).

    python tests/benchmarks/sentences.py 5          # print five sentences
"""

from __future__ import annotations

import random
import sys

DETERMINERS = "the a this that every one some another each my your our their his her no".split()
ADJECTIVES = """
small large old young quiet loud bright dark warm cold quick slow happy tired
careful busy empty green red blue heavy light strange simple ancient modern
wooden broken clean narrow wide gentle sharp early late local foreign curious
""".split()
NOUNS = """
cat dog bird child teacher farmer doctor river city village house garden road
window table book letter machine computer train bridge market kitchen forest
mountain island ship school student artist engine story song morning evening
winter summer question answer problem idea friend neighbour river stone field
""".split()
PLURALS = """
cats dogs birds children teachers farmers doctors cities villages houses
gardens roads windows tables books letters machines computers trains bridges
students artists engines stories songs questions answers problems ideas friends
""".split()
VERBS_SINGULAR = """
sees finds builds carries watches opens closes follows paints writes reads
moves repairs visits crosses remembers describes explains shares leaves
""".split()
VERBS_PLURAL = """
see find build carry watch open close follow paint write read move repair
visit cross remember describe explain share leave
""".split()
VERBS_PAST = """
saw found built carried watched opened closed followed painted wrote read
moved repaired visited crossed remembered described explained shared left
""".split()
ADVERBS = """
slowly quickly quietly carefully suddenly often rarely always never happily
almost nearly gently loudly early late
""".split()
PREPOSITIONS = "on under near behind beside across through into from with without after before".split()
CONJUNCTIONS = "and but while because although so when".split()
OPENERS = [
    "Yesterday", "In the morning", "Later that day", "After a while", "Every summer",
    "For many years", "At night", "Without warning", "Once again", "In the end",
]
PLACES = ["the old harbour", "the train station", "the city library", "the small market",
          "the village square", "the north road", "the river bank", "the empty school"]


def _noun_phrase(rng: random.Random) -> tuple[list[str], bool]:
    """Words of a noun phrase and whether it is plural."""
    if rng.random() < 0.3:
        words = [rng.choice(PLURALS)]
        if rng.random() < 0.6:
            words.insert(0, rng.choice(ADJECTIVES))
        if rng.random() < 0.5:
            words.insert(0, rng.choice(["the", "some", "many", "two", "three", "our", "their"]))
        return words, True
    words = [rng.choice(DETERMINERS)]
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        words.append(rng.choice(ADJECTIVES))
    words.append(rng.choice(NOUNS))
    return words, False


def _clause(rng: random.Random) -> list[str]:
    subject, plural = _noun_phrase(rng)
    past = rng.random() < 0.4
    verb = rng.choice(VERBS_PAST if past else (VERBS_PLURAL if plural else VERBS_SINGULAR))
    words = subject + ([rng.choice(ADVERBS)] if rng.random() < 0.3 else []) + [verb] + _noun_phrase(rng)[0]
    if rng.random() < 0.6:
        words += [rng.choice(PREPOSITIONS)] + _noun_phrase(rng)[0]
    if rng.random() < 0.15:
        words += ["at"] + rng.choice(PLACES).split()
    if rng.random() < 0.1:
        words += ["for", str(rng.randint(2, 90)), rng.choice(["minutes", "days", "years", "miles"])]
    return words


def sentence(rng: random.Random, low: int = 10, high: int = 30) -> str:
    """One sentence of ``low`` to ``high`` words (punctuation not counted)."""
    target = rng.randint(low, high)
    words: list[str] = []
    if rng.random() < 0.25:
        words += rng.choice(OPENERS).split() + [","]
    words += _clause(rng)
    while len([w for w in words if w != ","]) < target:
        words += [","] if rng.random() < 0.3 else []
        words += [rng.choice(CONJUNCTIONS)] + _clause(rng)
    real = [w for w in words if w != ","]
    if len(real) > high:  # cut at a word, never in the middle of punctuation
        keep, count = [], 0
        for w in words:
            if w != ",":
                count += 1
                if count > high:
                    break
            keep.append(w)
        words = keep
    while words and words[-1] in (",",) + tuple(CONJUNCTIONS) + tuple(PREPOSITIONS) + tuple(DETERMINERS):
        words.pop()  # no sentence ends on "and" or "the"
    text = " ".join(words).replace(" ,", ",")
    end = "?" if rng.random() < 0.08 else ("!" if rng.random() < 0.05 else ".")
    return text[0].upper() + text[1:] + end


def sentences(n: int, seed: int = 1234) -> list[str]:
    """``n`` deterministic sentences of about 10 to 30 words."""
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(n)]


def as_text(lines: list[str]) -> bytes:
    """The sentences as a plain text stream, one per line."""
    return "".join(line + "\n" for line in lines).encode("utf-8")


if __name__ == "__main__":
    for line in sentences(int(sys.argv[1]) if len(sys.argv) > 1 else 10):
        print(line)
