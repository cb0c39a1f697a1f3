"""Bad input, everywhere: one matrix of every command that takes a file or a device
against every kind of bad input, each cell a real run of the CLI (``voice_sim.cli.main``
in a fresh ``python`` process, about 40 cells to a process).

A refused cell must exit non-zero with exactly one line on stderr that names the file
(or device) and the fix, put nothing like a traceback on stdout, leave no session
folder behind and never load a speech model: every process runs behind an import guard
that records and refuses ``faster_whisper``, ``ctranslate2`` and ``vosk``, so a command
that loaded its model before checking its input fails its cells.
``persona check`` is the exception by design: its problems *are* its output, one
``file:line:col`` line each on stdout, exit 1 (or 2 for a path that does not exist).

Valid but odd audio (8-bit, 24-bit, float, 6 channels, 8 kHz, clipping, noise, some
NaN samples) must work: as a persona recording (``persona check``, in the matrix), and
through a speech engine (``transcribe``, ``delivery``, ``run``, in-process below,
marked slow). Silent answers are accepted by ``run`` (a turn where nothing was heard)
and refused everywhere else.

The bad files are made once per module and every cell runs once, up front, in
parallel processes; each test then checks one cell. The three-hour file and the header
bomb also get their own processes, to measure memory."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mini_persona import mini_persona

from voice_sim.audio import MAX_DURATION_S, SAMPLE_RATE
from voice_sim.yamlfile import MAX_YAML_BYTES

RUNNER = r"""
TESTS = {tests!r}
import contextlib, importlib.abc, importlib.machinery, io, json, sys, traceback

loads = []

class _NoModels(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # Importing an engine package means a model is about to load.
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("faster_whisper", "ctranslate2", "vosk"):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        loads.append(module.__name__)
        raise ImportError(f"GUARD: {module.__name__} imported before the input was checked")

sys.meta_path.insert(0, _NoModels())
if sys.argv[1] != "real":
    sys.path.insert(0, TESTS)  # the fake sound card lives with the tests
    from fake_audio import FakeDevice, FakeSoundDevice
    table = () if sys.argv[1] == "none" else (
        FakeDevice("Fake Microphone", inputs=1, outputs=0),
        FakeDevice("Fake Speaker", inputs=0, outputs=2))
    sys.modules["sounddevice"] = FakeSoundDevice(devices=table)
from voice_sim.cli import main

results = []
for argv in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    del loads[:]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own exits
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # what the interpreter would print and exit 1 with
            traceback.print_exc()
            code = 1
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                    "loads": list(loads)})
with open(sys.argv[3], "w", encoding="utf-8") as f:
    json.dump(results, f)
""".replace("{tests!r}", repr(str(Path(__file__).parent)))
"""Runs a group of CLI invocations in one process (the interpreter and the imports are
most of a run's cost), each with its own stdout, stderr and exit code, behind a guard
that refuses to import a speech engine. argv[1] picks the sound devices: ``real`` (this
machine's), ``fake`` (one fake microphone and one fake speaker) or ``none``."""

"""The smallest valid persona (``{audio}`` adds a recording to the opening line)."""

SR = SAMPLE_RATE
FIX = re.compile(r" — \S| must be ")
"""How a line gives the fix: a hint after the dash, or the message saying what a value
must be."""


# --- the bad (and odd) files -----------------------------------------------------------

def _tone(sr: int = SR, seconds: float = 1.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * 220 * np.arange(round(sr * seconds)) / sr)


def _wav_header(frames: int, sr: int = SR) -> bytes:
    data = frames * 2
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16) + b"data"
            + struct.pack("<I", data))


def three_hour_wav(path: Path) -> Path:
    """A WAV that really is 3 hours long by its header and its size, but sparse: the
    345 MB of silence take no disk space (and the loader must never read them)."""
    header = _wav_header(3 * 3600 * SR)
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + 3 * 3600 * SR * 2)
    return path


