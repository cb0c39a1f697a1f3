#!/usr/bin/env python3
"""Calm verdict on real emotional speech, leave-one-speaker-out, beside the eGeMAPS anchor.

Data: emotion-pl (Mięsikowska & Świsulski 2020, *Emotions in polish speech recordings*,
Gdańsk University of Technology, https://doi.org/10.34808/h46c-hb44, CC BY), three
speakers. Protocol (issue 13): calibrate on two speakers, test on the third; the
baseline is that speaker's neutral repetitions 1-2 of all six words joined; each other
repetition's six words joined is an answer: neutral 3-5 calm, anger 1-5 and fear 1-5
agitated.

* ours: the calibrated calm model, refitted per fold by scripts/fit_calm.py's nested
  procedure: penalty and cue set chosen by leave-one-speaker-out between the two other
  speakers, then fitted on them and the synthetic fixtures; the held-out speaker is
  seen only when judged;
* anchor: eleven openSMILE eGeMAPS v02 functionals (F0 mean and range, loudness, alpha
  ratio, Hammarberg index, spectral slopes 0-500 and 500-1500 Hz, HNR, jitter, shimmer,
  MFCC1, all over voiced frames where eGeMAPS has that variant) of the answer minus
  the baseline's, standardised and fused by a logistic regression (scikit-learn
  defaults) fitted on the two other speakers;
* baseline length: our LOSO figure when the baseline is only the first K of its twelve
  words, with the seconds of speech that leaves: the measurement behind
  delivery.BASELINE_MIN_SPEECH_S.

    .venv/bin/python scripts/bench_calm.py [--no-lengths]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import fit_calm  # noqa: E402

from voice_sim.audio import SAMPLE_RATE  # noqa: E402

ANCHOR = ("F0semitoneFrom27.5Hz_sma3nz_amean", "F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2",
          "loudness_sma3_amean", "alphaRatioV_sma3nz_amean", "hammarbergIndexV_sma3nz_amean",
          "slopeV0-500_sma3nz_amean", "slopeV500-1500_sma3nz_amean",
          "HNRdBACF_sma3nz_amean", "jitterLocal_sma3nz_amean",
          "shimmerLocaldB_sma3nz_amean", "mfcc1V_sma3nz_amean")
"""The eleven eGeMAPS functionals of the anchor."""


def anchor() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per held-out speaker: (speaker, labels, predicted agitated)."""
    import opensmile
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)

    def funcs(x: np.ndarray) -> np.ndarray:
        return smile.process_signal(x, SAMPLE_RATE)[list(ANCHOR)].to_numpy()[0]

    rows: dict[str, list[tuple[bool, np.ndarray]]] = {}
    for spk in fit_calm.SPEAKERS:
        base = funcs(np.concatenate([fit_calm.emotion_pl(spk, "n", 1),
                                     fit_calm.emotion_pl(spk, "n", 2)]))
        rows[spk] = [(emo != "n", funcs(fit_calm.emotion_pl(spk, emo, rep)) - base)
                     for emo in "nas" for rep in range(1, 6) if not (emo == "n" and rep < 3)]
    out = []
    for spk in fit_calm.SPEAKERS:
        train = [r for s, rs in rows.items() if s != spk for r in rs]
        model = make_pipeline(StandardScaler(), LogisticRegression())
        model.fit(np.array([f for _, f in train]), np.array([y for y, _ in train]))
        y = np.array([y for y, _ in rows[spk]])
        out.append((spk, y, model.predict(np.array([f for _, f in rows[spk]])).astype(bool)))
    return out


def summary(rows: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[float, float, str]:
    ys = np.concatenate([y for _, y, _ in rows])
    ps = np.concatenate([p for *_, p in rows])
    acc, bal = fit_calm.scores(ys, ps)
    per = ", ".join(f"{s} {np.mean(p == y):.2f}" for s, y, p in rows)
    return acc, bal, per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-lengths", action="store_true", help="skip the baseline-length sweep")
    args = ap.parse_args()
    if not fit_calm.EMOTION_PL.is_dir():
        print(f"bench_calm: {fit_calm.EMOTION_PL} not found", file=sys.stderr)
        return 2
    print(f"load average {os.getloadavg()[0]:.2f}")
    real, synth = fit_calm.real_examples(), fit_calm.synthetic_examples()
    ours = [(s, np.array([e.label for e in t]), p >= fit_calm.calm.AGITATED_P)
            for s, t, p, _ in fit_calm.loso(real, synth)]
    for label, rows in (("ours, nested (penalty and cue set chosen inside each fold)", ours),
                        ("anchor: eGeMAPS 11 functionals + logistic regression", anchor())):
        acc, bal, per = summary(rows)
        print(f"LOSO {label}: accuracy {acc:.3f}, balanced accuracy {bal:.3f}; per speaker "
              f"{per}")
    if not args.no_lengths:
        for k in (3, 6, 9, 12):
            real_k = fit_calm.real_examples(base_words=k)
            rows = [(s, np.array([e.label for e in t]), p >= fit_calm.calm.AGITATED_P)
                    for s, t, p, _ in fit_calm.loso(real_k, synth)]
            acc, bal, per = summary(rows)
            speech = np.mean(fit_calm.BASELINE_SPEECH_S[-len(fit_calm.SPEAKERS):])
            print(f"baseline of {k:2d} words ({speech:.1f} s of speech on average): LOSO "
                  f"accuracy {acc:.3f}, balanced {bal:.3f}; per speaker {per}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
