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

from voice_sim import __version__
from voice_sim.errors import VoiceSimError

ENGINE_CHOICES = ("auto", "vosk", "whisper")


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


def _voice_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voice", metavar="ID", help="voice id (see `voice-sim voices`)")
    p.add_argument("--rate", type=int, metavar="WPM", help="speaking rate, words per minute")
    p.add_argument("--pitch", type=int, metavar="0-99", help="voice pitch (espeak scale, 50 = normal)")
    p.add_argument("--volume", type=float, metavar="0-1", help="volume, 0.0 to 1.0")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(
        prog="voice-sim",
        description="Rehearse difficult customer calls aloud, offline: a scripted caller "
                    "speaks, you answer, and your words and delivery are scored.",
    )
    parser.add_argument("--version", action="version", version=f"voice-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, target: str, help: str, parent: argparse._SubParsersAction | None = None,
            **kw: object) -> argparse.ArgumentParser:
        p = (parent or sub).add_parser(name, help=help, description=help, **kw)  # type: ignore[arg-type]
        p.set_defaults(_target=target)
        return p

    # --- foundation ---------------------------------------------------------------
    cmd("doctor", "voice_sim.doctor:cmd_doctor",
        "check what works on this machine and how to fix what does not")
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
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    p = cmd("fetch", "voice_sim.models:cmd_fetch",
            "download, verify and install a Vosk model into audio_models/", parent=msub)
    p.add_argument("name", nargs="?", default="vosk-model-small-en-us-0.15", help="model name")
    p.add_argument("--url", help="download from this address instead of the official one")
    p.add_argument("--sha256", help="expected checksum (required with --url for unknown models)")
    p.add_argument("--dest", metavar="DIR", help="install under this folder (default audio_models/)")

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
    p = cmd("check-reply", "voice_sim.rubric:cmd_check_reply",
            "find the de-escalation steps and pitfalls in a reply")
    p.add_argument("text", nargs="?", help="the reply (omit with --jsonl)")
    p.add_argument("--customer", metavar="TEXT", help="the customer line it answers")
    p.add_argument("--jsonl", metavar="FILE",
                   help='score one {"reply", "customer"} object per line (- for stdin)')
    p.add_argument("--rubric", metavar="FILE", help="extra rubric file overriding the built-in one")
    p.add_argument("--expect", metavar="IDS", help="comma-separated steps this reply should hold")
    p.add_argument("--json", action="store_true", help="print JSON")

    # --- personas -----------------------------------------------------------------
    p = cmd("personas", "voice_sim.persona_cli:cmd_personas", "list the available personas")
    p.add_argument("--dir", metavar="DIR", action="append", help="also look in this folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = cmd("persona", "voice_sim.persona_cli:cmd_persona_help",
            "write, check, hear and record persona scripts")
    psub = p.add_subparsers(dest="persona_command", metavar="ACTION")
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
    _device_args(p, out=False)
    p = cmd("graph", "voice_sim.persona_cli:cmd_graph", "print the call's branching as Mermaid",
            parent=psub)
    p.add_argument("persona", help="persona id or file")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    target = getattr(args, "_target", None)
    if target is None:
        parser.print_help()
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
