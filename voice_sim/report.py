"""The HTML report of one call: ``report.html`` in the session folder.

One self-contained file, built from ``session.json`` and the turn WAVs alone: a
header with the outcome and score, charts (mood across the call, pace and loudness
per turn against their calm bands, scores per turn), then the call as a timeline —
each customer line and answer with an audio player, the transcript with the
evidence of every step and pitfall highlighted, the turn-taking (talking over the
customer, with when and for how long; replies that cut in too soon and gave way), the
steps the line expected against what was heard, and the answer's pitch contour against
the trainee's calm band.

Safety and portability:

* Every piece of text from the record (transcripts, persona lines, reasons) goes
  through :func:`html.escape`; evidence is highlighted by slicing the text and
  escaping each slice, never by inserting raw text.
* Charts are inline SVG (:mod:`voice_sim.plots`); there is no JavaScript, and a
  Content-Security-Policy forbids every network load.
* Audio is embedded as ``data:`` URIs while the session's WAVs total at most
  :data:`EMBED_LIMIT_BYTES`; a bigger session links the WAV files next to the
  report instead (the report then needs its session folder to play audio).
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any

from voice_sim import __version__
from voice_sim.errors import InputError, SessionError, VoiceSimError
from voice_sim.plots import COLORS, Mark, RefLine, Series, contour_chart, line_chart
from voice_sim.record import (
    YIELD_NOTE,
    DeliveryRecord,
    Evidence,
    SessionRecord,
    TurnRecord,
    load_session,
)

REPORT_NAME = "report.html"
"""The report's file name inside the session folder."""

EMBED_LIMIT_BYTES = 24 * 1024 * 1024
"""Total WAV bytes up to which audio is embedded in the report (~32 MB of base64).
A phone-length call is far under it (a 10-turn demo is ~3 MB); a long live session
with minute-long answers can pass it, and then the WAVs are linked instead."""

AUDIO_MODES = ("auto", "embed", "link")

