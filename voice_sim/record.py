"""The session record: what one call leaves behind, typed, and ``session.json``.

:func:`voice_sim.session.run_call` builds a :class:`SessionRecord` as the call goes;
the report, the scorecard, the history, the call checks and the pytest plugin read
that object, never the JSON. ``session.json`` is written with
:meth:`SessionRecord.to_json` and read back with :func:`load_session` /
:meth:`SessionRecord.from_json`, which check every field the readers use once, and
name the first one that is wrong (``turns[2].delivery.calm_score``).

The layout is versioned (:data:`FORMAT`): a file of another version is refused with one
line naming both versions. Keys this version does not read (written by a newer stage,
or the delivery analysis' full measurements) are carried through unchanged, so reading
and writing a record back loses nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from voice_sim.engines import Word
from voice_sim.errors import InputError, SessionError

FORMAT = 1
"""Version of the ``session.json`` layout; bumped on incompatible changes."""

FILE_NAME = "session.json"

_EMPTY: Mapping[str, Any] = MappingProxyType({})

SAME_MOMENT_S = 0.05
"""Seconds from a reply's start within which the trainee going on is said to be at the
same moment (the barge-in's onset is known to a 20 ms block or so)."""


# --- reading JSON, checked once ---------------------------------------------------------


class _Fields:
    """Typed access to one JSON object, raising SessionError that names the field."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        self.source = source
        self.where = where
        if not isinstance(data, Mapping):
            self.fail(where or "the record", f"expected an object, not {_kind(data)}")
        self.data: Mapping[str, Any] = data

    def fail(self, where: str, problem: str) -> NoReturn:
        raise SessionError(f"{self.source}: {where}: {problem}",
                           hint="the session file is damaged or was edited by hand; "
                                "re-run the call")

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any = None, *,
            required: bool = False) -> Any:
        """``data[key]`` when it is one of ``kinds`` (numbers are never booleans);
        ``default`` when absent or null, unless ``required``."""
        v = self.data.get(key)
        if v is None:
            if required:
                self.fail(self._at(key), "missing")
            return default
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        number = float in kinds or int in kinds
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds and number):
            self.fail(self._at(key), f"expected {_words(kinds)}, not {_kind(v)}")
        return v

    def num(self, key: str, default: float | None = None, *, required: bool = False
            ) -> float | None:
        v = self.get(key, (int, float), default, required=required)
        return None if v is None else float(v)

    def text(self, key: str, default: str | None = None, *, required: bool = False
             ) -> str | None:
        v: str | None = self.get(key, str, default, required=required)
        return v

    def sub(self, key: str) -> _Fields:
        """The object at ``key`` (an empty one when absent or null)."""
        v = self.data.get(key)
        return _Fields({} if v is None else v, self._at(key), self.source)

    def items(self, key: str) -> list[_Fields]:
        """The list of objects at ``key`` (empty when absent or null)."""
        return [_Fields(v, f"{self._at(key)}[{i}]", self.source)
                for i, v in enumerate(self.list(key))]

    def list(self, key: str, kinds: type | tuple[type, ...] | None = None) -> list[Any]:
        """The list at ``key`` (empty when absent or null), each item one of ``kinds``."""
        v = self.get(key, list, [])
        if kinds is None:
            return list(v)
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        for i, item in enumerate(v):
            if not isinstance(item, kinds) or (isinstance(item, bool) and bool not in kinds):
                self.fail(f"{self._at(key)}[{i}]", f"expected {_words(kinds)}, not {_kind(item)}")
        return list(v)

    def rest(self, known: Sequence[str]) -> Mapping[str, Any]:
        """The keys not in ``known``, to be written back unchanged."""
        return MappingProxyType({k: v for k, v in self.data.items() if k not in known})


def _kind(v: Any) -> str:
    return "null" if v is None else {bool: "true/false", int: "a number", float: "a number",
                                     str: "text", list: "a list", dict: "an object"}.get(
        type(v), type(v).__name__)


def _words(kinds: tuple[type, ...]) -> str:
    names = {int: "a number", float: "a number", str: "text", dict: "an object",
             list: "a list", bool: "true/false", type(None): "null"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _frozen(data: Any) -> Any:
    """A JSON value made read-only (objects as mappings, lists as tuples)."""
    if isinstance(data, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in data.items()})
    if isinstance(data, list | tuple):
        return tuple(_frozen(v) for v in data)
    return data


def _thawed(data: Any) -> Any:
    """The JSON value of :func:`_frozen` data."""
    if isinstance(data, Mapping):
        return {k: _thawed(v) for k, v in data.items()}
    if isinstance(data, tuple | list):
        return [_thawed(v) for v in data]
    return data


# --- the parts of a turn ------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """A step or pitfall found in an answer, with the words that triggered it."""

    id: str
    kind: str
    """``step`` or ``pitfall``."""
    evidence: str
    span: tuple[int, int] | None
    """Characters of the transcript the evidence covers (None when unknown)."""
    start_s: float | None = None
    """Seconds into the answer where the evidence starts (None without word times)."""
    end_s: float | None = None
    note: str = ""
    """Why it did not count (suppressed finds only)."""
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    """Keys of the scorer's JSON this record does not read (rule, weight, where)."""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "kind": self.kind, "evidence": self.evidence,
                             "span": None if self.span is None else list(self.span),
                             "start_s": self.start_s, "end_s": self.end_s,
                             **_thawed(self.extra)}
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "evidence",
                  source: str = FILE_NAME) -> Evidence:
        """Check and type one detection's JSON (the scorer's ``Detection.to_json``)."""
        return cls.read(_Fields(data, where, source))

    @classmethod
    def read(cls, f: _Fields) -> Evidence:
        span = f.list("span", (int, float))
        return cls(id=f.text("id", required=True) or "", kind=f.text("kind", "step") or "step",
                   evidence=f.text("evidence", "") or "",
                   span=(int(span[0]), int(span[1])) if len(span) == 2 else None,
                   start_s=f.num("start_s"), end_s=f.num("end_s"), note=f.text("note", "") or "",
                   extra=_frozen(f.rest(("id", "kind", "evidence", "span", "start_s", "end_s",
                                         "note"))))


