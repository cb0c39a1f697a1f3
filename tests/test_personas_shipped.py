"""The shipped personas: valid, varied, and completable both ways.

Each persona is driven through the real content scorer (``rubric.score_reply``) and the
mood machine: a scripted call of good replies must reach ``resolved``, a call of
dismissive, blaming or arguing replies must end ``hung_up`` or ``escalated``; with text
replies for every phrasing the seed can pick, and (``slow``, ``model``) with the replies
synthesised and heard through Whisper.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from voice_sim.paths import SOURCE_ROOT
from voice_sim.persona import Call, Persona, check_paths, load_persona
from voice_sim.persona_check import EASY_POINTS, HARD_POINTS, difficulty_points
from voice_sim.persona_edit import set_line_audio
from voice_sim.persona_graph import mermaid
from voice_sim.steps import END_STATES, STEP_IDS

PERSONAS_DIR = SOURCE_ROOT / "personas"
SEEDS_DIR = SOURCE_ROOT.parent / "shared" / "seeds"
FILES = sorted(PERSONAS_DIR.glob("*.yaml"))
IDS = [f.stem for f in FILES]

# The lines the personas' own sample replies lead through, from the opening line.
GOOD_PATH: dict[str, list[str]] = {
    "double-billing": ["opening", "order_details", "when_money", "thanks"],
    "late-sofa": ["opening", "what_happened", "new_date", "what_if_again", "booked"],
    "damaged-goods": ["opening", "details", "options", "confirm", "relieved"],
    "frequent-complainer": ["opening", "other_things", "the_evenings", "engineer", "satisfied"],
    "perfectionist": ["opening", "colour", "spacing", "proof", "agreed"],
    "discount-demand": ["opening", "opens_up", "options", "deal"],
    "abusive-caller": ["opening", "checks_himself", "what_now", "tomorrow", "sorted"],
    "needs-supervisor": ["opening", "explains", "handover", "handed_over"],
    "follow-up-needed": ["opening", "story", "new_visit", "confirmed"],
    "telecom-outage": ["opening", "what_is_it", "until_then", "thanks"],
    "landlord-repair": ["opening", "when_fixed", "tonight", "thanks"],
    "confused-elderly": ["opening", "reads_letter", "statements", "will_you_ring", "thanks"],
    "bill-shock": ["opening", "why_so_high", "reading", "thanks"],
    "cancel-runaround": ["opening", "money_back", "in_writing", "thanks"],
    "engineer-no-show": ["opening", "new_slot", "lost_day", "trust", "thanks"],
    "flight-cancelled": ["opening", "options", "choice", "confirm", "thanks"],
    "hotel-overbooked": ["opening", "tonight", "the_money", "in_writing", "thanks"],
    "medical-billing": ["opening", "reference", "found_it", "proof", "thanks"],
    "bereavement": ["opening", "cannot_again", "the_fee", "what_next", "thanks"],
    "card-blocked-abroad": ["opening", "security", "unblocked", "backup", "thanks"],
    "fraud-hold": ["opening", "why_held", "release_it", "how_long", "on_record", "thanks"],
    "claim-denied": ["opening", "why_denied", "plumber", "how_long", "thanks"],
    "saas-outage": ["opening", "who_owns", "updates", "the_cost", "thanks"],
    "press-threat": ["opening", "what_it_costs", "until_thursday", "trust", "thanks"],
}

# The situations of issue 16, one persona each, beside the founders' nine.
NEW_SITUATIONS = {"telecom-outage", "engineer-no-show", "card-blocked-abroad", "fraud-hold",
                  "claim-denied", "flight-cancelled", "hotel-overbooked", "bill-shock",
                  "medical-billing", "cancel-runaround", "saas-outage", "landlord-repair",
                  "bereavement", "confused-elderly", "press-threat"}

SEEDS = range(3)
"""Seeds the text-reply walks are repeated with (each picks other phrasings)."""

BAD: dict[str, list[str]] = {
    "double-billing": [
        "Calm down, sir. You probably clicked the button twice.",
        "That's not true, our system doesn't make mistakes like that.",
    ],
    "late-sofa": [
        "Vans break down, that's not something I can control. There's nothing I can do.",
        "It's company policy, the system doesn't let me book a time.",
    ],
    "damaged-goods": [
        "Are you sure it wasn't damaged after it arrived? You must have dropped it.",
        "Well, you should have checked the box before you signed for it.",
    ],
    "frequent-complainer": [
        "You call us every week about this. There's nothing I can do about it.",
        "Honestly, you're overreacting, it's only a few drops.",
    ],
    "perfectionist": [
        "Honestly, that's not true, the colour matches the proof exactly.",
        "You approved the proof, so that's on you.",
    ],
    "discount-demand": [
        "Actually our prices are fair, everyone's went up. That's our policy.",
        "You're wrong, it's still cheaper than the competition.",
    ],
    "abusive-caller": [
        "Whoa, calm down. It's not my fault your car isn't ready.",
        "You're being ridiculous, stop overreacting.",
    ],
    "needs-supervisor": [
        "That's the system, refunds are handled by the operator. Not my department.",
        "It's our policy, there's nothing I can do about it.",
    ],
    "follow-up-needed": [
        "Well, I can only see customer chasing in the notes, so there's nothing I can do.",
        "You must have missed the engineer when he came.",
    ],
    "telecom-outage": [
        "Calm down, it's only a phone signal. There's nothing I can do about it.",
        "That's not our fault, it's the system. You should have checked the website.",
    ],
    "landlord-repair": [
        "That's not my department, the system says the ticket is still open.",
        "You should have called the emergency line. There's nothing I can do.",
    ],
    "confused-elderly": [
        "As I already said, you need to read the letter properly.",
        "Calm down, it's not that complicated. You should have asked your daughter.",
    ],
    "bill-shock": [
        "You must have used more electricity. That's your usage, not our problem.",
        "Calm down, sir. It's company policy to estimate readings.",
    ],
    "cancel-runaround": [
        "It's our policy, you have to give thirty days notice in writing.",
        "That's not true, we never got your cancellation. You should have checked.",
    ],
    "engineer-no-show": [
        "The engineer says you weren't in, so you must have missed him.",
        "That's not true, our system shows he came. There's nothing I can do.",
    ],
    "flight-cancelled": [
        "It's a crew shortage, that's not something I can control. Calm down.",
        "That's our policy, there's nothing I can do about it.",
    ],
    "hotel-overbooked": [
        "It's the system, overbooking is standard policy. There's nothing I can do.",
        "You should have arrived before nine. Calm down, madam.",
    ],
    "medical-billing": [
        "You need to call your insurer, that's not my department.",
        "Calm down, sir. You must have sent the wrong details.",
    ],
    "bereavement": [
        "That's our policy, there's nothing I can do. You'll have to send the certificate again.",
        "You should have called us sooner. There's nothing I can do about the fee.",
    ],
    "card-blocked-abroad": [
        "It's our security policy, the system blocks cards abroad. You should have told us.",
        "Calm down, sir. There's nothing I can do about it.",
    ],
    "fraud-hold": [
        "It's company policy, the system holds these payments. There's nothing I can do.",
        "Calm down, you should have told us the details changed.",
    ],
    "claim-denied": [
        "Actually the adjuster is right, that's not a sudden leak. It's our policy.",
        "You should have maintained your property. There's nothing I can do.",
    ],
    "saas-outage": [
        "It's a third party issue, that's not something I can control.",
        "Calm down, these things happen. There's nothing I can do.",
    ],
    "press-threat": [
        "Please don't threaten me. It's the supplier's fault, not ours.",
        "You're overreacting, calm down. It's company policy.",
    ],
}


@pytest.fixture(scope="module")
def personas() -> dict[str, Persona]:
    return {f.stem: load_persona(f) for f in FILES}


def drive(persona: Persona | Call, replies: list[str] | None, *, calm: bool | None,
          start: str | None = None, seed: int = 0) -> tuple[Call, list[str]]:
    """Play a call (a new one from ``seed``, or go on with ``persona`` when it is a Call)
    with text replies (None: each line's own sample reply until the call ends); return
    the call and the lines it went through, each with what was heard."""
    call = persona if isinstance(persona, Call) else Call(persona, seed=seed)
    if start is not None:
        call.go_to(start)
    path = [call.line.id]
    queue = list(replies) if replies is not None else None
    while not call.ended and (queue is None or queue):
        reply = queue.pop(0) if queue is not None else call.line.sample_reply
        detected = heard_in(reply, call.line.text)
        move = call.advance(detected, calm=calm)
        path.append(f"{move.next_line or move.outcome} [{', '.join(sorted(move.heard))}]")
    return call, path


@functools.cache
def heard_in(reply: str, customer: str) -> frozenset[str]:
    """The ids the real scorer finds in a reply to a line (each pair scored once per
    run: the walks with other seeds meet the same pairs again)."""
    from voice_sim.rubric import score_reply

    return frozenset(score_reply(reply, customer).ids - {"stay_calm"})


def test_at_least_twenty_personas_all_valid() -> None:
    """Valid with no warning: every voice exists on this machine, and every declared
    difficulty agrees with the call's shape (``persona check`` warns otherwise)."""
    assert len(FILES) >= 20
    problems = check_paths([PERSONAS_DIR])
    assert [p.line_text() for p in problems] == []  # no errors and no warnings


def test_personas_command_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    from voice_sim import cli

    assert cli.main(["personas", "--json"]) == 0
    out, err = capsys.readouterr()
    listed = {p["id"]: p for p in json.loads(out)}
    assert set(IDS) <= set(listed) and err == ""
    assert listed["double-billing"]["path"] == str(PERSONAS_DIR / "double-billing.yaml")


def test_customer_types_from_the_brief_are_covered() -> None:
    assert {"frequent-complainer", "perfectionist", "double-billing", "late-sofa",
            "damaged-goods", "discount-demand", "abusive-caller", "needs-supervisor",
            "follow-up-needed"} <= set(IDS)
    assert set(IDS) >= NEW_SITUATIONS
    assert set(IDS) == set(GOOD_PATH) == set(BAD)


@pytest.mark.parametrize("pid", IDS)
def test_persona_shape(personas: dict[str, Persona], pid: str) -> None:
    p = personas[pid]
    assert 6 <= len(p.lines) <= 15
    assert len(p.briefing.facts) >= 3 and p.briefing.goal
    assert any(ch.isdigit() for ch in " ".join(p.briefing.facts))  # order numbers, amounts
    ends = {line.end for line in p.lines.values()} | {p.on_max_turns}
    assert "resolved" in ends and ends & {"hung_up", "escalated"}
    for line in p.lines.values():
        if line.end is None:
            assert line.expects, f"{pid}:{line.id} tells the trainee nothing to aim for"
            assert len(line.texts) >= 2, f"{pid}:{line.id} has one phrasing: learnt by heart"
    assert any(line.voice.rate for line in p.lines.values()) or p.voice_per_mood.rate, \
        f"{pid}: the voice never follows the mood"


def test_voices_and_titles_vary(personas: dict[str, Persona]) -> None:
    from voice_sim.speak import list_voices

    voices = {p.voice for p in personas.values()}
    assert len(voices) == len(personas)
    assert len({p.voice.id for p in personas.values()}) >= 18
    genders = [(p.voice.id or "").split("+")[-1][0] for p in personas.values()]
    assert set(genders) == {"f", "m"} and min(genders.count("f"), genders.count("m")) >= 8
    accents = {(p.voice.id or "").split("+")[0] for p in personas.values()}
    english = {lang for v in list_voices() for lang in v.languages if lang.startswith("en")}
    assert accents <= english and len(accents) >= min(7, len(english)), (accents, english)
    assert len({p.title for p in personas.values()}) == len(personas)


def test_difficulty_is_spread_and_matches_the_shape(personas: dict[str, Persona]) -> None:
    """At least five of each difficulty, and the measurable shape orders them: every
    hard persona scores above every easy one (``difficulty_points``)."""
    from voice_sim.yamlfile import load_yaml

    levels = [p.difficulty for p in personas.values()]
    assert all(levels.count(d) >= 5 for d in ("easy", "medium", "hard")), levels
    points = {pid: difficulty_points(load_yaml(p.path), len(GOOD_PATH[pid]) - 1)[0]
              for pid, p in personas.items()}
    easy = [points[pid] for pid, p in personas.items() if p.difficulty == "easy"]
    hard = [points[pid] for pid, p in personas.items() if p.difficulty == "hard"]
    assert max(easy) < min(hard), points
    assert max(easy) < HARD_POINTS and min(hard) > EASY_POINTS


@pytest.mark.parametrize("pid", IDS)
def test_sample_replies_resolve(personas: dict[str, Persona], pid: str) -> None:
    for seed in SEEDS:
        call, path = drive(personas[pid], None, calm=True, seed=seed)
        assert [step.split(" [")[0] for step in path] == GOOD_PATH[pid], (seed, path)
        assert call.outcome == "resolved", path
        assert call.mood < personas[pid].start_mood


@pytest.mark.parametrize("pid", IDS)
def test_sample_replies_are_model_answers(personas: dict[str, Persona], pid: str) -> None:
    """Every line that expects an answer has a model one: the scorer hears every
    word-level step the line expects (``stay_calm`` is delivery, not words) and no
    pitfall, so a calm delivery of it scores 100; and from that line, answering with
    the sample replies ends the call well (resolved) within the turn limit."""
    from voice_sim.rubric import score_reply, turn_score

    p = personas[pid]
    for line in p.lines.values():
        if line.end is not None:
            continue
        assert line.sample_reply, f"{pid}:{line.id} has no sample_reply"
        for k, text in enumerate(line.texts):  # whichever phrasing the customer used
            found = score_reply(line.sample_reply, customer=text)
            where = f"{pid}:{line.id} phrasing {k}: {line.sample_reply!r}"
            missed = [e for e in line.expects if e != "stay_calm" and found.get(e) is None]
            assert missed == [], (where, "misses", missed, "heard", sorted(found.ids))
            assert [d.id for d in found.pitfalls] == [], (where, found.pitfalls)
            assert turn_score(found, line.expects, calm=True).score == 100, where
        for seed in SEEDS:
            call, path = drive(p, None, calm=True, start=line.id, seed=seed)
            assert call.outcome == "resolved", (line.id, seed, path)


# Steps a sample reply holds beyond its line's ``expects``, labelled by hand against
# ../shared/reference/deescalation.md and the labelling guide of scripts/eval_rubric.py
# ("persona:line" -> ids). A vague promise ("I'll help you", "let me fix it", "I'll put it
# right") is not offer_solution: that needs a concrete remedy or options.
ALSO_HOLDS: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in {
    "abusive-caller:settles": "empathize set_expectations",
    "bereavement:opening": "apologize",
    "bereavement:repeats": "apologize",
    "bill-shock:opening": "apologize",
    "bill-shock:repeats": "apologize",
    "cancel-runaround:fed_up": "empathize offer_solution",
    "cancel-runaround:in_writing": "follow_up set_expectations",
    "cancel-runaround:opening": "offer_solution",
    "cancel-runaround:repeats": "apologize",
    "card-blocked-abroad:angrier": "offer_solution",
    "card-blocked-abroad:backup": "set_expectations",
    "card-blocked-abroad:still_cross": "set_expectations",
    "card-blocked-abroad:how_long": "offer_solution",
    "card-blocked-abroad:repeats": "offer_solution",
    "card-blocked-abroad:opening": "offer_solution",
    "claim-denied:and_then": "offer_solution set_expectations",
    "claim-denied:not_enough": "empathize",
    "claim-denied:plumber": "set_expectations",
    "confused-elderly:statements": "document set_expectations",
    "damaged-goods:frustrated": "apologize",
    "damaged-goods:waiting": "set_expectations",
    "discount-demand:bristles": "empathize",
    "discount-demand:so_what_then": "set_expectations",  # what can be, once the old price can't
    "engineer-no-show:trust": "offer_solution",  # "the booking is marked as a priority"
    "flight-cancelled:choice": "offer_solution",
    "flight-cancelled:confirm": "set_expectations",  # "... in the next five minutes"
    "flight-cancelled:repeats": "apologize",
    "follow-up-needed:fed_up": "ask_clarify document empathize",  # "of course you
    # doubt me"
    "follow-up-needed:story": "set_expectations",
    "follow-up-needed:story_again": "document empathize",
    "follow-up-needed:what_now": "set_expectations",
    "fraud-hold:cant_you": "escalate offer_solution",
    "frequent-complainer:restart_again": "set_expectations",
    "frequent-complainer:the_evenings": "set_expectations",
    "hotel-overbooked:tonight": "set_expectations",  # "a taxi ... to take you there now"
    "landlord-repair:tonight": "set_expectations",
    "landlord-repair:when_fixed": "set_expectations",
    "late-sofa:new_date": "apologize",  # "... for our mistake": ownership
    "late-sofa:what_happened": "offer_solution",
    "needs-supervisor:explains": "empathize",
    "needs-supervisor:handover": "escalate",
    "press-threat:trust": "empathize",  # "That's fair.": concedes the caller's distrust
    "press-threat:until_thursday": "set_expectations",
    "saas-outage:the_cost": "set_expectations",  # "It will be [honoured]"
    "telecom-outage:opening": "apologize",
    "telecom-outage:repeats": "apologize",
}.items()}

