"""The live turn's critical path, piece by piece (scripts/bench_latency.py times it whole).

From the detected end of an answer to the persona's next line, nothing slow may sit on
the path: the costly half of the delivery analysis starts in the pause that ends the
answer, or the moment it ends (and gives the same verdict as doing it all afterwards),
the next line's audio is in
memory already, and the session folder's writes go on a thread of their own; a killed
writer's temp files are swept by the next call.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from voice_sim.audio import load_audio


@pytest.mark.slow  # librosa's first use in a process: ~3 s
def test_prepared_analysis_gives_the_same_verdict(espeak_wav: Callable[..., Path]) -> None:
    from voice_sim.delivery import analyze, prepare
    from voice_sim.engines import Transcript, Word

    x = load_audio(espeak_wav("I am sorry, let me fix that for you right now.", rate=190))
    said = ("I", "am", "sorry", "let", "me", "fix", "that", "for", "you", "right", "now")
    words = tuple(Word(w, 0.3 * i, 0.3 * i + 0.25, 0.9) for i, w in enumerate(said))
    t = Transcript(engine="test", model="", text=" ".join(w.word for w in words),
                   duration_s=len(x) / 16000, words=words)
    whole = analyze(x, t)
    prepared = prepare(x)
    assert analyze(x, t, prepared=prepared).to_json(contour=True) == whole.to_json(contour=True)
    # Measures of other samples are never used, even of an equal copy: recomputed.
    other = np.concatenate([x, x])
    assert analyze(other, t, prepared=prepared).duration_s == pytest.approx(2 * whole.duration_s)


@pytest.mark.audio_device
def test_capture_hands_over_the_samples_before_the_transcript(
        espeak_wav: Callable[..., Path]) -> None:
    from fake_audio import installed

    from voice_sim.engines import Transcript
    from voice_sim.listen import Microphone, TurnConfig, capture_answer

    answer = load_audio(espeak_wav("Let me check that order for you."))

    class SlowStream:
        """A stream whose final result takes 0.3 s (as a busy engine's would)."""

        def accept(self, chunk: np.ndarray) -> str:
            return ""

        def finish(self) -> Transcript:
            import time

            time.sleep(0.3)
            return Transcript(engine="test", model="", text="", duration_s=0.0, words=())

    seen: list[tuple[np.ndarray, float]] = []

    def on_end(samples: np.ndarray) -> None:
        import time

        seen.append((samples, time.perf_counter()))

    with (installed(answers=[answer], speed=8.0, delay_s=0.2, after_playback=False) as fake,
          Microphone() as mic):
        got = capture_answer(mic, SlowStream(), TurnConfig(), on_end=on_end)
    assert fake.answers_fed and got.reason == "silence"
    (samples, at), = seen
    assert samples is got.samples
    assert got.ended_at <= at <= got.final_at - 0.25  # before the slow final, not after


@pytest.mark.audio_device
def test_the_delivery_starts_in_the_pause_that_ends_the_answer(
        espeak_wav: Callable[..., Path]) -> None:
    """``on_pause`` gets the samples DELIVERY_TAIL_S into each pause; a pause the trainee
    goes on from is dropped, and the one that ends the turn is the array ``on_end`` gets
    (the speech and the start of its pause, not the whole pause), so the work started on
    it is kept."""
    from fake_audio import installed

    from voice_sim.audio import SAMPLE_RATE
    from voice_sim.listen import DELIVERY_TAIL_S, Microphone, TurnConfig, capture_answer

    first = load_audio(espeak_wav("Let me check that order for you."))
    second = load_audio(espeak_wav("It went out on Monday."))
    answer = np.concatenate([first, np.zeros(int(0.5 * SAMPLE_RATE), np.float32), second])
    paused: list[np.ndarray] = []
    ended: list[np.ndarray] = []
    with (installed(answers=[answer], speed=8.0, delay_s=0.2, after_playback=False) as fake,
          Microphone() as mic):
        got = capture_answer(mic, None, TurnConfig(silence_end_s=1.5), on_pause=paused.append,
                             on_end=ended.append)
    assert fake.answers_fed and got.reason == "silence"
    assert len(paused) == 2  # the pause inside the answer, then the one after it
    (x,) = ended
    assert x is paused[-1] and len(x) < len(got.samples)
    assert np.array_equal(x, got.samples[:len(x)])
    assert got.speech_end_s is not None
    heard_end = got.speech_end_s - got.offset_s  # where the speech ends in the samples
    assert heard_end + DELIVERY_TAIL_S <= len(x) / SAMPLE_RATE <= heard_end + DELIVERY_TAIL_S + 0.1
    assert len(paused[0]) / SAMPLE_RATE < heard_end  # the first pause's stops short of it


def test_the_preparer_keeps_the_pause_work_and_redoes_other_samples() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from voice_sim.delivery import Preparer

    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal(16_000)).astype(np.float32)
    y = np.concatenate([x, x])
    with ThreadPoolExecutor(max_workers=1) as pool:
        prep = Preparer(pool)
        prep.on_pause(x)
        kept = prep._last
        prep.on_end(x)
        assert kept is not None and prep.future is kept[1]
        assert prep.future.result().source is x
        prep.on_pause(x)
        prep.on_end(y)  # the trainee went on: the pause's work does not stand
        assert prep.future is not None and prep.future.result().source is y
        head = Preparer(pool, x)  # an answer going on after the persona gave way
        head.on_end(x)
        assert head.future is not None
        assert np.array_equal(head.future.result().source, y)


def test_line_audio_is_kept_in_memory(tmp_path: Path) -> None:
    """Once decoded, a line never touches the disk again (it is due within milliseconds
    of the answer's end)."""
    import shutil

    from voice_sim.persona import load_persona
    from voice_sim.session import _LineVoice

    persona = load_persona("double-billing")
    voice = _LineVoice(persona)
    voice._thread.join(timeout=120)
    line = next(iter(persona.lines.values()))
    first, sr = voice.samples(line)
    moved = tmp_path / "gone.wav"
    shutil.move(voice.path(line), moved)  # the cached render disappears
    try:
        again, sr2 = voice.samples(line)
    finally:
        shutil.move(moved, voice.path(line))
    assert again is first and sr2 == sr and len(first) > sr  # a second of speech or more


def test_next_call_sweeps_temp_files_of_killed_writers(tmp_path: Path) -> None:
    from voice_sim.session import SessionWriter

    old = tmp_path / "20260101-120000-double-billing"
    old.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = old / f".turn-02-customer.wav.{dead.stdout.strip()}.tmp"
    live = old / f".session.json.{os.getppid()}.tmp"  # a running process
    kept = old / "turn-01-answer.wav"
    for p in (stale, live, kept):
        p.write_bytes(b"RIFF")
    writer = SessionWriter(tmp_path, "double-billing")
    assert not stale.exists()
    assert live.exists() and kept.exists()
    assert writer.dir != old and writer.dir.parent == tmp_path
