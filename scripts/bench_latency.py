#!/usr/bin/env python3
"""Turn latency of the live path, in real time, through a virtual microphone.

For each of N spoken answers (espeak-ng, varied sentences) this drives the real live
capture — PortAudio, the ALSA virtual microphone ``vsim_mic`` fed in real time by
scripts/virtual_mic.py, voice_sim.listen, a real speech engine — and then plays a
pre-rendered persona line on the virtual speaker ``vsim_spk``, and prints the
distribution (median, p95, max) of:

  detect  the end detected, minus (the moment the speech ended + the silence setting):
          how late voice activity fires, device buffering included
  final   end detected -> final transcript ready
  play    final transcript ready -> the persona's audio reaches the speaker
  turn    end detected -> the persona's audio reaches the speaker (the target:
          median <= 300 ms on 2 cores)

"detect" needs the true end of the speech, which only the harness knows: the feeder
notes when it wrote the block holding the last speech sample of each answer.

``--device fake`` runs the same loop through voice_sim.fake_audio at real-time speed
instead (no PortAudio), labelled as such in the output.

    .venv/bin/python scripts/bench_latency.py --answers 10 --engine whisper
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENTENCES = [
    "I understand why you are upset, let me look into your order right now.",
    "I am sorry this happened, that sounds really frustrating.",
    "So the charge appeared twice on your statement this month.",
    "Let me check the delivery status for you.",
    "Thank you for your patience while I pull up your account.",
    "I can issue a refund today, and you will see it within five days.",
    "What I can do is send a replacement by express shipping.",
    "Could you tell me the order number, please?",
    "You are right, we should have called you back yesterday.",
    "I will stay on the line until this is sorted out.",
    "Here is what happens next: I file the claim and email you the reference.",
    "Is there anything else I can help you with today?",
]
PERSONA_LINE = "Fine. And how long is that going to take?"


def render(text: str, folder: Path, i: int, voice: str = "en-us") -> Any:
    """espeak-ng to a WAV, loaded as 16 kHz float32."""
    from voice_sim.audio import load_audio

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("bench_latency: espeak-ng is not installed (apt-get install espeak-ng)")
    out = folder / f"{i:02d}.wav"
    subprocess.run([exe, "-v", voice, "-s", "165", "-w", str(out), text], check=True)
    return load_audio(out)


def stats(xs: list[float]) -> dict[str, float]:
    """Median, p95 and max, in milliseconds."""
    s = sorted(xs)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    return {"median_ms": round(statistics.median(s) * 1000, 1),
            "p95_ms": round(p95 * 1000, 1), "max_ms": round(s[-1] * 1000, 1)}


def run_alsa(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Through PortAudio and the ALSA virtual devices."""
    from virtual_mic import MIC, SPEAKER, VirtualAudio

    va = VirtualAudio(folder / "vmic").activate()  # before sounddevice is imported
    from voice_sim import devices
    from voice_sim.listen import Microphone, capture_answer

    answers = [render(SENTENCES[i % len(SENTENCES)], folder, i) for i in range(args.answers)]
    line = render(PERSONA_LINE, folder, 99, voice="en-us+m3")
    engine = load_engine(args.engine)
    cfg = turn_config(args)
    rows = []
    with Microphone(MIC) as mic:
        time.sleep(0.5)  # let the device settle and the floor be learned
        for i, ans in enumerate(answers):
            u = va.say(ans, delay_s=0.4)
            got = capture_answer(mic, engine, cfg)
            asked = time.perf_counter()
            # The next persona line: pre-rendered, played on the virtual speaker. Playback
            # blocks for the line's length; its start is seen by the speaker thread.
            if args.play == "devices":
                devices.play(line, 16_000, device=SPEAKER)
            else:
                sd = devices.load_sounddevice()
                sd.play(line, 16_000, device=devices.resolve_device(SPEAKER, "output"),
                        blocking=True, latency="low")
            sound = va.wait_sound(asked - 0.001)
            if got.reason != "silence" or sound is None or u.speech_end_at is None:
                print(f"  answer {i}: ended by {got.reason}, sound={sound}: skipped",
                      file=sys.stderr)
                continue
            rows.append(row(i, got, u.speech_end_at, sound, cfg.silence_end_s))
            print_row(rows[-1])
    va.close()
    return rows


