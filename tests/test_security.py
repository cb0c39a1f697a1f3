"""The security review, one test (or a few) per finding.

1. YAML is loaded safely: no tag that could construct an object is accepted by any
   loader (persona, rubric, fixtures spec, call spec), and only ``yamlfile`` builds a
   YAML parser.
2. Audio paths in persona files stay inside the persona's folder: the cases
   ``test_persona`` does not cover (a symlinked folder, drive and UNC paths, ``~``,
   NUL bytes, over-long names, symlink loops, devices), and ``persona record`` never
   writes through a symlink out of the folder.
3. HTML reports and the history page: every piece of text from a record is escaped,
   no script or event handler can come from data, nothing is loaded from the network,
   and audio is only ever taken from the session folder. In the terminal likewise: no
   newline or escape sequence from a file name or a YAML key reaches it raw.
4. Model archives: the checksum is verified before the archive is opened; entries
   that lie about their size, too many entries, and mode bits (setuid, devices,
   world-writable) are refused or neutralised (escapes, symlinks and declared sizes
   are in ``test_models``).
5. Session and history files follow the user's umask and are never world-writable;
   nothing goes over the network except the explicit ``models fetch``, proven by
   running the real commands under a socket audit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mini_persona import mini_persona

from voice_sim import models
from voice_sim.errors import ModelError, VoiceSimError
from voice_sim.record import SessionRecord

# --- 1. YAML -----------------------------------------------------------------------------

TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']",
    "!custom {{a: 1}}",
]


def _loaders(folder: Path) -> dict[str, tuple[Callable[[Path], Any], str]]:
    from voice_sim.callspec import load_spec
    from voice_sim.fixtures import load_fixture_spec
    from voice_sim.persona import load_persona
    from voice_sim.rubric import load_rubric

    return {"persona": (lambda p: load_persona(p, check_voice=False), "mini.yaml"),
            "rubric": (load_rubric, "rubric.yaml"),
            "fixtures": (load_fixture_spec, "x.fixtures.yaml"),
            "call spec": (load_spec, "x.call.yaml")}


@pytest.mark.parametrize("kind", ["persona", "rubric", "fixtures", "call spec"])
@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("where", ["value", "nested", "key", "directive"])
def test_no_loader_accepts_an_object_tag(tmp_path: Path, kind: str, tag: str,
                                         where: str) -> None:
    marker = tmp_path / "pwned"
    tagged = tag.format(marker=marker)
    text = {
        "value": f"id: {tagged}\n",
        "nested": f"lines:\n  - id: a\n    next:\n      - goto: {tagged}\n",
        "key": f"? {tagged}\n: 1\n",
        # A %TAG directive hides the python namespace behind a short handle.
        "directive": "%TAG !p! tag:yaml.org,2002:python/\n---\nid: !p!object/apply:os.system "
                     f"['touch {marker}']\n",
    }[where]
    load, name = _loaders(tmp_path)[kind]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VoiceSimError) as e:
        load(path)
    line = str(e.value)
    assert str(path) in line and "is not allowed" in line, line
    assert not marker.exists()


def test_only_yamlfile_builds_a_yaml_parser() -> None:
    """Every file a user writes goes through ``yamlfile.load_yaml`` (size, UTF-8, tag and
    alias checks first). The one other parser is ``set_line_audio``'s round trip,
    which runs ``load_yaml`` on the file before parsing it."""
    root = Path(__file__).resolve().parent.parent / "voice_sim"
    builders = re.compile(r"\bYAML\(|\byaml\.(safe_|unsafe_|full_)?load\(|typ=.(unsafe|base)")
    found = {}
    for f in sorted(root.rglob("*.py")):
        hits = [n for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
                if builders.search(line)]
        if hits:
            found[f.relative_to(root).as_posix()] = hits
    assert set(found) <= {"yamlfile.py", "persona_edit.py"}, found
    persona = (root / "persona_edit.py").read_text(encoding="utf-8")
    body = persona[persona.index("def set_line_audio"):]
    body = body[:body.index("\ndef ", 1)]
    assert body.index("load_yaml(p") < body.index("YAML(typ=\"rt\")")
    assert "unsafe" not in (root / "yamlfile.py").read_text(encoding="utf-8")


# --- 2. audio paths in persona files -----------------------------------------------------



def _tone_wav(path: Path) -> Path:
    from voice_sim.audio import write_wav

    write_wav(path, 0.3 * np.sin(np.arange(16_000) / 8.0))
    return path


def _persona(folder: Path, audio: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "mini.yaml"
    p.write_text(mini_persona(audio=f"\n    audio: {audio}"), encoding="utf-8")
    return p


@pytest.mark.parametrize(("audio", "setup", "words"), [
    ("mini/opening.wav", "symlinked folder", "outside the persona's folder"),
    ('"C:\\\\Users\\\\x.wav"', "", "is absolute"),
    ('"\\\\\\\\server\\\\share\\\\x.wav"', "", "is absolute"),
    ("~/x.wav", "", "is absolute"),
    ('"mini/a\\0.wav"', "", "cannot be used"),
    ("mini/" + "a" * 300 + ".wav", "mini", "cannot be used (File name too long)"),
    ("mini/opening.wav", "symlink loop", "cannot be used (Symlink loop"),
    ("mini/opening.wav", "device", "outside the persona's folder"),
    ("mini/opening.wav", "fifo", "is not usable"),
])
def test_persona_audio_stays_in_its_folder(tmp_path: Path, audio: str, setup: str,
                                           words: str) -> None:
    from voice_sim.persona import check_persona

    folder = tmp_path / "personas"
    outside = tmp_path / "outside"
    outside.mkdir()
    _tone_wav(outside / "opening.wav")
    folder.mkdir()
    if setup == "symlinked folder":
        (folder / "mini").symlink_to(outside, target_is_directory=True)
    elif setup:
        (folder / "mini").mkdir()
        target = folder / "mini" / "opening.wav"
        if setup == "mini":
            pass
        elif setup == "symlink loop":
            target.symlink_to(target.name)
        elif setup == "device":
            target.symlink_to("/dev/zero")
        else:  # a FIFO: opening it to read would block for ever
            os.mkfifo(target)
    path = _persona(folder, audio)
    persona, problems = check_persona(path, check_voice=False)
    assert persona is None
    [problem] = [p for p in problems if p.severity == "error"]
    assert problem.field == "lines[0].audio" and words in problem.message, problem.line_text()


def test_persona_record_never_writes_through_a_symlink_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The recordings folder (``<persona folder>/<id>/``) is a symlink to somewhere
    else: the take must not be written there."""
    from fake_audio import installed

    from voice_sim.cli import main

    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "personas"
    folder.mkdir()
    path = folder / "mini.yaml"
    path.write_text(mini_persona(audio=""), encoding="utf-8")
    (folder / "mini").symlink_to(outside, target_is_directory=True)
    speech = (0.3 * np.sin(np.arange(32_000) / 6.0)).astype(np.float32)
    before = path.read_bytes()
    with installed(answers=[speech], speed=50.0, delay_s=0.0, after_playback=False):
        code = main(["persona", "record", str(path), "--line", "opening", "--seconds", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "outside the persona's folder" in err, err
    assert list(outside.iterdir()) == []
    assert path.read_bytes() == before


# --- 3. HTML reports ---------------------------------------------------------------------

HOSTILE = ("</title></style><script>alert(1)</script><img src=x onerror=alert(2)>"
           "<a href=\"javascript:alert(3)\">x</a><link rel=stylesheet href=http://evil.example/c>"
           "\"' onmouseover=alert(4) <svg onload=alert(5)> &amp; {{}} ${x} \u202e")


def _record(session_dir: Path, text: str = "hello", audio: tuple[str, str] = (
        "turn-01-customer.wav", "turn-01-answer.wav")) -> dict[str, Any]:
    """A complete session record with ``text`` in every free-text field."""
    reply = f"I'm so sorry {text} that is frustrating"
    ev = f"sorry {text}"
    det = {"id": "apologize", "kind": "step", "evidence": ev,
           "span": [reply.index(ev), reply.index(ev) + len(ev)], "start_s": 0.1, "end_s": 0.6,
           "rule": text, "weight": 25.0, "where": text}
    pit = {**det, "id": "dismissive", "kind": "pitfall", "evidence": text, "span": [0, 3]}
    delivery = {
        "duration_s": 2.0, "speech_s": 1.5, "calm": False, "calm_score": 40,
        "reasons": [text], "checks": [{"name": text, "reason": text}],
        "pitch": {"median_hz": 120.0, "std_semitones": 2.0},
        "pace": {"wpm": 150.0, "ratio": 1.1, "wpm_from_syllables": 150.0},
        "loudness": {"rms_dbfs": -20.0, "clipped_fraction": 0.0},
        "talk": {"seconds": 1.5, "words": 6},
        "baseline": {"median_hz": 110.0, "std_semitones": 2.0, "rms_dbfs": -21.0},
        "contour": {"times": [0.0, 0.5, 1.0, 1.5], "f0_hz": [110.0, None, 130.0, 125.0]},
    }
    turn = {"index": 1, "customer": {"line": text, "text": text, "audio": audio[0],
                                     "expects": ["apologize", "empathize", "stay_calm"]},
            "answer_audio": audio[1], "answer_source": text, "end_reason": text,
            "transcript": reply, "reply": reply, "normalized": text,
            "words": [{"word": text, "start": 0.0, "end": 0.5, "conf": 0.9}],
            "steps": [det], "pitfalls": [pit], "suppressed": [{**det, "note": text}],
            "delivery": delivery,
            "turn_score": {"score": 55, "explanation": [text, text]},
            "mood_before": 6.0, "mood_after": 5.0,
            "move": {"reason": text, "heard": [text]}, "latency_s": 0.4, "hint": text}
    return {"format": 1, "status": "failed", "mode": text, "persona": "mini",
            "persona_title": text, "persona_path": str(session_dir / "nope.yaml"),
            "session_dir": str(session_dir), "outcome": text, "score": 55.0, "engine": text,
            "model": text, "baseline": text, "coach": "after",
            "started_at": "2026-11-23T10:00:00+00:00", "duration_s": 30.0, "start_mood": 6.0,
            "mood": 5.0, "turns": [turn, {**turn, "index": 2}],
            "closing": {"line": text, "text": text, "audio": "closing-customer.wav"},
            "hints": [text], "practise_next": [text, text], "error": text,
            "interrupted": False}


class Page(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _assert_inert(html: str, benign: str) -> None:
    """No tag, attribute or address the benign page does not have; no script."""
    page, ok = Page(html), Page(benign)
    assert {t for t, _ in page.tags} <= {t for t, _ in ok.tags}
    assert {a for _, attrs in page.tags for a in attrs} <= {a for _, attrs in ok.tags
                                                            for a in attrs}
    assert not any(a.startswith("on") for _, attrs in page.tags for a in attrs)
    assert "<script" not in html.lower()
    for tag, attrs in page.tags:
        for key, value in attrs.items():
            # Text from the record may sit in a title or a class (escaped, so inert), but
            # nothing that holds an address or a style may carry anything fetchable.
            if value and key in ("style", "srcset", "data", "background", "content"):
                assert not re.search(r"(?i)(https?|ftp|javascript):|url\(", value), \
                    (tag, key, value)
        for key in ("src", "href", "action", "formaction", "xlink:href", "poster"):
            value = attrs.get(key)
            if value is None:
                continue
            # Inline data, a file of the session folder, or a local file: URI; never a
            # network address.
            assert value.startswith(("data:", "file:///")) or re.fullmatch(
                r"[\w./-]*[\w-]+\.(wav|html)", value), (tag, key, value)
    # Nor in the styles: no url(), no @import.
    for style in re.findall(r"(?is)<style[^>]*>(.*?)</style>", html):
        assert "url(" not in style and "@import" not in style
    csp = [a for t, a in page.tags if t == "meta" and a.get("http-equiv") ==
           "Content-Security-Policy"]
    assert len(csp) == 1 and "default-src 'none'" in (csp[0]["content"] or "")
    assert "script-src" not in (csp[0]["content"] or "")


@pytest.fixture
def session(tmp_path: Path) -> Path:
    d = tmp_path / "session"
    d.mkdir()
    for name in ("turn-01-customer.wav", "turn-01-answer.wav", "closing-customer.wav"):
        _tone_wav(d / name)
    return d


@pytest.mark.parametrize("audio", ["embed", "link"])
def test_report_renders_any_record_text_inert(session: Path, audio: str) -> None:
    from voice_sim.report import render_report

    benign = render_report(SessionRecord.from_json(_record(session)), session, audio=audio)
    html = render_report(SessionRecord.from_json(_record(session, HOSTILE)), session,
                         audio=audio)
    _assert_inert(html, benign)
    # The hostile text is shown, as text, wherever the record has it.
    shown = "".join(Page(html).text)
    assert shown.count("<script>alert(1)</script>") >= 15


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd",
                                  "http://evil.example/a.wav", "javascript:alert(1)",
                                  "file:///etc/passwd", "..", "sub/turn-01-answer.wav",
                                  "../secret.wav"])
@pytest.mark.parametrize("audio", ["embed", "link"])
def test_report_takes_audio_only_from_the_session_folder(session: Path, tmp_path: Path,
                                                         name: str, audio: str) -> None:
    from voice_sim.report import render_report

    (session / "sub").mkdir()
    _tone_wav(session / "sub" / "turn-01-answer.wav")
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF-secret-bytes")
    html = render_report(SessionRecord.from_json(_record(session, audio=("turn-01-customer.wav",
                                                                      name))), session,
                         audio=audio)
    sources = [a.get("src") or "" for t, a in Page(html).tags if t == "audio"]
    # Two turns' customer lines and the closing line play; neither answer does.
    assert len(sources) == 3
    assert not any(name in s for s in sources)
    for s in sources:
        assert s.startswith("data:audio/wav;base64,") if audio == "embed" else \
            s in ("turn-01-customer.wav", "closing-customer.wav")
    assert "secret" not in html and "cm9vd" not in html  # nor base64 of /etc/passwd
    assert html.count("(no audio)") + html.count("(audio missing") == 2


def test_history_page_renders_any_text_inert(tmp_path: Path) -> None:
    from voice_sim.history import SessionSummary, render_history

    def summary(text: str, n: int) -> SessionSummary:
        record = _record(tmp_path / f"s{n}", text)
        record["turns"][0]["steps"][0]["id"] = "apologize" if text == "hello" else text
        return SessionSummary.from_record(SessionRecord.from_json(record))

    benign = render_history([summary("hello", 1), summary("hello", 2)], "mini")
    html = render_history([summary(HOSTILE, 1), summary(HOSTILE, 2)], HOSTILE)
    _assert_inert(html, benign)
    assert "<script>alert(1)</script>" in "".join(Page(html).text)


@pytest.mark.parametrize("what", ["yaml key", "file name"])
def test_error_lines_carry_no_control_characters(tmp_path: Path, what: str) -> None:
    """The terminal's version of "no script from data": a YAML key or a file name with a
    newline or an escape sequence (here: set the window title, clear the screen) is
    printed written out, on one line, and the terminal obeys none of it."""
    evil = "x\n\x1b]0;pwned\x07\x1b[2J\r"
    if what == "yaml key":
        path = tmp_path / "mini.yaml"
        path.write_text(mini_persona(audio="") + f'"{evil.encode("unicode_escape").decode()}": 1\n',
                        encoding="utf-8")
        args = ["persona", "graph", str(path)]
    else:
        path = tmp_path / f"{evil}.wav"
        path.write_bytes(b"not audio at all " * 10)
        args = ["transcribe", str(path), "--engine", "whisper"]
    proc = subprocess.run([sys.executable, "-m", "voice_sim", *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", proc.stderr), proc.stderr
    assert "x\\n\\x1b]0;pwned\\x07\\x1b[2J\\r" in proc.stderr


# --- 4. model archives -------------------------------------------------------------------

NAME = "vosk-model-small-en-us-0.15"


def _archive(path: Path, extra: Sequence[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{NAME}/README", "US English model\n")
        zf.writestr(f"{NAME}/am/final.mdl", b"\x00acoustic" * 100)
        zf.writestr(f"{NAME}/conf/model.conf", "--sample-frequency=16000\n")
        for info, data in extra:
            zf.writestr(info, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checksum_is_checked_before_the_archive_is_opened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "m.zip"
    _archive(archive, [("../../escaped.txt", b"pwned")])
    opened: list[object] = []
    real = zipfile.ZipFile

    def spy(*args: Any, **kw: Any) -> zipfile.ZipFile:
        opened.append(args[0])
        return real(*args, **kw)

    monkeypatch.setattr(zipfile, "ZipFile", spy)
    dest = tmp_path / "dest"
    with pytest.raises(ModelError, match="checksum mismatch"):
        models.fetch(NAME, url=archive.as_uri(), sha256="1" * 64, dest=dest,
                     progress=open(os.devnull, "w"))  # noqa: SIM115
    assert opened == []
    assert os.listdir(dest) == []
    assert not list(tmp_path.rglob("escaped.txt"))


def test_an_entry_that_lies_about_its_size_is_refused(tmp_path: Path) -> None:
    """50 MB of zeros whose headers say 1 kB: extraction stops at the declared size and
    the damaged entry fails its CRC, so nothing is installed and the bytes never land."""
    archive = tmp_path / "m.zip"
    _archive(archive, [(f"{NAME}/graph/HCLG.fst", bytes(50 << 20))])
    data = bytearray(archive.read_bytes())
    real = (50 << 20).to_bytes(4, "little")
    assert data.count(real) == 2  # the local header and the central directory entry
    data = bytearray(bytes(data).replace(real, (1024).to_bytes(4, "little")))
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        assert sum(i.file_size for i in zf.infolist()) < 10_000  # what the checks see
    dest = tmp_path / "dest"
    with pytest.raises(ModelError) as e:
        models.fetch(NAME, url=archive.as_uri(), sha256=hashlib.sha256(data).hexdigest(),
                     dest=dest, progress=open(os.devnull, "w"))  # noqa: SIM115
    assert "nothing" in e.value.line() or "not a zip" in e.value.line() or \
        "cannot unpack" in e.value.line()
    assert os.listdir(dest) == []


def test_too_many_entries_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "MAX_ENTRIES", 10)
    archive = tmp_path / "m.zip"
    sha = _archive(archive, [(f"{NAME}/graph/f{i}", b"x") for i in range(10)])
    dest = tmp_path / "dest"
    with pytest.raises(ModelError, match="13 files in the archive; refused"):
        models.fetch(NAME, url=archive.as_uri(), sha256=sha, dest=dest,
                     progress=open(os.devnull, "w"))  # noqa: SIM115
    assert os.listdir(dest) == []


@pytest.mark.parametrize("entry", ["..\\..\\escaped.txt", f"{NAME}\\..\\..\\escaped.txt",
                                   "\\\\server\\share\\escaped.txt", f"{NAME}/./../../x.txt"])
def test_windows_style_escapes_are_refused(tmp_path: Path, entry: str) -> None:
    archive = tmp_path / "m.zip"
    sha = _archive(archive, [(entry, b"pwned")])
    dest = tmp_path / "a" / "dest"
    with pytest.raises(ModelError, match="outside the model folder"):
        models.fetch(NAME, url=archive.as_uri(), sha256=sha, dest=dest,
                     progress=open(os.devnull, "w"))  # noqa: SIM115
    assert os.listdir(dest) == []


def test_mode_bits_in_the_archive_are_never_applied(tmp_path: Path) -> None:
    """setuid, world-writable, FIFO and device entries install as plain files with the
    user's umask."""
    extra = []
    for name, mode in (("setuid", stat.S_IFREG | 0o4777), ("fifo", stat.S_IFIFO | 0o666),
                       ("device", stat.S_IFCHR | 0o666), ("sticky-dir-file",
                                                         stat.S_IFREG | 0o1777)):
        info = zipfile.ZipInfo(f"{NAME}/graph/{name}")
        info.external_attr = mode << 16
        extra.append((info, b"data"))
    archive = tmp_path / "m.zip"
    sha = _archive(archive, extra)
    path = models.fetch(NAME, url=archive.as_uri(), sha256=sha, dest=tmp_path / "dest",
                        progress=open(os.devnull, "w"))  # noqa: SIM115
    for f in path.rglob("*"):
        st = f.lstat()
        assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), f
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWOTH), \
            (f, oct(st.st_mode))


# --- 5. file modes, and the network ------------------------------------------------------

WRITE_ALL = """
import json, os, sys
from pathlib import Path
os.umask(int(sys.argv[1], 8))
root, record = Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())
from voice_sim.audio import write_wav
from voice_sim.history import record_session
from voice_sim.record import SessionRecord
from voice_sim.report import write_report
from voice_sim.session import SessionWriter
writer = SessionWriter(root / "sessions", "mini")
record["session_dir"] = str(writer.dir)
record = SessionRecord.from_json(record)
writer.save(record)
for name in ("turn-01-customer.wav", "turn-01-answer.wav", "closing-customer.wav"):
    write_wav(writer.path(name), [0.1, -0.1] * 8000)
write_report(writer.dir, record=record)
record_session(record, db=root / "data" / "history.sqlite3")
"""
"""Every writer of session and history files, under a given umask."""


def _modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.lstat().st_mode)
            for p in [root, *root.rglob("*")] if p != root}


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [
    ("022", 0o644, 0o755), ("077", 0o600, 0o700), ("002", 0o664, 0o775),
    ("000", 0o664, 0o775)])