@dataclass(frozen=True)
class DeliveryRecord:
    """The delivery verdict of one answer: the parts voice-sim reads back, typed, and the
    analysis' full JSON (:meth:`voice_sim.delivery.Delivery.to_json`) carried verbatim."""

    calm: bool
    calm_score: float | None
    """0-100."""
    reasons: tuple[str, ...]
    duration_s: float | None
    """Seconds of audio."""
    median_hz: float | None
    shift_semitones: float | None
    """Median pitch against the calm baseline (None without one)."""
    rms_dbfs: float | None
    shift_db: float | None
    """Loudness against the calm baseline (None without one)."""
    pace_ratio: float | None
    """Syllable rate against the calm baseline (None without one)."""
    wpm: float | None
    wpm_from_syllables: float | None
    talk_s: float | None
    """Seconds the trainee talked."""
    contour_times: tuple[float, ...] | None
    """Seconds of each pitch frame (None: no contour was recorded)."""
    contour_f0: tuple[float | None, ...]
    """Hz per frame, None where unvoiced."""
    band_hz: tuple[float, float] | None
    """The trainee's calm pitch band when the analysis recorded one."""
    baseline: Mapping[str, Any] | None
    """The calm baseline the answer was judged against (its JSON), or None."""
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    """The analysis' full JSON: what :meth:`to_json` writes."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = _thawed(self.data)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "delivery",
                  source: str = FILE_NAME) -> DeliveryRecord:
        """Check and type the analysis' JSON."""
        return cls.read(_Fields(data, where, source))

    @classmethod
    def read(cls, f: _Fields) -> DeliveryRecord:
        contour = f.sub("contour")
        times = contour.list("times", (int, float)) if "times" in contour.data else None
        f0 = [None if v is None else float(v) for v in contour.list("f0_hz", (int, float,
                                                                              type(None)))]
        band: tuple[float, float] | None = None
        for key in ("band_hz", "calm_band_hz", "band"):
            b = contour.data.get(key)
            if isinstance(b, list) and len(b) == 2 and all(isinstance(v, int | float)
                                                           for v in b):
                band = (float(b[0]), float(b[1]))
                break
        base = f.get("baseline", dict)
        pitch, loud, pace = f.sub("pitch"), f.sub("loudness"), f.sub("pace")
        return cls(calm=bool(f.get("calm", bool, False)), calm_score=f.num("calm_score"),
                   reasons=tuple(str(r) for r in f.list("reasons")),
                   duration_s=f.num("duration_s"), median_hz=pitch.num("median_hz"),
                   shift_semitones=pitch.num("shift_semitones"),
                   rms_dbfs=loud.num("rms_dbfs"), shift_db=loud.num("shift_db"),
                   pace_ratio=pace.num("ratio"), wpm=pace.num("wpm"),
                   wpm_from_syllables=pace.num("wpm_from_syllables"),
                   talk_s=f.sub("talk").num("seconds"),
                   contour_times=None if times is None else tuple(float(t) for t in times),
                   contour_f0=tuple(f0), band_hz=band,
                   baseline=None if base is None else _frozen(base), data=_frozen(f.data))


