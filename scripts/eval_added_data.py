#!/usr/bin/env python3
"""Would training on more labelled situations help the content scorer? (issue 12)

Usage: scripts/eval_added_data.py FILE [FILE ...]   e.g. tests/data/outside/[GHI].jsonl

The shipped recipe (:func:`train_rubric.fit` over the shipped encoder's vectors) in
four folds of whole situations, twice over:

* the corpus's own situations (sorted names, every 4th one a fold), trained without
  and then with the added files' replies;
* the added files' situations, trained without and then with the rest of them (the
  corpus, the extra replies and the project's always train).

Each line: macro-F1 over the 15 ids, the lowest recall, pitfall false alarms on
pitfall-free replies (the targets: 0.95 / 0.90 / 1%), offer_solution's F1. The shipped
files are not touched. A file that cannot be read is one line and exit 2.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import eval_rubric as er  # noqa: E402
import train_rubric as tr  # noqa: E402

FOLDS = 4


def folds(feats: list[dict[str, Any]], scored: list[str],
          trains: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Scores of the rows of ``scored`` situations in :data:`FOLDS` folds (sorted names,
    every :data:`FOLDS`-th one), each fold's classifier trained on the rows ``trains``
    accepts outside the fold (:func:`eval_rubric.fold_predictions`)."""
    groups = [set(scored[g::FOLDS]) for g in range(FOLDS)]
    return er._scored(feats, er.fold_predictions(feats, groups=groups, trains=trains))


def line(name: str, res: dict[str, Any]) -> str:
    low = min(res["per_id"], key=lambda i: res["per_id"][i]["recall"])
    return (f"{name:46} macro-F1 {res['macro_f1']:.3f}  lowest recall "
            f"{res['per_id'][low]['recall']:.2f} ({low})  pitfall false alarms "
            f"{100 * res['pitfall_false_alarms']:.1f}%  offer_solution F1 "
            f"{res['per_id']['offer_solution']['f1']:.2f}  ({res['n']} replies)")


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        print("usage: scripts/eval_added_data.py FILE [FILE ...]", file=sys.stderr)
        return 2
    t = time.perf_counter()
    try:
        rows = tr.tuning_rows(add=paths)  # reads and checks the files, before any model
    except er.DataError as e:
        print(f"eval_added_data: {e}", file=sys.stderr)
        return 2
    own = {r["situation"] for r in tr.load_corpus()}
    feats = tr.featurize(rows, log=False, model=tr.published_model())
    added = sorted({f["situation"] for f in feats
                    if not f.get("always_train") and f["situation"] not in own})
    print(f"featurized {len(feats)} replies ({time.perf_counter() - t:.0f} s); "
          f"{len(own)} corpus situations, {len(added)} added", flush=True)

    def without_added(f: dict[str, Any]) -> bool:
        return f["situation"] not in added

    print(line("corpus folds, trained without the added", folds(feats, sorted(own),
                                                                without_added)))
    print(line("corpus folds, trained with the added", folds(feats, sorted(own),
                                                             lambda f: True)))
    print(line("added folds, without the rest of the added", folds(feats, added,
                                                                   without_added)))
    print(line("added folds, with the rest of the added", folds(feats, added,
                                                                lambda f: True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
