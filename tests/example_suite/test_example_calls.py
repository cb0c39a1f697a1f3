"""Persona calls under test in Python, as a team using voice-sim would write them.

The pytest plugin is active as soon as voice-sim is installed, so the fixtures below
need no import. The answers were rendered from text with
``voice-sim fixtures make good-call.fixtures.yaml`` (and ``bad-call.fixtures.yaml``),
which also wrote the two ``*.call.yaml`` specs beside this file; pytest collects those
as tests of their own. A spec and a test on the same answers share one run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from voice_sim.pytest_plugin import (
    CallResult,
    assert_agitated,
    assert_calm,
    assert_line,
    assert_min_score,
    assert_no_pitfall,
    assert_outcome,
    assert_pitfall,
    assert_step,
)

pytestmark = [pytest.mark.slow, pytest.mark.model]

Call = Callable[..., CallResult]


def test_good_call_is_resolved_calmly(voice_sim_call: Call) -> None:
    result = voice_sim_call("double-billing", "good-call", engine="whisper",
                            baseline="calm-baseline.wav")
    assert result.engine == "whisper"  # the engine is reported, never guessed
    assert_outcome(result, "resolved")
    assert_min_score(result, 80)
    assert_step(result, 1, "empathize", "apologize")
    assert_line(result, 2, "order_details")
    assert_step(result, 2, "listen_reflect", "offer_solution")
    assert_step(result, 3, "set_expectations")
    for turn in result.turns:
        assert_calm(result, turn.index)
        assert_no_pitfall(result, turn.index)


def test_upset_trainee_loses_the_customer(voice_sim_call: Call) -> None:
    result = voice_sim_call("double-billing", "bad-call", engine="whisper",
                            baseline="calm-baseline.wav")
    assert_outcome(result, "hung_up")
    assert_pitfall(result, 1, "argue")
    assert_agitated(result, 1)
    # The agitated voice was rendered higher and louder than the calm baseline.
    first = result.turn(1)
    assert first.pitch_shift_semitones is not None and first.pitch_shift_semitones > 2
    assert first.loudness_shift_db is not None and first.loudness_shift_db > 2
    assert_line(result, 2, "angrier")
    assert_pitfall(result, 2, "excuse")
    assert result.closing_line == "hangs_up"