@dataclass(frozen=True)
class TurnScoreRecord:
    """A turn's content score with the reasons."""

    score: float
    """0-100."""
    explanation: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    """The scorer's other keys (expected, earned, possible, penalty)."""

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, **_thawed(self.extra),
                "explanation": list(self.explanation)}


@dataclass(frozen=True)
class InterruptionRecord:
    """The trainee talked over the customer's line (the turn's ``interruption``, as
    :meth:`voice_sim.bargein.Interruption.to_json` writes it): a delivery fault."""

    at_s: float
    """Seconds into the customer's line when the trainee began."""
    overlap_s: float
    """Seconds both were talking."""
    finished_sentence: bool
    """True when the customer finished the sentence rather than stopping at once."""
    line_s: float | None
    """Seconds the whole line would have lasted."""
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    """The other keys (detect_s), written back unchanged."""

    def describe(self) -> str:
        """What happened, in the trainee's terms, with the times."""
        then = "they finished their sentence" if self.finished_sentence else "they stopped"
        return (f"you talked over the customer {self.at_s:.1f} s into their line "
                f"(both talking for {self.overlap_s:.1f} s); {then}")

    def to_json(self) -> dict[str, Any]:
        return {"at_s": self.at_s, "overlap_s": self.overlap_s,
                **_thawed(self.extra), "finished_sentence": self.finished_sentence,
                "line_s": self.line_s}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "interruption",
                  source: str = FILE_NAME) -> InterruptionRecord:
        """Check and type the barge-in's JSON."""
        return cls.read(_Fields(data, where, source))

    @classmethod
    def read(cls, f: _Fields) -> InterruptionRecord:
        return cls(at_s=f.num("at_s", required=True) or 0.0,
                   overlap_s=f.num("overlap_s", required=True) or 0.0,
                   finished_sentence=bool(f.get("finished_sentence", bool, False)),
                   line_s=f.num("line_s"),
                   extra=_frozen(f.rest(("at_s", "overlap_s", "finished_sentence",
                                         "line_s"))))


@dataclass(frozen=True)
class YieldRecord:
    """A reply of the customer's that cut the trainee off at a pause and gave way when
    they went on (one entry of the turn's ``yielded``, as
    :meth:`voice_sim.bargein.Yield.to_json` writes it). The system cut in too early, not
    the trainee: it is shown, never scored."""

    line: str
    """Id of the reply that gave way (undone: the call went on from the whole answer)."""
    resumed_s: float
    """Seconds from the reply's start to the trainee going on (negative: before it)."""
    played_s: float
    """Seconds of the reply played before it stopped (0: it never sounded)."""
    pause_s: float | None
    """Seconds the trainee paused before going on (None: not known)."""
    line_s: float | None
    """Seconds the whole reply would have lasted."""
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    """The other keys (detect_s), written back unchanged."""

    @property
    def sounded(self) -> bool:
        """The trainee heard some of the reply before it gave way."""
        return self.played_s > 0

    @property
    def reply_after_s(self) -> float | None:
        """Seconds of the trainee's pause after which the reply began (None: unknown)."""
        return None if self.pause_s is None else max(0.0, self.pause_s - self.resumed_s)

    def describe(self) -> str:
        """What happened, in the trainee's terms, with the times."""
        if not self.sounded:
            pause = "" if self.pause_s is None else f" after a {self.pause_s:.1f} s pause"
            return (f"you went on{pause} just as the customer was about to reply; "
                    "they held the reply back")
        after = self.reply_after_s
        pause = "" if after is None else f" after a {after:.1f} s pause"
        if self.resumed_s < SAME_MOMENT_S:
            return f"the customer started to reply{pause} just as you went on; they gave way"
        return (f"the customer started to reply{pause}; you went on "
                f"{self.resumed_s:.1f} s into it and they gave way")

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "resumed_s": self.resumed_s, "played_s": self.played_s,
                **_thawed(self.extra), "line_s": self.line_s, "pause_s": self.pause_s}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "yielded",
                  source: str = FILE_NAME) -> YieldRecord:
        """Check and type the barge-in's JSON."""
        return cls.read(_Fields(data, where, source))

    @classmethod
    def read(cls, f: _Fields) -> YieldRecord:
        return cls(line=f.text("line", "") or "", resumed_s=f.num("resumed_s", required=True)
                   or 0.0, played_s=f.num("played_s", 0.0) or 0.0, pause_s=f.num("pause_s"),
                   line_s=f.num("line_s"),
                   extra=_frozen(f.rest(("line", "resumed_s", "played_s", "line_s",
                                         "pause_s"))))


