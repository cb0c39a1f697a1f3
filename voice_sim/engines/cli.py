"""``voice-sim transcribe``: one audio file to text (or JSON with per-word times)."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Print the transcript of ``args.audio``; with ``--json`` the whole
    :class:`~voice_sim.engines.Transcript`. ``conf`` is Vosk's word confidence, Whisper's
    word probability, null where an engine has neither."""
    from voice_sim.audio import load_audio
    from voice_sim.engines import get_engine, select_engine

    # Cheap checks first: a missing model or a bad file is reported before a model loads.
    select_engine(args.engine, args.model)
    samples = load_audio(args.audio)
    transcript = get_engine(args.engine, args.model).transcribe(samples)
    if args.json:
        print(json.dumps(transcript.to_json(), ensure_ascii=False, indent=2))
    elif transcript.text:
        print(transcript.text)
    else:
        print(f"{args.audio}: no speech recognised", file=sys.stderr)
    return 0
