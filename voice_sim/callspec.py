"""Expected outcomes for headless calls: typed call results, checks and call specs.

A headless call (:func:`run_answers`) drives a persona through
:func:`voice_sim.session.run_call` with prerecorded answers and returns a
:class:`CallResult`: the session record as frozen dataclasses. The ``check_*``
functions compare a result with one expectation and return a readable failure (or
None); the ``assert_*`` helpers raise :class:`AssertionError` with the same words.

A call spec (``NAME.call.yaml``) states the same expectations in YAML, so a trainer can
add a regression test without writing Python::

    persona: double-billing          # id, or a file path relative to this spec
    answers: good-call               # folder of 01.wav, 02.wav, … relative to this spec
    baseline: calm-baseline.wav      # optional: a calm reading by the same speaker
    engine: whisper                  # optional: auto, vosk or whisper
    expect:
      outcome: resolved
      min_score: 70
      turns:
        1: {steps: [empathize, apologize], calm: true}
        3: {line: when_money, steps: [set_expectations], no_pitfalls: true}

The pytest plugin (:mod:`voice_sim.pytest_plugin`) collects these files as tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.engines import ENGINE_NAMES
from voice_sim.errors import InputError
from voice_sim.steps import OUTCOMES, PITFALL_IDS, WORD_STEP_IDS
from voice_sim.yamlfile import Checker, FileProblems, Problem, load_checked, position, suggest

if TYPE_CHECKING:
    from voice_sim.engines import Engine
    from voice_sim.record import SessionRecord, TurnRecord

SPEC_SUFFIX = ".call.yaml"
"""File names ending like this are call specs (collected by the pytest plugin)."""



# --- the typed result ------------------------------------------------------------------


@dataclass(frozen=True)
class TurnResult:
    """One answered customer line, as the session recorded it."""

    index: int
    """1 for the first answer."""
    line: str
    """Id of the customer line this turn answered."""
    customer: str
    """What the customer said."""
    transcript: str
    """What the speech engine heard in the answer."""
    steps: tuple[str, ...]
    """De-escalation step ids found in the words."""
    pitfalls: tuple[str, ...]
    """Pitfall ids found in the words."""
    evidence: tuple[tuple[str, str], ...]
    """(id, the words that triggered it) for every step and pitfall found."""
    expects: tuple[str, ...]
    """Steps the persona's line asked for."""
    score: int
    """Turn score, 0-100."""
    calm: bool
    """The delivery verdict."""
    calm_score: int
    """0-100."""
    reasons: tuple[str, ...]
    """The delivery verdict's reasons in words, most serious first."""
    pitch_shift_semitones: float | None
    """Median pitch against the calm baseline (None without a baseline)."""
    loudness_shift_db: float | None
    """Loudness against the calm baseline (None without a baseline)."""
    wpm: float | None
    """Words per minute over speaking time (None when unknown)."""
    mood_before: float
    mood_after: float
    answer_audio: Path
    """The answer's audio in the session folder."""

    def heard(self, id: str) -> str | None:
        """The words that triggered step or pitfall ``id``, or None when it was not found."""
        return next((words for i, words in self.evidence if i == id), None)


