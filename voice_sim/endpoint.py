"""When has the trainee finished? The end-of-turn rule, from more than silence.

A pause alone is a poor sign: people stop for breath, for "um", for "let me see…",
and a caller who answered every such pause would cut them off. The rule here asks
four things when a pause begins and decides how long a pause ends the turn:

* **the words so far** (the engine's latest text, when it covers the speech up to
  the pause): ending in a continuation (``and``, ``so``, ``the``…), a filler, a
  holding phrase (``let me see``), trailing punctuation (``,`` ``…``) or a lone
  subordinate clause (``if you give me the number``) means more is coming; a full
  stop, question or exclamation mark means it may be over, if the engine wrote it
  with confidence (:data:`END_P`);
* **the final pitch**: a statement ends on a fall; a level or rising end is a
  clause boundary or a list going on;
* **the length of the answer so far**: a finished sentence shorter than
  :data:`SHORT_ANSWER_S` is an opening (``You are right,``), not yet an answer;
* **the pause length** itself: the wait it needs comes from the above and the
  trainee's ``--turn-end`` choice (``fast``, ``normal``, ``patient``), and never
  exceeds ``--silence-end`` (the upper bound).

No profile ends a turn before the engine's words reach the pause (a slow decode costs
time, never a cut-off), except at the upper bound.

Measured against Smart Turn v3.2 by ``scripts/bench_turn_end.py`` (see its docstring
and docs/benchmarks.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

TurnEnd = Literal["fast", "normal", "patient"]
TURN_ENDS: tuple[TurnEnd, ...] = ("fast", "normal", "patient")
Words = Literal["complete", "incomplete", "unknown", "pending"]
"""What the words say; ``pending``: the engine has not decoded up to the pause yet."""
Pitch = Literal["fall", "level", "rise", "unknown"]


@dataclass(frozen=True)
class Patience:
    """Seconds of pause that end the turn, by what the end of the speech says."""

    complete_s: float
    """The words form a finished answer and the pitch did not rise."""
    unsure_s: float
    """Neither sign says finished nor unfinished."""
    incomplete_s: float
    """The words say more is coming (a filler, ``and``, ``let me see``, ``…``)."""


PATIENCE: dict[TurnEnd, Patience] = {
    "fast": Patience(0.2, 0.5, 1.3),
    "normal": Patience(0.3, 0.8, 1.6),
    "patient": Patience(0.5, 1.1, 2.2),
}
"""The trade-offs ``--turn-end`` picks from. ``normal``'s incomplete wait outlasts the
0.5-1.2 s mid-answer pauses the benchmark renders; ``fast`` answers sooner and cuts off
more (scripts/bench_turn_end.py reports both)."""

_CONTINUES = frozenset((
    "and", "or", "but", "so", "because", "cause", "the", "a", "an", "to", "of", "for",
    "with", "without", "about", "from", "into", "at", "by", "is", "are", "was", "were",
    "be", "am", "i", "i'm", "we", "my", "your", "our", "their", "his", "its", "if",
    "then", "than", "which", "whose", "while", "as", "like", "um", "uh", "er", "erm",
    "hmm", "mm", "ah", "eh", "just", "also", "plus", "could", "would", "should", "might",
    "must", "let", "let's",
))
"""Last words that do not end an answer."""
_HOLDING = ("let me see", "let me check", "let me look", "let me think", "one moment",
            "one second", "just a moment", "just a second", "hang on", "bear with me",
            "give me a moment", "give me a second", "what i can do is", "i mean")
"""Phrases after which the trainee is still busy (looking something up, thinking)."""
_SUBORDINATE = frozenset((
    "if", "when", "whenever", "because", "since", "although", "though", "unless",
    "once", "while", "before", "after", "until", "as",
))
"""A last sentence opening with one of these and no comma is a clause waiting for its
main clause (``If you give me the order number…``)."""
_WORD = re.compile(r"[a-z']+")


END_P = 0.6
"""An engine's probability of a sentence end (``. ? !``) where it wrote the text's final
mark, below which a full stop does not count as finished. Whisper writes a full stop
at the end of almost any audio it is given, but less surely after a clause the speaker
goes on from: on the rendered answers of scripts/bench_turn_end.py (dev and first
held-out sets) finished sentences scored 0.57-0.86 (one 0.33), clauses followed by a
breath 0.22-0.65."""


def words_state(text: str, end_p: float | None = None) -> Words:
    """Whether ``text`` (a partial transcript) reads as a finished answer; ``end_p``: the
    engine's probability that its final mark ends a sentence, when it knows one (a
    full stop written with less than :data:`END_P` is ``unknown``)."""
    t = text.strip()
    if not t:
        return "unknown"
    if t.endswith(("...", "…", ",", "-", "—", "–", ";", ":")):
        return "incomplete"
    words = _WORD.findall(t.lower())
    if not words:
        return "unknown"
    tail = " ".join(words[-5:])
    if words[-1] in _CONTINUES or any(tail.endswith(h) for h in _HOLDING):
        return "incomplete"
    last = re.split(r"[.!?]\s+", t)[-1]
    first = _WORD.findall(last.lower())[:1]
    if first and first[0] in _SUBORDINATE and "," not in last:
        return "incomplete"
    if t[-1] in ".!?":
        return "complete" if end_p is None or end_p >= END_P else "unknown"
    return "unknown"


# --- final pitch --------------------------------------------------------------------

F0_MIN, F0_MAX = 70.0, 400.0
"""Hertz: the pitch range searched (adult voices, espeak-ng's included)."""
FRAME = 640
"""Samples per pitch frame (40 ms at 16 kHz) ..."""
HOP = 160
"""... taken every 10 ms."""
APERIODIC = 0.25
"""Cumulative-mean-normalised difference above which a frame has no pitch (YIN)."""
TAIL_S = 0.25
"""Seconds at the end of the speech whose pitch is compared ..."""
BODY_S = 1.2
"""... with the pitch of this many seconds before it."""
FALL_ST = 1.5
"""Semitones of fall (or rise) that count as a final fall (rise)."""


def pitch_track(x: np.ndarray, sr: int = 16_000) -> np.ndarray:
    """F0 in Hz per 10 ms frame (NaN where unvoiced): YIN's difference function."""
    import numpy as np

    lo, hi = int(sr / F0_MAX), int(sr / F0_MIN)
    w = FRAME - hi
    n = 1 + (len(x) - FRAME) // HOP if len(x) >= FRAME else 0
    if n <= 0 or w <= 0:
        return np.zeros(0)
    idx = np.arange(n)[:, None] * HOP
    frames = x[idx + np.arange(FRAME)[None, :]].astype(np.float64)
    base = frames[:, :w]
    d = np.empty((n, hi + 1))
    d[:, 0] = 0.0
    for tau in range(1, hi + 1):
        diff = base - frames[:, tau:tau + w]
        d[:, tau] = np.einsum("ij,ij->i", diff, diff)
    cum = np.cumsum(d[:, 1:], axis=1) / np.arange(1, hi + 1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] / np.maximum(cum, 1e-12)
    out = np.full(n, np.nan)
    energy = np.einsum("ij,ij->i", base, base) / w
    for i in range(n):
        if energy[i] < 1e-7:
            continue
        row = cmnd[i, lo:]
        below = np.flatnonzero(row < APERIODIC)
        if not below.size:
            continue
        k = below[0]
        while k + 1 < len(row) and row[k + 1] < row[k]:
            k += 1
        out[i] = sr / (lo + k)
    return out


def final_pitch(x: np.ndarray, sr: int = 16_000) -> Pitch:
    """Fall, level or rise at the end of ``x`` (speech that ends at its last sample)."""
    import numpy as np

    seg = x[-int((TAIL_S + BODY_S) * sr):]
    f0 = pitch_track(seg, sr)
    if not f0.size:
        return "unknown"
    tail_frames = int(TAIL_S * sr / HOP)
    tail, body = f0[-tail_frames:], f0[:-tail_frames]
    tail, body = tail[~np.isnan(tail)], body[~np.isnan(body)]
    if len(tail) < 3 or len(body) < 5:
        return "unknown"
    st = 12 * math.log2(float(np.median(tail)) / float(np.median(body)))
    if st <= -FALL_ST:
        return "fall"
    if st >= FALL_ST:
        return "rise"
    return "level"


# --- the rule -----------------------------------------------------------------------

SHORT_ANSWER_S = 1.2
"""Seconds of speech below which a finished sentence is only an opening (``You are
right,`` ``I see,`` ``Okay,``): an answer to an upset caller rarely stops there, and
the pause after it is often a comma's."""


def pause_needed(words: Words, pitch: Pitch, turn_end: TurnEnd = "normal",
                 upper_s: float | None = None, speech_s: float | None = None
                 ) -> tuple[float, str]:
    """Seconds of pause that end the turn, and why, from what the speech's end says
    (``speech_s``: seconds of speech so far, when known)."""
    p = PATIENCE[turn_end]
    if words == "complete" and speech_s is not None and speech_s < SHORT_ANSWER_S:
        words = "unknown"
    if words == "incomplete":
        need, why = p.incomplete_s, "the words go on"
    elif words == "pending":
        # Not ending before the words are known: a slow decode costs time, never a
        # cut-off. (Ending on a final fall alone, before the words, cut 2 of 11 live
        # answers off seconds early: espeak-ng, like many speakers, falls at commas.)
        need, why = p.incomplete_s, "waiting for the words"
    elif words == "complete" and pitch != "rise":
        need, why = p.complete_s, "a finished sentence"
    else:
        need, why = p.unsure_s, f"words {words}, pitch {pitch}"
    if upper_s is not None and upper_s < need:
        return upper_s, f"{why} (capped by --silence-end)"
    return need, why
