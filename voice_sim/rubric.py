"""Content scoring: which de-escalation steps and pitfalls a reply holds, with evidence.

The rubric is data. ``rubric.yaml`` beside this module defines, per id (the 11
word-level steps, the 4 pitfalls, and ``stay_calm`` for its weights only), phrase
*patterns*, plain-sentence *exemplars*, *not_if* exceptions, a turn-score ``weight``
and a ``mood`` change. A trainer file (``--rubric FILE``, or ``rubric.yaml`` beside a
persona, see :func:`rubric_beside`) extends it: its patterns, exemplars, class words
and synonyms are added; its ``weight``, ``mood`` and ``negation`` replace the built-in
ones; ``replace: true`` under an id drops the built-in phrases of that id.

Pattern language (matched against the normalised reply, see :mod:`voice_sim.textnorm`;
the pattern's own words are normalised the same way, so "don't" also matches "dont"
and "do not"): words in order; ``(a|b c)`` one of; ``[a|b]`` optional; ``word*`` a
word starting with ``word``; ``*`` any one word; ``...`` up to 4 words (``...8`` up to
8); ``(a|b)?`` same as ``[a|b]``; ``<name>`` a word class from ``classes:`` (``<num>``
is built in: number words); ``^`` / ``$`` start / end of the reply. An exemplar is a
sentence as a trainee might say it: its words must appear in order (content words by
stem), with up to two other words between each.

How a reply is read (:func:`score_reply`):

1. Every pattern and exemplar of every id is matched.
2. Negation: a match is dropped when a negator (``negation.words``: "not", "never",
   "no", ...) stands up to ``negation.window`` words before it with no clause break
   (``negation.breakers``: "but", "and", "so", ...) between, unless the match starts
   with its own subject or a question's auxiliary ("I ...", "we ...", "can you ...")
   or the negator opens an idiom ("no problem", "no wonder"). So "I won't transfer
   you" is not ``escalate`` and "I'm not going to refund anything" is not
   ``offer_solution``. Ids with ``negation: false`` skip this (``set_boundary``: "I
   won't accept insults"; ``blame_customer``: "I'm not refunding something you broke").
3. A match overlapping one of the id's ``not_if`` phrases is dropped ("sorry, what was
   that?" is not an apology).
4. Refusals (``refusal:`` patterns, "I can't refund ...") become ``set_expectations``
   when the reply also offers a solution or an escalation, and the pitfall ``excuse``
   ("refusing without an alternative") when it does not.
5. Words that make a pitfall cannot also count as a step ("I'm sorry you feel that
   way" is ``dismissive``, not an apology; "I don't understand why you're upset" is not
   empathy).
6. "But" clauses: ``apologize``, ``empathize`` and ``listen_reflect`` are voided when a
   contrast word (``contrast:`` "but", "however", "unfortunately", ...) follows within
   ten words and the clause after it holds a pitfall ("sorry, but that's our policy",
   "I understand, but there's nothing I can do"); the pitfall stands. When the clause
   after "but" holds an alternative instead ("I'm sorry, but I can't waive it; I can
   split it"), the step stands. Every other step survives a "but".
7. ``listen_reflect`` is judged against the customer's line. An *echo*: the reply
   shares at least ``reflect.min_shared`` content words with it (by stem, numbers
   included, ``reflect.synonyms`` merged, ``reflect.ignore`` words and reference
   numbers of three or more number words not counted) within a stretch of 15 words,
   and either three or more of them or ``reflect.min_coverage`` of the customer's
   content words. Words inside the agent's own action clauses ("I'll refund the late
   fee", "let me reset the locker") do not count: naming the item in an offer is not
   restating the problem; nor does an echo count in a reply that argues or blames
   (restating to contradict). A *frame* ("so what you're saying is", "if I've got this
   right", "is that right?") counts with at least one of the customer's words within
   20 words of it (with no customer line: two content words after it). A bare "I hear
   you" is neither.

Borderline wordings, decided (each has a labelled reply in ``tests/data/replies.jsonl``
and a comment at its phrase in ``rubric.yaml``): a whole reply that is only "just <do
this>, okay?" ("Just restart the router, okay?") is ``dismissive``, a brush-off with
nothing acknowledged; the same words inside a reply that does something else are not
flagged. Saying what stays the same after a change ("let me make it plain: you keep
your number", "you won't lose anything") is ``set_expectations``. Agreeing that
something "isn't fair on you" is ``empathize``; calling the complaint unfair ("that's
not fair") still argues. Someone else's promise of an immediate call-back ("Jordan
will call you straight back") is ``follow_up``; "a specialist will call you within two
days" stays ``escalate`` + ``set_expectations``.

Turn score (:func:`turn_score`), 0-100, with ``w(id)`` the rubric weight:

* E = the steps the persona line expects, plus ``stay_calm`` whenever delivery was
  analysed (``calm`` is not None; calm counts as expected in every turn).
* earned = Σ w(e) for each e in E heard + ¼ · Σ w(s) for each other step heard.
  When the line expects no word-level step, every step heard counts in full and
  possible = 60 (plus w(stay_calm) when delivery was analysed); otherwise
  possible = Σ w(e) over E.
* score = clamp(round(100 · min(earned, possible) / possible − Σ w(p) over the
  pitfalls found), 0, 100). Each line of :attr:`TurnScore.explanation` shows one term.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.errors import InputError, RubricError
from voice_sim.steps import PITFALL_IDS, STEP_IDS, WORD_STEP_IDS
from voice_sim.textnorm import NUMBER_WORDS, Norm, normalize, stem
from voice_sim.yamlfile import Problem, YamlProblem, load_yaml, position

if TYPE_CHECKING:
    from voice_sim.engines import Word

BUILTIN_PATH = Path(__file__).with_name("rubric.yaml")
"""The rubric shipped with the package."""

def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


ALL_IDS: tuple[str, ...] = (*STEP_IDS, *PITFALL_IDS)
CONTENT_IDS: tuple[str, ...] = (*WORD_STEP_IDS, *PITFALL_IDS)
"""The ids the content scorer detects (``stay_calm`` comes from delivery analysis)."""

OTHER_SHARE = 0.25
"""Share of its weight an unexpected step earns."""

OPEN_POSSIBLE = 60.0
"""Turn-score points that make 100 when a line expects no particular step."""

BUT_SENSITIVE = ("apologize", "empathize", "listen_reflect")
"""Steps voided by "but" + a pitfall (see the module docstring, rule 6)."""

_CONTRAST_REACH = 10
"""Words after a step within which a contrast word can void it."""

_REFLECT_SPAN = 15
"""Longest stretch of the reply, in words, that counts as one restatement."""

_SUBJECTS = _words("i we let you they he she it that this there here would can could will do "
                   "did does is are may")
"""A match starting with a subject, or with an auxiliary that opens a question ("can you
tell me"), carries its own polarity (rule 2)."""

_ACTION_MODALS = _words("will can could would shall have had")
_NOT_ACTIONS = _words("hear understand imagine appreciate tell be been feel")

_ID_FIELDS = ("weight", "mood", "negation", "replace", "patterns", "exemplars", "not_if")
_TOP_FIELDS = ("version", "negation", "contrast", "classes", "refusal", "reflect", "ids")
_REFLECT_FIELDS = ("min_shared", "min_coverage", "ignore", "synonyms", "frames")
_NEGATION_FIELDS = ("words", "breakers", "idioms", "window")

STOPWORDS: frozenset[str] = _words("""
a an the and or but so if then than that this these those there here it its is am are
was were be been being do does did doing have has had having will would shall should can
could may might must i me my mine myself we us our ours you your yours yourself he him
his she her hers they them their theirs what which who whom whose when where why how
not no nor never of to in on at by for with from up down out over under about into onto
off as just also too very really all any some each every both either neither more most
much many such own same other only again still even yet already ever quite rather
okay yes yeah oh well like get got go going gone went let make made one s
""")
"""Function words that never count as shared content between two lines."""


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """One step or pitfall found in a reply, with the words that triggered it."""

    id: str
    kind: str
    """``step`` or ``pitfall``."""
    evidence: str
    """The words that triggered it, exactly as in the reply."""
    span: tuple[int, int]
    """(start, end) character offsets of :attr:`evidence` in the original reply."""
    start_s: float | None
    """Seconds into the answer where the evidence starts (None without word timings)."""
    end_s: float | None
    """Seconds into the answer where the evidence ends (None without word timings)."""
    rule: str
    """What matched, e.g. ``pattern "that sounds <feeling>"`` or ``echo: forty, hold``."""
    weight: float
    """Turn-score points of this id."""
    where: str = ""
    """``file:line`` of the rubric entry that matched (empty for computed rules)."""
    note: str = ""
    """Why a detection was suppressed (only in :attr:`Content.suppressed`)."""

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        d: dict[str, Any] = {"id": self.id, "kind": self.kind, "evidence": self.evidence,
                             "span": list(self.span), "start_s": self.start_s,
                             "end_s": self.end_s, "rule": self.rule, "weight": self.weight,
                             "where": self.where}
        if self.note:
            d["note"] = self.note
        return d


@dataclass(frozen=True)
class Content:
    """What a reply holds: steps and pitfalls, each with evidence."""

    reply: str
    steps: tuple[Detection, ...]
    pitfalls: tuple[Detection, ...]
    suppressed: tuple[Detection, ...] = ()
    """Steps whose words were found but did not count, with the reason in ``note``."""
    normalized: str = ""
    """The reply as the scorer read it (see :mod:`voice_sim.textnorm`)."""

    @property
    def ids(self) -> frozenset[str]:
        """Every step and pitfall id found."""
        return frozenset(d.id for d in (*self.steps, *self.pitfalls))

    def get(self, id: str) -> Detection | None:
        """The detection of ``id``, if found."""
        return next((d for d in (*self.steps, *self.pitfalls) if d.id == id), None)

    def to_json(self) -> dict[str, Any]:
        """The ``check-reply --json`` object."""
        return {"reply": self.reply, "normalized": self.normalized,
                "steps": [d.to_json() for d in self.steps],
                "pitfalls": [d.to_json() for d in self.pitfalls],
                "suppressed": [d.to_json() for d in self.suppressed]}


@dataclass(frozen=True)
class TurnScore:
    """A turn's content score with the reasons, one line per term."""

    score: int
    """0-100."""
    explanation: tuple[str, ...]
    expected: tuple[str, ...]
    earned: float
    """Step points earned (before the cap at :attr:`possible`)."""
    possible: float
    """Step points that make 100."""
    penalty: float
    """Points taken off for pitfalls."""

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"score": self.score, "expected": list(self.expected), "earned": self.earned,
                "possible": self.possible, "penalty": self.penalty,
                "explanation": list(self.explanation)}


