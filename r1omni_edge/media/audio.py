"""Audio to what Whisper-large-v3 reads: mono 16 kHz, padded or cut to 30 s, a 128-bin log-mel (numpy only).

The log-mel reproduces transformers' ``WhisperFeatureExtractor`` (the tests hold it to 1e-4).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import MediaError

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 128
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480,000
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3,000 mel frames
MISSING_AUDIO_SECONDS = 10  # the reference feeds 10 s of silence when a clip has no audio track
MEL_FMAX = 8000.0


def _hz_to_mel_slaney(freq: np.ndarray) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, 27.0 / np.log(6.4)
    mels = 3.0 * freq / 200.0
    log_region = freq >= min_log_hz
    mels = np.where(log_region, min_log_mel + np.log(np.maximum(freq, 1e-10) / min_log_hz) * logstep, mels)
    return mels


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, np.log(6.4) / 27.0
    freq = 200.0 * mels / 3.0
    log_region = mels >= min_log_mel
    return np.where(log_region, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freq)


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters (n_fft // 2 + 1, n_mels), 0 Hz to 8 kHz."""
    n_freqs = N_FFT // 2 + 1
    fft_freqs = np.linspace(0, SAMPLE_RATE // 2, n_freqs)
    mel_points = np.linspace(_hz_to_mel_slaney(0.0), _hz_to_mel_slaney(MEL_FMAX), n_mels + 2)
    filter_freqs = _mel_to_hz_slaney(mel_points)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    enorm = 2.0 / (filter_freqs[2 : n_mels + 2] - filter_freqs[:n_mels])
    return filters * enorm[None, :]


def pad_or_trim(audio: np.ndarray, length: int = N_SAMPLES) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[0] >= length:
        return audio[:length]
    return np.pad(audio, (0, length - audio.shape[0]))


def check_waveform(audio) -> np.ndarray:
    """Mono samples as an array, or a MediaError saying what is wrong with them."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise MediaError(f"audio must be mono, a 1-D array of samples; got shape {tuple(audio.shape)}")
    if not np.all(np.isfinite(audio)):
        raise MediaError("audio holds NaN or infinite samples; check the microphone or the decoder")
    return audio


def log_mel(audio: np.ndarray, n_mels: int = N_MELS, seconds: int = CHUNK_SECONDS) -> np.ndarray:
    """Mono 16 kHz float audio -> (n_mels, 100 * seconds) float32 log-mel, exactly as Whisper-large-v3 expects.

    ``seconds`` is 30 for the published model; a shorter window is an explicit edge opt-in (export --audio-seconds).
    """
    waveform = pad_or_trim(check_waveform(audio), seconds * SAMPLE_RATE).astype(np.float64)
    padded = np.pad(waveform, (N_FFT // 2, N_FFT // 2), mode="reflect")
    n_frames = 1 + (padded.shape[0] - N_FFT) // HOP_LENGTH
    strides = (padded.strides[0] * HOP_LENGTH, padded.strides[0])
    frames = np.lib.stride_tricks.as_strided(padded, shape=(n_frames, N_FFT), strides=strides)
    window = np.hanning(N_FFT + 1)[:-1]  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, n=N_FFT, axis=1)) ** 2  # (frames, freqs)
    mel = power @ mel_filters(n_mels)  # (frames, mels)
    log_spec = np.log10(np.maximum(mel, 1e-10)).T[:, :-1]  # the last frame is dropped, as Whisper does
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(channels, n) or (n,) -> (n,) float32, averaging channels as the reference does."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        return samples
    if samples.ndim == 2:
        return samples.mean(axis=0)
    raise MediaError(f"audio must be (samples,) or (channels, samples); got shape {tuple(samples.shape)}")


def resample(audio: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float audio at ``sample_rate`` -> ``target_rate`` with libswresample (through PyAV)."""
    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate <= 0:
        raise MediaError(f"sample rate must be positive, got {sample_rate}")
    if sample_rate == target_rate or audio.size == 0:
        return audio
    import av

    frame = av.AudioFrame.from_ndarray(audio[None, :], format="fltp", layout="mono")
    frame.sample_rate = int(sample_rate)
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=target_rate)
    chunks = [f.to_ndarray()[0] for f in resampler.resample(frame)]
    chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]  # flush the filter's tail
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def silence(seconds: float = MISSING_AUDIO_SECONDS) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
