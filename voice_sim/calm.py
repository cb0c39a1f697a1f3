"""The calm verdict against the speaker's own baseline: one calibrated score from all cues.

:mod:`voice_sim.delivery` measures an answer and the speaker's calm reading the same
way; this module turns the differences into one verdict. After Bone, Lee & Narayanan
(IEEE Trans. Affective Computing 5(2), 2014), each cue is scored against the speaker's
own baseline and the scores are fused:

* **cue change**: the answer's value less the baseline's, signed so that more agitated
  is positive (pitch in semitones over the baseline's own pitch spread, rates as log
  ratios, levels and spectral measures in dB), divided by the cue's ``scale`` (how much
  it moves between calm repetitions of one speaker, measured on the development data);
* **confidence**: ``n / (n + half)``, where ``n`` is the amount of speech behind the cue
  (seconds of voicing, syllables, seconds of speech) and ``half`` the amount at which
  measurement noise and real change weigh the same (measured: see
  ``scripts/fit_calm.py``). A two-second answer has a noisy syllable count, so its pace
  counts for little; a long reading counts nearly in full. For pitch and loudness
  ``half`` is at least what the baseline's own drift gives (Baseline.pitch_drift,
  Baseline.level_drift: how far one second of the calm reading wanders from the whole,
  e.g. high at each sentence start): the amount of speech at which that wander is as
  large as the calm spread ``scale``. A reader whose pitch falls through each sentence
  is not judged on two seconds of pitch; a steady speaker can be;
* **fusion**: a logistic model, ``P(agitated) = 1 / (1 + exp(-(b + sum w * conf * x)))``,
  weights non-negative (each cue can only add evidence of agitation), fitted on the
  development data, its penalty and cue set chosen by leave-one-speaker-out. Its
  coefficients live in ``voice_sim/data/calm_model.json``; the script that derives them
  regenerates that file.

The answer is agitated when ``P >= 0.5``. The reasons name the cues that drove it,
biggest evidence first (related cues grouped, see FAMILIES). Without a baseline the
population defaults of :mod:`voice_sim.delivery` judge instead.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.errors import VoiceSimError

if TYPE_CHECKING:
    from voice_sim.delivery import Baseline, Delivery

MODEL_PATH = Path(__file__).with_name("data") / "calm_model.json"
"""The fitted model (written by scripts/fit_calm.py)."""

PITCH_SPREAD_FLOOR_ST = 0.5
"""Semitones. The baseline's F0 spread (std) that pitch changes are measured in is taken
as at least this: a monotone reading (espeak, a flat read) would otherwise make a
tenth of a semitone look like a leap."""

AGITATED_P = 0.5
"""P(agitated) at or above which the answer is not calm."""

REASON_SHARE = 0.15
"""A family of cues is named as a reason when it carries at least this share of the
evidence for agitation (and its push is positive)."""

LIMIT_MIN_CONFIDENCE = 0.5
"""Confidence a cue needs before its documented limit decides alone (see combine)."""

REASON_MIN_CONFIDENCE = 0.5
"""A cue is not worded as a reason below this confidence: it still counts (less) in
the score, but a trainee is not told "you are rushing" on a two-second count."""

FAMILIES = {"pitch_shift": "pitch", "pitch_rise": "pitch", "pitch_variability": "pitch",
            "pace": "rate", "articulation": "rate", "loudness": "loudness",
            "alpha_ratio": "effort", "hammarberg": "effort", "slope_0_500": "effort",
            "slope_500_1500": "effort", "hnr": "roughness"}
"""Cues that measure one thing several ways. The reasons rank families by their summed
evidence and word each by its strongest cue, so one rushed answer reads "speaking
1.3x as fast", not two rate reasons."""


def norms() -> dict[str, float]:
    """The documented single-cue limits of voice_sim.delivery, in each cue's change unit:
    a cue at its limit, measured with full confidence, makes the answer not calm on its
    own (see :func:`combine`)."""
    from voice_sim import delivery as dl

    return {"pitch_shift": dl.PITCH_SHIFT_BAD_ST, "pitch_variability": dl.VARIABILITY_BAD_RATIO,
            "pace": dl.PACE_BAD_RATIO, "loudness": dl.LOUDNESS_BAD_DB}


