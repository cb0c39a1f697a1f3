"""The HTML report: self-contained, escaped, complete; and its charts."""

from __future__ import annotations

import base64
import json
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from voice_sim import history, plots
from voice_sim.cli import main
from voice_sim.practice import after_call
from voice_sim.record import Evidence, SessionRecord
from voice_sim.report import highlight, render_report, write_report

real = [pytest.mark.slow, pytest.mark.model]


class Page(HTMLParser):
    """Every tag with its attributes, and the text inside each <mark>."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.marks: list[tuple[str, str, str]] = []  # (class, title, text)
        self._mark: list[str] | None = None
        self._attrs: dict[str, str | None] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "mark":
            self._mark, self._attrs = [], dict(attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self._mark is not None:
            self._mark.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "mark" and self._mark is not None:
            self.marks.append((self._attrs.get("class") or "", self._attrs.get("title") or "",
                               "".join(self._mark)))
            self._mark = None

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


ALLOWED_TAGS = {"html", "head", "meta", "link", "title", "style", "body", "header", "main",
                "footer", "div", "span", "h1", "h2", "h3", "p", "b", "br", "ol", "ul", "li",
                "section", "audio", "mark", "sup", "table", "tr", "th", "td", "code",
                "details", "summary", "svg", "rect", "line", "text", "polyline", "circle", "a"}
"""Every element the report is built from: anything else came from the data."""


def _record(session: Path) -> dict[str, Any]:
    rec: dict[str, Any] = json.loads((session / "session.json").read_text(encoding="utf-8"))
    return rec


# --- fast: highlighting and charts -------------------------------------------------------


def test_highlight_escapes_every_slice_and_marks_evidence() -> None:
    text = "I'm sorry <b>, calm down & relax"
    dets = [{"id": "apologize", "kind": "step", "evidence": "I'm sorry", "span": [0, 9]},
            {"id": "dismissive", "kind": "pitfall", "evidence": "calm down", "span": [15, 24]}]
    out = highlight(text, [Evidence.from_json(d) for d in dets])
    assert out == ('<mark class="step" title="apologize">I&#x27;m sorry</mark>'
                   '<sup class="tag step">apologize</sup> &lt;b&gt;, '
                   '<mark class="pitfall" title="dismissive">calm down</mark>'
                   '<sup class="tag pitfall">dismissive</sup> &amp; relax')


def test_highlight_overlaps_and_bad_spans() -> None:
    text = "so sorry, that sounds awful"
    dets = [{"id": "apologize", "kind": "step", "evidence": "so sorry, that", "span": [0, 14]},
            {"id": "empathize", "kind": "step", "evidence": "that sounds awful",
             "span": [99, 120]},  # a stale span: found again by its evidence
            {"id": "argue", "kind": "pitfall", "evidence": "not in the text", "span": [0, 3]}]
    page = Page(highlight(text, [Evidence.from_json(d) for d in dets]))
    assert [(c, t, x) for c, t, x in page.marks] == [
        ("step", "apologize", "so sorry, "), ("step", "apologize, empathize", "that"),
        ("step", "empathize", " sounds awful")]
    assert "argue" not in highlight(text, [Evidence.from_json(d) for d in dets])


def test_line_chart_gaps_warnings_and_escaping() -> None:
    svg = plots.line_chart(["t1", "t2", "t3", "t4", "<t5>"], [plots.Series(
        "pace & <b>", (150.0, 160.0, None, 200.0, 130.0), notes=("a", "b", "c", "<d>", "e"))],
        title="Pace <script>", unit="wpm", band=(120.0, 170.0), band_label="calm <band>",
        lines=[plots.RefLine(150.0, "target")], warn=(None, 170.0))
    root = ET.fromstring(svg)  # well-formed XML: nothing unescaped got in
    ns = "{http://www.w3.org/2000/svg}"
    assert root.find(f"{ns}title").text == "Pace <script>"  # type: ignore[union-attr]
    assert len(root.findall(f"{ns}polyline")) == 2  # the None splits the line
    dots = root.findall(f"{ns}circle")
    assert len(dots) == 4
    warn = [d for d in dots if d.get("fill") == plots.COLORS["warn"]]
    assert len(warn) == 1 and "200 wpm — <d>" in warn[0].find(f"{ns}title").text  # type: ignore[union-attr,operator]
    assert "&lt;t5&gt;" in svg and "calm &lt;band&gt;" in svg


def test_contour_chart_thins_and_breaks_at_unvoiced_frames() -> None:
    times = [i * 0.01 for i in range(3000)]
    f0: list[float | None] = [None if 1000 <= i < 1200 else 120.0 + (i % 50) for i in
                              range(3000)]
    svg = plots.contour_chart(times, f0, title="Pitch", band=(100.0, 140.0),
                              band_label="your calm band")
    root = ET.fromstring(svg)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2
    points = sum(len(p.get("points", "").split()) for p in lines)
    assert points <= plots.MAX_CONTOUR_POINTS
    assert points >= plots.MAX_CONTOUR_POINTS * 0.8


def test_sparkline_and_ticks() -> None:
    assert plots.sparkline([0, 50, 100, None, 120, -5], 0, 100) == "▁▅█ █▁"
    assert plots.nice_ticks(0, 100) == [0, 25, 50, 75, 100]
    assert plots.nice_ticks(-24.3, -19.1) == [-24, -22, -20]
    assert plots.nice_ticks(80, 330) == [100, 200, 300]


# --- fast: the command's errors ----------------------------------------------------------


def test_report_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "nope: no such folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a session folder (no session.json in it)" in capsys.readouterr().err
    (tmp_path / "session.json").write_text('{"format": 1,\n "turns": [', encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "session.json: not valid JSON (line 2)" in err and "Traceback" not in err


# --- real sessions -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.model
def test_report_is_self_contained_and_complete(recorded_session: Path, tmp_path: Path) -> None:
    rec = _record(recorded_session)
    html = render_report(SessionRecord.from_json(rec), recorded_session)
    page = Page(html)
    csp = [a for a in page.named("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1 and "default-src 'none'" in (csp[0]["content"] or "")
    assert not page.named("script") and "<script" not in html.lower()
    assert {t for t, _ in page.tags} <= ALLOWED_TAGS
    # Nothing is fetched: every source is inline data.
    for _, attrs in page.tags:
        for key in ("src", "href"):
            if attrs.get(key) is not None:
                assert (attrs[key] or "").startswith("data:"), attrs
    # An audio player per customer line and answer, each holding that WAV byte for byte.
    audio = page.named("audio")
    names = [n for t in rec["turns"] for n in (t["customer"]["audio"], t["answer_audio"])]
    names += [rec["closing"]["audio"]] if rec["closing"] else []
    assert len(audio) == len(names)
    for a, name in zip(audio, names, strict=True):
        data = base64.b64decode((a["src"] or "").removeprefix("data:audio/wav;base64,"))
        assert data == (recorded_session / name).read_bytes()
    # Plots: 4 for the call, one pitch contour per answer.
    svgs = page.named("svg")
    assert len(svgs) == 4 + len(rec["turns"])
    assert sum("contour" in (s.get("class") or "") for s in svgs) == len(rec["turns"])
    # Every step and pitfall's evidence is highlighted with its id.
    marked = {(c, t, x) for c, t, x in page.marks}
    for t in rec["turns"]:
        for d in t["steps"] + t["pitfalls"]:
            assert (d["kind"], d["id"], d["evidence"]) in marked, d
    assert any(c == "pitfall" for c, _, _ in page.marks)
    # Expected steps against what was heard, per turn.
    for t in rec["turns"]:
        heard = {d["id"] for d in t["steps"]}
        for s in t["customer"]["expects"]:
            if s != "stay_calm" and s not in heard:
                assert f"<code>{s}</code></td><td><span class=\"muted\">expected, not heard" \
                    in html


HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


@pytest.mark.slow
@pytest.mark.model
def test_html_in_any_text_renders_as_text(recorded_session: Path, tmp_path: Path) -> None:
    session = Path(shutil.copytree(recorded_session, tmp_path / "s"))
    rec = _record(session)
    rec["persona_title"] = HOSTILE
    rec["practise_next"] = [HOSTILE]
    rec["baseline"] = HOSTILE
    t = rec["turns"][0]
    reply = f"I'm so sorry {HOSTILE} really"
    t["reply"] = t["transcript"] = reply
    evidence = f"sorry {HOSTILE}"
    start = reply.index(evidence)
    t["steps"] = [{**t["steps"][0], "id": "apologize", "evidence": evidence,
                   "span": [start, start + len(evidence)], "kind": "step"}]
    t["customer"]["text"] = HOSTILE
    t["customer"]["line"] = HOSTILE
    t["delivery"]["reasons"] = [HOSTILE]
    t["move"]["reason"] = HOSTILE
    t["hint"] = HOSTILE
    t["turn_score"]["explanation"] = [HOSTILE]
    (session / "session.json").write_text(json.dumps(rec), encoding="utf-8")
    html = write_report(session).read_text(encoding="utf-8")
    page = Page(html)
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert {t for t, _ in page.tags} <= ALLOWED_TAGS
    assert not any(k.startswith("on") for _, a in page.tags for k in a)
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 9
    assert ("step", "apologize", f"sorry {HOSTILE}") in page.marks


@pytest.mark.slow
@pytest.mark.model
def test_linked_audio_points_at_the_session_files(recorded_session: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(recorded_session), "--out", str(out), "--audio", "link"]) == 0
    page = Page(out.read_text(encoding="utf-8"))
    srcs = [a["src"] or "" for a in page.named("audio")]
    assert srcs and not any(s.startswith("data:") for s in srcs)
    for s in srcs:
        assert (out.parent / s).resolve().is_file(), s
    assert "Audio plays from the WAV files in the session folder" in out.read_text()


@pytest.mark.slow
@pytest.mark.model
def test_contour_is_measured_again_when_the_record_has_none(recorded_session: Path,
                                                            tmp_path: Path) -> None:
    session = Path(shutil.copytree(recorded_session, tmp_path / "s"))
    rec = _record(session)
    for t in rec["turns"]:
        t["delivery"].pop("contour", None)
    (session / rec["turns"][1]["answer_audio"]).unlink()
    page = Page(render_report(SessionRecord.from_json(rec), session))
    contours = [a for a in page.named("svg") if "contour" in (a.get("class") or "")]
    assert len(contours) == len(rec["turns"]) - 1
    html = render_report(SessionRecord.from_json(rec), session)
    assert "No pitch contour: the answer's audio is missing or unreadable." in html
    assert "(audio missing: " in html


@pytest.mark.slow
@pytest.mark.model
def test_run_writes_report_and_history_and_keeps_json(espeak_wav: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    db = tmp_path / "h.sqlite3"
    monkeypatch.setenv("VOICE_SIM_HISTORY", str(db))
    answers = tmp_path / "answers"
    answers.mkdir()
    shutil.copy(espeak_wav("I'm really sorry, being charged twice is so frustrating."),
                answers / "01.wav")
    assert main(["run", "double-billing", "--answers", str(answers), "--engine", "whisper",
                 "--out", str(tmp_path / "sessions"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    session = Path(printed["session_dir"])
    assert printed == _record(session)  # --json prints exactly session.json
    assert "report.html" not in json.dumps(printed)
    assert (session / "report.html").is_file()
    [summary] = history.load_history(db)
    assert summary.session_dir == str(session.resolve())
    assert summary.score == printed["score"]


@pytest.mark.slow
@pytest.mark.model
def test_after_call_survives_a_broken_history(recorded_session: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    session = Path(shutil.copytree(recorded_session, tmp_path / "s"))
    bad = tmp_path / "h.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("VOICE_SIM_HISTORY", str(bad))
    report = after_call(session, SessionRecord.from_json(_record(session)))
    assert report == session / "report.html" and report.is_file()
    err = capsys.readouterr().err
    assert "warning: history not updated" in err
    assert "not a voice-sim history database" in err
    assert bad.read_bytes() == b"this is not a database" * 100