# --- the rubric ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Src:
    """A phrase from a rubric file and where it was written."""

    text: str
    path: str
    line: int
    col: int
    field: str

    @property
    def where(self) -> str:
        return f"{Path(self.path).name}:{self.line}"


@dataclass(frozen=True)
class _Rule:
    kind: str
    """``pattern``, ``exemplar``, ``frame`` or ``refusal``."""
    text: str
    where: str

    def describe(self) -> str:
        return f'{self.kind} "{self.text}"'


@dataclass(frozen=True, eq=False)
class _Matcher:
    """Many phrases, each tried only where the reply has a word that can start it.

    Trying every phrase at every character is what a combined regex does, and it costs
    ~1 ms a reply; looking up each reply word's candidate phrases instead (memoised per
    word) keeps scoring well over 1,000 replies a second.
    """

    regexes: tuple[re.Pattern[str], ...]
    rules: tuple[_Rule, ...]
    exact: Mapping[str, tuple[int, ...]]
    """First word -> phrases that can start with it."""
    prefixes: tuple[tuple[str, int], ...]
    """(prefix, phrase) for phrases starting with ``word*``."""
    anywhere: tuple[int, ...]
    """Phrases that can start with any word (``*``, ``...``)."""
    memo: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def candidates(self, token: str) -> tuple[int, ...]:
        found = self.memo.get(token)
        if found is None:
            idx = {*self.exact.get(token, ()), *self.anywhere,
                   *(i for p, i in self.prefixes if token.startswith(p))}
            found = tuple(sorted(idx))
            if len(self.memo) > 50_000:  # bounded: a long-running session sees new words
                self.memo.clear()
            self.memo[token] = found
        return found


@dataclass(frozen=True, eq=False)
class _IdSpec:
    id: str
    kind: str
    weight: float
    mood: float
    negation: bool
    matcher: _Matcher | None
    not_if: _Matcher | None


@dataclass(frozen=True, eq=False)
class Rubric:
    """A compiled rubric: per-id phrases, weights and mood changes, and reading rules."""

    sources: tuple[str, ...]
    """The files merged, built-in first."""
    specs: Mapping[str, _IdSpec]
    refusal: _Matcher | None
    frames: _Matcher | None
    negators: frozenset[str]
    breakers: frozenset[str]
    idioms: frozenset[str]
    window: int
    contrast: frozenset[str]
    reflect_ignore: frozenset[str]
    synonyms: Mapping[str, str]
    min_shared: int
    min_coverage: float

    def weight(self, id: str) -> float:
        """Turn-score points of a step or pitfall id."""
        return self._spec(id).weight

    def mood(self, id: str) -> float:
        """Default change on the persona's 0-10 anger scale when ``id`` is detected
        (steps negative, pitfalls positive)."""
        return self._spec(id).mood

    def _spec(self, id: str) -> _IdSpec:
        try:
            return self.specs[id]
        except KeyError:
            raise InputError(f"unknown step or pitfall id {id!r}",
                             hint=_valid_ids_hint(id)) from None


def _valid_ids_hint(id: str, choices: Sequence[str] = ALL_IDS,
                    label: str = "valid ids") -> str:
    close = difflib.get_close_matches(id, choices, n=1)
    prefix = f"did you mean {close[0]!r}? " if close else ""
    return prefix + f"{label}: " + ", ".join(choices)


# --- the pattern language ------------------------------------------------------------

