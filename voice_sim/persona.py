"""Persona scripts: loading, validation and the call's mood machine.

A persona is one YAML file written by a trainer (format: ``docs/personas.md``, JSON
Schema: ``persona.schema.json`` beside this module). Every way of loading one goes
through :func:`check_persona`, so ``voice-sim persona check`` and a practice call
agree on what is valid. Problems point at ``file:line:column`` and say how to fix them.

The machine (:class:`Call`) is deterministic: after each trainee reply the mood
moves by the weight of every detected step and pitfall, then the current line's
rules are tried in order and the first match picks the next line. Same replies,
same path.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from voice_sim.errors import InputError, PersonaError, TTSError
from voice_sim.steps import END_STATES, PITFALL_IDS, STEP_IDS
from voice_sim.yamlfile import Problem, YamlProblem, load_yaml, position

if TYPE_CHECKING:
    from voice_sim.rubric import Rubric
    from voice_sim.speak import Voice

SCHEMA_PATH = Path(__file__).resolve().parent / "persona.schema.json"
"""The JSON Schema of the persona format, shipped in the package."""

SUFFIXES = (".yaml", ".yml")
"""File endings of persona files."""

ALL_IDS: tuple[str, ...] = (*STEP_IDS, *PITFALL_IDS)
"""Every id a reply can be credited with, in the canonical order used in reports."""

MOOD_MIN, MOOD_MAX = 0.0, 10.0
"""The anger scale: 0 calm, 10 furious."""

DEFAULT_HURTS_FACTOR = 2.0
DEFAULT_PER_TURN = 0.0
DEFAULT_AGITATED_VOICE = 1.0
DEFAULT_ON_MAX_TURNS = "escalated"
"""Running out of turns: the customer demands someone else and the call is handed over."""

_CONDITIONS = ("heard", "heard_any", "not_heard", "heard_ever", "mood_at_least", "mood_below",
               "turn_at_least")


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
class Line:
    """One thing the customer says."""

    id: str
    text: str
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


# --- the call -----------------------------------------------------------------------

@dataclass(frozen=True)
class Move:
    """What one trainee reply did to the call."""

    turn: int
    """1 for the first reply."""
    line: str
    """The line the trainee answered."""
    heard: frozenset[str]
    """Every id credited to the reply (``stay_calm`` included when delivery was calm)."""
    mood_before: float
    mood_after: float
    contributions: tuple[tuple[str, float], ...]
    """(id or ``per_turn`` / ``agitated_voice``, mood change) in canonical order."""
    rule: Rule | None
    """The transition taken; None when the turn limit decided."""
    reason: str
    """Why, in plain words: ``heard empathize → line 'calmer' (she feels heard)``."""
    next_line: str | None
    """The line the customer says next; None when the call ends without another word."""
    outcome: str | None
    """An end state when this move ends the call (after ``next_line`` is spoken)."""

    def to_json(self) -> dict[str, Any]:
        """JSON form for session files and reports."""
        return {"turn": self.turn, "line": self.line, "heard": sorted(self.heard),
                "mood_before": self.mood_before, "mood_after": self.mood_after,
                "contributions": [{"id": i, "mood": d} for i, d in self.contributions],
                "reason": self.reason, "next_line": self.next_line, "outcome": self.outcome}


class Call:
    """The state of one call through a persona; :meth:`advance` once per trainee reply."""

    def __init__(self, persona: Persona, rubric: Rubric | None = None) -> None:
        self.persona = persona
        self._rubric = rubric
        self.line: Line = persona.start_line
        """The line the customer has just said (the one the trainee answers)."""
        self.mood: float = persona.start_mood
        self.turn: int = 0
        """Replies given so far."""
        self.outcome: str | None = None
        self.heard_ever: frozenset[str] = frozenset()
        self.moves: list[Move] = []

    @property
    def ended(self) -> bool:
        """True once the call has an outcome (the current line, if any, is its last)."""
        return self.outcome is not None

    def weight(self, item: str) -> float:
        """Mood change for one detected id: the persona's override, else the rubric's."""
        if item in self.persona.weights:
            return self.persona.weights[item]
        if self._rubric is None:
            from voice_sim.rubric import load_rubric

            self._rubric = load_rubric()
        return float(self._rubric.mood(item))

    def advance(self, detected: Iterable[str], *, calm: bool | None = None) -> Move:
        """Apply one reply: move the mood, pick the next line, maybe end the call.

        ``detected``: step and pitfall ids found in the reply's words. ``calm``: the
        delivery verdict (True adds ``stay_calm``; False adds the persona's
        ``agitated_voice`` penalty; None when delivery was not measured).
        """
        if self.ended:
            raise RuntimeError(f"the call already ended ({self.outcome})")
        heard = set(detected)
        unknown = sorted(heard - set(ALL_IDS))
        if unknown:
            raise ValueError(f"unknown step or pitfall ids {unknown}; valid: {', '.join(ALL_IDS)}")
        if calm:
            heard.add("stay_calm")
        p = self.persona
        contributions: list[tuple[str, float]] = []
        for item in ALL_IDS:
            if item in heard:
                w = self.weight(item)
                if item in self.line.hurts and w > 0:
                    w *= p.hurts_factor
                contributions.append((item, round(w, 3)))
        if calm is False and p.agitated_voice:
            contributions.append(("agitated_voice", p.agitated_voice))
        if p.per_turn:
            contributions.append(("per_turn", p.per_turn))
        before = self.mood
        after = round(min(MOOD_MAX, max(MOOD_MIN, before + sum(d for _, d in contributions))), 2)
        self.mood = after
        self.turn += 1
        frozen = frozenset(heard)
        self.heard_ever = self.heard_ever | frozen

        rule: Rule | None = None
        for r in (*p.always, *self.line.next):
            if r.matches(frozen, self.heard_ever, after, self.turn):
                rule = r
                break
        if rule is None:  # validation guarantees a default rule; keep the call sane anyway
            raise PersonaError(f"{p.path}: line '{self.line.id}': no rule matched",
                               hint="end its `next` list with a rule that has no condition")
        target = rule.goto
        reason = f"{rule.describe(after, self.turn)} → {_target_words(p, target)}"
        if rule.why:
            reason += f" ({rule.why})"
        if self.turn >= p.max_turns and not _ends(p, target):
            target, rule = p.on_max_turns, None
            reason = f"turn limit {p.max_turns} reached → {_target_words(p, target)}"

        before_line = self.line.id
        next_line: str | None = None
        outcome: str | None = target
        if target not in END_STATES:
            self.line = p.lines[target]
            next_line, outcome = target, self.line.end
        self.outcome = outcome
        move = Move(turn=self.turn, line=before_line, heard=frozen, mood_before=before,
                    mood_after=after, contributions=tuple(contributions), rule=rule,
                    reason=reason, next_line=next_line, outcome=outcome)
        self.moves.append(move)
        return move


def _ends(p: Persona, target: str) -> bool:
    return target in END_STATES or p.lines[target].end is not None


def _target_words(p: Persona, target: str) -> str:
    if target in END_STATES:
        return f"call ends: {target}"
    end = p.lines[target].end
    return f"line '{target}'" + (f" (then the call ends: {end})" if end else "")


def _num(x: float) -> str:
    return f"{x:g}"


# --- schema -------------------------------------------------------------------------

@cache
def schema() -> dict[str, Any]:
    """The persona JSON Schema (draft 2020-12)."""
    with SCHEMA_PATH.open(encoding="utf-8") as f:
        result: dict[str, Any] = json.load(f)
    return result


def _field(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _node_at(data: Any, path: Sequence[str | int]) -> Any:
    node = data
    for part in path:
        node = node[part]
    return node


def _pos(data: Any, path: Sequence[str | int]) -> tuple[int, int]:
    """Position of the value at ``path`` (its key, for a mapping entry)."""
    if not path:
        return position(data) if hasattr(data, "lc") else (1, 1)
    try:
        parent = _node_at(data, path[:-1])
    except (KeyError, IndexError, TypeError):
        return (0, 0)
    return position(parent, path[-1])


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number",
               "array": "a list", "object": "a mapping of fields", "boolean": "true or false"}

_TYPE_HINTS = {"string": "put it in quotes",
               "integer": "write a whole number such as 8",
               "number": "write a number such as 6.5",
               "array": "write a list: one `- item` per line, or [a, b]",
               "object": "indent the fields under it (`key: value`, one per line)"}


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def _schema_problems(data: Any, file: str) -> list[Problem]:
    """Structure, types, ranges and ids, as the JSON Schema says, in a trainer's words."""
    steps, pitfalls = set(STEP_IDS), set(PITFALL_IDS)
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()

    def add(path: Sequence[str | int], message: str, hint: str, key: str | None = None) -> None:
        full = [*path, key] if key is not None else list(path)
        fld = _field(full)
        if (fld, message) in seen:
            return
        seen.add((fld, message))
        line, col = _pos(data, full) if key is None or key in _node_at(data, path) else \
            _pos(data, path)
        problems.append(Problem(file, line, col, fld, message, hint))

    for err in _validator().iter_errors(data):
        path = list(err.absolute_path)
        kind, inst, sch = err.validator, err.instance, err.schema
        last = path[-1] if path else ""
        if kind == "additionalProperties":
            known = list(sch.get("properties", {}))
            for key in inst:
                if key in known:
                    continue
                if last == "weights":
                    add(path, f"'{key}' is not a step or pitfall id",
                        f"{_suggest(str(key), ALL_IDS)}steps: {', '.join(STEP_IDS)}; "
                        f"pitfalls: {', '.join(PITFALL_IDS)}", key=str(key))
                else:
                    add(path, f"unknown field '{key}'",
                        f"{_suggest(str(key), known)}fields here: {', '.join(known)}",
                        key=str(key))
        elif kind == "required":
            for key in sch["required"]:
                if key not in inst:
                    where = _field(path) or "the file"
                    about = sch["properties"].get(key, {}).get("description")
                    add(path, f"missing field '{key}'",
                        f"add `{key}:` to {where}" + (f" ({about})" if about else ""), key=key)
        elif kind == "type":
            want = err.validator_value
            wants = [want] if isinstance(want, str) else list(want)
            words = " or ".join(_TYPE_WORDS.get(w, w) for w in wants)
            if not path and inst is None:
                add(path, "the file is empty", "start from `voice-sim persona new ID`")
            else:
                add(path, f"must be {words}, not {_kind(inst)}",
                    _TYPE_HINTS.get(wants[0], "fix the value"))
        elif kind == "enum":
            values = [str(v) for v in err.validator_value]
            # An id list holding a list or a mapping: only a string can be an id.
            is_text = isinstance(inst, str)
            if set(values) == steps:
                if is_text and inst in pitfalls:
                    add(path, f"'{inst}' is a pitfall, not a step",
                        f"list it under `hurts`; steps: {', '.join(STEP_IDS)}")
                else:
                    add(path, f"unknown step id '{inst}'",
                        f"{_suggest(str(inst), STEP_IDS)}steps: {', '.join(STEP_IDS)}")
            elif set(values) == pitfalls:
                if is_text and inst in steps:
                    add(path, f"'{inst}' is a step, not a pitfall",
                        f"list it under `expects`; pitfalls: {', '.join(PITFALL_IDS)}")
                else:
                    add(path, f"unknown pitfall id '{inst}'",
                        f"{_suggest(str(inst), PITFALL_IDS)}pitfalls: {', '.join(PITFALL_IDS)}")
            elif set(values) == steps | pitfalls:
                add(path, f"unknown step or pitfall id '{inst}'",
                    f"{_suggest(str(inst), ALL_IDS)}steps: {', '.join(STEP_IDS)}; "
                    f"pitfalls: {', '.join(PITFALL_IDS)}")
            else:
                add(path, f"'{inst}' is not allowed here",
                    f"{_suggest(str(inst), values)}use one of: {', '.join(values)}")
        elif kind == "pattern":
            pattern = str(err.validator_value)
            if pattern == "\\S":
                add(path, "is empty", f"write the {last or 'value'}, or remove the field")
            elif last == "id" and len(path) == 1:
                add(path, f"'{inst}' is not a valid persona id",
                    "use lowercase letters, digits and dashes, e.g. late-delivery")
            else:
                add(path, f"'{inst}' is not a valid line id",
                    "use lowercase letters, digits and underscores, starting with a letter, "
                    "e.g. calmer_now")
        elif kind in ("minimum", "maximum"):
            lo, hi = sch.get("minimum"), sch.get("maximum")
            rng = f"between {lo} and {hi}" if lo is not None and hi is not None else \
                (f"at least {lo}" if lo is not None else f"at most {hi}")
            add(path, f"{inst} is out of range", f"use a value {rng}")
        elif kind == "minItems":
            add(path, "the list is empty", "list at least one item, or remove the field")
        elif kind == "uniqueItems":
            dupes = sorted({str(v) for v in inst if list(inst).count(v) > 1})
            add(path, f"lists {', '.join(repr(d) for d in dupes)} more than once",
                "keep each id once")
        elif kind == "maxLength":
            add(path, f"too long ({len(inst)} characters)",
                f"shorten it to at most {err.validator_value}")
        else:  # a rule the schema gained later; still one clear line
            add(path, err.message, "see `voice-sim persona schema`")
    return problems


