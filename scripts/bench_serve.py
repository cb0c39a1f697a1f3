#!/usr/bin/env python3
"""`voice-sim serve` in real headless chromium: page load, perceived gap, and turn
latency with one call and with three at once.

One server (the shipped personas, double-billing said without its phrasing variants
so the microphone can be laid out in advance; Whisper loaded once) is called from tabs
of one chromium whose microphone is a WAV (``--use-file-for-fake-audio-capture``;
chromium opens the file afresh for every getUserMedia stream, so each tab hears it
from its own start): three good answers to double-billing placed in quiet room noise
after each line (as tests/test_serve_browser.py lays them out) — by default the lines'
``sample_reply`` in scripts/bench_latency.py's trainee voice, the answers its terminal
call speaks, so ``--terminal`` compares the two paths on the same speech (``--answers
good-call``: the example suite's good call, other words in a slower voice, whose
endings the turn detector reads less surely); each call reuses the last calm reading.
Printed, in milliseconds:

  page load      the home, call and trainers pages: HTTP response (median of 20, warm)
                 and in the browser, navigation start -> load event (median of 5)
  perceived gap  the end of the trainee's speech in the audio the page captured (its
                 last 20 ms frame above -40 dBFS RMS, where bench_latency.py takes the
                 rendered answer's known end) -> the persona's next line starting to
                 play in the page (AudioBufferSourceNode.start, plus the context's
                 reported output latency), and its parts: the speech's end -> the
                 page told the end was detected (detection, and the network both
                 ways) -> the next line's ``play`` in the page (the session's turn) ->
                 its sound starting -> the output latency; with the turn detector's
                 reading of each answer's end
  turn latency   Turn.latency_s from session.json: the end of the answer detected ->
                 the next line handed to the speaker (here: sent to the page)

first for ``--calls`` calls alone, one after another, then for ``--rounds`` rounds of
``--concurrent`` calls at once in as many tabs (started ``--stagger`` seconds apart, so
they overlap for the whole call but do not end every answer in the same instant; the
last tab opened is in front, the others are background tabs, and the gap is also
given for each kind), with the 1-minute load average (the machine may be shared).
Three answered turns per call (a call lasts about a minute): the defaults give 12
and 9 turns in about 5½ minutes.
``--terminal FILE`` takes the terminal path's perceived gap from
scripts/bench_latency.py --json output (``figures.perceived``, the same speech end ->
sound; older files without it: silence setting + detect + audible) and prints the
difference.

    .venv/bin/python scripts/bench_serve.py [--calls 4] [--rounds 1] [--concurrent 3]
        [--answers sample|good-call] [--terminal latency.json]
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
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser driver the tests use

WORK_S = 3.0
"""Seconds left for the server's work between an answer and the next line: enough for
three calls on an idle machine (the tests leave more, as they run under load)."""

FAKE_MIC = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required"]


PATH = ("opening", "order_details", "when_money")
"""The lines the good call answers, in order (bench_latency.py's double-billing call
takes the same path on its sample replies)."""


def _answers(personas: Path, kind: str) -> list[Path]:
    """The three answers the microphone speaks: each line's ``sample_reply`` in
    bench_latency.py's trainee voice, as its terminal call speaks them (``sample``), or
    the example suite's good call (``good-call``, another voice and wording)."""
    if kind == "good-call":
        ex = ROOT / "tests" / "example_suite"
        return [ex / "good-call" / f"0{i}.wav" for i in (1, 2, 3)]
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_latency import TRAINEE_VOICE

    from voice_sim.persona import load_persona
    from voice_sim.speak import Voice, cached_render

    persona = load_persona(personas / "double-billing.yaml")
    voice = Voice(**TRAINEE_VOICE)  # type: ignore[arg-type]
    replies = [persona.lines[line_id].sample_reply for line_id in PATH]
    if not all(replies):
        raise SystemExit(f"bench_serve: double-billing lacks a sample_reply on {PATH}")
    return [cached_render(r, voice) for r in replies if r]


def _capture(tmp: Path, personas: Path, kind: str) -> Path:
    """A good call's microphone file: three answers to double-billing, placed after each
    line (the call reuses the last calm reading, so it starts at once)."""
    from browser import capture_file, line_lengths, timeline

    line = line_lengths("double-billing", personas)
    parts = timeline(0.3 + line[PATH[0]] + 1.5, _answers(personas, kind),
                     [line[PATH[1]], line[PATH[2]]], WORK_S)
    return capture_file(tmp / "answers.wav", parts, parts[-1][0] + 40)


def _call(tab: Any, url: str, out: dict[str, Any]) -> None:
    """One call in ``tab``, followed until it is over: its last page state in ``out``."""
    try:
        tab.open(url + "call/double-billing")
        tab.wait("voiceSim.lastBaselineReady", timeout=60)
        tab.js("document.getElementById('start').click()")
        deadline = time.monotonic() + 180
        snap = None
        while time.monotonic() < deadline:
            if tab.js("location.pathname").startswith("/sessions/"):
                break
            try:
                snap = json.loads(tab.js("JSON.stringify({lines: voiceSim.lines, frames: "
                                         "voiceSim.frames, done: voiceSim.done, error: "
                                         "voiceSim.error, turns: voiceSim.turns, heard: "
                                         "voiceSim.heard, visible: "
                                         "document.visibilityState})"))
            except RuntimeError:
                continue
            if snap["done"] or snap["error"]:
                break
            time.sleep(0.3)
        out["snap"] = snap
    except BaseException as e:
        out["error"] = e


