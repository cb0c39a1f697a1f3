#!/usr/bin/env python3
"""Precision, recall and F1 of the content scorer on labelled replies.

Usage::

    scripts/eval_rubric.py --data FILE     # a held-out labelled set (JSONL file or folder)
    scripts/eval_rubric.py --cv            # leave-one-situation-out CV (16 and 12 situations)
    scripts/eval_rubric.py --cv 16|12      # one of the two protocols
    scripts/eval_rubric.py --project [--split tune|heldout|all]   # tests/data/replies.jsonl
    scripts/eval_rubric.py                 # the shipped scorer on its own training corpus

Each report has one row per id (the 11 word-level steps and the 4 pitfalls), the
macro-F1 (mean F1 over those 15), the lowest recall, the pitfall false-alarm rate
(share of replies with no gold pitfall that get one) and the confusion list (gold id
missed → id found instead, by count). ``--errors`` lists the replies scored wrong,
``--json`` prints the same as JSON.

The corpus (``tests/data/corpus/``, rules in its ``SPEC.md``) was written by two people
outside the scorer's code, 16 customer situations. Until 2026-12-01 four of them were
held out (:data:`train_rubric.BURNED`); measured four times, they stopped being an
honest figure and are tuning data now. The figure is measured with ``--data`` on a
labelled set written outside the repository and never tuned on: one JSON object per
line with ``reply``, ``steps`` and ``pitfalls`` (``customer`` optional; the corpus's
format), a file or a folder of ``*.jsonl`` files. A malformed line stops the run with
one line naming file, line and field (exit 2).

``--cv`` retrains the semantic layer once per situation without it and scores that
situation — the figure model choices are made on. It featurizes with the published
encoder (:func:`train_rubric.published_model`): the shipped adapter saw every situation;
the adapted scorer's folds are ``scripts/finetune_rubric.py``'s. Two protocols: ``16``,
every corpus situation a fold (the four former held-out ones included), reported over all 16 and
over the 12 older ones; ``12``, the protocol of every figure before 2026-12-01 (the
four former held-out situations not used at all), so old and new figures compare.
The extra replies in ``tests/data/extra/`` (situations of their own, written for the
weakest ids) and the project's replies train in every fold and are never scored.

With no held-out situations left in the repository (:data:`train_rubric.HELDOUT` is
empty), the default run scores the shipped scorer on the whole corpus it was trained
on and says so: a check that the shipped files are the trained ones and that nothing
regressed, never a figure of how it does on new wording.

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
from collections.abc import Callable, Sequence
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


class DataError(Exception):
    """A labelled file that cannot be read (the message names file, line and field)."""


def load_labelled(path: Path) -> list[dict[str, Any]]:
    """The labelled replies of a JSONL file, or of every ``*.jsonl`` file in a folder
    (sorted), checked: ``reply`` text, ``steps`` / ``pitfalls`` lists of known ids,
    ``customer`` text or absent. Raises :class:`DataError` naming file:line and field."""
    from voice_sim.steps import STEP_IDS

    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise DataError(f"{path}: no *.jsonl files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such file or folder")
    known = {"steps": set(STEP_IDS), "pitfalls": set(PITFALL_IDS)}
    rows: list[dict[str, Any]] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{file}: cannot be read as UTF-8 text ({e})") from e
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{file}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not JSON ({e.msg}, column {e.colno})") from e
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected one JSON object per line")
            if not isinstance(row.get("reply"), str):
                raise DataError(f"{where}: field 'reply' must be the reply's text")
            if row.get("customer") is not None and not isinstance(row["customer"], str):
                raise DataError(f"{where}: field 'customer' must be text or absent")
            for key in ("steps", "pitfalls"):
                val = row.get(key)
                if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
                    raise DataError(f"{where}: field '{key}' must be a list of ids")
                bad = [x for x in val if x not in known[key]]
                if bad:
                    raise DataError(f"{where}: field '{key}': unknown id {bad[0]!r} "
                                    f"(valid: {', '.join(sorted(known[key]))})")
            # stay_calm is measured from audio: never a word-level gold id
            rows.append({**row, "steps": [x for x in row["steps"] if x in CONTENT_IDS]})
    return rows


Fit = Callable[[list[dict[str, Any]]], Any]


def fold_predictions(feats: list[dict[str, Any]], fit: Fit | None = None,
                     log: float | None = None, groups: Sequence[set[str]] | None = None,
                     trains: Callable[[dict[str, Any]], bool] = lambda f: True
                     ) -> dict[int, set[str]]:
    """Cross-validation over whole situations: row index -> ids found by the classifier
    trained without the row's fold. The folds are ``groups`` of situations, by default
    each of :func:`train_rubric.fold_situations` alone (leave-one-situation-out); only
    rows ``trains`` accepts are trained on. ``fit`` (training rows ->
    :class:`~voice_sim.rubric_semantic.Classifier`) replaces :func:`train_rubric.fit`'s
    default recipe (experiments)."""
    import train_rubric as tr

    from voice_sim.rubric_semantic import thresholds

    fit = fit or (lambda train: tr.classifier(tr.fit(train)))
    predicted: dict[int, set[str]] = {}
    for held in groups if groups is not None else [{s} for s in tr.fold_situations(feats)]:
        clf = fit([f for f in feats if f["situation"] not in held and trains(f)])
        for n, f in enumerate(feats):
            if f["situation"] in held:
                p = clf.probabilities(f["dense"], f["text"])
                predicted[n] = {i for i, q, th in zip(clf.ids, p, thresholds(clf, f["rule_ids"]),
                                                      strict=True) if q >= th}
        if log is not None:
            print(f"  fold {', '.join(sorted(held))}: done "
                  f"({time.perf_counter() - log:.0f} s)", flush=True)
    return predicted


def _scored(feats: list[dict[str, Any]], predicted: dict[int, set[str]],
            keep: Callable[[dict[str, Any]], bool] = lambda f: True) -> dict[str, Any]:
    test = [(n, f) for n, f in enumerate(feats) if n in predicted and keep(f)]
    by_row = {id(f): predicted[n] for n, f in test}
    return evaluate([f for _, f in test], predict=lambda r: by_row[id(r)])


def cross_validate(per_id: bool = False, protocol: str = "both"
                   ) -> list[tuple[str, dict[str, Any]]]:
    """Leave-one-situation-out: retrain without a situation, score it; pooled results.
    ``protocol``: ``"16"`` (every corpus situation a fold; reported over the 16 and
    over the 12 older ones), ``"12"`` (the four former held-out situations,
    :data:`train_rubric.BURNED`, not used at all: the protocol of the figures before
    2026-12-01) or ``"both"``. ``per_id``: each fold chooses per-id thresholds by an
    inner leave-one-situation-out on its own training part (nested: the held-out
    situation never picks its threshold)."""
    import train_rubric as tr

    t = time.perf_counter()
    feats = tr.featurize(tr.tuning_rows(), model=tr.published_model())
    print(f"featurized {len(feats)} replies in {time.perf_counter() - t:.0f} s", flush=True)
    fit: Fit | None = None
    tag = ""
    if per_id:
        tag = ", per-id thresholds (nested)"
        fit = lambda train: tr.classifier(tr.fit(train, tr.choose_thresholds(train)))  # noqa: E731
    out: list[tuple[str, dict[str, Any]]] = []
    if protocol in ("16", "both"):
        pred = fold_predictions(feats, fit, log=t)
        out.append((f"cross-validation, 16 corpus situations{tag}", _scored(feats, pred)))
        out.append((f"the same folds, the 12 situations tuned on before 2026-12-01{tag}",
                    _scored(feats, pred, lambda f: f["situation"] not in tr.BURNED)))
    if protocol in ("12", "both"):
        old = [f for f in feats if f["situation"] not in tr.BURNED]
        pred = fold_predictions(old, fit, log=t)
        out.append((f"cross-validation, 12 situations, the former held-out 4 not used "
                    f"(the protocol before 2026-12-01){tag}", _scored(old, pred)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv", nargs="?", const="both", choices=("16", "12", "both"),
                    help="leave-one-situation-out cross-validation: 16 corpus situations, "
                         "the 12 of the protocol before 2026-12-01, or both (default)")
    ap.add_argument("--per-id", action="store_true",
                    help="with --cv: per-id thresholds chosen inside each fold")
    ap.add_argument("--project", action="store_true",
                    help="the project's replies (tests/data/replies.jsonl)")
    ap.add_argument("--split", choices=("tune", "heldout", "all"), default=None,
                    help="with --project: one split (default: each, then all)")
    ap.add_argument("--data", type=Path, action="append",
                    help="a labelled JSONL file or a folder of them (repeatable)")
    ap.add_argument("--errors", action="store_true", help="list the replies scored wrong")
    ap.add_argument("--rubric", help="extra rubric file")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    results: list[tuple[str, dict[str, Any]]] = []
    try:
        data = [(str(p), load_labelled(p)) for p in args.data or []]
    except DataError as err:
        print(f"eval_rubric: {err}", file=sys.stderr)
        return 2
    rubric = load_rubric(args.rubric)
    if args.cv:
        results.extend(cross_validate(args.per_id, args.cv))
    elif data:
        results.extend((name, evaluate(rows, rubric)) for name, rows in data)
    elif args.project:
        rows = load_rows(DATA)
        for split in [args.split] if args.split else ["tune", "heldout", "all"]:
            chosen = rows if split == "all" else [r for r in rows if r["split"] == split]
            results.append((f"project replies, {split}", evaluate(chosen, rubric)))
    else:
        import train_rubric as tr

        held = tr.load_corpus(heldout=True)
        if held:
            results.append((f"held-out situations ({', '.join(sorted(tr.HELDOUT))})",
                            evaluate(held, rubric)))
        else:
            print("eval_rubric: no held-out situations in the repository (all 16 corpus "
                  "situations are tuning data): scoring the shipped scorer on its own "
                  "training corpus, a regression check, not a figure. For figures: --cv "
                  "(cross-validation) or --data FILE (a held-out set).", file=sys.stderr)
            results.append(("training corpus, 16 situations (fit, not a held-out figure)",
                            evaluate(tr.load_corpus(), rubric)))
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