def test_session_and_history_files_follow_the_umask(tmp_path: Path, umask: str, file_mode: int,
                                                    dir_mode: int) -> None:
    record = tmp_path / "record.json"
    record.write_text(json.dumps(_record(tmp_path)), encoding="utf-8")
    root = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", WRITE_ALL, umask, str(root), str(record)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modes = _modes(root)
    names = {Path(k).name for k in modes}
    assert {"session.json", "report.html", "turn-01-answer.wav", "history.sqlite3"} <= names
    for name, mode in modes.items():
        assert not mode & stat.S_IWOTH, (name, oct(mode))
        is_dir = (root / name).is_dir()
        if name.startswith("data") and not is_dir:
            # SQLite asks for 0644 (its default) and the umask narrows it.
            assert mode == 0o644 & ~int(umask, 8), (name, oct(mode))
        else:
            assert mode == (dir_mode if is_dir else file_mode), (name, oct(mode))


def test_the_first_speech_cache_stamp_survives_threads(tmp_path: Path) -> None:
    """Found by the offline demo below on a fresh cache folder: the prerender thread and
    the call both wrote the first engine stamp through one temp file, and the loser
    failed the call ("cannot write the speech cache")."""
    import threading

    from voice_sim import speak

    errors: list[BaseException] = []
    for trial in range(10):
        folder = tmp_path / f"c{trial}" / "tts"

        def write(folder: Path = folder) -> None:
            try:
                speak._write_stamp(folder, {"pyttsx3": "x"})
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=write) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert json.loads((folder / "engine.json").read_text()) == {"pyttsx3": "x"}
        assert sorted(p.name for p in folder.iterdir()) == ["engine.json"]
    assert errors == []