KNOWN_MISREADS: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in {
    "fraud-hold:how_long": "offer_solution",  # a review's length and a call back: a
    # timeline and a follow-up, no remedy (no branch of the line reads offer_solution)
    "perfectionist:opening": "offer_solution",  # "Let's go through them one at a time:
    # first the ink colour, then ...": an order (break_down), no remedy (no branch of the
    # line reads offer_solution)
    "perfectionist:everything_wrong": "offer_solution",  # "starting with the ink
    # colour": an order (break_down), no remedy yet (the line's branches go the same way)
    "press-threat:angrier": "offer_solution",  # "Let me fix it for you now": no remedy named
    "saas-outage:angrier": "offer_solution",  # "engineering expects service back within
    # ninety minutes": a timeline (set_expectations), no action offered
}.items()}
"""Unexpected ids the shipped scorer still gives a sample reply (on one phrasing of its
line or more): listed so that nothing new slips in, and exact, so an entry the scorer
stops earning must be removed."""


@pytest.mark.parametrize("pid", IDS)
def test_sample_replies_gain_nothing_unexpected(personas: dict[str, Persona], pid: str) -> None:
    """Each sample reply, answering each phrasing of its own line, is given no id it does
    not hold. Precisely: every id the scorer finds must be in the line's ``expects``, in
    the reply's hand-labelled :data:`ALSO_HOLDS`, or be ``listen_reflect`` (judged against
    the customer's phrasing, and restating the caller beside another step is never
    wrong); any pitfall, or any other step, is unexpected, and the unexpected ids over
    the line's phrasings must be exactly its :data:`KNOWN_MISREADS` (usually none). A
    wrong extra step is not harmless: a reflective apology read as ``offer_solution``
    took a call down the "fix offered" branch before anything was fixed. (Scores come
    from :func:`heard_in`, shared with the walks above, so this adds almost no time.)"""
    p = personas[pid]
    labelled = (*ALSO_HOLDS, *KNOWN_MISREADS)
    assert {k.split(":")[0] for k in labelled} <= set(IDS)
    assert all(k.split(":")[1] in p.lines for k in labelled if k.startswith(f"{pid}:"))
    wrong = []
    for line in p.lines.values():
        if line.end is not None:
            continue
        key = f"{pid}:{line.id}"
        allowed = set(line.expects) | ALSO_HOLDS.get(key, frozenset()) | {"listen_reflect"}
        known = KNOWN_MISREADS.get(key, frozenset())
        extra = [heard_in(line.sample_reply, text) - allowed for text in line.texts]
        if frozenset().union(*extra) != known:
            wrong.append((key, [sorted(e) for e in extra], "known", sorted(known),
                          line.sample_reply))
    assert wrong == []

