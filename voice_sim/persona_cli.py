"""Trainer commands: list, check, create, hear, record and draw persona scripts."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from voice_sim.errors import AudioError, InputError, PersonaError
from voice_sim.paths import write_atomic
from voice_sim.persona import (
    SCHEMA_PATH,
    SUFFIXES,
    check_paths,
    check_persona,
    iter_lines,
    load_persona,
    resolve_persona_path,
    scan_personas,
    schema,
)
from voice_sim.persona_edit import set_line_audio
from voice_sim.persona_graph import mermaid

if TYPE_CHECKING:
    import numpy as np

ID_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

SILENT_DBFS = -50.0
"""dBFS. A take whose peak stays below this heard nothing at all."""

QUIET_DBFS = -30.0
"""dBFS. Speech peaking below this is too quiet to use (a normal take peaks near -12 to
-3 dBFS)."""

CLIP_LEVEL = 0.99
"""Full scale, near enough: a sample at or above it was probably cut off."""

CLIP_FRACTION = 0.001
"""Share of samples at :data:`CLIP_LEVEL` that makes a take clipped (0.1 %)."""

TRIM_PAD_S = 0.25
"""Seconds of room kept before and after the speech when a take is trimmed."""


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --- personas -----------------------------------------------------------------------

def cmd_personas(args: argparse.Namespace) -> int:
    """``voice-sim personas``: list the personas found, and say which files are invalid."""
    from voice_sim.paths import personas_dirs

    extra = [Path(d) for d in (getattr(args, "dir", None) or [])]
    for d in extra:
        if not d.is_dir():
            raise InputError(f"--dir {d}: no such folder", hint="name a folder of persona files")
    folders = [*extra, *[d for d in personas_dirs() if d.resolve() not in
                         {e.resolve() for e in extra}]]
    found = scan_personas(folders)
    valid = [pf.persona for pf in found if pf.persona is not None]
    for pf in found:
        if pf.persona is None:
            print(f"voice-sim: skipped {_shown(pf.path)}: invalid ({len(pf.errors)} "
                  f"problem{'s' if len(pf.errors) != 1 else ''}; first: "
                  f"{pf.errors[0].line_text() if pf.errors else '?'}) — run `voice-sim persona "
                  f"check {_shown(pf.path)}`", file=sys.stderr)
    if args.json:
        print(json.dumps([p.to_json() for p in valid], indent=2))
        return 0
    if not valid:
        where = ", ".join(_shown(d) for d in folders) or "no personas folder exists"
        print(f"no personas found (looked in: {where}); create one with "
              "`voice-sim persona new ID`")
        return 0
    rows = [(p.id, p.title, p.difficulty, str(len(p.lines)), _shown(p.path)) for p in valid]
    heads = ("ID", "TITLE", "DIFFICULTY", "LINES", "PATH")
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(4)]
    for r in [heads, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    return 0


# --- check --------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    """``voice-sim persona check PATH…``: every problem as ``file:line:col``; exit 0 when valid.

    Exit 1 when a file is invalid, 2 when a path does not exist or a folder holds no
    persona files.
    """
    paths = [Path(p) for p in args.paths]
    bad_input = [p for p in paths if not p.exists()
                 or (p.is_dir() and not any(f.suffix in SUFFIXES for f in p.iterdir()))]
    files = sum(len([f for f in p.iterdir() if f.suffix in SUFFIXES]) if p.is_dir() else 1
                for p in paths if p not in bad_input)
    problems = check_paths(paths)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    invalid = len({p.path for p in errors if Path(p.path) not in bad_input})
    if args.json:
        print(json.dumps({"valid": not errors and not bad_input, "files": files,
                          "problems": [p.to_json() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p.line_text())
        verdict = "all valid" if not errors else f"{invalid} invalid"
        if bad_input:
            verdict += f"; {len(bad_input)} path{'s' if len(bad_input) != 1 else ''} unusable"
        print(f"checked {files} file{'s' if files != 1 else ''}: {verdict} "
              f"({len(errors)} error{'s' if len(errors) != 1 else ''}, {len(warnings)} "
              f"warning{'s' if len(warnings) != 1 else ''})")
    if bad_input:
        return 2
    return 1 if errors else 0


# --- new ----------------------------------------------------------------------------

TEMPLATE = '''\
# yaml-language-server: $schema={schema}
#
# A persona: one scripted customer for a practice call.
# Edit the text and the branching, then check it:
#     voice-sim persona check {file}
# Hear it:      voice-sim persona speak {id}
# See the map:  voice-sim persona graph {id}
# The format, field by field: docs/personas.md (or `voice-sim persona schema`).

id: {id}                    # must match the file name
title: A parcel that never arrived
difficulty: easy            # easy, medium or hard

# What the trainee reads before the call: the situation and the facts they need.
briefing:
  situation: >-
    Sam Porter ordered a birthday present for his daughter. Tracking says it was
    delivered yesterday, but it is not there.
  facts:
    - "Order 10442: a wooden train set, $64.00, shipped 12 June"
    - "Tracking says delivered 14 June, 2:40 pm, left at the front door"
    - "You can send a replacement by express post: it arrives in 2 business days"
  goal: >-
    Acknowledge the worry, check the details, send a replacement and say when it
    will arrive.

# Who calls, and the voice used for lines without a recording
# (list voices with `voice-sim voices --lang en`).
customer:
  name: Sam Porter
  voice:
    id: en-us+m1
    rate: 180               # words per minute
    pitch: 50               # 0-99, 50 is normal
    volume: 0.9             # 0.0-1.0
    per_mood:               # optional: the voice follows the anger, per mood point
      rate: 5               # above the opening mood (taken away below it)
      pitch: 1

# Anger from 0 (calm) to 10 (furious). Each step heard in a reply lowers it and
# each pitfall raises it, by the rubric's default weights unless overridden here.
mood:
  start: 5
  weights:
    empathize: -1.5         # this customer mostly wants to be heard
  # hurts_factor: 2         # pitfalls listed in a line's `hurts` count this many times
  # per_turn: 0.2           # impatience added every turn
  # agitated_voice: 1       # added when the trainee's voice was not calm

max_turns: 6                # replies the trainee gets...
on_max_turns: wants_manager # ...then the call goes here (a line with `end:`)

# Rules checked after every reply, before the line's own ones.
always:
  - mood_at_least: 10
    turn_at_least: 2        # the first outburst gets the `upset` line, not a hang-up
    goto: hangs_up
    why: he has run out of patience

# The lines. The first one opens the call (or set `start:`). After the trainee
# answers a line, its `next` rules are tried in order and the first that matches
# picks the next line; the last rule has no condition. A line with `end:` closes
# the call after it is spoken: resolved, escalated or hung_up.
# Conditions: heard (all of), heard_any, not_heard, heard_ever (earlier replies
# too), mood_at_least, mood_below, turn_at_least.
lines:
  - id: opening
    text: >-
      Hi. Your tracking says my daughter's present was delivered yesterday. It
      wasn't. There's nothing at my door, and her birthday is on Saturday.
    # Other ways of saying the same thing: each call picks one (from its seed), so
    # the words cannot be learnt by heart. Same expects, hurts and next for all.
    variants:
      - >-
        Hello. The tracking says my daughter's birthday present came yesterday, but
        there's nothing here, and her birthday is on Saturday.
    # audio: {id}/opening.wav   # a recording, made with `voice-sim persona record`
    expects: [empathize, ask_clarify]   # steps a good reply contains
    hurts: [dismissive, blame_customer] # pitfalls that hurt most here
    # A model answer: shown after the call, and said by the trainee in `voice-sim demo`.
    sample_reply: >-
      Oh no, with her birthday on Saturday that's really worrying. Could you give me
      the order number so I can look into it?
    next:
      - heard_any: [dismissive, blame_customer, argue, excuse]
        goto: upset
        why: he feels brushed off
      - heard_any: [empathize, apologize, ask_clarify]
        goto: details
        why: he feels heard
      - goto: upset

  - id: details
    text: >-
      It's order one zero four four two, the wooden train set. I checked with the
      neighbours too. What can you do before Saturday?
    expects: [offer_solution, set_expectations]
    hurts: [excuse]
    sample_reply: >-
      I'll send a replacement train set today by express post, so it will be with
      you on Thursday, in time for Saturday.
    next:
      - heard: [offer_solution]
        goto: thanks
      - goto: upset

  - id: upset
    text: "Look, I don't need a lecture, I need the present. Can you help me or not?"
    voice: {{rate: 205, volume: 1.0}}   # optional: this line faster and louder
    expects: [apologize, offer_solution]
    hurts: [dismissive, argue]
    sample_reply: >-
      I'm sorry, you're right. I'll send a replacement by express post today, so it
      arrives on Thursday.
    next:
      - heard_any: [dismissive, blame_customer, argue, excuse]
        goto: hangs_up
      - heard: [offer_solution]
        goto: thanks
      - goto: wants_manager

  - id: thanks
    text: "Express, arriving Thursday? That works. Thank you, that's a relief."
    end: resolved

  - id: wants_manager
    text: "I'd like to speak to a manager, please."
    end: escalated

  - id: hangs_up
    text: "Forget it. I'll ask my bank for the money back."
    end: hung_up
'''


def cmd_new(args: argparse.Namespace) -> int:
    """``voice-sim persona new ID``: write a commented template that passes ``check``."""
    pid = args.id
    if not ID_PATTERN.match(pid):
        raise InputError(f"persona id {pid!r} is not valid",
                         hint="use lowercase letters, digits and dashes, e.g. late-delivery")
    folder = Path(args.dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--dir {folder}: is a file, not a folder", hint="name a folder")
    path = folder / f"{pid}.yaml"
    if path.exists() and not args.force:
        raise InputError(f"{path}: already exists", hint="pick another id, or add --force")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--dir {folder}: cannot create it ({e.strerror})",
                         hint="choose a writable folder") from e
    text = TEMPLATE.format(id=pid, file=_shown(path), schema=_schema_ref(folder))
    try:
        write_atomic(path, text)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror})",
                         hint="choose a writable folder") from e
    print(f"wrote {_shown(path)}")
    print(f"next: edit it, then `voice-sim persona check {_shown(path)}`")
    return 0


def _schema_ref(folder: Path) -> str:
    """How a persona in ``folder`` points yaml-language-server at the schema: relative
    inside the same project, else a file URI."""
    here = folder.resolve()
    try:
        common = os.path.commonpath([here, SCHEMA_PATH])
    except ValueError:  # another drive (Windows)
        common = ""
    if common in ("", here.anchor):
        return SCHEMA_PATH.as_uri()
    return Path(os.path.relpath(SCHEMA_PATH, here)).as_posix()


def cmd_schema(args: argparse.Namespace) -> int:
    """``voice-sim persona schema``: print the JSON Schema."""
    print(json.dumps(schema(), indent=2))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    """``voice-sim persona graph PERSONA``: the branching as Mermaid text."""
    sys.stdout.write(mermaid(load_persona(args.persona, check_voice=False)))
    return 0


# --- speak --------------------------------------------------------------------------

def cmd_speak(args: argparse.Namespace) -> int:
    """``voice-sim persona speak``: play lines in the persona's voice, or write WAVs.

    Every phrasing of a line is spoken, in the voice it has at the opening mood (the
    line's own voice settings included); ``--out`` names them LINE.wav, LINE.2.wav, ..."""
    from dataclasses import replace

    from voice_sim.audio import SAMPLE_RATE, load_audio, write_wav
    from voice_sim.call import Call
    from voice_sim.speak import cached_render, render_wav

    persona = load_persona(args.persona)
    at_start = Call(persona, seed=0)
    said = [replace(line, text=text, variant=k) for line in iter_lines(persona, args.line)
            for k, text in enumerate(line.texts)]
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out}: is a file", hint="name a folder for the WAVs")
        out.mkdir(parents=True, exist_ok=True)
        for line in said:
            dest = out / (f"{line.id}.wav" if not line.variant else
                          f"{line.id}.{line.variant + 1}.wav")
            if line.audio is not None and not line.variant:  # the trainer's recording wins
                write_wav(dest, load_audio(line.audio), SAMPLE_RATE)
            else:
                render_wav(line.text, at_start.voice_for(line), dest)
            print(_shown(dest))
        return 0
    from voice_sim import devices

    device = devices.resolve_device(getattr(args, "output_device", None), "output")
    for line in said:
        print(f"{line.id}: {line.text}", flush=True)
        source = line.audio if line.audio is not None and not line.variant else \
            cached_render(line.text, at_start.voice_for(line))
        devices.play(load_audio(source), SAMPLE_RATE, device)
    return 0


