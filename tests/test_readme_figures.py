"""The figures the README quotes are the ones the code uses (they drifted before)."""

from __future__ import annotations

import re

from voice_sim import delivery, rubric
from voice_sim.paths import SOURCE_ROOT

README = (SOURCE_ROOT / "README.md").read_text(encoding="utf-8")
TEXT = re.sub(r"\s+", " ", README)


def test_turn_score_formula_matches_the_scorer() -> None:
    assert rubric.OTHER_SHARE == 0.25 and "+ ¼ × Σ weight of other steps heard" in TEXT
    # An open line (no word step expected): every step in full, out of OPEN_POSSIBLE.
    assert (f"every step heard counts in full and possible = {rubric.OPEN_POSSIBLE:g}"
            in TEXT)
    score = rubric.turn_score(rubric.score_reply("I totally get why you're fed up."), ())
    assert f"{rubric.OPEN_POSSIBLE:g} points make 100" in score.explanation[0]


def test_delivery_limits_match_the_named_constants() -> None:
    limits = (f"+{delivery.PITCH_SHIFT_BAD_ST:g} semitones, +{delivery.LOUDNESS_BAD_DB:g} dB, "
              f"{round(100 * (delivery.PACE_BAD_RATIO - 1)):d} % faster")
    assert limits in TEXT
    assert f"at least {delivery.BASELINE_MIN_SPEECH_S:g} s of speech" in TEXT
    assert f"over ~{delivery.RUSHED_WPM:g} reads as rushed" in TEXT
    assert f"dead air over {delivery.DEAD_AIR_S:g} s" in TEXT