@pytest.mark.parametrize("pid", IDS)
def test_every_variant_of_every_line_is_reachable(personas: dict[str, Persona],
                                                 pid: str) -> None:
    """Every line is reachable (``persona check``), and each of its phrasings is the one
    said for some seed: both when a call arrives at the line and on the scripted walks."""
    p = personas[pid]
    for line in p.lines.values():
        said = {Call(p, seed=s).go_to(line.id).variant for s in range(32)}
        assert said == set(range(len(line.texts))), (line.id, said)
    heard: dict[str, set[int]] = {}
    for seed in range(16):
        for replies in (None, BAD[pid], BAD[pid][:1]):
            call = Call(p, seed=seed)
            heard.setdefault(call.line.id, set()).add(call.line.variant)
            drive(call, replies, calm=True)
            for m in call.moves:
                if m.next_line is not None:
                    heard.setdefault(m.next_line, set()).add(m.next_variant or 0)
    for lid, variants in heard.items():
        assert variants == set(range(len(p.lines[lid].texts))), (lid, variants)
    assert {lid for lid in heard} >= set(GOOD_PATH[pid])


def test_a_seed_replays_a_call_exactly(personas: dict[str, Persona]) -> None:
    """Same seed, same replies: the same phrasings, voices, moods and moves; other
    seeds pick other phrasings. A call without a seed draws one and keeps it."""
    def said(pid: str, seed: int) -> list[object]:
        call = Call(personas[pid], seed=seed)
        out: list[object] = [(call.line.id, call.line.text, call.voice)]
        drive(call, BAD[pid][:1], calm=False)
        out.append((call.line.id, call.line.text, call.voice))
        drive(call, None, calm=True)
        return out + [(m.to_json(), call.voice_for(personas[pid].lines[m.line]))
                      for m in call.moves]

    for pid in IDS:
        assert said(pid, 7) == said(pid, 7)
        assert len({str(said(pid, s)[:2]) for s in range(6)}) > 1, pid
    drawn = Call(personas["double-billing"])
    again = Call(personas["double-billing"], seed=drawn.seed)
    assert (drawn.line.text, drawn.seed) == (again.line.text, again.seed)


