#!/usr/bin/env python3
"""`voice-sim serve` in real headless chromium: page load, perceived gap, and turn
latency with one call and with three at once.

One server (the shipped personas, Whisper loaded once) is called by chromium
processes whose microphone is a WAV (``--use-file-for-fake-audio-capture``): three
good answers to double-billing placed in quiet room noise after each line (as
tests/test_serve_browser.py builds them); each call reuses the last calm reading.
Printed, in milliseconds:

  page load      the home, call and trainers pages: HTTP response (median of 20, warm)
                 and in the browser, navigation start -> load event (median of 5)
  perceived gap  the end of the trainee's speech in the audio the page captured (its
                 last 20 ms frame above -40 dBFS RMS, the speech end bench_latency.py
                 uses) -> the persona's next line starting
                 to play in the page (AudioBufferSourceNode.start, plus the context's
                 reported output latency)
  turn latency   Turn.latency_s from session.json: the end of the answer detected ->
                 the next line handed to the speaker (here: sent to the page)

first for one call alone, then for three calls at once (started ``--stagger`` seconds
apart, so they overlap for the whole call but do not end every answer in the same
instant), with the 1-minute load
average (the machine may be shared). ``--terminal FILE`` takes the terminal path's
figures from scripts/bench_latency.py --json output (its perceived gap = the silence
setting + detect + audible) and prints the difference.

    .venv/bin/python scripts/bench_serve.py [--concurrent 3] [--terminal latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser driver the tests use

SILENCE_END_S = 0.8
WORK_S = 4.0
"""Seconds left for the server's work between an answer and the next line; generous,
so three calls on two cores never talk over the customer."""


def _seconds(path: Path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def _capture(tmp: Path, name: str) -> Path:
    """A good call's microphone file: three answers to double-billing, placed after each
    line (the call reuses the last calm reading, so it starts at once)."""
    from browser import capture_file

    from voice_sim.persona import load_persona
    from voice_sim.speak import cached_render

    p = load_persona("double-billing")
    line = {k: _seconds(v.audio or cached_render(v.text, p.voice)) for k, v in p.lines.items()}
    ex = ROOT / "tests" / "example_suite"
    answers = [ex / "good-call" / f"0{i}.wav" for i in (1, 2, 3)]
    at = 0.3 + line["opening"] + 1.5
    parts = []
    for a, nxt in zip(answers, ["order_details", "when_money", None], strict=True):
        parts.append((at, a))
        if nxt:
            at += _seconds(a) + SILENCE_END_S + WORK_S + line[nxt] + 0.7
    return capture_file(tmp / f"{name}.wav", parts, at + 40)


def _call(url: str, wav: Path, profile: Path, out: dict[str, Any]) -> None:
    from browser import chromium

    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             "--autoplay-policy=no-user-gesture-required",
             f"--use-file-for-fake-audio-capture={wav}"]
    try:
        with chromium(profile, flags) as b:
            b.open(url + "call/double-billing")
            b.wait("voiceSim.lastBaselineReady", timeout=60)
            b.js("document.getElementById('start').click()")
            deadline = time.monotonic() + 180
            snap = None
            while time.monotonic() < deadline:
                if b.js("location.pathname").startswith("/sessions/"):
                    break
                try:
                    snap = json.loads(b.js("JSON.stringify({lines: voiceSim.lines, frames: "
                                           "voiceSim.frames, done: voiceSim.done, error: "
                                           "voiceSim.error, turns: voiceSim.turns})"))
                except RuntimeError:
                    continue
                if snap["done"] or snap["error"]:
                    break
                time.sleep(0.3)
            out["snap"] = snap
    except BaseException as e:
        out["error"] = e


def perceived_gaps(snap: dict[str, Any]) -> list[float]:
    """Per answered turn: ms from the end of speech in the captured audio to the next
    line's sound starting in the page."""
    frames = snap["frames"]
    lines = snap["lines"]
    gaps = []
    for k in range(1, len(lines)):
        audio = lines[k].get("audio")
        prev = lines[k - 1].get("audio")
        if not audio or not prev or prev.get("endedAt") is None:
            continue
        window = [f for f in frames if prev["endedAt"] <= f[1] <= audio["receivedAt"]]
        loud = [f for f in window if f[3] > 0.01]  # RMS -40 dBFS, as bench_latency.py
        if not loud:
            continue
        speech_end = loud[-1][1]
        gaps.append(audio["startedAt"] + 1000 * audio.get("outputLatency", 0) - speech_end)
    return gaps


def _latencies(sessions: Path, names: list[str]) -> list[float]:
    out = []
    for n in names:
        record = json.loads((sessions / n / "session.json").read_text())
        out += [1000 * t["latency_s"] for t in record["turns"] if t["latency_s"] is not None]
    return out


def _stages(snaps: list[dict[str, Any]]) -> str:
    """Median ms per stage of the turn latency (as bench_latency.py splits it)."""
    per: dict[str, list[float]] = {}
    for snap in snaps:
        for t in snap.get("turns") or []:
            for k, v in (t.get("stages_ms") or {}).items():
                per.setdefault(k, []).append(v)
    return ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in per.items()) or "none"


STAGES: list[dict[str, Any]] = []
"""Every call's last page state, for the stage split."""


