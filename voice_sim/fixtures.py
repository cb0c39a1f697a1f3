"""Fixture tools: answer audio rendered from text, for tests of personas and programmes.

``voice-sim fixtures make NAME.fixtures.yaml`` reads a list of replies and writes them
as ``01.wav``, ``02.wav``, … into an answers folder beside the file, plus a call spec
skeleton (``NAME.call.yaml``, see :mod:`voice_sim.callspec`) to fill in::

    persona: double-billing
    answers: good-call                 # default: NAME
    voice: {id: en-us, rate: 140, pitch: 45, volume: 0.6}
    baseline: calm-baseline.wav        # optional: a calm reading in the same voice
    outcome: resolved                  # optional: copied into the call spec
    replies:
      - text: "I'm so sorry. Being charged twice is really frustrating."
        steps: [empathize, apologize]  # optional expectations, copied too
        calm: true
      - text: "That's our policy, there's nothing I can do."
        agitated: true                 # faster, higher, louder
        telephone: true                # 8 kHz, as phone recordings are stored

Renders go through :func:`voice_sim.speak.render_wav` (pyttsx3 + espeak-ng) and are
stored as 16-bit mono WAV at 16 kHz (8 kHz for telephone replies), so a few seconds of
answer is tens of kilobytes and fits in a repository.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voice_sim.callspec import SPEC_SUFFIX
from voice_sim.engines import ENGINE_NAMES
from voice_sim.errors import VoiceSimError
from voice_sim.steps import OUTCOMES, PITFALL_IDS, WORD_STEP_IDS
from voice_sim.yamlfile import Checker, FileProblems, load_checked, suggest

FIXTURES_SUFFIX = ".fixtures.yaml"

TELEPHONE_RATE = 8_000
"""Hertz. Telephone replies are stored at the narrowband phone rate."""

AGITATED_RATE_FACTOR = 1.35
"""An agitated reply speaks this much faster than the base voice."""
AGITATED_PITCH_STEP = 25
"""…and this much higher on espeak's 0-99 pitch scale (about +4.5 semitones)…"""
AGITATED_VOLUME_FACTOR = 1.6
"""…and this much louder (capped at full volume; 0.6 -> 0.96 is about +4 dB)."""

_TOP = ("persona", "answers", "call_spec", "voice", "rate", "pitch", "volume", "telephone",
        "baseline", "engine", "outcome", "min_score", "max_score", "replies")
_REPLY = ("text", "voice", "rate", "pitch", "volume", "agitated", "telephone", "line",
          "steps", "pitfalls", "no_pitfalls", "calm")
_NUMBERED = re.compile(r"^\d+\.wav$")


def default_voice() -> Any:
    """The trainee voice fixtures use unless the spec says otherwise: a US English voice
    at a calm pace, with volume headroom so agitated replies can be louder."""
    from voice_sim.speak import Voice

    return Voice(id="en-us", rate=140, pitch=45, volume=0.6)


def agitated(voice: Any) -> Any:
    """``voice`` faster, higher and louder: an upset trainee."""
    from dataclasses import replace

    from voice_sim.speak import RATE_RANGE

    return replace(voice, rate=min(RATE_RANGE[1], round(voice.rate * AGITATED_RATE_FACTOR)),
                   pitch=min(99, voice.pitch + AGITATED_PITCH_STEP),
                   volume=round(min(1.0, voice.volume * AGITATED_VOLUME_FACTOR), 3))


@dataclass(frozen=True)
class Reply:
    """One answer to render, with what the call spec should expect of it."""

    text: str
    voice: Any
    """The :class:`voice_sim.speak.Voice` it is spoken in (agitation applied)."""
    agitated: bool = False
    telephone: bool = False
    line: str | None = None
    """The customer line this reply should answer (expectation)."""
    steps: tuple[str, ...] = ()
    pitfalls: tuple[str, ...] = ()
    no_pitfalls: bool = False
    calm: bool | None = None


@dataclass(frozen=True)
class FixtureSpec:
    """A validated ``*.fixtures.yaml``."""

    path: Path
    name: str
    persona: str
    answers: Path
    call_spec: Path
    voice: Any
    replies: tuple[Reply, ...]
    baseline: Path | None = None
    engine: str | None = None
    outcome: str | None = None
    min_score: float | None = None
    max_score: float | None = None


@dataclass(frozen=True)
class Rendered:
    """One answer file written."""

    path: Path
    text: str
    sample_rate: int
    """Hertz."""
    duration_s: float
    agitated: bool
    telephone: bool

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"path": str(self.path), "text": self.text, "sample_rate": self.sample_rate,
                "duration_s": round(self.duration_s, 2), "agitated": self.agitated,
                "telephone": self.telephone}