def perceived_gaps(snap: dict[str, Any], parts: dict[str, list[float]] | None = None,
                   whys: list[str] | None = None) -> list[float]:
    """Per answered turn: ms from the end of speech in the captured audio to the next
    line's sound starting in the page; ``parts`` gets the gap's parts in the page's
    clock (:data:`PARTS`), ``whys`` the turn detector's reading of each answer's end."""
    frames = snap["frames"]
    lines = snap["lines"]
    heard = snap.get("heard") or []
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
        out_ms = 1000 * audio.get("outputLatency", 0)
        gaps.append(audio["startedAt"] + out_ms - speech_end)
        seen = [h for h in heard if speech_end <= h[0] <= audio["receivedAt"]]
        if parts is not None and seen:
            at = seen[-1][0]
            for k, v in zip(PARTS, (at - speech_end, audio["receivedAt"] - at,
                                    audio["startedAt"] - audio["receivedAt"], out_ms), strict=True):
                parts.setdefault(k, []).append(v)
        if whys is not None and seen:
            whys.append(str(seen[-1][1]))
    return gaps


PARTS = ("end heard", "turn", "play start", "output latency")
"""The browser's perceived gap in parts: the speech's end -> the page told the end was
detected (detection and the network both ways) -> the next line's ``play`` reaching the
page (the session's turn) -> its sound starting (decoded clip, context resumed) -> the
audio context's reported output latency."""


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


@dataclass
class Calls:
    """What the calls of one case gave, added to round by round."""

    gaps: list[float] = field(default_factory=list)
    """Perceived gaps, ms."""
    gaps_by_tab: dict[str, list[float]] = field(
        default_factory=lambda: {"front": [], "background": []})
    sessions: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    snaps: list[dict[str, Any]] = field(default_factory=list)
    """Each call's last page state."""
    parts: dict[str, list[float]] = field(default_factory=dict)
    """The perceived gaps' parts (:data:`PARTS`), ms."""
    whys: list[str] = field(default_factory=list)
    """The turn detector's reading of each answer's end."""


def _round(b: Any, url: str, n: int, stagger_s: float, into: Calls) -> None:
    """``n`` calls at once, in ``n`` new tabs of chromium ``b``, started ``stagger_s``
    apart."""
    results = [dict[str, Any]() for _ in range(n)]
    with ExitStack() as tabs:
        threads = [threading.Thread(target=_call, args=(tabs.enter_context(b.new_tab()), url,
                                                         results[i]))
                   for i in range(n)]
        for t in threads:
            t.start()
            time.sleep(stagger_s)
        for t in threads:
            t.join()
    for r in results:
        if "error" in r:
            raise SystemExit(f"bench_serve: a call failed: {r['error']!r}")
        snap = r["snap"]
        if not snap or snap.get("error") or not snap.get("done"):
            raise SystemExit(f"bench_serve: a call did not finish: "
                             f"{snap and (snap.get('error') or snap.get('done'))}")
        gaps = perceived_gaps(snap, into.parts, into.whys)
        into.gaps += gaps
        into.gaps_by_tab["front" if snap["visible"] == "visible" else "background"] += gaps
        into.sessions.append(snap["done"]["session"])
        into.outcomes.append(snap["done"]["outcome"])
        into.snaps.append(snap)


def _page_load(b: Any, url: str) -> dict[str, tuple[float, float]]:
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
    with b.new_tab() as tab:
        tab.open(url)
        for p in paths:
            times = []
            for _ in range(5):
                tab.navigate(url + p)
                times.append(tab.js("performance.getEntriesByType('navigation')[0]"
                                    ".loadEventEnd"))
            out[p or "home"] = (http[p], statistics.median(times))
    return out


def _ms(xs: list[float]) -> str:
    if not xs:
        return "none"
    s = sorted(xs)
    p95 = s[min(len(s) - 1, int(0.95 * len(s)))]
    return (f"median {statistics.median(s):.0f} ms, p95 {p95:.0f} ms, max {s[-1]:.0f} ms "
            f"(n={len(s)})")


