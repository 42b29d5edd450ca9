"""Reference oracles shared by the tests and the benchmarks: tiny random diffusers models and pipeline
folders (torch / diffusers, the ``test`` extra), SAT-named state dicts, a local T5 tokenizer, small
video files. Installed with the package so that ``tests/`` and ``benchmarks/`` import them by name."""
