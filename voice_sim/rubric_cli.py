"""``voice-sim check-reply`` (one reply or a JSONL batch) and ``voice-sim rubric check``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from voice_sim.errors import InputError
from voice_sim.rubric import Content, TurnScore, score_replies, score_reply, turn_score
from voice_sim.rubric_file import check_rubric, load_rubric, valid_ids_hint
from voice_sim.steps import STEP_IDS

JSONL_CHUNK = 256
"""Replies scored together by ``check-reply --jsonl`` in one process (their passes
batched; results are written after each chunk)."""
PARALLEL_CHUNK = 64
"""Most replies per task when several processes score ``--jsonl``."""
TASKS_PER_WORKER = 4
"""Tasks are cut so each worker gets about this many (a short batch still splits
evenly: 150 lines in 64-line tasks left one worker a third task alone)."""
MIN_TASK = 8
"""Fewest replies per task (below this a task's start costs more than it evens out)."""
MAX_WORKERS = 2
"""Default ceiling on ``--jsonl`` worker processes (one per core of the machine this
was measured on; more than the cores only adds start-up)."""

_JOB: tuple[Any, list[str]] | None = None
"""(rubric, default expected steps) of the ``--jsonl`` run, inherited by forked
workers."""


def _parse_expect(value: str | None) -> list[str]:
    if not value:
        return []
    ids = [v.strip() for v in value.split(",") if v.strip()]
    for id_ in ids:
        if id_ not in STEP_IDS:
            raise InputError(f"--expect: {id_!r} is not a step id",
                             hint=valid_ids_hint(id_, STEP_IDS, "steps are"))
    return ids


def _result(content: Content, score: TurnScore) -> dict[str, Any]:
    d = content.to_json()
    d["score"] = score.to_json()
    return d


def _print_text(content: Content, score: TurnScore) -> None:
    for title, items in (("steps", content.steps), ("pitfalls", content.pitfalls)):
        print(f"{title}:")
        if not items:
            print("  (none)")
        for d in items:
            why = d.why()
            why = why if len(why) <= 90 else why[:89] + "…"
            where = f" ({d.where})" if d.where else ""
            print(f"  {d.id:<17}\"{d.evidence}\"  [{d.span[0]}:{d.span[1]}]  {why}{where}")
    if content.suppressed:
        print("not counted:")
        for d in content.suppressed:
            print(f"  {d.id:<17}\"{d.evidence}\"  {d.note}")
    print(f"score: {score.score}/100")
    for line in score.explanation:
        print(f"  {line}")


def _read_jsonl(name: str) -> list[tuple[int, dict[str, Any]]]:
    label = "stdin" if name == "-" else name
    if name == "-":
        text = sys.stdin.read()
    else:
        p = Path(name)
        if not p.is_file():
            raise InputError(f"--jsonl {name}: no such file", hint="check the path, or use - "
                             "for stdin")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"--jsonl {name}: not UTF-8 text", hint="save it as UTF-8") from e
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue  # blank lines (often a trailing one) carry nothing to score
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{label}:{n}: not valid JSON ({e.msg} at column {e.colno})",
                             hint='write one {"reply": ..., "customer": ...} object per '
                             "line") from e
        if not isinstance(obj, dict):
            raise InputError(f"{label}:{n}: expected a JSON object, got "
                             f"{type(obj).__name__}", hint='write {"reply": "..."}')
        if not isinstance(obj.get("reply"), str):
            raise InputError(f'{label}:{n}: "reply" is missing or not a string',
                             hint='every line needs "reply": "what the trainee said"')
        if obj.get("customer") is not None and not isinstance(obj["customer"], str):
            raise InputError(f'{label}:{n}: "customer" must be a string',
                             hint="give the customer's line as text, or leave it out")
        exp = obj.get("expect")
        if exp is not None:
            if isinstance(exp, str):
                exp = [e.strip() for e in exp.split(",") if e.strip()]
            if not isinstance(exp, list) or not all(e in STEP_IDS for e in exp):
                raise InputError(f'{label}:{n}: "expect" must list step ids',
                                 hint="steps are: " + ", ".join(STEP_IDS))
            obj["expect"] = exp
        rows.append((n, obj))
    if not rows and name != "-":
        # An empty batch from stdin is an empty pipeline; an empty file is a mistake.
        raise InputError(f"--jsonl {name}: the file is empty (no replies in it)",
                         hint='write one {"reply": ..., "customer": ...} object per line')
    return rows


