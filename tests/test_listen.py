"""Live capture of one answer: voice activity, captions, keys, and the incremental WAV.

The live path runs end to end through the fake sounddevice (tests/fake_audio.py),
faster than real time, on real speech rendered by espeak-ng.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_audio import FakeSoundDevice, installed

from voice_sim import devices
from voice_sim.audio import SAMPLE_RATE, load_audio
from voice_sim.endpoint import PATIENCE
from voice_sim.errors import DeviceError, InputError
from voice_sim.listen import (
    KeyWatcher,
    LiveLine,
    Microphone,
    TurnConfig,
    TurnDetector,
    WavSink,
    capture_answer,
    level_dbfs,
)

SPEED = 4.0
"""Fake-device pacing for tests: four times real time."""

ANSWER = "I understand why you are upset, let me check your order right now."
LINE_2 = "Fine. And how long is that going to take?"


@pytest.fixture(scope="module")
def answer(espeak_wav: Callable[..., Path]) -> np.ndarray:
    return load_audio(espeak_wav(ANSWER))


@pytest.fixture(scope="module")
def line_audio(espeak_wav: Callable[..., Path]) -> tuple[np.ndarray, np.ndarray]:
    return (load_audio(espeak_wav("Your company charged me twice!", voice="en-us+m3")),
            load_audio(espeak_wav(LINE_2, voice="en-us+m3")))


@pytest.fixture()
def fake() -> Iterator[FakeSoundDevice]:
    with installed(speed=SPEED) as f:
        yield f


def speech_bounds(x: np.ndarray, thr_dbfs: float = -40.0) -> tuple[float, float]:
    """First and last 20 ms frame louder than ``thr_dbfs``, in seconds."""
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    loud = np.flatnonzero([level_dbfs(f) > thr_dbfs for f in frames])
    return loud[0] * 0.02, (loud[-1] + 1) * 0.02


def blocks_of(x: np.ndarray, n: int = 320) -> Iterator[np.ndarray]:
    for i in range(0, len(x), n):
        yield x[i:i + n]


def noise(seconds: float, dbfs: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 10 ** (dbfs / 20)).astype(np.float32)


def run_detector(x: np.ndarray, config: TurnConfig) -> tuple[str | None, TurnDetector]:
    det = TurnDetector(config)
    for b in blocks_of(x):
        if (reason := det.push(b)) is not None:
            return reason, det
    return None, det


# --- the detector on its own ------------------------------------------------------------

def test_turn_ends_after_the_pause_the_rule_asks_for(answer: np.ndarray) -> None:
    """No engine, so no words: the rule's unsure wait, capped by ``silence_end_s``."""
    x = np.concatenate([noise(0.5, -65), answer + noise(len(answer) / SAMPLE_RATE, -65, 2),
                        noise(3.0, -65, 3)])
    start, end = speech_bounds(x)
    for silence in (0.5, 0.8, 1.5):
        reason, det = run_detector(x, TurnConfig(silence_end_s=silence))
        assert reason == "silence"
        assert det.speech_start is not None and det.speech_end is not None
        assert abs(det.speech_start / SAMPLE_RATE - start) <= 0.06
        assert abs(det.speech_end / SAMPLE_RATE - end) <= 0.1
        want = min(silence, PATIENCE["normal"].unsure_s)
        assert abs(det.pos / SAMPLE_RATE - (det.speech_end / SAMPLE_RATE + want)) <= 0.021