_DSL_RE = re.compile(
    r"\s*(?:(?P<gap>\.\.\.)(?P<n>\d*)|(?P<punct>[()\[\]|]\??)|(?P<cls><[a-z_]+>)"
    r"|(?P<anchor>[\^$])(?=\s|$|[)\]|])|(?P<star>\*)(?=\s|$|[)\]|])"
    r"|(?P<word>[^\s()\[\]|<>*]+)(?P<prefix>\*)?)")

_ANY = "*"
"""In a first-word set: any word can start the phrase."""


@dataclass(frozen=True)
class _Piece:
    """A compiled piece of a pattern: its regex (each word followed by one space), the
    words that can start it (``=word``, ``^prefix`` or :data:`_ANY`), and whether it
    can match no words at all."""

    rx: str
    first: frozenset[str]
    nullable: bool


_NUM = _Piece("(?:(?:" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r") )+",
              frozenset("=" + w for w in NUMBER_WORDS), False)


class _PatternError(ValueError):
    pass


def _concat(pieces: Sequence[_Piece]) -> _Piece:
    first: set[str] = set()
    nullable = True
    for p in pieces:
        if nullable:
            first |= p.first
        nullable = nullable and p.nullable
    return _Piece("".join(p.rx for p in pieces), frozenset(first), nullable)


MAX_GAP_WORDS = 20
"""The longest ``...N`` gap: a phrase whose parts are further apart is two phrases."""


class _Parser:
    """Recursive-descent compiler from the pattern language to a regex over tokens."""

    def __init__(self, text: str, classes: Mapping[str, _Piece]) -> None:
        self.text = text
        self.classes = classes
        self.items: list[tuple[str, str, str]] = []  # (kind, value, extra)
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _DSL_RE.match(text, pos)
            if m is None or m.end() == pos:
                raise _PatternError(f"cannot read {text[pos:].strip()[:20]!r}")
            if m.group("gap"):
                n = int(m.group("n") or "4")
                if self.items and self.items[-1][0] == "gap":
                    # Gaps in a row are one longer gap; as separate bounded repeats they
                    # would backtrack exponentially on a reply that does not match.
                    n += int(self.items.pop()[1])
                if n > MAX_GAP_WORDS:
                    raise _PatternError(f"a gap of {n} words is more than {MAX_GAP_WORDS}; "
                                        "split the phrase into two patterns")
                self.items.append(("gap", str(n), ""))
            elif m.group("punct"):
                punct = m.group("punct")
                if len(punct) == 2 and punct[0] != ")":
                    raise _PatternError(f"'?' only follows a closing ')', not {punct[0]!r}")
                self.items.append(("punct", punct[0], punct[1:]))
            elif m.group("cls"):
                self.items.append(("cls", m.group("cls")[1:-1], ""))
            elif m.group("anchor"):
                self.items.append(("anchor", m.group("anchor"), ""))
            elif m.group("star"):
                self.items.append(("star", "*", ""))
            else:
                self.items.append(("word", m.group("word"), m.group("prefix") or ""))
            pos = m.end()
        self.i = 0

    def piece(self) -> _Piece:
        """The whole pattern; raises :class:`_PatternError` when it is not valid."""
        if not self.items:
            raise _PatternError("empty pattern")
        if self.items[0][0] == "gap" or self.items[-1][0] == "gap":
            raise _PatternError("a pattern cannot start or end with '...'")
        p = self._alt(top=True)
        if self.i != len(self.items):
            raise _PatternError(f"unexpected {self.items[self.i][1]!r}")
        if p.nullable or not p.first:
            raise _PatternError("the pattern can match no words at all; make a word required")
        try:
            re.compile(p.rx)
        except re.error as e:  # pragma: no cover - the parser builds valid regexes
            raise _PatternError(f"invalid pattern ({e})") from e
        return p

    def _alt(self, top: bool = False, close: str = "") -> _Piece:
        options = [self._seq()]
        while self.i < len(self.items) and self.items[self.i][:2] == ("punct", "|"):
            if top:
                raise _PatternError("'|' outside brackets; write (a|b)")
            self.i += 1
            options.append(self._seq())
        optional = False
        if close:
            if self.i >= len(self.items) or self.items[self.i][:2] != ("punct", close):
                raise _PatternError(f"missing {close!r}")
            optional = close == "]" or self.items[self.i][2] == "?"
            self.i += 1
        if len(options) == 1 and not close:
            return options[0]
        rx = "(?:" + "|".join(o.rx for o in options) + ")" + ("?" if optional else "")
        return _Piece(rx, frozenset().union(*(o.first for o in options)),
                      optional or any(o.nullable for o in options))

    def _seq(self) -> _Piece:
        out: list[_Piece] = []
        words: list[str] = []

        def flush() -> None:
            if words:
                toks = normalize(" ".join(words)).tokens
                if toks:
                    out.append(_Piece("".join(re.escape(t) + " " for t in toks),
                                      frozenset({"=" + toks[0]}), False))
                words.clear()

        while self.i < len(self.items):
            kind, value, extra = self.items[self.i]
            if kind == "punct" and value in ")]|":
                break
            self.i += 1
            if kind == "word" and not extra:
                words.append(value)
                continue
            flush()
            if kind == "word":
                stem_ = value.lower().replace("’", "'").replace("'", "")
                out.append(_Piece(re.escape(stem_) + r"\S* ", frozenset({"^" + stem_}), False))
            elif kind == "gap":
                out.append(_Piece(r"(?:\S+ ){0,N}".replace("N", str(min(int(value), 12))),
                                  frozenset({_ANY}), True))
            elif kind == "star":
                out.append(_Piece(r"\S+ ", frozenset({_ANY}), False))
            elif kind == "anchor":
                out.append(_Piece(r"\A" if value == "^" else r"\Z", frozenset(), True))
            elif kind == "cls":
                if value not in self.classes:
                    known = ", ".join(f"<{c}>" for c in sorted(self.classes))
                    raise _PatternError(f"unknown class <{value}> (known: {known})")
                out.append(self.classes[value])
            elif value in "([":
                out.append(self._alt(close=")" if value == "(" else "]"))
            else:
                raise _PatternError(f"unexpected {value!r}")
        flush()
        return _concat(out)


def compile_pattern(text: str) -> str:
    """The regex (over normalised text: tokens each followed by a space) for one pattern
    that uses no classes but ``<num>``. Raises ``ValueError`` for a bad pattern."""
    return _Parser(text, {"num": _NUM}).piece().rx


def _exemplar(text: str) -> _Piece:
    toks = normalize(text).tokens
    if not toks:
        raise _PatternError("the exemplar has no words")
    parts = [re.escape(t) + " " if t in STOPWORDS else re.escape(stem(t)) + r"\S* "
             for t in toks]
    first = "=" + toks[0] if toks[0] in STOPWORDS else "^" + stem(toks[0])
    return _Piece(r"(?:\S+ ){0,2}".join(parts), frozenset({first}), False)


# --- reading rubric files ------------------------------------------------------------


@dataclass
class _RawId:
    pos: tuple[str, int, int]
    weight: float | None = None
    mood: float | None = None
    negation: bool | None = None
    replace: bool = False
    patterns: list[_Src] = field(default_factory=list)
    exemplars: list[_Src] = field(default_factory=list)
    not_if: list[_Src] = field(default_factory=list)


