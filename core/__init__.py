"""tfm's engine: record streams, ONNX sessions, and the stages of a Transformer."""