def test_pauses_between_phrases_do_not_end_the_turn(answer: np.ndarray) -> None:
    start, end = speech_bounds(answer)
    phrase = answer[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
    x = np.concatenate([noise(0.3, -65), phrase, noise(0.6, -65, 2), phrase, noise(2.0, -65)])
    reason, det = run_detector(x, TurnConfig(silence_end_s=0.8))
    assert reason == "silence"
    assert det.speech_end is not None
    assert det.speech_end / SAMPLE_RATE > 0.3 + 2 * len(phrase) / SAMPLE_RATE + 0.5


def test_a_click_is_not_an_answer() -> None:
    click = np.zeros(960, np.float32)
    click[::7] = 0.8
    x = np.concatenate([noise(0.5, -65), click, noise(3.0, -65)])
    reason, det = run_detector(x, TurnConfig(no_answer_s=2.0))
    assert reason == "silence" and not det.armed
    assert det.pos / SAMPLE_RATE == pytest.approx(2.0, abs=0.021)


def test_noisy_room_floor_is_learned(answer: np.ndarray) -> None:
    """A fan at -35 dBFS is not speech, even though the quiet-room guess said so."""
    x = np.concatenate([noise(2.0, -35), 0.5 / np.abs(answer).max() * answer
                        + noise(len(answer) / SAMPLE_RATE, -35, 2), noise(2.0, -35, 3)])
    reason, det = run_detector(x, TurnConfig())
    assert reason == "silence"
    assert det.floor_dbfs == pytest.approx(-35.5, abs=1.5)
    assert det.speech_start is not None and det.speech_start / SAMPLE_RATE >= 1.9
    assert det.pos / SAMPLE_RATE >= 2.0 + len(answer) / SAMPLE_RATE * 0.8


def test_turn_config_rejects_bad_values() -> None:
    with pytest.raises(InputError, match="silence_end_s=-1"):
        TurnConfig(silence_end_s=-1)
    with pytest.raises(InputError, match="max_answer_s"):
        TurnConfig(max_answer_s=0)
    with pytest.raises(InputError, match="turn_end='slow'"):
        TurnConfig(turn_end="slow")  # type: ignore[arg-type]


# --- through the fake device -------------------------------------------------------------

@pytest.mark.audio_device
def test_turn_ends_on_silence_through_the_device(fake: FakeSoundDevice, answer: np.ndarray,
                                                 tmp_path: Path) -> None:
    fake.add_answer(answer, delay_s=0.4, after_playback=False)
    levels: list[float] = []
    with Microphone() as mic:
        got = capture_answer(mic, None, TurnConfig(), sink=tmp_path / "a.wav",
                             on_level=levels.append)
    assert got.reason == "silence" and got.heard_speech
    assert got.speech_end_s is not None and got.speech_start_s is not None
    # No engine, so no words: the end-of-turn rule's unsure wait.
    unsure = PATIENCE["normal"].unsure_s
    assert got.duration_s - got.speech_end_s == pytest.approx(unsure, abs=0.021)
    assert got.pause_s == pytest.approx(unsure, abs=0.021) and "words unknown" in got.end_why
    assert 0.0 < got.speech_start_s <= 0.6  # the answer began 0.4 s after the mic opened
    assert max(levels) > -30 and min(levels) < -60
    saved = load_audio(tmp_path / "a.wav")
    assert len(saved) / SAMPLE_RATE == pytest.approx(got.duration_s, abs=1e-3)
    assert got.wav == tmp_path / "a.wav"


@pytest.mark.audio_device
def test_max_length_ends_the_turn(fake: FakeSoundDevice, answer: np.ndarray) -> None:
    fake.add_answer(answer, delay_s=0.0, after_playback=False)
    with Microphone() as mic:
        got = capture_answer(mic, None, TurnConfig(max_answer_s=1.5))
    assert got.reason == "max_length"
    assert got.duration_s == pytest.approx(1.5, abs=0.021)
    assert got.heard_speech


@pytest.mark.audio_device
def test_enter_ends_the_turn_and_q_quits(fake: FakeSoundDevice, answer: np.ndarray) -> None:
    fake.add_answer(answer, delay_s=0.0, after_playback=False)
    r, w = os.pipe()
    with os.fdopen(r) as rf, os.fdopen(w, "w") as wf:
        keys = KeyWatcher(rf, enabled=True).start()

        def press(text: str, after_blocks: int) -> Callable[[float], None]:
            seen: list[float] = []

            def on_level(db: float) -> None:
                seen.append(db)
                if len(seen) == after_blocks:
                    wf.write(text)
                    wf.flush()
            return on_level

        with Microphone() as mic:
            got = capture_answer(mic, None, TurnConfig(), keys=keys, on_level=press("\n", 25))
            assert got.reason == "key"
            # Ended mid-answer (4.4 s long), soon after the press at 0.5 s.
            assert 0.5 <= got.duration_s < 3.0
            got = capture_answer(mic, None, TurnConfig(), keys=keys, on_level=press("q\n", 10))
            assert got.reason == "quit"
            assert got.duration_s < 3.0


def test_key_watcher_is_off_without_a_terminal() -> None:
    keys = KeyWatcher(io.StringIO("\n"))
    assert not keys.enabled
    keys.start()
    assert keys.poll() is None


@pytest.mark.audio_device
def test_interrupt_keeps_what_was_captured(fake: FakeSoundDevice, answer: np.ndarray,
                                          tmp_path: Path) -> None:
    """Ctrl-C mid-answer: the exception propagates and the WAV holds every block so far."""
    fake.noise_dbfs = None
    # A moment after the microphone opens: audio before the capture starts is not the
    # answer's (it teaches the noise floor).
    fake.add_answer(answer, delay_s=0.2, after_playback=False)
    n = 0

    def on_level(_db: float) -> None:
        nonlocal n
        n += 1
        if n == 75:  # 1.5 s of audio
            raise KeyboardInterrupt

    wav = tmp_path / "interrupted.wav"
    with Microphone() as mic, pytest.raises(KeyboardInterrupt):
        capture_answer(mic, None, TurnConfig(), sink=wav, on_level=on_level)
    with wave.open(str(wav)) as w:
        assert w.getnframes() == 75 * 320
    saved = load_audio(wav)
    lead = int(np.argmax(np.abs(saved) > 1e-3))
    first = int(np.argmax(np.abs(answer) > 1e-3))
    assert lead > 0
    assert np.allclose(saved[lead:], answer[first:first + len(saved) - lead], atol=1e-3)


@pytest.mark.audio_device
def test_device_failure_mid_answer_keeps_what_was_captured(
        fake: FakeSoundDevice, answer: np.ndarray, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The audio callback fails (PortAudio aborts the stream): a clear DeviceError, and
    the WAV keeps the audio captured before the failure."""
    fake.noise_dbfs = None
    fake.add_answer(answer, delay_s=0.0, after_playback=False)
    wav = tmp_path / "aborted.wav"
    real = Microphone._callback
    calls = 0

    def failing(self: Microphone, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > 50:
            raise RuntimeError("USB microphone unplugged")
        real(self, *args)

    monkeypatch.setattr(Microphone, "_callback", failing)
    with Microphone() as mic, pytest.raises(DeviceError, match="stopped delivering audio"):
        capture_answer(mic, None, TurnConfig(stall_s=0.3), sink=wav)
    assert isinstance(fake.callback_errors[0], RuntimeError)
    # The WAV ends exactly where the device failed: the last n of the 50 blocks the
    # microphone delivered (the few queued before the turn began are not the answer's).
    saved = load_audio(wav, allow_silent=True)
    n = len(saved) // 320
    assert len(saved) == n * 320 and n >= 40
    assert np.allclose(saved, answer[(50 - n) * 320:50 * 320], atol=1e-4)


def test_wav_survives_a_hard_crash(tmp_path: Path) -> None:
    """The process dies mid-answer (no close, no atexit): the WAV on disk is complete."""
    wav = tmp_path / "crash.wav"
    code = textwrap.dedent(f"""
        import os, numpy as np
        from voice_sim.listen import WavSink
        sink = WavSink({str(wav)!r})
        t = np.arange(320) / 16000
        for i in range(40):
            sink.write((0.3 * np.sin(2 * np.pi * 220 * (t + i * 0.02))).astype(np.float32))
        os._exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    with wave.open(str(wav)) as w:  # the stdlib reader trusts only the header
        assert w.getnframes() == 40 * 320
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768
    assert abs(float(np.abs(x).max()) - 0.3) < 0.01


def test_wav_sink_reports_an_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="cannot write the answer recording"):
        WavSink(blocker / "a.wav")


def test_live_line_draws_meter_and_caption() -> None:
    out = io.StringIO()
    line = LiveLine(out, enabled=True, width=40)
    line.level(-30.0)
    line.caption("so what you're saying is that the charge appeared twice")
    text = out.getvalue()
    assert text.startswith("\r[▮▮▮▮▯▯▯▯] ")
    last = text.split("\r")[-1]
    assert len(last) == 39 and last.rstrip().endswith("appeared twice") and "…" in last
    line.clear()
    assert out.getvalue().endswith("\r")
    quiet = io.StringIO()
    LiveLine(quiet).caption("hello")  # not a terminal: draws nothing
    assert quiet.getvalue() == ""


# --- the whole live path, with a real speech engine --------------------------------------

@pytest.mark.audio_device
@pytest.mark.model
@pytest.mark.slow
def test_live_turn_end_to_end(fake: FakeSoundDevice, whisper: Any, answer: np.ndarray,
                              line_audio: tuple[np.ndarray, np.ndarray], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Persona audio comes out, the answer goes in, the turn ends on silence, the next
    line plays — with live captions and a real Whisper transcript, decoded only once
    the next line has started (``final_after``, as the live session does)."""
    import threading
    import time

    import voice_sim.listen as listen

    line1, line2 = line_audio
    fake.add_answer(answer, delay_s=0.3)
    captions: list[str] = []
    stream = whisper.stream()
    finish, finished_at = stream.finish, []

    def noted_finish() -> Any:
        finished_at.append(time.perf_counter())
        return finish()

    stream.finish = noted_finish
    go = threading.Event()
    monkeypatch.setattr(listen, "FINAL_HOLD_S", 60.0)
    with Microphone() as mic:
        devices.play(line1, SAMPLE_RATE)
        got = capture_answer(mic, stream, TurnConfig(turn_end="fast"),
                             sink=tmp_path / "turn1.wav", on_caption=captions.append,
                             wait_final=False, final_after=go)
        devices.play(line2, SAMPLE_RATE)
        assert got.pending is not None and not finished_at
        go.set()
        transcript = got.pending.result(timeout=60)

    played = fake.played
    assert len(played) == 2
    assert np.allclose(played[0].samples[:len(line1)], line1)
    assert np.allclose(played[1].samples[:len(line2)], line2)
    (ans_start, ans_end), = fake.answers_fed
    assert ans_start is not None and ans_end is not None and played[0].end_s is not None
    assert ans_start >= played[0].end_s + 0.3 - 0.03  # the answer came after the line
    assert played[1].start_s >= ans_end  # and the next line after the answer

    assert got.reason == "silence"
    assert got.speech_end_s is not None
    # A finished sentence ends on a short pause once the words reach it; at 4x speed
    # the decode's lag may run into the upper bound.
    assert (got.end_why.startswith(("finished", "may go on"))
            or got.end_why == "waiting for the words"), (
        got.end_why)
    assert got.pause_s is not None
    assert got.pause_s <= PATIENCE["fast"].incomplete_s + 0.021
    words = transcript.text.lower()
    for w in ("understand", "upset", "order"):
        assert w in words, transcript.text
    assert captions and captions == list(got.captions)
    assert got.transcript is None and got.final_at is None
    # The engine heard from just before the speech to the end of the turn.
    assert transcript.duration_s == pytest.approx(got.duration_s - got.offset_s, abs=0.045)
    assert finished_at[0] >= played[1].started_at >= got.ended_at
