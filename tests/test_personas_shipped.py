"""The shipped personas: valid, varied, and completable both ways with plain text replies.

Each persona is driven through the real content scorer (``rubric.score_reply``) and the
mood machine: a scripted call of good replies must reach ``resolved``, a call of
dismissive, blaming or arguing replies must end ``hung_up`` or ``escalated``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from voice_sim.paths import SOURCE_ROOT
from voice_sim.persona import Call, Persona, check_paths, load_persona
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
}

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
}


@pytest.fixture(scope="module")
def personas() -> dict[str, Persona]:
    return {f.stem: load_persona(f) for f in FILES}


def drive(persona: Persona | Call, replies: list[str] | None, *, calm: bool | None,
          start: str | None = None) -> tuple[Call, list[str]]:
    """Play a call (a new one, or go on with ``persona`` when it is a Call) with text
    replies (None: each line's own sample reply until the call ends); return the call
    and the lines it went through, each with what was heard."""
    from voice_sim.rubric import score_reply

    call = persona if isinstance(persona, Call) else Call(persona)
    if start is not None:
        call.line = call.persona.lines[start]
    path = [call.line.id]
    queue = list(replies) if replies is not None else None
    while not call.ended and (queue is None or queue):
        reply = queue.pop(0) if queue is not None else call.line.sample_reply
        detected = score_reply(reply, call.line.text).ids - {"stay_calm"}
        move = call.advance(detected, calm=calm)
        path.append(f"{move.next_line or move.outcome} [{', '.join(sorted(move.heard))}]")
    return call, path


def test_at_least_eight_personas_all_valid() -> None:
    assert len(FILES) >= 8
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


def test_voices_and_titles_vary(personas: dict[str, Persona]) -> None:
    voices = {p.voice for p in personas.values()}
    assert len(voices) == len(personas)
    assert {(p.voice.id or "").split("+")[-1][0] for p in personas.values()} == {"f", "m"}
    assert len({p.title for p in personas.values()}) == len(personas)
    assert len({p.difficulty for p in personas.values()}) == 3


@pytest.mark.parametrize("pid", IDS)
def test_sample_replies_resolve(personas: dict[str, Persona], pid: str) -> None:
    call, path = drive(personas[pid], None, calm=True)
    assert [step.split(" [")[0] for step in path] == GOOD_PATH[pid], path
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
        found = score_reply(line.sample_reply, customer=line.text)
        where = f"{pid}:{line.id}: {line.sample_reply!r}"
        missed = [e for e in line.expects if e != "stay_calm" and found.get(e) is None]
        assert missed == [], (where, "misses", missed, "heard", sorted(found.ids))
        assert [d.id for d in found.pitfalls] == [], (where, found.pitfalls)
        assert turn_score(found, line.expects, calm=True).score == 100, where
        call, path = drive(p, None, calm=True, start=line.id)
        assert call.outcome == "resolved", (line.id, path)


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
    call, path = drive(personas[pid], BAD[pid], calm=False)
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