def _versus_terminal(path: Path, gaps: list[float]) -> str:
    """The browser's perceived gap beside the terminal path's, from bench_latency.py --json.

    Its ``figures.perceived`` is measured the same way (speech end -> sound); files
    from before it reported that are read as silence setting + detect + audible, an
    estimate that leaves out the turn detector's work past the silence.
    """
    text = path.read_text()
    res = json.JSONDecoder().raw_decode(text[text.index("{"):])[0]
    f = res["figures"]
    web = statistics.median(gaps)
    if "perceived" in f:
        term = f["perceived"]["median_ms"]
        how = (f"measured by bench_latency.py: median, p95 {f['perceived']['p95_ms']:.0f} "
               f"ms, load {res.get('loadavg', ['?'])[0]}")
    else:
        silence_ms = 1000 * (res.get("silence_end_s") or 0.8)  # its default then
        term = silence_ms + f["detect"]["median_ms"] + f["audible"]["median_ms"]
        how = (f"estimated from an older file without figures.perceived: silence "
               f"{silence_ms:.0f} + detect {f['detect']['median_ms']:.0f} + "
               f"audible {f['audible']['median_ms']:.0f}")
    return (f"terminal perceived gap: {term:.0f} ms ({how}); browser {web:.0f} ms; "
            f"difference {web - term:+.0f} ms (medians; target within 100 ms)")


def _report(title: str, calls: Calls, latencies: list[float], load: float) -> None:
    print(f"{title} (load {load:.2f} -> {os.getloadavg()[0]:.2f}, outcomes "
          f"{dict((o, calls.outcomes.count(o)) for o in sorted(set(calls.outcomes)))}):")
    print(f"  perceived gap: {_ms(calls.gaps)}")
    print(f"  turn latency:  {_ms(latencies)}")
    for kind, gaps in calls.gaps_by_tab.items():
        if gaps and len(gaps) < len(calls.gaps):
            print(f"  perceived gap, {kind} tabs: {_ms(gaps)}")
    print(f"  median stages (ms): {_stages(calls.snaps)}")
    if calls.parts:
        print("  perceived gap in parts, medians (ms): " + ", ".join(
            f"{k} {statistics.median(calls.parts[k]):.0f}" for k in PARTS if k in calls.parts))
        print("  each answer: " + "; ".join(
            f"{h:.0f} ms to the end heard, {w}"
            for h, w in zip(calls.parts["end heard"], calls.whys, strict=True)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=4,
                    help="calls alone, one after another (default 4)")
    ap.add_argument("--concurrent", type=int, default=3, help="calls at once (default 3)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of --concurrent calls at once (default 1)")
    ap.add_argument("--stagger", type=float, default=5.0, metavar="S",
                    help="seconds between the concurrent calls' starts (default 5: three "
                         "agents do not finish their answers in the same instant; 0 puts "
                         "every turn of the three calls at the same moment)")
    ap.add_argument("--answers", choices=("sample", "good-call"), default="sample",
                    help="what the microphone says: double-billing's sample replies in "
                         "bench_latency.py's trainee voice, as its terminal call (default: "
                         "the same answers on both paths), or the example suite's good call")
    ap.add_argument("--terminal", metavar="FILE",
                    help="scripts/bench_latency.py --json output to compare with")
    args = ap.parse_args()

    from browser import chromium, plain_personas

    from voice_sim.engines import get_engine
    from voice_sim.serve import ServeConfig, serving

    tmp = Path(tempfile.mkdtemp(prefix="voice-sim-bench-serve-"))
    os.environ.setdefault("VOICE_SIM_HISTORY", str(tmp / "history.sqlite3"))
    engine = get_engine("whisper")
    sessions = tmp / "sessions"
    (tmp / "data").mkdir()
    shutil.copy(ROOT / "tests" / "example_suite" / "calm-baseline.wav",
                tmp / "data" / "last-baseline.wav")  # the calm reading the calls reuse
    personas = plain_personas(ROOT / "personas", tmp / "personas")
    wav = _capture(tmp, personas, args.answers)
    config = ServeConfig(port=0, sessions=sessions, data=tmp / "data", personas=(personas,))
    print(f"cores {os.cpu_count()}, engine {engine.name}, load average at start "
          f"{os.getloadavg()[0]:.2f}")
    started = time.monotonic()
    with serving(config, engine) as server, chromium(
            tmp / "chromium", [*FAKE_MIC, f"--use-file-for-fake-audio-capture={wav}"]) as b:
        url = server.url
        for page, (http_ms, nav_ms) in _page_load(b, url).items():
            print(f"page load {page}: HTTP median {http_ms:.1f} ms, browser navigation -> "
                  f"load event median {nav_ms:.0f} ms")
        load1, one = os.getloadavg()[0], Calls()
        for _ in range(args.calls):
            _round(b, url, 1, 0.0, one)
        lat1 = _latencies(sessions, one.sessions)
        _report(f"one call at a time, {args.calls} calls", one, lat1, load1)
        loadn, many = os.getloadavg()[0], Calls()
        for _ in range(args.rounds):
            _round(b, url, args.concurrent, args.stagger, many)
        latn = _latencies(sessions, many.sessions)
        _report(f"{args.concurrent} calls at once in {args.concurrent} tabs of one chromium, "
                f"started {args.stagger:g} s apart, {args.rounds} rounds", many, latn, loadn)
    if latn and lat1:
        ratio = statistics.median(latn) / statistics.median(lat1)
        print(f"turn latency ratio, {args.concurrent} calls / 1 call (medians): {ratio:.2f}x "
              f"(target <= 1.5x)")
    if args.terminal:
        print(_versus_terminal(Path(args.terminal), one.gaps))
    print(f"took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
