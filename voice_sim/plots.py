"""Small charts for the reports: inline SVG for HTML pages, sparklines for the terminal.

No plotting library and no JavaScript: each chart is a short SVG string that lives
inside the HTML file, so a report is self-contained, small and opens offline. Every
piece of text that reaches the SVG goes through :func:`html.escape`; numbers are
formatted by this module, never taken as strings from a record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 480
"""Default chart width in CSS pixels: about what a report's two-column layout gives a
chart, so text is drawn near its nominal size (the SVG scales with the page)."""

HEIGHT = 200
"""Default chart height in CSS pixels."""

_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 14, 44, 30
"""Margins around the plot area: room for tick labels, the title and legend, and the x
labels."""

MAX_CONTOUR_POINTS = 600
"""Pitch contours are thinned to at most this many points: a 60 s answer has 6,000
10-ms frames, far more than a chart WIDTH pixels wide can show."""

SPARK = "▁▂▃▄▅▆▇█"
"""Eight levels for terminal sparklines."""

COLORS = {
    "line": "#2563eb", "band": "#16a34a", "warn": "#dc2626", "ref": "#6b7280",
    "step": "#16a34a", "pitfall": "#dc2626", "calm": "#7c3aed", "grid": "#e5e7eb",
}
"""Chart colours (also used by the report's stylesheet)."""


@dataclass(frozen=True)
class Series:
    """One line on a chart: a value (or None for a gap) per x position."""

    name: str
    values: tuple[float | None, ...]
    color: str = COLORS["line"]
    notes: tuple[str, ...] = ()
    """Tooltip per point (shown on hover), same length as ``values`` or empty."""


@dataclass(frozen=True)
class RefLine:
    """A horizontal reference line with a label (a target, a limit)."""

    value: float
    label: str
    color: str = COLORS["ref"]


@dataclass(frozen=True)
class Mark:
    """A stretch of time to mark under a contour (evidence of a step or pitfall)."""

    start: float
    end: float
    label: str
    color: str


def fmt(v: float) -> str:
    """A compact number for labels and coordinates (no exponent, no trailing zeros)."""
    if not math.isfinite(v):
        return "0"
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``lo``..``hi`` (about ``n`` of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _svg_open(width: int, height: int, title: str, cls: str) -> list[str]:
    # Width and height attributes give the chart its size even before CSS applies;
    # the viewBox lets it shrink on a narrow screen.
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot {escape(cls)}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            f'<rect class="bg" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text x="{_LEFT}" y="16" font-size="13" font-weight="600" fill="#111827">'
            f"{escape(title)}</text>"]


def _y_axis(parts: list[str], ticks: Sequence[float], y: _Scale, width: int, unit: str,
            label: Sequence[str] | None = None) -> None:
    for i, t in enumerate(ticks):
        py = y(t)
        parts.append(f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{fmt(py)}" y2="{fmt(py)}" '
                     f'stroke="{COLORS["grid"]}" stroke-width="1"/>')
        text = label[i] if label is not None else fmt(t)
        parts.append(f'<text x="{_LEFT - 6}" y="{fmt(py + 4)}" font-size="11" '
                     f'text-anchor="end" fill="#4b5563">{escape(text)}</text>')
    if unit:
        parts.append(f'<text x="{width - _RIGHT}" y="16" font-size="11" text-anchor="end" '
                     f'fill="#4b5563">{escape(unit)}</text>')


class _Scale:
    """Maps a data range onto pixels (linear, or logarithmic for pitch)."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False) -> None:
        self.log = log
        self.lo, self.hi = (math.log(lo), math.log(hi)) if log else (lo, hi)
        if self.hi <= self.lo:
            self.hi = self.lo + 1.0
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        x = math.log(v) if self.log else v
        return self.p0 + (x - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def _band(parts: list[str], band: tuple[float, float] | None, y: _Scale, width: int,
          label: str, lo_clip: float, hi_clip: float) -> None:
    if band is None:
        return
    b_lo, b_hi = max(band[0], lo_clip), min(band[1], hi_clip)
    if b_hi <= b_lo:
        return
    top, bottom = y(b_hi), y(b_lo)
    parts.append(f'<rect class="band" x="{_LEFT}" y="{fmt(top)}" width="{width - _LEFT - _RIGHT}" '
                 f'height="{fmt(bottom - top)}" fill="{COLORS["band"]}" fill-opacity="0.13">'
                 f"<title>{escape(label)}</title></rect>")


def _ref_lines(parts: list[str], lines: Sequence[RefLine], y: _Scale, width: int,
               lo: float, hi: float) -> None:
    for r in lines:
        if not lo <= r.value <= hi:
            continue
        py = fmt(y(r.value))
        parts.append(f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{py}" y2="{py}" '
                     f'stroke="{escape(r.color)}" stroke-width="1.2" stroke-dasharray="5 4">'
                     f"<title>{escape(r.label)}</title></line>")


def _legend(parts: list[str], entries: Sequence[tuple[str, str, str]], width: int) -> None:
    """A row of keys under the title: (kind, colour, label); kind is ``line``,
    ``dash`` or ``band``. Labels sit here rather than on the plot, where they would
    collide with the data."""
    x, y = float(_LEFT), 32.0
    for kind, color, label in entries:
        need = 20 + 5.6 * len(label) + 14  # ~5.6 px per character at 10 px
        if x + need > width - _RIGHT and x > _LEFT:
            break  # no second row: the chart's title already says what matters
        c = escape(color)
        if kind == "band":
            parts.append(f'<rect x="{fmt(x)}" y="{fmt(y - 7)}" width="16" height="9" fill="{c}" '
                         'fill-opacity="0.25"/>')
        else:
            dash = ' stroke-dasharray="4 3"' if kind == "dash" else ""
            parts.append(f'<line x1="{fmt(x)}" x2="{fmt(x + 16)}" y1="{fmt(y - 3)}" '
                         f'y2="{fmt(y - 3)}" stroke="{c}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{fmt(x + 20)}" y="{fmt(y)}" font-size="10" fill="#374151">'
                     f"{escape(label)}</text>")
        x += need


def _range(values: Sequence[float], extra: Sequence[float], pad: float,
           fallback: tuple[float, float]) -> tuple[float, float]:
    pool = [v for v in (*values, *extra) if math.isfinite(v)]
    if not pool:
        return fallback
    lo, hi = min(pool), max(pool)
    span = hi - lo or max(abs(hi), 1.0) * 0.2
    return lo - span * pad, hi + span * pad


def line_chart(x_labels: Sequence[str], series: Sequence[Series], *, title: str,
               unit: str = "", y_range: tuple[float, float] | None = None,
               band: tuple[float, float] | None = None, band_label: str = "",
               lines: Sequence[RefLine] = (), warn: tuple[float | None, float | None]
               | None = None, cls: str = "", width: int = WIDTH,
               height: int = HEIGHT) -> str:
    """Values per position (turns, sessions) as lines with dots; an optional shaded
    target ``band`` and dashed reference ``lines``. Dots outside ``warn`` (lower,
    upper; None for no limit on that side; default the band) are drawn in the
    warning colour. ``None`` values leave a gap."""
    n = len(x_labels)
    values = [v for s in series for v in s.values if v is not None]
    extra = [*(band or ()), *(r.value for r in lines)]
    lo, hi = y_range or _range(values, extra, 0.12, (0.0, 1.0))
    x0, x1 = _LEFT + 18, width - _RIGHT - 18
    y = _Scale(lo, hi, height - _BOTTOM, _TOP + 6)

    def x(i: int) -> float:
        return (x0 + x1) / 2 if n <= 1 else x0 + i * (x1 - x0) / (n - 1)

    parts = _svg_open(width, height, title, cls)
    _y_axis(parts, nice_ticks(lo, hi), y, width, unit)
    _band(parts, band, y, width, band_label, lo, hi)
    _ref_lines(parts, lines, y, width, lo, hi)
    keys = [("line", sr.color, sr.name) for sr in series] if len(series) > 1 else []
    keys += [("band", COLORS["band"], band_label)] if band and band_label else []
    keys += [("dash", r.color, r.label) for r in lines if r.label]
    _legend(parts, keys, width)
    w_lo, w_hi = warn if warn is not None else (band if band is not None else (None, None))
    # As many x labels as fit side by side (~6.5 px per character), so none overlap.
    room = max(1, int((x1 - x0 + 40) // (6.5 * max((len(lb) for lb in x_labels), default=1)
                                          + 10)))
    every = max(1, math.ceil(n / room))
    for i, label in enumerate(x_labels):
        if i % every == 0 or i == n - 1:
            parts.append(f'<text x="{fmt(x(i))}" y="{height - 10}" font-size="11" '
                         f'text-anchor="middle" fill="#4b5563">{escape(label)}</text>')
    for s in series:
        pts = [(x(i), y(min(max(v, lo), hi)), v) for i, v in enumerate(s.values)
               if v is not None]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{fmt(x(i))},{fmt(y(min(max(v, lo), hi)))}")
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="series" points="{" ".join(run)}" fill="none" '
                             f'stroke="{escape(s.color)}" stroke-width="2"/>')
        notes = list(s.notes) if len(s.notes) == len(s.values) else [""] * len(s.values)
        kept = [notes[i] for i, v in enumerate(s.values) if v is not None]
        for (px, py, v), note in zip(pts, kept, strict=True):
            out = (w_lo is not None and v < w_lo) or (w_hi is not None and v > w_hi)
            color = COLORS["warn"] if out else s.color
            tip = f"{s.name}: {fmt(v)}{(' ' + unit) if unit else ''}" + (
                f" — {note}" if note else "")
            parts.append(f'<circle cx="{fmt(px)}" cy="{fmt(py)}" r="4.5" fill="{color}" '
                         f'stroke="#ffffff" stroke-width="1.5"><title>{escape(tip)}</title>'
                         "</circle>")
    parts.append("</svg>")
    return "\n".join(parts)


def thin(times: Sequence[float], values: Sequence[float | None],
         limit: int = MAX_CONTOUR_POINTS) -> tuple[list[float], list[float | None]]:
    """Keep every k-th point so at most ``limit`` remain (gaps stay gaps)."""
    k = max(1, math.ceil(len(times) / limit))
    return list(times[::k]), list(values[::k])


def contour_chart(times: Sequence[float], f0_hz: Sequence[float | None], *, title: str,
                  duration_s: float | None = None, band: tuple[float, float] | None = None,
                  band_label: str = "", lines: Sequence[RefLine] = (),
                  marks: Sequence[Mark] = (), cls: str = "contour", width: int = WIDTH,
                  height: int = HEIGHT) -> str:
    """A pitch contour (Hz on a log axis, so equal heights are equal musical intervals)
    over time, with the calm ``band`` shaded and evidence ``marks`` under the axis."""
    ts, fs = thin(times, f0_hz)
    voiced = [f for f in fs if f is not None and f > 0]
    extra = [*(band or ()), *(r.value for r in lines)]
    lo, hi = _range(voiced, extra, 0.0, (80.0, 320.0))
    lo, hi = max(40.0, lo / 1.12), min(1000.0, hi * 1.12)  # ~2 semitones of headroom
    end = duration_s if duration_s else (ts[-1] if ts else 1.0)
    end = max(end, 0.5)
    y = _Scale(lo, hi, height - _BOTTOM - 8, _TOP + 6, log=True)
    xs = _Scale(0.0, end, _LEFT + 4, width - _RIGHT)
    parts = _svg_open(width, height, title, cls)
    ticks = [t for t in (50, 75, 100, 125, 150, 200, 250, 300, 400, 500, 600, 800)
             if lo <= t <= hi] or [round(math.sqrt(lo * hi))]
    _y_axis(parts, ticks, y, width, "Hz")
    _band(parts, band, y, width, band_label, lo, hi)
    _ref_lines(parts, lines, y, width, lo, hi)
    keys = [("line", COLORS["line"], "pitch")]
    keys += [("band", COLORS["band"], band_label)] if band and band_label else []
    keys += [("dash", r.color, r.label) for r in lines if r.label]
    _legend(parts, keys, width)
    for t in nice_ticks(0.0, end, 6):
        parts.append(f'<text x="{fmt(xs(t))}" y="{height - 8}" font-size="11" '
                     f'text-anchor="middle" fill="#4b5563">{fmt(t)} s</text>')
    for m in marks:
        a, b = max(0.0, m.start), min(end, max(m.end, m.start + 0.05))
        if b <= a:
            continue
        parts.append(f'<rect class="mark" x="{fmt(xs(a))}" y="{height - _BOTTOM - 5}" '
                     f'width="{fmt(max(2.0, xs(b) - xs(a)))}" height="5" '
                     f'fill="{escape(m.color)}"><title>{escape(m.label)}</title></rect>')
    runs: list[list[str]] = [[]]
    for t, f in zip(ts, fs, strict=True):
        if f is None or f <= 0 or not lo <= f <= hi:
            runs.append([])
        else:
            runs[-1].append(f"{fmt(xs(t))},{fmt(y(f))}")
    for run in runs:
        if len(run) == 1:
            px, py = run[0].split(",")
            parts.append(f'<circle cx="{px}" cy="{py}" r="1.5" fill="{COLORS["line"]}"/>')
        elif run:
            parts.append(f'<polyline class="series" points="{" ".join(run)}" fill="none" '
                         f'stroke="{COLORS["line"]}" stroke-width="2" '
                         'stroke-linejoin="round"/>')
    if not voiced:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" font-size="12" '
                     'text-anchor="middle" fill="#6b7280">no voiced speech found</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def sparkline(values: Sequence[float | None], lo: float, hi: float) -> str:
    """A one-line terminal chart: one block per value on a fixed ``lo``..``hi`` scale
    (fixed, so two sparklines with the same scale compare); None is a blank."""
    out = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(" ")
            continue
        frac = (min(max(v, lo), hi) - lo) / (hi - lo) if hi > lo else 0.5
        out.append(SPARK[min(len(SPARK) - 1, int(frac * len(SPARK)))])
    return "".join(out)
