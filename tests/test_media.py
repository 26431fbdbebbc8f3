import numpy as np
import pytest
from PIL import Image

from r1omni_edge.errors import MediaError
from r1omni_edge.media import decode_clip, frames_to_pixels, log_mel, preprocess_frame, resample, sample_indices
from r1omni_edge.media.frames import PAD_COLOR


@pytest.mark.parametrize("seconds", [0.0, 1.3, 30.0, 37.5])
def test_log_mel_matches_whisper_feature_extractor(seconds):
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(1)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    if n == 0:
        audio = np.zeros(16, np.float32)
    reference = WhisperFeatureExtractor(feature_size=128)(audio, sampling_rate=16000, return_tensors="np")
    ours = log_mel(audio)
    assert ours.shape == (128, 3000)
    np.testing.assert_allclose(ours, reference.input_features[0], atol=1e-4, rtol=0)


def test_log_mel_rejects_stereo_and_nan():
    with pytest.raises(MediaError, match="mono"):
        log_mel(np.zeros((2, 100), np.float32))
    with pytest.raises(MediaError, match="NaN"):
        log_mel(np.array([0.0, np.nan], np.float32))


def test_sample_indices_follow_the_published_rule():
    assert sample_indices(8) == list(range(8))
    # (i + 0.5) * 8 / 8 = i + 0.5: every index is a half, and halves round up (not to even)
    assert sample_indices(9) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert sample_indices(100) == [int(np.floor((i + 0.5) * 99 / 8 + 0.5)) for i in range(8)]
    assert sample_indices(100) == [6, 19, 31, 43, 56, 68, 80, 93]
    assert sample_indices(3) == [0, 1, 2]
    assert sample_indices(0) == []


def test_stretch_preprocessing_matches_siglip_image_processor():
    # The published model was run with transformers 4.x, whose SigLIP processor resized with Pillow; in 5.x that
    # processor is SiglipImageProcessorPil (the default one resizes with torchvision and differs by a grey level).
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil as SiglipImageProcessor

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(120, 200, 3), dtype=np.uint8)
    processor = SiglipImageProcessor(size={"height": 224, "width": 224}, resample=Image.Resampling.BICUBIC,
                                     image_mean=[0.5] * 3, image_std=[0.5] * 3)
    reference = processor(images=Image.fromarray(frame), return_tensors="np")["pixel_values"][0]
    ours = preprocess_frame(frame, "stretch")
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_pad_mode_centres_the_frame_on_grey():
    frame = np.full((100, 200, 3), 255, np.uint8)  # wide white frame -> grey bars above and below
    pixels = preprocess_frame(frame, "pad")
    grey = (PAD_COLOR[0] / 255 - 0.5) / 0.5
    np.testing.assert_allclose(pixels[:, 0, 112], grey, atol=1e-6)
    np.testing.assert_allclose(pixels[:, 223, 112], grey, atol=1e-6)
    np.testing.assert_allclose(pixels[:, 112, 112], 1.0, atol=1e-6)


def test_frames_to_pixels_pads_with_black_and_samples_down():
    frames = [np.full((32, 32, 3), 200, np.uint8)] * 3
    pixels = frames_to_pixels(frames)
    assert pixels.shape == (8, 3, 224, 224)
    np.testing.assert_allclose(pixels[3:], -1.0)  # black frames
    many = [np.full((16, 16, 3), i, np.uint8) for i in range(100)]
    sampled = frames_to_pixels(many)
    expected = [(i / 255 - 0.5) / 0.5 for i in sample_indices(100)]
    np.testing.assert_allclose(sampled[:, 0, 0, 0], expected, atol=1e-6)
    with pytest.raises(MediaError, match="no frames"):
        frames_to_pixels([])


def test_decode_clip_with_and_without_audio(clips):
    clip = decode_clip(clips["av"])
    assert clip.num_decoded_frames == 20 and len(clip.frames) == 8
    assert clip.frames[0].shape == (120, 160, 3) and clip.frames[0].dtype == np.uint8
    assert clip.has_audio and abs(clip.audio.shape[0] - 32000) < 2048  # AAC adds a little priming
    spectrum = np.abs(np.fft.rfft(clip.audio[:16000]))
    assert abs(int(spectrum.argmax()) - 440) <= 2  # the 440 Hz tone survives AAC and resampling
    silent = decode_clip(clips["video_only"])
    assert silent.audio is None and len(silent.frames) == 8


def test_short_clip_has_fewer_frames(clips):
    clip = decode_clip(clips["short"])
    assert clip.num_decoded_frames == 5 and len(clip.frames) == 5