def header_bomb_flac(path: Path) -> Path:
    """Half a second of 8-channel 96 kHz FLAC whose header claims 890 s (just under the
    duration limit): decoding it in one go would first allocate 2.5 GB."""
    sr = 96_000
    sf.write(path, 0.3 * np.sin(np.arange(sr // 2)[:, None] / 5 * np.arange(1, 9)), sr)
    raw = bytearray(path.read_bytes())
    at = 18  # STREAMINFO: "fLaC", block header, then 10 bytes before rate/channels/total
    bits = int.from_bytes(raw[at:at + 8], "big")
    bits = (bits & ~((1 << 36) - 1)) | (sr * 890)
    raw[at:at + 8] = bits.to_bytes(8, "big")
    path.write_bytes(bytes(raw))
    return path


def make_bad_audio(folder: Path, name: str = "x") -> dict[str, Path]:
    """Every refused kind of audio file, named ``<case>-<name>.<ext>``."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / f"good-{name}.wav"
    sf.write(good, _tone(), SR, subtype="PCM_16")
    full = good.read_bytes()
    out: dict[str, Path] = {}

    def put(case: str, data: bytes | None, ext: str = "wav") -> None:
        p = folder / f"{case}-{name}.{ext}"
        if data is not None:
            p.write_bytes(data)
        out[case] = p

    put("missing", None)
    (folder / f"folder-{name}.wav").mkdir()
    out["folder"] = folder / f"folder-{name}.wav"
    put("empty", b"")
    put("not-audio", b"these are meeting notes, not audio\n" * 20)
    # The MP3 decoder prints resync notes on stderr for bytes like these.
    put("not-audio-mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"not an mp3 " * 40, "mp3")
    put("cut-header", full[:30])
    put("cut-data", full[: len(full) // 2])
    sf.write(folder / f"zero-frames-{name}.wav", np.zeros(0), SR, subtype="PCM_16")
    out["zero-frames"] = folder / f"zero-frames-{name}.wav"
    out["three-hours"] = three_hour_wav(folder / f"three-hours-{name}.wav")
    out["header-bomb"] = header_bomb_flac(folder / f"header-bomb-{name}.flac")
    sf.write(folder / f"all-nan-{name}.wav", np.full(SR, np.nan, np.float32), SR,
             subtype="FLOAT")
    out["all-nan"] = folder / f"all-nan-{name}.wav"
    sf.write(folder / f"silence-{name}.wav", np.zeros(SR), SR, subtype="PCM_16")
    out["silence"] = folder / f"silence-{name}.wav"
    return out


AUDIO_CASES: dict[str, str] = {
    "missing": "no such file",
    "folder": "is a folder",
    "empty": r"empty \(0 bytes\)",
    "not-audio": "not a readable audio file",
    "not-audio-mp3": r"not a readable audio file \(.*[Ff]ormat not recognised",
    "cut-header": "not a readable audio file",
    "cut-data": "is cut short",
    "zero-frames": r"no audio \(0 frames\)",
    "three-hours": rf"10800\.0 s long, over the {MAX_DURATION_S:g} s limit",
    "header-bomb": "damaged|cut short",
    "all-nan": "is silent",
    "silence": "is silent",
}
"""Refused audio: case -> what the one line must say."""


def make_odd_audio(folder: Path, speech: np.ndarray, sr: int) -> dict[str, Path]:
    """Valid but unusual audio holding ``speech`` (mono float at ``sr``)."""
    import soxr

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)

    def at(rate: int) -> np.ndarray:
        return soxr.resample(speech, sr, rate) if rate != sr else speech

    def write(case: str, data: np.ndarray, rate: int, subtype: str) -> None:
        sf.write(folder / f"{case}.wav", data, rate, subtype=subtype)

    write("8-bit", speech, sr, "PCM_U8")
    write("24-bit", at(44_100), 44_100, "PCM_24")
    write("float", at(48_000).astype(np.float32), 48_000, "FLOAT")
    six = at(48_000)
    write("6-channels", np.stack([six * (1.0 - 0.1 * c) for c in range(6)], axis=1), 48_000,
          "PCM_16")
    write("8-khz", at(8_000), 8_000, "PCM_16")
    write("clipping", np.clip(8.0 * speech, -1.0, 1.0), sr, "PCM_16")
    write("noise", rng.uniform(-0.3, 0.3, len(speech)), sr, "PCM_16")
    some_nan = speech.astype(np.float32)
    some_nan[len(speech) // 3: len(speech) // 3 + 50] = np.nan
    some_nan[len(speech) // 2] = np.inf
    write("some-nan", some_nan, sr, "FLOAT")
    return {p.stem: p for p in folder.glob("*.wav")}


ODD_CASES = ("8-bit", "24-bit", "float", "6-channels", "8-khz", "clipping", "noise",
             "some-nan")


def _yaml_cases(kind: str) -> dict[str, str | bytes | None]:
    """File contents per bad case for a persona (named by its id), rubric or fixtures
    spec; None: no file; "/": a folder."""
    rows = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    laughs = "\n".join(rows) + "\n"
    common: dict[str, str | bytes | None] = {
        "missing": None,
        "folder": "/",
        "empty": "",
        "syntax": "id: syntax\ntitle: [unclosed\nlines:\n  - id: a\n",
        "huge": "id: huge\nnote: '" + "x" * (MAX_YAML_BYTES + 10) + "'\n",
        "billion-laughs": laughs,
        "deep": "id: deep\nnote: " + "[" * 60 + "]" * 60 + "\n",
        "non-utf8": b"id: non-utf8\ntitle: Caf\xe9 complaints\n",
        "python-tag": "id: !!python/object/apply:os.system ['touch {marker}']\n",
    }
    if kind == "persona":
        common["wrong-types"] = (mini_persona("wrong-types", audio="")
                                 .replace("start: 5", "start: [5]"))
        common["unknown-key"] = mini_persona("unknown-key", audio="") + "bogus: 1\n"
    elif kind == "rubric":
        common["wrong-types"] = "ids:\n  empathize:\n    weight: lots\n"
        common["unknown-key"] = "ids:\n  empathize:\n    bogus: 1\n"
    else:
        common["wrong-types"] = ("persona: double-billing\nreplies:\n  - text: hi\n"
                                 "    calm: maybe\n")
        common["unknown-key"] = "persona: double-billing\nreplies: [hi]\nbogus: 1\n"
    return common


YAML_CASES: dict[str, str] = {
    "missing": "no such",
    "folder": "folder",
    "empty": "empty",
    "syntax": "YAML syntax error",
    "wrong-types": "must be",
    "unknown-key": "unknown field 'bogus'",
    "huge": "byte limit",
    "billion-laughs": "expands to more than",
    "deep": "nested more than",
    "non-utf8": "byte 0xe9 is not UTF-8",
    "python-tag": "is not allowed",
}


def make_yaml(folder: Path, kind: str, marker: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".fixtures.yaml" if kind == "fixtures" else ".yaml"
    out = {}
    for case, content in _yaml_cases(kind).items():
        p = folder / f"{case}{suffix}"
        if content == "/":
            p.mkdir()
        elif isinstance(content, bytes):
            p.write_bytes(content)
        elif content is not None:
            p.write_text(content.replace("{marker}", str(marker)), encoding="utf-8")
        out[case] = p
    return out


SESSION_CASES: dict[str, tuple[str | None, str]] = {
    "missing": (None, "no such folder"),
    "no-session-json": ("", "no session.json"),
    "empty-json": ("session.json:", "not valid JSON"),
    "not-json": ("session.json:{persona: x", "not valid JSON"),
    "non-utf8": ("session.json:\xff\xfe", "not valid JSON"),
    "json-array": ("session.json:[]", "not a voice-sim session record"),
    "turns-not-a-list": ('session.json:{"persona": "x", "turns": "abc"}',
                         "turns: expected a list"),
    "turn-not-an-object": ('session.json:{"persona": "x", "turns": [1]}',
                           r"turns\[0\]: expected an object"),
    "deep-wrong-type": ('session.json:{"persona": "x", "session_dir": "d", "started_at": "t", '
                        '"score": 1, "turns": [{"customer": {"expects": "empathize"}}]}',
                        r"turns\[0\]\.customer\.expects: expected a list"),
}
"""Session folders: case -> (``session.json:CONTENT``, ``""`` for an empty folder, None
for no folder; what the line must say)."""


def make_sessions(folder: Path) -> dict[str, Path]:
    out = {}
    for case, (content, _) in SESSION_CASES.items():
        d = folder / case
        out[case] = d
        if content is None:
            continue
        d.mkdir(parents=True)
        if content.startswith("session.json:"):
            body = content.removeprefix("session.json:")
            (d / "session.json").write_bytes(body.encode("latin-1") if case == "non-utf8"
                                             else body.encode())
    return out


# --- the matrix ------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One command run on one input, and what must come of it."""

    command: str
    """Row label: the command (and the option that takes the file)."""
    case: str
    """Column label: the kind of input."""
    argv: tuple[str, ...]
    """Arguments; ``{x}`` placeholders are filled in from the made files."""
    names: str
    """What the line must name (a file name or a device)."""
    words: str
    """A regex the line must match: the problem."""
    devices: str = "real"
    style: str = "refused"
    """``refused`` (one line on stderr), ``report`` (``persona check``: lines on stdout),
    ``skipped`` (a listing that goes on: exit 0, one line per skipped file), ``works``."""

    @property
    def id(self) -> str:
        return f"{self.command}|{self.case}"


RUN = ("--engine", "whisper")


def _cells() -> list[Cell]:
    cells: list[Cell] = []
    audio_rows: list[tuple[str, tuple[str, ...], str]] = [
        ("transcribe", ("transcribe", "{audio}", *RUN), "real"),
        ("delivery", ("delivery", "{audio}", *RUN), "real"),
        ("delivery --baseline", ("delivery", "{good}", "--baseline", "{audio}", *RUN), "real"),
        ("run --answers", ("run", "double-billing", "--answers", "{answers}", "--out", "{out}",
                           *RUN), "real"),
        ("run --baseline", ("run", "double-billing", "--answers", "{good_answers}",
                            "--baseline", "{audio}", "--out", "{out}", *RUN), "real"),
        ("practice --baseline", ("practice", "double-billing", "--baseline", "{audio}",
                                 *RUN), "fake"),
    ]
    for case, words in AUDIO_CASES.items():
        for row, argv, devices in audio_rows:
            if row == "run --answers" and case in ("missing", "folder"):
                continue  # not an audio file in the folder: ignored (the folder's own
                # problems are tested in test_session)
            if row == "run --answers" and case in ("all-nan", "silence"):
                continue  # a silent answer is a turn where nothing was heard: accepted
            cells.append(Cell(row, case, argv, "{audio_name}", words, devices))
        # The same file as a persona's recording of its opening line.
        for row, argv, style in (
                ("persona check (recording)", ("persona", "check", "{pa}"), "report"),
                ("persona speak (recording)", ("persona", "speak", "{pa}", "--out", "{out}"),
                 "refused"),
                ("run (recording)", ("run", "{pa}", "--answers", "{good_answers}", "--out",
                                     "{out}", *RUN), "refused"),
                ("demo (recording)", ("demo", "--persona", "{pa}", "--out", "{out}", *RUN),
                 "refused")):
            cells.append(Cell(row, case, argv, "opening.wav",
                              "not found" if case == "missing" else words, style=style))
    for case in ODD_CASES:
        cells.append(Cell("persona check (recording)", case, ("persona", "check", "{pa}"),
                          "", "all valid", style="works"))

    persona_rows = [
        ("persona check", ("persona", "check", "{yaml}"), "real", "report"),
        ("rubric check", ("rubric", "check", "{yaml}"), "real", "report"),
        ("persona graph", ("persona", "graph", "{yaml}"), "real", "refused"),
        ("persona speak", ("persona", "speak", "{yaml}", "--out", "{out}"), "real", "refused"),
        ("persona record", ("persona", "record", "{yaml}", "--line", "opening"), "fake",
         "refused"),
        ("run", ("run", "{yaml}", "--answers", "{good_answers}", "--out", "{out}", *RUN), "real",
         "refused"),
        ("demo --persona", ("demo", "--persona", "{yaml}", "--out", "{out}", *RUN), "real",
         "refused"),
        ("practice", ("practice", "{yaml}", *RUN), "fake", "refused"),
    ]
    rubric_rows = [
        ("check-reply --rubric", ("check-reply", "Sorry about that.", "--rubric", "{yaml}"),
         "real"),
        ("run --rubric", ("run", "double-billing", "--answers", "{good_answers}", "--rubric",
                          "{yaml}", "--out", "{out}", *RUN), "real"),
        ("practice --rubric", ("practice", "double-billing", "--rubric", "{yaml}", *RUN),
         "fake"),
        # the rubric is read before the engine loads and before anything listens
        ("serve --rubric", ("serve", "--rubric", "{yaml}", "--port", "48731"), "real"),
    ]
    for case, words in YAML_CASES.items():
        for row, argv, devices, style in persona_rows:
            cells.append(Cell(row, case, argv, "{yaml_name}", words, devices, style))
        for row, argv, devices in rubric_rows:
            cells.append(Cell(row, case, argv, "{yaml_name}", words, devices))
        cells.append(Cell("fixtures make", case, ("fixtures", "make", "{yaml}"), "{yaml_name}",
                          words))
    cells.append(Cell("personas --dir", "every bad persona", ("personas", "--dir", "{yaml_dir}"),
                      "", "", style="skipped"))

    for case, (_, words) in SESSION_CASES.items():
        for row, argv in (("report", ("report", "{session}")),
                          ("report --text", ("report", "{session}", "--text")),
                          ("history import", ("history", "import", "{session}", "--db",
                                              "{db}"))):
            cells.append(Cell(row, case, argv, "{session_name}", words))

    for case, (argv, words) in {
        "missing": (("check-reply", "--jsonl", "{missing}"), "no such file"),
        "folder": (("check-reply", "--jsonl", "{folder}"), "no such file"),
        "not-json": (("check-reply", "--jsonl", "{notes}"), "not valid JSON"),
        "non-utf8": (("check-reply", "--jsonl", "{latin1}"), "not UTF-8"),
        "empty": (("check-reply", "--jsonl", "{empty_jsonl}"), "empty"),
    }.items():
        cells.append(Cell("check-reply --jsonl", case, argv, "{name}", words))
    for case, (argv, words) in {
        "missing": (("transcribe", "{good}", "--engine", "whisper", "--model", "{missing}"),
                    "no such|not found|does not exist"),
        "a file": (("transcribe", "{good}", "--engine", "whisper", "--model", "{notes}"),
                   "is a file, not a folder"),
        "empty folder": (("transcribe", "{good}", "--engine", "whisper", "--model", "{folder}"),
                         "not a CTranslate2 Whisper model"),
    }.items():
        cells.append(Cell("transcribe --model", case, argv, "{name}", words))
    cells.append(Cell("persona new --dir", "a file", ("persona", "new", "fresh", "--dir",
                                                      "{notes}"), "{name}", "is a file"))
    cells.append(Cell("persona new --dir", "exists", ("persona", "new", "mini", "--dir",
                                                    "{misc_dir}"), "mini.yaml",
                      "already exists"))
    cells.append(Cell("say --out", "folder", ("say", "Hello.", "--out", "{wav_folder}"),
                      "{name}", "is a folder"))
    cells.append(Cell("history --db", "folder", ("history", "--db", "{folder}"), "{name}",
                      "is a folder"))
    cells.append(Cell("history --html", "folder", ("history", "--html", "{folder}", "--db",
                                                   "{db}"), "{name}", "cannot write"))

    # A file name longer than the file system allows (255 bytes): every command that
    # takes a path, through the CLI's last-resort file-system error line.
    for row, argv in (
            ("transcribe", ("transcribe", "{long}.wav", *RUN)),
            ("delivery", ("delivery", "{long}.wav")),
            ("run --answers", ("run", "double-billing", "--answers", "{long}", *RUN)),
            ("persona check", ("persona", "check", "{long}.yaml")),
            ("persona graph", ("persona", "graph", "{long}.yaml")),
            ("check-reply --rubric", ("check-reply", "hi", "--rubric", "{long}.yaml")),
            ("check-reply --jsonl", ("check-reply", "--jsonl", "{long}.jsonl")),
            ("report", ("report", "{long}")),
            ("history --db", ("history", "--db", "{long}.db")),
            ("history import", ("history", "import", "{long}")),
            ("fixtures make", ("fixtures", "make", "{long}.fixtures.yaml")),
            ("say --out", ("say", "hi", "--out", "{long}.wav")),
            ("personas --dir", ("personas", "--dir", "{long}")),
            ("persona new --dir", ("persona", "new", "x", "--dir", "{long}"))):
        cells.append(Cell(row, "name too long", argv, "a" * 300, "File name too long"))

    device_rows = [
        ("say --output-device", ("say", "Hello.", "--output-device", "{dev}"), "output"),
        ("persona speak --output-device", ("persona", "speak", "double-billing", "--line",
                                           "opening", "--output-device", "{dev}"), "output"),
        ("persona record --input-device", ("persona", "record", "{mini}", "--line", "opening",
                                           "--input-device", "{dev}"), "input"),
        ("practice --input-device", ("practice", "double-billing", "--input-device", "{dev}",
                                     *RUN), "input"),
        ("practice --output-device", ("practice", "double-billing", "--output-device",
                                      "{dev}", *RUN), "output"),
        ("demo --play --output-device", ("demo", "--play", "--output-device", "{dev}",
                                         "--out", "{out}", *RUN), "output"),
    ]
    for row, argv, kind in device_rows:
        wrong_kind = "1" if kind == "input" else "0"
        what = "microphone" if kind == "input" else "speaker"
        for case, dev, words, devices in (
                ("no such index", "9", f"{what} 9 does not exist", "fake"),
                ("no such name", "Nonsense", f"no {what} matches 'Nonsense'", "fake"),
                ("wrong kind", wrong_kind, f"is not a {what}", "fake"),
                # practice checks the speaker first: a machine with no device at all
                # is told that, whichever device was named.
                ("machine has none", "1", "no (microphone|speaker) found"
                 if row.startswith("practice") else f"no {what} found", "none")):
            names = "" if case == "machine has none" else dev
            cells.append(Cell(row, case, tuple(a.replace("{dev}", dev) for a in argv), names,
                              words, devices))
    return cells


CELLS = _cells()


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    names: str
    out_dir: Path
    loads: tuple[str, ...] = ()
    """Speech engines the run tried to import."""


def _fill(cell: Cell, root: Path, made: dict[str, dict[str, Path]]) -> tuple[tuple[str, ...],
                                                                            str, Path]:
    out = root / "out" / re.sub(r"[^a-z0-9]+", "-", cell.id.lower())
    values: dict[str, str] = {
        "out": str(out), "good": str(made["misc"]["good"]),
        "good_answers": str(made["misc"]["good_answers"]), "db": str(root / "h.sqlite3"),
        "mini": str(made["misc"]["mini"]), "missing": str(root / "misc" / "missing.jsonl"),
        "folder": str(made["misc"]["folder"]), "notes": str(made["misc"]["notes"]),
        "latin1": str(made["misc"]["latin1"]), "wav_folder": str(made["misc"]["wav_folder"]),
        "misc_dir": str(made["misc"]["mini"].parent),
        "long": str(made["misc"]["mini"].parent / ("a" * 300)),
        "empty_jsonl": str(made["misc"]["empty_jsonl"]),
    }
    name = ""
    if "{audio}" in cell.argv or "{answers}" in cell.argv:
        audio = made["audio"][cell.case]
        values["audio"] = str(audio)
        values["answers"] = str(made["answers"][cell.case])
        name = next(made["answers"][cell.case].glob("02.*")).name if "{answers}" in cell.argv \
            else audio.name
    if "{pa}" in cell.argv:
        values["pa"] = str(made["persona_audio"][cell.case])
    if "{yaml}" in cell.argv:
        kind = ("rubric" if "rubric" in cell.command else
                "fixtures" if cell.command == "fixtures make" else "persona")
        values["yaml"] = str(made[kind][cell.case])
        name = made[kind][cell.case].name
    values["yaml_dir"] = str(root / "persona")
    if "{session}" in cell.argv:
        values["session"] = str(made["session"][cell.case])
        name = made["session"][cell.case].name
    for key in ("missing", "folder", "notes", "latin1", "wav_folder", "empty_jsonl"):
        if f"{{{key}}}" in cell.argv:
            name = Path(values[key]).name
    argv = tuple(re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], a) for a in cell.argv)
    names = cell.names.replace("{audio_name}", name).replace("{yaml_name}", name) \
        .replace("{session_name}", name).replace("{name}", name)
    return argv, names, out


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Path]]]:
    root = tmp_path_factory.mktemp("bad-input")
    marker = root / "pwned"
    files: dict[str, dict[str, Path]] = {"root": {"root": root, "marker": marker}}
    files["audio"] = make_bad_audio(root / "audio")
    misc = root / "misc"
    misc.mkdir()
    good = misc / "good.wav"
    sf.write(good, _tone(), SR, subtype="PCM_16")
    good_answers = misc / "answers"
    good_answers.mkdir()
    shutil.copy(good, good_answers / "01.wav")
    (misc / "folder").mkdir()
    (misc / "folder.wav").mkdir()
    (misc / "notes.txt").write_text("these are meeting notes\n", encoding="utf-8")
    (misc / "latin1.jsonl").write_bytes(b'{"reply": "caf\xe9"}\n')
    (misc / "empty.jsonl").write_bytes(b"")
    mini = misc / "mini.yaml"
    mini.write_text(mini_persona("mini", audio=""), encoding="utf-8")
    files["misc"] = {"good": good, "good_answers": good_answers, "folder": misc / "folder",
                     "notes": misc / "notes.txt", "latin1": misc / "latin1.jsonl", "mini": mini,
                     "wav_folder": misc / "folder.wav", "empty_jsonl": misc / "empty.jsonl"}
    # One answers folder per case: a good first answer, the bad file second.
    files["answers"] = {}
    for case, path in files["audio"].items():
        folder = root / "answers" / case
        folder.mkdir(parents=True)
        shutil.copy(good, folder / "01.wav")
        if case == "three-hours":
            three_hour_wav(folder / "02.wav")
        elif path.is_file():
            shutil.copy(path, folder / ("02" + path.suffix))
        files["answers"][case] = folder
    # One persona per case whose opening line's recording is the file.
    files["persona_audio"] = {}
    odd = make_odd_audio(root / "odd", _tone(22_050, 1.5), 22_050)
    for case, path in {**files["audio"], **odd}.items():
        folder = root / "persona-audio" / case
        (folder / "mini").mkdir(parents=True)
        dest = folder / "mini" / "opening.wav"
        if case == "three-hours":
            three_hour_wav(dest)
        elif case == "folder":
            dest.mkdir()
        elif path.exists():
            shutil.copy(path, dest)
        p = folder / "mini.yaml"
        p.write_text(mini_persona("mini", audio="\n    audio: mini/opening.wav"),
                     encoding="utf-8")
        files["persona_audio"][case] = p
    for kind in ("persona", "rubric", "fixtures"):
        files[kind] = make_yaml(root / kind, kind, marker)
    files["session"] = make_sessions(root / "sessions")
    yield files


