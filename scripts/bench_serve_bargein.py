#!/usr/bin/env python3
"""Barge-in in the browser: `voice-sim serve` in real headless chromium, the page's
speaker heard by its microphone (tests/browser.py ``echo_path``: a delay and a gain
inside the browser's audio graphs), the trainee's voice put into that microphone at
chosen moments.

Calls to a bench persona whose two long lines alternate (36 lines a call). First ``--echo-trials``
lines are let play out, the trainee answering after each: a line the page was told to
stop is a false barge-in from its own echo. Then in ``--trials`` lines the trainee
talks over the customer, 1.2-3.5 s into the line (seeded): the time from the trainee's
first sound (the moment the page started their voice, from its first loud sample) to
the line's sound stopping in the page (AudioBufferSourceNode.stop, plus the context's
reported output latency) is the stop time. Printed: false barge-ins, stops within
150 ms and their median, p95 and max, and from session.json the server's detection
time (Interruption.detect_s) and the overlap recorded.

    .venv/bin/python scripts/bench_serve_bargein.py [--echo-trials 30] [--trials 20]
        [--echo-gain 0.3] [--echo-delay 0.06] [--seed 1]

Targets (issue 15): no false barge-in from echo in 50 trials; >= 95% of barge-ins
stopped within 150 ms.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser driver the tests use

FAKE_MIC = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required"]
LINES = (
    "I have been on hold for forty minutes, and every single time somebody promises me "
    "a call back that never comes. What are you going to do about it?",
    "Nobody there ever reads my emails, the chat closes on me, and the letters say "
    "something different every time. I am running out of patience with all of you.",
)
OVER = "I am so sorry, let me fix this for you right now."
AFTER = "Okay, I understand."
PERSONA = """\
id: bench-talk
title: Barge-in bench
difficulty: easy
briefing:
  situation: The customer goes on and on; the trainee talks over them.
customer:
  name: Pat
  voice:
    id: en-us
  when_interrupted: stop
mood:
  start: 5
max_turns: 40
lines:
  - id: a
    text: "{a}"
    next:
      - heard: [escalate]
        goto: bye
      - goto: b
  - id: b
    text: "{b}"
    next:
      - heard: [escalate]
        goto: bye
      - goto: a
  - id: bye
    text: "Fine, put me through."
    end: escalated
