"""The terminal scorecard printed at the end of every call.

Built from the session record (:class:`voice_sim.record.SessionRecord`) alone, so a
finished session folder can be shown again later (``voice-sim report DIR --text``).
Every line fits the given width (80 columns by default): long transcripts wrap, long
evidence is shortened.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

from voice_sim.record import YIELD_NOTE, SessionRecord, TurnRecord

WIDTH = 80
EVIDENCE_CHARS = 52
"""Evidence quotes longer than this are shortened with an ellipsis."""


def _wrap(text: str, indent: str, width: int, hang: int = 2, label: str = "") -> list[str]:
    """``label`` + ``text`` wrapped to ``width``; continuation lines hang under the
    text (after the label) or ``hang`` columns in. Whitespace in ``text`` collapses,
    so a transcript's line breaks cannot break the layout."""
    lead = indent + label
    # No-break spaces stay (a figure and its unit, "0.3\u00a0s"): textwrap keeps them whole.
    flat = re.sub(r"[^\S\u00a0]+", " ", str(text)).strip()
    return textwrap.wrap(flat, width=width, initial_indent=lead,
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


def turn_taking(t: TurnRecord) -> list[str]:
    """What happened between the two voices in a turn, with the times: talking over the
    customer (a delivery fault) and replies that gave way (not scored: the customer cut
    in too soon)."""
    out = []
    if t.interruption is not None:
        out.append(f"> {t.interruption.describe()} (counts against delivery)")
    out += [f"~ {y.describe()} ({YIELD_NOTE})" for y in t.yielded]
    return [re.sub(r"(\d) s\b", "\\1\u00a0s", note) for note in out]  # never "0.3 / s"


def turn_lines(t: TurnRecord, width: int = WIDTH) -> list[str]:
    """One turn of the scorecard: who said what, steps, pitfalls, turn-taking, delivery."""
    out = [f"Turn {t.index}   mood {_num(t.mood_before, '.1f')} → "
           f"{_num(t.mood_after, '.1f')}   turn score {_num(t.turn_score.score)}/100"]
    out += _wrap(t.customer_text, "  ", width, label="customer: ")
    out += _wrap(t.transcript or "(nothing heard)", "  ", width, label="you:      ")
    heard = {d.id for d in t.steps}
    expects = [s for s in t.expects if s != "stay_calm"]
    for d in t.steps:
        tag = "" if d.id in expects else " (extra)"
        out += _wrap(f"+ {d.id}{tag}: {_quote(d.evidence)}", "    ", width)
    for s in expects:
        if s not in heard:
            out.append(f"    · missed {s}")
    for d in t.pitfalls:
        out += _wrap(f"! {d.id}: {_quote(d.evidence)}", "    ", width)
    out += [line for note in turn_taking(t) for line in _wrap(note, "    ", width)]
    dv = t.delivery
    verdict = "calm" if dv.calm else "not calm"
    out += _wrap(f"delivery: {verdict} ({_num(dv.calm_score)}/100)"
                 + (f" — {dv.reasons[0]}" if dv.reasons else ""), "    ", width)
    if t.hint:
        out += _wrap(f"tip: {t.hint}", "    ", width)
    return out


def format_scorecard(record: SessionRecord, width: int = WIDTH) -> str:
    """The scorecard as text, every line at most ``width`` columns."""
    width = max(40, width)
    out: list[str] = []
    title = f" {record.persona_title or record.persona or 'session'} "
    out.append(title.center(width, "=") if len(title) + 2 <= width
               else textwrap.shorten(title, width))
    meta = [record.mode, record.started_at[:16].replace("T", " "),
            f"engine {record.engine}" if record.engine else "",
            f"baseline: {record.baseline}" if record.baseline
            else "no baseline (population defaults)"]
    out += _wrap(" · ".join(m for m in meta if m), "", width)
    turns = record.turns
    for t in turns:
        out.append("")
        out += turn_lines(t, width)
    if record.closing is not None:
        out.append("")
        out.append("Closing")
        out += _wrap(record.closing.text, "  ", width, label="customer: ")
    out.append("-" * width)
    out += _pack([f"Outcome: {record.outcome or 'unfinished'}",
                  f"Score: {_num(record.score)}/100", f"Turns: {len(turns)}",
                  f"Calm: {record.calm_turns}/{len(turns)} turns"]
                 + ([f"Talked over: {record.talked_over}"] if record.talked_over else [])
                 + ([f"Gave way: {record.yields} (not counted)"] if record.yields else [])
                 + ([f"Seed: {record.extra['seed']}"] if "seed" in record.extra else []),
                 width)
    if record.status not in ("", "complete"):
        why = f": {record.error}" if record.error else ""
        out += _wrap(f"The session did not finish ({record.status}){why}", "", width)
    if record.practise_next:
        out.append("Practise next:")
        for i, h in enumerate(record.practise_next[:3], 1):
            out += _wrap(f"{i}. {h}", "  ", width, hang=3)
    folder = record.session_dir
    if folder:
        report = Path(folder) / "report.html"
        if report.is_file():
            out += _path_line("Report:  ", str(report), width)
        out += _path_line("Session: ", str(folder), width)
    return "\n".join(out)
