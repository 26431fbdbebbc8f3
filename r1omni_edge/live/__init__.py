"""The live side, engine-free: bounded rings (``rings.py``) that sources (``sources.py``: camera, microphone, clip)
fill, the session (``session.py``) that sends a window to any recognizer every stride, its sinks (``sinks.py``:
terminal, JSONL; ``overlay.py``; ``web.py``) and the run functions that wire them (``run.py``). Never imports torch
or an engine: the recognizer is handed in."""