def _run_group(devices: str, argvs: list[tuple[str, ...]], scratch: Path,
               env: dict[str, str]) -> list[dict[str, object]]:
    out = scratch / f"results-{os.getpid()}-{id(argvs)}.json"
    proc = subprocess.run([sys.executable, "-c", RUNNER, devices, json.dumps(argvs), str(out)],
                          capture_output=True, text=True, timeout=600, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and out.is_file(), proc.stderr
    got: list[dict[str, object]] = json.loads(out.read_text(encoding="utf-8"))
    return got


@pytest.fixture(scope="module")
def results(made: dict[str, dict[str, Path]]) -> dict[str, Result]:
    """Every cell, run once: cells with the same sound devices share a process (about
    40 to a process: start-up and imports are most of a run's cost), processes run in
    parallel."""
    root = made["root"]["root"]
    env = {**os.environ, "VOICE_SIM_SESSIONS": str(root / "sessions-default"),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    by_devices: dict[str, list[Cell]] = {}
    for cell in CELLS:
        by_devices.setdefault(cell.devices, []).append(cell)
    rows: dict[tuple[str, str], list[Cell]] = {}
    for devices, cells in by_devices.items():
        chunks = max(1, round(len(cells) / 40))
        for k in range(chunks):  # round robin: each chunk gets a share of every command
            rows[(str(k), devices)] = cells[k::chunks]
    filled = {c.id: _fill(c, root, made) for c in CELLS}

    def run(key: tuple[str, str]) -> list[Result]:
        cells = rows[key]
        got = _run_group(key[1], [filled[c.id][0] for c in cells], root, env)
        return [Result(filled[c.id][0], int(g["code"]), str(g["stdout"]),  # type: ignore[call-overload]
                       str(g["stderr"]), filled[c.id][1], filled[c.id][2],
                       tuple(g["loads"]))  # type: ignore[arg-type]
                for c, g in zip(cells, got, strict=True)]

    # Longest rows first, so the pool is not left waiting on one at the end.
    order = sorted(rows, key=lambda k: -len(rows[k]))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        done = dict(zip(order, pool.map(run, order), strict=True))
    return {c.id: r for key in order for c, r in zip(rows[key], done[key], strict=True)}


def _describe(r: Result) -> str:
    return (f"voice-sim {' '.join(r.argv)}\nexit {r.returncode}\nstdout:\n{r.stdout}\n"
            f"stderr:\n{r.stderr}")


def _no_paths(line: str) -> str:
    """The line without its paths: the bad files are named after their case, so the
    problem must be found in the words, not in the file name."""
    return re.sub(r"\S*/\S*", "", line)


KNOWN: dict[str, str] = {}
"""Cells that fail today in files this test's author may not edit (reported)."""


@pytest.mark.parametrize("cell", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN[c.id])) if c.id in KNOWN
    else c for c in CELLS], ids=[c.id for c in CELLS])
