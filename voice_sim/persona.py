"""Personas: the model (frozen dataclasses), and finding, checking and loading files.

A persona is one YAML file written by a trainer (format: ``docs/personas.md``, JSON
Schema: ``persona.schema.json`` beside this module). Every way of loading one goes
through :func:`check_persona` (the checks live in :mod:`voice_sim.persona_check`), so
``voice-sim persona check`` and a practice call agree on what is valid.

The rest of the persona stage, one job per module: :mod:`voice_sim.call` (the call's
mood machine), :mod:`voice_sim.persona_edit` (editing a file in place),
:mod:`voice_sim.persona_graph` (the branching as Mermaid).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from voice_sim.call import MOOD_MAX, MOOD_MIN, Call, Move
from voice_sim.errors import InputError, PersonaError
from voice_sim.persona_check import (
    SCHEMA_PATH,
    schema,
    schema_problems,
    semantic_problems,
    suggest,
)
from voice_sim.steps import ALL_IDS
from voice_sim.yamlfile import Problem, YamlProblem, load_yaml, position

if TYPE_CHECKING:
    from voice_sim.speak import Voice

__all__ = ["ALL_IDS", "MOOD_MAX", "MOOD_MIN", "SCHEMA_PATH", "SUFFIXES", "Briefing", "Call",
           "Line", "Move", "Persona", "PersonaFile", "Rule", "VoiceSettings", "check_paths",
           "check_persona", "find_personas", "iter_lines", "load_persona",
           "resolve_persona_path", "scan_personas", "schema"]

SUFFIXES = (".yaml", ".yml")
"""File endings of persona files."""

DEFAULT_HURTS_FACTOR = 2.0
DEFAULT_PER_TURN = 0.0
DEFAULT_AGITATED_VOICE = 1.0
DEFAULT_ON_MAX_TURNS = "escalated"
"""Running out of turns: the customer demands someone else and the call is handed over."""



# --- the persona --------------------------------------------------------------------

@dataclass(frozen=True)
class Briefing:
    """What the trainee reads before the call."""

    situation: str
    facts: tuple[str, ...] = ()
    """Account facts: order numbers, amounts, dates, what may be offered."""
    goal: str = ""


@dataclass(frozen=True)
class Rule:
    """One transition: when every condition holds, the call goes to ``goto``."""

    goto: str
    """A line id, or one of :data:`END_STATES` to end the call without another line."""
    heard: tuple[str, ...] = ()
    heard_any: tuple[str, ...] = ()
    not_heard: tuple[str, ...] = ()
    heard_ever: tuple[str, ...] = ()
    mood_at_least: float | None = None
    mood_below: float | None = None
    turn_at_least: int | None = None
    why: str = ""
    """The trainer's reason in plain words, shown in reports."""

    @property
    def is_default(self) -> bool:
        """True for a rule without conditions (it always matches)."""
        return not (self.heard or self.heard_any or self.not_heard or self.heard_ever
                    or self.mood_at_least is not None or self.mood_below is not None
                    or self.turn_at_least is not None)

    def matches(self, heard: frozenset[str], heard_ever: frozenset[str], mood: float,
                turn: int) -> bool:
        """Whether every condition holds for this reply."""
        return (all(i in heard for i in self.heard)
                and (not self.heard_any or any(i in heard for i in self.heard_any))
                and not any(i in heard for i in self.not_heard)
                and all(i in heard_ever for i in self.heard_ever)
                and (self.mood_at_least is None or mood >= self.mood_at_least)
                and (self.mood_below is None or mood < self.mood_below)
                and (self.turn_at_least is None or turn >= self.turn_at_least))

    def describe(self, mood: float | None = None, turn: int | None = None) -> str:
        """The conditions in words, with the actual mood and turn when given."""
        parts: list[str] = []
        if self.heard:
            parts.append(f"heard {' and '.join(self.heard)}")
        if self.heard_any:
            parts.append(f"heard {' or '.join(self.heard_any)}")
        if self.not_heard:
            parts.append(f"no {' or '.join(self.not_heard)}")
        if self.heard_ever:
            parts.append(f"{' and '.join(self.heard_ever)} heard during the call")
        m = "" if mood is None else f" ({_num(mood)})"
        if self.mood_at_least is not None:
            parts.append(f"mood ≥ {_num(self.mood_at_least)}{m}")
        if self.mood_below is not None:
            parts.append(f"mood < {_num(self.mood_below)}{m}")
        if self.turn_at_least is not None:
            t = "" if turn is None else f" ({turn})"
            parts.append(f"turn ≥ {self.turn_at_least}{t}")
        return ", ".join(parts) if parts else "otherwise"


