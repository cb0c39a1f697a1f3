"""The de-escalation vocabulary: step, pitfall and end-state ids.

These ids are a public contract (CLI output, JSON, persona files, reports) and are
spelled exactly as in the project's reference, ``shared/reference/deescalation.md``.
"""

from __future__ import annotations

STEPS: dict[str, str] = {
    "stay_calm": "calm, steady delivery: no rise in pitch, pace or volume (measured from audio)",
    "listen_reflect": "restate the customer's problem in your own words, check understanding",
    "empathize": "acknowledge the customer's feeling and validate it",
    "apologize": "a sincere apology or ownership of the mistake",
    "ask_clarify": "open questions to understand the cause and what the customer needs",
    "offer_solution": "a concrete action or options, with the customer involved in the choice",
    "set_expectations": "honest about what can and cannot be done; realistic timelines",
    "follow_up": "commit to check back, or offer further help after resolving",
    "escalate": "hand over to a supervisor or specialist, briefing them",
    "set_boundary": "a respectful limit when the caller is abusive",
    "break_down": "split a large problem into smaller parts, one at a time",
    "document": "record the interaction so it is not lost or repeated",
}
"""Step id -> what a good reply does."""

PITFALLS: dict[str, str] = {
    "blame_customer": "finger-pointing at the customer",
    "excuse": "deflecting responsibility, hiding behind policy or systems, refusing with no "
              "alternative",
    "dismissive": "minimising the feeling, telling the customer how to feel, brushing off",
    "argue": "contradicting, getting defensive, justifying yourself",
}
"""Pitfall id -> what an escalating reply does."""

STEP_IDS: tuple[str, ...] = tuple(STEPS)
PITFALL_IDS: tuple[str, ...] = tuple(PITFALLS)
WORD_STEP_IDS: tuple[str, ...] = tuple(s for s in STEPS if s != "stay_calm")
"""Steps the content scorer finds in words; ``stay_calm`` comes from delivery analysis."""

ALL_IDS: tuple[str, ...] = (*STEP_IDS, *PITFALL_IDS)
"""Every id a reply can be credited with, in the canonical order used in reports."""

END_STATES: tuple[str, ...] = ("resolved", "escalated", "hung_up")
"""How a persona's call can end by itself."""

OUTCOMES: tuple[str, ...] = (*END_STATES, "incomplete", "quit")
"""Every outcome a session can record (``incomplete``: answers ran out or turn limit;
``quit``: the trainee stopped)."""
