"""GNA code generation: the program description (layers.py) and the stream encoder (encoder.py)."""
