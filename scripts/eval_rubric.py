#!/usr/bin/env python3
"""Precision, recall and F1 of the content scorer on the labelled replies.

Usage: ``scripts/eval_rubric.py [--split tune|heldout|all] [--errors] [--data FILE]
[--rubric FILE]``. Prints one row per id (the 11 word-level steps and the 4 pitfalls)
and the macro-F1 (the mean F1 over those 15 ids) for each split.

The data (``tests/data/replies.jsonl``) holds replies written for this project, each
with the customer line it answers, its gold steps and pitfalls, the traps it tests and
its split. ``heldout`` replies (30%) were written before the rules and never used to
tune them. Labelling guide (the gold labels follow it, not the scorer):

* empathize: names or validates the caller's feeling or the burden of the situation,
  or takes their side ("I'd be annoyed too", "that's not okay", "you shouldn't have to
  repeat yourself"). A bare "I understand" / "I hear you" is not empathy.
* apologize: sorry for the problem, or owning the mistake. Not "sorry you feel that
  way", not "sorry?" for a missed word, not "sorry, but" + a pitfall.
* listen_reflect: restates the specific content of the customer's line, or a
  check-understanding frame with that content. Repeating an order number alone is not.
* ask_clarify: a question that gathers facts or the caller's needs; a choice between
  offered options is offer_solution; "anything else?" is follow_up.
* offer_solution: a concrete remedy or options ("let me check" alone is not).
* set_expectations: a timeline for the outcome or an honest limit ("I can't X, but").
  A time attached to the agent's own call-back is follow_up only.
* follow_up, escalate, set_boundary, break_down, document: as in the reference.
* excuse includes refusing with no alternative; blame_customer includes "sorry if you
  were confused"; dismissive includes "I don't understand why you're upset".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voice_sim.rubric import CONTENT_IDS, Rubric, load_rubric, score_reply  # noqa: E402

DATA = ROOT / "tests" / "data" / "replies.jsonl"


def load_rows(path: Path = DATA) -> list[dict[str, Any]]:
    """The labelled replies."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate(rows: list[dict[str, Any]], rubric: Rubric | None = None) -> dict[str, Any]:
    """Per-id counts, precision, recall, F1 and the macro-F1 over :data:`CONTENT_IDS`."""
    counts = {i: {"tp": 0, "fp": 0, "fn": 0} for i in CONTENT_IDS}
    errors = []
    for row in rows:
        got = score_reply(row["reply"], row.get("customer"), rubric=rubric).ids
        gold = set(row["steps"]) | set(row["pitfalls"])
        for i in CONTENT_IDS:
            if i in got and i in gold:
                counts[i]["tp"] += 1
            elif i in got:
                counts[i]["fp"] += 1
            elif i in gold:
                counts[i]["fn"] += 1
        if got != gold:
            errors.append({"id": row["id"], "missed": sorted(gold - got),
                           "extra": sorted(got - gold), "reply": row["reply"],
                           "customer": row.get("customer")})
    per_id = {}
    for i, c in counts.items():
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_id[i] = {**c, "precision": p, "recall": r, "f1": f}
    macro = sum(v["f1"] for v in per_id.values()) / len(per_id)
    exact = sum(1 for row in rows) - len(errors)
    return {"per_id": per_id, "macro_f1": macro, "errors": errors, "n": len(rows),
            "exact": exact}


def _print(name: str, result: dict[str, Any]) -> None:
    print(f"\n== {name}: {result['n']} replies, {result['exact']} exactly right ==")
    print(f"{'id':<18}{'gold':>5}{'tp':>5}{'fp':>5}{'fn':>5}{'prec':>7}{'rec':>7}{'f1':>7}")
    for i, v in result["per_id"].items():
        gold = v["tp"] + v["fn"]
        print(f"{i:<18}{gold:>5}{v['tp']:>5}{v['fp']:>5}{v['fn']:>5}"
              f"{v['precision']:>7.2f}{v['recall']:>7.2f}{v['f1']:>7.2f}")
    print(f"{'macro-F1':<18}{'':>27}{result['macro_f1']:>7.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("tune", "heldout", "all"), default=None,
                    help="one split (default: each split, then all)")
    ap.add_argument("--errors", action="store_true", help="list the replies scored wrong")
    ap.add_argument("--data", type=Path, default=DATA, help="labelled JSONL file")
    ap.add_argument("--rubric", help="extra rubric file")
    args = ap.parse_args()
    rubric = load_rubric(args.rubric)
    rows = load_rows(args.data)
    splits = [args.split] if args.split else ["tune", "heldout", "all"]
    for split in splits:
        chosen = rows if split == "all" else [r for r in rows if r["split"] == split]
        result = evaluate(chosen, rubric)
        _print(split, result)
        if args.errors:
            for e in result["errors"]:
                print(f"  {e['id']}: missed {e['missed']} extra {e['extra']}\n"
                      f"      C: {e['customer']}\n      R: {e['reply']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