YIELD_NOTE = "the customer replied too soon: not counted against you"
"""Said beside every yield where a trainee reads it (scorecard, report, live call)."""


@dataclass(frozen=True)
class TurnRecord:
    """One customer line and the trainee's answer to it, as recorded."""

    index: int
    """1 for the first answer."""
    line: str
    """Id of the customer's line."""
    customer_text: str
    customer_audio: str | None
    """File name of the customer's audio in the session folder."""
    expects: tuple[str, ...]
    """Steps the customer's line asked for."""
    answer_audio: str | None
    """File name of the answer's audio in the session folder."""
    answer_source: str
    end_reason: str
    transcript: str
    words: tuple[Word, ...]
    reply: str | None
    """The reply as the scorer read it (None in old records: the transcript)."""
    steps: tuple[Evidence, ...]
    pitfalls: tuple[Evidence, ...]
    suppressed: tuple[Evidence, ...]
    delivery: DeliveryRecord
    turn_score: TurnScoreRecord
    mood_before: float
    mood_after: float
    move: Mapping[str, Any]
    """The mood machine's account of the turn (its JSON: reason, contributions, …)."""
    latency_s: float | None
    """Seconds from the end of the answer to the persona's next line (live only)."""
    hint: str
    interruption: InterruptionRecord | None = None
    """The trainee talked over the customer's line (live calls): a delivery fault."""
    yielded: tuple[YieldRecord, ...] = ()
    """Replies that cut the trainee off and gave way (live calls): not scored."""
    customer_extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False,
                                              repr=False)
    """Keys of ``customer`` this version does not read, written back unchanged."""
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    """Keys this version does not read, written back unchanged."""

    @property
    def heard(self) -> frozenset[str]:
        """Every step and pitfall id found."""
        return frozenset(d.id for d in (*self.steps, *self.pitfalls))

    @property
    def move_reason(self) -> str:
        return str(self.move.get("reason") or "")

    def to_json(self) -> dict[str, Any]:
        """The turn's entry in ``session.json``."""
        return {
            "index": self.index,
            "customer": {"line": self.line, "text": self.customer_text,
                         "audio": self.customer_audio, "expects": list(self.expects),
                         **_thawed(self.customer_extra)},
            "answer_audio": self.answer_audio,
            "answer_source": self.answer_source,
            "end_reason": self.end_reason,
            "transcript": self.transcript,
            "words": [{"word": w.word, "start": w.start, "end": w.end, "conf": w.conf}
                      for w in self.words],
            **({} if self.reply is None else {"reply": self.reply}),
            "steps": [d.to_json() for d in self.steps],
            "pitfalls": [d.to_json() for d in self.pitfalls],
            "suppressed": [d.to_json() for d in self.suppressed],
            "delivery": self.delivery.to_json(),
            "turn_score": self.turn_score.to_json(),
            "mood_before": self.mood_before,
            "mood_after": self.mood_after,
            "move": _thawed(self.move),
            "latency_s": self.latency_s,
            "hint": self.hint,
            "interruption": None if self.interruption is None else self.interruption.to_json(),
            **_thawed(self.extra),
            "yielded": [y.to_json() for y in self.yielded],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], n: int = 1,
                  source: str = FILE_NAME) -> TurnRecord:
        """Check and type one turn's JSON (as :meth:`voice_sim.session.Turn.to_json`
        writes it)."""
        return cls.read(_Fields(data, f"turns[{n - 1}]", source), n)

    @classmethod
    def read(cls, f: _Fields, n: int) -> TurnRecord:
        c = f.sub("customer")
        ts = f.sub("turn_score")
        known = ("index", "customer", "answer_audio", "answer_source", "end_reason",
                 "transcript", "words", "reply", "steps", "pitfalls", "suppressed",
                 "delivery", "turn_score", "mood_before", "mood_after", "move", "latency_s",
                 "hint", "interruption", "yielded")
        cut = f.sub("interruption")
        words = tuple(Word(word=w.text("word", "") or "", start=w.num("start", 0.0) or 0.0,
                               end=w.num("end", 0.0) or 0.0, conf=w.num("conf"))
                      for w in f.items("words"))
        return cls(
            index=int(f.get("index", int, n)), line=c.text("line", "") or "",
            customer_text=c.text("text", "") or "", customer_audio=c.text("audio"),
            expects=tuple(c.list("expects", str)), answer_audio=f.text("answer_audio"),
            answer_source=f.text("answer_source", "") or "",
            end_reason=f.text("end_reason", "") or "", transcript=f.text("transcript", "") or "",
            words=words, reply=f.text("reply"),
            steps=tuple(Evidence.read(d) for d in f.items("steps")),
            pitfalls=tuple(Evidence.read(d) for d in f.items("pitfalls")),
            suppressed=tuple(Evidence.read(d) for d in f.items("suppressed")),
            delivery=DeliveryRecord.read(f.sub("delivery")),
            turn_score=TurnScoreRecord(score=ts.num("score", 0.0) or 0.0,
                                       explanation=tuple(str(x) for x in
                                                         ts.list("explanation")),
                                       extra=_frozen(ts.rest(("score", "explanation")))),
            mood_before=f.num("mood_before", required=True) or 0.0,
            mood_after=f.num("mood_after", required=True) or 0.0,
            move=_frozen(f.get("move", dict, {})), latency_s=f.num("latency_s"),
            hint=f.text("hint", "") or "",
            interruption=InterruptionRecord.read(cut) if cut.data else None,
            yielded=tuple(YieldRecord.read(y) for y in f.items("yielded")),
            customer_extra=_frozen(c.rest(("line", "text", "audio", "expects"))),
            extra=_frozen(f.rest(known)))


