"""The HTML report in a real headless browser (Debian's chromium, tests/browser.py).

The page loads from a ``file://`` URL; every console error, uncaught exception and
browser log error is collected, the SVG plots are measured in the DOM, and a
full-page screenshot is decoded to check that each plot region really has a drawing.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import NEEDS_CHROMIUM, Browser, chromium, decode_png

from voice_sim import history
from voice_sim.report import write_report

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]

def test_png_decoder_matches_every_filter() -> None:
    # The decoder is checked against an image encoded here with each filter type.
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    rows = []
    flat = img.reshape(5, 21).astype(np.int64)
    for y, f in enumerate((0, 1, 2, 3, 4)):
        cur, up = flat[y], flat[y - 1] if y else np.zeros(21, dtype=np.int64)
        left = np.concatenate([np.zeros(3, dtype=np.int64), cur[:-3]])
        ul = np.concatenate([np.zeros(3, dtype=np.int64), up[:-3]])
        if f == 0:
            enc = cur
        elif f == 1:
            enc = cur - left
        elif f == 2:
            enc = cur - up
        elif f == 3:
            enc = cur - (left + up) // 2
        else:
            p = left + up - ul
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
            enc = cur - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, ul))
        rows.append(bytes([f]) + bytes((enc % 256).astype(np.uint8)))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 7, 5, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
    assert np.array_equal(decode_png(png), img)


# --- the pages ----------------------------------------------------------------------------

PLOTS_JS = """JSON.stringify([...document.querySelectorAll('svg.plot')].map(s => {
  const r = s.getBoundingClientRect();
  return {cls: s.getAttribute('class'), x: r.left + scrollX, y: r.top + scrollY,
          w: r.width, h: r.height, shapes: s.querySelectorAll('polyline, circle').length};
}))"""


DATA_COLOURS = np.array([[0x25, 0x63, 0xEB], [0x7C, 0x3A, 0xED], [0xDC, 0x26, 0x26],
                         [0x16, 0xA3, 0x4A]])
"""The colours data is drawn in (plots.COLORS line, calm, warn, step): axes, grid and
text are grey or black, so these pixels are the data itself."""


LOAD_AUDIO = """new Promise((ok, bad) => {
    const a = document.querySelectorAll('audio')[1];
    a.addEventListener('loadedmetadata', () => ok(a.duration));
    a.addEventListener('error', () => bad(new Error('audio error ' + a.error.code)));
    a.preload = 'metadata'; a.load(); })"""
"""Load the first answer's audio; resolves to its duration in seconds."""


def _ink(region: np.ndarray) -> tuple[float, int]:
    """Share of non-white pixels, and how many pixels are drawn in a data colour."""
    flat = region.reshape(-1, 3).astype(np.int64)
    ink = float(np.mean(np.any(flat < 235, axis=1)))
    dist = np.abs(flat[:, None, :] - DATA_COLOURS[None, :, :]).max(axis=2)
    return ink, int(np.sum(dist.min(axis=1) < 60))


def _check_plots(browser: Browser, expected: int) -> list[dict[str, Any]]:
    plots = json.loads(browser.js(PLOTS_JS))
    assert len(plots) == expected, plots
    img = browser.screenshot()
    for p in plots:
        assert p["w"] > 200 and p["h"] > 80, p  # laid out with a real size
        assert p["shapes"] > 0, p  # something was drawn in it
        x, y, w, h = (round(p[k]) for k in ("x", "y", "w", "h"))
        region = img[y:y + h, x:x + w]
        assert region.shape[0] > 50 and region.shape[1] > 100, (p, img.shape)
        ink, data = _ink(region)
        assert ink > 0.005 and data >= 40, (p, ink, data)
    return plots


def test_report_in_chromium(recorded_session: Path, tmp_path: Path) -> None:
    """The real report: no console errors, every plot visible, the audio decodes."""
    report = write_report(recorded_session, tmp_path / "report.html")
    record = json.loads((recorded_session / "session.json").read_text())
    turns = len(record["turns"])
    t0 = time.perf_counter()
    with chromium(tmp_path) as browser:
        browser.open(report.resolve().as_uri())
        assert browser.errors() == []
        plots = _check_plots(browser, 4 + turns)  # 4 call charts + a pitch chart per answer
        assert sum("contour" in p["cls"] for p in plots) == turns
        audios = browser.js("document.querySelectorAll('audio').length")
        assert audios == 2 * turns + (1 if record["closing"] else 0)
        # An embedded answer really decodes, under the page's Content-Security-Policy.
        duration = browser.js(LOAD_AUDIO, awaited=True)
        import soundfile as sf

        first_answer = recorded_session / record["turns"][0]["answer_audio"]
        assert duration == pytest.approx(sf.info(str(first_answer)).duration, abs=0.05)
        assert browser.js("document.querySelectorAll('mark.step').length") >= 3
        assert browser.js("document.querySelectorAll('mark.pitfall').length") >= 1
        assert browser.errors() == []
        # Linked audio (a large session) plays from the session folder under the policy.
        linked = write_report(recorded_session, tmp_path / "linked" / "r.html", audio="link")
        browser.open(linked.resolve().as_uri())
        assert browser.js(LOAD_AUDIO, awaited=True) == pytest.approx(
            sf.info(str(first_answer)).duration, abs=0.05)
        assert browser.errors() == []
    print(f"browser check took {time.perf_counter() - t0:.1f} s")


def test_history_page_in_chromium(recorded_session: Path, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    again = shutil.copytree(recorded_session, tmp_path / "again")  # a second session
    history.import_sessions([recorded_session, again], db)
    sessions = history.load_history(db)
    page = tmp_path / "history.html"
    page.write_text(history.render_history(sessions), encoding="utf-8")
    steps = len(history.progress(sessions)["steps"])
    with chromium(tmp_path) as browser:
        browser.open(page.resolve().as_uri())
        assert browser.errors() == []
        _check_plots(browser, 1 + steps)


def test_errors_are_caught(tmp_path: Path) -> None:
    """The checks above can fail: a network load blocked by the report's policy, a
    script error and an empty plot are all seen."""
    from voice_sim.report import page

    bad = tmp_path / "bad.html"
    bad.write_text(page("bad", '<img src="http://127.0.0.1:9/x.png" alt="">'
                            '<svg class="plot" width="300" height="100"><title>x</title>'
                            '<circle cx="5" cy="5" r="1"/></svg>'), encoding="utf-8")
    with chromium(tmp_path) as browser:
        browser.open(bad.resolve().as_uri())
        errors = browser.errors()
        assert any("Content Security Policy" in e for e in errors), errors
        browser.js("setTimeout(() => { throw new Error('boom'); }, 0); 1")
        browser.js("new Promise(ok => setTimeout(ok, 100))", awaited=True)
        assert any("boom" in e or "exception" in e for e in browser.errors()[len(errors):])
        with pytest.raises(AssertionError):
            _check_plots(browser, 1)  # a near-empty plot region is not "visible"
