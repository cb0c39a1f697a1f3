"""The terminal scorecard printed at the end of every call.

Built from the ``session.json`` record alone, so a finished session folder can be
shown again later (``voice-sim report DIR --text``). Every line fits the given
width (80 columns by default): long transcripts wrap, long evidence is shortened.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

WIDTH = 80
EVIDENCE_CHARS = 52
"""Evidence quotes longer than this are shortened with an ellipsis."""


def _wrap(text: str, indent: str, width: int, hang: int = 2, label: str = "") -> list[str]:
    """``label`` + ``text`` wrapped to ``width``; continuation lines hang under the
    text (after the label) or ``hang`` columns in. Whitespace in ``text`` collapses,
    so a transcript's line breaks cannot break the layout."""
    lead = indent + label
    return textwrap.wrap(" ".join(str(text).split()), width=width, initial_indent=lead,
                         subsequent_indent=" " * (len(lead) if label else len(indent) + hang)
                         ) or [lead.rstrip()]


def _quote(text: str, limit: int = EVIDENCE_CHARS) -> str:
    text = " ".join(str(text).split())
    return f"\u201c{text if len(text) <= limit else text[:limit - 1] + '…'}\u201d"


def _num(v: Any, spec: str = ".0f", missing: str = "-") -> str:
    return format(v, spec) if isinstance(v, int | float) else missing


def _pack(items: list[str], width: int, sep: str = "   ") -> list[str]:
    """Items side by side, starting a new line where the next would not fit."""
    lines = [items[0]]
    for item in items[1:]:
        if len(lines[-1]) + len(sep) + len(item) <= width:
            lines[-1] += sep + item
        else:
            lines.append(item)
    return lines


def _path_line(label: str, path: str, width: int) -> list[str]:
    # A path is never broken (it must stay copyable): a long one gets its own line.
    return [label + path] if len(label) + len(path) <= width else [label.rstrip(), path]


def turn_lines(t: dict[str, Any], width: int = WIDTH) -> list[str]:
    """One turn of the scorecard: who said what, steps, pitfalls, delivery."""
    c = t.get("customer") or {}
    score = (t.get("turn_score") or {}).get("score")
    out = [f"Turn {t.get('index', '?')}   mood {_num(t.get('mood_before'), '.1f')} → "
           f"{_num(t.get('mood_after'), '.1f')}   turn score {_num(score)}/100"]
    out += _wrap(c.get("text", ""), "  ", width, label="customer: ")
    out += _wrap(t.get("transcript") or "(nothing heard)", "  ", width, label="you:      ")
    steps = t.get("steps") or []
    heard = {d.get("id") for d in steps}
    expects = [s for s in c.get("expects", []) if s != "stay_calm"]
    for d in steps:
        tag = "" if d.get("id") in expects else " (extra)"
        out += _wrap(f"+ {d.get('id')}{tag}: {_quote(d.get('evidence', ''))}", "    ", width)
    for s in expects:
        if s not in heard:
            out.append(f"    · missed {s}")
    for d in t.get("pitfalls") or []:
        out += _wrap(f"! {d.get('id')}: {_quote(d.get('evidence', ''))}", "    ", width)
    dv = t.get("delivery") or {}
    verdict = "calm" if dv.get("calm") else "not calm"
    reasons = dv.get("reasons") or []
    out += _wrap(f"delivery: {verdict} ({_num(dv.get('calm_score'))}/100)"
                 + (f" — {reasons[0]}" if reasons else ""), "    ", width)
    if t.get("hint"):
        out += _wrap(f"tip: {t['hint']}", "    ", width)
    return out


def format_scorecard(record: dict[str, Any], width: int = WIDTH) -> str:
    """The scorecard as text, every line at most ``width`` columns."""
    width = max(40, width)
    out: list[str] = []
    title = f" {record.get('persona_title') or record.get('persona', 'session')} "
    out.append(title.center(width, "=") if len(title) + 2 <= width
               else textwrap.shorten(title, width))
    meta = [str(record.get("mode") or ""), str(record.get("started_at") or "")[:16]
            .replace("T", " "), f"engine {record.get('engine')}" if record.get("engine") else "",
            f"baseline: {record.get('baseline')}" if record.get("baseline")
            else "no baseline (population defaults)"]
    out += _wrap(" · ".join(m for m in meta if m), "", width)
    turns = record.get("turns") or []
    for t in turns:
        out.append("")
        out += turn_lines(t, width)
    closing = record.get("closing")
    if closing:
        out.append("")
        out.append("Closing")
        out += _wrap(closing.get("text", ""), "  ", width, label="customer: ")
    out.append("-" * width)
    calm = sum(1 for t in turns if (t.get("delivery") or {}).get("calm"))
    out += _pack([f"Outcome: {record.get('outcome') or 'unfinished'}",
                  f"Score: {_num(record.get('score'))}/100", f"Turns: {len(turns)}",
                  f"Calm: {calm}/{len(turns)} turns"]
                 + ([f"Seed: {record['seed']}"] if record.get("seed") is not None else []),
                 width)
    if record.get("status") not in (None, "complete"):
        why = f": {record['error']}" if record.get("error") else ""
        out += _wrap(f"The session did not finish ({record.get('status')}){why}", "", width)
    hints = record.get("practise_next") or []
    if hints:
        out.append("Practise next:")
        for i, h in enumerate(hints[:3], 1):
            out += _wrap(f"{i}. {h}", "  ", width, hang=3)
    folder = record.get("session_dir")
    if folder:
        report = Path(folder) / "report.html"
        if report.is_file():
            out += _path_line("Report:  ", str(report), width)
        out += _path_line("Session: ", str(folder), width)
    return "\n".join(out)