"""
PER_CALL = 36
"""Lines heard per call (the persona's turn limit is 40)."""
WITHIN_MS = 150.0


def _voice_b64(text: str) -> str:
    """The trainee saying ``text`` (bench_latency.py's trainee voice), from its first
    loud sample, as base64 WAV for the page."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_latency import TRAINEE_VOICE

    from voice_sim.audio import load_audio, wav_bytes
    from voice_sim.speak import Voice, cached_render

    x = load_audio(cached_render(text, Voice(**TRAINEE_VOICE)))  # type: ignore[arg-type]
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return base64.b64encode(wav_bytes(x[loud[0]:loud[-1] + 1], 16000)).decode()


def _line(b: Any, k: int, key: str, timeout: float = 60.0) -> dict[str, Any]:
    """The page's record of its ``k``-th line once ``key`` is set in it."""
    got = b.wait(f"voiceSim.lines.length > {k} && voiceSim.lines[{k}].audio && "
                 f"voiceSim.lines[{k}].audio.{key} && JSON.stringify(voiceSim.lines[{k}])",
                 timeout=timeout, interval=0.01)
    return dict(json.loads(got)["audio"])


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--echo-trials", type=int, default=30,
                    help="lines played out with their echo (default 30)")
    ap.add_argument("--trials", type=int, default=20,
                    help="lines the trainee talks over (default 20)")
    ap.add_argument("--echo-gain", type=float, default=0.3, help="default 0.3 (-10 dB)")
    ap.add_argument("--echo-delay", type=float, default=0.06, metavar="S",
                    help="seconds the echo path adds to the browser's own (default 0.06)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from browser import capture_file, chromium, echo_path

    from voice_sim.engines import get_engine
    from voice_sim.serve import ServeConfig, serving

    tmp = Path(tempfile.mkdtemp(prefix="voice-sim-bench-bargein-"))
    os.environ.setdefault("VOICE_SIM_HISTORY", str(tmp / "history.sqlite3"))
    (tmp / "personas").mkdir()
    (tmp / "personas" / "bench-talk.yaml").write_text(
        PERSONA.format(a=LINES[0], b=LINES[1]), encoding="utf-8")
    (tmp / "data").mkdir()
    room = capture_file(tmp / "room.wav", [], 30.0)  # quiet room noise, looped
    rng = random.Random(args.seed)
    engine = get_engine("whisper")
    config = ServeConfig(port=0, sessions=tmp / "sessions", data=tmp / "data",
                         personas=(tmp / "personas",))
    print(f"cores {os.cpu_count()}, engine {engine.name}, echo gain {args.echo_gain:g} "
          f"+ {1000 * args.echo_delay:.0f} ms, load average at start {os.getloadavg()[0]:.2f}")
    load0, started = os.getloadavg()[0], time.monotonic()
    kinds = ["echo"] * args.echo_trials + ["over"] * args.trials
    false: list[int] = []
    stops: list[float | None] = []
    cuts: list[dict[str, Any]] = []
    with serving(config, engine) as server, chromium(
            tmp / "chromium", [*FAKE_MIC, f"--use-file-for-fake-audio-capture={room}"]) as b:
        for first in range(0, len(kinds), PER_CALL):
            b.open(server.url + "call/bench-talk",
                   before=echo_path(args.echo_gain, args.echo_delay))
            b.js("document.querySelector('input[value=none]').click();"
                 "document.getElementById('start').click()")
            b.wait("window.__echoPath", timeout=30)
            for name, text in (("over", OVER), ("after", AFTER)):
                b.js(f"__load('{name}', '{_voice_b64(text)}')", awaited=True)
            for k, kind in enumerate(kinds[first:first + PER_CALL]):
                begun = _line(b, k, "startedAt")
                if kind == "echo":
                    line = _line(b, k, "endedAt", timeout=60)
                    if line["stopAsked"] is not None:
                        false.append(first + k)
                    time.sleep(0.4)
                    b.js("__say('after')")
                else:
                    at = rng.uniform(1.2, 3.5)
                    time.sleep(max(0.0, begun["startedAt"] / 1000 + at - 0.02 - time.time()))
                    said = float(b.js("__say('over')"))
                    line = _line(b, k, "endedAt", timeout=60)
                    stops.append(None if line["stoppedAt"] is None else
                                 line["stoppedAt"] + 1000 * line["outputLatency"] - said)
            b.press("Escape")
            done = b.wait("voiceSim.done", timeout=30)
            record = json.loads((tmp / "sessions" / done["session"] / "session.json")
                                .read_text())
            cuts += [t["interruption"] for t in record["turns"] if t.get("interruption")]
            time.sleep(2.0)  # onto the report page, before the next call's page
    heard = [s for s in stops if s is not None]
    within = sum(1 for s in heard if s <= WITHIN_MS)
    n_echo = args.echo_trials
    print(f"false barge-ins from echo: {len(false)}/{n_echo}"
          + (f" (lines {', '.join(map(str, false))})" if false else ""))
    if stops:
        print(f"barge-in: {within}/{len(stops)} stopped within {WITHIN_MS:.0f} ms"
              + (f" (stop median {statistics.median(heard):.0f} ms, p95 {_pct(heard, 0.95):.0f}"
                 f" ms, max {max(heard):.0f} ms)" if heard else "")
              + (f"; {len(stops) - len(heard)} never stopped" if len(heard) < len(stops) else ""))
    if cuts:
        det = [1000 * c["detect_s"] for c in cuts]
        over = [1000 * c["overlap_s"] for c in cuts]
        print(f"server: {len(cuts)} interruptions recorded; detection median "
              f"{statistics.median(det):.0f} ms (max {max(det):.0f}), overlap median "
              f"{statistics.median(over):.0f} ms (max {max(over):.0f})")
    print(f"load {load0:.2f} -> {os.getloadavg()[0]:.2f}; took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