# --- validation ---------------------------------------------------------------------

def _str_list(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _rules_of(value: Any) -> list[tuple[int | None, Any]]:
    """(index, rule mapping) pairs of a ``next`` value; a plain string is one default rule."""
    if isinstance(value, str):
        return [(None, {"goto": value})]
    if isinstance(value, list):
        return [(i, r) for i, r in enumerate(value) if isinstance(r, dict)]
    return []


def _semantic_problems(data: dict[str, Any], path: Path, *, check_voice: bool) -> list[Problem]:
    """What the schema cannot say: ids, targets, rule shapes, the graph, audio, voice."""
    c = _Checker(data, path)
    c.persona_id()
    c.collect_lines()
    start = c.start_line()
    c.always_rules()
    c.each_line()
    c.turn_limit()
    if start is not None:
        c.graph(start)
    if check_voice:
        c.voice()
    return c.problems


class _Checker:
    """One pass of the semantic checks over a structurally loaded persona."""

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data, self.path = data, path
        self.problems: list[Problem] = []
        self.lines: dict[str, tuple[int, dict[str, Any]]] = {}
        """Line id -> (index in ``lines``, the mapping), first occurrence only."""
        self.edges: dict[str, list[str]] = {}
        """Line id -> targets of its own ``next`` rules."""
        self.misspelt: set[str] = set()
        """Lines a misspelt ``goto`` probably meant (not reported again as unreachable)."""

    def add(self, fpath: Sequence[str | int], message: str, hint: str = "",
            severity: str = "error") -> None:
        line, col = _pos(self.data, fpath)
        self.problems.append(Problem(str(self.path), line, col, _field(fpath), message, hint,
                                     severity))

    @property
    def ids(self) -> list[str]:
        return list(self.lines)

    def ends(self, lid: str) -> bool:
        return self.lines[lid][1].get("end") is not None

    def persona_id(self) -> None:
        pid = self.data.get("id")
        if isinstance(pid, str) and pid and self.path.stem != pid:
            self.add(["id"], f"id '{pid}' differs from the file name '{self.path.name}'",
                     f"rename the file to {pid}{self.path.suffix or '.yaml'} or set "
                     f"`id: {self.path.stem}`")

    def collect_lines(self) -> None:
        raw = self.data.get("lines")
        if not isinstance(raw, list):
            return
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            lid = item["id"]
            if lid in self.lines:
                first = position(raw, self.lines[lid][0])[0]
                self.add(["lines", i, "id"], f"duplicate line id '{lid}' (first used on line "
                         f"{first})", "give every line its own id")
            elif lid in END_STATES:
                self.add(["lines", i, "id"], f"'{lid}' is an end state, not a line id",
                         f"rename the line, e.g. {lid}_line")
            else:
                self.lines[lid] = (i, item)

    def target(self, fpath: Sequence[str | int], target: Any) -> bool:
        """Whether ``target`` names a line or an end state (reported when it does not)."""
        if not isinstance(target, str):
            return False
        if target in self.lines or target in END_STATES:
            return True
        self.misspelt.update(difflib.get_close_matches(target, self.ids, n=1, cutoff=0.6))
        self.add(fpath, f"'{target}' is not a line",
                 f"{_suggest(target, [*self.ids, *END_STATES])}lines: {', '.join(self.ids)}; "
                 f"or end the call with {', '.join(END_STATES)}")
        return False

    def rule(self, fpath: list[str | int], rule: dict[str, Any]) -> None:
        self.target([*fpath, "goto"], rule.get("goto"))
        both = sorted(set(_str_list(rule.get("heard"))) & set(_str_list(rule.get("not_heard"))))
        if both:
            self.add(fpath, f"'{both[0]}' is both in heard and not_heard: the rule can never "
                     "match", "keep it in one of the two")
        lo, hi = rule.get("mood_at_least"), rule.get("mood_below")
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo >= hi:
            self.add(fpath, f"mood_at_least {lo} and mood_below {hi} can never both hold",
                     "make mood_at_least smaller than mood_below")

    def start_line(self) -> str | None:
        start = self.data.get("start")
        if isinstance(start, str) and start not in self.lines:
            self.add(["start"], f"'{start}' is not a line",
                     f"{_suggest(start, self.ids)}lines: {', '.join(self.ids)}")
            return None
        if not isinstance(start, str):
            if "start" in self.data or not self.lines:
                return None
            start = self.ids[0]
        if self.ends(start):
            where: list[str | int] = ["start"] if "start" in self.data else \
                ["lines", self.lines[start][0], "end"]
            self.add(where, f"the opening line '{start}' has `end`, so the call would close "
                     "before the trainee speaks", "start with a line that has `next`")
        return start

    def always_rules(self) -> None:
        for k, rule in _rules_of(self.data.get("always")):
            fpath: list[str | int] = ["always", k if k is not None else 0]
            self.rule(fpath, rule)
            if not any(c in rule for c in _CONDITIONS):
                self.add(fpath, "a rule under `always` needs a condition (it would override "
                         "every line)", "add e.g. `mood_at_least: 10`, or move the rule into a "
                         "line's `next`")

    def each_line(self) -> None:
        pid = self.data.get("id")
        folder_id = pid if isinstance(pid, str) else self.path.stem
        for lid, (i, item) in self.lines.items():
            base: list[str | int] = ["lines", i]
            has_end, has_next = item.get("end") is not None, "next" in item
            if has_end and has_next:
                self.add([*base, "next"], f"line '{lid}' has both `end` and `next`",
                         "an end line closes the call after it is spoken: remove `next` or "
                         "`end`")
            elif not has_end and not has_next:
                self.add(base, f"line '{lid}' has neither `next` nor `end`",
                         "add `next:` (where the call goes after the trainee answers) or "
                         f"`end:` ({', '.join(END_STATES)})")
            if has_end:
                for key in ("expects", "hurts", "sample_reply"):
                    if item.get(key):
                        self.add([*base, key], f"line '{lid}' ends the call, so no reply "
                                 f"follows and `{key}` is never used", f"remove `{key}` here",
                                 "warning")
            self.edges[lid] = self.next_rules(lid, base, item) if has_next and not has_end \
                else []
            audio = item.get("audio")
            if isinstance(audio, str) and audio.strip():
                found = _audio_problem(audio, self.path, folder_id, lid)
                if found:
                    self.add([*base, "audio"], *found)

    def next_rules(self, lid: str, base: list[str | int], item: dict[str, Any]) -> list[str]:
        """Check a line's ``next`` rules; return their targets."""
        targets: list[str] = []
        rules = _rules_of(item.get("next"))
        for n, (j, rule) in enumerate(rules):
            rpath: list[str | int] = [*base, "next"] + ([j] if j is not None else [])
            self.rule(rpath, rule)
            if isinstance(rule.get("goto"), str):
                targets.append(rule["goto"])
            is_default = not any(c in rule for c in _CONDITIONS)
            if n == len(rules) - 1 and not is_default:
                self.add(rpath, f"the last rule of line '{lid}' has conditions, so a reply "
                         "could match no rule", "add a final rule with only `goto:` (the "
                         "default)")
            elif n < len(rules) - 1 and is_default:
                self.add(rpath, "this rule has no condition, so the rules after it are never "
                         "used", "move it to the end of the list, or give it a condition")
        return targets

    def turn_limit(self) -> None:
        on_max = self.data.get("on_max_turns")
        if on_max is not None and self.target(["on_max_turns"], on_max) \
                and on_max in self.lines and not self.ends(on_max):
            self.add(["on_max_turns"], f"line '{on_max}' has no `end`, so the call would go on "
                     "past max_turns", f"name a line with `end:`, or one of "
                     f"{', '.join(END_STATES)}")

    def graph(self, start: str) -> None:
        """Every line reachable; an end reachable from each; resolving fits max_turns."""
        always = [r["goto"] for _, r in _rules_of(self.data.get("always"))
                  if isinstance(r.get("goto"), str)]
        follow = {lid: [] if self.ends(lid) else [*always, *targets]
                  for lid, targets in self.edges.items()}
        on_max = self.data.get("on_max_turns")
        limit = [on_max] if isinstance(on_max, str) and on_max in self.lines else []

        # Running out of turns is a way to reach a line, but not a way out of a loop.
        reach = _reachable([start], lambda n: [*follow.get(n, []), *limit]
                           if n in self.lines and not self.ends(n) else [])
        for lid, (i, _) in self.lines.items():
            if lid not in reach and lid not in self.misspelt:  # one typo, one problem
                self.add(["lines", i, "id"], f"line '{lid}' can never be reached",
                         "point a `goto` at it, or remove it")
        enders = {lid for lid in self.lines if self.ends(lid)}
        enders |= {lid for lid, ts in follow.items() if any(t in END_STATES for t in ts)}
        back: dict[str, list[str]] = {}
        for src, ts in follow.items():
            for t in ts:
                back.setdefault(t, []).append(src)
        can_end = _reachable(list(enders), lambda n: back.get(n, []))
        for lid, (i, _) in self.lines.items():
            if lid in reach and lid not in can_end:
                self.add(["lines", i, "id"], f"no end can be reached from line '{lid}': every "
                         "path from it loops back", "add a rule that leads to a line with "
                         "`end:`, or `goto: resolved` / `hung_up`")

        dist = _distances(start, follow)
        resolving = [d for lid, d in dist.items()
                     if self.lines[lid][1].get("end") == "resolved"]
        resolving += [dist[lid] + 1 for lid, ts in follow.items()
                      if lid in dist and "resolved" in ts]
        max_turns = self.data.get("max_turns")
        if not resolving:
            self.add(["lines"], "no line leads to `resolved`: the trainee can never resolve "
                     "this call", "add a line with `end: resolved` and a rule that reaches it",
                     "warning")
        elif isinstance(max_turns, int) and min(resolving) > max_turns:
            self.add(["max_turns"], f"resolving takes at least {min(resolving)} replies but "
                     f"max_turns is {max_turns}", f"raise max_turns to {min(resolving)} or more")

    def voice(self) -> None:
        customer = self.data.get("customer")
        voice = customer.get("voice") if isinstance(customer, dict) else None
        if not isinstance(voice, dict) or not isinstance(voice.get("id"), str):
            return
        from voice_sim.speak import voice_exists

        vid, where = voice["id"], ["customer", "voice", "id"]
        try:
            exists = voice_exists(vid)
        except TTSError as e:
            self.add(where, f"could not check voice '{vid}': {e.line()}",
                     "run `voice-sim doctor`", "warning")
            return
        if not exists:
            self.add(where, f"unknown voice '{vid}' on this machine",
                     "pick one from `voice-sim voices --lang en` (e.g. en-us+f3); the default "
                     "voice is used meanwhile", "warning")


def _reachable(starts: list[str], nxt: Any) -> set[str]:
    seen: set[str] = set()
    todo = deque(starts)
    while todo:
        node = todo.popleft()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(t for t in nxt(node) if t not in seen)
    return seen


def _distances(start: str, follow: Mapping[str, list[str]]) -> dict[str, int]:
    dist = {start: 0}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        for t in follow.get(node, []):
            if t in follow and t not in dist:
                dist[t] = dist[node] + 1
                todo.append(t)
    return dist


def _audio_problem(audio: str, persona_path: Path, persona_id: str,
                   line_id: str) -> tuple[str, str] | None:
    """Why a line's ``audio`` path is unusable, as (message, hint); None when fine."""
    from voice_sim.audio import info, load_audio
    from voice_sim.errors import AudioError

    example = f"{persona_id}/{line_id}.wav"
    rel = PurePosixPath(audio.replace("\\", "/"))
    if rel.is_absolute() or audio.startswith("~") or (len(audio) > 1 and audio[1] == ":"):
        return (f"audio path '{audio}' is absolute",
                f"give it relative to the persona file, inside its folder, e.g. {example}")
    if ".." in rel.parts:
        return (f"audio path '{audio}' uses '..' and leaves the persona's folder",
                f"keep recordings beside the persona file, e.g. {example}")
    try:
        folder = persona_path.parent.resolve()
        full = persona_path.parent / Path(*rel.parts)
        real = full.resolve()
        found = full.exists()
    except (OSError, RuntimeError, ValueError) as e:  # too long, a symlink loop, a NUL
        reason = getattr(e, "strerror", None) or str(e)
        return (f"audio path '{audio}' cannot be used ({reason})",
                f"name a recording inside the persona's folder, e.g. {example}")
    if not real.is_relative_to(folder):
        return (f"audio path '{audio}' is a symlink to {real}, outside the persona's folder",
                f"copy the recording into {folder}")
    if not found:
        return (f"audio file '{audio}' not found (looked for {full})",
                f"fix the path, or record it: voice-sim persona record {persona_path} "
                f"--line {line_id}")
    try:
        # Decoded in full (at its own rate: no resampling), so what a call would refuse
        # when the line is due (0 frames, over-long, cut short, damaged, silent) is
        # reported here, before the call starts.
        load_audio(full, sr=info(full).sample_rate)
    except AudioError as e:
        return (f"audio file '{audio}' is not usable: {e.message}", e.hint or "record it again")
    return None


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
    problems = _schema_problems(data, str(p))
    if isinstance(data, dict):
        problems += _semantic_problems(data, p, check_voice=check_voice)
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


def _build(data: Mapping[str, Any], path: Path, warnings: tuple[Problem, ...]) -> Persona:
    from voice_sim.speak import Voice

    folder = path.parent.resolve()
    lines: dict[str, Line] = {}
    for item in data["lines"]:
        nxt = item.get("next")
        rules = (_rule({"goto": nxt}),) if isinstance(nxt, str) else \
            tuple(_rule(r) for r in nxt or ())
        audio = item.get("audio")
        lines[str(item["id"])] = Line(
            id=str(item["id"]), text=_text(item["text"]),
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
        warnings=warnings,
        when_interrupted=str(data["customer"].get("when_interrupted", "stop")))


# --- finding and loading ------------------------------------------------------------

def _persona_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix in SUFFIXES and f.is_file())


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
        hint=f"{_suggest(text, known)}known: {', '.join(known) or 'none'}; or give a file path")