def _round(url: str, tmp: Path, n: int, tag: str, stagger_s: float = 0.0
           ) -> tuple[list[float], list[str], list[str]]:
    results = [dict[str, Any]() for _ in range(n)]
    threads = [threading.Thread(target=_call, args=(url, _capture(tmp, f"{tag}{i}"),
                                                    tmp / f"{tag}{i}", results[i]))
               for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(stagger_s)
    for t in threads:
        t.join()
    gaps: list[float] = []
    names = []
    for r in results:
        if "error" in r:
            raise SystemExit(f"bench_serve: a call failed: {r['error']!r}")
        snap = r["snap"]
        if not snap or snap.get("error") or not snap.get("done"):
            raise SystemExit(f"bench_serve: a call did not finish: "
                             f"{snap and (snap.get('error') or snap.get('done'))}")
        gaps += perceived_gaps(snap)
        names.append(snap["done"]["session"])
    STAGES[:] = [r["snap"] for r in results]
    return gaps, names, [r["snap"]["done"]["outcome"] for r in results]


def _page_load(url: str, tmp: Path) -> dict[str, tuple[float, float]]:
    from browser import chromium

    out = {}
    paths = ("", "call/double-billing", "trainers")
    http = {}
    for p in paths:
        times = []
        for _ in range(21):
            t = time.perf_counter()
            with urllib.request.urlopen(url + p) as r:
                r.read()
            times.append(1000 * (time.perf_counter() - t))
        http[p] = statistics.median(times[1:])
    with chromium(tmp / "load") as b:
        b.open(url)
        for p in paths:
            times = []
            for _ in range(5):
                b.navigate(url + p)
                times.append(b.js("performance.getEntriesByType('navigation')[0].loadEventEnd"))
            out[p or "home"] = (http[p], statistics.median(times))
    return out


def _ms(xs: list[float]) -> str:
    if not xs:
        return "none"
    s = sorted(xs)
    p95 = s[min(len(s) - 1, int(0.95 * len(s)))]
    return (f"median {statistics.median(s):.0f} ms, p95 {p95:.0f} ms, max {s[-1]:.0f} ms "
            f"(n={len(s)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrent", type=int, default=3, help="calls at once (default 3)")
    ap.add_argument("--stagger", type=float, default=5.0, metavar="S",
                    help="seconds between the concurrent calls' starts (default 5: three "
                         "agents do not finish their answers in the same instant; 0 puts "
                         "every turn of the three calls at the same moment)")
    ap.add_argument("--terminal", metavar="FILE",
                    help="scripts/bench_latency.py --json output to compare with")
    args = ap.parse_args()

    from voice_sim.engines import get_engine
    from voice_sim.serve import ServeConfig, serving

    tmp = Path(tempfile.mkdtemp(prefix="voice-sim-bench-serve-"))
    os.environ.setdefault("VOICE_SIM_HISTORY", str(tmp / "history.sqlite3"))
    engine = get_engine("whisper")
    sessions = tmp / "sessions"
    (tmp / "data").mkdir()
    shutil.copy(ROOT / "tests" / "example_suite" / "calm-baseline.wav",
                tmp / "data" / "last-baseline.wav")  # the calm reading the calls reuse
    config = ServeConfig(port=0, sessions=sessions, data=tmp / "data",
                         personas=(ROOT / "personas",))
    print(f"cores {os.cpu_count()}, engine {engine.name}, load average at start "
          f"{os.getloadavg()[0]:.2f}")
    with serving(config, engine) as server:
        url = server.url
        for page, (http_ms, nav_ms) in _page_load(url, tmp).items():
            print(f"page load {page}: HTTP median {http_ms:.1f} ms, browser navigation -> "
                  f"load event median {nav_ms:.0f} ms")
        load1 = os.getloadavg()[0]
        gaps1, names1, out1 = _round(url, tmp, 1, "one")
        lat1 = _latencies(sessions, names1)
        print(f"one call (load {load1:.2f}, outcomes {out1}):")
        print(f"  perceived gap: {_ms(gaps1)}")
        print(f"  turn latency:  {_ms(lat1)}")
        print(f"  median stages (ms): {_stages(STAGES)}")
        loadn = os.getloadavg()[0]
        gapsn, namesn, outn = _round(url, tmp, args.concurrent, "many", args.stagger)
        latn = _latencies(sessions, namesn)
        print(f"{args.concurrent} calls at once, started {args.stagger:g} s apart (load "
              f"{loadn:.2f}, outcomes {outn}):")
        print(f"  perceived gap: {_ms(gapsn)}")
        print(f"  turn latency:  {_ms(latn)}")
        print(f"  median stages (ms): {_stages(STAGES)}")
    ratio = statistics.median(latn) / statistics.median(lat1)
    print(f"turn latency ratio, {args.concurrent} calls / 1 call (medians): {ratio:.2f}x "
          f"(target <= 1.5x)")
    if args.terminal:
        text = Path(args.terminal).read_text()
        res = json.JSONDecoder().raw_decode(text[text.index("{"):])[0]
        f = res["figures"]
        term = SILENCE_END_S * 1000 + f["detect"]["median_ms"] + f["audible"]["median_ms"]
        web = statistics.median(gaps1)
        print(f"terminal perceived gap: {term:.0f} ms (silence {SILENCE_END_S * 1000:.0f} + "
              f"detect {f['detect']['median_ms']:.0f} + audible "
              f"{f['audible']['median_ms']:.0f}); browser {web:.0f} ms; difference "
              f"{web - term:+.0f} ms (target within 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