def test_cell(cell: Cell, results: dict[str, Result]) -> None:
    r = results[cell.id]
    why = _describe(r)
    assert "Traceback" not in r.stdout + r.stderr, why
    assert not r.loads, f"a speech engine ({r.loads}) was imported first\n{why}"
    assert not re.search(r'^\s*File ".*", line \d+', r.stdout, re.M), why
    err = r.stderr.splitlines()
    if cell.style == "refused":
        assert r.returncode != 0, why
        assert len(err) == 1, why
        line = err[0]
        assert line.startswith("voice-sim: "), why
        assert r.names in line, why
        assert re.search(cell.words, _no_paths(line)), why
        assert FIX.search(line), f"no fix given\n{why}"
        # Refused before the call: no half-made session folder.
        assert not r.out_dir.exists() or not any(r.out_dir.iterdir()), why
    elif cell.style == "report":
        assert r.returncode in (1, 2), why
        assert err == [], why
        problems = [x for x in r.stdout.splitlines() if ": error: " in x]
        assert problems, why
        first = problems[0]
        assert r.names in first and re.search(cell.words, _no_paths(first)), why
        assert FIX.search(first), why
        assert r.stdout.splitlines()[-1].startswith("checked "), why
    elif cell.style == "works":
        assert r.returncode == 0, why
        assert re.search(cell.words, r.stdout), why
    else:  # skipped: the listing goes on, and names each invalid file once
        assert r.returncode == 0, why
        skipped = [x for x in err if x.startswith("voice-sim: skipped ")]
        assert len(skipped) == len(err), why
        bad = [c for c in YAML_CASES if c not in ("missing", "folder")]
        for case in bad:
            assert sum(f"/{case}.yaml:" in x for x in skipped) == 1, (case, why)


