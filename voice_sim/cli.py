"""The ``voice-sim`` command line: argument parsing and one error boundary.

Each command names the function that runs it as ``"module:function"``; the module
is imported only when that command runs, so ``voice-sim --help`` stays instant.
A command function takes the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from voice_sim import __version__
from voice_sim.engines import ENGINE_NAMES
from voice_sim.errors import VoiceSimError, one_line

ENGINE_CHOICES = ENGINE_NAMES


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="speech engine (default: auto = Vosk if an English model is found, "
                        "else Whisper)")
    p.add_argument("--model", metavar="PATH", help="speech model folder for the engine")


def _device_args(p: argparse.ArgumentParser, *, inp: bool = True, out: bool = True) -> None:
    if inp:
        p.add_argument("--input-device", metavar="DEV",
                       help="microphone: index or part of the name (see `voice-sim devices`)")
    if out:
        p.add_argument("--output-device", metavar="DEV",
                       help="speaker: index or part of the name (see `voice-sim devices`)")


def _seed_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, metavar="N",
                   help="pick the customer's phrasings from this seed (printed after every "
                        "call; the same seed replays it)")


def _choice_args(p: argparse.ArgumentParser) -> None:
    _seed_arg(p)
    p.add_argument("--random", action="store_true", help="a persona picked at random")
    p.add_argument("--difficulty", choices=("easy", "medium", "hard"),
                   help="with --random: only personas of this difficulty")


def _voice_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voice", metavar="ID", help="voice id (see `voice-sim voices`)")
    p.add_argument("--rate", type=int, metavar="WPM", help="speaking rate, words per minute")
    p.add_argument("--pitch", type=int, metavar="0-99",
                   help="voice pitch (espeak scale, 50 = normal)")
    p.add_argument("--volume", type=float, metavar="0-1", help="volume, 0.0 to 1.0")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong and where to look), like
    every other error, instead of the whole usage block; and it remembers its own
    arguments and subcommands, which argparse keeps private (see :func:`commands`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arguments: list[argparse.Action] = []  # before: argparse adds -h itself
        self.subcommands: dict[str, _Parser] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.arguments.append(action)
        return action

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"voice-sim: error: {message} — see `{self.prog} --help`\n")


@dataclass(frozen=True)
class Command:
    """One command of the tree, e.g. ``persona check``."""

    words: tuple[str, ...]
    """What is typed after ``voice-sim``: ``("persona", "check")``."""
    target: str
    """``"module:function"`` that runs it, or :data:`GROUP_HELP` for a group."""
    parser: argparse.ArgumentParser
    arguments: tuple[argparse.Action, ...]
    """Its own options and positionals (``-h`` included), not its subcommands'."""


