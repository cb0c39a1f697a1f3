#!/usr/bin/env python3
"""Check a writer's labelled reply file against tests/data/outside/SPEC.md.

Usage: scripts/check_labels.py FILE.jsonl

The format and the ids are checked by ``scripts/eval_rubric.py``'s reader
(:func:`~eval_rubric.load_labelled`: one line naming file:line and field, exit 2);
then what the writing spec adds: a known ``style``, unique ids, and per situation its
60 replies and the spec's minimum count of every id (printed with the replies, customer
lines, ``asr`` replies and pitfall-free replies of each situation). Exit 1 when any is
short, or the file is empty.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import eval_rubric as er  # noqa: E402

STYLES = {"formal", "casual", "terse", "rambling", "british", "american", "asr"}
FEWER = {"break_down", "document", "escalate", "set_boundary"}
"""Ids the spec asks for at least 3 times per situation (every other id: 4)."""
PER_SITUATION = 60
"""Replies the spec asks for in each situation."""


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: scripts/check_labels.py FILE.jsonl", file=sys.stderr)
        return 2
    path = Path(sys.argv[1])
    try:
        rows = er.load_labelled(path)
    except er.DataError as e:
        print(f"check_labels: {e}", file=sys.stderr)
        return 2
    bad = []
    seen: set[str] = set()
    by: dict[str, list[dict]] = collections.defaultdict(list)
    for n, r in enumerate(rows, 1):
        if r.get("style") not in STYLES:
            bad.append(f"{path}: reply {n}: field 'style': {r.get('style')!r} is not one of "
                       f"{', '.join(sorted(STYLES))}")
        if r.get("id") in seen:
            bad.append(f"{path}: reply {n}: duplicate id {r['id']!r}")
        seen.add(r.get("id"))
        by[r.get("situation", "?")].append(r)
    for s, group in by.items():
        c = collections.Counter(i for r in group for i in r["steps"] + r["pitfalls"])
        low = [i for i in er.CONTENT_IDS if c[i] < (3 if i in FEWER else 4)]
        clean = sum(1 for r in group if not r["pitfalls"])
        asr = sum(1 for r in group if r.get("style") == "asr")
        print(f"{s}: {len(group)} replies, {len({r.get('customer') for r in group})} "
              f"customer lines, {asr} asr, {clean} pitfall-free; under the minimum: "
              f"{', '.join(low) or 'none'}")
        if low:
            bad.append(f"{path}: situation {s}: under the spec's minimum: {', '.join(low)}")
    if not rows:
        bad.append(f"{path}: no replies: the spec asks for {PER_SITUATION} per situation")
    bad += [f"{path}: situation {s}: {len(g)} replies, the spec asks for {PER_SITUATION}"
            for s, g in by.items() if len(g) != PER_SITUATION]
    print("\n".join(bad) if bad else "OK")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
