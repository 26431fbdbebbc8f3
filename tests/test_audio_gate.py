"""Audio gates: the energy gate fires on digital silence and not on a tone, the VAD tells espeak-ng speech from
silence, and a gated silent window gives exactly the Result of the ungated one (the silence embeddings are what the
audio part computes for silence)."""

import shutil
import subprocess

import numpy as np
import pytest

from r1omni_edge.cli import main
from r1omni_edge.errors import InputError
from r1omni_edge.media.audio_gate import EnergyAudioGate, VadAudioGate, make_audio_gate, rms_dbfs

RATE = 16000


def tone(seconds: float, hz: float = 440.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_energy_gate_fires_on_silence_not_on_a_tone():
    gate = EnergyAudioGate()
    assert gate.is_silent(np.zeros(4 * RATE, np.float32)) and rms_dbfs(np.zeros(8, np.float32)) == float("-inf")
    assert not gate.is_silent(tone(4.0))
    assert gate.is_silent(tone(4.0, level=1e-4))  # -83 dBFS: a dead microphone's hiss
    assert not gate.is_silent(tone(4.0, level=0.01))  # -43 dBFS: a quiet voice


def test_vad_gate_tells_speech_from_silence(tmp_path):
    from r1omni_edge.media.decode import decode_audio

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tools/run_tests.sh installs it with apt-get)")
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "I am so happy to see you today, this is wonderful news"], check=True)
    speech = decode_audio(wav)
    gate = VadAudioGate()
    assert max(gate.speech_probabilities(speech)) > 0.9 and not gate.is_silent(speech)
    assert gate.is_silent(np.zeros(4 * RATE, np.float32))
    assert gate.is_silent(tone(4.0))  # a steady tone is sound, not speech: the VAD gate drops it (docs/audio-front-end.md)


def test_gate_names():
    assert make_audio_gate("off") is None and make_audio_gate("energy").name == "energy"
    with pytest.raises(InputError, match="use one of off, energy, vad"):
        make_audio_gate("loud")


@pytest.mark.parametrize("window", ["full", "fit"])
def test_a_gated_silent_window_equals_the_ungated_one(bundles, recognizer, window):
    from r1omni_edge.engines import BundleRecognizer

    frames = (np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3))).astype(np.uint8)
    silent = np.zeros(3 * RATE, np.float32)
    runtime = BundleRecognizer.from_bundle(bundles["fp32"][1], backend="cpu")
    runtime.audio_window = window
    ungated = runtime.recognize(frames, silent, max_new_tokens=16, constrain=False)
    runtime.audio_gate = "energy"
    gated = runtime.recognize(frames, silent, max_new_tokens=16, constrain=False)
    assert gated.audio_gated and not ungated.audio_gated and "audio_gate" in gated.timings_ms
    assert gated.token_ids == ungated.token_ids and len(set(gated.token_ids)) > 3
    assert gated.audio_window == ungated.audio_window == (30 if window == "full" else 4)
    sounding = runtime.recognize(frames, tone(3.0), max_new_tokens=4, constrain=False)
    assert not sounding.audio_gated  # a tone goes through the encoder
    label_gated = runtime.recognize(frames, silent, mode="label")
    runtime.audio_gate = "off"
    label_ungated = runtime.recognize(frames, silent, mode="label")
    assert label_gated.label == label_ungated.label
    assert label_gated.probabilities == pytest.approx(label_ungated.probabilities, abs=1e-6)
    recognizer.audio_window, recognizer.audio_gate = window, "energy"  # the PyTorch engine takes the same gate
    try:
        torch_gated = recognizer.recognize(frames, silent, max_new_tokens=16)
    finally:
        recognizer.audio_window, recognizer.audio_gate = "full", "off"
    assert torch_gated.audio_gated and torch_gated.token_ids == ungated.token_ids


def test_cli_refuses_an_unknown_gate(capsys):
    code = main(["predict", "clip.mp4", "--bundle", "B", "--audio-gate", "loud"])
    assert code == 2 and "--audio-gate" in capsys.readouterr().err
