#!/usr/bin/env python3
"""Precision, recall and F1 of the content scorer on labelled replies.

Usage::

    scripts/eval_rubric.py                 # the held-out corpus situations (the figure)
    scripts/eval_rubric.py --cv            # leave-one-situation-out CV on the 12 tuning ones
    scripts/eval_rubric.py --project [--split tune|heldout|all]   # tests/data/replies.jsonl
    scripts/eval_rubric.py --data FILE     # any JSONL with reply, customer, steps, pitfalls

Each report has one row per id (the 11 word-level steps and the 4 pitfalls), the
macro-F1 (mean F1 over those 15), the pitfall false-alarm rate (share of replies with
no gold pitfall that get one) and the confusion list (gold id missed → id found
instead, by count). ``--errors`` lists the replies scored wrong.

The corpus (``tests/data/corpus/``, rules in its ``SPEC.md``) was written by two people
outside the scorer's code, 16 customer situations; the 4 in
:data:`train_rubric.HELDOUT` are never used for tuning (not for exemplars, thresholds
or model choice): the default run reports them through the shipped scorer. ``--cv``
retrains the semantic layer 12 times, each time without one tuning situation, and
scores that situation: the figure model choices were made on. The extra replies in
``tests/data/extra/`` (situations of their own, written for the weakest ids) and the
project's replies train in every fold and are never scored.

``tests/data/replies.jsonl`` holds the project's own 272 replies (written with the
rules; also tuning data for the semantic layer). Its labelling guide:

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
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from voice_sim.rubric import CONTENT_IDS, Rubric, load_rubric, score_reply  # noqa: E402
from voice_sim.steps import PITFALL_IDS  # noqa: E402

DATA = ROOT / "tests" / "data" / "replies.jsonl"


def load_rows(path: Path = DATA) -> list[dict[str, Any]]:
    """The labelled replies of a JSONL file."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate(rows: list[dict[str, Any]], rubric: Rubric | None = None, *,
             predict: Callable[[dict[str, Any]], set[str]] | None = None) -> dict[str, Any]:
    """Per-id counts, precision, recall, F1, the macro-F1 over :data:`CONTENT_IDS`, the
    pitfall false-alarm rate and the confusion list. ``predict`` (row -> ids) replaces
    the shipped scorer (cross-validation)."""
    counts = {i: {"tp": 0, "fp": 0, "fn": 0} for i in CONTENT_IDS}
    errors = []
    confusion: Counter[tuple[str, str]] = Counter()
    clean = alarms = 0
    for row in rows:
        got = (predict(row) if predict is not None else
               set(score_reply(row["reply"], row.get("customer"), rubric=rubric).ids))
        gold = set(row["steps"]) | set(row["pitfalls"])
        if not gold & set(PITFALL_IDS):
            clean += 1
            alarms += bool(got & set(PITFALL_IDS))
        for i in CONTENT_IDS:
            if i in got and i in gold:
                counts[i]["tp"] += 1
            elif i in got:
                counts[i]["fp"] += 1
            elif i in gold:
                counts[i]["fn"] += 1
        if got != gold:
            missed, extra = sorted(gold - got), sorted(got - gold)
            errors.append({"id": row.get("id", ""), "missed": missed, "extra": extra,
                           "reply": row["reply"], "customer": row.get("customer")})
            for m in missed or ["(none)"]:
                for e in extra or ["(none)"]:
                    confusion[(m, e)] += 1
    per_id = {}
    for i, c in counts.items():
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_id[i] = {**c, "precision": p, "recall": r, "f1": f}
    macro = sum(v["f1"] for v in per_id.values()) / len(per_id)
    exact = len(rows) - len(errors)
    return {"per_id": per_id, "macro_f1": macro, "errors": errors, "n": len(rows),
            "exact": exact, "pitfall_false_alarms": alarms / clean if clean else 0.0,
            "clean": clean, "confusion": confusion.most_common()}


