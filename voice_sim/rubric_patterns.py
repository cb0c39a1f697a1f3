"""The rubric's pattern language: phrases compiled to regexes over normalised text.

Words in order; ``(a|b c)`` one of; ``[a|b]`` optional; ``word*`` a word starting with
``word``; ``*`` any one word; ``...`` up to 4 words (``...8`` up to 8); ``(a|b)?`` same
as ``[a|b]``; ``<name>`` a word class (``<num>`` is built in: number words); ``^`` /
``$`` start / end of the reply. (Exemplars are not patterns: they are matched by
meaning, see :mod:`voice_sim.rubric_semantic`.) Patterns are matched against
:func:`voice_sim.textnorm.normalize` output (tokens each followed by one space);
:func:`find_phrases` tries each phrase only where a reply word can start it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voice_sim.textnorm import NUMBER_WORDS, Norm, normalize


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


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


@dataclass(frozen=True)
class Src:
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
class Rule:
    kind: str
    """``pattern``, ``exemplar``, ``frame`` or ``refusal``."""
    text: str
    where: str

    def describe(self) -> str:
        return f'{self.kind} "{self.text}"'


@dataclass(frozen=True, eq=False)
class Matcher:
    """Many phrases, each tried only where the reply has a word that can start it.

    Trying every phrase at every character is what a combined regex does, and it costs
    ~1 ms a reply; looking up each reply word's candidate phrases instead (memoised per
    word) keeps scoring well over 1,000 replies a second.
    """

    regexes: tuple[re.Pattern[str], ...]
    rules: tuple[Rule, ...]
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


_DSL_RE = re.compile(
    r"\s*(?:(?P<gap>\.\.\.)(?P<n>\d*)|(?P<punct>[()\[\]|]\??)|(?P<cls><[a-z_]+>)"
    r"|(?P<anchor>[\^$])(?=\s|$|[)\]|])|(?P<star>\*)(?=\s|$|[)\]|])"
    r"|(?P<word>[^\s()\[\]|<>*]+)(?P<prefix>\*)?)")

ANY = "*"
"""In a first-word set: any word can start the phrase."""


@dataclass(frozen=True)
class Piece:
    """A compiled piece of a pattern: its regex (each word followed by one space), the
    words that can start it (``=word``, ``^prefix`` or :data:`ANY`), and whether it
    can match no words at all."""

    rx: str
    first: frozenset[str]
    nullable: bool


NUM = Piece("(?:(?:" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r") )+",
              frozenset("=" + w for w in NUMBER_WORDS), False)


class PatternError(ValueError):
    pass


def concat(pieces: Sequence[Piece]) -> Piece:
    first: set[str] = set()
    nullable = True
    for p in pieces:
        if nullable:
            first |= p.first
        nullable = nullable and p.nullable
    return Piece("".join(p.rx for p in pieces), frozenset(first), nullable)


MAX_GAP_WORDS = 20
"""The longest ``...N`` gap: a phrase whose parts are further apart is two phrases."""


class Parser:
    """Recursive-descent compiler from the pattern language to a regex over tokens."""

    def __init__(self, text: str, classes: Mapping[str, Piece]) -> None:
        self.text = text
        self.classes = classes
        self.items: list[tuple[str, str, str]] = []  # (kind, value, extra)
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _DSL_RE.match(text, pos)
            if m is None or m.end() == pos:
                raise PatternError(f"cannot read {text[pos:].strip()[:20]!r}")
            if m.group("gap"):
                n = int(m.group("n") or "4")
                if self.items and self.items[-1][0] == "gap":
                    # Gaps in a row are one longer gap; as separate bounded repeats they
                    # would backtrack exponentially on a reply that does not match.
                    n += int(self.items.pop()[1])
                if n > MAX_GAP_WORDS:
                    raise PatternError(f"a gap of {n} words is more than {MAX_GAP_WORDS}; "
                                        "split the phrase into two patterns")
                self.items.append(("gap", str(n), ""))
            elif m.group("punct"):
                punct = m.group("punct")
                if len(punct) == 2 and punct[0] != ")":
                    raise PatternError(f"'?' only follows a closing ')', not {punct[0]!r}")
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

    def piece(self) -> Piece:
        """The whole pattern; raises :class:`PatternError` when it is not valid."""
        if not self.items:
            raise PatternError("empty pattern")
        if self.items[0][0] == "gap" or self.items[-1][0] == "gap":
            raise PatternError("a pattern cannot start or end with '...'")
        p = self._alt(top=True)
        if self.i != len(self.items):
            raise PatternError(f"unexpected {self.items[self.i][1]!r}")
        if p.nullable or not p.first:
            raise PatternError("the pattern can match no words at all; make a word required")
        # Not compiled here: the matcher compiles each phrase once (a class entry is
        # compiled inside the phrases that use it), and a rubric's 500-odd compiles
        # were most of its start-up.
        return p

    def _alt(self, top: bool = False, close: str = "") -> Piece:
        options = [self._seq()]
        while self.i < len(self.items) and self.items[self.i][:2] == ("punct", "|"):
            if top:
                raise PatternError("'|' outside brackets; write (a|b)")
            self.i += 1
            options.append(self._seq())
        optional = False
        if close:
            if self.i >= len(self.items) or self.items[self.i][:2] != ("punct", close):
                raise PatternError(f"missing {close!r}")
            optional = close == "]" or self.items[self.i][2] == "?"
            self.i += 1
        if len(options) == 1 and not close:
            return options[0]
        rx = "(?:" + "|".join(o.rx for o in options) + ")" + ("?" if optional else "")
        return Piece(rx, frozenset().union(*(o.first for o in options)),
                      optional or any(o.nullable for o in options))

    def _seq(self) -> Piece:
        out: list[Piece] = []
        words: list[str] = []

        def flush() -> None:
            if words:
                toks = _tokens(" ".join(words))
                if toks:
                    out.append(Piece("".join(re.escape(t) + " " for t in toks),
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
                out.append(Piece(re.escape(stem_) + r"\S* ", frozenset({"^" + stem_}), False))
            elif kind == "gap":
                out.append(Piece(r"(?:\S+ ){0,N}".replace("N", str(min(int(value), 12))),
                                  frozenset({ANY}), True))
            elif kind == "star":
                out.append(Piece(r"\S+ ", frozenset({ANY}), False))
            elif kind == "anchor":
                out.append(Piece(r"\A" if value == "^" else r"\Z", frozenset(), True))
            elif kind == "cls":
                if value not in self.classes:
                    known = ", ".join(f"<{c}>" for c in sorted(self.classes))
                    raise PatternError(f"unknown class <{value}> (known: {known})")
                out.append(self.classes[value])
            elif value in "([":
                out.append(self._alt(close=")" if value == "(" else "]"))
            else:
                raise PatternError(f"unexpected {value!r}")
        flush()
        return concat(out)


@functools.lru_cache(maxsize=4096)
def _tokens(words: str) -> tuple[str, ...]:
    """A pattern's run of plain words, normalised (a rubric repeats the same runs)."""
    return tuple(normalize(words).tokens)


