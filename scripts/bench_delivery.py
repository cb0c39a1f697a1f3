#!/usr/bin/env python3
"""Speed of the delivery analysis: first-call cost and real-time factor.

Prints, for SECONDS of real speech (the LibriVox clips in pocketsphinx-testdata,
looped; espeak-ng speech where they are missing):

  first call   a fresh process: import voice_sim.delivery, then warm_up() (librosa
               imports + numba), then the first analyze(); once with the numba cache
               as it is on this machine, once with an empty cache (a fresh install)
  steady       analyze() after warm-up: median and best of REPEATS runs, and the
               real-time factor (target <= 0.02 on 2 cores)
  pitch only   the YIN call inside it, librosa pyin tuned for speech (65-400 Hz,
               20 ms hop) and Praat's pitch (parselmouth) on the same audio, and the
               ratio of the full analysis to Praat's pitch extraction
  --accuracy   also median F0 and F0 std (semitones) per LibriVox clip, clean, with
               white noise at 20 dB SNR and clipped (+12 dB): ours, pyin and Praat

    .venv/bin/python scripts/bench_delivery.py [--seconds 30] [--repeats 7] [--no-cold]
                                               [--accuracy]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
FALLBACK_TEXT = ("Thank you for waiting. I can see the payment was taken twice, which should "
                 "never have happened. I will refund the second charge and send you a "
                 "confirmation by email this afternoon.")

FIRST_CALL = """
import time, sys
t0 = time.perf_counter()
import numpy as np
from voice_sim import delivery
t1 = time.perf_counter()
delivery.warm_up()
t2 = time.perf_counter()
x = np.load(sys.argv[1])
t3 = time.perf_counter()
delivery.analyze(x)
t4 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t4 - t3:.3f}")
"""


def speech(seconds: float) -> tuple[np.ndarray, str]:
    """SECONDS of real speech as float32 at SAMPLE_RATE, and where it came from."""
    import numpy as np

    from voice_sim.audio import SAMPLE_RATE, load_audio

    clips = sorted(LIBRIVOX.glob("*.wav"))
    if clips:
        parts, source = [load_audio(p) for p in clips], "LibriVox (pocketsphinx-testdata)"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "reply.wav"
            subprocess.run(["espeak-ng", "-w", str(out), FALLBACK_TEXT], check=True)
            parts, source = [load_audio(out)], "espeak-ng"
    x = np.concatenate(parts)
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(x)))
    return np.tile(x, reps)[: int(seconds * SAMPLE_RATE)].astype(np.float32), source


def first_call(audio_npy: Path, cold: bool) -> tuple[float, float, float]:
    """(import, warm_up, first analyze) seconds in a fresh interpreter."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        out = subprocess.run([sys.executable, "-c", FIRST_CALL, str(audio_npy)], env=env,
                             cwd=ROOT, capture_output=True, text=True, check=True)
    a, b, c = (float(v) for v in out.stdout.split())
    return a, b, c


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of speech (30)")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per figure (7)")
    ap.add_argument("--no-cold", action="store_true",
                    help="skip the empty-numba-cache run (it compiles for ~30 s)")
    ap.add_argument("--accuracy", action="store_true",
                    help="also compare F0 with pyin and Praat on clean, noisy, clipped clips")
    args = ap.parse_args()

    import numpy as np

    x, source = speech(args.seconds)
    dur = args.seconds
    print(f"audio: {dur:.0f} s of {source}; {os.cpu_count()} CPU cores")

    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "x.npy"
        np.save(npy, x)
        runs = [("warm numba cache", False)] + ([] if args.no_cold else
                                                [("empty numba cache", True)])
        for label, cold in runs:
            imp, warm, first = first_call(npy, cold)
            print(f"first call ({label}): import {imp:.2f} s, warm_up {warm:.2f} s, "
                  f"then first analyze {first:.3f} s")

    import librosa
    import parselmouth

    from voice_sim import delivery

    delivery.warm_up()
    full = timed(lambda: delivery.analyze(x), args.repeats)
    med = statistics.median(full)
    print(f"steady analyze: median {med:.3f} s, best {min(full):.3f} s -> real-time factor "
          f"{med / dur:.4f} (target <= 0.02)")

    sr = delivery.SAMPLE_RATE
    yin = timed(lambda: librosa.yin(x, fmin=delivery.F0_MIN_HZ, fmax=delivery.F0_MAX_HZ,
                                    sr=sr, frame_length=delivery.FRAME_LENGTH,
                                    hop_length=delivery.HOP), args.repeats)
    librosa.pyin(x[:sr], fmin=65, fmax=400, sr=sr, frame_length=1024, hop_length=320)
    pyin = timed(lambda: librosa.pyin(x, fmin=65, fmax=400, sr=sr, frame_length=1024,
                                      hop_length=320), max(1, args.repeats // 3))
    snd = parselmouth.Sound(x.astype(np.float64), sr)
    praat = timed(lambda: snd.to_pitch(time_step=delivery.HOP_S,
                                       pitch_floor=delivery.F0_MIN_HZ,
                                       pitch_ceiling=delivery.F0_MAX_HZ), args.repeats)
    p = statistics.median(praat)
    print(f"pitch only: librosa.yin {statistics.median(yin):.3f} s, librosa.pyin (65-400 Hz, "
          f"20 ms hop) {statistics.median(pyin):.3f} s, Praat to_pitch {p:.3f} s")
    print(f"full delivery analysis / Praat pitch extraction = {med / p:.2f}x")
    if args.accuracy:
        accuracy()
    return 0


def accuracy() -> None:
    """Median F0 (Hz) and F0 std (semitones): ours, pyin and Praat, per LibriVox clip."""
    import librosa
    import numpy as np
    import parselmouth

    from voice_sim import delivery
    from voice_sim.audio import load_audio

    sr = delivery.SAMPLE_RATE

    def stats(f0: np.ndarray) -> str:
        f0 = f0[np.isfinite(f0) & (f0 > 0)]
        med = float(np.median(f0))
        return f"{med:6.1f} {float(np.std(12 * np.log2(f0 / med))):4.1f}"

    rng = np.random.default_rng(0)
    print("clip      version | ours Hz  st | pyin Hz  st | Praat Hz st")
    for path in sorted(LIBRIVOX.glob("*.wav")):
        x = load_audio(path)
        power = float(np.mean(x[np.abs(x) > 0.01] ** 2))
        noisy = (x + rng.standard_normal(len(x)) * np.sqrt(power / 100)).astype(np.float32)
        hot = np.clip(x * 10 ** (12 / 20) / np.abs(x).max(), -1, 1).astype(np.float32)
        for name, y in (("clean", x), ("snr20", noisy), ("clip12", hot)):
            d = delivery.analyze(y)
            ours = np.array([f if f is not None else np.nan for f in d.contour.f0_hz])
            pf0, pv, _ = librosa.pyin(y, fmin=65, fmax=400, sr=sr, frame_length=1024,
                                      hop_length=delivery.HOP)
            praat = parselmouth.Sound(y.astype(np.float64), sr).to_pitch(
                time_step=delivery.HOP_S, pitch_floor=delivery.F0_MIN_HZ,
                pitch_ceiling=delivery.F0_MAX_HZ).selected_array["frequency"]
            print(f"{path.stem[-4:]}      {name:7s} | {stats(ours)} | "
                  f"{stats(np.where(pv, pf0, np.nan))} | {stats(praat)}")


if __name__ == "__main__":
    raise SystemExit(main())