# --- record -------------------------------------------------------------------------

@dataclass(frozen=True)
class TakeLevel:
    """The level check of one recorded take."""

    peak_dbfs: float
    clipped: float
    """Share of samples at full scale, 0-1."""
    problem: str | None
    """None for a usable take; else what is wrong, in words."""
    advice: str = ""


def check_take(samples: np.ndarray) -> TakeLevel:
    """Silence, too quiet, or clipping? A usable take returns ``problem=None``."""
    import numpy as np

    from voice_sim.audio import peak_dbfs

    peak = peak_dbfs(samples) if samples.size else float("-inf")
    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL)) if samples.size else 0.0
    if peak < SILENT_DBFS:
        return TakeLevel(peak, clipped, f"silence: nothing was heard (peak {peak:.0f} dBFS)",
                         "check the microphone is plugged in and chosen (--input-device), "
                         "and not muted")
    if clipped >= CLIP_FRACTION:
        return TakeLevel(peak, clipped, f"clipping: {clipped:.1%} of the take hit full scale",
                         "move back from the microphone or lower its input gain")
    if peak < QUIET_DBFS:
        return TakeLevel(peak, clipped, f"too quiet (peak {peak:.0f} dBFS, want above "
                         f"{QUIET_DBFS:.0f})", "speak up, move closer, or raise the input gain")
    return TakeLevel(peak, clipped, None)


