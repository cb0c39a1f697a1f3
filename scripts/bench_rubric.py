#!/usr/bin/env python3
"""Speed of text-only content scoring: replies per second, one process and two.

Prints wall-clock rates and, since a shared machine's other load skews those, rates per
CPU-second as well.

Usage: ``scripts/bench_rubric.py [--n 20000] [--procs 2]``. Scores the labelled replies
(tests/data/replies.jsonl, each with its customer line) over and over; the rubric is
loaded once per process, before the clock starts, and that load time is printed too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data" / "replies.jsonl"


def _pairs() -> list[tuple[str, str | None]]:
    with DATA.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["reply"], r.get("customer")) for r in rows]


def _work(n: int) -> tuple[float, float]:
    """Score ``n`` replies in this process; return (wall, CPU) seconds taken."""
    from voice_sim.rubric import load_rubric, score_reply

    rubric = load_rubric()
    pairs = _pairs()
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(n):
        reply, customer = pairs[k % len(pairs)]
        score_reply(reply, customer, rubric=rubric)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="replies per run (default 20000)")
    ap.add_argument("--procs", type=int, default=2, help="processes for the parallel run")
    args = ap.parse_args()

    t0 = time.perf_counter()
    from voice_sim.rubric import load_rubric

    load_rubric()
    print(f"rubric load (import + parse + compile, once per process): "
          f"{time.perf_counter() - t0:.3f} s")
    secs, cpu = _work(args.n)
    print(f"1 process:  {args.n} replies in {secs:.2f} s = {args.n / secs:,.0f} replies/s "
          f"({1000 * secs / args.n:.3f} ms each); CPU time {cpu:.2f} s = "
          f"{args.n / cpu:,.0f} replies per CPU-second")
    per = args.n // args.procs
    with mp.get_context("spawn").Pool(args.procs) as pool:
        pool.map(_work, [10] * args.procs)  # warm-up: imports and rubric load
        t0 = time.perf_counter()
        times = pool.map(_work, [per] * args.procs)
        wall = time.perf_counter() - t0
    total = per * args.procs
    cpu = sum(c for _, c in times)
    print(f"{args.procs} processes: {total} replies in {wall:.2f} s = "
          f"{total / wall:,.0f} replies/s; {total / cpu:,.0f} replies per CPU-second")
    print("(wall-clock figures drop when other work shares the cores; CPU-second figures "
          "do not)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
