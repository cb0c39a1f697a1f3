#!/usr/bin/env python3
"""Check a labelled reply file (tests/data/outside/SPEC.md): format, ids, per-situation counts.

Usage: scripts/check_labels.py FILE.jsonl  (exit 1 on any problem)
"""

from __future__ import annotations

import collections
import json
import sys

STEPS = {"listen_reflect", "empathize", "apologize", "ask_clarify", "offer_solution",
         "set_expectations", "follow_up", "escalate", "set_boundary", "break_down", "document"}
PITFALLS = {"blame_customer", "excuse", "dismissive", "argue"}
STYLES = {"formal", "casual", "terse", "rambling", "british", "american", "asr"}
FEWER = {"break_down", "document", "escalate", "set_boundary"}
FIELDS = ("id", "situation", "customer", "reply", "steps", "pitfalls", "style")


def problems(n: int, r: dict, seen: set) -> list[str]:
    out = [f"line {n}: missing {k}" for k in FIELDS if k not in r]
    if set(r.get("steps", [])) - STEPS:
        out.append(f"line {n}: unknown steps {sorted(set(r['steps']) - STEPS)}")
    if set(r.get("pitfalls", [])) - PITFALLS:
        out.append(f"line {n}: unknown pitfalls {sorted(set(r['pitfalls']) - PITFALLS)}")
    if r.get("style") not in STYLES:
        out.append(f"line {n}: unknown style {r.get('style')!r}")
    if r.get("id") in seen:
        out.append(f"line {n}: duplicate id {r['id']}")
    return out


def main() -> int:
    bad: list[str] = []
    by: dict[str, list[dict]] = collections.defaultdict(list)
    seen: set = set()
    with open(sys.argv[1], encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
            except ValueError as e:
                bad.append(f"line {n}: not JSON: {e}")
                continue
            bad += problems(n, r, seen)
            seen.add(r.get("id"))
            by[r.get("situation", "?")].append(r)
    for s, rows in by.items():
        c = collections.Counter(i for r in rows for i in r.get("steps", []) + r.get("pitfalls", []))
        low = [i for i in sorted(STEPS | PITFALLS) if c[i] < (3 if i in FEWER else 4)]
        clean = sum(1 for r in rows if not r.get("pitfalls"))
        asr = sum(1 for r in rows if r.get("style") == "asr")
        print(f"{s}: {len(rows)} replies, {len({r.get('customer') for r in rows})} customer "
              f"lines, {asr} asr, {clean} pitfall-free; under the minimum: {low or 'none'}")
    print("\n".join(bad) if bad else "OK")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
