"""The audio loader on real files written here by libsndfile and sox."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_sim import audio
from voice_sim.audio import SAMPLE_RATE, load_audio
from voice_sim.errors import AudioError

TONE_HZ = 440.0


def _tone(sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * TONE_HZ * np.arange(round(sr * seconds)) / sr))


def _peak_hz(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    n = 8 * len(x)  # zero-padding: 0.125 Hz bins for a 1 s clip
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    return float(np.argmax(spectrum) * sr / n)


def _assert_is_the_tone(y: np.ndarray, *, amp: float = 0.5, tol: float = 2e-3,
                        frames: int = SAMPLE_RATE) -> None:
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - frames) <= 1
    assert abs(_peak_hz(y) - TONE_HZ) < 0.5
    # Away from the resampler's edge transients the samples are the ideal tone.
    ideal = _tone(SAMPLE_RATE, len(y) / SAMPLE_RATE, amp)
    middle = slice(800, len(y) - 800)
    assert np.max(np.abs(y[middle] - ideal[middle])) < tol


# --- the matrix ----------------------------------------------------------------------


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
def test_any_sample_rate_becomes_16k_keeping_pitch_and_duration(sr: int, tmp_path: Path) -> None:
    path = tmp_path / f"tone{sr}.wav"
    sf.write(path, _tone(sr), sr, subtype="PCM_16")
    _assert_is_the_tone(load_audio(path))


@pytest.mark.parametrize(("subtype", "tol"), [
    ("PCM_U8", 2e-2), ("PCM_16", 2e-3), ("PCM_24", 2e-3), ("PCM_32", 2e-3), ("FLOAT", 2e-3),
    ("DOUBLE", 2e-3),
])
def test_every_sample_format(subtype: str, tol: float, tmp_path: Path) -> None:
    path = tmp_path / f"tone_{subtype}.wav"
    sf.write(path, _tone(44100), 44100, subtype=subtype)
    assert audio.info(path).subtype == subtype
    _assert_is_the_tone(load_audio(path), tol=tol)


def test_stereo_channels_are_averaged(tmp_path: Path) -> None:
    left = _tone(48000)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 48000, subtype="PCM_24")
    assert audio.info(path).channels == 2
    _assert_is_the_tone(load_audio(path), amp=0.25)


def test_other_sample_rate_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(16000), 16000, subtype="PCM_16")
    y = load_audio(path, sr=8000)
    assert len(y) == 8000 and abs(_peak_hz(y, 8000) - TONE_HZ) < 0.5


def test_flac(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    sf.write(path, _tone(22050), 22050, subtype="PCM_16")
    _assert_is_the_tone(load_audio(path))


@pytest.mark.parametrize(("fmt", "suffix", "subtype"), [
    ("OGG", ".ogg", "VORBIS"), ("OGG", ".opus", "OPUS"), ("MP3", ".mp3", "MPEG_LAYER_III"),
])
def test_lossy_formats_keep_pitch_and_duration(fmt: str, suffix: str, subtype: str,
                                               tmp_path: Path) -> None:
    if subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {subtype}")
    path = tmp_path / f"tone{suffix}"
    sr = 48000 if subtype == "OPUS" else 44100
    sf.write(path, _tone(sr, 2.0), sr, format=fmt, subtype=subtype)
    y = load_audio(path)
    assert abs(len(y) / SAMPLE_RATE - 2.0) < 0.06
    assert abs(_peak_hz(y) - TONE_HZ) < 1.0
    assert 0.4 < np.max(np.abs(y)) < 0.6


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
def test_files_written_by_sox(tmp_path: Path) -> None:
    # An independent writer: 8 kHz mu-law telephone audio and a 32 kHz AIFF.
    for name, args in (("phone.wav", ["-r", "8000", "-e", "mu-law", "-b", "8"]),
                       ("tone.aiff", ["-r", "32000", "-b", "16"])):
        path = tmp_path / name
        subprocess.run(["sox", "-n", *args, "-c", "1", str(path), "synth", "1.0", "sine",
                        str(TONE_HZ), "vol", "0.5"], check=True)
        _assert_is_the_tone(load_audio(path), tol=3e-2 if "phone" in name else 2e-3)


# --- bad input -------------------------------------------------------------------------


def _bad(path: Path, match: str, **kw: object) -> None:
    with pytest.raises(AudioError, match=match) as info:
        load_audio(path, **kw)  # type: ignore[arg-type]
    assert str(path) in info.value.line()
    assert "\n" not in info.value.line()


def test_missing_file(tmp_path: Path) -> None:
    _bad(tmp_path / "nope.wav", "no such file")


def test_a_folder(tmp_path: Path) -> None:
    _bad(tmp_path, "is a folder")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    _bad(tmp_path / "empty.wav", r"empty \(0 bytes\)")


def test_not_audio_with_a_wav_name(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("these are meeting notes, not audio\n" * 20)
    _bad(tmp_path / "notes.wav", "not a readable audio file")


def test_wav_truncated_in_the_header(tmp_path: Path) -> None:
    sf.write(tmp_path / "full.wav", _tone(16000), 16000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[:30])
    _bad(tmp_path / "cut.wav", "not a readable audio file")


def test_wav_truncated_in_the_data(tmp_path: Path) -> None:
    sf.write(tmp_path / "full.wav", _tone(16000), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    _bad(tmp_path / "cut.wav", r"is cut short: it holds 49% of the audio")


def test_mp3_truncated(tmp_path: Path) -> None:
    if "MPEG_LAYER_III" not in sf.available_subtypes("MP3"):
        pytest.skip("this libsndfile cannot write MP3")
    sf.write(tmp_path / "full.mp3", _tone(16000, 2.0), 16000, format="MP3")
    data = (tmp_path / "full.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    _bad(tmp_path / "cut.mp3", "is cut short")


def test_flac_with_damaged_data(tmp_path: Path) -> None:
    sf.write(tmp_path / "full.flac", _tone(16000), 16000)
    data = bytearray((tmp_path / "full.flac").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 400] = bytes(400)
    (tmp_path / "bad.flac").write_bytes(bytes(data))
    _bad(tmp_path / "bad.flac", "damaged")


def test_streamed_wav_with_unknown_length_still_loads(tmp_path: Path) -> None:
    # Streaming writers leave the data size 0xFFFFFFFF: not a truncation.
    sf.write(tmp_path / "full.wav", _tone(16000), 16000, subtype="PCM_16")
    data = bytearray((tmp_path / "full.wav").read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = b"\xff\xff\xff\xff"
    (tmp_path / "stream.wav").write_bytes(bytes(data))
    _assert_is_the_tone(load_audio(tmp_path / "stream.wav"))


def test_wav_with_zero_frames(tmp_path: Path) -> None:
    sf.write(tmp_path / "zero.wav", np.zeros(0), 16000, subtype="PCM_16")
    _bad(tmp_path / "zero.wav", r"holds no audio \(0 frames\)")


def test_all_silent_file_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(22050), 22050, subtype="PCM_16")
    _bad(path, "is silent")
    y = load_audio(path, allow_silent=True)
    assert len(y) == SAMPLE_RATE and not y.any()


def test_nan_samples_become_silence(tmp_path: Path) -> None:
    x = _tone(16000).astype(np.float32)
    x[4000:4100] = np.nan
    x[9000] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    y = load_audio(path)
    assert np.isfinite(y).all()
    assert not y[4000:4100].any() and y[9000] == 0
    assert np.array_equal(y[:4000], x[:4000])
    # A NaN channel does not wipe out the good one.
    sf.write(path, np.stack([x, np.full_like(x, np.nan)], axis=1), 16000, subtype="FLOAT")
    assert np.allclose(load_audio(path)[:4000], x[:4000] / 2)


def test_all_nan_file_is_silent(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    sf.write(path, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    _bad(path, "is silent")


def test_over_long_file(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, _tone(16000, 2.0), 16000, subtype="PCM_16")
    _bad(path, r"2\.0 s long, over the 1\.5 s limit", max_duration_s=1.5)


# --- writing and header info ------------------------------------------------------------


def test_write_wav_round_trip_is_atomic(tmp_path: Path) -> None:
    x = _tone(SAMPLE_RATE).astype(np.float32)
    out = audio.write_wav(tmp_path / "sub" / "out.wav", x)
    meta = audio.info(out)
    assert (meta.sample_rate, meta.channels, meta.frames, meta.subtype) == (
        SAMPLE_RATE, 1, SAMPLE_RATE, "PCM_16")
    assert meta.duration_s == 1.0
    assert np.max(np.abs(load_audio(out) - x)) < 1e-4
    assert [p.name for p in out.parent.iterdir()] == ["out.wav"]


@pytest.mark.parametrize("sr", [8000, 16000, 44100])
def test_wav_bytes_are_what_libsndfile_writes(tmp_path: Path, sr: int) -> None:
    """The WAV encoded here (no Python callbacks inside libsndfile, so Ctrl-C cannot
    land in one) is byte for byte the file soundfile writes, clipping included."""
    x = np.concatenate([_tone(sr, 0.5, amp=1.3), _tone(sr, 0.5, amp=0.01),
                        np.array([1.0, -1.0, 0.0, -1e-9])]).astype(np.float32)
    sf.write(tmp_path / "ref.wav", np.clip(x, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    assert audio.wav_bytes(x, sr) == (tmp_path / "ref.wav").read_bytes()


def test_levels() -> None:
    assert audio.peak_dbfs(np.zeros(10, np.float32)) == float("-inf")
    assert abs(audio.peak_dbfs(np.array([0.5], np.float32)) - (-6.02)) < 0.01
    assert audio.is_silent(np.full(10, 1e-4, np.float32))
    assert not audio.is_silent(np.full(10, 1e-2, np.float32))