def commands(parser: argparse.ArgumentParser | None = None) -> list[Command]:
    """Every command and group under ``parser`` (default: :func:`build_parser`'s), in
    the order ``--help`` lists them, each group before its actions."""
    root = parser if parser is not None else build_parser()
    out: list[Command] = []

    def walk(p: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        for name, sub in getattr(p, "subcommands", {}).items():
            here = (*words, name)
            out.append(Command(here, sub.get_default("_target"), sub, tuple(sub.arguments)))
            walk(sub, here)

    walk(root, ())
    return out


GROUP_HELP = "help"
"""The target of a command group that does nothing alone (``voice-sim persona``): the
CLI prints the group's help, listing its actions."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = _Parser(
        prog="voice-sim",
        description="Rehearse difficult customer calls aloud, offline: a scripted caller "
                    "speaks, you answer, and your words and delivery are scored.",
    )
    parser.add_argument("--version", action="version", version=f"voice-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    groups = {id(sub): parser}  # each subcommand table -> the parser it belongs to

    def cmd(name: str, target: str, help: str, parent: Any = None) -> _Parser:
        """Add command ``name`` to ``parent`` (a group's ``add_subparsers()``; default
        the top level)."""
        table = parent or sub
        p = table.add_parser(name, help=help, description=help)
        p.set_defaults(_target=target, _parser=p)
        groups[id(table)].subcommands[name] = p
        return p

    def actions(group: _Parser) -> Any:
        """The subcommand table of a command group (``voice-sim persona ACTION``)."""
        table = group.add_subparsers(dest=f"{group.prog.split()[-1]}_command",
                                     metavar="ACTION")
        groups[id(table)] = group
        return table

    # --- foundation ---------------------------------------------------------------
    p = cmd("doctor", "voice_sim.doctor:cmd_doctor",
            "check what works on this machine and how to fix what does not")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = cmd("devices", "voice_sim.devices:cmd_devices", "list audio input and output devices")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = cmd("voices", "voice_sim.speak:cmd_voices", "list the installed text-to-speech voices")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--lang", metavar="CODE", help="only voices for this language, e.g. en")
    p = cmd("say", "voice_sim.speak:cmd_say", "speak text in a voice, or write it to a WAV file")
    p.add_argument("text", help="what to say")
    _voice_args(p)
    p.add_argument("--out", metavar="FILE.wav", help="write a WAV file instead of playing")
    _device_args(p, inp=False)
    p = cmd("transcribe", "voice_sim.engines.cli:cmd_transcribe", "transcribe an audio file")
    p.add_argument("audio", help="audio file (WAV, FLAC, OGG, MP3)")
    _engine_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = cmd("models", "voice_sim.models:cmd_models",
            "list speech models found and the places searched")
    p.add_argument("--json", action="store_true", help="print JSON")
    msub = actions(p)
    p = cmd("fetch", "voice_sim.models:cmd_fetch",
            "download, verify and install a Vosk model into audio_models/", parent=msub)
    p.add_argument("name", nargs="?", default="vosk-model-small-en-us-0.15", help="model name")
    p.add_argument("--url", help="download from this address instead of the official one")
    p.add_argument("--sha256", help="expected checksum (required with --url for unknown models)")
    p.add_argument("--dest", metavar="DIR",
                   help="install under this folder (default audio_models/)")

    # --- delivery -----------------------------------------------------------------
    p = cmd("delivery", "voice_sim.delivery:cmd_delivery",
            "measure pitch, pace, loudness and pauses of a spoken answer: calm or not?")
    p.add_argument("audio", help="the spoken answer")
    p.add_argument("--baseline", metavar="AUDIO", help="a calm reading by the same speaker")
    _engine_args(p)
    p.add_argument("--no-transcript", action="store_true",
                   help="acoustic measures only (no words per minute, no fillers)")
    p.add_argument("--json", action="store_true", help="print JSON")

    # --- content ------------------------------------------------------------------
    p = cmd("check-reply", "voice_sim.rubric_cli:cmd_check_reply",
            "find the de-escalation steps and pitfalls in a reply")
    p.add_argument("text", nargs="?", help="the reply (omit with --jsonl)")
    p.add_argument("--customer", metavar="TEXT", help="the customer line it answers")
    p.add_argument("--jsonl", metavar="FILE",
                   help='score one {"reply", "customer"} object per line (- for stdin)')
    p.add_argument("--workers", metavar="N", type=int, default=0,
                   help="processes scoring --jsonl (default: one per idle core, at most 2)")
    p.add_argument("--rubric", metavar="FILE", help="extra rubric file overriding the built-in one")
    p.add_argument("--expect", metavar="IDS", help="comma-separated steps this reply should hold")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = cmd("rubric", GROUP_HELP, "check a trainer's rubric file")
    rsub = actions(p)
    p = cmd("check", "voice_sim.rubric_cli:cmd_rubric_check",
            "validate a rubric file (every problem as file:line:col)", parent=rsub)
    p.add_argument("file", metavar="FILE", help="the rubric file (e.g. personas/rubric.yaml)")
    p.add_argument("--json", action="store_true", help="print JSON")

    # --- personas -----------------------------------------------------------------
    p = cmd("personas", "voice_sim.persona_cli:cmd_personas", "list the available personas")
    p.add_argument("--dir", metavar="DIR", action="append", help="also look in this folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = cmd("persona", GROUP_HELP,
            "write, check, hear and record persona scripts")
    psub = actions(p)
    p = cmd("check", "voice_sim.persona_cli:cmd_check", "validate persona files", parent=psub)
    p.add_argument("paths", nargs="+", metavar="PATH", help="persona files or folders")
    p.add_argument("--json", action="store_true", help="print the problems as JSON")
    p = cmd("new", "voice_sim.persona_cli:cmd_new", "write a commented persona template",
            parent=psub)
    p.add_argument("id", help="persona id (lowercase, digits, dashes)")
    p.add_argument("--dir", metavar="DIR", default="personas", help="where to write it")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    cmd("schema", "voice_sim.persona_cli:cmd_schema", "print the persona JSON Schema",
        parent=psub)
    p = cmd("speak", "voice_sim.persona_cli:cmd_speak",
            "hear a persona's lines, or render them to WAV files", parent=psub)
    p.add_argument("persona", help="persona id or file")
    p.add_argument("--line", metavar="ID", help="only this line")
    p.add_argument("--out", metavar="DIR", help="write WAVs here instead of playing")
    _device_args(p, inp=False)
    p = cmd("record", "voice_sim.persona_cli:cmd_record",
            "record your own voice for a persona line", parent=psub)
    p.add_argument("persona", help="persona id or file")
    p.add_argument("--line", metavar="ID", required=True, help="the line to record")
    p.add_argument("--seconds", type=float, default=15.0, help="longest take (default 15)")
    p.add_argument("--tries", type=int, default=3,
                   help="takes to try when one is silent, too quiet or clipped (default 3)")
    _device_args(p, out=False)
    p = cmd("graph", "voice_sim.persona_cli:cmd_graph", "print the call's branching as Mermaid",
            parent=psub)
    p.add_argument("persona", help="persona id or file")

    # --- the call -----------------------------------------------------------------
    p = cmd("practice", "voice_sim.practice:cmd_practice",
            "a live practice call: the customer speaks, you answer aloud")
    p.add_argument("persona", nargs="?",
                   help="persona id or file (see `voice-sim personas`); or --random")
    _choice_args(p)
    _device_args(p)
    _engine_args(p)
    p.add_argument("--baseline", metavar="FILE", help="a calm reading of yours to compare with")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the calm reading at the start (population defaults)")
    p.add_argument("--coach", choices=("live", "after", "off"), default="after",
                   help="hints after each turn (live), at the end (after, default), or none")
    p.add_argument("--silence-end", type=float, default=None, metavar="S",
                   help="most seconds of silence before your answer counts as finished "
                        "(default: --turn-end's longest wait)")
    p.add_argument("--turn-end", choices=("fast", "normal", "patient"), default="normal",
                   help="how soon a pause ends your answer: fast answers within about "
                        "half a second but may take the turn between two of your "
                        "sentences; patient waits out long pauses (default normal)")
    p.add_argument("--max-answer", type=float, default=60.0, metavar="S",
                   help="longest answer in seconds (default 60)")
    p.add_argument("--rubric", metavar="FILE", help="extra rubric file")
    p.add_argument("--out", metavar="DIR", help="where session folders go")
    p.add_argument("--json", action="store_true", help="print the session as JSON at the end")
    p = cmd("run", "voice_sim.practice:cmd_run",
            "a headless call on prerecorded answers (01.wav, 02.wav, … in a folder)")
    p.add_argument("persona", help="persona id or file")
    p.add_argument("--answers", metavar="DIR", required=True,
                   help="folder of answer audio files, taken in name order")
    _seed_arg(p)
    _engine_args(p)
    p.add_argument("--baseline", metavar="FILE", help="a calm reading by the same speaker")
    p.add_argument("--min-score", type=float, metavar="N",
                   help="exit 1 when the session score is below N (0-100)")
    p.add_argument("--rubric", metavar="FILE", help="extra rubric file")
    p.add_argument("--out", metavar="DIR", help="where session folders go")
    p.add_argument("--json", action="store_true", help="print the session as JSON")
    p = cmd("demo", "voice_sim.practice:cmd_demo",
            "a whole call with a synthetic trainee: no microphone, no download")
    p.add_argument("--persona", metavar="ID", help="persona id or file (default: double-billing)")
    _choice_args(p)
    _engine_args(p)
    p.add_argument("--play", action="store_true", help="play the call on the speaker too")
    _device_args(p, inp=False)
    p.add_argument("--out", metavar="DIR", help="where session folders go")
    p.add_argument("--json", action="store_true", help="print the session as JSON")
    p = cmd("serve", "voice_sim.serve:cmd_serve",
            "practise in the browser: a local web app for agents and trainers")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any "
                        "other needs the token printed at start)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--token", metavar="TOKEN",
                   help="access token to require (default: made up when --host is not local)")
    p.add_argument("--open", action="store_true", help="open the home page in a browser")
    _engine_args(p)
    p.add_argument("--rubric", metavar="FILE", help="extra rubric file")
    p.add_argument("--out", metavar="DIR", help="where session folders go")
    p.add_argument("--turn-end", choices=("fast", "normal", "patient"), default="normal",
                   help="how soon a pause ends an answer in the browser call: fast, normal "
                        "(default) or patient, as practice --turn-end")
    p.add_argument("--silence-end", type=float, default=None, metavar="S",
                   help="most seconds of silence before an answer counts as finished "
                        "(default: --turn-end's longest wait), as practice --silence-end")
    p = cmd("fixtures", GROUP_HELP,
            "answer audio for automated tests of personas")
    fsub = actions(p)
    p = cmd("make", "voice_sim.fixtures:cmd_fixtures_make",
            "render answer audio from text (NAME.fixtures.yaml) and a call spec to fill in",
            parent=fsub)
    p.add_argument("spec", metavar="SPEC", help="fixtures spec: persona, voice, replies")
    p.add_argument("--force", action="store_true",
                   help="rewrite the call spec even if it exists")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")

    # --- reports and progress -----------------------------------------------------
    p = cmd("report", "voice_sim.report:cmd_report",
            "write the HTML report of a session folder (charts, transcripts, audio)")
    p.add_argument("session_dir", metavar="SESSION_DIR", help="a session folder")
    p.add_argument("--out", metavar="FILE",
                   help="where to write it (default SESSION_DIR/report.html)")
    p.add_argument("--open", action="store_true", help="open it in the web browser")
    p.add_argument("--audio", choices=("auto", "embed", "link"), default="auto",
                   help="embed the audio in the file, or link the session's WAVs "
                        "(default auto: embed unless the audio is over 24 MB)")
    p.add_argument("--text", action="store_true", help="print the terminal scorecard instead")
    p = cmd("history", "voice_sim.history:cmd_history",
            "your progress over time: scores, calm delivery and each step")
    p.add_argument("--persona", metavar="ID", help="only sessions with this persona")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--html", metavar="FILE", help="write the history page with charts")
    p.add_argument("--db", metavar="PATH", help="history database file (default: in the data "
                   "folder; env VOICE_SIM_HISTORY)")
    hsub = actions(p)
    p = cmd("import", "voice_sim.history:cmd_history_import",
            "add existing session folders (or folders of them) to the history", parent=hsub)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="session folders")
    # SUPPRESS: an unset sub-option must not overwrite `history --db X import ...`.
    p.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                   help="history database file")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    target = getattr(args, "_target", None)
    if target is None:
        parser.print_help()
        return 0
    if target == GROUP_HELP:
        args._parser.print_help()
        return 0
    module_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(args) or 0)
    except VoiceSimError as e:
        print(f"voice-sim: error: {e.line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("voice-sim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        # A file-system failure no command foresaw (a name too long, permission denied,
        # a full disk) is still bad input: one line naming the file, no traceback.
        where = f"{e.filename}: " if e.filename else ""
        print("voice-sim: error: " + one_line(f"{where}{e.strerror or e} — check the path, "
                                               "its permissions and the free space"),
              file=sys.stderr)
        return 2
