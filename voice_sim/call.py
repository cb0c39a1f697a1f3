"""The call through a persona: the mood machine and the choice of the next line.

:class:`Call` is deterministic for a given seed: after each trainee reply the mood
moves by the weight of every detected step and pitfall, then the current line's rules
are tried in order and the first match picks the next line. Same replies (and the
same seed for the choice among a line's phrasings), same call.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from voice_sim.errors import PersonaError
from voice_sim.steps import ALL_IDS, END_STATES

if TYPE_CHECKING:
    from voice_sim.persona import Line, Persona, Rule
    from voice_sim.rubric import Rubric
    from voice_sim.speak import Voice

MOOD_MIN, MOOD_MAX = 0.0, 10.0
"""The anger scale: 0 calm, 10 furious."""

SEED_MAX = 2**31 - 1
"""Seeds are whole numbers 0..SEED_MAX (small enough to type, print and store anywhere)."""

_RATE, _PITCH, _VOLUME = (80, 450), (0, 99), (0.0, 1.0)
"""The voice ranges the mood may move a persona's voice within (as ``speak.Voice``)."""


def new_seed() -> int:
    """A fresh seed for a call that was not given one (recorded, so it can be replayed)."""
    return secrets.randbelow(SEED_MAX + 1)


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
    next_variant: int | None = None
    """Which phrasing of ``next_line`` the customer says (0: the line's ``text``)."""

    def to_json(self) -> dict[str, Any]:
        """JSON form for session files and reports."""
        return {"turn": self.turn, "line": self.line, "heard": sorted(self.heard),
                "mood_before": self.mood_before, "mood_after": self.mood_after,
                "contributions": [{"id": i, "mood": d} for i, d in self.contributions],
                "reason": self.reason, "next_line": self.next_line,
                "next_variant": self.next_variant, "outcome": self.outcome}


class Call:
    """The state of one call through a persona; :meth:`advance` once per trainee reply.

    ``seed`` picks among the phrasings of each line the customer says (a line said
    again takes a phrasing not used yet, while there is one). None draws a seed, kept
    in :attr:`seed` so the call can be replayed exactly.
    """

    def __init__(self, persona: Persona, rubric: Rubric | None = None, *,
                 seed: int | None = None) -> None:
        self.persona = persona
        self._rubric = rubric
        self.seed: int = new_seed() if seed is None else seed
        self._rng = random.Random(self.seed)
        self._said: dict[str, set[int]] = {}
        self.mood: float = persona.start_mood
        self.line: Line = self._phrase(persona.start_line)
        """The line the customer has just said (the one the trainee answers), with
        ``text`` the phrasing chosen for this call."""
        self.turn: int = 0
        """Replies given so far."""
        self.outcome: str | None = None
        self.heard_ever: frozenset[str] = frozenset()
        self.moves: list[Move] = []

    def _phrase(self, line: Line) -> Line:
        """``line`` with one of its phrasings, drawn from the seed; unused ones first."""
        texts = line.texts
        if len(texts) == 1:
            return line
        used = self._said.setdefault(line.id, set())
        fresh = [k for k in range(len(texts)) if k not in used] or list(range(len(texts)))
        k = fresh[self._rng.randrange(len(fresh))]
        used.add(k)
        return replace(line, text=texts[k], variant=k)

    def copy(self) -> Call:
        """An independent copy of the call's state: advancing it leaves this call as it
        is (a reply planned on partial words is checked on one; a reply that gave way to
        the trainee is undone from one, :meth:`restore`)."""
        import copy

        twin = copy.copy(self)
        twin._rng = random.Random()
        twin._rng.setstate(self._rng.getstate())
        twin._said = {k: set(v) for k, v in self._said.items()}
        twin.moves = list(self.moves)
        return twin

    def restore(self, earlier: Call) -> None:
        """Put the call back in the state ``earlier`` (a :meth:`copy`) was taken in."""
        self.__dict__.update(earlier.copy().__dict__)

    def go_to(self, line_id: str) -> Line:
        """Put the call on ``line_id`` (a phrasing drawn as if the customer had just
        said it): for trainers' and tests' walks that start mid-call."""
        self.line = self._phrase(self.persona.lines[line_id])
        return self.line

    def voice_for(self, line: Line, *, shift: int | None = None) -> Voice:
        """The voice ``line`` is spoken in at the current mood: the persona's voice, the
        line's own settings over it, moved by ``per_mood`` for every whole point of anger
        above (or below) the opening mood (``shift`` points instead, when given). Whole
        points keep the voices few, so the lines can be rendered before they are due."""
        p = self.persona
        own = line.voice
        if shift is None:
            shift = self.mood_shift
        per = p.voice_per_mood
        base = p.voice

        def move(value: float | None, default: float, step: float | None) -> float:
            return (default if value is None else value) + (step or 0.0) * shift

        rate = move(own.rate, base.rate, per.rate)
        pitch = move(own.pitch, base.pitch, per.pitch)
        volume = move(own.volume, base.volume, per.volume)
        return replace(base, rate=round(min(_RATE[1], max(_RATE[0], rate))),
                       pitch=round(min(_PITCH[1], max(_PITCH[0], pitch))),
                       volume=round(min(_VOLUME[1], max(_VOLUME[0], volume)), 2))

    @property
    def mood_shift(self) -> int:
        """Whole points of anger above (negative: below) the opening mood."""
        return round(self.mood - self.persona.start_mood)

    def upcoming(self, spread: int = 2) -> list[tuple[Line, Voice]]:
        """Every line the customer may say next, each phrasing, in the voices of the
        moods within ``spread`` points of now: what to render while the trainee answers."""
        p = self.persona
        targets = [r.goto for r in (*p.always, *self.line.next)] + [p.on_max_turns]
        said = [replace(p.lines[lid], text=text, variant=k)
                for lid in dict.fromkeys(t for t in targets if t in p.lines)
                for k, text in enumerate(p.lines[lid].texts)]
        out: list[tuple[Line, Voice]] = []
        now = self.mood_shift
        for d in sorted(range(-spread, spread + 1), key=abs):  # the likeliest moods first
            for line in said:
                pair = (line, self.voice_for(line, shift=now + d))
                if pair not in out:
                    out.append(pair)
        return out

    @property
    def voice(self) -> Voice:
        """The voice of the current line at the current mood."""
        return self.voice_for(self.line)

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
        variant: int | None = None
        outcome: str | None = target
        if target not in END_STATES:
            self.line = self._phrase(p.lines[target])
            next_line, outcome, variant = target, self.line.end, self.line.variant
        self.outcome = outcome
        move = Move(turn=self.turn, line=before_line, heard=frozen, mood_before=before,
                    mood_after=after, contributions=tuple(contributions), rule=rule,
                    reason=reason, next_line=next_line, outcome=outcome, next_variant=variant)
        self.moves.append(move)
        return move


def _ends(p: Persona, target: str) -> bool:
    return target in END_STATES or p.lines[target].end is not None


def _target_words(p: Persona, target: str) -> str:
    if target in END_STATES:
        return f"call ends: {target}"
    end = p.lines[target].end
    return f"line '{target}'" + (f" (then the call ends: {end})" if end else "")