def cmd_check_reply(args: argparse.Namespace) -> int:
    """``voice-sim check-reply``: steps and pitfalls in one reply, or in a JSONL batch."""
    _warm_up()
    rubric = load_rubric(args.rubric)
    expected = _parse_expect(args.expect)
    if args.jsonl is not None:
        if args.text is not None:
            raise InputError("give either TEXT or --jsonl, not both",
                             hint="put the reply inside the JSONL file")
        rows = _read_jsonl(args.jsonl)  # all lines checked before any output
        workers = _workers(args.workers, len(rows))
        _score_jsonl(rows, rubric, expected, workers, sys.stdout)
        return 0
    if args.text is None:
        raise InputError("no reply to check", hint='give the reply as TEXT, or --jsonl FILE '
                         "(- for stdin)")
    content = score_reply(args.text, args.customer, rubric=rubric)
    score = turn_score(content, expected, rubric=rubric)
    if args.json:
        print(json.dumps(_result(content, score), ensure_ascii=False, indent=2))
    else:
        _print_text(content, score)
    return 0


def _warm_up() -> None:
    """Load the embedding model, then the classifier, in a daemon thread while the
    rubric file and the input are read (most of the model's load runs outside the
    GIL). A missing or broken model is reported, with its hint, when scoring first
    needs it."""
    from voice_sim.embedding import warm_up
    from voice_sim.rubric_semantic import load_classifier

    warm_up(then=load_classifier)


def _workers(asked: int, n: int) -> int:
    """Worker processes for ``n`` lines: ``--workers`` when given, else one per usable
    core that is not already busy (cores minus the 1-minute load average; on a
    saturated machine a second worker only splits the same CPU and re-embeds customer
    lines the other has), up to :data:`MAX_WORKERS`; never more than there are tasks.
    The output is the same whatever the number."""
    if asked < 0:
        raise InputError(f"--workers {asked}: must be 0 (automatic) or more",
                         hint="give the number of processes, e.g. --workers 2")
    if asked == 0:
        idle = len(os.sched_getaffinity(0)) - int(os.getloadavg()[0])
        asked = min(MAX_WORKERS, idle)
    return max(1, min(asked, -(-n // PARALLEL_CHUNK)))


def _jsonl_chunk(chunk: Sequence[tuple[int, dict[str, Any]]]) -> str:
    """The output lines of one chunk of ``--jsonl`` input (rubric from :data:`_JOB`)."""
    assert _JOB is not None
    rubric, expected = _JOB
    contents = score_replies([(o["reply"], o.get("customer")) for _, o in chunk],
                             rubric=rubric)
    lines = []
    for (n, obj), content in zip(chunk, contents, strict=True):
        score = turn_score(content, obj.get("expect", expected), rubric=rubric)
        d = _result(content, score)
        d["line"] = n
        lines.append(json.dumps(d, ensure_ascii=False) + "\n")
    return "".join(lines)


def _quiet_worker() -> None:
    """A worker leaves Ctrl-C to the parent (which stops the pool and says so once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _score_jsonl(rows: Sequence[tuple[int, dict[str, Any]]], rubric: Any,
                 expected: list[str], workers: int, out: TextIO) -> None:
    """Score ``--jsonl`` rows in input order, with ``workers`` processes. The model
    is loaded here first, so the forked workers share it instead of loading it again;
    each reply's result is the one it gets alone, so the output does not depend on
    the number of workers."""
    global _JOB
    _JOB = (rubric, expected)
    if workers <= 1:
        for a in range(0, len(rows), JSONL_CHUNK):
            out.write(_jsonl_chunk(rows[a:a + JSONL_CHUNK]))
            out.flush()
        return
    import multiprocessing

    from voice_sim.embedding import load_model
    from voice_sim.rubric_semantic import exemplar_bank, load_classifier

    exemplar_bank(rubric, load_model())
    load_classifier()
    size = min(PARALLEL_CHUNK, max(MIN_TASK, -(-len(rows) // (workers * TASKS_PER_WORKER))))
    chunks = [rows[a:a + size] for a in range(0, len(rows), size)]
    with multiprocessing.get_context("fork").Pool(workers, _quiet_worker) as pool:
        for text in pool.imap(_jsonl_chunk, chunks):
            out.write(text)
            out.flush()


def cmd_rubric_check(args: argparse.Namespace) -> int:
    """``voice-sim rubric check FILE``: every problem as ``file:line:col``, merged over the
    built-in rubric. Exit 0 when valid, 1 when not, 2 when the file cannot be read."""
    from voice_sim.yamlfile import Problem

    path = Path(args.file)
    unusable = not path.is_file()
    if unusable:
        what = "is a folder, not a rubric file" if path.is_dir() else "no such file"
        problems = [Problem(str(path), 0, 0, "", what, "give the path of a rubric.yaml")]
    else:
        problems = check_rubric(path)
    if args.json:
        print(json.dumps({"valid": not problems, "file": str(path),
                          "problems": [p.to_json() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p.line_text())
        n = len(problems)
        print(f"checked {path}: " + ("valid" if not n else
                                     f"{n} problem{'s' if n != 1 else ''}"))
    return 2 if unusable else 1 if problems else 0