@dataclass(frozen=True)
class VoiceSettings:
    """Rate, pitch and volume, each optional: a line's own voice settings, or how far
    the voice moves per point of mood (``customer.voice.per_mood``)."""

    rate: float | None = None
    """Words per minute (a line), or words per minute per mood point (per_mood)."""
    pitch: float | None = None
    """0-99 (a line), or pitch steps per mood point (per_mood)."""
    volume: float | None = None
    """0.0-1.0 (a line), or volume per mood point (per_mood)."""


@dataclass(frozen=True)
class Line:
    """One thing the customer says."""

    id: str
    text: str
    """What the customer says: the file's ``text``, or in a call the phrasing chosen."""
    phrasings: tuple[str, ...] = ()
    """Every phrasing of the line: ``text`` as written first, then its ``variants``
    (empty for a line built in code: then ``text`` is the only one)."""
    variant: int = 0
    """Which phrasing ``text`` is (an index into :attr:`texts`)."""
    voice: VoiceSettings = VoiceSettings()
    """The line's own rate, pitch, volume (None: the customer's voice)."""
    audio: Path | None = None
    """A recording of the line (absolute, checked to lie inside the persona's folder)."""
    expects: tuple[str, ...] = ()
    """Steps the trainee's reply to this line should contain."""
    hurts: tuple[str, ...] = ()
    """Pitfalls that hurt most here (they move the mood ``hurts_factor`` times as far)."""
    end: str | None = None
    """An end state: the call closes after this line is spoken. None: the call goes on."""
    next: tuple[Rule, ...] = ()
    """Transitions tried in order after the trainee answers this line."""
    sample_reply: str = ""
    """A model answer to this line (reports; the demo's synthetic trainee says it)."""
    note: str = ""

    @property
    def texts(self) -> tuple[str, ...]:
        """Every phrasing, the file's ``text`` first."""
        return self.phrasings or (self.text,)


@dataclass(frozen=True)
class Persona:
    """A validated persona script."""

    id: str
    title: str
    difficulty: str
    briefing: Briefing
    customer: str
    """The customer's name."""
    voice: Voice
    """The customer's voice when the call opens."""
    start_mood: float
    """Anger when the call opens, 0-10."""
    max_turns: int
    on_max_turns: str
    """A line with ``end`` or an end state: where the call goes when turns run out."""
    start: str
    """Id of the opening line."""
    lines: Mapping[str, Line] = field(hash=False)
    """Lines by id, in file order."""
    path: Path
    weights: Mapping[str, float] = field(default_factory=dict, hash=False)
    """Mood weights overriding the rubric's defaults for this customer."""
    hurts_factor: float = DEFAULT_HURTS_FACTOR
    per_turn: float = DEFAULT_PER_TURN
    """Mood added every turn (impatience)."""
    agitated_voice: float = DEFAULT_AGITATED_VOICE
    """Mood added when the trainee's delivery was not calm."""
    always: tuple[Rule, ...] = ()
    """Rules tried after every reply before the current line's own rules."""
    voice_per_mood: VoiceSettings = VoiceSettings()
    """How far rate, pitch and volume move per point of mood above the opening mood."""
    warnings: tuple[Problem, ...] = ()
    when_interrupted: str = "stop"
    """Live calls, the trainee talking over a line: ``stop`` or ``finish_sentence``."""

    @property
    def start_line(self) -> Line:
        """The opening line."""
        return self.lines[self.start]

    def to_json(self) -> dict[str, Any]:
        """Summary for ``voice-sim personas --json``."""
        return {"id": self.id, "title": self.title, "difficulty": self.difficulty,
                "customer": self.customer, "lines": len(self.lines),
                "phrasings": sum(len(line.texts) for line in self.lines.values()),
                "start_mood": self.start_mood, "max_turns": self.max_turns,
                "voice": {"id": self.voice.id, "rate": self.voice.rate,
                          "pitch": self.voice.pitch, "volume": self.voice.volume},
                "briefing": {"situation": self.briefing.situation,
                             "facts": list(self.briefing.facts), "goal": self.briefing.goal},
                "path": str(self.path)}