def test_the_voice_follows_the_mood(personas: dict[str, Persona]) -> None:
    """``per_mood`` speeds the voice up as the customer gets angrier and slows it as
    they calm down; a line's own ``voice`` (the outbursts) overrides the base."""
    p = personas["engineer-no-show"]
    call = Call(p, seed=0)
    calm_rate = call.voice.rate
    assert calm_rate == p.voice.rate
    drive(call, BAD[pid := "engineer-no-show"][:1], calm=False)
    assert call.line.id == "angrier" and call.mood > p.start_mood
    assert call.voice.rate > p.lines["angrier"].voice.rate > calm_rate, pid
    drive(call, None, calm=True)
    assert call.outcome == "resolved" and call.mood < p.start_mood
    assert call.voice_for(p.lines["thanks"]).rate < calm_rate


@pytest.mark.parametrize("pid", IDS)
def test_sample_replies_sound_like_phone_replies(personas: dict[str, Persona],
                                                 pid: str) -> None:
    """A model answer is something a person would say: one to three sentences, not a
    list of stock phrases."""
    for line in personas[pid].lines.values():
        if line.end is not None:
            continue
        sentences = [s for s in re.split(r"(?<=[.?!])\s+", line.sample_reply.strip()) if s]
        assert 1 <= len(sentences) <= 3, (pid, line.id, sentences)
        assert len(_words(line.sample_reply)) <= 45, (pid, line.id)


