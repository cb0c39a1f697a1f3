"""When has the trainee finished? The end-of-turn decision, from more than silence.

A pause alone is a poor sign: people stop for breath, for "um", for "let me see…",
and a caller who answered every such pause would cut them off.

**The learned decision** (the default; :func:`model_pause_needed`): a small model
(:class:`TurnModel`, voice_sim/data/turn_end_model.json, fitted by
scripts/train_turn_end.py) gives P(the trainee has finished) from what is known once the
words reach the pause: the words themselves (their last one to three words, the opening
of their last clause and sentence, the final mark, how many sentences came before, as
features a logistic layer weighs: fitted on the content corpus's complete replies
against their prefixes, against the full sentences those replies went on after, and
against holding phrases, so it knows ``so that``, ``which``, ``bear with me`` from how
people write replies, not from a list, and that a lone ``I am so sorry.`` is more often
followed by more than a question to the customer is), the decoder's sentence-end
probability, the final pitch movement and the speech's length (a second logistic layer,
fitted on rendered speech through Whisper's pause decode). The ``--turn-end`` profile's
:data:`WAITS` turn P into a wait: finished, "may go on" (a finished sentence people
often go on from: a wait longer than the gap between two sentences), unsure, going on;
the pause so far is then measured against that wait, the words re-read whenever they
change (a commit's beam search replaces the pause decode's), and ``--silence-end`` caps
it. One decision costs ~0.03 ms (and is cached per pause). Its figures, on sets written
before it was trained, are in docs/benchmarks.md (scripts/bench_turn_end.py).

**The word-list rule** (:func:`pause_needed`, ``TurnConfig(decision="rule")``), kept to
be measured against (scripts/bench_turn_end.py reports both), asks four things when a
pause begins and decides how long a pause ends the turn:

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
and docs/benchmarks.md): asked at 0.2 s of pause as pipecat asks it, Smart Turn ended
67% of the figure set's answers inside a natural mid-answer pause (12/12 on real read
speech) against this decision's 3.5%, so it is not used and pipecat-ai is not a
dependency.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from voice_sim.errors import ModelError

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
    "fast": Patience(0.3, 0.8, 1.6),
    "normal": Patience(0.6, 1.1, 1.8),
    "patient": Patience(1.1, 1.4, 2.2),
}
"""The word-list rule's waits for each ``--turn-end`` choice (the learned decision's are
:data:`WAITS`); ``unsure_s`` is also how long a breath heard in a pause holds the turn
open. ``fast`` ends a finished sentence after 0.3 s of pause, ``normal`` after 0.6 s;
every profile's incomplete wait outlasts the 0.5-1.2 s mid-answer pauses people make
(scripts/bench_turn_end.py)."""

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


# --- the learned decision -------------------------------------------------------------

MODEL_PATH = Path(__file__).with_name("data") / "turn_end_model.json"
"""The fitted end-of-turn model (scripts/train_turn_end.py writes it, byte for byte)."""
Decision = Literal["model", "rule"]
DECISIONS: tuple[Decision, ...] = ("model", "rule")
"""``model``: the learned P(finished) below; ``rule``: the word lists above (kept to be
measured against, scripts/bench_turn_end.py)."""


@dataclass(frozen=True)
class Heard:
    """What the engine's words say at a pause, as the learned model reads them."""

    text: str
    """The engine's latest text, covering the speech up to the pause."""
    end_p: float | None
    """The decoder's probability that the text ends a sentence (None: not known)."""


@dataclass(frozen=True)
class Band:
    """A band of P(finished) and the pause that ends the turn in it."""

    min_p: float
    """From this P(finished) up (to the next band's) ..."""
    wait_s: float
    """... seconds of pause that end the turn ..."""
    reading: str
    """... and what the decision reads there (its ``why``)."""


WAITS: dict[TurnEnd, tuple[Band, ...]] = {
    "fast": (Band(0.75, 0.3, "finished"), Band(0.6, 0.7, "may go on"),
             Band(0.2, 1.25, "unsure"), Band(0.0, 1.6, "going on")),
    "normal": (Band(0.8, 0.3, "finished"), Band(0.65, 0.7, "may go on"),
               Band(0.2, 1.25, "unsure"), Band(0.0, 1.8, "going on")),
    "patient": (Band(0.9, 0.7, "finished"), Band(0.2, 1.4, "unsure"),
                Band(0.0, 2.2, "going on")),
}
"""The learned decision's waits by P(finished), highest band first (the last starts at
0). Chosen on the training renders' held-out voices (scripts/train_turn_end.py prints
what each profile's bands do there), never on a figure set. Measured once on the fourth
round's figure set (scripts/bench_turn_end.py --set final, docs/benchmarks.md):
``normal`` ends 3.5% of answers inside a natural pause (all on one LibriVox reader),
``patient`` none, ``fast`` 5.3%; a finished answer waits median 1.26 s under both
``normal`` and ``fast`` (most read "unsure"), 1.4 s under ``patient``. Fifth round
(docs/benchmarks.md): "may go on" from 0.55 under ``normal`` and 0.5 under ``fast``
halved the finished answers' median wait on the final set (1.25 -> 0.7 s) but doubled
the cut-offs there and on the Asterisk set (2.7% -> 5.3%, 2.2% -> 4.4%) and left the
p95 at 1.26 s, so it was not kept; acoustic features and a second reading did not
separate finished answers from unfinished ones better (the same page)."""


