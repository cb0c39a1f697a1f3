"""Content scoring: which de-escalation steps and pitfalls a reply holds, with evidence.

Two layers decide together (:func:`score_reply`):

* **Rules** (:func:`rule_content`): ``rubric.yaml`` beside this module defines, per id
  (the 11 word-level steps, the 4 pitfalls, and ``stay_calm`` for its weights only),
  phrase *patterns* (:mod:`voice_sim.rubric_patterns`), *not_if* exceptions, a
  turn-score ``weight`` and a ``mood`` change, plus the reading rules below (negation,
  refusals, "but" clauses, the customer-line echo for ``listen_reflect``).
* **Semantics** (:mod:`voice_sim.rubric_semantic`): the reply's clauses embedded with
  all-MiniLM-L6-v2 and one logistic model per id, trained on a labelled corpus, whose
  inputs include what the built-in rules found. An id counts when the model says so;
  the built-in rules are its evidence and one of its inputs, not a decision of their
  own. Each detection carries the clause, the nearest labelled *exemplar* of the id
  (``exemplars:`` in ``rubric.yaml``: sentences matched by meaning) and its similarity.

A trainer file (``--rubric FILE``, or ``rubric.yaml`` beside a persona, see
:func:`rubric_beside`; read by :mod:`voice_sim.rubric_file`) extends the built-in
rubric: its patterns, exemplars, class words and synonyms are added; its ``weight``,
``mood`` and ``negation`` replace the built-in ones; ``replace: true`` under an id drops
the built-in phrases of that id and lets only the trainer's phrases decide it. A
trainer's patterns and exemplars decide on their own (a pattern match, or a clause
within 0.8 of an exemplar), with no retraining.

How the rules read a reply (:func:`rule_content`):

1. Every pattern of every id is matched.
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

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.errors import InputError
from voice_sim.rubric_file import (
    ALL_IDS,
    BUILTIN_PATH,
    CONTENT_IDS,
    Rubric,
    check_rubric,
    load_rubric,
    rubric_beside,
    valid_ids_hint,
)
from voice_sim.rubric_patterns import STOPWORDS, Hit, Rule, compile_pattern, find_phrases
from voice_sim.steps import PITFALL_IDS, STEP_IDS, WORD_STEP_IDS
from voice_sim.textnorm import NUMBER_WORDS, Norm, normalize, stem

if TYPE_CHECKING:
    from voice_sim.engines import Word
    from voice_sim.rubric_semantic import Judgement

__all__ = ["ALL_IDS", "BUILTIN_PATH", "CONTENT_IDS", "Content", "Detection", "Rubric",
           "TurnScore", "check_rubric", "compile_pattern", "load_rubric", "rubric_beside",
           "score_replies", "score_reply", "turn_score"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


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
    source: str = "rules"
    """What found it: ``rules``, ``semantic`` or ``rules+semantic``."""
    probability: float | None = None
    """The semantic model's probability for this id (None when it did not decide)."""
    exemplar: str = ""
    """The nearest labelled exemplar of this id (semantic evidence)."""
    exemplar_where: str = ""
    """``file:line`` of :attr:`exemplar`."""
    similarity: float | None = None
    """Cosine similarity of :attr:`evidence`'s clause and :attr:`exemplar`."""

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        d: dict[str, Any] = {"id": self.id, "kind": self.kind, "evidence": self.evidence,
                             "span": list(self.span), "start_s": self.start_s,
                             "end_s": self.end_s, "rule": self.rule, "weight": self.weight,
                             "where": self.where, "source": self.source,
                             "probability": _round(self.probability),
                             "exemplar": self.exemplar, "exemplar_where": self.exemplar_where,
                             "similarity": _round(self.similarity)}
        if self.note:
            d["note"] = self.note
        return d

    def why(self) -> str:
        """One line of evidence: the rule, or "close to: '<exemplar>' — 0.81"."""
        if self.exemplar and self.similarity is not None:
            close = f"close to: '{self.exemplar}' — {self.similarity:.2f}"
            return close if self.source == "semantic" else f"{self.rule}; {close}"
        return self.rule


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


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