@dataclass(frozen=True)
class Cue:
    """One cue's change from the baseline and what it did to the verdict."""

    name: str
    change: float
    """In ``unit``, signed so that more agitated is positive."""
    unit: str
    confidence: float
    """0..1, from the amount of speech behind the cue."""
    evidence: float
    """Log-odds of agitation this cue added (weight x confidence x change / scale)."""
    reason: str
    """Plain words for the trainee; empty when the cue did not count against calm."""


@dataclass(frozen=True)
class CueModel:
    """One cue's fitted coefficients."""

    name: str
    weight: float
    """Log-odds per unit of scaled change."""
    scale: float
    """Change (in the cue's raw measure) between calm repetitions: one unit of evidence."""
    half: float
    """Amount of speech (see AMOUNT) at which the cue's confidence is 0.5."""


@dataclass(frozen=True)
class CalmModel:
    """The fitted fusion model."""

    intercept: float
    cues: tuple[CueModel, ...]
    source: str
    """What it was fitted on, in words."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CalmModel:
        cues = tuple(CueModel(name=c["name"], weight=float(c["weight"]),
                              scale=float(c["scale"]), half=float(c["half"]))
                     for c in data["cues"])
        unknown = [c.name for c in cues if c.name not in CUES]
        if unknown:
            raise ValueError(f"unknown cues {unknown}; known: {', '.join(CUES)}")
        return cls(intercept=float(data["intercept"]), cues=cues,
                   source=str(data.get("source", "")))


_model: CalmModel | None = None
_model_lock = threading.Lock()


def model() -> CalmModel:
    """The packaged model, loaded once."""
    global _model
    with _model_lock:
        if _model is None:
            try:
                _model = CalmModel.from_json(json.loads(MODEL_PATH.read_text("utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise VoiceSimError(f"{MODEL_PATH}: cannot read the calm model ({e})",
                                    hint="reinstall voice-sim, or regenerate it with "
                                    "scripts/fit_calm.py") from e
        return _model


# --- the cues ------------------------------------------------------------------------


def _st(a: float, b: float) -> float:
    return 12.0 * math.log2(a / b)


def _spread(b: Baseline) -> float:
    return max(b.std_semitones, PITCH_SPREAD_FLOOR_ST)


@dataclass(frozen=True)
class _CueDef:
    unit: str
    amount: str
    """What the confidence counts: "voiced_s", "syllables" or "speech_s"."""
    measure: Callable[[Delivery, Baseline], tuple[float, float] | None]
    """(change in ``unit``, raw value the model scales); None when not measurable."""
    reason: Callable[[float, Delivery, Baseline], str]


def _pitch_shift(d: Delivery, b: Baseline) -> tuple[float, float] | None:
    if d.pitch.median_hz is None:
        return None
    v = _st(d.pitch.median_hz, b.median_hz)
    return v, v / _spread(b)


def _pitch_rise(d: Delivery, b: Baseline) -> tuple[float, float] | None:
    if d.pitch.high_hz is None or b.high_hz is None:
        return None
    v = _st(d.pitch.high_hz, b.high_hz)
    return v, v / _spread(b)


def _variability(d: Delivery, b: Baseline) -> tuple[float, float] | None:
    if d.pitch.std_semitones is None:
        return None
    v = d.pitch.std_semitones / max(b.std_semitones, 0.1)
    return v, math.log(max(v, 1e-3))


def _pace(d: Delivery, b: Baseline) -> tuple[float, float] | None:
    if not d.pace.syllables_per_s:
        return None
    v = d.pace.syllables_per_s / b.syllables_per_s
    return v, math.log(v)


def _articulation(d: Delivery, b: Baseline) -> tuple[float, float] | None:
    if not d.voice.articulation_rate or not b.articulation_rate:
        return None
    v = d.voice.articulation_rate / b.articulation_rate
    return v, math.log(v)


def _loudness(d: Delivery, b: Baseline) -> tuple[float, float] | None:
    if d.loudness.rms_dbfs is None:
        return None
    v = d.loudness.rms_dbfs - b.rms_dbfs
    return v, v


def _diff(field: str, sign: float) -> Callable[[Delivery, Baseline],
                                                tuple[float, float] | None]:
    def measure(d: Delivery, b: Baseline) -> tuple[float, float] | None:
        mine, calm = getattr(d.voice, field), getattr(b, field)
        if mine is None or calm is None:
            return None
        v = sign * (mine - calm)
        return v, v
    return measure


CUES: dict[str, _CueDef] = {
    "pitch_shift": _CueDef(
        "st", "voiced_s", _pitch_shift,
        lambda v, d, b: f"pitch {abs(v):.1f} semitones {'above' if v >= 0 else 'below'} "
        "your calm baseline — breathe out and let your voice settle"),
    "pitch_rise": _CueDef(
        "st", "voiced_s", _pitch_rise,
        lambda v, d, b: f"your voice peaks {v:.1f} semitones higher than in your calm "
        "reading — keep the ends of your sentences down"),
    "pitch_variability": _CueDef(
        "x", "voiced_s", _variability,
        lambda v, d, b: f"pitch swinging {v:.1f}x as much as in your calm baseline "
        f"({d.pitch.std_semitones or 0:.1f} vs {b.std_semitones:.1f} semitones)"),
    "pace": _CueDef(
        "x", "syllables", _pace,
        lambda v, d, b: f"speaking {v:.2f}x as fast as your calm baseline "
        f"({d.pace.syllables_per_s or 0:.1f} vs {b.syllables_per_s:.1f} syllables per "
        "second) — slow down"),
    "articulation": _CueDef(
        "x", "syllables", _articulation,
        lambda v, d, b: f"your words come {v:.2f}x as fast as in your calm reading — "
        "give each word its time"),
    "loudness": _CueDef(
        "dB", "speech_s", _loudness,
        lambda v, d, b: f"{v:.1f} dB louder than your calm baseline — lower your voice"),
    "alpha_ratio": _CueDef(
        "dB", "voiced_s", _diff("alpha_ratio_db", 1.0),
        lambda v, d, b: f"your voice is pressed harder than in your calm reading (alpha "
        f"ratio {v:+.1f} dB: more energy high in the spectrum) — relax your throat"),
    "hammarberg": _CueDef(
        "dB", "voiced_s", _diff("hammarberg_db", -1.0),
        lambda v, d, b: f"your voice is pushed harder than in your calm reading (Hammarberg "
        f"index {v:.1f} dB lower) — let the voice come from the breath"),
    "slope_0_500": _CueDef(
        "dB/kHz", "voiced_s", _diff("slope_0_500", 1.0),
        lambda v, d, b: "your voice sits higher and tighter than in your calm reading "
        f"(low-band spectral slope {v:+.0f} dB/kHz) — breathe out and let it settle"),
    "slope_500_1500": _CueDef(
        "dB/kHz", "voiced_s", _diff("slope_500_1500", 1.0),
        lambda v, d, b: "your voice is brighter and tenser than in your calm reading "
        f"(spectral slope {v:+.1f} dB/kHz flatter) — relax your jaw and throat"),
    "hnr": _CueDef(
        "dB", "voiced_s", _diff("hnr_db", -1.0),
        lambda v, d, b: "your voice is rougher than in your calm reading (harmonics-to-"
        f"noise ratio {v:.1f} dB lower) — slow your breath"),
}
"""Every cue the model may use: its unit, what its confidence counts, its measure and
the words for it. Which ones the fitted model keeps is in calm_model.json."""


def amount(d: Delivery, what: str) -> float:
    """The amount of speech behind a cue: seconds of voicing, syllables or seconds of speech."""
    if what == "voiced_s":
        return d.pitch.voiced_s
    if what == "syllables":
        return float(d.pace.syllables)
    return d.speech_s


DRIFTING = frozenset({"pitch_shift", "pitch_rise"})
"""Cues whose noise on a short answer the baseline's own pitch drift tells
(Baseline.pitch_drift): a median or a peak over a few seconds of a reading moves with
where in the sentence those seconds fall. The level's drift (Baseline.level_drift)
does the same for loudness."""


def drift_noise(name: str, b: Baseline) -> float:
    """The baseline's own wander of a cue, in (raw unit)^2 x amount: n units of speech
    give a raw value off by about sqrt(noise / n) with nothing changed. 0 when unknown."""
    if name == "loudness":
        return b.level_drift or 0.0
    if name not in DRIFTING or b.pitch_drift is None:
        return 0.0
    return b.pitch_drift / _spread(b) ** 2


Measured = dict[str, tuple[float, ...]]
"""calm.measure(): name -> (change, raw value to scale, amount of speech[, drift noise])."""


def measure(d: Delivery, b: Baseline) -> Measured:
    """Every measurable cue: name -> (change, raw value to scale, amount of speech,
    drift noise). Used by :func:`judge` and by the script that fits the model."""
    out: Measured = {}
    for name, c in CUES.items():
        m = c.measure(d, b)
        if m is not None and all(math.isfinite(v) for v in m):
            out[name] = (m[0], m[1], amount(d, c.amount), drift_noise(name, b))
    return out


def confidence(cm: CueModel, cue: tuple[float, ...]) -> float:
    """``n / (n + half)`` for ``n`` units of speech behind the cue. ``half`` is the
    model's, or, when larger, the amount at which the baseline's own drift (the fourth
    element, see :func:`drift_noise`) is as large as the calm spread ``scale``: a
    reader whose pitch falls through each sentence cannot be judged on two seconds of
    pitch, a speaker with a steady pitch can."""
    n = cue[2]
    if n <= 0:
        return 0.0
    half = max(cm.half, cue[3] / cm.scale ** 2) if len(cue) > 3 else cm.half
    return n / (n + half)


def combine(m: CalmModel, measured: Measured
            ) -> tuple[float, list[tuple[str, float, float, float]]]:
    """The log-odds of agitation and each cue's (name, change, confidence, evidence).

    A cue's evidence is ``weight * confidence * raw / scale``. The documented limits
    (:func:`norms`) still hold on top: a cue measured on enough speech (confidence at
    least LIMIT_MIN_CONFIDENCE) whose change reaches its limit brings the answer to the
    verdict's edge by itself (``-intercept * change / limit``, ratios on a log scale),
    whatever the fitted weight. The emotion-pl speakers are level-normalised isolated
    words, so they cannot teach the model what a louder voice or a faster pace means;
    the limits say it. A short answer's syllable count is too noisy to reach that
    confidence, so a two-second answer is never rushed on its count alone."""
    limits = norms()
    z = m.intercept
    cues = []
    for cm in m.cues:
        if cm.name not in measured:
            continue
        change, raw = measured[cm.name][:2]
        conf = confidence(cm, measured[cm.name])
        ev = cm.weight * conf * raw / cm.scale
        if cm.name in limits and m.intercept < 0 and conf >= LIMIT_MIN_CONFIDENCE:
            lim = limits[cm.name]
            frac = (math.log(max(change, 1e-6)) / math.log(lim)
                    if CUES[cm.name].unit == "x" else change / lim)
            if frac >= 1.0:
                ev = max(ev, -m.intercept * frac)
        z += ev
        cues.append((cm.name, change, conf, ev))
    return z, cues


def edge(name: str, m: CalmModel | None = None) -> float:
    """The model's own single-cue edge: the scaled change (raw / scale, full
    confidence) at which this cue alone brings the answer to P = AGITATED_P. For the
    pitch cues, raw is semitones over the baseline's pitch spread."""
    m = m or model()
    cm = next(c for c in m.cues if c.name == name)
    return -m.intercept * cm.scale / cm.weight if cm.weight > 0 else math.inf


def judge(d: Delivery, b: Baseline, m: CalmModel | None = None
          ) -> tuple[float, tuple[Cue, ...]]:
    """P(agitated) for an answer against its baseline, and the model's cues, biggest
    evidence first."""
    m = m or model()
    z, cues = combine(m, measure(d, b))
    p = 1.0 / (1.0 + math.exp(-z))
    family: dict[str, float] = {}
    for name, *_, ev in cues:
        family[FAMILIES[name]] = family.get(FAMILIES[name], 0.0) + ev
    total = sum(max(v, 0.0) for v in family.values())
    named = {f for f, v in family.items()
             if p >= AGITATED_P and v > 0 and v >= REASON_SHARE * total}
    out, worded = [], set()
    for name, change, conf, ev in sorted(cues, key=lambda c: (-family[FAMILIES[c[0]]],
                                                               -c[3])):
        f = FAMILIES[name]
        says = f in named and f not in worded and ev > 0 and conf >= REASON_MIN_CONFIDENCE
        worded |= {f} if says else set()
        out.append(Cue(name=name, change=change, unit=CUES[name].unit, confidence=conf,
                       evidence=ev, reason=CUES[name].reason(change, d, b) if says else ""))
    return p, tuple(out)