AUDIT = '''
"""Loaded by every Python process of the test (PYTHONPATH): records each attempt to
reach the network, and refuses it unless VOICE_SIM_AUDIT=record."""
import os, socket

_LOG = os.environ["VOICE_SIM_AUDIT_LOG"]
_REFUSE = os.environ.get("VOICE_SIM_AUDIT") != "record"


def _note(what, family, address):
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\\t{what}\\t{family}\\t{address}\\n")
    # A Unix socket stays on this machine (a local sound server, D-Bus): allowed.
    if _REFUSE and family != "AF_UNIX":
        raise OSError(101, "network refused by the test's socket audit")


def _family(sock):
    try:
        return socket.AddressFamily(sock.family).name
    except ValueError:
        return str(sock.family)


_connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, \\
    socket.socket.sendto
_getaddrinfo, _create_connection = socket.getaddrinfo, socket.create_connection


def connect(self, address):
    _note("connect", _family(self), address)
    return _connect(self, address)


def connect_ex(self, address):
    _note("connect_ex", _family(self), address)
    return _connect_ex(self, address)


def sendto(self, data, *args):
    _note("sendto", _family(self), args[-1])
    return _sendto(self, data, *args)


def getaddrinfo(host, port, *args, **kw):
    _note("getaddrinfo", "DNS", (host, port))
    return _getaddrinfo(host, port, *args, **kw)


def create_connection(address, *args, **kw):
    _note("create_connection", "AF_INET", address)
    return _create_connection(address, *args, **kw)


socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = \\
    connect, connect_ex, sendto
socket.getaddrinfo, socket.create_connection = getaddrinfo, create_connection
'''


