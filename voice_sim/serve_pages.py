"""The pages of ``voice-sim serve``: home, before and during the call, trainers.

Every page is built here as one HTML string from typed records (personas, history
summaries, validation problems); every piece of text goes through :func:`html.escape`.
Pages carry no inline script or style: behaviour comes from ``/static/*.js`` and data
from a ``<script type="application/json">`` block, so the server's
Content-Security-Policy can forbid inline code and every network load. Bars and the
call graph are SVG drawn here (presentation attributes, not styles).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from voice_sim.steps import END_STATES, STEP_IDS

if TYPE_CHECKING:
    from voice_sim.history import SessionSummary
    from voice_sim.persona import Persona, PersonaFile
    from voice_sim.yamlfile import Problem

END_COLOURS = {"resolved": ("#d4f7d4", "#2b8a3e"), "escalated": ("#fff3bf", "#e67700"),
               "hung_up": ("#ffd8d8", "#c92a2a")}
"""Fill and stroke of each end state in the call graph (as the Mermaid graph has them)."""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def page(title: str, body: str, *, scripts: Sequence[str] = (), data: Any = None) -> str:
    """A complete page: the shared stylesheet, optional page data and scripts."""
    blob = ("" if data is None else '<script type="application/json" id="page-data">'
            + json.dumps(data).replace("<", "\\u003c") + "</script>\n")
    tags = "".join(f'<script src="/static/{_e(s)}" defer></script>\n' for s in scripts)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<link rel="icon" href="data:,">\n'
            '<link rel="stylesheet" href="/static/app.css">\n'
            f"<title>{_e(title)} — voice-sim</title>\n{blob}{tags}</head>\n<body>\n"
            '<nav class="top"><a href="/" accesskey="h">voice-sim</a>'
            '<a href="/trainers" accesskey="t">Trainers</a>'
            '<a href="/history">History</a></nav>\n'
            f"{body}\n</body>\n</html>\n")


def trains(persona: Persona) -> list[str]:
    """The steps a persona's lines expect, in the reference's order: what it trains."""
    wanted = {s for line in persona.lines.values() for s in line.expects}
    return [s for s in STEP_IDS if s in wanted]


# --- home ---------------------------------------------------------------------------

def _bar(value: float | None, width: int = 160) -> str:
    """A 0..1 value as a small SVG bar with its percentage."""
    if value is None:
        return '<span class="muted">not yet</span>'
    w = round(max(0.0, min(1.0, value)) * width)
    colour = "#16a34a" if value >= 0.75 else "#d97706" if value >= 0.4 else "#dc2626"
    return (f'<svg class="bar" width="{width + 48}" height="16" role="img" '
            f'aria-label="{value:.0%}"><rect x="0" y="2" width="{width}" height="12" '
            f'fill="#e5e7eb"/><rect x="0" y="2" width="{w}" height="12" fill="{colour}"/>'
            f'<text x="{width + 6}" y="13" font-size="12">{value:.0%}</text></svg>')


def home_page(files: Sequence[PersonaFile], sessions: Sequence[SessionSummary],
              report_url: Mapping[str, str]) -> str:
    """Personas to call, recent sessions, and progress per step from the history.

    ``report_url`` maps a session folder to its served report (only sessions under the
    served sessions folder have one)."""
    from voice_sim.history import progress

    cards = []
    for pf in files:
        p = pf.persona
        if p is None:
            continue
        steps = ", ".join(trains(p)) or "—"
        cards.append(
            f'<li class="persona card"><h3>{_e(p.title)}</h3>'
            f'<p class="meta"><span class="diff {_e(p.difficulty)}">{_e(p.difficulty)}</span>'
            f' · {_e(p.customer)} · mood {p.start_mood:g}/10 at the start</p>'
            f"<p>{_e(p.briefing.situation)}</p>"
            f'<p class="trains">Trains: {_e(steps)}</p>'
            f'<a class="button" href="/call/{_e(p.id)}">Call {_e(p.customer)}</a></li>')
    rows = []
    for s in list(sessions)[::-1][:10]:
        url = report_url.get(s.session_dir)
        link = f'<a href="{_e(url)}">report</a>' if url else ""
        rows.append(f"<tr><td>{s.when:%Y-%m-%d %H:%M}</td><td>{_e(s.persona_title)}</td>"
                    f"<td>{_e(s.outcome or s.status)}</td><td>{s.score:.0f}</td>"
                    f"<td>{'-' if s.calm_score is None else f'{s.calm_score:.0f}'}</td>"
                    f"<td>{_e(s.mode)}</td><td>{link}</td></tr>")
    recent = ('<table class="sessions"><tr><th>when</th><th>customer</th><th>outcome</th>'
              "<th>score</th><th>calm</th><th>mode</th><th></th></tr>" + "".join(rows)
              + "</table>") if rows else '<p class="muted">No sessions yet: call someone.</p>'
    prog = progress(sessions) if sessions else {"steps": {}}
    bars = []
    for step, values in prog["steps"].items():
        got = [v for v in values if v is not None]
        last = got[-1] if got else None
        recent_mean = sum(got[-5:]) / len(got[-5:]) if got else None
        bars.append(f'<tr><th scope="row">{_e(step)}</th><td>{_bar(last)}</td>'
                    f"<td>{_bar(recent_mean)}</td></tr>")
    steps = ('<table class="progress"><tr><th>step</th><th>last session</th>'
             "<th>last 5 sessions</th></tr>" + "".join(bars) + "</table>") if bars else (
        '<p class="muted">Progress per step appears after your first call.</p>')
    body = ('<main id="home"><h1>Practise a difficult call</h1>'
            '<p class="lead">Pick a customer, read the briefing, and talk. Your words and '
            "your voice are scored; the report shows what to practise next.</p>"
            '<h2>Customers</h2><ul class="personas">' + "".join(cards) + "</ul>"
            '<div class="two"><section class="card"><h2>Recent sessions</h2>' + recent
            + '</section><section class="card"><h2>Progress per step</h2>' + steps
            + "</section></div></main>")
    return page("Home", body)


# --- before and during the call -------------------------------------------------------

def call_page(persona: Persona, *, has_last_baseline: bool, baseline_sentence: str,
              ws_path: str) -> str:
    """Before the call (briefing, calm reading, level check) and the call itself; one
    page whose script moves from the first to the second."""
    b = persona.briefing
    facts = "".join(f"<li>{_e(f)}</li>" for f in b.facts)
    goal = f'<p class="goal"><strong>Your goal:</strong> {_e(b.goal)}</p>' if b.goal else ""
    last = ('<label><input type="radio" name="baseline" value="last" checked> '
            "Reuse my last calm reading</label>") if has_last_baseline else ""
    body = f"""<main id="call-page" data-state="before">
