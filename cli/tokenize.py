"""tfm tokenize: text to token ids."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Reads plain text lines (or records with a `text` field) and writes one token
record per line: `text`, `tokens`, `input_ids`, `offsets` (character offsets
of each token into the text; special tokens have [0, 0]), `attention_mask`,
`special_tokens_mask` and `token_type_ids`.

Any Hugging Face tokenizer.json works: WordPiece (BERT), BPE (GPT-2, RoBERTa)
and Unigram (SentencePiece, T5, Marian). Padding and truncation that a
tokenizer.json carries baked in are switched off; only what the flags ask for
is applied. Characters the vocabulary lacks become its unknown token, e.g.
[UNK], visibly in `tokens`.

With --pair each input line holds two texts separated by a tab (or a record has
`text` and `text_pair`): they are joined as the model expects, e.g.
[CLS] A [SEP] B [SEP], with token_type_ids 0 for A and 1 for B.

With --decode the command runs backwards: records with `input_ids` in,
the same records with `text` decoded from the ids out.""",
    "EXAMPLES": """\
echo "A cat sits on the mat." | tfm tokenize | jq -c .tokens
printf 'How old are you?\\tI am six.\\n' | tfm tokenize --pair
tfm tokenize --tokenizer my/tokenizer.json --no-special-tokens < lines.txt
tfm tokenize --max-length 16 --truncate --pad-to 16 -f npy < lines.txt > tokens.npy
tfm tokenize < lines.txt | tfm tokenize --decode | jq -r .text""",
}


def command(
    inputs: C.Inputs = None,
    text: Annotated[Optional[List[str]], typer.Option("--text", "-t", help="Tokenize this text instead of reading input (repeatable).", show_default=False)] = None,
    model: C.Model = None,
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="A tokenizer.json to use instead of the model's.", show_default=False)] = None,
    special_tokens: Annotated[bool, typer.Option("--special-tokens/--no-special-tokens", help="Add the model's special tokens ([CLS], [SEP], ...); with --decode, keep them in the text.")] = True,
    pair: Annotated[bool, typer.Option("--pair", help="Each line is two texts separated by a tab: a sentence pair.")] = False,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Refuse (or with --truncate cut) records longer than N tokens.", show_default=False)] = None,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut to --max-length instead of failing.")] = False,
    pad_to: Annotated[Optional[int], typer.Option("--pad-to", help="Pad every record to N tokens (fixed shapes).", show_default=False)] = None,
    decode: Annotated[bool, typer.Option("--decode", help="Turn input_ids back into text.")] = False,
    fmt: C.Format = "json",
    output: C.Output = None,
    batch_size: C.BatchSize = 256,
    fail_fast: C.FailFast = False,
    quiet: C.Quiet = False,
):
    """Text to token ids with any Hugging Face tokenizer.json."""

    def stage():
        from tfm.core.modeldir import resolve
        from tfm.core.tokenizer import TextTokenizer, TokenizeStage

        tok = TextTokenizer.from_file(tokenizer) if tokenizer else resolve(model).tokenizer
        return TokenizeStage(tok, special_tokens=special_tokens, pair=pair, max_length=max_length,
                             truncate=truncate, pad_to=pad_to, decode=decode)

    C.stream("tokenize", stage, inputs=inputs, output=output, fmt=fmt, batch_size=batch_size,
             fail_fast=fail_fast, quiet=quiet, accept_text=not decode, texts=text)
