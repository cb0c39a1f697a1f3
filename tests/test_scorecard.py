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
