"""The source text of tfm-stream(5), the record stream format.

tfm.cli._manpages renders it to man/tfm-stream.5.  Each key is a section (NAME
is the one-line description); the text uses the same plain markup as the
commands' MAN dicts (see tfm.cli._manpages).  The format itself is implemented
once, in tfm.core.stream; keep the two in step.
"""

from __future__ import annotations

MAN = {
    "NAME": "the record stream format that tfm commands read and write",
    "DESCRIPTION": """\
Every tfm command that processes data reads a stream of records and writes a
stream of records: one record out for each record in, in input order, each
written and flushed as soon as it is ready. A record is one item (a sentence,
an image) with named fields.

A stream travels in one of two formats, JSON Lines (the default, for people,
jq and scripts) and NumPy (for large tensors, exact and fast). Plain text lines
are accepted as input by the commands that take text. Every command detects
the format of its input by itself, so commands can be piped together in either
format and the formats can be mixed along a pipeline; the output format is
chosen with the same flag everywhere:

    -f json, --format json    JSON Lines (the default)
    -f npy,  --format npy     NumPy stream

(tfm models writes a listing, not records: it takes table or json.)

A round trip JSON Lines -> NumPy -> JSON Lines loses nothing: float32 values
survive exactly, integer tensors stay integers, and the field order and the
non-tensor fields are kept.""",
    "RECORDS AND FIELDS": """\
A record is an ordered set of named fields. A field is either metadata (a
string, number, boolean, null, object, or a list that is not a rectangular
array of numbers) or a tensor (an n-dimensional array of numbers, held as a
numpy array). Tensors describe one record only: there is no batch dimension;
commands batch records internally and cut the padding off again.

Field names follow Hugging Face Transformers where a name exists, so that
what a model calls its inputs and outputs is what the stream calls them.
The fields written by the tfm commands (T tokens, D model width, H heads,
T_k keys):

`text`
  The input text (metadata).
`tokens`
  The tokens as strings, e.g. [CLS], cat, [SEP] (tfm tokenize).
`input_ids`
  (T,) int64: token ids into the model's vocabulary (tfm tokenize).
`attention_mask`
  (T,) int64: 1 for a real token, 0 for padding (tfm tokenize).
`token_type_ids`
  (T,) int64: 0 for the first text of a pair, 1 for the second.
`offsets`, `special_tokens_mask`
  (T, 2) and (T,) int64: character offsets of each token into the text, and
  1 for special tokens (tfm tokenize).
`inputs_embeds`
  (T, D) float32: the word embeddings of the input_ids (tfm embed).
`hidden_states`, `seam`
  (T, D) float32: the vectors entering a layer, and a string naming the place
  in the model they belong to, e.g. layers.0.input after tfm posenc or
  layers.0.attention.add_norm after tfm attend --add-norm. A command that
  runs the model (tfm encode, tfm attend) starts from that place.
`last_hidden_state`
  (T, D) float32: the encoder's output, one vector per token (tfm encode).
`sentence_embedding`
  (D,) float32: one vector for the whole text (tfm encode --pool).
`attentions`
  (H, T, T_k) float32: attention weights; each row sums to 1 (tfm attend).
`attention_output`
  (T, D) float32: a layer's self-attention output (tfm attend, model mode).
`context`
  (T, D_v) float32: softmax(Q Kᵀ / √d_k) V (tfm attend, math mode; its
  inputs are the fields q, k and v).
`position_encoding`
  (T, D) float32: a position encoding alone (tfm posenc --only).
`path`, `patches`, `grid`, `patch_size`, `image_size`
  An image's file, its (N, P·P·C) float32 patch tokens in row-major order,
  the [rows, cols] patch grid, P, and the [H, W] it was resized to (tfm
  patchify). Images are read from files, not from streams.
`pixel_values`
  The (C, H, W) float32 image a Vision Transformer takes, after its
  preprocessing; the name of the model's input.
`labels`, `scores`, `logits`
  The top-k class names, their probabilities (or cosine similarities with
  --examples), and with --logits the (num_labels,) float32 unnormalised
  class scores (tfm classify).
`translation`, `output_ids`, `output_tokens`, `score`
  The translated text, the generated ids (with the decoder start token) and
  tokens, and sum(log p) / length^length_penalty (tfm translate).
`layers.L.attention.probs`, `layers.L.output`, ...
  Tensors exposed with --tap, named after their place in the model (see
  tfm-taps(1)).
`array`
  A bare .npy array read from a NumPy stream (see below). Commands that need
  a float tensor of a given name take `array` in its place.

Commands add their fields to the record and keep the fields they do not
touch, so a record collects its history as it goes down a pipeline.""",
    "JSON LINES": """\
UTF-8 without a byte order mark (one at the very start is skipped), one JSON
object per line, each line ended by a newline (a carriage return before it is
ignored). Blank lines are errors in this format.

On reading, a field whose value is a non-empty rectangular list of numbers,
nested to any depth, is a tensor: int64 when every number is written as an
integer literal (1, -3), float32 as soon as one has a fraction or an exponent
(1.0, 2e-3). Write 1.0, not 1, where a float tensor is meant. Any other value
(strings, booleans, objects, ragged or mixed lists, the empty list) is
metadata and is passed on unchanged.

On writing, tensors are plain nested lists so that jq works on them, and each
float is written as the shortest text that reads back to the same float32
(0.1, not 0.10000000149011612).

Refused, each with an error record (see ERROR RECORDS): NaN and Infinity
(which are not JSON), numbers outside the float32 range in a float tensor,
duplicate keys in an object, integers of more than 19 digits, nesting deeper
than 32 lists, invalid UTF-8, and lines longer than TFM_MAX_RECORD_BYTES.
A computed tensor that holds a NaN or an infinity is never written: that
record fails instead.""",
    "NUMPY STREAMS": """\
A NumPy stream is a sequence of standard .npy arrays (the NEP 1 format that
numpy.save writes), back to back, with no other framing. Each record is:

* a header: a 1-D uint8 array holding UTF-8 JSON (below), which begins with
  the bytes {"tfm";
* then one .npy array per name in "tensors", in that order.

The header is:

    {"tfm": 1, "fields": [...], "tensors": [...], "meta": {...}}

"fields" lists all field names of the record in order; "tensors" lists the
names of its tensor fields, whose arrays follow the header; "meta" holds the
non-tensor fields. The record is the union of "meta" and the tensors, in the
order of "fields". Dtypes are kept as they are (int64 stays int64, float32
stays float32).

Nothing but numpy is needed to read a stream: numpy.lib.format.read_array
reads one array from a file object (see EXAMPLES). numpy.load does not work on
a pipe ("not seekable"), and read_array on a pipe needs an object that only
has a read method.

A bare array written by numpy.save (any array that is not a tfm header) is
accepted as a record with the single tensor field `array`, so
`tfm posenc --kind sinusoidal x.npy` works on a plain .npy file; several such
arrays back to back are several records.

On reading, .npy format versions 1.0, 2.0 and 3.0 are accepted, with numeric
dtypes only (booleans, integers, floats, complex numbers; C or Fortran
order). Object dtypes are never unpickled, and an array whose size would
exceed TFM_MAX_TENSOR_BYTES is refused from its header, before anything is
allocated. A broken frame (bad magic, a bad header, a truncated array) gives
one error record and ends that input, since nothing after it can be found.""",
    "PLAIN TEXT": """\
The commands that take text (tfm tokenize, tfm embed, tfm encode) also read
plain UTF-8 text: each line, without its line end, is the record
{"text": line}. Every line is a record, blank lines included (as an empty
text), so that line N of the input is record N of the output. Lines longer
than TFM_MAX_TEXT_BYTES are refused. The other commands refuse text with an
error that says to pipe it through tfm tokenize first.""",
    "FORMAT DETECTION": """\
Each input (a file argument, or standard input) is detected on its own from
its first bytes:

* the .npy magic \\x93NUMPY: a NumPy stream;
* otherwise, a first non-blank line starting with { (after any spaces): JSON
  Lines;
* otherwise: plain text.

A text whose first line happens to start with { is read as JSON; turn such
lines into records first, e.g. with jq -Rc '{text: .}'.""",
    "ERROR RECORDS": """\
A record that cannot be read or processed does not stop the run (unless
--fail-fast is given): it is reported in one line on standard error and
replaced in the output by an error record, so that record N of the output
still belongs to record N of the input:

    {"record": N, "ok": false, "error": {"kind": "...", "message": "..."}}

"record" is the 1-based position of the record in the whole input; "kind" is
a short word for programs (e.g. bad-json, too-long, missing-field, bad-shape,
bad-id, non-finite, truncated) and "message" the same text as on standard
error. The identifying fields `path`, `id` and `text` of the failed record,
when present as strings, are kept in front:

    {"text": "...", "record": 3, "ok": false, "error": {...}}

A record with "ok": false and an "error" object is an error record: every
command passes error records from upstream on unchanged, without reporting
them again, and counts them as failures (exit status 1). Successful records
have no "ok" field.""",
    "LIMITS": """\
Limits protect against hostile or broken input; each can be raised by an
environment variable for the rare legitimate case (values in bytes):

TFM_MAX_RECORD_BYTES
  The longest JSON line, default 33554432 (32 MiB). Use the NumPy format for
  larger tensors.
TFM_MAX_TEXT_BYTES
  The longest plain text line, default 1048576 (1 MiB).
TFM_MAX_TENSOR_BYTES
  The largest array in a NumPy stream, default 1073741824 (1 GiB).""",
    "EXAMPLES": """\
Look at a stream with jq:

    echo "A cat sits on the mat." | tfm tokenize | jq -c .tokens
    tfm encode < sentences.txt | jq -c '.last_hidden_state | length'
    tfm encode --pool mean --no-hidden < sentences.txt | jq -c '.sentence_embedding[:4]'
    tfm encode < sentences.txt | jq -c 'select(.ok == false) | .error'

Make records with jq (here: text lines that may start with {):

    jq -Rc '{text: .}' < lines.txt | tfm encode --pool mean --no-hidden

Use the NumPy format between commands and keep JSON for the end; the
formats mix freely, since every command detects its input format:

    tfm tokenize -f npy < sentences.txt | tfm embed -f npy | tfm posenc -f npy | tfm encode
    tfm tokenize -f npy < sentences.txt > tokens.npy
    head -c 6 tokens.npy | od -c
    tfm encode < tokens.npy | jq -c '.last_hidden_state | length'
    cat tokens.npy tokens.npy | tfm encode -f npy > hidden.npy

Read a NumPy stream from Python with nothing but numpy:

    import json, sys
    import numpy
    from numpy.lib.format import read_array

    class R:  # read_array on a pipe needs an object that only has .read
        def __init__(self, f):
            self.read = f.read

    def records(f):
        f = R(f)
        while True:
            try:
                head = read_array(f)
            except ValueError:  # end of the stream
                return
            if head.dtype != numpy.uint8 or not head.tobytes().startswith(b'{"tfm"'):
                yield {"array": head}  # a bare numpy.save array
                continue
            info = json.loads(head.tobytes())
            rec = dict(info["meta"])
            for name in info["tensors"]:
                rec[name] = read_array(f)
            yield {name: rec[name] for name in info["fields"]}

    for rec in records(sys.stdin.buffer):
        print({k: getattr(v, "shape", v) for k, v in rec.items()})

Saved as read.py:

    tfm tokenize -f npy < sentences.txt | tfm encode -f npy | python read.py

Write a NumPy stream from Python (here: math-mode input for tfm attend):

    import json, sys
    import numpy
    from numpy.lib.format import write_array

    class W:  # only .write, so that write_array never calls tofile
        def __init__(self, f):
            self.write = f.write

    def write_record(f, fields):
        tensors = [k for k, v in fields.items() if isinstance(v, numpy.ndarray)]
        meta = {k: v for k, v in fields.items() if k not in tensors}
        head = {"tfm": 1, "fields": list(fields), "tensors": tensors, "meta": meta}
        write_array(f, numpy.frombuffer(json.dumps(head).encode(), numpy.uint8))
        for name in tensors:
            write_array(f, fields[name])

    out = W(sys.stdout.buffer)
    write_record(out, {"id": "eye", "q": numpy.eye(3, dtype=numpy.float32)})

Saved as write.py:

    python write.py | tfm attend | jq -c .context

A plain .npy file is a record too:

    python -c 'import numpy; numpy.save("x.npy", numpy.zeros((10, 16), "f4"))'
    tfm posenc --kind sinusoidal x.npy | jq -c '.hidden_states[1][:4]'""",
}