@dataclass(frozen=True)
class PersonaFile:
    """One file found while scanning folders: a persona, or the problems that stop it."""

    path: Path
    persona: Persona | None
    problems: tuple[Problem, ...] = ()

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Problems that make the file invalid."""
        return tuple(p for p in self.problems if p.severity == "error")


def _num(x: float) -> str:
    return f"{x:g}"


# --- checking and building ----------------------------------------------------------

def _sort_key(p: Problem) -> tuple[str, int, int]:
    return (p.path, p.line, p.column)


def check_persona(path: str | os.PathLike[str], *, text: str | None = None,
                  check_voice: bool = True) -> tuple[Persona | None, list[Problem]]:
    """Validate one persona file; return the persona (None if invalid) and every problem.

    This is the one validation used everywhere (``persona check``, listing, calls).
    ``check_voice`` asks the speech engine whether the voice exists (a warning only).
    """
    p = Path(path)
    try:
        data = load_yaml(p, what="persona file", text=text)
    except YamlProblem as e:
        return None, [e.problem]
    if data is None:
        return None, [Problem(str(p), 0, 0, "", "the file is empty",
                              "start from `voice-sim persona new ID`")]
    problems = schema_problems(data, str(p))
    if isinstance(data, dict):
        problems += semantic_problems(data, p, check_voice=check_voice)
    problems.sort(key=_sort_key)
    if any(x.severity == "error" for x in problems):
        return None, problems
    return _build(data, p, tuple(problems)), problems


def _text(value: Any) -> str:
    """A trainer's text with its line folding undone."""
    return " ".join(str(value).split())


def _rule(raw: Mapping[str, Any]) -> Rule:
    def ids(key: str) -> tuple[str, ...]:
        return tuple(str(x) for x in raw.get(key) or ())

    def num(key: str) -> float | None:
        return float(raw[key]) if raw.get(key) is not None else None

    turn = raw.get("turn_at_least")
    return Rule(goto=str(raw["goto"]), heard=ids("heard"), heard_any=ids("heard_any"),
                not_heard=ids("not_heard"), heard_ever=ids("heard_ever"),
                mood_at_least=num("mood_at_least"), mood_below=num("mood_below"),
                turn_at_least=int(turn) if turn is not None else None,
                why=_text(raw.get("why", "")))


def _voice(cls: type[Voice], raw: Mapping[str, Any]) -> Voice:
    """The customer's voice; what the file leaves out keeps :class:`Voice`'s defaults."""
    default = cls()
    return cls(id=str(raw["id"]), rate=int(raw.get("rate", default.rate)),
               pitch=int(raw.get("pitch", default.pitch)),
               volume=float(raw.get("volume", default.volume)))


def _settings(raw: Any) -> VoiceSettings:
    """Rate, pitch, volume from a mapping (what it leaves out stays None)."""
    if not isinstance(raw, Mapping):
        return VoiceSettings()

    def num(key: str) -> float | None:
        return float(raw[key]) if raw.get(key) is not None else None

    return VoiceSettings(rate=num("rate"), pitch=num("pitch"), volume=num("volume"))


def _build(data: Mapping[str, Any], path: Path, warnings: tuple[Problem, ...]) -> Persona:
    from voice_sim.speak import Voice

    folder = path.parent.resolve()
    lines: dict[str, Line] = {}
    for item in data["lines"]:
        nxt = item.get("next")
        rules = (_rule({"goto": nxt}),) if isinstance(nxt, str) else \
            tuple(_rule(r) for r in nxt or ())
        audio = item.get("audio")
        text = _text(item["text"])
        lines[str(item["id"])] = Line(
            id=str(item["id"]), text=text,
            phrasings=(text, *(_text(v) for v in item.get("variants") or ())),
            voice=_settings(item.get("voice")),
            audio=(folder / Path(*PurePosixPath(str(audio).replace("\\", "/")).parts)
                   if audio else None),
            expects=tuple(str(x) for x in item.get("expects") or ()),
            hurts=tuple(str(x) for x in item.get("hurts") or ()),
            end=str(item["end"]) if item.get("end") is not None else None,
            next=rules, sample_reply=_text(item.get("sample_reply", "")),
            note=_text(item.get("note", "")))
    brief = data["briefing"]
    voice = data["customer"]["voice"]
    mood = data["mood"]
    return Persona(
        id=str(data["id"]), title=_text(data["title"]), difficulty=str(data["difficulty"]),
        briefing=Briefing(situation=_text(brief["situation"]),
                          facts=tuple(_text(f) for f in brief.get("facts") or ()),
                          goal=_text(brief.get("goal", ""))),
        customer=_text(data["customer"]["name"]),
        voice=_voice(Voice, voice),
        start_mood=float(mood["start"]), max_turns=int(data["max_turns"]),
        on_max_turns=str(data.get("on_max_turns", DEFAULT_ON_MAX_TURNS)),
        start=str(data.get("start", next(iter(lines)))), lines=lines, path=path,
        weights={str(k): float(v) for k, v in (mood.get("weights") or {}).items()},
        hurts_factor=float(mood.get("hurts_factor", DEFAULT_HURTS_FACTOR)),
        per_turn=float(mood.get("per_turn", DEFAULT_PER_TURN)),
        agitated_voice=float(mood.get("agitated_voice", DEFAULT_AGITATED_VOICE)),
        always=tuple(_rule(r) for r in data.get("always") or ()),
        voice_per_mood=_settings(voice.get("per_mood")),
        warnings=warnings,
        when_interrupted=str(data["customer"].get("when_interrupted", "stop")))


