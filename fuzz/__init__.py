"""Fuzzing the public entry points with mutated inputs (README, "Fuzzing"); tests/test_fuzz.py runs a small
fixed corpus, `python -m fuzz.run` the long run."""