def load_persona(spec: str | os.PathLike[str], *, check_voice: bool = True) -> Persona:
    """Load and validate a persona by id or path; :class:`PersonaError` lists every problem."""
    path = resolve_persona_path(spec)
    persona, problems = check_persona(path, check_voice=check_voice)
    if persona is None:
        errors = [p for p in problems if p.severity == "error"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PersonaError(f"invalid persona {errors[0].line_text()}{more}",
                           hint=f"run `voice-sim persona check {path}` for the full list",
                           problems=tuple(errors))
    return persona


# --- editing: reference a recording in the YAML -------------------------------------

def set_line_audio(path: str | os.PathLike[str], line_id: str, audio: str) -> None:
    """Set ``audio:`` of one line in a persona file, keeping its comments and layout.

    A round trip through ruamel.yaml with the file's own indentation; the key goes
    right after ``text:`` when it is new.
    """
    import io

    from ruamel.yaml import YAML

    p = Path(path)
    load_yaml(p, what="persona file")  # the safety checks (size, tags, alias bombs) first
    original = p.read_text(encoding="utf-8")
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a trainer's long lines
    mapping, sequence, offset = _indentation(original)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    data = yaml.load(original)
    lines = data.get("lines") if isinstance(data, dict) else None
    item: Any = next((x for x in lines or () if isinstance(x, dict) and x.get("id") == line_id),
                     None)
    if item is None:
        raise PersonaError(f"{p}: no line '{line_id}'", hint="check the line id")
    if "audio" in item:
        item["audio"] = audio
    else:
        keys = list(item)
        at = keys.index("text") + 1 if "text" in keys else len(keys)
        item.insert(at, "audio", audio)
    out = io.StringIO()
    yaml.dump(data, out)
    from voice_sim.paths import write_atomic

    write_atomic(p, out.getvalue())


def _indentation(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as used in ``text``."""
    mapping, sequence, offset = 2, 4, 2
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for a, b in itertools.pairwise(lines):
        if not a.rstrip().endswith(":") or a.lstrip().startswith("- "):
            continue
        ia = len(a) - len(a.lstrip())
        ib = len(b) - len(b.lstrip())
        if b.lstrip().startswith("- "):
            offset = ib - ia
            rest = b.lstrip()[1:]
            sequence = offset + 1 + (len(rest) - len(rest.lstrip()))
            break
    for a, b in itertools.pairwise(lines):
        if a.rstrip().endswith(":") and not a.lstrip().startswith("- ") \
                and not b.lstrip().startswith("- "):
            ia, ib = len(a) - len(a.lstrip()), len(b) - len(b.lstrip())
            if ib > ia:
                mapping = ib - ia
                break
    return mapping, max(sequence, offset + 2), offset


# --- the branching as Mermaid -------------------------------------------------------

def mermaid(persona: Persona) -> str:
    """The call's branching as a Mermaid flowchart."""
    def node(lid: str) -> str:
        return f"L_{lid}"

    def label(text: str, limit: int = 60) -> str:
        short = text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
        return short.replace('"', "#quot;")

    def edge_label(rule: Rule) -> str:
        return f'|"{label(rule.describe(), 80)}"|'

    out = ["flowchart TD",
           f'  START(["{label(persona.customer)} calls"]) --> {node(persona.start)}']
    used_ends: set[str] = set()
    for line in persona.lines.values():
        shape = ('(["', '"])') if line.end else ('["', '"]')
        out.append(f"  {node(line.id)}{shape[0]}{line.id}: {label(line.text)}{shape[1]}")
    for line in persona.lines.values():
        if line.end:
            used_ends.add(line.end)
            out.append(f"  {node(line.id)} -.-> E_{line.end}")
            continue
        for rule in line.next:
            target = f"E_{rule.goto}" if rule.goto in END_STATES else node(rule.goto)
            if rule.goto in END_STATES:
                used_ends.add(rule.goto)
            out.append(f"  {node(line.id)} -->{edge_label(rule)} {target}")
    for i, rule in enumerate(persona.always):
        target = f"E_{rule.goto}" if rule.goto in END_STATES else node(rule.goto)
        if rule.goto in END_STATES:
            used_ends.add(rule.goto)
        out.append(f'  ALWAYS{i}{{{{"after any line"}}}} -->{edge_label(rule)} {target}')
    limit = persona.on_max_turns
    if limit in END_STATES:
        used_ends.add(limit)
    limit_node = f"E_{limit}" if limit in END_STATES else node(limit)
    out.append(f'  MAXTURNS{{{{"after {persona.max_turns} turns"}}}} -.-> {limit_node}')
    for end in END_STATES:
        if end in used_ends:
            out.append(f"  E_{end}((({end})))")
    out.append("  classDef resolved fill:#d4f7d4,stroke:#2b8a3e")
    out.append("  classDef escalated fill:#fff3bf,stroke:#e67700")
    out.append("  classDef hung_up fill:#ffd8d8,stroke:#c92a2a")
    for end in END_STATES:
        members = [node(x.id) for x in persona.lines.values() if x.end == end]
        if end in used_ends:
            members.append(f"E_{end}")
        if members:
            out.append(f"  class {','.join(members)} {end}")
    return "\n".join(out) + "\n"


def iter_lines(persona: Persona, only: str | None = None) -> Iterator[Line]:
    """The persona's lines, or just ``only``; :class:`InputError` names the valid ids."""
    if only is None:
        yield from persona.lines.values()
        return
    if only not in persona.lines:
        ids = list(persona.lines)
        raise InputError(f"{persona.path}: no line '{only}'",
                         hint=f"{_suggest(only, ids)}lines: {', '.join(ids)}")
    yield persona.lines[only]