def run_fake(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Through voice_sim.fake_audio at real-time speed (no PortAudio)."""
    from virtual_mic import speech_end_index

    from voice_sim import devices
    from voice_sim.fake_audio import installed
    from voice_sim.listen import Microphone, capture_answer

    answers = [render(SENTENCES[i % len(SENTENCES)], folder, i) for i in range(args.answers)]
    line = render(PERSONA_LINE, folder, 99, voice="en-us+m3")
    engine = load_engine(args.engine)
    cfg = turn_config(args)
    rows = []
    with installed(speed=1.0) as fake, Microphone() as mic:
        for ans in answers:
            fake.add_answer(ans, delay_s=0.4)
        devices.play(line, 16_000)
        for i, ans in enumerate(answers):
            got = capture_answer(mic, engine, cfg)
            devices.play(line, 16_000)
            start, _ = fake.answers_fed[i]
            pb = fake.played[-1]
            if got.reason != "silence" or start is None or pb.sound_at is None:
                print(f"  answer {i}: ended by {got.reason}: skipped", file=sys.stderr)
                continue
            # Fake-clock seconds to perf_counter (speed 1: the same scale).
            speech_end_at = fake._t0 + start + speech_end_index(ans) / 16_000
            rows.append(row(i, got, speech_end_at, pb.sound_at, cfg.silence_end_s))
            print_row(rows[-1])
    return rows


def turn_config(args: argparse.Namespace) -> Any:
    from voice_sim.listen import TurnConfig

    extra = {} if args.hold_after is None else {"hold_after_s": args.hold_after}
    return TurnConfig(silence_end_s=args.silence_end, early_final=args.early_final, **extra)


def load_engine(name: str) -> Any:
    import numpy as np

    from voice_sim.engines import get_engine

    engine = get_engine(name)
    # The first decode pays one-off costs (allocations, caches); a real session pays it
    # while the persona speaks its first line, so it is not part of any turn.
    engine.transcribe(np.zeros(16_000, np.float32))
    return engine


def row(i: int, got: Any, speech_end_at: float, sound_at: float, silence: float) -> dict[str, Any]:
    return {"answer": i, "detect": got.ended_at - (speech_end_at + silence),
            "final": got.finalize_s, "play": sound_at - got.final_at,
            "turn": sound_at - got.ended_at, "early_final": got.early_final,
            "text": got.text}


def print_row(r: dict[str, Any]) -> None:
    print(f"  answer {r['answer']:2d}: detect {r['detect'] * 1000:+6.0f} ms  final "
          f"{r['final'] * 1000:5.0f} ms  play {r['play'] * 1000:4.0f} ms  turn "
          f"{r['turn'] * 1000:5.0f} ms  {'(early final) ' if r['early_final'] else ''}"
          f"{r['text'][:50]!r}", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description="live turn latency through a virtual microphone")
    p.add_argument("--answers", type=int, default=10, help="spoken answers (default 10)")
    p.add_argument("--engine", default="auto", help="auto, vosk or whisper")
    p.add_argument("--device", choices=("alsa", "fake"), default="alsa",
                   help="alsa: PortAudio + ALSA virtual mic (default); fake: fake_audio")
    p.add_argument("--play", choices=("devices", "low"), default="devices",
                   help="devices: voice_sim.devices.play (the product path, default); low: "
                        "sounddevice.play with latency='low' (alsa only), for comparison")
    p.add_argument("--silence-end", type=float, default=0.8)
    p.add_argument("--early-final", choices=("auto", "on", "off"), default="auto",
                   help="the early final transcript (default: auto = on except for Vosk)")
    p.add_argument("--hold-after", type=float, default=None,
                   help="seconds of trailing silence still fed to the engine "
                        "(TurnConfig.hold_after_s)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args()
    args.early_final = {"auto": None, "on": True, "off": False}[args.early_final]
    with tempfile.TemporaryDirectory(prefix="vsim-bench-") as tmp:
        folder = Path(tmp)
        label = ("PortAudio + ALSA virtual microphone (real time)" if args.device == "alsa"
                 else "fake sounddevice at real-time speed (NOT PortAudio)")
        print(f"bench_latency: {args.answers} answers through {label}", file=sys.stderr)
        rows = (run_alsa if args.device == "alsa" else run_fake)(args, folder)
    if not rows:
        print("bench_latency: no answer ended on silence", file=sys.stderr)
        return 1
    figures = {k: stats([r[k] for r in rows]) for k in ("detect", "final", "play", "turn")}
    result = {"device": args.device, "engine": args.engine, "play": args.play,
              "answers": len(rows),
              "silence_end_s": args.silence_end, "early_final": args.early_final,
              "figures": figures}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"device: {label}; engine: {args.engine}; play: {args.play}; "
              f"answers: {len(rows)}")
        for k, v in figures.items():
            print(f"{k:>7}: median {v['median_ms']:7.1f} ms   p95 {v['p95_ms']:7.1f} ms   "
                  f"max {v['max_ms']:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