# --- scoring -------------------------------------------------------------------------


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
             pitfalls: Sequence[Hit], contradicting: Sequence[Hit]) -> list[Hit]:
    """Frames followed by the customer's words, and echoes of the customer's line
    (rule 7). Restating in order to contradict ("next-day was an estimate") is not
    reflecting: no echo counts in a reply that argues or blames."""
    toks = norm.tokens
    mine = _content_keys(rb, toks)
    hits: list[Hit] = []
    theirs: set[str] = set()
    if customer:
        theirs = {key for _, key in _content_keys(rb, normalize(customer).tokens)}
    for h in find_phrases(rb.frames, norm, hay):
        if customer:
            # closing frames ("..., is that right?") follow the restatement
            near = [(k, key) for k, key in mine if h.i - 20 <= k < h.j + 20
                    and not h.i <= k < h.j and key in theirs]
            if near:
                words = ", ".join(dict.fromkeys(toks[k] for k, _ in near))
                hits.append(Hit(min(h.i, near[0][0]), max(h.j, near[-1][0] + 1), h.rule,
                                 f"{h.rule.describe()} + the customer's words: {words}"))
            continue
        after = [k for k, _ in mine if h.j <= k < h.j + 12]
        if len(after) >= 2:
            hits.append(Hit(h.i, after[1] + 1, h.rule, f"{h.rule.describe()} + a restatement"))
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
            hits.append(Hit(first, last + 1, Rule("echo", words, ""),
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
    """Find the steps and pitfalls in ``reply``: the rules (module docstring) and the
    semantic layer (:mod:`voice_sim.rubric_semantic`) together.

    ``customer`` is the line the reply answers (needed for ``listen_reflect``). When
    ``words`` (speech-engine word timings) are given, ``reply`` is their transcript and
    each detection also gets ``start_s`` / ``end_s``. Raises
    :class:`~voice_sim.errors.ModelError` when the embedding model is not installed.
    """
    return score_replies([(reply, customer)], words=[words], rubric=rubric)[0]


def score_replies(rows: Sequence[tuple[str, str | None]], *,
                  words: Sequence[Sequence[Word] | None] | None = None,
                  rubric: Rubric | None = None) -> list[Content]:
    """:func:`score_reply` for many (reply, customer line) pairs, the semantic layer's
    passes batched (``check-reply --jsonl``); each result is exactly what
    :func:`score_reply` gives the pair alone."""
    from voice_sim.rubric_semantic import judge_many

    base = load_rubric()
    rb = rubric if rubric is not None else base
    timings = list(words) if words is not None else [None] * len(rows)
    rules = [rule_content(r, c, words=w, rubric=base) for (r, c), w in zip(rows, timings,
                                                                             strict=True)]
    mine = rules if rb is base else [rule_content(r, c, words=w, rubric=rb)
                                     for (r, c), w in zip(rows, timings, strict=True)]
    verdicts = judge_many([(r, c, ru.ids) for (r, c), ru in zip(rows, rules, strict=True)], rb)
    return [_merge(r, w, rb, ru, mi, v) for (r, _), w, ru, mi, v in
            zip(rows, timings, rules, mine, verdicts, strict=True)]


def _merge(reply: str, words: Sequence[Word] | None, rb: Rubric, rules: Content,
           mine: Content, verdict: Judgement) -> Content:
    """One reply's content from its rule detections and the semantic verdict."""
    timed = _timings(reply, words)
    norm = verdict.norm
    found: dict[str, Detection] = {}
    for id_ in CONTENT_IDS:
        spec = rb.specs[id_]
        rule_d = mine.get(id_)
        ev = verdict.found.get(id_)
        p = verdict.probabilities.get(id_)
        trainer_rule = rule_d is not None and (spec.replace or _from_trainer(rule_d, rb))
        if ev is None and not trainer_rule:
            continue
        if rule_d is not None:
            found[id_] = replace(
                rule_d, source="rules+semantic" if ev is not None else "rules",
                probability=p, exemplar=ev.exemplar if ev else "",
                exemplar_where=ev.exemplar_where if ev else "",
                similarity=ev.similarity if ev else None, weight=spec.weight)
            continue
        assert ev is not None
        s, e = norm.original_span(ev.unit.i, ev.unit.j)
        over = [w for a, b, w in timed if a < e and s < b]
        rule = (f"semantic: p={p:.2f}" if ev.probability is not None
                else f"exemplar match {ev.similarity:.2f}")
        found[id_] = Detection(
            id=id_, kind="pitfall" if id_ in PITFALL_IDS else "step",
            evidence=reply[s:e], span=(s, e),
            start_s=min(w.start for w in over) if over else None,
            end_s=max(w.end for w in over) if over else None,
            rule=rule, weight=spec.weight, where=ev.exemplar_where, source="semantic",
            probability=p, exemplar=ev.exemplar, exemplar_where=ev.exemplar_where,
            similarity=ev.similarity)
    steps = tuple(found[i] for i in CONTENT_IDS if i in found and i not in PITFALL_IDS)
    pitfalls = tuple(found[i] for i in CONTENT_IDS if i in found and i in PITFALL_IDS)
    shown = {d.id for d in steps}
    suppressed = tuple(d for d in rules.suppressed if d.id not in shown)
    return Content(reply, steps, pitfalls, suppressed, norm.text)


def _from_trainer(d: Detection, rb: Rubric) -> bool:
    """Whether a rule detection came from a phrase in a trainer's file (those decide on
    their own; the built-in phrases are the semantic model's input)."""
    return len(rb.sources) > 1 and d.where.startswith(Path(rb.sources[-1]).name + ":")


def rule_content(reply: str, customer: str | None = None, *,
                 words: Sequence[Word] | None = None, rubric: Rubric | None = None) -> Content:
    """The hand-written rules alone (see the module docstring for the rules)."""
    rb = rubric if rubric is not None else load_rubric()
    norm = normalize(reply)
    hay = norm.text + " "
    toks = norm.tokens
    hits: dict[str, list[Hit]] = {}
    for id_ in CONTENT_IDS:
        if id_ == "listen_reflect":
            continue
        spec = rb.specs[id_]
        found = find_phrases(spec.matcher, norm, hay)
        if not found:
            continue
        if spec.negation:
            found = [h for h in found if not _negated(rb, toks, h.i)]
        if found and spec.not_if is not None:
            vetoes = find_phrases(spec.not_if, norm, hay)
            found = [h for h in found if not any(h.overlaps(v) for v in vetoes)]
        if found:
            hits[id_] = found
    refusals = find_phrases(rb.refusal, norm, hay)
    if refusals:
        alternative = bool(hits.get("offer_solution") or hits.get("escalate"))
        target = "set_expectations" if alternative else "excuse"
        label = ("refusal with an alternative" if alternative
                 else "refusal without an alternative")
        for h in refusals:
            hits.setdefault(target, []).append(
                Hit(h.i, h.j, h.rule, f'{label}: {h.rule.describe()}'))
    pitfall_hits = [h for p in PITFALL_IDS for h in hits.get(p, ())]
    suppressed: list[tuple[str, Hit, str]] = []
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

    def detection(id_: str, h: Hit, note: str = "") -> Detection:
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
                             hint=valid_ids_hint(id_, STEP_IDS, "steps are"))
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