def _compiled(rx: str) -> re.Pattern[str]:
    try:
        return re.compile(rx)
    except re.error as e:  # pragma: no cover - the parser builds valid regexes
        raise PatternError(f"invalid pattern ({e})") from e


def compile_pattern(text: str) -> str:
    """The regex (over normalised text: tokens each followed by a space) for one pattern
    that uses no classes but ``<num>``. Raises ``ValueError`` for a bad pattern."""
    rx = Parser(text, {"num": NUM}).piece().rx
    _compiled(rx)
    return rx


ReportBad = Callable[["Src", str, str], None]
"""Reports a bad phrase: (where it was written, message, hint)."""


def compile_classes(raw: Mapping[str, Sequence[Src]], bad: ReportBad) -> dict[str, Piece]:
    """The word classes (``<name>``) as pieces, ``<num>`` included."""
    classes: dict[str, Piece] = {"num": NUM}
    for name, items in raw.items():
        alts = []
        for src in items:
            try:
                alts.append(Parser(src.text, {"num": NUM}).piece())
            except PatternError as e:
                bad(src, f"bad class entry {src.text!r}: {e}", "classes hold plain words "
                    "or phrases, with (a|b), [a] or word*")
        rx = "|".join(p.rx for p in alts) or r"(?!x)x"  # an empty class matches nothing
        classes[name] = Piece(f"(?:{rx})", frozenset().union(*(p.first for p in alts)), False)
    return classes


def build_matcher(items: Iterable[tuple[str, Src]], classes: Mapping[str, Piece],
                  bad: ReportBad) -> Matcher | None:
    """One :class:`Matcher` for phrases of a kind (``pattern``, ``exemplar``, ...);
    each bad phrase is reported through ``bad`` and left out."""
    regexes: list[re.Pattern[str]] = []
    rules: list[Rule] = []
    exact: dict[str, list[int]] = {}
    prefixes: list[tuple[str, int]] = []
    anywhere: list[int] = []
    for kind, src in items:
        try:
            piece = Parser(src.text, classes).piece()
            regex = _compiled(piece.rx)
        except PatternError as e:
            bad(src, f"bad {kind} {src.text!r}: {e}", "see the pattern language at the "
                "top of the built-in rubric.yaml")
            continue
        n = len(rules)
        regexes.append(regex)
        rules.append(Rule(kind, src.text, src.where))
        if ANY in piece.first:
            anywhere.append(n)
            continue
        for f in piece.first:
            if f[0] == "=":
                exact.setdefault(f[1:], []).append(n)
            else:
                prefixes.append((f[1:], n))
    if not rules:
        return None
    return Matcher(tuple(regexes), tuple(rules),
                   {k: tuple(v) for k, v in exact.items()}, tuple(prefixes),
                   tuple(anywhere))


@dataclass(frozen=True)
class Hit:
    i: int
    """First token."""
    j: int
    """One past the last token."""
    rule: Rule
    label: str = ""
    """Overrides ``rule.describe()`` (refusals, echoes)."""

    def overlaps(self, other: Hit) -> bool:
        return self.i < other.j and other.i < self.j


def find_phrases(m: Matcher | None, norm: Norm, hay: str) -> list[Hit]:
    """Every phrase matching at every word, in reply order (then rubric order), so a
    match that a later rule drops cannot hide another one."""
    if m is None or not norm.tokens:
        return []
    hits: list[Hit] = []
    offsets = norm.offsets
    for i, tok in enumerate(norm.tokens):
        for n in m.candidates(tok):
            found = m.regexes[n].match(hay, offsets[i])
            if found is None:
                continue
            _, j = norm.token_range(found.start(), max(found.end() - 1, found.start() + 1))
            hits.append(Hit(i, max(j, i + 1), m.rules[n]))
    return hits
