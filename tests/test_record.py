"""The typed session record: read once, checked once, written back without loss."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from voice_sim.cli import main
from voice_sim.errors import SessionError
from voice_sim.record import FORMAT, SessionRecord, load_session


def _turn(n: int) -> dict[str, Any]:
    det = {"id": "apologize", "kind": "step", "evidence": "so sorry", "span": [4, 12],
           "start_s": 0.2, "end_s": 0.7, "rule": "sorry", "weight": 25.0, "where": "r.yaml:3"}
    return {
        "index": n,
        "customer": {"line": "opening", "text": "You billed me twice!", "audio": "c.wav",
                     "expects": ["apologize", "stay_calm"], "voice": "en-gb"},
        "answer_audio": f"turn-{n:02d}-answer.wav", "answer_source": "01.wav",
        "end_reason": "file", "transcript": "I'm so sorry", "reply": "I'm so sorry",
        "normalized": "i am so sorry",
        "words": [{"word": "sorry", "start": 0.2, "end": 0.7, "conf": None}],
        "steps": [det], "pitfalls": [], "suppressed": [{**det, "note": "negated"}],
        "delivery": {"duration_s": 2.0, "calm": True, "calm_score": 81, "reasons": ["steady"],
                     "pitch": {"median_hz": 118.5, "shift_semitones": None},
                     "pace": {"wpm": 140.0}, "loudness": {"rms_dbfs": -21.0},
                     "talk": {"seconds": 1.4}, "baseline": None, "measured_later": [1, 2],
                     "contour": {"times": [0.0, 0.01], "f0_hz": [None, 120.0]}},
        "turn_score": {"score": 70, "expected": ["apologize"], "earned": 25.0,
                       "possible": 35.0, "penalty": 0.0, "explanation": ["+ apologize"]},
        "mood_before": 8.0, "mood_after": 6.5, "move": {"reason": "apologised", "turn": n},
        "latency_s": None, "hint": "",
        "interruption": {"at_s": 2.1, "overlap_s": 0.31, "detect_s": 0.08,
                         "finished_sentence": False, "line_s": 4.2},
        "barge_in": {"at_s": 1.5},
        "yielded": [{"line": "refund_offer", "resumed_s": 0.42, "played_s": 0.4,
                     "detect_s": 0.07, "line_s": 3.0, "pause_s": 0.95}],
    }


def _session(**over: Any) -> dict[str, Any]:
    rec = {"format": FORMAT, "status": "complete", "mode": "run", "persona": "double-billing",
           "persona_title": "Billed twice", "persona_path": "/p/double-billing.yaml",
           "session_dir": "/s/x", "outcome": "resolved", "score": 70.0, "engine": "whisper",
           "model": "tiny.en", "baseline": None, "coach": "after",
           "started_at": "2026-12-01T10:00:00+00:00", "duration_s": 12.5, "start_mood": 8.0,
           "mood": 2.0, "turns": [_turn(1), _turn(2)],
           "closing": {"line": "bye", "text": "Thanks.", "audio": "closing-customer.wav",
                       "played_s": 2.5},
           "hints": [], "practise_next": ["Practise empathize: name the feeling."],
           "error": None, "interrupted": False, "seed": 7}
    rec.update(over)
    return rec


def test_round_trip_keeps_every_key_including_unknown_ones() -> None:
    raw = _session()
    rec = SessionRecord.from_json(raw)
    assert rec.to_json() == raw
    # Typed where the readers look, not dicts.
    t = rec.turns[1]
    assert (t.index, t.line, t.expects, t.delivery.calm, t.delivery.calm_score) == (
        2, "opening", ("apologize", "stay_calm"), True, 81)
    assert t.delivery.contour_times == (0.0, 0.01) and t.delivery.contour_f0 == (None, 120.0)
    assert [d.id for d in t.steps] == ["apologize"] and t.steps[0].span == (4, 12)
    assert t.suppressed[0].note == "negated"
    assert rec.closing is not None and rec.closing.audio == "closing-customer.wav"
    assert rec.calm_turns == 2 and rec.extra["seed"] == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.score = 1.0  # type: ignore[misc]


def test_a_record_without_the_optional_parts_still_reads() -> None:
    raw = _session(closing=None, turns=[], hints=None)
    for key in ("coach", "model", "practise_next", "interrupted", "format"):
        raw.pop(key)
    rec = SessionRecord.from_json(raw)
    assert rec.closing is None and rec.turns == () and rec.format == FORMAT
    assert rec.practise_next == () and rec.interrupted is False
    # A turn from before issue 15 (no turn-taking keys) reads as neither; written back,
    # it gains them empty (every turn written since has them).
    old = _turn(1)
    del old["interruption"], old["yielded"]
    (t,) = SessionRecord.from_json(_session(turns=[old])).turns
    assert t.interruption is None and t.yielded == ()
    assert t.to_json() == {**old, "interruption": None, "yielded": []}


def test_the_turn_taking_is_typed_and_said_with_its_times() -> None:
    t = SessionRecord.from_json(_session()).turns[0]
    cut, (y,) = t.interruption, t.yielded
    assert cut is not None and (cut.at_s, cut.overlap_s, cut.line_s) == (2.1, 0.31, 4.2)
    assert cut.describe() == ("you talked over the customer 2.1 s into their line "
                              "(both talking for 0.3 s); they stopped")
    assert (y.line, y.resumed_s, y.played_s, y.pause_s) == ("refund_offer", 0.42, 0.4, 0.95)
    assert y.sounded and y.reply_after_s == pytest.approx(0.53)
    assert y.describe() == ("the customer started to reply after a 0.5 s pause; you went "
                            "on 0.4 s into it and they gave way")
    # Gone on before the reply sounded: it was held back.
    held = dataclasses.replace(y, resumed_s=-0.1, played_s=0.0)
    assert held.describe() == ("you went on after a 0.9 s pause just as the customer was "
                               "about to reply; they held the reply back")
    # ... or at the moment it began, its first sound played.
    at_once = dataclasses.replace(y, resumed_s=0.02, played_s=0.06)
    assert at_once.describe() == ("the customer started to reply after a 0.9 s pause just "
                                  "as you went on; they gave way")
    raw = _session()
    raw["turns"][0]["yielded"][0]["resumed_s"] = "soon"
    with pytest.raises(SessionError, match=r"turns\[0\]\.yielded\[0\]\.resumed_s: "
                                           "expected a number, not text"):
        SessionRecord.from_json(raw)
    raw = _session()
    raw["turns"][1]["interruption"] = "yes"
    with pytest.raises(SessionError, match=r"turns\[1\]\.interruption: expected an object"):
        SessionRecord.from_json(raw)


@pytest.mark.parametrize(("change", "named"), [
    ({"score": "high"}, "score: expected a number, not text"),
    ({"started_at": None}, "started_at: missing"),
    ({"interrupted": "no"}, "interrupted: expected true/false, not text"),
])
def test_a_wrong_top_field_is_named(change: dict[str, Any], named: str) -> None:
    with pytest.raises(SessionError, match=named):
        SessionRecord.from_json(_session(**change))


def test_a_wrong_turn_field_is_named_with_its_path() -> None:
    raw = _session()
    raw["turns"][1]["delivery"]["calm_score"] = True
    with pytest.raises(SessionError, match=r"turns\[1\]\.delivery\.calm_score: expected a "
                                           r"number, not true/false"):
        SessionRecord.from_json(raw)
    raw = _session()
    raw["turns"][0]["steps"][0]["span"] = [1, "x"]
    with pytest.raises(SessionError, match=r"turns\[0\]\.steps\[0\]\.span\[1\]"):
        SessionRecord.from_json(raw)


def test_another_format_is_refused_in_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "s"
    d.mkdir()
    (d / "session.json").write_text(json.dumps(_session(format=FORMAT + 1)), encoding="utf-8")
    with pytest.raises(SessionError, match=f"session format {FORMAT + 1}, this voice-sim "
                                           f"reads format {FORMAT}"):
        load_session(d)
    assert main(["report", str(d)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"session format {FORMAT + 1}" in err and str(d / "session.json") in err


@pytest.mark.slow
@pytest.mark.model
def test_a_real_session_reads_back_exactly(recorded_session: Path) -> None:
    raw = json.loads((recorded_session / "session.json").read_text(encoding="utf-8"))
    rec = load_session(recorded_session)
    assert rec.to_json() == raw
    assert len(rec.turns) == len(raw["turns"]) > 0
    for t, r in zip(rec.turns, raw["turns"], strict=True):
        assert t.transcript == r["transcript"]
        assert t.delivery.calm is r["delivery"]["calm"]
        assert [d.evidence for d in t.steps] == [d["evidence"] for d in r["steps"]]
