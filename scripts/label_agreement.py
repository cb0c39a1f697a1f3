#!/usr/bin/env python3
"""How far two careful people agree on the content labels (issue 12): the ceiling of
any scorer's figure against them.

Usage: scripts/label_agreement.py [LABELS.jsonl]

``tests/data/outside/relabel_labels.jsonl`` holds a second, blind labelling of 400
corpus replies (25 from each of the 16 situations of ``tests/data/corpus/``, seeded
sample): the annotator saw the customer line, the reply, the labelling rules and the
reference, never the corpus's labels. Printed: per id precision / recall / F1 of the
second labelling against the corpus's, macro-F1, exact matches and pitfalls given to
replies the corpus labels pitfall-free — the same figures ``scripts/eval_rubric.py``
prints for the scorer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDS = ("listen_reflect", "empathize", "apologize", "ask_clarify", "offer_solution",
       "set_expectations", "follow_up", "escalate", "set_boundary", "break_down", "document",
       "blame_customer", "excuse", "dismissive", "argue")


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else (
        ROOT / "tests" / "data" / "outside" / "relabel_labels.jsonl")
    gold = {}
    for f in sorted((ROOT / "tests" / "data" / "corpus").glob("*.jsonl")):
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                gold[r["id"]] = r
    tp = dict.fromkeys(IDS, 0)
    fp = dict.fromkeys(IDS, 0)
    fn = dict.fromkeys(IDS, 0)
    exact = clean = alarms = n = 0
    with path.open(encoding="utf-8") as fh:
        labels = [json.loads(line) for line in fh]
    for k, r in enumerate(labels, 1):
        if r.get("id") not in gold:
            print(f"{path}:{k}: id {r.get('id')!r} is not in tests/data/corpus/", file=sys.stderr)
            return 2
        o = gold[r["id"]]
        g = set(o["steps"]) | set(o["pitfalls"])
        p = set(r["steps"]) | set(r["pitfalls"])
        n += 1
        exact += g == p
        if not o["pitfalls"]:
            clean += 1
            alarms += bool(r["pitfalls"])
        for i in IDS:
            tp[i] += i in g and i in p
            fp[i] += i in p and i not in g
            fn[i] += i in g and i not in p
    f1s = []
    for i in IDS:
        pr = tp[i] / (tp[i] + fp[i]) if tp[i] + fp[i] else 0.0
        rc = tp[i] / (tp[i] + fn[i]) if tp[i] + fn[i] else 0.0
        f1 = 2 * pr * rc / (pr + rc) if pr + rc else 0.0
        f1s.append(f1)
        print(f"{i:17s} precision {pr:.2f} recall {rc:.2f} F1 {f1:.2f} "
              f"(n={tp[i] + fn[i]})")
    print(f"{n} replies: macro-F1 {sum(f1s) / len(f1s):.3f}; exact {exact}/{n}; "
          f"pitfalls on pitfall-free replies {alarms}/{clean} "
          f"({100 * alarms / max(clean, 1):.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