@dataclass(frozen=True)
class CallResult:
    """A finished headless call: outcome, score, the engine used and every turn."""

    persona: str
    """Persona id."""
    outcome: str
    """One of :data:`voice_sim.steps.OUTCOMES`."""
    score: float
    """Session score, 0-100."""
    engine: str
    """The speech engine that transcribed the answers (``vosk`` or ``whisper``)."""
    model: str
    """The model it loaded."""
    baseline: str | None
    """Where the calm baseline came from, or None (population defaults)."""
    session_dir: Path
    turns: tuple[TurnResult, ...]
    closing_line: str | None
    """The customer's last line when the call ended by itself, else None."""
    final_mood: float
    """The customer's anger at the end, 0-10."""
    record: SessionRecord | None = field(default=None, compare=False, repr=False)
    """The whole session record, for checks the fields above do not cover."""

    @classmethod
    def from_record(cls, record: SessionRecord) -> CallResult:
        """The call checks' view of a session record (as :func:`run_call` returns it)."""
        folder = Path(record.session_dir)
        return cls(persona=record.persona, outcome=record.outcome or "incomplete",
                   score=record.score, engine=record.engine or "", model=record.model or "",
                   baseline=record.baseline, session_dir=folder,
                   turns=tuple(_turn_result(t, folder) for t in record.turns),
                   closing_line=record.closing.line if record.closing else None,
                   final_mood=record.mood if record.mood is not None else 0.0, record=record)

    @classmethod
    def load(cls, session_dir: str | os.PathLike[str]) -> CallResult:
        """Read a session folder's ``session.json``."""
        from voice_sim.record import load_session

        return cls.from_record(load_session(session_dir))

    def turn(self, n: int) -> TurnResult:
        """Turn ``n`` (1-based); AssertionError saying how the call went when it has none."""
        if 1 <= n <= len(self.turns):
            return self.turns[n - 1]
        raise AssertionError(f"turn {n} expected — {self._ended()}")

    def _ended(self) -> str:
        count = f"{len(self.turns)} turn{'s' if len(self.turns) != 1 else ''}"
        last = f", last customer line {self.closing_line}" if self.closing_line else ""
        return f"the call ended {self.outcome} after {count}{last}"


def _turn_result(t: TurnRecord, folder: Path) -> TurnResult:
    d = t.delivery
    return TurnResult(
        index=t.index, line=t.line, customer=t.customer_text, transcript=t.transcript,
        steps=tuple(x.id for x in t.steps), pitfalls=tuple(x.id for x in t.pitfalls),
        evidence=tuple((x.id, x.evidence) for x in (*t.steps, *t.pitfalls)),
        expects=t.expects, score=int(t.turn_score.score), calm=d.calm,
        calm_score=int(d.calm_score or 0), reasons=d.reasons,
        pitch_shift_semitones=d.shift_semitones, loudness_shift_db=d.shift_db, wpm=d.wpm,
        mood_before=t.mood_before, mood_after=t.mood_after,
        answer_audio=folder / (t.answer_audio or ""))


# --- running a call headless -------------------------------------------------------------


def run_answers(persona: str | os.PathLike[str], answers: str | os.PathLike[str], *,
                engine: str | Engine = "auto", model: str | None = None,
                baseline: str | os.PathLike[str] | None = None,
                rubric: str | os.PathLike[str] | None = None,
                out_root: str | os.PathLike[str] | None = None,
                seed: int | None = 0) -> CallResult:
    """Run ``persona`` against the answer files in ``answers`` (01.wav, 02.wav, … in name
    order) with no sound card, and return the typed result.

    ``engine`` is a name (``auto``, ``vosk``, ``whisper``) or a loaded engine; a missing
    model raises :class:`~voice_sim.errors.ModelError`. ``baseline`` is a calm reading by
    the same speaker. The session folder goes under ``out_root`` (default: the sessions
    folder). With no ``rubric``, a ``rubric.yaml`` beside the persona file is used.
    ``seed`` picks the customer's phrasings: fixed by default, so a test hears the same
    lines on every run (None draws one, as ``voice-sim run`` does).
    """
    from voice_sim.engines import get_engine
    from voice_sim.persona import load_persona
    from voice_sim.rubric import load_rubric, rubric_beside
    from voice_sim.session import CallOptions, FileTrainee, SilentSpeaker, run_call

    trainee = FileTrainee(answers)
    p = load_persona(persona)
    if rubric is None:
        rubric = rubric_beside(p.path)  # a trainer's rubric.yaml beside the persona
    eng = get_engine(engine, model) if isinstance(engine, str) else engine
    calm = _baseline(baseline, eng) if baseline is not None else None
    options = CallOptions(engine=eng, baseline=calm,
                          baseline_source=None if baseline is None else str(baseline),
                          rubric=load_rubric(None if rubric is None else str(rubric)),
                          coach="after", out_root=None if out_root is None else Path(out_root),
                          mode="run", seed=seed)
    return CallResult.from_record(run_call(p, trainee, SilentSpeaker(), options).record)