@dataclass
class _Raw:
    path: str
    negators: list[str] = field(default_factory=list)
    breakers: list[str] = field(default_factory=list)
    idioms: list[str] = field(default_factory=list)
    window: int | None = None
    contrast: list[str] = field(default_factory=list)
    classes: dict[str, list[_Src]] = field(default_factory=dict)
    refusal: list[_Src] = field(default_factory=list)
    frames: list[_Src] = field(default_factory=list)
    min_shared: int | None = None
    min_coverage: float | None = None
    ignore: list[str] = field(default_factory=list)
    synonyms: list[list[_Src]] = field(default_factory=list)
    ids: dict[str, _RawId] = field(default_factory=dict)


class _Reader:
    """Walks one rubric file, collecting every problem instead of stopping at the first."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def problem(self, node: Any, key: str | int | None, fld: str, message: str,
                hint: str = "", *, at_value: bool = False) -> None:
        line, col = _value_position(node, key) if at_value else position(node, key)
        self.problems.append(Problem(self.path, line, col, fld, message, hint))

    def mapping(self, node: Any, key: str | int | None, value: Any, fld: str) -> bool:
        if isinstance(value, dict):
            return True
        self.problem(node, key, fld, f"must be a mapping, not {_kind(value)}",
                     "write key: value lines indented under it")
        return False

    def keys(self, node: dict[str, Any], allowed: Sequence[str], fld: str) -> None:
        for k in node:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = (f"did you mean {close[0]!r}? " if close else "") + \
                    "allowed: " + ", ".join(allowed)
                self.problem(node, k, f"{fld}.{k}" if fld else str(k),
                             f"unknown field {k!r}", hint)

    def strings(self, node: Any, key: str | int, fld: str) -> list[_Src]:
        value = node[key]
        if isinstance(value, str):
            value = [value]
            items: Iterable[tuple[int | None, Any]] = [(None, value[0])]
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            self.problem(node, key, fld, f"must be a list of phrases, not {_kind(value)}",
                         "write one '- phrase' per line")
            return []
        out: list[_Src] = []
        for i, item in items:
            where_node, where_key = (node, key) if i is None else (value, i)
            f = fld if i is None else f"{fld}[{i}]"
            if not isinstance(item, str) or not item.strip():
                self.problem(where_node, where_key, f, f"must be a non-empty phrase, not "
                             f"{_kind(item)}", "quote it if it holds : or #")
                continue
            line, col = position(where_node, where_key)
            out.append(_Src(item.strip(), self.path, line, col, f))
        return out

    def words(self, node: Any, key: str, fld: str) -> list[str]:
        out = []
        for src in self.strings(node, key, fld):
            toks = normalize(src.text).tokens
            if len(toks) != 1:
                self.problems.append(Problem(self.path, src.line, src.col, src.field,
                                             f"{src.text!r} must be a single word",
                                             "split it into one word per entry"))
                continue
            out.append(toks[0])
        return out

    def number(self, node: Any, key: str, fld: str, lo: float, hi: float) -> float | None:
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(node, key, fld, f"must be a number, not {_kind(value)}",
                         f"write a number from {lo:g} to {hi:g}", at_value=True)
            return None
        if not lo <= value <= hi:
            self.problem(node, key, fld, f"{value} is out of range",
                         f"use a number from {lo:g} to {hi:g}", at_value=True)
            return None
        return float(value)

    def boolean(self, node: Any, key: str, fld: str) -> bool | None:
        value = node[key]
        if not isinstance(value, bool):
            self.problem(node, key, fld, f"must be true or false, not {_kind(value)}",
                         at_value=True)
            return None
        return value


def _value_position(node: Any, key: str | int | None) -> tuple[int, int]:
    """1-based (line, column) of the value ``node[key]`` (its key's when unknown)."""
    return position(node, key, at_value=True)


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    for t, name in ((dict, "a mapping"), (list, "a list"), (str, "text"),
                    (int, "a number"), (float, "a number")):
        if isinstance(value, t):
            return name
    return type(value).__name__


def _read(path: str, text: str | None = None) -> tuple[_Raw, list[Problem]]:
    """Parse and check the structure of one rubric file."""
    try:
        data = load_yaml(path, what="rubric file", text=text)
    except YamlProblem as e:
        return _Raw(path), [e.problem]
    rd = _Reader(path)
    raw = _Raw(path)
    if data is None:
        return raw, [Problem(path, 0, 0, "", "the rubric file is empty",
                             "add an 'ids:' section (see the built-in rubric.yaml)")]
    if not isinstance(data, dict):
        return raw, [Problem(path, 1, 1, "", f"must be a mapping, not {_kind(data)}",
                             "start with 'ids:' (see the built-in rubric.yaml)")]
    rd.keys(data, _TOP_FIELDS, "")
    if "version" in data and data["version"] != 1:
        rd.problem(data, "version", "version", f"unsupported version {data['version']!r}",
                   "write version: 1")
    if "negation" in data and rd.mapping(data, "negation", data["negation"], "negation"):
        neg = data["negation"]
        rd.keys(neg, _NEGATION_FIELDS, "negation")
        for k, attr in (("words", "negators"), ("breakers", "breakers"),
                        ("idioms", "idioms")):
            if k in neg:
                getattr(raw, attr).extend(rd.words(neg, k, f"negation.{k}"))
        if "window" in neg:
            w = rd.number(neg, "window", "negation.window", 1, 10)
            raw.window = int(w) if w is not None else None
    if "contrast" in data:
        raw.contrast.extend(rd.words(data, "contrast", "contrast"))
    if "classes" in data and rd.mapping(data, "classes", data["classes"], "classes"):
        for name in data["classes"]:
            fld = f"classes.{name}"
            if not re.fullmatch(r"[a-z_]+", str(name)) or name == "num":
                rd.problem(data["classes"], name, fld, f"bad class name {name!r}",
                           "use lowercase letters and _ ('num' is built in)")
                continue
            raw.classes[name] = rd.strings(data["classes"], name, fld)
    if "refusal" in data and rd.mapping(data, "refusal", data["refusal"], "refusal"):
        rd.keys(data["refusal"], ("patterns",), "refusal")
        if "patterns" in data["refusal"]:
            raw.refusal = rd.strings(data["refusal"], "patterns", "refusal.patterns")
    if "reflect" in data and rd.mapping(data, "reflect", data["reflect"], "reflect"):
        rf = data["reflect"]
        rd.keys(rf, _REFLECT_FIELDS, "reflect")
        if "min_shared" in rf:
            n = rd.number(rf, "min_shared", "reflect.min_shared", 1, 10)
            raw.min_shared = int(n) if n is not None else None
        if "min_coverage" in rf:
            raw.min_coverage = rd.number(rf, "min_coverage", "reflect.min_coverage", 0, 1)
        if "ignore" in rf:
            raw.ignore = rd.words(rf, "ignore", "reflect.ignore")
        if "frames" in rf:
            raw.frames = rd.strings(rf, "frames", "reflect.frames")
        if "synonyms" in rf:
            syn = rf["synonyms"]
            if not isinstance(syn, list):
                rd.problem(rf, "synonyms", "reflect.synonyms", "must be a list of word lists",
                           "write - [twice, double]")
            else:
                for i in range(len(syn)):
                    group = rd.strings(syn, i, f"reflect.synonyms[{i}]")
                    for src in group:
                        if len(normalize(src.text).tokens) != 1:
                            rd.problems.append(Problem(
                                path, src.line, src.col, src.field,
                                f"{src.text!r} must be a single word",
                                "synonyms are single words"))
                    raw.synonyms.append(group)
    if "ids" in data and rd.mapping(data, "ids", data["ids"], "ids"):
        ids = data["ids"]
        for id_ in ids:
            fld = f"ids.{id_}"
            if id_ not in ALL_IDS:
                rd.problem(ids, id_, fld, f"unknown id {id_!r}", _valid_ids_hint(str(id_)))
                continue
            node = ids[id_]
            if not rd.mapping(ids, id_, node, fld):
                continue
            line, col = position(ids, id_)
            entry = raw.ids[id_] = _RawId((path, line, col))
            rd.keys(node, _ID_FIELDS, fld)
            if "weight" in node:
                entry.weight = rd.number(node, "weight", f"{fld}.weight", 0, 100)
            if "mood" in node:
                entry.mood = rd.number(node, "mood", f"{fld}.mood", -10, 10)
            if "negation" in node:
                entry.negation = rd.boolean(node, "negation", f"{fld}.negation")
            if "replace" in node:
                entry.replace = bool(rd.boolean(node, "replace", f"{fld}.replace"))
            for k in ("patterns", "exemplars", "not_if"):
                if k in node:
                    if id_ == "stay_calm":
                        rd.problem(node, k, f"{fld}.{k}", "stay_calm is measured from the "
                                   "audio, not words", "give it only weight and mood")
                        continue
                    if id_ == "listen_reflect" and k == "patterns":
                        rd.problem(node, k, f"{fld}.{k}", "listen_reflect is judged against "
                                   "the customer's line", "put reflective frames under "
                                   "reflect.frames")
                        continue
                    getattr(entry, k).extend(rd.strings(node, k, f"{fld}.{k}"))
    elif "ids" not in data:
        rd.problem(data, None, "ids", "no 'ids:' section",
                   "add ids: with the steps and pitfalls to change")
    return raw, rd.problems


def _merge(base: _Raw, extra: _Raw) -> _Raw:
    """``extra`` layered over ``base``: lists extend, numbers and flags replace."""
    out = _Raw(extra.path)
    out.negators = [*base.negators, *extra.negators]
    out.breakers = [*base.breakers, *extra.breakers]
    out.idioms = [*base.idioms, *extra.idioms]
    out.window = extra.window if extra.window is not None else base.window
    out.contrast = [*base.contrast, *extra.contrast]
    out.classes = {k: list(v) for k, v in base.classes.items()}
    for k, v in extra.classes.items():
        out.classes.setdefault(k, []).extend(v)
    out.refusal = [*base.refusal, *extra.refusal]
    out.frames = [*base.frames, *extra.frames]
    out.min_shared = extra.min_shared if extra.min_shared is not None else base.min_shared
    out.min_coverage = (extra.min_coverage if extra.min_coverage is not None
                        else base.min_coverage)
    out.ignore = [*base.ignore, *extra.ignore]
    out.synonyms = [*base.synonyms, *extra.synonyms]
    out.ids = {}
    for id_ in {*base.ids, *extra.ids}:
        b, e = base.ids.get(id_), extra.ids.get(id_)
        if b is None or e is None:
            out.ids[id_] = b or e  # type: ignore[assignment]
            continue
        m = _RawId(e.pos)
        m.weight = e.weight if e.weight is not None else b.weight
        m.mood = e.mood if e.mood is not None else b.mood
        m.negation = e.negation if e.negation is not None else b.negation
        for k in ("patterns", "exemplars", "not_if"):
            setattr(m, k, [*([] if e.replace else getattr(b, k)), *getattr(e, k)])
        out.ids[id_] = m
    return out


def _compile(raw: _Raw, sources: tuple[str, ...]) -> tuple[Rubric | None, list[Problem]]:
    """Compile a merged rubric; every bad phrase becomes a problem at its line."""
    problems: list[Problem] = []

    def bad(src: _Src, message: str, hint: str = "") -> None:
        problems.append(Problem(src.path, src.line, src.col, src.field, message, hint))

    classes: dict[str, _Piece] = {"num": _NUM}
    for name, items in raw.classes.items():
        alts = []
        for src in items:
            try:
                alts.append(_Parser(src.text, {"num": _NUM}).piece())
            except _PatternError as e:
                bad(src, f"bad class entry {src.text!r}: {e}", "classes hold plain words "
                    "or phrases, with (a|b), [a] or word*")
        rx = "|".join(p.rx for p in alts) or r"(?!x)x"  # an empty class matches nothing
        classes[name] = _Piece(f"(?:{rx})", frozenset().union(*(p.first for p in alts)), False)

    def matcher(items: Iterable[tuple[str, _Src]]) -> _Matcher | None:
        regexes: list[re.Pattern[str]] = []
        rules: list[_Rule] = []
        exact: dict[str, list[int]] = {}
        prefixes: list[tuple[str, int]] = []
        anywhere: list[int] = []
        for kind, src in items:
            try:
                piece = (_exemplar(src.text) if kind == "exemplar"
                         else _Parser(src.text, classes).piece())
            except _PatternError as e:
                bad(src, f"bad {kind} {src.text!r}: {e}", "see the pattern language at the "
                    "top of the built-in rubric.yaml")
                continue
            n = len(rules)
            regexes.append(re.compile(piece.rx))
            rules.append(_Rule(kind, src.text, src.where))
            if _ANY in piece.first:
                anywhere.append(n)
                continue
            for f in piece.first:
                if f[0] == "=":
                    exact.setdefault(f[1:], []).append(n)
                else:
                    prefixes.append((f[1:], n))
        if not rules:
            return None
        return _Matcher(tuple(regexes), tuple(rules),
                        {k: tuple(v) for k, v in exact.items()}, tuple(prefixes),
                        tuple(anywhere))

    specs: dict[str, _IdSpec] = {}
    for id_ in ALL_IDS:
        entry = raw.ids.get(id_)
        kind = "pitfall" if id_ in PITFALL_IDS else "step"
        if entry is None or entry.weight is None or entry.mood is None:
            missing = "weight and mood" if entry is None else " and ".join(
                k for k in ("weight", "mood") if getattr(entry, k) is None)
            path, line, col = entry.pos if entry else (raw.path, 0, 0)
            problems.append(Problem(path, line, col, f"ids.{id_}",
                                    f"{id_} has no {missing}",
                                    "every step and pitfall needs a weight and a mood"))
            continue
        if id_ in CONTENT_IDS and id_ != "listen_reflect" and not (
                entry.patterns or entry.exemplars):
            path, line, col = entry.pos
            problems.append(Problem(path, line, col, f"ids.{id_}",
                                    f"{id_} has no patterns or exemplars",
                                    "add at least one, or drop 'replace: true'"))
        specs[id_] = _IdSpec(
            id_, kind, entry.weight, entry.mood,
            entry.negation if entry.negation is not None else True,
            matcher([*(("pattern", s) for s in entry.patterns),
                     *(("exemplar", s) for s in entry.exemplars)]),
            matcher(("pattern", s) for s in entry.not_if))
    refusal = matcher(("refusal", s) for s in raw.refusal)
    frames = matcher(("frame", s) for s in raw.frames)
    synonyms: dict[str, str] = {}
    for group in raw.synonyms:
        keys = [stem(normalize(s.text).tokens[0]) for s in group
                if len(normalize(s.text).tokens) == 1]
        for k in keys:
            synonyms[k] = synonyms.get(keys[0], keys[0])
    if problems:
        return None, problems
    return Rubric(
        sources=sources, specs=specs, refusal=refusal, frames=frames,
        negators=frozenset(raw.negators), breakers=frozenset(raw.breakers),
        idioms=frozenset(raw.idioms), window=raw.window or 4,
        contrast=frozenset(raw.contrast),
        reflect_ignore=frozenset(stem(w) for w in raw.ignore),
        synonyms=synonyms, min_shared=raw.min_shared or 2,
        min_coverage=raw.min_coverage if raw.min_coverage is not None else 0.3,
    ), []


_BASE: dict[tuple[str, int, int], tuple[_Raw, list[Problem]]] = {}


def _build(extra: str | None) -> tuple[Rubric | None, list[Problem]]:
    stamp = _stamp(BUILTIN_PATH)
    if stamp not in _BASE:  # parsing the built-in file is most of the cost; do it once
        _BASE.clear()
        _BASE[stamp] = _read(str(BUILTIN_PATH))
    base, problems = _BASE[stamp]
    if problems:
        return None, problems
    sources: tuple[str, ...] = (str(BUILTIN_PATH),)
    raw = base
    found: list[Problem] = []
    if extra is not None:
        more, found = _read(extra)
        raw = _merge(base, more)
        sources = (*sources, extra)
    # compile even after structure problems, so one run reports bad phrases too
    rubric, problems = _compile(raw, sources)
    problems = sorted([*found, *problems], key=lambda p: (p.path != str(extra), p.line, p.column))
    return (None if problems else rubric), problems


def check_rubric(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem in a rubric file (merged over the built-in one), empty when valid."""
    p = Path(path)
    if p.resolve() == BUILTIN_PATH.resolve():
        return _build(None)[1]
    return _build(str(p))[1]


_CACHE: dict[tuple[Any, ...], Rubric] = {}


def _stamp(p: Path) -> tuple[str, int, int]:
    try:
        st = p.stat()
    except OSError:
        return (str(p), 0, 0)
    return (str(p.resolve()), st.st_mtime_ns, st.st_size)


def load_rubric(extra: str | os.PathLike[str] | None = None) -> Rubric:
    """The built-in rubric, merged with a trainer's file when given; cached per process
    (keyed by path and modification time). Raises :class:`RubricError` naming
    ``file:line:col``, the field and the fix for an invalid file."""
    key = (_stamp(BUILTIN_PATH), _stamp(Path(extra)) if extra is not None else None)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    rubric, problems = _build(None if extra is None else str(extra))
    if rubric is None:
        more = len(problems) - 1
        raise RubricError(problems[0].line_text() + (
            f" (and {more} more problem{'s' if more > 1 else ''} in the file)" if more else ""))
    _CACHE[key] = rubric
    return rubric


def rubric_beside(persona_path: str | os.PathLike[str]) -> Path | None:
    """``rubric.yaml`` in the folder of a persona file, if a trainer put one there."""
    p = Path(persona_path)
    candidate = (p if p.is_dir() else p.parent) / "rubric.yaml"
    return candidate if candidate.is_file() else None


# --- scoring -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    i: int
    """First token."""
    j: int
    """One past the last token."""
    rule: _Rule
    label: str = ""
    """Overrides ``rule.describe()`` (refusals, echoes)."""

    def overlaps(self, other: _Hit) -> bool:
        return self.i < other.j and other.i < self.j


def _find(m: _Matcher | None, norm: Norm, hay: str) -> list[_Hit]:
    """Every phrase matching at every word, in reply order (then rubric order), so a
    match that a later rule drops cannot hide another one."""
    if m is None or not norm.tokens:
        return []
    hits: list[_Hit] = []
    offsets = norm.offsets
    for i, tok in enumerate(norm.tokens):
        for n in m.candidates(tok):
            found = m.regexes[n].match(hay, offsets[i])
            if found is None:
                continue
            _, j = norm.token_range(found.start(), max(found.end() - 1, found.start() + 1))
            hits.append(_Hit(i, max(j, i + 1), m.rules[n]))
    return hits


def _negated(rb: Rubric, toks: Sequence[str], i: int) -> bool:
    if toks[i] in _SUBJECTS:
        return False
    for k in range(i - 1, max(i - 1 - rb.window, -1), -1):
        t = toks[k]
        if t in rb.breakers:
            return False
        if t in rb.negators and not any(x in rb.idioms for x in toks[k + 1:k + 3]):
            return True
    return False


def _content_keys(rb: Rubric, toks: Sequence[str]) -> list[tuple[int, str]]:
    """(position, key) of each content word: stemmed, synonyms merged."""
    out: list[tuple[int, str]] = []
    run: list[int] = []
    for k, t in enumerate(toks):
        if t in NUMBER_WORDS:
            run.append(k)
            continue
        if len(run) < 3:  # three or more number words in a row spell a reference number
            out.extend((n, toks[n]) for n in run)
        run = []
        if t in STOPWORDS:
            continue
        s = stem(t)
        if s in rb.reflect_ignore:
            continue
        out.append((k, rb.synonyms.get(s, s)))
    if len(run) < 3:
        out.extend((n, toks[n]) for n in run)
    return sorted(out)


def _action_clauses(rb: Rubric, toks: Sequence[str]) -> set[int]:
    """Token positions inside the agent's own action clauses ("I'll refund the late
    fee", "let me reset the locker"): words there name what the agent will do, not
    what the customer said."""
    inside: set[int] = set()
    n = len(toks)
    for k, t in enumerate(toks):
        nxt = toks[k + 1] if k + 1 < n else ""
        after = toks[k + 2] if k + 2 < n else ""
        # "let's start with ..." plans, it does not act; "I can hear ..." is not an action
        acts = (t == "let" and nxt == "me") or (t in ("i", "we") and (
            (nxt in _ACTION_MODALS and after not in _NOT_ACTIONS)
            or (nxt in ("am", "are") and (after.endswith("ing") or after == "going"))))
        if not acts:
            continue
        start = k
        for m in range(start, min(start + 12, n)):
            if m > start + 1 and (toks[m] in rb.breakers or toks[m] in rb.contrast):
                break
            inside.add(m)
    return inside


def _reflect(rb: Rubric, norm: Norm, hay: str, customer: str | None,
             pitfalls: Sequence[_Hit], contradicting: Sequence[_Hit]) -> list[_Hit]:
    """Frames followed by the customer's words, and echoes of the customer's line
    (rule 7). Restating in order to contradict ("next-day was an estimate") is not
    reflecting: no echo counts in a reply that argues or blames."""
    toks = norm.tokens
    mine = _content_keys(rb, toks)
    hits: list[_Hit] = []
    theirs: set[str] = set()
    if customer:
        theirs = {key for _, key in _content_keys(rb, normalize(customer).tokens)}
    for h in _find(rb.frames, norm, hay):
        if customer:
            # closing frames ("..., is that right?") follow the restatement
            near = [(k, key) for k, key in mine if h.i - 20 <= k < h.j + 20
                    and not h.i <= k < h.j and key in theirs]
            if near:
                words = ", ".join(dict.fromkeys(toks[k] for k, _ in near))
                hits.append(_Hit(min(h.i, near[0][0]), max(h.j, near[-1][0] + 1), h.rule,
                                 f"{h.rule.describe()} + the customer's words: {words}"))
            continue
        after = [k for k, _ in mine if h.j <= k < h.j + 12]
        if len(after) >= 2:
            hits.append(_Hit(h.i, after[1] + 1, h.rule, f"{h.rule.describe()} + a restatement"))
    if theirs and not contradicting:
        acting = _action_clauses(rb, toks)
        shared_pos = [(k, key) for k, key in mine if key in theirs and k not in acting]
        best: tuple[int, int, int] = (0, 0, 0)  # (distinct, first, last)
        for a in range(len(shared_pos)):
            seen: set[str] = set()
            for b in range(a, len(shared_pos)):
                if shared_pos[b][0] - shared_pos[a][0] >= _REFLECT_SPAN:
                    break
                seen.add(shared_pos[b][1])
                if len(seen) > best[0]:
                    best = (len(seen), shared_pos[a][0], shared_pos[b][0])
        n, first, last = best
        if n >= rb.min_shared and (n >= 3 or n / max(len(theirs), 1) >= rb.min_coverage):
            words = ", ".join(dict.fromkeys(toks[k] for k, _ in shared_pos
                                            if first <= k <= last))
            hits.append(_Hit(first, last + 1, _Rule("echo", words, ""),
                             f"restates the customer's words: {words}"))
    return [h for h in hits if not any(h.overlaps(p) for p in pitfalls)]


def _timings(reply: str, words: Sequence[Word] | None) -> list[tuple[int, int, Word]]:
    """Character span of each timed word in ``reply`` (words not found are skipped)."""
    if not words:
        return []
    low = reply.lower()
    out = []
    pos = 0
    for w in words:
        text = w.word.strip().lower()
        if not text:
            continue
        k = low.find(text, pos)
        if k < 0:
            continue
        out.append((k, k + len(text), w))
        pos = k + len(text)
    return out


def score_reply(reply: str, customer: str | None = None, *,
                words: Sequence[Word] | None = None, rubric: Rubric | None = None) -> Content:
    """Find the steps and pitfalls in ``reply`` (see the module docstring for the rules).

    ``customer`` is the line the reply answers (needed for ``listen_reflect``). When
    ``words`` (speech-engine word timings) are given, ``reply`` is their transcript and
    each detection also gets ``start_s`` / ``end_s``.
    """
    rb = rubric if rubric is not None else load_rubric()
    norm = normalize(reply)
    hay = norm.text + " "
    toks = norm.tokens
    hits: dict[str, list[_Hit]] = {}
    for id_ in CONTENT_IDS:
        if id_ == "listen_reflect":
            continue
        spec = rb.specs[id_]
        found = _find(spec.matcher, norm, hay)
        if not found:
            continue
        if spec.negation:
            found = [h for h in found if not _negated(rb, toks, h.i)]
        if found and spec.not_if is not None:
            vetoes = _find(spec.not_if, norm, hay)
            found = [h for h in found if not any(h.overlaps(v) for v in vetoes)]
        if found:
            hits[id_] = found
    refusals = _find(rb.refusal, norm, hay)
    if refusals:
        alternative = bool(hits.get("offer_solution") or hits.get("escalate"))
        target = "set_expectations" if alternative else "excuse"
        label = ("refusal with an alternative" if alternative
                 else "refusal without an alternative")
        for h in refusals:
            hits.setdefault(target, []).append(
                _Hit(h.i, h.j, h.rule, f'{label}: {h.rule.describe()}'))
    pitfall_hits = [h for p in PITFALL_IDS for h in hits.get(p, ())]
    suppressed: list[tuple[str, _Hit, str]] = []
    for id_ in WORD_STEP_IDS:
        kept = []
        for h in hits.get(id_, ()):
            clash = next((p for p in pitfall_hits if h.overlaps(p)), None)
            if clash is None:
                kept.append(h)
            else:
                suppressed.append((id_, h, "the same words are a pitfall"))
        if kept:
            hits[id_] = kept
        else:
            hits.pop(id_, None)
    contradicting = [h for p in ("argue", "blame_customer") for h in hits.get(p, ())]
    reflect = _reflect(rb, norm, hay, customer, pitfall_hits, contradicting)
    if reflect:
        hits["listen_reflect"] = reflect
    contrast_at = [k for k, t in enumerate(toks) if t in rb.contrast]
    if contrast_at and pitfall_hits:
        for id_ in BUT_SENSITIVE:
            kept = []
            for h in hits.get(id_, ()):
                c = next((k for k in contrast_at if k >= h.j - 1), None)
                reason = ""
                if c is not None and c - h.j < _CONTRAST_REACH:
                    end = next((k for k in contrast_at if k > c), len(toks))
                    p = next((p for p in pitfall_hits if c < p.i < end), None)
                    if p is not None:
                        reason = f'followed by "{toks[c]}" and a pitfall'
                if reason:
                    suppressed.append((id_, h, reason))
                else:
                    kept.append(h)
            if kept:
                hits[id_] = kept
            else:
                hits.pop(id_, None)
    timed = _timings(reply, words)

    def detection(id_: str, h: _Hit, note: str = "") -> Detection:
        s, e = norm.original_span(h.i, h.j)
        over = [w for a, b, w in timed if a < e and s < b]
        return Detection(
            id=id_, kind="pitfall" if id_ in PITFALL_IDS else "step",
            evidence=reply[s:e], span=(s, e),
            start_s=min(w.start for w in over) if over else None,
            end_s=max(w.end for w in over) if over else None,
            rule=h.label or h.rule.describe(), weight=rb.specs[id_].weight,
            where=h.rule.where, note=note)

    found_steps: list[Detection] = []
    found_pitfalls: list[Detection] = []
    for id_ in CONTENT_IDS:
        if id_ in hits:
            first = min(hits[id_], key=lambda h: (h.i, -h.j))
            (found_pitfalls if id_ in PITFALL_IDS else found_steps).append(
                detection(id_, first))
    shown = {d.id for d in found_steps}
    extra: list[Detection] = []
    for id_, h, why in suppressed:
        if id_ not in shown:
            shown.add(id_)
            extra.append(detection(id_, h, why))
    return Content(reply, tuple(found_steps), tuple(found_pitfalls), tuple(extra), norm.text)


def _quote(d: Detection) -> str:
    return f"('{d.evidence}')"


def turn_score(content: Content, expected: Sequence[str] = (), *, calm: bool | None = None,
               rubric: Rubric | None = None) -> TurnScore:
    """Score one turn, 0-100, with one explanation line per term (formula in the module
    docstring). ``expected`` are the steps the persona line expects; ``calm`` the
    delivery verdict (None when delivery was not analysed)."""
    rb = rubric if rubric is not None else load_rubric()
    for id_ in expected:
        if id_ not in STEP_IDS:
            raise InputError(f"{id_!r} is not a step id",
                             hint=_valid_ids_hint(id_, STEP_IDS, "steps are"))
    exp = list(dict.fromkeys(e for e in expected if e != "stay_calm"))
    lines: list[str] = []
    earned = 0.0
    possible = 0.0
    open_line = not exp
    for id_ in exp:
        w = rb.weight(id_)
        possible += w
        d = content.get(id_)
        if d is not None:
            earned += w
            lines.append(f"expected {id_}: heard {_quote(d)} +{w:g}")
        else:
            lines.append(f"expected {id_}: missed +0 (of {w:g})")
    for d in content.steps:
        if d.id in exp:
            continue
        pts = d.weight if open_line else OTHER_SHARE * d.weight
        earned += pts
        share = "" if open_line else f" (¼ of {d.weight:g})"
        lines.append(f"{'step' if open_line else 'other'} {d.id}: heard {_quote(d)} "
                     f"+{pts:g}{share}")
    if open_line:
        possible = OPEN_POSSIBLE
        lines.insert(0, f"no step expected: any step counts in full; {possible:g} points "
                     "make 100")
    if calm is not None:
        w = rb.weight("stay_calm")
        possible += w
        if calm:
            earned += w
            lines.append(f"stay_calm: calm delivery +{w:g}")
        else:
            lines.append(f"stay_calm: delivery not calm +0 (of {w:g})")
    else:
        lines.append("stay_calm: delivery not analysed (not counted)")
    penalty = 0.0
    for d in content.pitfalls:
        penalty += d.weight
        lines.append(f"pitfall {d.id}: {_quote(d)} −{d.weight:g}")
    base = 100.0 * min(earned, possible) / possible if possible else 0.0
    score = max(0, min(100, round(base - penalty)))
    lines.append(f"score: 100 × {min(earned, possible):g}/{possible:g} = {base:.0f}"
                 + (f", − {penalty:g} for pitfalls" if penalty else "")
                 + f" → {score}")
    return TurnScore(score, tuple(lines), tuple(exp) + (("stay_calm",) if calm is not None
                                                         else ()),
                     earned, possible, penalty)


# --- command line --------------------------------------------------------------------


def _parse_expect(value: str | None) -> list[str]:
    if not value:
        return []
    ids = [v.strip() for v in value.split(",") if v.strip()]
    for id_ in ids:
        if id_ not in STEP_IDS:
            raise InputError(f"--expect: {id_!r} is not a step id",
                             hint=_valid_ids_hint(id_, STEP_IDS, "steps are"))
    return ids


def _result(content: Content, score: TurnScore) -> dict[str, Any]:
    d = content.to_json()
    d["score"] = score.to_json()
    return d


def _print_text(content: Content, score: TurnScore) -> None:
    for title, items in (("steps", content.steps), ("pitfalls", content.pitfalls)):
        print(f"{title}:")
        if not items:
            print("  (none)")
        for d in items:
            rule = d.rule if len(d.rule) <= 70 else d.rule[:69] + "…"
            where = f" ({d.where})" if d.where else ""
            print(f"  {d.id:<17}\"{d.evidence}\"  [{d.span[0]}:{d.span[1]}]  {rule}{where}")
    if content.suppressed:
        print("not counted:")
        for d in content.suppressed:
            print(f"  {d.id:<17}\"{d.evidence}\"  {d.note}")
    print(f"score: {score.score}/100")
    for line in score.explanation:
        print(f"  {line}")


def _read_jsonl(name: str) -> list[tuple[int, dict[str, Any]]]:
    label = "stdin" if name == "-" else name
    if name == "-":
        text = sys.stdin.read()
    else:
        p = Path(name)
        if not p.is_file():
            raise InputError(f"--jsonl {name}: no such file", hint="check the path, or use - "
                             "for stdin")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"--jsonl {name}: not UTF-8 text", hint="save it as UTF-8") from e
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue  # blank lines (often a trailing one) carry nothing to score
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{label}:{n}: not valid JSON ({e.msg} at column {e.colno})",
                             hint='write one {"reply": ..., "customer": ...} object per '
                             "line") from e
        if not isinstance(obj, dict):
            raise InputError(f"{label}:{n}: expected a JSON object, got "
                             f"{type(obj).__name__}", hint='write {"reply": "..."}')
        if not isinstance(obj.get("reply"), str):
            raise InputError(f'{label}:{n}: "reply" is missing or not a string',
                             hint='every line needs "reply": "what the trainee said"')
        if obj.get("customer") is not None and not isinstance(obj["customer"], str):
            raise InputError(f'{label}:{n}: "customer" must be a string',
                             hint="give the customer's line as text, or leave it out")
        exp = obj.get("expect")
        if exp is not None:
            if isinstance(exp, str):
                exp = [e.strip() for e in exp.split(",") if e.strip()]
            if not isinstance(exp, list) or not all(e in STEP_IDS for e in exp):
                raise InputError(f'{label}:{n}: "expect" must list step ids',
                                 hint="steps are: " + ", ".join(STEP_IDS))
            obj["expect"] = exp
        rows.append((n, obj))
    if not rows and name != "-":
        # An empty batch from stdin is an empty pipeline; an empty file is a mistake.
        raise InputError(f"--jsonl {name}: the file is empty (no replies in it)",
                         hint='write one {"reply": ..., "customer": ...} object per line')
    return rows


def cmd_check_reply(args: argparse.Namespace) -> int:
    """``voice-sim check-reply``: steps and pitfalls in one reply, or in a JSONL batch."""
    rubric = load_rubric(args.rubric)
    expected = _parse_expect(args.expect)
    if args.jsonl is not None:
        if args.text is not None:
            raise InputError("give either TEXT or --jsonl, not both",
                             hint="put the reply inside the JSONL file")
        rows = _read_jsonl(args.jsonl)  # all lines checked before any output
        out = sys.stdout
        for n, obj in rows:
            content = score_reply(obj["reply"], obj.get("customer"), rubric=rubric)
            score = turn_score(content, obj.get("expect", expected), rubric=rubric)
            d = _result(content, score)
            d["line"] = n
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
        return 0
    if args.text is None:
        raise InputError("no reply to check", hint='give the reply as TEXT, or --jsonl FILE '
                         "(- for stdin)")
    content = score_reply(args.text, args.customer, rubric=rubric)
    score = turn_score(content, expected, rubric=rubric)
    if args.json:
        print(json.dumps(_result(content, score), ensure_ascii=False, indent=2))
    else:
        _print_text(content, score)
    return 0