CSP = ("default-src 'none'; img-src data:; media-src data: 'self'; "
       "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
"""No scripts, no network: styles inline, images and audio from data: URIs (or the
session folder's own files when linked)."""

CALM_WPM_LOW = 120.0
"""Words per minute at the slow end of the calm conversational range (120-160 wpm,
see :data:`voice_sim.delivery.TARGET_WPM`); only the chart's band uses it."""

OUTCOME_WORDS = {
    "resolved": "Resolved", "escalated": "Escalated", "hung_up": "Customer hung up",
    "incomplete": "Incomplete", "quit": "Stopped",
}


# --- small helpers ---------------------------------------------------------------


def _e(value: Any) -> str:
    """Escape anything for HTML text or an attribute value."""
    return escape("" if value is None else str(value), quote=True)


def _num(v: Any, spec: str = ".0f", missing: str = "–") -> str:
    return format(v, spec) if isinstance(v, int | float) and math.isfinite(v) else missing


def _span_of(text: str, d: Evidence) -> tuple[int, int] | None:
    """Where a detection's evidence is in ``text``: its recorded span when that really
    holds the evidence, else the first occurrence of the evidence, else None."""
    ev = d.evidence
    if (d.span is not None and 0 <= d.span[0] < d.span[1] <= len(text)
            and (not ev or text[d.span[0]:d.span[1]] == ev)):
        return d.span
    if ev:
        i = text.lower().find(ev.lower())
        if i >= 0:
            return i, i + len(ev)
    return None


def highlight(text: str, detections: Sequence[Evidence]) -> str:
    """``text`` as escaped HTML with each detection's evidence in a ``<mark>`` and its
    id as a small tag after it. Overlapping evidence is split at every boundary, and
    every slice is escaped on its own, so no part of the text is ever markup."""
    spans: list[tuple[int, int, Evidence]] = []
    for d in detections:
        se = _span_of(text, d)
        if se is not None:
            spans.append((se[0], se[1], d))
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    out: list[str] = []
    for a, b in pairwise(cuts):
        piece = escape(text[a:b], quote=True)
        cover = [d for s, e, d in spans if s <= a and b <= e]
        if cover:
            kind = "pitfall" if any(d.kind == "pitfall" for d in cover) else "step"
            ids = ", ".join(dict.fromkeys(d.id for d in cover))
            out.append(f'<mark class="{kind}" title="{_e(ids)}">{piece}</mark>')
        else:
            out.append(piece)
        for _s, e, d in spans:
            if e == b:
                kind = "pitfall" if d.kind == "pitfall" else "step"
                out.append(f'<sup class="tag {kind}">{_e(d.id)}</sup>')
    return "".join(out)


# --- audio -------------------------------------------------------------------------


def _own_file(name: str | None) -> bool:
    # Names only (no folders): a record never points outside its own session folder.
    return bool(name) and Path(str(name)).name == name


def _audio_files(record: SessionRecord) -> list[str]:
    names = [n for t in record.turns for n in (t.customer_audio, t.answer_audio)]
    names.append(record.closing.audio if record.closing else None)
    return [n for n in names if n is not None and _own_file(n)]


def choose_audio_mode(record: SessionRecord, session_dir: Path, mode: str = "auto") -> str:
    """``embed`` or ``link``: ``auto`` embeds unless the WAVs pass EMBED_LIMIT_BYTES."""
    if mode not in AUDIO_MODES:
        raise InputError(f"--audio {mode}: unknown mode", hint=f"use one of {AUDIO_MODES}")
    if mode != "auto":
        return mode
    total = sum((session_dir / n).stat().st_size for n in _audio_files(record)
                if (session_dir / n).is_file())
    return "embed" if total <= EMBED_LIMIT_BYTES else "link"


def _audio(session_dir: Path, name: str | None, mode: str, rel: str, label: str) -> str:
    if name is None or not _own_file(name):
        return '<span class="muted">(no audio)</span>'
    f = session_dir / name
    if not f.is_file():
        return f'<span class="muted">(audio missing: {_e(name)})</span>'
    if mode == "embed":
        try:
            data = f.read_bytes()
        except OSError as e:
            return f'<span class="muted">(audio unreadable: {_e(name)}, {_e(e.strerror)})</span>'
        src = "data:audio/wav;base64," + base64.b64encode(data).decode("ascii")
    else:
        src = escape(f"{rel}{name}", quote=True)
    return (f'<audio controls preload="none" src="{src}" aria-label="{_e(label)}"></audio>')


# --- charts ------------------------------------------------------------------------


def _baseline(record: SessionRecord) -> Mapping[str, Any] | None:
    return next((t.delivery.baseline for t in record.turns if t.delivery.baseline), None)


def _number(d: Mapping[str, Any] | None, key: str) -> float | None:
    v = d.get(key) if d else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def pitch_band(delivery: DeliveryRecord) -> tuple[tuple[float, float] | None, str]:
    """The trainee's calm pitch band for a contour chart, and its label.

    The delivery analysis' own band when it recorded one; else the calm baseline's
    median ± one standard deviation (where most of the calm reading's pitch lay);
    None without a baseline (pitch is never judged in absolute Hz)."""
    if delivery.band_hz is not None:
        return delivery.band_hz, "your calm band"
    m, sd = _number(delivery.baseline, "median_hz"), _number(delivery.baseline, "std_semitones")
    if m is not None and sd is not None:
        return (m * 2 ** (-sd / 12), m * 2 ** (sd / 12)), "your calm band"
    return None, ""


def _contour(turn: TurnRecord, session_dir: Path
             ) -> tuple[tuple[float, ...], tuple[float | None, ...]] | None:
    """The answer's F0 contour (times, Hz): from the record, else measured again from
    its WAV (sessions recorded without contours)."""
    dv = turn.delivery
    if dv.contour_times is not None:
        return dv.contour_times, dv.contour_f0
    name = turn.answer_audio
    if name is None or not _own_file(name) or not (session_dir / name).is_file():
        return None
    from voice_sim.audio import load_audio
    from voice_sim.delivery import analyze

    try:
        samples = load_audio(session_dir / name, allow_silent=True)
        got = DeliveryRecord.from_json(analyze(samples).to_json(contour=True))
    except VoiceSimError:
        return None  # unreadable or empty audio: the report says so instead of a chart
    return got.contour_times or (), got.contour_f0


def contour_svg(turn: TurnRecord, session_dir: Path) -> str:
    """The pitch chart of one answer, with the calm band and evidence marks."""
    dv = turn.delivery
    c = _contour(turn, session_dir)
    if c is None:
        return ('<p class="muted">No pitch contour: the answer\'s audio is missing or '
                "unreadable.</p>")
    times, f0 = c
    n = min(len(times), len(f0))
    band, label = pitch_band(dv)
    lines = []
    if dv.median_hz is not None:
        lines.append(RefLine(dv.median_hz, f"this answer's median {dv.median_hz:.0f} Hz",
                             "#1e40af"))
    marks = [Mark(d.start_s, d.end_s, f"{d.id}: {d.evidence}",
                  COLORS["pitfall" if d.kind == "pitfall" else "step"])
             for d in (*turn.steps, *turn.pitfalls)
             if d.start_s is not None and d.end_s is not None]
    return contour_chart(list(times[:n]), list(f0[:n]), title=f"Pitch, answer {turn.index}",
                         duration_s=dv.duration_s, band=band, band_label=label,
                         lines=lines, marks=marks)


def session_charts(record: SessionRecord) -> list[str]:
    """Mood across the call; pace, loudness and scores per turn."""
    from voice_sim import delivery as dl

    turns = record.turns
    labels = [f"turn {t.index}" for t in turns]
    charts = []
    moods: list[float | None] = [record.start_mood, *(t.mood_after for t in turns)]
    notes = ["the call opens", *(t.move_reason for t in turns)]
    charts.append(line_chart(["start", *labels], [Series("mood", tuple(moods),
                             COLORS["warn"], tuple(notes))], title="Customer's mood (10 = furious)",
                             y_range=(0, 10), band=None, cls="mood"))

    base = _baseline(record)
    ratios = tuple(t.delivery.pace_ratio for t in turns)
    if base and any(r is not None for r in ratios):
        # With a baseline the verdict compares syllable rates: chart exactly that.
        pace = tuple(None if r is None else 100 * r for r in ratios)
        unit = "%"
        band = (100 / dl.PACE_WARN_RATIO, 100 * dl.PACE_WARN_RATIO)
        band_label = f"within {100 * (dl.PACE_WARN_RATIO - 1):.0f}% of your calm pace"
        plines = [RefLine(100, "your calm pace")]
        ptitle = "Pace per turn (% of your calm pace)"
    else:
        pace = tuple(t.delivery.wpm or t.delivery.wpm_from_syllables for t in turns)
        unit = "wpm"
        band = (CALM_WPM_LOW, dl.RUSHED_WPM)
        band_label = "calm conversational pace"
        plines = [RefLine(dl.TARGET_WPM, f"target {dl.TARGET_WPM:.0f}")]
        ptitle = "Pace per turn (words per minute)"
    # Only too fast is judged (a slow, calm reply is fine), so only that is flagged.
    charts.append(line_chart(labels, [Series("pace", pace)], title=ptitle, unit=unit,
                             band=band, band_label=band_label, lines=plines,
                             warn=(None, band[1]), cls="pace"))

    loud = tuple(t.delivery.rms_dbfs for t in turns)
    b_db = _number(base, "rms_dbfs")
    if b_db is not None:
        lband: tuple[float, float] | None = (b_db - dl.LOUDNESS_WARN_DB,
                                             b_db + dl.LOUDNESS_WARN_DB)
        lband_label = f"within {dl.LOUDNESS_WARN_DB:g} dB of your calm level"
        llines = [RefLine(b_db, f"your calm level {b_db:.0f} dBFS")]
        lwarn: tuple[float | None, float | None] = (dl.QUIET_DBFS, b_db + dl.LOUDNESS_WARN_DB)
    else:
        lband, lband_label = None, ""
        llines = [RefLine(dl.QUIET_DBFS, "too quiet below this")]
        lwarn = (dl.QUIET_DBFS, None)
    charts.append(line_chart(labels, [Series("loudness", loud)], title="Loudness per turn",
                             unit="dBFS", band=lband, band_label=lband_label, lines=llines,
                             warn=lwarn, cls="loudness"))

    scores = tuple(t.turn_score.score for t in turns)
    calm = tuple(t.delivery.calm_score for t in turns)
    # Calm first, so the content score's dots stay visible where the two coincide.
    charts.append(line_chart(labels, [Series("calm score", calm, COLORS["calm"]),
                                      Series("content score", scores, COLORS["line"])],
                             title="Scores per turn", unit="/100", y_range=(0, 100),
                             cls="scores"))
    return charts


# --- the page ----------------------------------------------------------------------

STYLE = """
:root { --step: #16a34a; --pitfall: #dc2626; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #111827; background: #f3f4f6; margin: 0; }
header, main, footer { max-width: 980px; margin: 0 auto; padding: 16px 20px; }
header { background: #fff; border-bottom: 1px solid var(--line); max-width: none; }
header .inner { max-width: 940px; margin: 0 auto; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 24px 0 8px; }
h3 { font-size: 15px; margin: 0 0 6px; }
.meta, .muted { color: var(--muted); font-size: 13px; }
.summary { display: flex; gap: 16px; flex-wrap: wrap; align-items: center; margin-top: 10px; }
.big { font-size: 34px; font-weight: 700; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 13px;
  font-weight: 600; background: #e5e7eb; }
.badge.resolved { background: #dcfce7; color: #166534; }
.badge.escalated { background: #fef9c3; color: #854d0e; }
.badge.hung_up, .badge.quit { background: #fee2e2; color: #991b1b; }
.warning { background: #fef3c7; border: 1px solid #f59e0b; padding: 8px 12px; border-radius: 6px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
svg.plot { width: 100%; height: auto; display: block; }
.turn { margin: 14px 0; }
.bubble { border-radius: 8px; padding: 8px 12px; margin: 6px 0; }
.bubble.customer { background: #fef2f2; border-left: 4px solid #f87171; }
.bubble.trainee { background: #eff6ff; border-left: 4px solid #60a5fa; }
.who { font-size: 12px; font-weight: 600; color: #374151; text-transform: uppercase;
  letter-spacing: .04em; }
.text { margin: 2px 0 6px; white-space: pre-wrap; overflow-wrap: anywhere; }
audio { width: 100%; max-width: 420px; height: 32px; }
mark.step { background: #bbf7d0; border-radius: 3px; padding: 0 1px; }
mark.pitfall { background: #fecaca; border-radius: 3px; padding: 0 1px;
  text-decoration: underline wavy var(--pitfall); }
sup.tag { font-size: 10px; font-weight: 600; margin-left: 1px; }
sup.tag.step { color: var(--step); } sup.tag.pitfall { color: var(--pitfall); }
table.steps { border-collapse: collapse; width: 100%; font-size: 14px; margin: 6px 0; }
table.steps td, table.steps th { border-top: 1px solid var(--line); padding: 4px 6px;
  text-align: left; vertical-align: top; }
table.steps th { font-size: 12px; color: var(--muted); font-weight: 600; }
.ok { color: var(--step); font-weight: 700; } .miss { color: #9ca3af; font-weight: 700; }
.bad { color: var(--pitfall); font-weight: 700; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
@media (max-width: 760px) { .cols { grid-template-columns: 1fr; } }
ul.reasons { margin: 4px 0; padding-left: 20px; }
ul.taking { margin: 4px 0; padding-left: 20px; font-size: 14px; }
ul.taking li.talked-over b { color: var(--pitfall); } ul.taking li.gave-way b { color: #374151; }
.hint { background: #f0fdf4; border-left: 4px solid var(--step); padding: 6px 10px; }
details summary { cursor: pointer; color: #374151; }
"""


def _row(mark: str, cls: str, ident: str, what: str) -> str:
    return (f'<tr><td class="{cls}">{mark}</td><td><code>{_e(ident)}</code></td>'
            f"<td>{what}</td></tr>")


def steps_table(turn: TurnRecord) -> str:
    """Expected steps against what was heard; extra steps; pitfalls; suppressed finds."""
    steps = {d.id: d for d in turn.steps}
    rows = []
    calm = turn.delivery.calm
    for s in turn.expects:
        if s == "stay_calm":
            reason = turn.delivery.reasons[0] if turn.delivery.reasons else ""
            rows.append(_row("✓" if calm else "✗", "ok" if calm else "bad", s,
                             ("calm delivery" if calm else "not calm")
                             + (f" — {_e(reason)}" if reason else "")))
        elif s in steps:
            rows.append(_row("✓", "ok", s, f"\u201c{_e(steps[s].evidence)}\u201d"))
        else:
            rows.append(_row("✗", "miss", s, '<span class="muted">expected, not heard</span>'))
    for s, d in steps.items():
        if s not in turn.expects:
            rows.append(_row("+", "ok", s, f"\u201c{_e(d.evidence)}\u201d "
                             '<span class="muted">(not expected here, still good)</span>'))
    for d in turn.pitfalls:
        rows.append(_row("⚠", "bad", d.id, f"\u201c{_e(d.evidence)}\u201d"))
    for d in turn.suppressed:
        rows.append(_row("·", "miss", d.id,
                         f"\u201c{_e(d.evidence)}\u201d <span class=\"muted\">not "
                         f"counted: {_e(d.note)}</span>"))
    if not rows:
        return '<p class="muted">No steps expected and none heard.</p>'
    return ('<table class="steps"><tr><th></th><th>step</th><th>heard</th></tr>'
            + "".join(rows) + "</table>")


def _delivery_html(dv: DeliveryRecord) -> str:
    verdict = (f'<span class="{"ok" if dv.calm else "bad"}">'
               f'{"calm" if dv.calm else "not calm"}</span> ({_num(dv.calm_score)}/100)')
    pace = (f"{dv.pace_ratio:.2f}× your calm pace" if dv.pace_ratio is not None
            else f"{_num(dv.wpm)} wpm")
    facts = (f"pitch median {_num(dv.median_hz)} Hz · pace {pace} · loudness "
             f"{_num(dv.rms_dbfs, '.1f')} dBFS · {_num(dv.talk_s, '.1f')} s of talk")
    reasons = "".join(f"<li>{_e(r)}</li>" for r in dv.reasons)
    return (f"<p><b>Delivery:</b> {verdict}<br><span class=\"muted\">{facts}</span></p>"
            + (f'<ul class="reasons">{reasons}</ul>' if reasons else ""))


def turn_taking_html(turn: TurnRecord) -> str:
    """Talking over the customer (a delivery fault) and replies that gave way (not
    scored), with their times; empty when the turn had neither."""
    items = []
    if turn.interruption is not None:
        items.append('<li class="talked-over"><b>Talked over:</b> '
                     f"{_e(turn.interruption.describe())} "
                     '<span class="muted">(counts against delivery)</span></li>')
    items += ['<li class="gave-way"><b>Customer gave way:</b> '
              f'{_e(y.describe())} <span class="muted">({_e(YIELD_NOTE)})</span></li>'
              for y in turn.yielded]
    return f'<ul class="taking">{"".join(items)}</ul>' if items else ""


def turn_html(turn: TurnRecord, session_dir: Path, mode: str, rel: str,
              model_answers: Mapping[str, str]) -> str:
    """One turn of the timeline."""
    i = turn.index
    text = turn.reply if turn.reply is not None else turn.transcript
    said = (highlight(text, (*turn.steps, *turn.pitfalls)) if text
            else '<span class="muted">(nothing heard)</span>')
    expl = "".join(f"<li>{_e(x)}</li>" for x in turn.turn_score.explanation)
    model = model_answers.get(turn.line)
    reason = turn.move_reason
    parts = [
        f'<section class="turn card" id="turn-{_e(i)}">',
        f"<h3>Turn {_e(i)} <span class=\"muted\">· mood {_num(turn.mood_before, '.1f')}"
        f" → {_num(turn.mood_after, '.1f')} · turn score {_num(turn.turn_score.score)}/100"
        "</span></h3>",
        '<div class="bubble customer"><div class="who">Customer'
        f' <span class="muted">({_e(turn.line)})</span></div>'
        f'<p class="text">{_e(turn.customer_text)}</p>'
        f'{_audio(session_dir, turn.customer_audio, mode, rel, f"customer, turn {i}")}</div>',
        '<div class="bubble trainee"><div class="who">You</div>'
        f'<p class="text">{said}</p>'
        f'{_audio(session_dir, turn.answer_audio, mode, rel, f"your answer, turn {i}")}'
        "</div>",
        turn_taking_html(turn),
        '<div class="cols"><div>',
        steps_table(turn),
        f'<p class="muted">Mood: {_e(reason)}</p>' if reason else "",
        (f"<details><summary>Why this turn score</summary><ul class=\"reasons\">{expl}</ul>"
         "</details>") if expl else "",
        (f"<details><summary>A model answer</summary><p class=\"text\">{_e(model)}</p>"
         "</details>") if model else "",
        "</div><div>",
        _delivery_html(turn.delivery),
        contour_svg(turn, session_dir),
        "</div></div>",
        f'<p class="hint">Tip: {_e(turn.hint)}</p>' if turn.hint else "",
        "</section>",
    ]
    return "\n".join(p for p in parts if p)


def _model_answers(record: SessionRecord) -> dict[str, str]:
    """The persona's sample replies by line id (empty when the persona file is gone)."""
    path = record.persona_path
    if not path or not Path(path).is_file():
        return {}
    from voice_sim.persona import load_persona

    try:
        persona = load_persona(path)
    except VoiceSimError:
        return {}  # the persona changed or broke since the call: the report goes on without
    return {lid: line.sample_reply for lid, line in persona.lines.items() if line.sample_reply}


def render_report(record: SessionRecord, session_dir: str | os.PathLike[str], *,
                  audio: str = "auto", out_dir: str | os.PathLike[str] | None = None) -> str:
    """The report page as one HTML string.

    ``audio`` is ``auto``, ``embed`` or ``link``; linked audio is addressed relative
    to ``out_dir`` (where the report will be written; default the session folder)."""
    sdir = Path(session_dir)
    mode = choose_audio_mode(record, sdir, audio)
    rel = os.path.relpath(sdir, Path(out_dir) if out_dir else sdir).replace(os.sep, "/")
    rel = "" if rel == "." else rel + "/"
    title = record.persona_title or record.persona or "session"
    outcome = record.outcome or "unfinished"
    turns = record.turns
    started = record.started_at.replace("T", " ")
    meta = " · ".join(_e(x) for x in (
        record.mode, started, f"engine {record.engine}",
        f"baseline: {record.baseline}" if record.baseline
        else "no calm baseline (population defaults)",
        f"{_num(record.duration_s)} s") if x)
    body = [
        '<header><div class="inner">',
        f"<h1>{_e(title)}</h1><div class=\"meta\">{meta}</div>",
        '<div class="summary">',
        f'<span class="big">{_num(record.score)}<span class="muted">/100</span></span>',
        f'<span class="badge {_e(outcome)}">{_e(OUTCOME_WORDS.get(outcome, outcome))}</span>',
        f"<span>{len(turns)} turns · calm in {record.calm_turns} of {len(turns)}"
        + (f" · talked over the customer in {record.talked_over}" if record.talked_over else "")
        + (f" · the customer gave way {record.yields}× (not counted)" if record.yields else "")
        + "</span>",
        "</div></div></header><main>",
    ]
    if record.status not in ("", "complete"):
        why = f": {record.error}" if record.error else ""
        body.append(f'<p class="warning">This session did not finish '
                    f"({_e(record.status)}){_e(why)}. What was recorded is shown.</p>")
    if record.practise_next:
        body.append("<h2>Practise next</h2><ol>"
                    + "".join(f"<li>{_e(h)}</li>" for h in record.practise_next[:3]) + "</ol>")
    if turns:
        body.append('<h2>The call at a glance</h2><div class="charts">'
                    + "".join(f'<div class="card">{svg}</div>' for svg in session_charts(record))
                    + "</div>")
    body.append("<h2>The call, turn by turn</h2>")
    answers = _model_answers(record)
    body += [turn_html(t, sdir, mode, rel, answers) for t in turns]
    closing = record.closing
    if closing is not None:
        body.append('<section class="turn card"><h3>Closing</h3>'
                    '<div class="bubble customer"><div class="who">Customer</div>'
                    f'<p class="text">{_e(closing.text)}</p>'
                    f'{_audio(sdir, closing.audio, mode, rel, "customer, closing")}'
                    "</div></section>")
    note = ("Audio is embedded in this file." if mode == "embed" else
            "Audio plays from the WAV files in the session folder (too large to embed).")
    body.append(f'</main><footer class="muted">Session folder: {_e(record.session_dir)}'
                f"<br>{note} Written by voice-sim {_e(__version__)}.</footer>")
    return page(f"{title} — voice-sim report", "\n".join(body))


def page(title: str, body: str, style: str = STYLE) -> str:
    """A complete, self-contained HTML page (no scripts, no network)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<link rel="icon" href="data:,">\n'
            f"<title>{_e(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n{body}\n"
            "</body>\n</html>\n")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a page atomically (:func:`paths.write_atomic`), or say why it cannot be."""
    from voice_sim.paths import write_atomic

    try:
        write_atomic(path, text)
    except OSError as e:
        raise SessionError(f"{path}: cannot write ({e.strerror})",
                           hint="check the folder, or pick another with --out") from e
    return path


def write_report(session_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 *, audio: str = "auto", record: SessionRecord | None = None) -> Path:
    """Render a session folder's report and write it (default ``DIR/report.html``)."""
    sdir = Path(session_dir)
    rec = record if record is not None else load_session(sdir)
    target = Path(out) if out else sdir / REPORT_NAME
    if target.is_dir():
        target = target / REPORT_NAME
    return write_text_atomic(target, render_report(rec, sdir, audio=audio,
                                                   out_dir=target.parent))


def cmd_report(args: argparse.Namespace) -> int:
    """``voice-sim report SESSION_DIR [--out FILE] [--open] [--audio MODE] [--text]``."""
    from voice_sim.scorecard import format_scorecard

    sdir = Path(args.session_dir)
    record = load_session(sdir)
    if sdir.is_file():  # session.json named directly
        sdir = sdir.parent
    if getattr(args, "text", False):
        print(format_scorecard(record.with_dir(sdir)))  # where it is now
        return 0
    t0 = time.perf_counter()
    path = write_report(sdir, args.out, audio=args.audio, record=record)
    took = time.perf_counter() - t0
    print(f"Report written: {path} ({path.stat().st_size / 1e6:.1f} MB, {took:.2f} s)")
    if args.open:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            print(f"voice-sim: no web browser found — open {path} yourself", file=sys.stderr)
    return 0
