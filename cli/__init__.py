"""tfm's command line: one module per command, parsing and wiring only."""