def trim(samples: np.ndarray, sr: int) -> np.ndarray:
    """Cut the silence before and after the speech, keeping :data:`TRIM_PAD_S` of room."""
    import numpy as np

    from voice_sim.audio import FRAME_S

    frame = max(1, int(sr * FRAME_S))
    n = len(samples) // frame
    if n == 0:
        return samples
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    # Speech frames: within 35 dB of the loudest frame (room noise sits far lower).
    loud = np.flatnonzero(db > max(db.max() - 35.0, SILENT_DBFS))
    if loud.size == 0:
        return samples
    pad = int(TRIM_PAD_S * sr)
    start = max(0, loud[0] * frame - pad)
    end = min(len(samples), (loud[-1] + 1) * frame + pad)
    return samples[start:end]


def cmd_record(args: argparse.Namespace) -> int:
    """``voice-sim persona record PERSONA --line ID``: record the trainer's voice for a line.

    Each take is level-checked (silence, too quiet, clipping → try again), trimmed,
    saved as ``<persona folder>/<persona id>/<line id>.wav`` and referenced from the
    line's ``audio:`` field, with the file's comments and layout kept.
    """
    from voice_sim import devices
    from voice_sim.audio import SAMPLE_RATE, write_wav

    path = resolve_persona_path(args.persona)
    persona = load_persona(path, check_voice=False)
    line = next(iter_lines(persona, args.line))
    seconds = float(args.seconds)
    if not 1.0 <= seconds <= 120.0:
        raise InputError(f"--seconds {args.seconds}: out of range",
                         hint="give 1 to 120 seconds")
    tries = int(getattr(args, "tries", 3) or 3)
    if tries < 1:
        raise InputError(f"--tries {tries}: must be at least 1", hint="e.g. --tries 3")
    device = getattr(args, "input_device", None)  # devices.record resolves it
    rel = f"{persona.id}/{line.id}.wav"
    dest = persona.path.parent / persona.id / f"{line.id}.wav"
    # The recordings folder may be a symlink: never write a take through it to
    # somewhere else (the persona would be refused afterwards anyway).
    folder = persona.path.parent.resolve()
    if not dest.resolve().is_relative_to(folder):
        raise PersonaError(f"{dest.parent}: leads to {dest.parent.resolve()}, outside the "
                           "persona's folder", hint=f"make {dest.parent} a real folder "
                           f"inside {folder}")
    print(f"Line '{line.id}' of {persona.id}. Read it as {persona.customer} would:")
    print(f'    "{line.text}"')
    last: TakeLevel | None = None
    for take in range(1, tries + 1):
        if sys.stdin.isatty():
            input(f"Take {take}/{tries}: press Enter, then speak (up to {seconds:g} s)... ")
        else:
            print(f"Take {take}/{tries}: recording up to {seconds:g} s...")
        samples = devices.record(seconds, device, SAMPLE_RATE)
        last = check_take(samples)
        if last.problem is not None:
            print(f"  take {take}: {last.problem} — {last.advice}")
            continue
        clip = trim(samples, SAMPLE_RATE)
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_wav(dest, clip, SAMPLE_RATE)
        before = persona.path.read_text(encoding="utf-8")
        set_line_audio(persona.path, line.id, rel)
        _, problems = check_persona(persona.path, check_voice=False)
        errors = [p for p in problems if p.severity == "error"]
        if errors:  # never leave a trainer's file broken by our edit
            write_atomic(persona.path, before)
            raise PersonaError(f"{persona.path}: could not reference the recording: "
                               f"{errors[0].line_text(severity=False)}",
                               hint=f"add `audio: {rel}` by hand")
        print(f"saved {_shown(dest)} ({len(clip) / SAMPLE_RATE:.1f} s, peak "
              f"{last.peak_dbfs:.0f} dBFS); line '{line.id}' now has `audio: {rel}`")
        return 0
    assert last is not None
    raise AudioError(f"no usable take in {tries} tries; the last: {last.problem}",
                     hint=last.advice)