def _print(name: str, result: dict[str, Any], confusion: int = 15) -> None:
    print(f"\n== {name}: {result['n']} replies, {result['exact']} exactly right ==")
    print(f"{'id':<18}{'gold':>5}{'tp':>5}{'fp':>5}{'fn':>5}{'prec':>7}{'rec':>7}{'f1':>7}")
    for i, v in result["per_id"].items():
        gold = v["tp"] + v["fn"]
        print(f"{i:<18}{gold:>5}{v['tp']:>5}{v['fp']:>5}{v['fn']:>5}"
              f"{v['precision']:>7.2f}{v['recall']:>7.2f}{v['f1']:>7.2f}")
    print(f"{'macro-F1':<18}{'':>27}{result['macro_f1']:>7.3f}")
    low = min(v["recall"] for v in result["per_id"].values())
    print(f"{'lowest recall':<18}{'':>27}{low:>7.2f}")
    print(f"pitfall false alarms: {result['pitfall_false_alarms']:.1%} of "
          f"{result['clean']} replies with no pitfall")
    if confusion and result["confusion"]:
        print("confusions (gold missed -> found instead):")
        for (m, e), n in result["confusion"][:confusion]:
            print(f"  {n:>4}  {m} -> {e}")


def cross_validate(per_id: bool = False) -> dict[str, Any]:
    """Leave-one-situation-out over the tuning situations: retrain without a situation,
    score it; one pooled result. ``per_id``: each fold chooses per-id thresholds by an
    inner leave-one-situation-out on its own training part (nested: the held-out
    situation never picks its threshold)."""
    import train_rubric as tr

    from voice_sim.rubric_semantic import Classifier, thresholds

    t = time.perf_counter()
    rows = tr.tuning_rows()
    feats = tr.featurize(rows)
    print(f"featurized {len(feats)} replies in {time.perf_counter() - t:.0f} s", flush=True)
    situations = tr.fold_situations(feats)
    predicted: dict[int, set[str]] = {}
    for s in situations:
        train = [f for f in feats if f["situation"] != s]
        arr = tr.fit(train, tr.choose_thresholds(train) if per_id else None)
        clf = Classifier(tuple(str(x) for x in arr["ids"]),
                         {str(v): k for k, v in enumerate(arr["vocab"])}, arr["idf"],
                         arr["weights"], arr["bias"], arr["thresholds"], int(arr["n_dense"]))
        for n, f in enumerate(feats):
            if f["situation"] == s:
                p = clf.probabilities(f["dense"], f["text"])
                predicted[n] = {i for i, q, th in zip(clf.ids, p, thresholds(clf, f["rule_ids"]),
                                                      strict=True) if q >= th}
        print(f"  fold {s}: done ({time.perf_counter() - t:.0f} s)", flush=True)
    test = [(n, f) for n, f in enumerate(feats) if n in predicted]
    by_row = {id(f): predicted[n] for n, f in test}
    return evaluate([f for _, f in test], predict=lambda r: by_row[id(r)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv", action="store_true",
                    help="leave-one-situation-out cross-validation on the tuning situations")
    ap.add_argument("--per-id", action="store_true",
                    help="with --cv: per-id thresholds chosen inside each fold")
    ap.add_argument("--project", action="store_true",
                    help="the project's replies (tests/data/replies.jsonl)")
    ap.add_argument("--split", choices=("tune", "heldout", "all"), default=None,
                    help="with --project: one split (default: each, then all)")
    ap.add_argument("--data", type=Path, help="another labelled JSONL file")
    ap.add_argument("--errors", action="store_true", help="list the replies scored wrong")
    ap.add_argument("--rubric", help="extra rubric file")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    rubric = load_rubric(args.rubric)
    results: list[tuple[str, dict[str, Any]]] = []
    if args.cv:
        results.append(("cross-validation, 12 tuning situations"
                        + (", per-id thresholds (nested)" if args.per_id else ""),
                        cross_validate(args.per_id)))
    elif args.project or args.data:
        rows = load_rows(args.data or DATA)
        if args.data:
            results.append((str(args.data), evaluate(rows, rubric)))
        else:
            for split in [args.split] if args.split else ["tune", "heldout", "all"]:
                chosen = rows if split == "all" else [r for r in rows if r["split"] == split]
                results.append((f"project replies, {split}", evaluate(chosen, rubric)))
    else:
        import train_rubric as tr

        rows = tr.load_corpus(heldout=True)
        results.append((f"held-out situations ({', '.join(sorted(tr.HELDOUT))})",
                        evaluate(rows, rubric)))
    for name, result in results:
        if args.json:
            out = {k: v for k, v in result.items() if k != "errors" or args.errors}
            out["confusion"] = [[m, e, n] for (m, e), n in result["confusion"]]
            print(json.dumps({"name": name, **out}, indent=2))
            continue
        _print(name, result)
        if args.errors:
            for e in result["errors"]:
                print(f"  {e['id']}: missed {e['missed']} extra {e['extra']}\n"
                      f"      C: {e['customer']}\n      R: {e['reply']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