@dataclass(frozen=True)
class FixtureSet:
    """What ``fixtures make`` wrote."""

    answers: tuple[Rendered, ...]
    baseline: Rendered | None
    call_spec: Path
    call_spec_written: bool
    """False when an existing call spec was kept (no ``--force``)."""
    removed: tuple[Path, ...] = ()
    """Stale numbered answers from an earlier, longer reply list."""

    def to_json(self) -> dict[str, Any]:
        """The ``fixtures make --json`` object."""
        return {"answers": [r.to_json() for r in self.answers],
                "baseline": None if self.baseline is None else self.baseline.to_json(),
                "call_spec": str(self.call_spec), "call_spec_written": self.call_spec_written,
                "removed": [str(p) for p in self.removed]}


class FixtureSpecError(FileProblems):
    """A fixtures spec with problems; ``problems`` holds every one."""

    what = "fixtures spec"


# --- reading the spec --------------------------------------------------------------------


def load_fixture_spec(path: str | os.PathLike[str]) -> FixtureSpec:
    """Read and validate a fixtures spec; every problem names ``file:line:col``."""
    p = Path(path)
    data = load_checked(p, FixtureSpecError)
    checker = Checker(p)
    problems, add, text, flag = checker.problems, checker.add, checker.text, checker.flag

    if not isinstance(data, Mapping):
        add(data, None, "", ("the file is empty: " if data is None else "")
            + "a fixtures spec is a mapping of persona, voice, replies, …",
            "see the README's 'Testing your personas'")
        raise FixtureSpecError(problems)
    checker.unknown(data, "", _TOP)
    for required in ("persona", "replies"):
        if required not in data:
            add(data, None, required, "missing (required)", f"add `{required}:`")
    name = p.name.removesuffix(FIXTURES_SUFFIX) if p.name.endswith(FIXTURES_SUFFIX) \
        else p.stem
    base = p.parent

    def voice_of(node: Mapping[str, Any], fld: str, fallback: Any) -> Any:

        fields: dict[str, Any] = {}
        v = node.get("voice")
        if isinstance(v, Mapping):
            for key, val in v.items():
                if key not in ("id", "rate", "pitch", "volume"):
                    add(v, key, f"{fld}voice.{key}", f"unknown voice field {key!r}",
                        "use id, rate, pitch, volume", at_value=False)
                else:
                    fields[key] = val
        elif v is not None:
            if isinstance(v, str):
                fields["id"] = v
            else:
                add(node, "voice", f"{fld}voice", "must be a voice id or a mapping of id, "
                    "rate, pitch, volume")
        for key in ("rate", "pitch", "volume"):
            if key in node:
                fields[key] = node[key]
        if not fields:
            return fallback
        where = "voice" if "voice" in node else next(k for k in fields if k in node)
        try:
            from dataclasses import replace

            voice = replace(fallback, **fields)
        except VoiceSimError as e:
            add(node, where, f"{fld}voice", e.message, e.hint or "")
            return fallback
        from voice_sim.speak import voice_exists

        if fields.get("id") and not voice_exists(voice.id):
            add(node, where, f"{fld}voice", f"voice {voice.id!r} is not installed",
                "see `voice-sim voices --lang en`")
        return voice

    def ids(node: Mapping[str, Any], key: str, fld: str, valid: Sequence[str]) -> tuple[
            str, ...]:
        v = node.get(key)
        if v is None:
            return ()
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list):
            add(node, key, f"{fld}{key}", "must be a list of ids", f"e.g. [{valid[0]}]")
            return ()
        bad = [i for i in items if i not in valid]
        for item in bad:
            add(node, key, f"{fld}{key}", f"unknown id {item!r}", suggest(str(item), valid))
        return tuple(str(i) for i in items if i in valid)

    persona = text(data, "persona", "")
    if persona is not None:
        from voice_sim.persona import resolve_persona_path

        as_path = "/" in persona or persona.endswith((".yaml", ".yml"))
        try:
            resolve_persona_path(base / persona if as_path else persona)
        except VoiceSimError as e:
            add(data, "persona", "persona", e.message, e.hint or "")
    answers = base / (text(data, "answers", "answers") or name)
    call_spec = base / (text(data, "call_spec", "call_spec") or f"{name}{SPEC_SUFFIX}")
    if not call_spec.name.endswith(SPEC_SUFFIX):
        add(data, "call_spec", "call_spec", f"must end in {SPEC_SUFFIX} to be collected "
            "as a test", f"e.g. {name}{SPEC_SUFFIX}")
    baseline_name = text(data, "baseline", "")
    if baseline_name is not None and not baseline_name.endswith(".wav"):
        add(data, "baseline", "baseline", "must name a .wav file to write",
            "e.g. calm-baseline.wav")
    baseline = base / baseline_name if baseline_name else None
    if baseline is not None and baseline.resolve().parent == answers.resolve():
        add(data, "baseline", "baseline", "must not be inside the answers folder (it would "
            "be played as an answer)", "put it beside the spec, e.g. calm-baseline.wav")
    engine = text(data, "engine", "")
    if engine is not None and engine not in ENGINE_NAMES:
        add(data, "engine", "engine", f"unknown speech engine {engine!r}",
            suggest(engine, ENGINE_NAMES))
    outcome = text(data, "outcome", "")
    if outcome is not None and outcome not in OUTCOMES:
        add(data, "outcome", "outcome", f"unknown outcome {outcome!r}",
            suggest(outcome, OUTCOMES))
    voice = voice_of(data, "", default_voice())
    all_telephone = bool(flag(data, "telephone", ""))

    replies: list[Reply] = []
    raw = data.get("replies")
    if raw is not None and (not isinstance(raw, list) or not raw):
        add(data, "replies", "replies", "must be a list of replies (each with `text:`)",
            'e.g. - text: "I\'m sorry, that should not have happened."')
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            fld = f"replies[{i}]."
            if isinstance(item, str):
                item = {"text": item}
            if not isinstance(item, Mapping):
                add(raw, i, f"replies[{i}]", "must be a mapping with `text:` (or the text)")
                continue
            checker.unknown(item, fld, _REPLY)
            said = text(item, "text", fld)
            if said is None:
                add(raw, i, f"{fld}text", "missing: the words of this answer",
                    'add `text: "…"`')
                continue
            upset = bool(flag(item, "agitated", fld))
            v = voice_of(item, fld, voice)
            replies.append(Reply(
                text=said, voice=agitated(v) if upset else v, agitated=upset,
                telephone=bool(flag(item, "telephone", fld) if "telephone" in item
                               else all_telephone),
                line=text(item, "line", fld),
                steps=ids(item, "steps", fld, WORD_STEP_IDS),
                pitfalls=ids(item, "pitfalls", fld, PITFALL_IDS),
                no_pitfalls=bool(flag(item, "no_pitfalls", fld)),
                calm=flag(item, "calm", fld)))
    min_score = checker.score(data, "min_score", "")
    max_score = checker.score(data, "max_score", "")
    if problems:
        raise FixtureSpecError(problems)
    assert persona is not None
    return FixtureSpec(path=p, name=name, persona=persona, answers=answers,
                       call_spec=call_spec, voice=voice, replies=tuple(replies),
                       baseline=baseline, engine=engine, outcome=outcome,
                       min_score=min_score, max_score=max_score)