@pytest.mark.parametrize("pid", IDS)
def test_bad_replies_lose_the_customer(personas: dict[str, Persona], pid: str) -> None:
    call, path = drive(personas[pid], BAD[pid], calm=False, seed=1)
    assert call.outcome in ("hung_up", "escalated"), path
    assert len(call.moves) == 2, path  # one warning line first: the trainee may recover
    assert all(set(m.heard) & {"blame_customer", "excuse", "dismissive", "argue"}
               for m in call.moves), path
    assert call.mood > personas[pid].start_mood


@pytest.mark.parametrize("pid", IDS)
def test_one_slip_can_be_recovered(personas: dict[str, Persona], pid: str) -> None:
    """A bad first reply, then the sample replies: the customer can still be won back."""
    p = personas[pid]
    call, path = drive(p, BAD[pid][:1], calm=True)
    assert not call.ended and call.mood > p.start_mood, path
    _, more = drive(call, None, calm=True)
    assert call.outcome == "resolved", path + more


def test_abuse_without_a_boundary_ends_the_call(personas: dict[str, Persona]) -> None:
    call, path = drive(personas["abusive-caller"], [
        "I'm sorry, I understand you're frustrated.",
        "I'm really sorry, let me look into it for you.",
    ], calm=True)
    assert call.outcome == "hung_up", path
    assert call.line.id == "slams_phone"


