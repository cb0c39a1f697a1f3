#!/usr/bin/env python3
"""Fit the calm model (voice_sim/data/calm_model.json) and measure it speaker by speaker.

Development data, each answer judged against its own speaker's calm baseline:

* real acted emotional speech, ``../shared/data/emotion-pl`` (beside the checkout) (Mięsikowska &
  Świsulski 2020, *Emotions in polish speech recordings*, Gdańsk University of
  Technology, https://doi.org/10.34808/h46c-hb44, CC BY): per speaker the baseline is
  neutral repetitions 1-2 of all six words joined; each other repetition's six words
  joined is an answer, neutral 3-5 calm, anger 1-5 and fear 1-5 agitated;
* the synthetic fixtures the delivery tests use: the LibriVox passage and three espeak
  voices, each a baseline for sox-made versions of itself, agitated (pitch +3.5/+5 st,
  tempo x1.25/x1.4, gain +7/+10 dB) or calm (pitch +-0.5 st, tempo x0.95/x1.05, gain
  +-1.5 dB, unchanged). These magnitudes are not the ones the tests check (+4 st, x1.3,
  +8 dB; +0.4 st, x1.04), so those stay out of the fit.

How the model is made from a set of groups (speakers or synthetic sources):

1. each cue's ``scale`` is the RMS of its change over the calm answers of the real
   speakers (how much it moves between calm repetitions);
2. each cue's ``half`` (confidence 0.5) is ``a / tau^2``: the calm answers give the
   noise, variance ~ ``a / n`` for ``n`` units of speech; the agitated answers give the
   variance of real change ``tau^2``;
3. the weights come from a class-balanced logistic regression with non-negative weights
   and an L2 penalty on the confidence-weighted, scaled changes;
4. the penalty (PENALTIES) and the cue set (CUE_SETS) are chosen by leave-one-speaker-
   out among the speakers being fitted on (see choose); within the chosen set the
   non-negative fit gives a cue that adds nothing a weight of 0, and the packaged model
   leaves it out.

The figure, nested leave-one-speaker-out on emotion-pl (the protocol): for each
speaker in turn, held out, every choice is made without it: step 4 picks the penalty
and cue set by leave-one-speaker-out between the two other speakers (fit on one of them
plus the synthetic sources, judge the other, both ways round), steps 1-3 then fit on
those two and the synthetic sources, and only that model judges the held-out speaker's
answers. The packaged model makes the same choice over all three speakers. No figure
this script prints was picked after looking at a held-out speaker.

    .venv/bin/python scripts/fit_calm.py            # LOSO table, then write the model
    .venv/bin/python scripts/fit_calm.py --check    # LOSO table only; exit 1 if the
                                                    # packaged model differs from a refit
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voice_sim import calm, delivery  # noqa: E402
from voice_sim.audio import load_audio  # noqa: E402
from voice_sim.delivery import Baseline, analyze  # noqa: E402

EMOTION_PL = next((p / "shared" / "data" / "emotion-pl"
                   for p in Path(__file__).resolve().parents[1:]
                   if (p / "shared" / "data" / "emotion-pl").is_dir()),
                  Path(__file__).resolve().parents[2] / "shared" / "data" / "emotion-pl")
WORDS = ("nie", "oddaj", "podaj", "stop", "tak", "trzymaj")
SPEAKERS = ("m1", "m2", "m3")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
REPLY = ("Thank you for waiting. I can see the payment was taken twice, which should never "
         "have happened. I will refund the second charge and send you a confirmation by "
         "email this afternoon.")
VOICES = ("en-us", "en-us+f3", "en-gb-x-rp+f4")
AGITATED_FX = (("pitch", "350"), ("pitch", "500"), ("tempo", "1.25"), ("tempo", "1.4"),
               ("gain", "7"), ("gain", "10"))
CALM_FX = (("pitch", "50"), ("pitch", "-50"), ("tempo", "0.95"), ("tempo", "1.05"),
           ("gain", "1.5"), ("gain", "-1.5"), ())
PENALTIES = (0.3, 1.0, 2.0, 3.0, 5.0)
"""Candidate ridge penalties on the weights (in units of calm-repetition spread): keep
the fit from leaning on one cue where the training speakers happen to separate
perfectly. Which one is used is chosen from the training speakers only (see choose)."""
CUE_SETS = {
    "every cue": (),
    "without HNR": ("hnr",),
    "without voice quality": ("alpha_ratio", "hammarberg", "slope_0_500", "slope_500_1500",
                              "hnr"),
}
"""Candidate cue sets (name -> cues left out), chosen like the penalty."""
WEIGHT_FLOOR = 0.01
"""A cue whose fitted (non-negative) weight is no more than this has not earned its
place and is left out of the packaged model."""
HALF_RANGE = (0.05, 200.0)
"""Bounds on a cue's measured ``half`` (its amount-of-speech unit): guards the ratio
a / tau^2 when a cue barely moves."""


@dataclass(frozen=True)
class Example:
    group: str
    """Speaker (m1..m3) or synthetic source."""
    label: bool
    """True: agitated."""
    what: str
    cues: calm.Measured
    """calm.measure(): name -> (change, raw value, amount of speech, drift noise)."""


def emotion_pl(speaker: str, emotion: str, rep: int) -> np.ndarray:
    """One repetition's six words joined (16 kHz float32)."""
    return np.concatenate([load_audio(EMOTION_PL / f"{speaker}.{emotion}_{w}_{rep}.wav")
                           for w in WORDS])


