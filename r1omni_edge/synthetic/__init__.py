"""Things made locally instead of downloaded: tiny checkpoints in the published layout, tokenizers, clips.

Used by the tests, the tools and the demo; nothing here is the real model.
"""