def test_follow_up_needs_both_documenting_and_a_call_back(
        personas: dict[str, Persona]) -> None:
    p = personas["follow-up-needed"]
    script = [p.lines["opening"].sample_reply, p.lines["story"].sample_reply,
              "I've written the full history on your case so nobody has to ask you again."]
    call, path = drive(p, script, calm=True)
    assert not call.ended and call.line.id == "will_anyone_check", path
    call.advance({"follow_up"}, calm=True)
    assert call.outcome == "resolved"


@pytest.mark.parametrize("pid", IDS)
def test_saying_nothing_useful_never_resolves(personas: dict[str, Persona], pid: str) -> None:
    p = personas[pid]
    for detected in ([], ["stay_calm"], ["argue"], ["ask_clarify"]):
        call = Call(p)
        for _ in range(p.max_turns):
            if call.ended:
                break
            call.advance(detected)
        assert call.ended and call.outcome in END_STATES
        if detected != ["ask_clarify"]:
            assert call.outcome != "resolved", (pid, detected)


@pytest.mark.parametrize("pid", IDS)
def test_graph_is_mermaid(personas: dict[str, Persona], pid: str) -> None:
    p = personas[pid]
    text = mermaid(p)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    node = r'[A-Za-z_][A-Za-z0-9_]*'
    shape = r'(\["[^"]*"\]|\(\["[^"]*"\]\)|\(\(\([a-z_]+\)\)\)|\{\{"[^"]*"\}\})'
    defined: set[str] = set()
    used: set[str] = set()
    for line in lines[1:]:
        s = line.strip()
        if s.startswith(("classDef ", "class ")):
            continue
        m = re.fullmatch(rf'({node}){shape}?(?: (-->|-\.->)(?:\|"[^"]*"\|)? ({node}))?', s)
        assert m, line
        (defined if m.group(2) or not m.group(4) else used).add(m.group(1))
        if m.group(4):
            used.add(m.group(4))
    assert used <= defined, used - defined
    assert {f"L_{lid}" for lid in p.lines} <= defined