BASELINE_SPEECH_S: list[float] = []
"""Seconds of speech of each baseline real_examples made, in order (for bench_calm)."""


def real_examples(speakers: tuple[str, ...] = SPEAKERS, base_words: int = 12
                  ) -> list[Example]:
    """The emotion-pl answers; ``base_words`` < 12 keeps only the baseline's first words
    (neutral repetition 1, then 2), to measure how long a baseline must be."""
    out = []
    for spk in speakers:
        words = [load_audio(EMOTION_PL / f"{spk}.n_{w}_{rep}.wav")
                 for rep in (1, 2) for w in WORDS][:base_words]
        calm_d = analyze(np.concatenate(words))
        BASELINE_SPEECH_S.append(calm_d.speech_s)
        if base_words < len(WORDS) * 2:
            # Measuring what a shorter baseline would do: bypass the minimum length.
            keep = delivery.BASELINE_MIN_SPEECH_S, delivery.BASELINE_MIN_VOICED_S
            delivery.BASELINE_MIN_SPEECH_S = delivery.BASELINE_MIN_VOICED_S = 0.0
            try:
                base = Baseline.from_delivery(calm_d, source=f"{spk} neutral")
            finally:
                delivery.BASELINE_MIN_SPEECH_S, delivery.BASELINE_MIN_VOICED_S = keep
        else:
            base = Baseline.from_delivery(calm_d, source=f"{spk} neutral 1-2")
        for emo in "nas":
            for rep in range(1, 6):
                if emo == "n" and rep < 3:
                    continue
                d = analyze(emotion_pl(spk, emo, rep))  # the model is not needed to measure
                out.append(Example(spk, emo != "n", f"{spk} {emo}{rep}",
                                   calm.measure(d, base)))
    return out


def _sox(src: Path, out: Path, *fx: str) -> Path:
    subprocess.run(["sox", "-D", str(src), "-r", "16000", "-c", "1", "-b", "16", str(out), *fx],
                   check=True, capture_output=True)
    return out


def synthetic_examples() -> list[Example]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        sources = {}
        clips = sorted(LIBRIVOX.glob("*.wav"))
        if clips:
            passage = t / "librivox.wav"
            subprocess.run(["sox", *map(str, clips), str(passage)], check=True)
            sources["librivox"] = passage
        for v in VOICES:
            wav = t / f"{v}.wav"
            subprocess.run(["espeak-ng", "-v", v, "-w", str(wav), REPLY], check=True,
                           capture_output=True)
            sources[v] = wav
        for name, src in sources.items():
            calm_wav = _sox(src, t / f"{name}-calm.wav", "gain", "-n", "-12")
            base = Baseline.from_audio(load_audio(calm_wav), source=name)
            for label, fxs in ((True, AGITATED_FX), (False, CALM_FX)):
                for fx in fxs:
                    y = load_audio(_sox(calm_wav, t / "fx.wav", *fx))
                    cues = calm.measure(analyze(y), base)
                    out.append(Example(name, label, f"{name} {' '.join(fx) or 'same'}",
                                       cues))
    return out


# --- fitting -----------------------------------------------------------------------


def _features(examples: list[Example], m: calm.CalmModel) -> np.ndarray:
    """Confidence-weighted scaled changes, one column per model cue (0 if unmeasured)."""
    x = np.zeros((len(examples), len(m.cues)))
    for i, e in enumerate(examples):
        for j, c in enumerate(m.cues):
            if c.name in e.cues:
                x[i, j] = calm.confidence(c, e.cues[c.name]) * e.cues[c.name][1] / c.scale
    return x


