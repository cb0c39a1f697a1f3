"""Word cues the semantic layer's classifier reads beside the embeddings.

Each cue is one regular expression over a reply's normalised text
(:func:`voice_sim.textnorm.normalize`: lowercase, contractions expanded, numbers as
words, fillers dropped), and the classifier gets 1.0 where it matches, 0.0 where it
does not. The cues are not decisions: they are inputs whose weights the per-id
logistic models learn from the labelled corpus (``scripts/train_rubric.py``), so a cue
that misleads is weighed down, not obeyed.

They cover what the sentence embedding and word features read poorly, found by error
analysis on out-of-fold cross-validation predictions (``docs/content_scoring.md``):

* ``contradict`` / ``defend``: the reply contradicts the customer or justifies the
  company ("that is not what happened", "strictly speaking", "our records show",
  "I very much doubt") — the corpus's quiet ``argue``;
* ``feeling``: the customer's feeling or burden named or validated ("no wonder", "I
  can see why", "anyone would be", "that sounds exhausting", "fed up") — ``empathize``
  (the bare "I understand" / "I hear you" are not in it);
* ``blame``: the fault put on the customer ("you should have", "if you had", "did you
  even", "most people") — ``blame_customer``;
* ``policy``: hiding behind policy, systems, rules or another department ("it is our
  policy", "not my department", "nothing I can do") — ``excuse``;
* ``timeframe`` / ``honest``: a time frame for the outcome or honesty about a limit
  ("within two working days", "by Friday", "to be honest", "I can not …, but") —
  ``set_expectations``;
* ``done`` / ``doing``: an action taken or being taken ("I have refunded", "it is now
  unblocked", "I am sending", "what I can do") — ``offer_solution``;
* ``reassure``: negations that reassure rather than contradict ("not at all", "you do
  not have to", "not your fault") — the polite replies a careless scorer flags;
* ``negation`` / ``question``: generic shape of the reply.

One pair cue reads the reply against the customer's line (:func:`negated_echo`): a
clause with a negation that repeats the customer's own content words ("Nobody's lied
to you" after "you lying clowns", "We don't cancel flights for fun") contradicts what
they said — the quiet ``argue`` the embedding misses most (cross-validated in
``docs/content_scoring.md``).

Deterministic: the same text always gives the same vector.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_NUM = (r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
        r"twenty|thirty|forty|forty eight|seventy two|a few|a couple of|an|a)")
_PAST = (r"(?:\w+ed|sent|put|set|made|given|taken|sorted|unblocked|unlocked|refunded|"
         r"cancelled|canceled|credited|reversed|arranged|applied|waived|removed|reset|"
         r"issued|added|switched|fixed|restored|rebooked|booked|raised|lifted|paid|done)")

CUES: dict[str, str] = {
    "contradict": (
        r"\b(?:that is|it is|this is) (?:not|just not|simply not) (?:true|right|correct|"
        r"what happened|the case|how it works|accurate|fair)\b|\bnot what happened\b|"
        r"\bthat can not be right\b|\bcan not have\b|\byou are wrong\b|\bthat is wrong\b|"
        r"\bnope\b"),
    "defend": (
        r"\b(?:actually|technically|strictly speaking|to be fair|in fairness|with respect|"
        r"for the record)\b|\bi (?:very much |really )?doubt\b|\bnobody (?:is|has)\b|"
        r"\bwe (?:do not|never|always|definitely|did not|have not)\b|"
        r"\bour (?:records|system|engineers|staff|packaging|network)\b.*"
        r"\b(?:show|say|says|indicate|perfectly|fully|always)\b|"
        r"\bperfectly (?:reasonable|stable|normal)\b|\bi (?:am|was|did) not\b"),
    "reassure": (
        r"\b(?:not at all|no problem|no worries|do not worry|no need to worry|"
        r"nothing wrong with|no wrong answer|not saying you|you do not (?:have|need) to|"
        r"you did not do anything wrong|not your fault|you are right|fair enough|"
        r"of course)\b"),
    "feeling": (
        r"\bno wonder\b|\bi can (?:hear|see|tell|imagine|understand) (?:how|why|that you)\b|"
        r"\b(?:anyone|anybody|everyone) would (?:be|feel)\b|\bi would be \w+ too\b|"
        r"\bmust (?:be|have been|feel) (?:so |really |incredibly )?\w+|"
        r"\b(?:that|it) sounds (?:so |really )?(?:awful|exhausting|stressful|frustrating|"
        r"horrible|hard|upsetting|worrying|miserable)\b|\bwhat a (?:nightmare|mess|week|day)\b|"
        r"\b(?:fed up|worn out|exhausted|stressed|upset|furious|annoyed|frustrated|worried)\b"),
    "blame": (
        r"\byou (?:should have|should not have|must have|need to have|ought to have|"
        r"did not|forgot|failed|were supposed|clearly|obviously)\b|"
        r"\bif you (?:had|would have)\b|\b(?:your|you are) (?:own )?(?:fault|responsibility|"
        r"problem)\b|\b(?:on|down to) you\b|\bdid you (?:actually|even|not)\b|"
        r"\byou never (?:told|said|mentioned|let|informed|called|rang|reported|updated|gave|"
        r"sent|asked)\b|"
        r"\bhave you (?:actually|even)\b|\bare you sure\b|\bmost people\b"),
    "policy": (
        r"\bpolicy\b|\bnot my (?:department|job|problem|call)\b|\bnothing (?:i|we) can do\b|"
        r"\bout of my hands\b|\b(?:the|our) (?:system|rules|terms)\b|"
        r"\bthat is (?:just )?how it (?:works|is)\b|\brules are rules\b|"
        r"\b(?:another|a different|a separate) (?:team|department)\b"),
    "timeframe": (
        rf"\b(?:within|in|by|up to|around|about|takes?|taking|over the next|next)\s+"
        rf"(?:{_NUM}\s+)?(?:(?:working|business|calendar)\s+)?"
        r"(?:minutes?|hours?|days?|weeks?|months?)\b|"
        r"\b(?:by|on|until|before|from)\s+(?:monday|tuesday|wednesday|thursday|friday|"
        r"saturday|sunday|tomorrow|tonight|the end of|midday|noon|lunchtime)\b|"
        r"\b(?:tomorrow|tonight|this afternoon|this evening|next week|"
        r"end of (?:the )?(?:day|week|month))\b|"
        rf"\b{_NUM} to {_NUM} (?:working |business )?(?:days|weeks|hours)\b"),
    "honest": (
        r"\b(?:to be honest|be honest|honestly|be straight|be upfront|be clear|realistic|"
        r"realistically|i can not promise|can not guarantee|i will not lie|truthfully|"
        r"the honest answer)\b|\bcan not\b.{0,40}\bbut\b|\bwhat i can not\b"),
    "done": (
        rf"\bi have (?:just |now |already )?{_PAST}\b|"
        rf"\b(?:it is|that is|is now|has been|have been|are now) {_PAST}\b"),
    "doing": (
        r"\bi am (?:going to |just )?\w+ing\b|\bi will \w+\b|\blet me \w+\b|"
        r"\bi can (?:either|offer|give|send|refund|book|arrange|put|get|do|have)\b|"
        r"\bwhat i can do\b|\b(?:would you like|do you want|would you prefer)\b|"
        r"\bor (?:i can|we can|if you prefer|would you rather)\b"),
    "negation": r"\b(?:not|no|never|nothing|nobody|none)\b",
    "question": (r"\b(?:what|when|which|how|could you|can you|would you|do you|did you|"
                 r"have you|is it|are you)\b"),
}
"""Cue name → regular expression over normalised text (the order is the feature order)."""

_RX = tuple(re.compile(p) for p in CUES.values())
_NEG = re.compile(CUES["negation"])
PAIR_CUES = ("negated_echo", "negated_echo_words")
"""The features of :func:`negated_echo` (after :data:`CUES` in the feature order)."""


def cue_vector(text: str) -> np.ndarray:
    """1.0 per cue of :data:`CUES` found in ``text`` (normalised), else 0.0."""
    import numpy as np

    return np.array([1.0 if rx.search(text) else 0.0 for rx in _RX], dtype=np.float32)


def negated_echo(unit_texts: Sequence[str], customer: str) -> np.ndarray:
    """The reply's clauses (normalised) against the customer's line (normalised): the
    most content words (stemmed, stop words and words of one or two letters left out)
    that a clause with a negation shares with the line, as [any shared, shared / 3 (at
    most 1)]."""
    import numpy as np

    from voice_sim.rubric_patterns import STOPWORDS
    from voice_sim.textnorm import stem

    def keys(text: str) -> set[str]:
        return {stem(t) for t in text.split() if len(t) > 2 and t not in STOPWORDS}

    said = keys(customer) if customer else set()
    best = 0
    if said:
        for text in unit_texts:
            if _NEG.search(text):
                best = max(best, len(keys(text) & said))
    return np.array([float(best >= 1), min(best, 3) / 3], dtype=np.float32)