def test_the_guard_does_stop_a_model_load(made: dict[str, dict[str, Path]],
                                          tmp_path: Path) -> None:
    """Without this, the guard in every cell could be a no-op: a good file reaches the
    engine, and the engine's import is refused and recorded."""
    [got] = _run_group("real", [("transcribe", str(made["misc"]["good"]), "--engine",
                                 "whisper")], tmp_path, dict(os.environ))
    assert got["code"] != 0
    assert got["loads"] == ["faster_whisper"]


@pytest.mark.parametrize("cell_id", ["transcribe|cut-data", "persona check|syntax",
                                     "report|turns-not-a-list", "say --output-device|wrong kind"])
def test_grouped_runs_match_a_process_of_their_own(cell_id: str, made: dict[str, dict[str, Path]],
                                                   results: dict[str, Result]) -> None:
    """The grouped runner reports what ``python -m voice_sim`` itself does."""
    cell = next(c for c in CELLS if c.id == cell_id)
    r = results[cell_id]
    if cell.devices == "real":
        argv = [sys.executable, "-m", "voice_sim", *r.argv]
    else:
        argv = [sys.executable, "-c", RUNNER.split("from voice_sim.cli import main")[0]
                + "from voice_sim.cli import main\nsys.exit(main(sys.argv[2:]))",
                cell.devices, *r.argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (r.returncode, r.stdout, r.stderr)


def test_no_yaml_file_ran_code(made: dict[str, dict[str, Path]],
                               results: dict[str, Result]) -> None:
    assert not made["root"]["marker"].exists()


def test_matrix_covers_every_command_that_takes_a_file_or_device() -> None:
    """A new command (or a new file or device option) must join the matrix: every
    subcommand with an argument naming a file, folder, persona or device has a row."""
    from voice_sim.cli import commands

    takes = re.compile(r"FILE|DIR|PATH|AUDIO|DEV|SPEC|PERSONA|SESSION")

    untested = []
    for command in commands():
        words, own = command.words, command.arguments
        if not any(takes.search(str(a.metavar or a.dest).upper()) for a in own
                   if a.dest != "help"):
            continue
        if not any(c.argv[:len(words)] == words for c in CELLS):
            untested.append(" ".join(words))
    # `models fetch` takes an address and a destination: its archives are tested in
    # test_models.py and test_security.py.
    assert untested == ["models fetch"], untested


# --- the three-hour file and header bombs: refused without the memory -------------------

_RSS = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(r.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode)
"""


def _peak_rss_mb(argv: list[str], **kw: object) -> tuple[int, float, str]:
    """Run ``voice-sim argv`` in a fresh wrapper whose only child it is; return (exit
    code, the child's peak RSS in MB, stderr)."""
    proc = subprocess.run([sys.executable, "-c", _RSS, sys.executable, "-m", "voice_sim",
                           *argv], capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]
    return proc.returncode, int(proc.stdout.strip().splitlines()[-1]) / 1024, proc.stderr


def test_three_hour_file_is_refused_from_its_header(made: dict[str, dict[str, Path]]) -> None:
    long = made["audio"]["three-hours"]
    size = long.stat().st_size
    assert size == 44 + 3 * 3600 * SR * 2  # really 345 MB by size …
    assert long.stat().st_blocks * 512 < 1 << 20  # … but sparse: nothing on disk
    code, peak, err = _peak_rss_mb(["transcribe", str(long), "--engine", "whisper"])
    assert code == 2 and "over the" in err and "Traceback" not in err
    _, small_peak, _ = _peak_rss_mb(["transcribe", str(made["audio"]["empty"]), "--engine",
                                     "whisper"])
    # Decoding it would take 691 MB as float32 (1.4 GB as float64); refusing it from the
    # header costs what refusing an empty file costs.
    assert peak < small_peak + 30, (peak, small_peak)


def test_header_claiming_gigabytes_is_never_allocated(made: dict[str, dict[str, Path]]) -> None:
    """A 0.5 s FLAC whose header claims 890 s of 8 channels at 96 kHz (2.5 GB decoded)
    is refused under a 1.5 GB address-space limit: the loader never allocates what the
    header claims, only what the file holds."""
    import resource

    bomb = made["audio"]["header-bomb"]
    assert sf.info(str(bomb)).frames == 96_000 * 890

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "voice_sim", "delivery", str(bomb),
                           "--no-transcript"], capture_output=True, text=True, timeout=120,
                          preexec_fn=limit, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "MemoryError" not in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and bomb.name in proc.stderr


# --- valid but odd audio through a speech engine ----------------------------------------

SPOKEN = "Thank you for calling. I can help you with that today."


@pytest.fixture(scope="module")
def odd_speech(tmp_path_factory: pytest.TempPathFactory,
               espeak_wav: Callable[..., Path]) -> dict[str, Path]:
    src = espeak_wav(SPOKEN)
    speech, sr = sf.read(src, dtype="float64")
    return {**make_odd_audio(tmp_path_factory.mktemp("odd"), speech, sr), "reference": src}


@pytest.fixture(scope="module")
def whisper() -> None:
    pytest.importorskip("faster_whisper", reason="the whisper extra is not installed")


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.parametrize("case", ODD_CASES)
def test_odd_audio_works_in_transcribe_and_delivery(
        case: str, odd_speech: dict[str, Path], whisper: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    from voice_sim.cli import main

    path = odd_speech[case]
    assert main(["transcribe", str(path), "--engine", "whisper", "--json"]) == 0
    text = json.loads(capsys.readouterr().out)["text"].lower()
    if case == "noise":
        assert "thank you for calling" not in text  # nothing was said
    else:
        assert "thank you for calling" in text, (case, text)
    assert main(["delivery", str(path), "--no-transcript", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert abs(d["duration_s"] - sf.info(str(path)).duration) < 0.05
    if case == "noise":
        return
    assert d["loudness"]["clipped_fraction"] > 0.01 if case == "clipping" else \
        d["loudness"]["clipped_fraction"] == 0
    # The same voice whatever the format: the pitch of the original 16-bit render.
    ref = odd_speech["reference"]
    assert main(["delivery", str(ref), "--no-transcript", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert abs(d["pitch"]["median_hz"] / r["pitch"]["median_hz"] - 1) < 0.1, (d, r)
    assert d["speech_s"] > 0.8 * r["speech_s"]


@pytest.mark.slow
@pytest.mark.model
def test_odd_answer_files_make_a_whole_call(tmp_path: Path, whisper: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``run`` on a folder whose answers are each in a different odd format."""
    from voice_sim.cli import main
    from voice_sim.persona import load_persona
    from voice_sim.speak import Voice, render

    persona = load_persona("double-billing")
    voice = Voice(id="en-us", rate=160, pitch=45)
    formats = [("PCM_U8", 22_050, 1), ("PCM_24", 44_100, 1), ("FLOAT", 48_000, 6),
               ("PCM_16", 8_000, 1)]
    answers = tmp_path / "answers"
    answers.mkdir()
    # The good path through the call: opening, order details, when the money comes, …
    replies = [persona.lines[lid].sample_reply
               for lid in ("opening", "order_details", "when_money", "grudging")]
    import soxr

    for i, (reply, (subtype, rate, channels)) in enumerate(zip(replies, formats, strict=False), 1):
        mono = soxr.resample(render(reply, voice), SAMPLE_RATE, rate)
        data = np.stack([mono] * channels, axis=1) if channels > 1 else mono
        sf.write(answers / f"{i:02d}.wav", data, rate, subtype=subtype)
    code = main(["run", "double-billing", "--answers", str(answers), "--engine", "whisper",
                 "--out", str(tmp_path / "out"), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    rec = json.loads(out)
    assert rec["outcome"] == "resolved", [t["transcript"] for t in rec["turns"]]
    assert [t["answer_source"] for t in rec["turns"]] == \
        [f"{i:02d}.wav" for i in range(1, len(rec["turns"]) + 1)]