@pytest.mark.parametrize("pid", IDS)
def test_round_trip_keeps_the_layout(tmp_path: Path, pid: str) -> None:
    """``persona record`` edits a shipped file by a single added line."""
    src = PERSONAS_DIR / f"{pid}.yaml"
    copy = tmp_path / src.name
    copy.write_text(src.read_text())
    persona = load_persona(copy, check_voice=False)
    last = list(persona.lines)[-1]
    set_line_audio(copy, last, f"{pid}/{last}.wav")
    before, after = src.read_text().splitlines(), copy.read_text().splitlines()
    assert len(after) == len(before) + 1
    added = [ln for ln in after if ln not in before]
    assert added == [f"    audio: {pid}/{last}.wav"]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_lines_are_not_copied_from_the_seed_articles() -> None:
    if not SEEDS_DIR.is_dir():
        pytest.skip(f"{SEEDS_DIR} not present")
    seeds = set()
    for f in SEEDS_DIR.glob("*.txt"):
        w = _words(f.read_text(errors="replace"))
        seeds |= {" ".join(w[i:i + 7]) for i in range(len(w) - 6)}
    for f in FILES:
        w = _words(f.read_text())
        shared = {" ".join(w[i:i + 7]) for i in range(len(w) - 6)} & seeds
        assert not shared, (f.name, sorted(shared)[:3])


def test_every_step_is_exercised_somewhere(personas: dict[str, Persona]) -> None:
    expected = {s for p in personas.values() for line in p.lines.values() for s in line.expects}
    assert expected >= set(STEP_IDS) - {"stay_calm"}


