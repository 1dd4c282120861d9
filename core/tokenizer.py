"""Text to token records with any Hugging Face ``tokenizer.json``.

WordPiece, BPE and Unigram all come through the ``tokenizers`` library.  The
padding and truncation that a tokenizer.json may carry baked in are switched
off: tfm applies only what the user asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfm.core.errors import FatalError, ItemError

PAD_CANDIDATES = ("[PAD]", "<pad>", "<|padding|>", "<|endoftext|>")


class TextTokenizer:
    def __init__(self, tok, source: str, pad_token: str | None = None, pad_id: int | None = None):
        self.tok = tok
        self.source = source
        tok.no_padding()
        tok.no_truncation()
        if pad_token is None or pad_id is None:
            for cand in PAD_CANDIDATES:
                i = tok.token_to_id(cand)
                if i is not None:
                    pad_token, pad_id = cand, i
                    break
        self.pad_token = pad_token
        self.pad_id = pad_id

    @classmethod
    def from_file(cls, path: Path, config: dict | None = None, tokenizer_config: dict | None = None) -> "TextTokenizer":
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:
            raise FatalError(f"{path} is not a usable tokenizer.json ({str(e).splitlines()[0][:200]})") from None
        pad_token = (tokenizer_config or {}).get("pad_token")
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content")
        pad_id = tok.token_to_id(pad_token) if isinstance(pad_token, str) else None
        if pad_id is None and config and isinstance(config.get("pad_token_id"), int):
            pad_id = config["pad_token_id"]
            pad_token = tok.id_to_token(pad_id)
        return cls(tok, str(path), pad_token if pad_id is not None else None, pad_id)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(
        self,
        texts: list[str],
        pairs: list[str | None] | None = None,
        *,
        special_tokens: bool = True,
        max_length: int | None = None,
        truncate: bool = False,
        pad_to: int | None = None,
    ) -> list[dict[str, Any] | ItemError]:
        """Token fields for each text (or an ItemError in its place)."""
        if truncate and max_length:
            self.tok.enable_truncation(max_length)
        else:
            self.tok.no_truncation()
        if pairs is not None and any(p is not None for p in pairs):
            inputs = [(t, p) if p is not None else t for t, p in zip(texts, pairs)]
        else:
            inputs = texts
        encodings = self.tok.encode_batch(inputs, add_special_tokens=special_tokens)
        out: list[dict[str, Any] | ItemError] = []
        for enc in encodings:
            n = len(enc.ids)
            if max_length and n > max_length:
                out.append(ItemError(f"{n} tokens, more than --max-length {max_length}; pass --truncate to cut", "too-long"))
                continue
            fields = {
                "tokens": list(enc.tokens),
                "input_ids": np.asarray(enc.ids, dtype=np.int64),
                "offsets": np.asarray(enc.offsets, dtype=np.int64).reshape(n, 2),
                "attention_mask": np.asarray(enc.attention_mask, dtype=np.int64),
                "special_tokens_mask": np.asarray(enc.special_tokens_mask, dtype=np.int64),
                "token_type_ids": np.asarray(enc.type_ids, dtype=np.int64),
            }
            if pad_to is not None:
                if n > pad_to:
                    out.append(ItemError(f"{n} tokens, more than --pad-to {pad_to}; pass --truncate with --max-length", "too-long"))
                    continue
                fields = self.pad(fields, pad_to)
            out.append(fields)
        return out

    def pad(self, fields: dict[str, Any], length: int) -> dict[str, Any]:
        if self.pad_id is None:
            raise FatalError(f"{self.source} has no padding token; cannot --pad-to")
        extra = length - len(fields["input_ids"])
        if extra <= 0:
            return fields

        def grow(arr: np.ndarray, value) -> np.ndarray:
            pad = np.full((extra,) + arr.shape[1:], value, dtype=arr.dtype)
            return np.concatenate([arr, pad])

        return {
            "tokens": fields["tokens"] + [self.pad_token] * extra,
            "input_ids": grow(fields["input_ids"], self.pad_id),
            "offsets": grow(fields["offsets"], 0),
            "attention_mask": grow(fields["attention_mask"], 0),
            "special_tokens_mask": grow(fields["special_tokens_mask"], 1),
            "token_type_ids": grow(fields["token_type_ids"], 0),
        }

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        n = self.vocab_size
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise ItemError(f"token id {bad[0]} is outside the vocabulary (size {n})", "bad-id")
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def tokens_of(self, ids) -> list[str]:
        return [self.tok.id_to_token(int(i)) or "" for i in ids]


class TokenizeStage:
    """`tfm tokenize`: text records to token records (or ids back to text with decode)."""

    def __init__(self, tokenizer: TextTokenizer, *, special_tokens: bool = True, pair: bool = False,
                 max_length: int | None = None, truncate: bool = False, pad_to: int | None = None,
                 decode: bool = False):
        if truncate and not max_length:
            raise FatalError("--truncate needs --max-length")
        if max_length is not None and max_length < 1:
            raise FatalError("--max-length must be at least 1")
        if pad_to is not None and pad_to < 1:
            raise FatalError("--pad-to must be at least 1")
        self.tok = tokenizer
        self.special_tokens, self.pair = special_tokens, pair
        self.max_length, self.truncate, self.pad_to = max_length, truncate, pad_to
        self.decode = decode

    def prepare(self, rec):
        from tfm.core import fields as F

        if self.decode:
            ids = F.int_vector(rec, "input_ids")
            return rec, self.tok.decode(ids.tolist(), skip_special_tokens=not self.special_tokens), None
        text = F.text(rec)
        if text is None:
            raise F.missing(rec, "text")
        pair = F.text(rec, "text_pair")
        if self.pair and rec.text:
            if "\t" not in text:
                raise ItemError("--pair expects two texts separated by a tab", "bad-pair")
            text, pair = text.split("\t", 1)
        elif self.pair and pair is None:
            raise F.missing(rec, "text_pair")
        return rec, text, pair

    def run(self, items):
        from tfm.core import fields as F

        if self.decode:
            return [{**F.passthrough(rec, drop=("text_pair",)), "text": text} for rec, text, _ in items]
        encoded = self.tok.encode(
            [t for _, t, _ in items],
            [p for _, _, p in items] if any(p is not None for _, _, p in items) else None,
            special_tokens=self.special_tokens, max_length=self.max_length, truncate=self.truncate,
            pad_to=self.pad_to,
        )
        out = []
        for (rec, text, pair), enc in zip(items, encoded):
            if isinstance(enc, ItemError):
                out.append(enc)
                continue
            fields = F.passthrough(rec)
            fields["text"] = text
            if pair is not None:
                fields["text_pair"] = pair
            fields.update(enc)
            out.append(fields)
        return out