def _balance(examples: list[Example]) -> np.ndarray:
    """Sample weights: every group (speaker or synthetic source) counts the same, and
    within it calm and agitated answers count the same (a group with one class gives
    it the group's whole weight)."""
    groups = sorted({e.group for e in examples})
    w = np.zeros(len(examples))
    for g in groups:
        for label in (False, True):
            idx = [i for i, e in enumerate(examples) if e.group == g and e.label == label]
            classes = len({e.label for e in examples if e.group == g})
            for i in idx:
                w[i] = 1.0 / (len(groups) * classes * len(idx))
    return w


def _logistic(x: np.ndarray, y: np.ndarray, sw: np.ndarray, penalty: float
              ) -> tuple[float, np.ndarray]:
    """Weighted logistic regression, weights >= 0, L2 on the weights."""
    from scipy.optimize import minimize

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w[1:] + w[0]
        p = 1.0 / (1.0 + np.exp(-z))
        eps = 1e-12
        ll = -np.sum(sw * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        pen = 0.5 * penalty * float(w[1:] @ w[1:]) / len(y)
        g = sw * (p - y)
        return ll + pen, np.r_[g.sum(), x.T @ g + penalty * w[1:] / len(y)]

    bounds = [(None, None)] + [(0.0, None)] * x.shape[1]
    res = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                   bounds=bounds)
    return float(res.x[0]), res.x[1:]


def fit(examples: list[Example], names: tuple[str, ...], penalty: float) -> calm.CalmModel:
    """Steps 1-3 for the given cues and penalty."""
    real_calm = [e for e in examples if not e.label and e.group in SPEAKERS]
    calm_set = real_calm or [e for e in examples if not e.label]
    cues = []
    for name in names:
        calm_raw = np.array([e.cues[name][1] for e in calm_set if name in e.cues])
        calm_n = np.array([e.cues[name][2] for e in calm_set if name in e.cues])
        scale = float(np.sqrt(np.mean(calm_raw ** 2))) if calm_raw.size else 1.0
        scale = max(scale, 1e-3)
        agit = np.array([e.cues[name][1] for e in examples if e.label and name in e.cues])
        noise_a = float(np.mean(calm_raw ** 2 * calm_n)) if calm_raw.size else 0.0
        tau2 = max(float(np.mean(agit ** 2)) - float(np.mean(calm_raw ** 2)), 1e-9) \
            if agit.size else 1e-9
        half = float(np.clip(noise_a / tau2, *HALF_RANGE))
        cues.append(calm.CueModel(name, 1.0, scale, half))
    m = calm.CalmModel(0.0, tuple(cues), "")
    y = np.array([e.label for e in examples], dtype=float)
    b, w = _logistic(_features(examples, m), y, _balance(examples), penalty)
    return calm.CalmModel(b, tuple(calm.CueModel(c.name, float(wi), c.scale, c.half)
                                   for c, wi in zip(m.cues, w, strict=True)), "")


def predict(m: calm.CalmModel, examples: list[Example]) -> np.ndarray:
    """P(agitated) as the package computes it (calm.combine, limits included)."""
    z = np.array([calm.combine(m, e.cues)[0] for e in examples])
    return 1.0 / (1.0 + np.exp(-z))


Choice = tuple[float, str]
"""(L2 penalty, name in CUE_SETS)."""


def cue_names(choice: Choice) -> tuple[str, ...]:
    return tuple(n for n in calm.CUES if n not in CUE_SETS[choice[1]])


def choose(real: list[Example], synth: list[Example]) -> tuple[Choice, float]:
    """The penalty and cue set, chosen on ``real`` alone by leave-one-speaker-out among
    the speakers in it (each fitted on the others and the synthetic sources): the best
    mean balanced accuracy, ties to the larger penalty, then the smaller cue set. Returns
    the choice and its inner figure."""
    speakers = sorted({e.group for e in real})
    best: tuple[float, float, int] | None = None
    chosen: Choice = (PENALTIES[0], next(iter(CUE_SETS)))
    for k, cue_set in enumerate(CUE_SETS):
        for pen in PENALTIES:
            bals = []
            for h in speakers:
                train = [e for e in real if e.group != h] + synth
                test = [e for e in real if e.group == h]
                p = predict(fit(train, cue_names((pen, cue_set)), pen), test)
                y = np.array([e.label for e in test])
                bals.append(scores(y, p >= calm.AGITATED_P)[1])
            key = (float(np.mean(bals)), pen, k)
            if best is None or key > best:
                best, chosen = key, (pen, cue_set)
    assert best is not None
    return chosen, best[0]