# --- rendering -------------------------------------------------------------------------------


def render_answer(text: str, voice: Any, path: str | os.PathLike[str], *,
                  telephone: bool = False) -> Rendered:
    """Speak ``text`` in ``voice`` into ``path``: 16-bit mono WAV at 16 kHz, or at 8 kHz
    with ``telephone``."""
    from voice_sim.audio import SAMPLE_RATE, load_audio, write_wav
    from voice_sim.speak import render_wav

    sr = TELEPHONE_RATE if telephone else SAMPLE_RATE
    with tempfile.TemporaryDirectory(prefix="voice-sim-fixture-") as tmp:
        raw = render_wav(text, voice, Path(tmp) / "reply.wav")
        samples = load_audio(raw, sr=sr)
    out = write_wav(path, samples, sr)
    return Rendered(path=out, text=text, sample_rate=sr, duration_s=len(samples) / sr,
                    agitated=False, telephone=telephone)


def make_fixtures(spec: FixtureSpec, *, force: bool = False) -> FixtureSet:
    """Render every reply of ``spec`` (and the baseline), and write the call spec skeleton
    unless one exists (``force`` rewrites it)."""
    from dataclasses import replace

    from voice_sim.session import BASELINE_SENTENCE

    spec.answers.mkdir(parents=True, exist_ok=True)
    answers = []
    for n, reply in enumerate(spec.replies, 1):
        r = render_answer(reply.text, reply.voice, spec.answers / f"{n:02d}.wav",
                          telephone=reply.telephone)
        answers.append(replace(r, agitated=reply.agitated))
    # A longer reply list rendered before would leave answers the call would still play.
    keep = {f"{n:02d}.wav" for n in range(1, len(spec.replies) + 1)}
    removed = tuple(p for p in sorted(spec.answers.iterdir())
                    if _NUMBERED.match(p.name) and p.name not in keep)
    for p in removed:
        p.unlink()
    baseline = None
    if spec.baseline is not None:
        baseline = render_answer(BASELINE_SENTENCE, spec.voice, spec.baseline)
    written = force or not spec.call_spec.exists()
    if written:
        from voice_sim.paths import write_atomic

        write_atomic(spec.call_spec, call_spec_text(spec))
    return FixtureSet(answers=tuple(answers), baseline=baseline, call_spec=spec.call_spec,
                      call_spec_written=written, removed=removed)