def test_resample_keeps_a_tone():
    sr = 44100
    t = np.arange(sr) / sr
    out = resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), sr)
    assert abs(out.shape[0] - 16000) <= 32
    spectrum = np.abs(np.fft.rfft(out[:16000]))
    assert abs(int(spectrum.argmax()) - 1000) <= 2


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        decode_clip(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        decode_clip(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(MediaError, match="cannot read this file as a video"):
        decode_clip(text)
    with pytest.raises(MediaError, match="directory"):
        decode_clip(tmp_path)


def test_audio_only_file_is_refused(tmp_path):
    import av

    path = tmp_path / "voice.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(MediaError, match="no video stream"):
        decode_clip(path)


def _write_stereo_wav(path, left, right, rate=44100):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "stereo"
        samples = (np.stack([left, right]).T * 32767).astype(np.int16).reshape(1, -1)  # interleaved s16
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_decode_audio_averages_channels_and_resamples(tmp_path):
    from r1omni_edge.media import decode_audio

    t = np.arange(44100) / 44100
    tone = np.sin(2 * np.pi * 500 * t)
    _write_stereo_wav(tmp_path / "opposite.wav", 0.3 * tone, -0.3 * tone)  # opposite phases cancel in the mean
    cancelled = decode_audio(tmp_path / "opposite.wav")
    assert abs(cancelled.shape[0] - 16000) <= 32
    assert np.abs(cancelled).max() < 1e-3
    _write_stereo_wav(tmp_path / "levels.wav", 0.3 * tone, 0.1 * tone)
    mixed = decode_audio(tmp_path / "levels.wav")
    assert abs(np.percentile(np.abs(mixed[1000:-1000]), 99.9) - 0.2) < 0.01  # mean of 0.3 and 0.1


def _png_header_only(path, width: int, height: int):
    """A PNG whose header declares ``width`` x ``height`` (one short row of data follows)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 7))
                     + chunk(b"IEND", b""))
    return path


def test_metadata_that_is_not_utf8_is_read_not_raised(tmp_path):
    """A clip whose container metadata holds bytes that are not UTF-8 (found by mutating clips): PyAV raised
    UnicodeDecodeError from av.open; the frames are what matters, and they decode."""
    import av

    clip = tmp_path / "meta.mp4"
    with av.open(str(clip), "w") as container:
        container.metadata["title"] = "TITLE-MARKER-XYZW"
        video = container.add_stream("libx264", rate=5)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), "rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    data = clip.read_bytes()
    assert data.count(b"MARKER-XYZW") == 1
    clip.write_bytes(data.replace(b"MARKER-XYZW", b"\xff\xfe\xfd\xfc\xc3\x28\xa0\xa1\xe2\x28\x80"))
    decoded = decode_clip(clip)
    assert decoded.num_decoded_frames == 5 and decoded.audio is None


def test_pictures_over_the_size_limit_are_refused_before_decoding(tmp_path):
    from r1omni_edge.media.decode import MAX_SIDE

    with pytest.raises(MediaError, match=f"15000 x 15000 pixels, over the {MAX_SIDE} x {MAX_SIDE}"):
        decode_clip(_png_header_only(tmp_path / "huge.png", 15000, 15000))
    with pytest.raises(MediaError, match="huge2.png: "):  # FFmpeg's own bound: a clear line, not a traceback
        decode_clip(_png_header_only(tmp_path / "huge2.png", 100_000, 100_000))


@pytest.mark.parametrize("script", [
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{clip}\n#EXT-X-ENDLIST\n",  # an HLS playlist
    "ffconcat version 1.0\nfile '{clip}'\nfile '{clip}'\n",  # a concat script
])
def test_playlists_and_scripts_named_like_clips_are_not_followed(tmp_path, clips, script):
    """ffmpeg would open the files (or URLs) such a text lists: only media containers are read."""
    fake = tmp_path / "clip.mp4"
    fake.write_text(script.format(clip=clips["av"]))
    with pytest.raises(MediaError, match="clip.mp4: ffmpeg cannot read this file as a video"):
        decode_clip(fake)


def test_only_the_first_thirty_seconds_of_audio_are_kept(tmp_path):
    """The model reads 30 s; an hour-long track must not fill the memory (the same first 30 s as before)."""
    from r1omni_edge.synthetic.clips import write_clip

    clip = decode_clip(write_clip(tmp_path / "long.mp4", seconds=33.0, fps=2, size=(32, 32), audio=True))
    assert len(clip.audio) == 30 * 16000