# --- the same calls, spoken: synthesised replies heard through the recogniser ------------

TRAINEE_VOICE = ("en-us", 160, 45)
"""The synthetic trainee (as ``voice-sim demo``): id, words per minute, pitch."""


@pytest.fixture(scope="module")
def heard() -> Callable[[str], str]:
    """What Whisper hears of a reply spoken by the synthetic trainee. One engine load
    for the module; renders come from the TTS cache (rendered once per machine), and
    each text is transcribed once per run (the good and the slip walks share them)."""
    pytest.importorskip("faster_whisper", reason="the whisper extra is not installed")
    from voice_sim.audio import load_audio
    from voice_sim.engines import get_engine
    from voice_sim.errors import ModelError
    from voice_sim.speak import Voice, cached_render

    try:
        engine = get_engine("whisper")
    except ModelError as e:
        pytest.skip(f"no Whisper model: {e.line()}")
    voice = Voice(id=TRAINEE_VOICE[0], rate=TRAINEE_VOICE[1], pitch=TRAINEE_VOICE[2])
    memo: dict[str, str] = {}

    def hear(text: str) -> str:
        if text not in memo:
            memo[text] = engine.transcribe(load_audio(cached_render(text, voice))).text
        return memo[text]

    return hear


def drive_spoken(persona: Persona, replies: list[str] | None, hear: Callable[[str], str],
                 *, seed: int = 0) -> tuple[Call, list[str]]:
    """As :func:`drive`, but each reply is spoken and scored from its transcript."""
    from voice_sim.rubric import score_reply

    call = Call(persona, seed=seed)
    path = [call.line.id]
    queue = list(replies) if replies is not None else None
    while not call.ended and (queue is None or queue):
        text = queue.pop(0) if queue is not None else call.line.sample_reply
        transcript = hear(text)
        move = call.advance(score_reply(transcript, call.line.text).ids - {"stay_calm"},
                            calm=queue is None)
        path.append(f"{move.next_line or move.outcome} [{transcript}]")
    return call, path


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.parametrize("pid", IDS)
def test_spoken_calls_go_both_ways(personas: dict[str, Persona], heard: Callable[[str], str],
                                   pid: str) -> None:
    """Through Whisper, the sample replies take the good path to ``resolved`` and the
    bad replies lose the customer, as the text replies do."""
    p = personas[pid]
    call, path = drive_spoken(p, None, heard, seed=3)
    assert [step.split(" [")[0] for step in path] == GOOD_PATH[pid], path
    assert call.outcome == "resolved", path
    call, path = drive_spoken(p, BAD[pid], heard, seed=4)
    assert call.outcome in ("hung_up", "escalated") and len(call.moves) == 2, path


@pytest.mark.slow
@pytest.mark.model
def test_demo_with_a_seed_replays_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          heard: Callable[[str], str]) -> None:
    """``voice-sim demo --seed 7 --json`` twice: the same lines, phrasings, voices'
    audio and transcripts, and the seed in session.json."""
    from voice_sim import cli

    def demo(*extra: str) -> dict[str, object]:
        assert cli.main(["demo", "--seed", "7", "--json", "--engine", "whisper",
                         "--out", str(tmp_path), *extra]) == 0
        record: dict[str, object] = json.loads(capsys.readouterr().out)
        return record

    def spoken(record: dict[str, object]) -> list[object]:
        turns = record["turns"]
        assert isinstance(turns, list)
        return [(t["customer"]["line"], t["customer"]["variant"], t["customer"]["text"],
                 t["transcript"], t["move"]["next_variant"]) for t in turns] + \
            [record["closing"], record["outcome"]]

    first, second = demo("--persona", "telecom-outage"), demo("--persona", "telecom-outage")
    assert first["seed"] == second["seed"] == 7
    assert spoken(first) == spoken(second) and first["outcome"] == "resolved"
    assert first["session_dir"] != second["session_dir"]
    one, other = Path(str(first["session_dir"])), Path(str(second["session_dir"]))
    assert (one / "turn-02-customer.wav").read_bytes() == \
        (other / "turn-02-customer.wav").read_bytes()