def call_spec_text(spec: FixtureSpec) -> str:
    """The call spec skeleton: what the fixtures spec states, and commented prompts for
    what is left to fill in."""
    def rel(p: Path) -> str:
        return os.path.relpath(p, spec.call_spec.parent).replace(os.sep, "/")

    def q(s: str) -> str:
        return json.dumps(s, ensure_ascii=False)

    run = f"voice-sim run {spec.persona} --answers {rel(spec.answers)}"
    if spec.baseline is not None:
        run += f" --baseline {rel(spec.baseline)}"
    if spec.engine:
        run += f" --engine {spec.engine}"
    out = ["# Call spec: collected by voice-sim's pytest plugin as one test. Written by",
           f"# `voice-sim fixtures make {spec.path.name}`; check it against a real run",
           f"# (`{run}`)",
           "# and fill in what is left. Step and pitfall ids: the README, 'Testing your",
           "# personas'.",
           f"persona: {spec.persona}", f"answers: {rel(spec.answers)}"]
    if spec.baseline is not None:
        out.append(f"baseline: {rel(spec.baseline)}")
    out.append(f"engine: {spec.engine}" if spec.engine else
               "# engine: whisper        # auto (default), vosk or whisper")
    out.append("expect:")
    out.append(f"  outcome: {spec.outcome}" if spec.outcome else
               "  # outcome: resolved    # fill in: resolved, escalated or hung_up")
    if spec.min_score is not None:
        out.append(f"  min_score: {spec.min_score:g}")
    if spec.max_score is not None:
        out.append(f"  max_score: {spec.max_score:g}")
    if spec.min_score is None and spec.max_score is None:
        out.append("  # min_score: 70")
    out.append("  turns:")
    stated = False
    for n, r in enumerate(spec.replies, 1):
        how = ", ".join(x for x in ("agitated" if r.agitated else "",
                                    "8 kHz telephone" if r.telephone else "") if x)
        said = q(r.text if len(r.text) <= 70 else r.text[:69] + "…")
        comment = f"  # {said}" + (f" ({how})" if how else "")
        body = []
        if r.line:
            body.append(f"line: {r.line}")
        if r.steps:
            body.append(f"steps: [{', '.join(r.steps)}]")
        if r.pitfalls:
            body.append(f"pitfalls: [{', '.join(r.pitfalls)}]")
        if r.no_pitfalls:
            body.append("no_pitfalls: true")
        if r.calm is not None:
            body.append(f"calm: {'true' if r.calm else 'false'}")
        if body:
            stated = True
            out.append(f"    {n}:{comment}")
            out.extend(f"      {b}" for b in body)
        else:
            out.append(f"    # {n}:{comment}")
            out.append("    #   steps: [empathize]  # fill in, then uncomment")
            out.append(f"    #   calm: {'false' if r.agitated else 'true'}")
    if not stated:
        out.append("    {}  # no turn expectations yet")
    return "\n".join(out) + "\n"


# --- command ---------------------------------------------------------------------------------


def cmd_fixtures_make(args: argparse.Namespace) -> int:
    """``voice-sim fixtures make SPEC``: render answer audio and a call spec skeleton."""
    spec = load_fixture_spec(args.spec)
    made = make_fixtures(spec, force=args.force)
    if args.json:
        print(json.dumps(made.to_json(), indent=2, ensure_ascii=False))
        return 0
    for r in made.answers:
        how = ", ".join(x for x in ("agitated" if r.agitated else "",
                                    "telephone" if r.telephone else "") if x)
        print(f"wrote {r.path}  {r.duration_s:.1f} s at {r.sample_rate} Hz"
              + (f" ({how})" if how else ""))
    if made.baseline is not None:
        print(f"wrote {made.baseline.path}  {made.baseline.duration_s:.1f} s calm baseline")
    for p in made.removed:
        print(f"removed {p} (no reply {p.stem} in the spec any more)")
    if made.call_spec_written:
        print(f"wrote {made.call_spec}  — fill in what it expects, then run pytest")
    else:
        print(f"kept {made.call_spec} (it exists; --force rewrites it)", file=sys.stderr)
    return 0
