#!/usr/bin/env python3
"""How far two careful people agree on the content labels (issue 12): the ceiling of
any scorer's figure against them.

Usage: scripts/label_agreement.py [LABELS.jsonl]

``tests/data/outside/relabel_labels.jsonl`` holds a second, blind labelling of 400
corpus replies (25 from each of the 16 situations of ``tests/data/corpus/``, seeded
sample): the annotator saw the customer line, the reply, the labelling rules and the
reference, never the corpus's labels. The second labelling is scored against the
corpus's exactly as ``scripts/eval_rubric.py`` scores the scorer (its
:func:`~eval_rubric.evaluate` and table): per id precision / recall / F1, macro-F1,
exact matches, pitfalls given to replies the corpus labels pitfall-free, confusions.
A file that cannot be read, or an id the corpus does not have, is one line and exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import eval_rubric as er  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "corpus"
SECOND = ROOT / "tests" / "data" / "outside" / "relabel_labels.jsonl"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else SECOND
    try:
        gold = {r["id"]: r for r in er.load_labelled(CORPUS)}
        second = er.load_labelled(path)
    except er.DataError as e:
        print(f"label_agreement: {e}", file=sys.stderr)
        return 2
    unknown = [r.get("id") for r in second if r.get("id") not in gold]
    if unknown:
        print(f"label_agreement: {path}: id {unknown[0]!r} is not in {CORPUS} "
              "(the second labelling must name corpus replies)", file=sys.stderr)
        return 2
    by_id = {r["id"]: set(r["steps"]) | set(r["pitfalls"]) for r in second}
    res = er.evaluate([gold[i] for i in by_id], predict=lambda r: by_id[r["id"]])
    er._print(f"second labelling ({path.name}) against the corpus's labels", res,
              confusion=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