@pytest.fixture
def audited(tmp_path: Path) -> Callable[..., tuple[subprocess.CompletedProcess[str],
                                                   list[list[str]]]]:
    """Run ``voice-sim ARGS`` with every Python process under the socket audit; return
    the result and the attempts ([pid, call, family, address])."""
    site = tmp_path / "audit-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(AUDIT), encoding="utf-8")
    log = tmp_path / "audit.log"

    def run(*args: str, mode: str = "refuse", umask: int | None = None,
            env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str],
                                                         list[list[str]]]:
        log.write_text("", encoding="utf-8")
        e = {**os.environ, **(env or {}), "VOICE_SIM_AUDIT_LOG": str(log),
             "VOICE_SIM_AUDIT": mode,
             "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([sys.executable, "-m", "voice_sim", *args], capture_output=True,
                              text=True, timeout=600, env=e,
                              preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
        attempts = [line.split("\t") for line in log.read_text(encoding="utf-8").splitlines()]
        return proc, attempts

    return run


def _network(attempts: list[list[str]]) -> list[list[str]]:
    return [a for a in attempts if a[2] != "AF_UNIX"]


def test_the_audit_sees_the_explicit_model_fetch(audited: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    """The control: ``models fetch`` is the one command that goes online, and the audit
    sees it (in every process, through the sitecustomize) and can refuse it."""
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/none.zip"
    try:
        proc, attempts = audited("models", "fetch", "--url", url, "--sha256", "0" * 64,
                                 "--dest", str(tmp_path / "m"), mode="record")
        assert proc.returncode == 2 and "HTTP 404" in proc.stderr
        assert any(a[1] in ("connect", "create_connection") and "127.0.0.1" in a[3]
                   for a in attempts), attempts
        proc, attempts = audited("models", "fetch", "--url", url, "--sha256", "0" * 64,
                                 "--dest", str(tmp_path / "m"))
        assert proc.returncode == 2 and "cannot download" in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
        assert _network(attempts)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def whisper() -> None:
    pytest.importorskip("faster_whisper", reason="the whisper extra is not installed")


@pytest.mark.slow
@pytest.mark.model
def test_a_whole_call_and_its_report_stay_offline_and_private(
        audited: Callable[..., Any], tmp_path: Path, whisper: None) -> None:
    """``demo`` (TTS, recognition, delivery, scoring, report, history) and ``report``,
    under the socket audit with a private umask: no network attempt (not even DNS), and
    every file made is the user's alone."""
    out, db = tmp_path / "sessions", tmp_path / "data" / "history.sqlite3"
    env = {"VOICE_SIM_HISTORY": str(db), "VOICE_SIM_CACHE": str(tmp_path / "cache")}
    proc, attempts = audited("demo", "--engine", "whisper", "--out", str(out), umask=0o077,
                             env=env)
    assert proc.returncode == 0, proc.stderr
    assert _network(attempts) == [], attempts
    [session] = list(out.iterdir())
    proc, attempts = audited("report", str(session), "--out", str(tmp_path / "r.html"),
                             env=env)
    assert proc.returncode == 0, proc.stderr
    assert _network(attempts) == [], attempts
    proc, attempts = audited("history", "--db", str(db), "--html", str(tmp_path / "h.html"))
    assert proc.returncode == 0 and _network(attempts) == [], (proc.stderr, attempts)
    made = {**_modes(out), **{f"data/{k}": v for k, v in _modes(db.parent).items()}}
    assert {"session.json", "report.html", "history.sqlite3"} <= {Path(k).name for k in made}
    assert any(k.endswith("-answer.wav") for k in made)
    for name, mode in made.items():
        assert mode & 0o077 == 0, (name, oct(mode))
    for f in (tmp_path / "cache").rglob("*"):
        assert not f.lstat().st_mode & stat.S_IWOTH, f


@pytest.mark.slow
@pytest.mark.model
def test_a_run_follows_the_usual_umask(audited: Callable[..., Any], tmp_path: Path,
                                       whisper: None) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    from voice_sim.speak import Voice, render_wav

    render_wav("I'm so sorry about that, let me fix it right now.", Voice(id="en-us"),
               answers / "01.wav")
    out, db = tmp_path / "sessions", tmp_path / "h.sqlite3"
    proc, attempts = audited("run", "double-billing", "--answers", str(answers), "--engine",
                             "whisper", "--out", str(out), umask=0o022,
                             env={"VOICE_SIM_HISTORY": str(db)})
    assert proc.returncode == 0, proc.stderr
    assert _network(attempts) == [], attempts
    [session] = list(out.iterdir())
    for name, mode in _modes(session).items():
        assert mode == 0o644, (name, oct(mode))
    assert stat.S_IMODE(session.stat().st_mode) == 0o755
    assert stat.S_IMODE(db.stat().st_mode) == 0o644

