"""The terminal scorecard, from a real session record."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from voice_sim.record import SessionRecord
from voice_sim.scorecard import format_scorecard

real = [pytest.mark.slow, pytest.mark.model]


def _record(session: Path) -> dict[str, Any]:
    rec: dict[str, Any] = json.loads((session / "session.json").read_text(encoding="utf-8"))
    return rec


def _fits(text: str, width: int, record: dict[str, Any]) -> None:
    paths = {record["session_dir"], str(Path(record["session_dir"]) / "report.html")}
    for line in text.splitlines():
        # A path is never broken, so it may be the one line that runs long.
        if line.removeprefix("Report:  ").removeprefix("Session: ") in paths:
            continue
        assert len(line) <= width, line


@pytest.mark.parametrize("width", [80, 60])
@pytest.mark.slow
@pytest.mark.model
def test_every_turn_is_shown_within_the_width(recorded_session: Path, width: int) -> None:
    rec = _record(recorded_session)
    text = format_scorecard(SessionRecord.from_json(rec), width=width)
    _fits(text, width, rec)
    flat = " ".join(text.split())
    for t in rec["turns"]:
        assert f"Turn {t['index']} " in text
        # What both sides said, word for word (wrapping only changes the spaces).
        assert " ".join(t["customer"]["text"].split()) in flat
        assert " ".join(t["transcript"].split()) in flat
        for d in t["steps"]:
            assert f"+ {d['id']}" in text
            assert " ".join(d["evidence"].split())[:20] in flat
        for d in t["pitfalls"]:
            assert f"! {d['id']}: \u201c" in text
        heard = {d["id"] for d in t["steps"]}
        for s in t["customer"]["expects"]:
            if s != "stay_calm" and s not in heard:
                assert f"· missed {s}" in text
    verdicts = [line for line in text.splitlines() if "delivery: " in line]
    assert len(verdicts) == len(rec["turns"])
    for line, t in zip(verdicts, rec["turns"], strict=True):
        want = "delivery: calm (" if t["delivery"]["calm"] else "delivery: not calm ("
        assert want in line
    assert f"Score: {rec['score']:.0f}/100" in text
    assert f"Outcome: {rec['outcome']}" in text
    assert text.count("\n  1. ") + text.count("\n  2. ") + text.count("\n  3. ") == min(
        3, len(rec["practise_next"]))


@pytest.mark.slow
@pytest.mark.model
def test_the_pitfall_turn_of_the_recorded_call(recorded_session: Path) -> None:
    # The second answer ("... that's our policy, there's nothing I can do") is an excuse.
    rec = _record(recorded_session)
    text = format_scorecard(SessionRecord.from_json(rec))
    block = text.split("Turn 2 ")[1].split("Turn 3 ")[0]
    assert "! excuse: \u201c" in block
    assert "tip: You said" in block


@pytest.mark.slow
@pytest.mark.model
def test_long_and_hostile_text_keeps_the_layout(recorded_session: Path) -> None:
    rec = copy.deepcopy(_record(recorded_session))
    t = rec["turns"][0]
    t["transcript"] = "word " * 80 + "x" * 150 + "\n\n\ttabbed\nlines"
    t["steps"][0]["evidence"] = "e" * 200
    text = format_scorecard(SessionRecord.from_json(rec))
    _fits(text, 80, rec)
    assert "tabbed lines" in " ".join(text.split())
    assert "\u201c" + "e" * 51 + "…\u201d" in text  # long evidence is shortened


@pytest.mark.slow
@pytest.mark.model
def test_a_failed_session_says_so(recorded_session: Path) -> None:
    rec = copy.deepcopy(_record(recorded_session))
    rec.update(status="failed", outcome="quit", error="DeviceError: microphone unplugged")
    text = format_scorecard(SessionRecord.from_json(rec))
    assert "did not finish (failed): DeviceError: microphone unplugged" in " ".join(
        text.split())


def test_a_session_stopped_before_any_answer() -> None:
    # The record run_call writes before the first answer: no turns, no outcome yet.
    rec = {"format": 1, "status": "in_progress", "mode": "practice", "persona": "late-sofa",
           "persona_title": "The sofa that never came", "session_dir": "/s/x", "outcome": None,
           "score": 0.0, "engine": "whisper", "baseline": None, "started_at":
           "2025-05-02T10:00:00+00:00", "turns": [], "closing": None, "practise_next": []}
    text = format_scorecard(SessionRecord.from_json(rec))
    assert "Outcome: unfinished   Score: 0/100   Turns: 0   Calm: 0/0 turns" in text
    assert "did not finish (in_progress)" in text
    assert "no baseline (population defaults)" in text
    assert all(len(line) <= 80 for line in text.splitlines())


@pytest.mark.model
def test_turn_taking_is_shown_with_its_times_and_a_yield_costs_nothing(
        whisper: Any, espeak_wav: Any, tmp_path: Path) -> None:
    """One real answer (espeak through Whisper, against a calm baseline) scored as the
    call scores it three ways: heard plainly; after a reply that cut in at its pause and
    gave way; and said over the customer's line. The yield changes nothing but the
    record (the call cut in too soon, not the trainee); talking over is a delivery fault.
    Both are in session.json, the scorecard and the report, with their times."""
    from conftest import RECORDED_REPLIES

    from voice_sim.audio import load_audio
    from voice_sim.bargein import Interruption, Yield
    from voice_sim.delivery import Baseline
    from voice_sim.persona import Call, load_persona
    from voice_sim.record import YIELD_NOTE
    from voice_sim.report import render_report
    from voice_sim.session import (
        BASELINE_SENTENCE,
        TALKED_OVER,
        Answer,
        CallOptions,
        _score_turn,
    )

    persona = load_persona("double-billing")
    x = load_audio(espeak_wav(RECORDED_REPLIES[0]))
    heard = whisper.transcribe(x)
    options = CallOptions(engine=whisper, out_root=tmp_path, baseline=Baseline.from_audio(
        load_audio(espeak_wav(BASELINE_SENTENCE))))

    def scored(n: int, **kw: Any) -> Any:
        call = Call(persona, seed=1)
        answer = Answer(samples=x, wav=tmp_path / f"turn-0{n}-answer.wav", transcript=heard)
        return _score_turn(n, call.line, "c.wav", answer, call, options, **kw)

    plain, reply = scored(1)
    assert reply is not None and plain.delivery.calm  # the answer itself is calm
    gave = Yield(resumed_s=0.4, played_s=0.38, detect_s=0.06, line_s=3.2, line=reply.id,
                 pause_s=1.0)
    yielded, _ = scored(1, yields=(gave,))
    over, _ = scored(2, interruption=Interruption(at_s=2.4, overlap_s=0.28, detect_s=0.09,
                                                  finished_sentence=False, line_s=5.0))
    # The yield costs nothing: the same score, delivery, hint and move.
    assert yielded.score.to_json() == plain.score.to_json()
    assert yielded.delivery.to_json() == plain.delivery.to_json()
    assert (yielded.hint, yielded.move.to_json()) == (plain.hint, plain.move.to_json())
    # Talking over the customer is a delivery fault, first among the reasons.
    assert not over.delivery.calm and over.delivery.reasons[0] == TALKED_OVER
    assert over.delivery.voice_calm and plain.delivery.voice_calm is None
    assert over.score.score < plain.score.score
    # The advice is about turn-taking, not the voice: this answer was calm.
    from voice_sim.session import practise_next

    assert over.hint == ("Delivery: you talked over the customer: let the customer finish "
                         "their sentence, then answer.")
    assert "Practise turn-taking: let the customer finish their sentence, then answer." in (
        practise_next([over]))
    assert not any("calm delivery" in h for h in practise_next([over]))
    assert not any("turn-taking" in h for h in practise_next([plain, yielded]))
    from dataclasses import replace

    tense = replace(over, delivery=replace(over.delivery, voice_calm=False))
    both = practise_next([tense])
    assert any("turn-taking" in h for h in both) and any("calm delivery" in h for h in both)
    # session.json keeps both, as the barge-in wrote them.
    saved = [t.to_json() for t in (yielded, over)]
    assert saved[0]["yielded"] == [gave.to_json()] and saved[0]["interruption"] is None
    assert saved[1]["interruption"]["at_s"] == 2.4 and saved[1]["yielded"] == []
    rec = SessionRecord.from_json({
        "format": 1, "status": "complete", "mode": "practice", "persona": persona.id,
        "persona_title": persona.title, "session_dir": str(tmp_path), "outcome": "quit",
        "score": 50.0, "started_at": "2026-12-02T03:00:00+00:00", "turns": saved})
    said_yield = ("the customer started to reply after a 0.6 s pause; you went on 0.4 s "
                  "into it and they gave way")
    said_over = ("you talked over the customer 2.4 s into their line (both talking for "
                 "0.3 s); they stopped")
    assert rec.turns[0].yielded[0].describe() == said_yield
    assert rec.turns[1].interruption is not None
    assert rec.turns[1].interruption.describe() == said_over
    # The scorecard: under each answer, within the width; a yield is said not to count.
    text = format_scorecard(rec)
    flat = " ".join(text.split())
    one, two = flat.split("Turn 2 ")
    assert f"~ {said_yield} ({YIELD_NOTE})" in one and "talked over" not in one
    assert f"> {said_over} (counts against delivery)" in two and "gave way" not in two
    assert f"delivery: not calm ({over.delivery.calm_score:.0f}/100) — {TALKED_OVER}" in two
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "Talked over: 1" in text and "Gave way: 1 (not counted)" in text
    # The report: the same words in each turn's section.
    html = render_report(rec, tmp_path)
    assert "talked over the customer in 1 · the customer gave way 1× (not counted)" in html
    first, second = html.split('id="turn-2"')
    assert f"<b>Customer gave way:</b> {said_yield}" in first
    assert f"<b>Talked over:</b> {said_over}" in second
    assert "Talked over" not in first and "gave way" not in second