<section id="before" class="card" aria-labelledby="brief-h">
<h1 id="brief-h">{_e(persona.title)}</h1>
<p class="meta"><span class="diff {_e(persona.difficulty)}">{_e(persona.difficulty)}</span>
 · {_e(persona.customer)} · trains {_e(", ".join(trains(persona)) or "—")}</p>
<p>{_e(b.situation)}</p><ul class="facts">{facts}</ul>{goal}
<h2>Calm reading</h2>
<p>Read this aloud at your normal pace, calmly: your delivery is judged against it.</p>
<blockquote id="baseline-sentence">{_e(baseline_sentence)}</blockquote>
<fieldset><legend>Baseline</legend>
{last}
<label><input type="radio" name="baseline" value="record"{"" if has_last_baseline
        else " checked"}> Record it now</label>
<label><input type="radio" name="baseline" value="none"> Skip (population defaults)</label>
</fieldset>
<p><button id="record-baseline" type="button">Record calm reading</button>
<span id="level-check" role="status" aria-live="polite"></span></p>
<p><label><input type="checkbox" id="live-hint"> Show a coaching hint after each answer
</label></p>
<p><button id="start" type="button" class="primary">Start the call</button>
<span class="keys">Keys: Enter ends your answer · Esc ends the call · H shows hints</span></p>
</section>
<section id="call" class="card" hidden aria-labelledby="call-h">
<h1 id="call-h">On the phone with {_e(persona.customer)}</h1>
<div class="status"><span id="who" role="status" aria-live="polite">Connecting…</span>
<svg id="meter" width="220" height="18" role="img" aria-label="microphone level">
<rect x="0" y="3" width="200" height="12" fill="#e5e7eb"/>
<rect id="meter-bar" x="0" y="3" width="0" height="12" fill="#16a34a"/></svg></div>
<div class="mood"><span>Customer's mood</span>
<svg id="mood" width="320" height="22" role="img" aria-label="mood">
<rect x="0" y="5" width="200" height="12" fill="#e5e7eb"/>
<rect id="mood-bar" x="0" y="5" width="0" height="12" fill="#dc2626"/>
<text id="mood-text" x="208" y="16" font-size="13"></text></svg></div>
<p id="line" class="line" aria-live="polite"></p>
<p id="caption" class="caption" aria-live="polite"></p>
<p id="hint" class="hint" aria-live="polite" hidden></p>
<ol id="log" class="log"></ol>
<p><button id="end-answer" type="button">End my answer (Enter)</button>
<button id="end-call" type="button" class="danger">End call (Esc)</button></p>
</section>
</main>"""
    data = {"persona": persona.id, "ws": ws_path, "customer": persona.customer}
    return page(persona.title, body, scripts=("call.js",), data=data)


# --- trainers -------------------------------------------------------------------------

def trainers_page(files: Sequence[PersonaFile], shown: Mapping[str, str]) -> str:
    """Every persona file: its problems (file:line and the fix), its lines to hear, its
    call graph, and a way straight into a call. ``shown`` maps a path to how it is named."""
    parts = []
    for pf in files:
        name = shown.get(str(pf.path), pf.path.name)
        errors = [p for p in pf.problems if p.severity == "error"]
        head = (f'<h2>{_e(pf.persona.title if pf.persona else pf.path.stem)} '
                f'<span class="file">{_e(name)}</span></h2>')
        status = ('<p class="ok">Valid.</p>' if not errors else
                  f'<p class="bad">{len(errors)} error{"s" * (len(errors) != 1)}: '
                  "this persona cannot be called until they are fixed.</p>")
        probs = _problems(pf.problems, name)
        body = ""
        if pf.persona is not None:
            p = pf.persona
            lines = "".join(
                f'<li><button type="button" class="play" data-src="/personas/{_e(p.id)}'
                f'/lines/{_e(line.id)}.wav" aria-label="play {_e(line.id)}">▶</button> '
                f'<code>{_e(line.id)}</code>{" (recorded)" if line.audio else ""}'
                f'{f" → ends: {_e(line.end)}" if line.end else ""}<br>'
                f"<span>{_e(line.text)}</span></li>" for line in p.lines.values())
            body = (f'<details open><summary>Lines ({len(p.lines)})</summary>'
                    f'<ol class="lines">{lines}</ol></details>'
                    f'<details open><summary>Call graph</summary>'
                    f'<div class="graph">{graph_svg(p)}</div></details>'
                    f'<p><a class="button" href="/call/{_e(p.id)}">Try this persona</a></p>')
        parts.append(f'<section class="card trainer" id="p-{_e(pf.path.stem)}">'
                     f"{head}{status}{probs}{body}</section>")
    body = ('<main id="trainers"><h1>Personas</h1><p class="lead">Every persona file in '
            "the personas folders, checked as <code>voice-sim persona check</code> checks "
            "it. Play a line to hear it in the customer's voice.</p>"
            '<audio id="player" preload="none"></audio>' + "".join(parts) + "</main>")
    return page("Trainers", body, scripts=("trainers.js",))


def _problems(problems: Iterable[Problem], name: str) -> str:
    items = []
    for p in problems:
        where = f"{name}:{p.line}" + (f":{p.column}" if p.column else "") if p.line else name
        field = f" <code>{_e(p.field)}</code>:" if p.field else ""
        fix = f'<br><span class="fix">Fix: {_e(p.hint)}</span>' if p.hint else ""
        items.append(f'<li class="{_e(p.severity)}"><code class="where">{_e(where)}</code> '
                     f"{_e(p.severity)}:{field} {_e(p.message)}{fix}</li>")
    return f'<ul class="problems">{"".join(items)}</ul>' if items else ""


# --- the call graph as SVG --------------------------------------------------------------

@dataclass(frozen=True)
class _Node:
    key: str
    label: str
    layer: int
    fill: str
    stroke: str
    title: str


NODE_W, NODE_H, GAP_X, GAP_Y = 150, 40, 24, 70
"""Pixels: node box size and the gaps between boxes and between layers."""


def graph_svg(persona: Persona) -> str:
    """The persona's branching drawn as layered boxes and arrows: lines by their
    distance from the opening line, end states at the bottom. Arrows going back up
    (a customer repeating themselves) curve round the side."""
    from collections import deque

    edges: list[tuple[str, str, str]] = []  # (from, to, why)
    for line in persona.lines.values():
        if line.end:
            edges.append((line.id, f"end:{line.end}", "the call ends"))
            continue
        for rule in line.next:
            target = f"end:{rule.goto}" if rule.goto in END_STATES else rule.goto
            edges.append((line.id, target, rule.why or rule.describe()))
    depth = {persona.start: 0}
    todo = deque([persona.start])
    while todo:
        cur = todo.popleft()
        for a, b, _ in edges:
            if a == cur and not b.startswith("end:") and b not in depth:
                depth[b] = depth[cur] + 1
                todo.append(b)
    for lid in persona.lines:  # reached only by `always` or the turn limit
        depth.setdefault(lid, max(depth.values()) + 1)
    bottom = max(depth.values()) + 1
    nodes: dict[str, _Node] = {}
    for line in persona.lines.values():
        fill, stroke = END_COLOURS.get(line.end or "", ("#eef2ff", "#4f46e5"))
        if line.id == persona.start:
            stroke = "#111827"
        short = line.text if len(line.text) <= 90 else line.text[:89] + "…"
        nodes[line.id] = _Node(line.id, line.id, depth[line.id], fill, stroke,
                               f"{line.id}: {short}")
    ends = {b for _, b, _ in edges if b.startswith("end:")}
    for rule in persona.always:
        if rule.goto in END_STATES:
            ends.add(f"end:{rule.goto}")
    for end in END_STATES:
        if f"end:{end}" in ends:
            fill, stroke = END_COLOURS[end]
            nodes[f"end:{end}"] = _Node(f"end:{end}", end, bottom, fill, stroke, end)
    layers: dict[int, list[str]] = {}
    for n in nodes.values():
        layers.setdefault(n.layer, []).append(n.key)
    width = max(len(v) for v in layers.values()) * (NODE_W + GAP_X) + GAP_X + 80
    height = (bottom + 1) * (NODE_H + GAP_Y) + 40
    pos: dict[str, tuple[float, float]] = {}
    for layer, keys in layers.items():
        span = len(keys) * (NODE_W + GAP_X) - GAP_X
        x0 = (width - span) / 2
        for i, k in enumerate(keys):
            pos[k] = (x0 + i * (NODE_W + GAP_X), 20 + layer * (NODE_H + GAP_Y))
    out = [f'<svg class="callgraph" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
           f'aria-label="call graph of {_e(persona.id)}">'
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>']
    seen: set[tuple[str, str]] = set()
    for a, b, why in edges:
        if (a, b) in seen or a not in pos or b not in pos:
            continue
        seen.add((a, b))
        (ax, ay), (bx, by) = pos[a], pos[b]
        if a == b:
            x, y = ax + NODE_W, ay + NODE_H / 2
            d = f"M{x:.0f},{y - 8:.0f} C{x + 40:.0f},{y - 30:.0f} {x + 40:.0f},{y + 30:.0f} " \
                f"{x:.0f},{y + 8:.0f}"
        elif nodes[b].layer > nodes[a].layer:
            x1, y1 = ax + NODE_W / 2, ay + NODE_H
            x2, y2 = bx + NODE_W / 2, by
            d = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{y1 + 30:.0f} {x2:.0f},{y2 - 30:.0f} " \
                f"{x2:.0f},{y2:.0f}"
        else:  # back up, or sideways: round the side
            right = bx >= ax
            x1 = ax + (NODE_W if right else 0)
            x2 = bx + (NODE_W if right else 0)
            y1, y2 = ay + NODE_H / 2, by + NODE_H / 2
            bulge = 40 if right else -40
            d = f"M{x1:.0f},{y1:.0f} C{x1 + bulge:.0f},{y1:.0f} {x2 + bulge:.0f},{y2:.0f} " \
                f"{x2:.0f},{y2:.0f}"
        out.append(f'<path d="{d}" fill="none" stroke="#6b7280" stroke-width="1.5" '
                   f'marker-end="url(#arrow)"><title>{_e(a)} → {_e(b.removeprefix("end:"))}: '
                   f"{_e(why)}</title></path>")
    for n in nodes.values():
        x, y = pos[n.key]
        rx = 20 if n.key.startswith("end:") else 6
        label = n.label if len(n.label) <= 20 else n.label[:19] + "…"
        out.append(f'<g class="node"><title>{_e(n.title)}</title>'
                   f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" '
                   f'rx="{rx}" fill="{n.fill}" stroke="{n.stroke}" stroke-width="2"/>'
                   f'<text x="{x + NODE_W / 2:.0f}" y="{y + NODE_H / 2 + 5:.0f}" '
                   f'text-anchor="middle" font-size="13" font-family="sans-serif">'
                   f"{_e(label)}</text></g>")
    if persona.always:
        why = "; ".join(f"{r.describe()} → {r.goto}" for r in persona.always)
        out.append(f'<text x="10" y="{height - 12:.0f}" font-size="12" fill="#374151">'
                   f"After any line: {_e(why)}. After {persona.max_turns} turns: "
                   f"{_e(persona.on_max_turns)}.</text>")
    out.append("</svg>")
    return "".join(out)


def error_page(status: int, message: str) -> str:
    """A plain page for 4xx answers."""
    return page(f"{status}", f'<main class="card"><h1>{status}</h1><p>{_e(message)}</p>'
                '<p><a href="/">Home</a></p></main>')