@dataclass(frozen=True)
class Closing:
    """The customer's last line, said after the final answer."""

    line: str
    text: str
    audio: str | None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    """Keys this version does not read, written back unchanged."""

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "text": self.text, "audio": self.audio,
                **_thawed(self.extra)}


# --- the session ----------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRecord:
    """One call: who, how it went, and every turn."""

    status: str
    """``in_progress``, ``complete`` or ``failed``."""
    mode: str
    """``practice``, ``run`` or ``demo``."""
    persona: str
    """Persona id."""
    persona_title: str
    persona_path: str | None
    session_dir: str
    """The session folder when the call was recorded."""
    outcome: str | None
    """One of :data:`voice_sim.steps.OUTCOMES`, or None while the call goes on."""
    score: float
    """0-100: the mean of the turn scores."""
    engine: str | None
    model: str | None
    baseline: str | None
    """Where the calm baseline came from, or None (population defaults)."""
    coach: str
    started_at: str
    """ISO 8601 with the UTC offset."""
    duration_s: float | None
    start_mood: float | None
    mood: float | None
    """The customer's anger at the end (or now), 0-10."""
    turns: tuple[TurnRecord, ...]
    closing: Closing | None
    hints: tuple[str, ...]
    practise_next: tuple[str, ...]
    error: str | None
    interrupted: bool
    """Stopped by Ctrl-C."""
    format: int = FORMAT
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    """Keys this version does not read, written back unchanged."""

    @property
    def calm_turns(self) -> int:
        return sum(1 for t in self.turns if t.delivery.calm)

    @property
    def talked_over(self) -> int:
        """Turns in which the trainee talked over the customer."""
        return sum(1 for t in self.turns if t.interruption is not None)

    @property
    def yields(self) -> int:
        """Replies that cut in too soon and gave way, over the call (not scored)."""
        return sum(len(t.yielded) for t in self.turns)

    def to_json(self) -> dict[str, Any]:
        """Exactly what ``session.json`` holds."""
        return {
            "format": self.format, "status": self.status, "mode": self.mode,
            "persona": self.persona, "persona_title": self.persona_title,
            "persona_path": self.persona_path, "session_dir": self.session_dir,
            "outcome": self.outcome, "score": self.score, "engine": self.engine,
            "model": self.model, "baseline": self.baseline, "coach": self.coach,
            "started_at": self.started_at, "duration_s": self.duration_s,
            "start_mood": self.start_mood, "mood": self.mood,
            "turns": [t.to_json() for t in self.turns],
            "closing": None if self.closing is None else self.closing.to_json(),
            "hints": list(self.hints), "practise_next": list(self.practise_next),
            "error": self.error, "interrupted": self.interrupted,
            **_thawed(self.extra),
        }

    @classmethod
    def from_json(cls, data: Any, source: str = FILE_NAME) -> SessionRecord:
        """Check and type a ``session.json`` object; SessionError names the first field
        that is wrong, or the version when it is not this one."""
        if not isinstance(data, Mapping) or "turns" not in data or "persona" not in data:
            raise SessionError(f"{source}: not a voice-sim session record (no persona/turns)",
                               hint="name a folder written by voice-sim practice, run or demo")
        f = _Fields(data, "", source)
        version = f.get("format", int, FORMAT)
        if version != FORMAT:
            raise SessionError(f"{source}: session format {version}, this voice-sim reads "
                               f"format {FORMAT}", hint="open it with the voice-sim version "
                               "that wrote it, or re-run the call")
        persona = f.text("persona", required=True) or ""
        # The turns first: a damaged turn is the likelier problem, and the one to name.
        turns = tuple(TurnRecord.read(t, i + 1) for i, t in enumerate(f.items("turns")))
        c = f.sub("closing")
        known = tuple(x.name for x in fields(cls) if x.name != "extra")  # a key per field
        return cls(
            status=f.text("status", "") or "", mode=f.text("mode", "") or "", persona=persona,
            persona_title=f.text("persona_title") or persona, persona_path=f.text("persona_path"),
            session_dir=f.text("session_dir", required=True) or "",
            outcome=f.text("outcome"), score=f.num("score", required=True) or 0.0,
            engine=f.text("engine"), model=f.text("model"), baseline=f.text("baseline"),
            coach=f.text("coach", "") or "", started_at=f.text("started_at", required=True) or "",
            duration_s=f.num("duration_s"), start_mood=f.num("start_mood"), mood=f.num("mood"),
            turns=turns,
            closing=None if not c.data else Closing(
                line=c.text("line", "") or "", text=c.text("text", "") or "",
                audio=c.text("audio"), extra=_frozen(c.rest(("line", "text", "audio")))),
            hints=tuple(str(h) for h in f.list("hints")),
            practise_next=tuple(str(h) for h in f.list("practise_next")),
            error=f.text("error"), interrupted=bool(f.get("interrupted", bool, False)),
            format=version, extra=_frozen(f.rest(known)))

    def with_dir(self, session_dir: str | os.PathLike[str]) -> SessionRecord:
        """The same record, placed in ``session_dir`` (a folder that was moved)."""
        from dataclasses import replace

        return replace(self, session_dir=str(session_dir))


def load_session(session_dir: str | os.PathLike[str]) -> SessionRecord:
    """Read ``session.json`` from a session folder (or the file itself), with one clear
    error for anything that is not a session this version can read."""
    d = Path(session_dir)
    if not d.exists():
        raise InputError(f"{d}: no such folder", hint="name a session folder (voice-sim "
                         "prints its path at the end of every call)")
    f = d / FILE_NAME if d.is_dir() else d
    if not f.is_file():
        raise InputError(f"{d}: not a session folder (no {FILE_NAME} in it)",
                         hint="name a folder written by voice-sim practice, run or demo")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except OSError as e:
        raise SessionError(f"{f}: cannot read ({e.strerror})", hint="check the file") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" (line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise SessionError(f"{f}: not valid JSON{where}",
                           hint="the session file is damaged; re-run the call") from e
    return SessionRecord.from_json(data, str(f))