def loso(real: list[Example], synth: list[Example]
         ) -> list[tuple[str, list[Example], np.ndarray, Choice]]:
    """Nested leave-one-speaker-out. Per held-out speaker: the penalty and cue set are
    chosen (:func:`choose`) on the two other speakers only, the model is fitted on them
    and the synthetic sources, and it judges the held-out speaker's answers: (speaker,
    its answers, P(agitated), the choice). Nothing of the held-out speaker is seen
    before its answers are judged."""
    out = []
    for spk in SPEAKERS:
        train = [e for e in real if e.group != spk]
        choice, _ = choose(train, synth)
        m = fit(train + synth, cue_names(choice), choice[0])
        test = [e for e in real if e.group == spk]
        out.append((spk, test, predict(m, test), choice))
    return out


def scores(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(accuracy, balanced accuracy)."""
    acc = float(np.mean(pred == y))
    bal = 0.5 * (float(np.mean(pred[y])) + float(np.mean(~pred[~y])))
    return acc, bal


def loso_figures(rows: list[tuple[str, list[Example], np.ndarray, Choice]]
                 ) -> tuple[float, float, dict[str, float], list[str]]:
    """(accuracy, balanced accuracy, per-speaker accuracy, the answers judged wrongly)."""
    ys = np.array([e.label for _, test, *_ in rows for e in test])
    ps = np.concatenate([p for _, _, p, _ in rows]) >= calm.AGITATED_P
    acc, bal = scores(ys, ps)
    per = {spk: float(np.mean((p >= calm.AGITATED_P) == np.array([e.label for e in test])))
           for spk, test, p, _ in rows}
    wrong = [e.what for _, test, p, _ in rows for e, q in zip(test, p, strict=True)
             if (q >= calm.AGITATED_P) != e.label]
    return acc, bal, per, wrong


def print_loso(rows: list[tuple[str, list[Example], np.ndarray, Choice]], label: str
               ) -> None:
    acc, bal, per, wrong = loso_figures(rows)
    speakers = " ".join(f"{k} {v:.2f}" for k, v in per.items())
    print(f"LOSO {label}: accuracy {acc:.3f}, balanced accuracy {bal:.3f}, per speaker "
          f"{speakers}; wrong: {', '.join(wrong) or 'none'}")
    for spk, _, _, (pen, cue_set) in rows:
        print(f"  {spk} held out: chosen on the other two: L2 {pen:g}, {cue_set}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the packaged model differs from a refit")
    args = ap.parse_args()
    if not EMOTION_PL.is_dir():
        print(f"fit_calm: {EMOTION_PL} not found (the development data)", file=sys.stderr)
        return 2
    real, synth = real_examples(), synthetic_examples()
    print_loso(loso(real, synth), "nested (penalty and cue set chosen inside each fold)")
    choice, inner = choose(real, synth)
    print(f"packaged model: L2 {choice[0]:g}, {choice[1]} (leave-one-speaker-out balanced "
          f"accuracy {inner:.3f} over all three speakers)")
    full = fit(real + synth, cue_names(choice), choice[0])
    kept = tuple(c.name for c in full.cues if c.weight > WEIGHT_FLOOR)
    print(f"cues with weight > {WEIGHT_FLOOR:g}: {', '.join(kept)}; weight 0: "
          f"{', '.join(c.name for c in full.cues if c.weight <= WEIGHT_FLOOR) or 'none'}")
    m = fit(real + synth, kept, choice[0])
    data = {
        "source": "scripts/fit_calm.py: emotion-pl m1-m3 (Mięsikowska & Świsulski 2020, "
                  "doi:10.34808/h46c-hb44, CC BY) and the synthetic LibriVox/espeak "
                  "fixtures with sox transforms",
        "intercept": round(m.intercept, 4),
        "cues": [{"name": c.name, "weight": round(c.weight, 4), "scale": round(c.scale, 4),
                  "half": round(c.half, 4)} for c in m.cues],
    }
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    print(text)
    if args.check:
        same = calm.MODEL_PATH.exists() and calm.MODEL_PATH.read_text("utf-8") == text
        print("packaged model " + ("matches the refit" if same else "DIFFERS from the refit"))
        return 0 if same else 1
    from voice_sim.paths import write_atomic

    write_atomic(calm.MODEL_PATH, text)  # a reader (a running call) never sees half a model
    print(f"fit_calm: wrote {calm.MODEL_PATH.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