_MARKS = {".": ".", "?": "?", "!": "!", ",": ",", ";": ";", ":": ";", "…": "…",
          "-": "-", "—": "-", "–": "-"}
_TOKEN = re.compile(r"[a-z0-9']+")
_CLAUSE = re.compile(r"[.,;:!?…—–]|\s-\s")


def final_mark(text: str) -> str:
    """The punctuation mark ``text`` ends on (``...`` as ``…``), '' when none."""
    t = text.rstrip().rstrip("\"')]”’")
    if t.endswith("..."):
        return "…"
    return _MARKS.get(t[-1:], "") if t else ""


def text_features(text: str) -> list[str]:
    """The text model's features of a partial transcript: its final mark, its last one,
    two and three words, the first words of its last clause and sentence, the clause's
    length; digits read as ``#`` (an engine writes numbers either way)."""
    mark = final_mark(text)
    low = text.lower()
    words = [re.sub(r"\d+", "#", w) for w in _TOKEN.findall(low)]
    feats = [f"m:{mark}"]
    if not words:
        return [*feats, "empty"]
    last = words[-1]
    feats += [f"w1:{last}", f"w1m:{last}{mark}", f"w2:{' '.join(words[-2:])}",
              f"w3:{' '.join(words[-3:])}"]
    clause = _TOKEN.findall(_CLAUSE.split(low.rstrip(" .,;:!?…-—–"))[-1])
    sentence = _TOKEN.findall(re.split(r"[.!?]\s", low.rstrip(" .!?"))[-1])
    if clause:
        feats += [f"c1:{clause[0]}", f"c2:{' '.join(clause[:2])}",
                  f"cn:{min(len(clause), 8)}"]
    if sentence:
        feats += [f"s1:{sentence[0]}", f"sn:{min(len(sentence) // 3, 6)}"]
    before = len(re.findall(r"[.!?](?:\s|$)", low.rstrip(" .!?")))
    feats.append(f"ns:{min(before, 3)}")
    return feats


@dataclass(frozen=True)
class TurnModel:
    """Two logistic layers: the text's words (fitted on the content corpus's replies and
    their prefixes), then the text's score with the decoder's sentence-end probability,
    the final pitch and the speech's length (fitted on rendered speech)."""

    text_bias: float
    text_weights: dict[str, float]
    audio_bias: float
    audio_weights: dict[str, float]

    def text_logit(self, text: str) -> float:
        """The words' own log-odds of a finished answer."""
        w = self.text_weights
        return self.text_bias + sum(w.get(f, 0.0) for f in text_features(text))

    def probability(self, heard: Heard, pitch: Pitch, speech_s: float) -> float:
        """P(the trainee has finished | the words, end probability, pitch, speech)."""
        x = audio_features(self.text_logit(heard.text), heard.end_p, pitch, speech_s)
        z = self.audio_bias + sum(self.audio_weights[k] * v for k, v in x.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def audio_features(text_logit: float, end_p: float | None, pitch: Pitch,
                   speech_s: float) -> dict[str, float]:
    """The second layer's inputs (named as in the model file)."""
    known = end_p is not None
    p = min(max(end_p if end_p is not None else 0.5, 0.01), 0.99)
    return {"text": max(-8.0, min(8.0, text_logit)),
            "end_p": math.log(p / (1 - p)) if known else 0.0,
            "end_p_unknown": 0.0 if known else 1.0,
            "fall": float(pitch == "fall"), "rise": float(pitch == "rise"),
            "level": float(pitch == "level"),
            "speech": math.log(max(speech_s, 0.2))}


_model: TurnModel | None = None


def load_model(path: Path = MODEL_PATH) -> TurnModel:
    """The shipped model, read once per process."""
    global _model
    if _model is None or path != MODEL_PATH:
        import json

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            m = TurnModel(float(data["text"]["bias"]), dict(data["text"]["weights"]),
                          float(data["audio"]["bias"]), dict(data["audio"]["weights"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{path}: the end-of-turn model cannot be read ({e})",
                             hint="reinstall voice-sim, or rebuild it with "
                                  "scripts/train_turn_end.py") from e
        if path != MODEL_PATH:
            return m
        _model = m
    return _model


@functools.lru_cache(maxsize=256)
def finished_p(heard: Heard, pitch: Pitch, speech_s: float) -> float:
    """The shipped model's P(finished) (cached: a pause asks again every block)."""
    return load_model().probability(heard, pitch, speech_s)


def band(p: float, turn_end: TurnEnd = "normal") -> Band:
    """The band of ``turn_end``'s :data:`WAITS` that P(finished) ``p`` falls in."""
    return next(b for b in WAITS[turn_end] if p >= b.min_p)


def model_pause_needed(heard: Heard, pitch: Pitch, turn_end: TurnEnd = "normal",
                       upper_s: float | None = None, speech_s: float = 0.0
                       ) -> tuple[float, str]:
    """Seconds of pause that end the turn, and why, from the learned P(finished)."""
    p = finished_p(heard, pitch, round(speech_s, 2))
    b = band(p, turn_end)
    need, why = b.wait_s, f"{b.reading} (p={p:.2f})"
    if upper_s is not None and upper_s < need:
        return upper_s, f"{why} (capped by --silence-end)"
    return need, why
