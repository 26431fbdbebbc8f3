"""Fuzzing the public entry points with mutated inputs (docs/robustness.md); tests/test_fuzz.py runs a small
fixed corpus, `python -m fuzz.run` the long run."""
