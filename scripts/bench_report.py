"""Figures for the report and the history: size, render time, database write time.

Usage: .venv/bin/python scripts/bench_report.py SESSION_DIR
(e.g. a folder written by `voice-sim demo --out /tmp/d`). Prints one figure a line.
"""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    from voice_sim import history
    from voice_sim.record import SessionRecord, load_session
    from voice_sim.report import _contour, render_report

    session = Path(sys.argv[1])
    record = load_session(session)
    raw = record.to_json()
    turns = len(record.turns)
    wavs = sum(p.stat().st_size for p in session.glob("*.wav"))
    print(f"session: {turns} turns, {wavs / 1e6:.2f} MB of WAV")

    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "voice_sim", "report", str(session), "--out",
           str(Path(tempfile.mkdtemp()) / "r.html")]
    subprocess.run(cmd, check=True, capture_output=True)
    print(f"`voice-sim report` (fresh process, wall): {time.perf_counter() - t0:.2f} s")

    has_contour = all(t.delivery.contour_times is not None for t in record.turns)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        html = render_report(record, session)
        times.append(time.perf_counter() - t0)
    label = "contours in the record" if has_contour else "contours measured again from WAVs"
    print(f"render in process ({label}, warm): {statistics.median(times) * 1000:.0f} ms")
    print(f"report size: {len(html.encode()) / 1e6:.2f} MB (audio embedded)")
    contoured = copy.deepcopy(raw)
    for t, typed in zip(contoured["turns"], record.turns, strict=True):
        times_f0 = _contour(typed, session)
        t["delivery"]["contour"] = None if times_f0 is None else {
            "times": list(times_f0[0]), "f0_hz": list(times_f0[1])}
    with_contours = SessionRecord.from_json(contoured)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        render_report(with_contours, session)
        times.append(time.perf_counter() - t0)
    print(f"render in process (contours in the record): {statistics.median(times) * 1000:.0f} ms")
    linked = render_report(record, session, audio="link")
    print(f"report size, audio linked: {len(linked.encode()) / 1e3:.0f} kB")
    growth = len(json.dumps(contoured, indent=2)) - len(json.dumps(raw, indent=2))
    print(f"session.json growth with contours: {growth / 1e3:.0f} kB")

    db = Path(tempfile.mkdtemp()) / "h.sqlite3"
    n = 200
    t0 = time.perf_counter()
    for i in range(n):
        history.record_session(record.with_dir(f"/bench/{i}"), db=db)
    print(f"history: {1000 * (time.perf_counter() - t0) / n:.1f} ms per session recorded")
    t0 = time.perf_counter()
    got = history.load_history(db)
    text = history.format_history(got, db)
    print(f"history: load + format {len(got)} sessions: "
          f"{1000 * (time.perf_counter() - t0):.0f} ms ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
