"""The fused decoder's KV cache: one preallocated buffer, bound once as both the past and the present of every layer
through onnxruntime's IOBinding, so that a call writes only its new positions, in place, and moves one embedding
in and one row of logits out.

The pipeline's contract still holds: a cache handed out never changes. A cache is a ``KVView``, the first
``length`` positions of the buffer. Before a call writes from position ``a`` on, every other view still alive that
reaches past ``a`` (the prefix of another prompt, a branch a caller kept) is detached: it takes a copy of its
positions, and is copied back when it is next used. The usual paths (a clip after the prompt prefix, token after
token, label branches dropped once scored) never copy. Calls are serialized by a lock; parallel recognition wants
one backend per thread.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from ..pipeline.engine import capacity_error


class KVView:
    """A cache: the first ``length`` positions of ``buffer``, or (detached, ``buffer`` None) its own copy of them."""

    __slots__ = ("buffer", "length", "saved", "__weakref__")

    def __init__(self, buffer: "KVBuffer | None", length: int, saved: list[np.ndarray] | None = None):
        self.buffer, self.length, self.saved = buffer, length, saved


class KVBuffer:
    """Past and present K/V of every layer in ``capacity`` positions, for the decoder sessions of one bundle (the
    decoder, and the int4 bundle's prefill part, which shares the buffer)."""

    def __init__(self, sessions: dict, past_names: list[str], present_names: list[str], logits_name: str,
                 shape: tuple[int, int, int, int], vocab_size: int):
        import onnxruntime as ort

        self.capacity = shape[2]
        self.arrays = [np.zeros(shape, np.float32) for _ in past_names]
        self.logits = np.zeros((1, vocab_size), np.float32)
        # OrtValues over the numpy memory: the arrays above own it and live as long as the buffer.
        self._values = [ort.OrtValue.ortvalue_from_numpy(a) for a in (*self.arrays, self.logits)]
        self.bindings = {}
        for part, session in sessions.items():
            binding = session.io_binding()
            for past, present, value in zip(past_names, present_names, self._values):
                binding.bind_ortvalue_input(past, value)
                binding.bind_ortvalue_output(present, value)
            binding.bind_ortvalue_output(logits_name, self._values[-1])
            self.bindings[part] = (session, binding)
        self.views: weakref.WeakSet[KVView] = weakref.WeakSet()
        self.lock = threading.Lock()

    def empty(self) -> KVView:
        return KVView(self, 0)

    def run(self, part: str, inputs: dict[str, np.ndarray], view: KVView, count: int) -> tuple[np.ndarray, KVView]:
        """Run ``part`` on ``inputs`` (the new positions' embeddings and position ids, ``count`` of them) after
        ``view`` -> (the last position's logits, the view that includes them)."""
        with self.lock:
            self._attach(view)
            start = view.length
            if start + count > self.capacity:
                raise capacity_error(start + count, self.capacity)
            self._detach_from(start, keep=view)
            session, binding = self.bindings[part]
            for name, value in inputs.items():
                binding.bind_cpu_input(name, value)
            session.run_with_iobinding(binding)
            new = KVView(self, start + count)
            self.views.add(new)
            return self.logits.copy(), new

    def _attach(self, view: KVView) -> None:
        if view.buffer is self:
            return
        if view.buffer is not None:
            raise ValueError("this KV cache belongs to another backend; a cache goes back only to the backend that "
                             "made it")
        if view.length:
            self._detach_from(0, keep=None)
            for array, saved in zip(self.arrays, view.saved):
                array[:, :, :view.length] = saved
        view.buffer, view.saved = self, None
        self.views.add(view)

    def _detach_from(self, position: int, keep: KVView | None) -> None:
        """Every live view but ``keep`` whose positions reach ``position`` or beyond takes a copy of them."""
        for other in list(self.views):
            if other is not keep and other.length > position:
                other.saved = [a[:, :, :other.length].copy() for a in self.arrays]
                other.buffer = None
                self.views.discard(other)