def _baseline(path: str | os.PathLike[str], engine: Engine) -> Any:
    from voice_sim.audio import load_audio
    from voice_sim.delivery import Baseline

    samples = load_audio(path)
    return Baseline.from_audio(samples, engine.transcribe(samples))


# --- checks: one expectation each, a readable failure or None ----------------------------


def _q(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return f"\u201c{text if len(text) <= limit else text[:limit - 1] + '…'}\u201d"


def _found(t: TurnResult) -> str:
    ids = [*t.steps, *t.pitfalls]
    return f"found: {', '.join(ids)}" if ids else "found no step or pitfall"


def check_outcome(result: CallResult, expected: str) -> str | None:
    """``expected outcome resolved — the call ended hung_up after 2 turns, …``."""
    if result.outcome == expected:
        return None
    last = result.turns[-1] if result.turns else None
    said = f"; last answer heard: {_q(last.transcript)}" if last else ""
    return (f"expected outcome {expected} — {result._ended()} "
            f"(mood {result.final_mood:g}/10){said}")


def check_min_score(result: CallResult, minimum: float) -> str | None:
    """The session score is at least ``minimum``."""
    if result.score >= minimum:
        return None
    per = ", ".join(f"turn {t.index}: {t.score}" for t in result.turns) or "no turns"
    return f"expected a score of at least {minimum:g} — got {result.score:g} ({per})"


def check_max_score(result: CallResult, maximum: float) -> str | None:
    """The session score is at most ``maximum`` (for calls that should go badly)."""
    if result.score <= maximum:
        return None
    per = ", ".join(f"turn {t.index}: {t.score}" for t in result.turns) or "no turns"
    return f"expected a score of at most {maximum:g} — got {result.score:g} ({per})"


def check_line(result: CallResult, turn: int, line: str) -> str | None:
    """Turn ``turn`` answered the customer line ``line``."""
    t = result.turn(turn)
    if t.line == line:
        return None
    return (f"expected turn {turn} to answer customer line {line} — it answered "
            f"{t.line}: {_q(t.customer, 100)}")


def _check_found(result: CallResult, turn: int, id: str, kind: str) -> str | None:
    """``expected step apologize in turn 2 — heard: "…" (found: …)``."""
    _known(id, WORD_STEP_IDS if kind == "step" else PITFALL_IDS, kind)
    t = result.turn(turn)
    if id in (t.steps if kind == "step" else t.pitfalls):
        return None
    return f"expected {kind} {id} in turn {turn} — heard: {_q(t.transcript)} ({_found(t)})"


def check_step(result: CallResult, turn: int, step: str) -> str | None:
    """``expected step apologize in turn 2 — heard: "…"``."""
    return _check_found(result, turn, step, "step")


def check_no_step(result: CallResult, turn: int, step: str) -> str | None:
    """Step ``step`` was not found in turn ``turn``."""
    _known(step, WORD_STEP_IDS, "step")
    t = result.turn(turn)
    if step not in t.steps:
        return None
    return (f"step {step} not expected in turn {turn} — found in {_q(t.heard(step) or '')}; "
            f"heard: {_q(t.transcript)}")


def check_pitfall(result: CallResult, turn: int, pitfall: str) -> str | None:
    """Pitfall ``pitfall`` was found in turn ``turn`` (for calls meant to go badly)."""
    return _check_found(result, turn, pitfall, "pitfall")


def check_no_pitfall(result: CallResult, turn: int, pitfall: str | None = None) -> str | None:
    """Turn ``turn`` holds no pitfall (or not ``pitfall``)."""
    if pitfall is not None:
        _known(pitfall, PITFALL_IDS, "pitfall")
    t = result.turn(turn)
    bad = [p for p in t.pitfalls if pitfall is None or p == pitfall]
    if not bad:
        return None
    what = f"pitfall {pitfall}" if pitfall else "no pitfall"
    found = "; ".join(f"{p} in {_q(t.heard(p) or '', 60)}" for p in bad)
    verb = "not expected" if pitfall else "expected"
    return f"{what} {verb} in turn {turn} — found {found}; heard: {_q(t.transcript)}"


def check_calm(result: CallResult, turn: int, calm: bool = True) -> str | None:
    """``calm expected in turn 3 — pitch +5.1 semitones above baseline, …`` (or, with
    ``calm=False``, that the delivery was judged agitated)."""
    t = result.turn(turn)
    if t.calm == calm:
        return None
    measures = []
    if t.pitch_shift_semitones is not None:
        s = t.pitch_shift_semitones
        measures.append(f"pitch {s:+.1f} semitones {'above' if s >= 0 else 'below'} baseline")
    if t.loudness_shift_db is not None:
        measures.append(f"loudness {t.loudness_shift_db:+.1f} dB against baseline")
    if t.wpm is not None:
        measures.append(f"{t.wpm:.0f} words per minute")
    if not calm:
        measures.append(f"judged calm (calm score {t.calm_score})")
    why = "; ".join(t.reasons) if t.reasons else "no reason given"
    head = "calm expected" if calm else "agitated (not calm) delivery expected"
    return (f"{head} in turn {turn} — {', '.join(measures) or 'no measures'}; "
            f"calm score {t.calm_score}: {why}")


def _known(id: str, valid: Sequence[str], kind: str) -> None:
    if id not in valid:
        raise InputError(f"unknown {kind} id {id!r}", hint=suggest(id, valid))


def _raise(message: str | None) -> None:
    if message is not None:
        raise AssertionError(message)


# --- assertion helpers ----------------------------------------------------------------


def assert_outcome(result: CallResult, outcome: str) -> None:
    """The call ended with ``outcome`` (resolved, escalated, hung_up, incomplete, quit)."""
    if outcome not in OUTCOMES:
        raise InputError(f"unknown outcome {outcome!r}", hint=suggest(outcome, OUTCOMES))
    _raise(check_outcome(result, outcome))


def assert_min_score(result: CallResult, minimum: float) -> None:
    """The session score is at least ``minimum`` (0-100)."""
    _raise(check_min_score(result, minimum))


def assert_max_score(result: CallResult, maximum: float) -> None:
    """The session score is at most ``maximum`` (0-100)."""
    _raise(check_max_score(result, maximum))


def assert_line(result: CallResult, turn: int, line: str) -> None:
    """Turn ``turn`` answered the customer line ``line``."""
    _raise(check_line(result, turn, line))


def assert_step(result: CallResult, turn: int, *steps: str) -> None:
    """Each of ``steps`` was found in turn ``turn`` (1-based)."""
    _raise("\n".join(m for s in steps if (m := check_step(result, turn, s))) or None)


def assert_no_step(result: CallResult, turn: int, *steps: str) -> None:
    """None of ``steps`` was found in turn ``turn``."""
    _raise("\n".join(m for s in steps if (m := check_no_step(result, turn, s))) or None)


def assert_pitfall(result: CallResult, turn: int, *pitfalls: str) -> None:
    """Each of ``pitfalls`` was found in turn ``turn``."""
    _raise("\n".join(m for p in pitfalls if (m := check_pitfall(result, turn, p))) or None)


def assert_no_pitfall(result: CallResult, turn: int, *pitfalls: str) -> None:
    """Turn ``turn`` holds none of ``pitfalls`` (none at all when none are named)."""
    if not pitfalls:
        _raise(check_no_pitfall(result, turn))
    _raise("\n".join(m for p in pitfalls if (m := check_no_pitfall(result, turn, p))) or None)


def assert_calm(result: CallResult, turn: int) -> None:
    """The delivery of turn ``turn`` was judged calm."""
    _raise(check_calm(result, turn, True))


def assert_agitated(result: CallResult, turn: int) -> None:
    """The delivery of turn ``turn`` was judged not calm."""
    _raise(check_calm(result, turn, False))


# --- call specs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnExpect:
    """What one turn of a call spec expects."""

    index: int
    line: str | None = None
    steps: tuple[str, ...] = ()
    not_steps: tuple[str, ...] = ()
    pitfalls: tuple[str, ...] = ()
    not_pitfalls: tuple[str, ...] = ()
    no_pitfalls: bool = False
    calm: bool | None = None
    at: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Field -> line in the spec file, so a failure points at what the trainer wrote."""


@dataclass(frozen=True)
class CallSpec:
    """A validated ``*.call.yaml``."""

    path: Path
    name: str
    """The file name without ``.call.yaml``."""
    persona: str
    """A persona id, or an absolute path to a persona file."""
    answers: Path
    baseline: Path | None = None
    engine: str | None = None
    model: str | None = None
    rubric: Path | None = None
    description: str = ""
    outcome: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    turns: tuple[TurnExpect, ...] = ()
    at: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Field -> line in the spec file."""


@dataclass(frozen=True)
class Failure:
    """One unmet expectation: where the spec states it, and what happened instead."""

    where: str
    """``file:line`` of the expectation."""
    message: str

    def text(self) -> str:
        """``file:line: message``."""
        return f"{self.where}: {self.message}"


class CallSpecError(FileProblems):
    """A call spec with problems; ``problems`` holds every one, with file:line:col."""

    what = "call spec"


_TOP = {"persona": "persona id, or a persona file relative to this spec",
        "answers": "folder of answer audio (01.wav, 02.wav, …) relative to this spec",
        "baseline": "a calm reading by the same speaker (audio file)",
        "engine": "auto, vosk or whisper", "model": "speech model folder for the engine",
        "rubric": "extra rubric file", "description": "what this call checks, in words",
        "expect": "the expected outcome, score and turns"}
_EXPECT = ("outcome", "min_score", "max_score", "turns")
_TURN = ("line", "steps", "not_steps", "pitfalls", "not_pitfalls", "no_pitfalls", "calm")




def load_spec(path: str | os.PathLike[str]) -> CallSpec:
    """Read and validate a call spec; :class:`CallSpecError` lists every problem with
    ``file:line:col``."""
    p = Path(path)
    data = load_checked(p, CallSpecError)
    checker = _SpecChecker(p)
    spec = checker.build(data)
    if checker.problems or spec is None:
        raise CallSpecError(checker.problems or [Problem(str(p), 0, 0, "", "invalid")])
    return spec


class _SpecChecker(Checker):
    """Collects every problem of a spec, each pointing at the key or value at fault."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.spec_path = path
        self.base = path.parent

    def build(self, data: Any) -> CallSpec | None:
        if data is None:
            self.problems.append(Problem(self.path, 0, 0, "", "the file is empty",
                                         "start from `voice-sim fixtures make`, or see the "
                                         "README's 'Testing your personas'"))
            return None
        if not isinstance(data, Mapping):
            self.add(data, None, "", "a call spec is a mapping of persona, answers, expect, …")
            return None
        self.unknown(data, "", tuple(_TOP))
        for required in ("persona", "answers", "expect"):
            if required not in data:
                self.add(data, None, required, f"missing (required): {_TOP[required]}",
                         f"add `{required}:`")
        persona = self.persona(data)
        answers = self.path_field(data, "answers", folder=True)
        baseline = self.path_field(data, "baseline", folder=False)
        rubric = self.path_field(data, "rubric", folder=False)
        model = self.path_field(data, "model", folder=True)
        engine = self.text(data, "engine", "")
        if engine is not None and engine not in ENGINE_NAMES:
            self.add(data, "engine", "engine", f"unknown speech engine {engine!r}",
                     suggest(engine, ENGINE_NAMES))
            engine = None
        description = self.text(data, "description", "") or ""
        expect = data.get("expect")
        outcome = min_score = max_score = None
        turns: list[TurnExpect] = []
        at = {k: position(data, k)[0] for k in data}
        if "expect" in data and not isinstance(expect, Mapping):
            self.add(data, "expect", "expect", "must be a mapping of outcome, min_score, "
                     "max_score, turns")
        elif isinstance(expect, Mapping):
            self.unknown(expect, "expect.", _EXPECT)
            at.update({f"expect.{k}": position(expect, k)[0] for k in expect})
            outcome = self.text(expect, "outcome", "expect.")
            if outcome is not None and outcome not in OUTCOMES:
                self.add(expect, "outcome", "expect.outcome", f"unknown outcome {outcome!r}",
                         suggest(outcome, OUTCOMES))
            min_score = self.score(expect, "min_score", "expect.")
            max_score = self.score(expect, "max_score", "expect.")
            if min_score is not None and max_score is not None and min_score > max_score:
                self.add(expect, "max_score", "expect.max_score",
                         f"max_score {max_score:g} is below min_score {min_score:g}")
            turns = self.turns(expect)
            if outcome is None and min_score is None and max_score is None and not turns:
                self.add(data, "expect", "expect", "nothing to check: no outcome, score or "
                         "turn expectation", "fill in at least `outcome:` (resolved, "
                         "escalated or hung_up)", at_value=False)
        if self.problems or persona is None or answers is None:
            return None
        p = self.spec_path
        name = p.name.removesuffix(SPEC_SUFFIX) if p.name.endswith(SPEC_SUFFIX) else p.stem
        return CallSpec(path=p, name=name, persona=persona, answers=answers,
                        baseline=baseline, engine=engine,
                        model=None if model is None else str(model), rubric=rubric,
                        description=description, outcome=outcome, min_score=min_score,
                        max_score=max_score, turns=tuple(turns), at=at)

    def persona(self, data: Mapping[str, Any]) -> str | None:
        from voice_sim.errors import VoiceSimError
        from voice_sim.persona import resolve_persona_path

        value = self.text(data, "persona", "")
        if value is None:
            return None
        looks_like_path = "/" in value or value.endswith((".yaml", ".yml"))
        candidate = self.base / value if looks_like_path else Path(value)
        try:
            found = resolve_persona_path(candidate if looks_like_path else value)
        except VoiceSimError as e:
            self.add(data, "persona", "persona", e.message, e.hint or "")
            return None
        return str(found.resolve()) if looks_like_path else value

    def path_field(self, data: Mapping[str, Any], key: str, *, folder: bool) -> Path | None:
        value = self.text(data, key, "")
        if value is None:
            return None
        p = (self.base / value).resolve()
        what = "folder" if folder else "file"
        if not p.exists():
            self.add(data, key, key, f"no such {what} {p}",
                     f"paths are relative to the spec's folder {self.base}")
            return None
        if folder != p.is_dir():
            self.add(data, key, key, f"{p} is not a {what}")
            return None
        return p

    def turns(self, expect: Mapping[str, Any]) -> list[TurnExpect]:
        node = expect.get("turns")
        if node is None:
            return []
        if not isinstance(node, Mapping):
            self.add(expect, "turns", "expect.turns", "must map turn numbers to expectations",
                     "e.g. `1: {steps: [empathize], calm: true}`")
            return []
        out = []
        for key, body in node.items():
            index = key if isinstance(key, int) and not isinstance(key, bool) else (
                int(key) if isinstance(key, str) and key.isdigit() else None)
            fld = f"expect.turns.{key}"
            if index is None or index < 1:
                self.add(node, key, fld, f"turn {key!r} is not a turn number",
                         "number the turns 1, 2, 3, … (1 = the first answer)", at_value=False)
                continue
            if not isinstance(body, Mapping):
                self.add(node, key, fld, "must be a mapping of steps, pitfalls, calm, line",
                         "e.g. `{steps: [empathize], calm: true}`")
                continue
            self.unknown(body, f"{fld}.", _TURN)
            at = {k: position(body, k)[0] for k in body}
            at[""] = position(node, key)[0]
            steps = {k: self.ids(body, k, fld, WORD_STEP_IDS, "step")
                     for k in ("steps", "not_steps")}
            pits = {k: self.ids(body, k, fld, PITFALL_IDS, "pitfall")
                    for k in ("pitfalls", "not_pitfalls")}
            flags = {k: self.flag(body, k, f"{fld}.") for k in ("no_pitfalls", "calm")}
            line = self.text(body, "line", f"{fld}.")
            if flags["no_pitfalls"] and pits["pitfalls"]:
                self.add(body, "no_pitfalls", f"{fld}.no_pitfalls",
                         "no_pitfalls contradicts the pitfalls listed in this turn")
            if not body:
                self.add(node, key, fld, "expects nothing", "list steps, pitfalls, calm or "
                         "line, or remove the turn", at_value=False)
            out.append(TurnExpect(index=index, line=line, steps=steps["steps"],
                                  not_steps=steps["not_steps"], pitfalls=pits["pitfalls"],
                                  not_pitfalls=pits["not_pitfalls"],
                                  no_pitfalls=bool(flags["no_pitfalls"]), calm=flags["calm"],
                                  at=at))
        return sorted(out, key=lambda t: t.index)

    def ids(self, body: Mapping[str, Any], key: str, fld: str, valid: Sequence[str],
            kind: str) -> tuple[str, ...]:
        if key not in body:
            return ()
        value = body[key]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            self.add(body, key, f"{fld}.{key}", f"must be a list of {kind} ids",
                     f"e.g. [{valid[0]}]")
            return ()
        out = []
        for i, item in enumerate(items):
            # A single id written without brackets points at the key's value.
            node, at = (body, key) if isinstance(value, str) else (items, i)
            if item == "stay_calm":
                self.add(node, at, f"{fld}.{key}",
                         "stay_calm is measured from the audio, not the words",
                         "use `calm: true` for this turn instead")
            elif item not in valid:
                self.add(node, at, f"{fld}.{key}", f"unknown {kind} id {item!r}",
                         suggest(str(item), valid))
            else:
                out.append(str(item))
        return tuple(out)

def evaluate(spec: CallSpec, result: CallResult) -> list[Failure]:
    """Every expectation of ``spec`` that ``result`` does not meet (empty: all met)."""
    failures: list[Failure] = []
    name = spec.path.name

    def add(line_no: int, message: str | None) -> None:
        if message:
            failures.append(Failure(f"{name}:{line_no}", message))

    if spec.outcome is not None:
        add(spec.at.get("expect.outcome", 0), check_outcome(result, spec.outcome))
    if spec.min_score is not None:
        add(spec.at.get("expect.min_score", 0), check_min_score(result, spec.min_score))
    if spec.max_score is not None:
        add(spec.at.get("expect.max_score", 0), check_max_score(result, spec.max_score))
    for te in spec.turns:
        if te.index > len(result.turns):
            add(te.at.get("", 0), f"turn {te.index} expected — {result._ended()}")
            continue
        if te.line is not None:
            add(te.at.get("line", 0), check_line(result, te.index, te.line))
        for s in te.steps:
            add(te.at.get("steps", 0), check_step(result, te.index, s))
        for s in te.not_steps:
            add(te.at.get("not_steps", 0), check_no_step(result, te.index, s))
        for p in te.pitfalls:
            add(te.at.get("pitfalls", 0), check_pitfall(result, te.index, p))
        for p in te.not_pitfalls:
            add(te.at.get("not_pitfalls", 0), check_no_pitfall(result, te.index, p))
        if te.no_pitfalls:
            add(te.at.get("no_pitfalls", 0), check_no_pitfall(result, te.index))
        if te.calm is not None:
            add(te.at.get("calm", 0), check_calm(result, te.index, te.calm))
    return failures