# --- finding and loading ------------------------------------------------------------

def _persona_files(folder: Path) -> list[Path]:
    # A trainer's rubric.yaml lives beside the personas it scores; it is not one of them.
    from voice_sim.rubric_file import RUBRIC_BESIDE

    return sorted(f for f in folder.iterdir()
                  if f.suffix in SUFFIXES and f.is_file() and f.name != RUBRIC_BESIDE)


def check_paths(paths: Iterable[str | os.PathLike[str]], *,
                check_voice: bool = True) -> list[Problem]:
    """Validate persona files and folders of them; every problem, in file order.

    A missing path or a folder without persona files is a problem too. Two files
    with the same persona id are reported on the second.
    """
    problems: list[Problem] = []
    first_of: dict[str, Path] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = _persona_files(p)
            if not files:
                problems.append(Problem(str(p), 0, 0, "", "no persona files (*.yaml) in this "
                                        "folder", "name a persona file or a folder holding some"))
        elif p.exists() or p.suffix in SUFFIXES:
            files = [p]
        else:
            problems.append(Problem(str(p), 0, 0, "", "no such file or folder",
                                    "check the path"))
            continue
        for f in files:
            persona, found = check_persona(f, check_voice=check_voice)
            problems += found
            if persona is not None:
                if persona.id in first_of and first_of[persona.id].resolve() != f.resolve():
                    line, col = position(load_yaml(f), "id")
                    problems.append(Problem(str(f), line, col, "id",
                                            f"persona id '{persona.id}' is also used by "
                                            f"{first_of[persona.id]}", "rename one of them"))
                first_of.setdefault(persona.id, f)
    return problems


def scan_personas(dirs: Iterable[str | os.PathLike[str]] | None = None, *,
                  check_voice: bool = False) -> list[PersonaFile]:
    """Every persona file in ``dirs`` (default :func:`paths.personas_dirs`), valid or not.

    When two folders hold the same id, the first folder wins and the later file is
    left out, as :func:`load_persona` would never pick it.
    """
    from voice_sim.paths import personas_dirs

    folders = [Path(d) for d in dirs] if dirs is not None else personas_dirs()
    found: list[PersonaFile] = []
    ids: set[str] = set()
    for folder in folders:
        if not folder.is_dir():
            continue
        for f in _persona_files(folder):
            if f.stem in ids:
                continue
            ids.add(f.stem)
            persona, problems = check_persona(f, check_voice=check_voice)
            found.append(PersonaFile(f, persona, tuple(problems)))
    return found


def find_personas(dirs: Iterable[str | os.PathLike[str]] | None = None) -> list[Persona]:
    """The valid personas in ``dirs``; see :func:`scan_personas` for the invalid ones."""
    return [pf.persona for pf in scan_personas(dirs) if pf.persona is not None]


def resolve_persona_path(spec: str | os.PathLike[str]) -> Path:
    """The file a persona argument names: a path, or an id looked up in the personas folders."""
    from voice_sim.paths import personas_dirs

    text = os.fspath(spec)
    p = Path(text)
    if p.suffix in SUFFIXES or os.sep in text or "/" in text or p.exists():
        if not p.exists():
            raise PersonaError(f"{p}: no such persona file", hint="check the path")
        return p
    folders = personas_dirs()
    for folder in folders:
        for suffix in SUFFIXES:
            candidate = folder / f"{text}{suffix}"
            if candidate.is_file():
                return candidate
    known = sorted({f.stem for d in folders for f in _persona_files(d)})
    raise PersonaError(
        f"no persona '{text}' in {', '.join(str(d) for d in folders) or 'any personas folder'}",
        hint=f"{suggest(text, known)}known: {', '.join(known) or 'none'}; or give a file path")


def load_persona(spec: str | os.PathLike[str], *, check_voice: bool = True) -> Persona:
    """Load and validate a persona by id or path; :class:`PersonaError` lists every problem."""
    path = resolve_persona_path(spec)
    persona, problems = check_persona(path, check_voice=check_voice)
    if persona is None:
        errors = [p for p in problems if p.severity == "error"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PersonaError(f"invalid persona {errors[0].line_text(severity=False)}{more}",
                           hint=f"run `voice-sim persona check {path}` for the full list",
                           problems=tuple(errors))
    return persona


def iter_lines(persona: Persona, only: str | None = None) -> Iterator[Line]:
    """The persona's lines, or just ``only``; :class:`InputError` names the valid ids."""
    if only is None:
        yield from persona.lines.values()
        return
    if only not in persona.lines:
        ids = list(persona.lines)
        raise InputError(f"{persona.path}: no line '{only}'",
                         hint=f"{suggest(only, ids)}lines: {', '.join(ids)}")
    yield persona.lines[only]
