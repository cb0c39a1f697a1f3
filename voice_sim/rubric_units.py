"""Cutting a reply into the units the semantic layer embeds: sentences and clauses.

A reply is read as its normalised tokens (:func:`voice_sim.textnorm.normalize`).
*Sentences* end at ``. ! ? ; :`` or a dash in the original text. Each sentence is cut
further into *clauses* at commas, before a joining word ("but", "and", "so",
"because", "then", ...) and, for speech-engine text with no punctuation, before a new
subject or question opening ("i", "we", "let me", "could you", ...) once the clause
so far has three words. Clauses of one word join the next. A reply's units are its
sentences and its clauses (each span once), so a step spoken in one breath with
another is seen both alone and in its sentence.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from voice_sim.textnorm import Norm


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SENTENCE_MARKS = frozenset(".!?;:—–")
"""Characters between two words that end a sentence."""
_JOINERS = _words("""
but and so because cause then also although though however plus unfortunately
otherwise meanwhile whereas
""")
_OPENERS = _words("""
i we let could can would will may please is are do did have what when where
which how okay right
""")
_NO_CUT_AFTER = _words("""
because so if when what how why think know sure hope afraid glad and but or to
the a an of for with as than i we you whether where which who can could would
will do did is are am let me nothing anything something everything all thing
things way best only
""")
_SO_STARTS = _words("""
i we you it that the your let there what if can could this they he she
""")
""""so" joins clauses only before one of these ("so I'll refund it"); "so sorry" and
"so much" are not a new clause."""
MIN_CLAUSE = 2
"""A clause shorter than this (in words) joins the next one."""
MAX_UNITS = 24
"""At most this many units a reply (the longest rambling replies hold about 15)."""


@dataclass(frozen=True)
class Unit:
    """A stretch of the reply the semantic layer embeds: tokens ``[i, j)``."""

    i: int
    j: int
    text: str
    """The normalised words, joined by spaces (what is embedded)."""
    level: str
    """``sentence`` or ``clause``."""


def _gap(norm: Norm, k: int) -> str:
    """The original characters between token ``k - 1`` and token ``k``."""
    return norm.original[norm.spans[k - 1][1]:norm.spans[k][0]]


def _cut(norm: Norm, lo: int, hi: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [lo, *[c for c in cuts if lo < c < hi], hi]
    pieces = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    merged: list[tuple[int, int]] = []
    carry: int | None = None
    for a, b in pieces:
        start = a if carry is None else carry
        if b - start < MIN_CLAUSE:
            carry = start
            continue
        merged.append((start, b))
        carry = None
    if carry is not None:
        if merged:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((carry, hi))
    return merged


def units(norm: Norm) -> tuple[Unit, ...]:
    """The sentences and clauses of a normalised reply, in reply order."""
    toks = norm.tokens
    n = len(toks)
    if not n:
        return ()
    sent_cuts = [k for k in range(1, n) if any(c in SENTENCE_MARKS for c in _gap(norm, k))
                 or " - " in _gap(norm, k)]
    sentences = _cut(norm, 0, n, sent_cuts)
    out: dict[tuple[int, int], str] = {}
    for a, b in sentences:
        out[(a, b)] = "sentence"
        cuts: list[int] = []
        for k in range(a + 1, b):
            t = toks[k]
            nxt = toks[k + 1] if k + 1 < b else ""
            joins = t in _JOINERS and (t != "so" or nxt in _SO_STARTS)
            opens = (t in _OPENERS and toks[k - 1] not in _NO_CUT_AFTER
                     and k - (cuts[-1] if cuts else a) >= 3)
            if "," in _gap(norm, k) or joins or opens:
                cuts.append(k)
        clauses = _cut(norm, a, b, cuts)
        if len(clauses) > 1:
            for span in clauses:
                out.setdefault(span, "clause")
    spans = sorted(out, key=lambda s: (s[0], -s[1]))[:MAX_UNITS]
    return tuple(Unit(i, j, " ".join(toks[i:j]), out[(i, j)]) for i, j in spans)
