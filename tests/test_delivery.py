"""Delivery analysis on real speech: LibriVox human readings, espeak-ng at known rates
and pitches, and sox-made agitated and near-identical versions of calm clips.

Reference figures come from outside the code under test: the LibriVox reference
transcript, syllables counted by hand from it, espeak-ng's set rate, sox's exact
transforms, and Praat (parselmouth) for F0.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from voice_sim import delivery
from voice_sim.audio import SAMPLE_RATE, load_audio, write_wav
from voice_sim.cli import main
from voice_sim.delivery import Baseline, analyze
from voice_sim.engines import Transcript, Word
from voice_sim.errors import AudioError, InputError

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")

# Syllables per clip, counted by hand from the reference transcript (in clip order).
LIBRIVOX_SYLLABLES = (31, 9, 20, 27, 13)

# A calm customer-service reply of ordinary word length (1.44 syllables per word).
REPLY = ("Thank you for waiting. I can see the payment was taken twice, which should never "
         "have happened. I will refund the second charge and send you a confirmation by "
         "email this afternoon.")

# Voices of both sexes: measured medians ~102 Hz, ~213 Hz and ~180 Hz.
VOICES = ("en-us", "en-us+f3", "en-gb-x-rp+f4")


def _reference() -> dict[str, str]:
    """Clip id -> reference words, from the ``transcription`` file beside the clips."""
    out = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((\S+)\)", line.strip())
        if m:
            out[m.group(2)] = m.group(1).strip()
    return out


@pytest.fixture(scope="module")
def librivox() -> list[tuple[np.ndarray, str]]:
    """The five LibriVox clips (one male reader) with their reference text."""
    if not (LIBRIVOX / "transcription").exists():
        pytest.skip(f"{LIBRIVOX} missing (apt-get install pocketsphinx-testdata)")
    ref = _reference()
    clips = sorted(LIBRIVOX.glob("*.wav"))
    assert len(clips) == len(LIBRIVOX_SYLLABLES) == len(ref)
    return [(load_audio(p), ref[p.stem]) for p in clips]


@pytest.fixture(scope="module")
def passage(librivox: list[tuple[np.ndarray, str]],
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five clips read one after another, as one answer (WAV)."""
    return write_wav(tmp_path_factory.mktemp("librivox") / "passage.wav",
                     np.concatenate([x for x, _ in librivox]))


def _text_transcript(text: str) -> Transcript:
    """A transcript that holds only the words (no timings), as a reference text gives."""
    return Transcript(engine="reference", model="text", text=text, duration_s=0.0)


def _praat_median(x: np.ndarray) -> float:
    parselmouth = pytest.importorskip("parselmouth")
    pitch = parselmouth.Sound(x.astype(np.float64), SAMPLE_RATE).to_pitch(
        time_step=delivery.HOP_S, pitch_floor=delivery.F0_MIN_HZ,
        pitch_ceiling=delivery.F0_MAX_HZ)
    f0 = pitch.selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


# --- human speech ------------------------------------------------------------------


def test_librivox_reader_median_f0_is_about_95_hz(passage: Path) -> None:
    d = analyze(load_audio(passage))
    assert d.pitch.median_hz is not None
    assert 95 * 0.95 <= d.pitch.median_hz <= 95 * 1.05
    # A calm reading: modest variability, most of the speech voiced.
    assert d.pitch.std_semitones is not None and 1.5 < d.pitch.std_semitones < 4.5
    assert 0.5 < d.pitch.voiced_fraction < 0.9


def test_median_f0_within_5_percent_of_praat_on_each_human_clip(
        librivox: list[tuple[np.ndarray, str]]) -> None:
    for x, _ in librivox:
        ours = analyze(x).pitch.median_hz
        praat = _praat_median(x)
        assert ours is not None and abs(ours / praat - 1) <= 0.05, (ours, praat)


def test_librivox_pace_against_reference_transcript(
        passage: Path, librivox: list[tuple[np.ndarray, str]]) -> None:
    text = " ".join(t for _, t in librivox)
    d = analyze(load_audio(passage), _text_transcript(text))
    assert d.pace.wpm is not None and abs(d.pace.wpm / 170 - 1) <= 0.15
    # The acoustic syllable count agrees with the hand count from the transcript.
    assert abs(d.pace.syllables / sum(LIBRIVOX_SYLLABLES) - 1) <= 0.1
    assert d.pace.wpm_from_syllables is not None
    assert abs(d.pace.wpm_from_syllables / 170 - 1) <= 0.15
    # The four sentence breaks are pauses; none is dead air; the reader starts at once.
    assert d.pauses.count == 4 and 0.3 <= d.pauses.longest_s < 1.0 and d.pauses.dead_air == 0
    assert d.pauses.latency_s is not None and 0.1 < d.pauses.latency_s < 0.5
    assert d.fillers.count == 0 and d.talk.words == len(text.split())


# --- espeak-ng at known rates and pitches ------------------------------------------


@pytest.mark.parametrize("voice", VOICES)
def test_pace_tracks_espeak_rate(espeak_wav: Callable[..., Path], voice: str) -> None:
    rates = (120, 160, 220, 280)
    runs = [analyze(load_audio(espeak_wav(REPLY, voice=voice, rate=r)),
                    _text_transcript(REPLY)) for r in rates]
    wpm = [d.pace.wpm or 0.0 for d in runs]
    syl = [d.pace.wpm_from_syllables or 0.0 for d in runs]
    assert wpm == sorted(wpm) and len(set(wpm)) == len(wpm)
    assert syl == sorted(syl) and len(set(syl)) == len(syl)
    for rate, w, s in zip(rates, wpm, syl, strict=True):
        assert abs(w / rate - 1) <= 0.15, (voice, rate, w)
        # Without a transcript the syllable estimate stands in for wpm: within 15%.
        assert abs(s / w - 1) <= 0.15, (voice, rate, s, w)


def test_pace_verdict_without_baseline(espeak_wav: Callable[..., Path]) -> None:
    calm = analyze(load_audio(espeak_wav(REPLY, rate=150)), _text_transcript(REPLY))
    rushed = analyze(load_audio(espeak_wav(REPLY, rate=280)), _text_transcript(REPLY))
    assert calm.calm and calm.calm_score >= 80
    assert not rushed.calm
    assert rushed.reasons[0].startswith("about 3") and "slow down toward 150" in rushed.reasons[0]
    # Acoustics alone reach the same verdict.
    assert not analyze(load_audio(espeak_wav(REPLY, rate=280))).calm


def test_pitch_follows_espeak_pitch_and_sex(espeak_wav: Callable[..., Path]) -> None:
    text = "I can see the payment was taken twice."
    low, mid, high = (analyze(load_audio(espeak_wav(text, pitch=p))).pitch.median_hz
                      for p in (20, 50, 80))
    female = analyze(load_audio(espeak_wav(text, voice="en-us+f3"))).pitch.median_hz
    assert low is not None and mid is not None and high is not None and female is not None
    assert low < mid < high
    # Speakers differ by about an octave.
    assert 9 < 12 * np.log2(female / mid) < 15


# --- agitated vs calm against a baseline ------------------------------------------


AGITATED = {"pitch +4 st": ("pitch", "400"), "tempo x1.3": ("tempo", "1.3"),
            "gain +8 dB": ("gain", "8")}
NEAR_IDENTITY = {"pitch +0.4 st": ("pitch", "40"), "tempo x1.04": ("tempo", "1.04"),
                 "unchanged": ()}


@pytest.fixture(scope="module", params=["librivox", *VOICES])
def calm_clip(request: pytest.FixtureRequest, espeak_wav: Callable[..., Path],
              sox: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory,
              ) -> tuple[Path, Baseline]:
    """A calm clip normalised to -12 dBFS peak (room for +8 dB), and its baseline."""
    src = (request.getfixturevalue("passage") if request.param == "librivox"
           else espeak_wav(REPLY, voice=request.param))
    out = sox(src, tmp_path_factory.mktemp("calm") / "calm.wav", "gain", "-n", "-12")
    return out, Baseline.from_audio(load_audio(out))


def test_agitated_versions_are_not_calm(calm_clip: tuple[Path, Baseline],
                                        sox: Callable[..., Path], tmp_path: Path) -> None:
    src, base = calm_clip
    for name, fx in AGITATED.items():
        d = analyze(load_audio(sox(src, tmp_path / "a.wav", *fx)), baseline=base)
        assert not d.calm and d.calm_score < 70, (name, d.calm_score, d.reasons)
        if fx[0] == "pitch":
            assert d.pitch.shift_semitones is not None
            assert abs(d.pitch.shift_semitones - 4) < 0.3
            assert re.match(r"pitch [34]\.\d semitones above your calm baseline", d.reasons[0])
        elif fx[0] == "tempo":
            assert d.pace.ratio is not None and 1.2 <= d.pace.ratio <= 1.4
            assert "as fast as your calm baseline" in d.reasons[0]
        else:
            assert d.loudness.shift_db is not None and abs(d.loudness.shift_db - 8) < 0.3
            assert d.reasons[0].startswith("8.0 dB louder than your calm baseline")


def test_near_identity_versions_stay_calm(calm_clip: tuple[Path, Baseline],
                                          sox: Callable[..., Path], tmp_path: Path) -> None:
    src, base = calm_clip
    for name, fx in NEAR_IDENTITY.items():
        d = analyze(load_audio(sox(src, tmp_path / "n.wav", *fx)), baseline=base)
        assert d.calm and d.calm_score >= 80, (name, d.calm_score, d.reasons)
        assert d.pitch.shift_semitones is not None and abs(d.pitch.shift_semitones) < 0.6
        assert d.pace.ratio is not None and 0.93 < d.pace.ratio < 1.09
        assert d.loudness.shift_db is not None and abs(d.loudness.shift_db) < 0.5
        assert any("of your calm baseline" in r for r in d.reasons)


def test_baseline_of_another_speaker_is_flagged(espeak_wav: Callable[..., Path]) -> None:
    female = Baseline.from_audio(load_audio(espeak_wav(REPLY, voice="en-us+f3")))
    d = analyze(load_audio(espeak_wav(REPLY)), baseline=female)
    assert d.pitch.shift_semitones is not None and d.pitch.shift_semitones < -9
    assert any("is the baseline the same speaker" in r for r in d.reasons)


# --- robustness: clipping, noise, silence ------------------------------------------


@pytest.fixture(scope="module")
def clean(passage: Path) -> tuple[np.ndarray, delivery.Delivery]:
    x = load_audio(passage)
    return x, analyze(x)


def test_clipped_speech_keeps_its_pitch_and_is_flagged(
        clean: tuple[np.ndarray, delivery.Delivery]) -> None:
    x, ref = clean
    hot = np.clip(x * (10 ** (12 / 20) / np.abs(x).max()), -1, 1).astype(np.float32)
    d = analyze(hot)
    assert ref.pitch.median_hz is not None and d.pitch.median_hz is not None
    assert abs(d.pitch.median_hz / ref.pitch.median_hz - 1) < 0.03
    assert ref.pitch.std_semitones is not None and d.pitch.std_semitones is not None
    assert abs(d.pitch.std_semitones - ref.pitch.std_semitones) < 0.5
    assert ref.loudness.clipped_fraction == 0 and d.loudness.clipped_fraction > 0.01
    assert not d.calm and any("clipped" in r for r in d.reasons)


def test_noisy_speech_keeps_its_measures(clean: tuple[np.ndarray, delivery.Delivery]) -> None:
    x, ref = clean
    rng = np.random.default_rng(7)
    speech_power = float(np.mean(x[np.abs(x) > 0.01] ** 2))
    noise = rng.standard_normal(len(x)) * np.sqrt(speech_power / 10 ** (20 / 10))  # 20 dB SNR
    d = analyze((x + noise).astype(np.float32))
    assert ref.pitch.median_hz is not None and d.pitch.median_hz is not None
    assert abs(d.pitch.median_hz / ref.pitch.median_hz - 1) < 0.05
    assert abs(d.speech_s / ref.speech_s - 1) < 0.1
    assert abs(d.pace.syllables / ref.pace.syllables - 1) < 0.1
    assert d.pauses.count == ref.pauses.count


@pytest.mark.parametrize("make", [
    lambda n, rng: np.zeros(n, dtype=np.float32),
    lambda n, rng: (0.01 * rng.standard_normal(n)).astype(np.float32),
    lambda n, rng: np.where(np.arange(n) % 8000 == 0, 0.9, 0.0).astype(np.float32),
], ids=["digital silence", "white noise", "clicks"])
def test_no_speech_is_reported_not_crashed(make: Callable[..., np.ndarray]) -> None:
    d = analyze(make(3 * SAMPLE_RATE, np.random.default_rng(1)))
    assert d.speech_s == 0 and d.pitch.median_hz is None and d.pauses.latency_s is None
    assert not d.calm and d.calm_score == 0
    assert d.reasons == ("no speech heard in 3.0 s of audio",)
    json.dumps(d.to_json(), allow_nan=False)


# --- pauses and fillers ------------------------------------------------------------


def test_latency_pauses_and_dead_air(espeak_wav: Callable[..., Path]) -> None:
    parts = [load_audio(espeak_wav(t)) for t in
             ("I understand.", "Let me check that for you.", "Thank you for waiting.")]
    rng = np.random.default_rng(3)

    def quiet(s: float) -> np.ndarray:  # room noise at about -66 dBFS, not digital silence
        return (0.0005 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32)

    x = np.concatenate([quiet(1.5), parts[0], quiet(0.8), parts[1], quiet(3.5), parts[2],
                        quiet(0.5)])
    d = analyze(x)
    assert d.pauses.latency_s is not None and abs(d.pauses.latency_s - 1.5) < 0.1
    assert d.pauses.count == 2 and d.pauses.dead_air == 1
    assert 3.5 <= d.pauses.longest_s < 4.0
    assert 4.3 <= d.pauses.total_s < 5.0
    assert any("dead air" in r for r in d.reasons)
    # Pace counts each silence for at most a second: the 3.5 s gap does not slow it.
    assert d.pace.seconds == pytest.approx(d.speech_s + 2 * delivery.PACE_PAUSE_CAP_S,
                                           abs=0.25)


def test_fillers_counted_from_the_transcript(espeak_wav: Callable[..., Path]) -> None:
    text = "Um, I, uh, I understand. Ummm, erm, let me, er, like, check that for you."
    d = analyze(load_audio(espeak_wav(text)), _text_transcript(text))
    assert d.fillers.count == 5 and d.fillers.words == ("um", "uh", "ummm", "erm", "er")
    assert d.talk.words == 15
    assert d.fillers.per_min is not None
    assert d.fillers.per_min == pytest.approx(5 / d.pace.seconds * 60)
    assert d.pace.wpm == pytest.approx(10 / d.pace.seconds * 60)  # fillers are not words
    assert any(r.startswith("5 filler words (er, erm, uh, um, ummm)") for r in d.reasons)


def test_word_timings_leave_out_sounds_outside_the_answer(
        espeak_wav: Callable[..., Path]) -> None:
    """A voice before the answer starts is not the trainee's latency or speech."""
    before = load_audio(espeak_wav("Hello?", voice="en-us+f3"))
    answer = load_audio(espeak_wav("I understand, let me check that for you."))
    gap = np.zeros(int(2.0 * SAMPLE_RATE), dtype=np.float32)
    x = np.concatenate([before, gap, answer])
    t0 = (len(before) + len(gap)) / SAMPLE_RATE
    said = ["I", "understand", "let", "me", "check", "that", "for", "you"]
    words = tuple(Word(w, t0 + 0.3 * i, t0 + 0.3 * i + 0.25) for i, w in enumerate(said))
    with_words = analyze(x, Transcript("test", "hand", "", len(x) / SAMPLE_RATE, words))
    acoustic = analyze(x)
    assert acoustic.pauses.latency_s is not None and acoustic.pauses.latency_s < 0.1
    assert with_words.pauses.latency_s is not None
    assert abs(with_words.pauses.latency_s - t0) < 0.1
    assert with_words.pauses.count == 0 and with_words.speech_s < acoustic.speech_s


@pytest.mark.slow
@pytest.mark.model
def test_whisper_transcript_gives_words_per_minute(espeak_wav: Callable[..., Path]) -> None:
    pytest.importorskip("faster_whisper", reason="faster-whisper not installed")
    from voice_sim.engines import get_engine
    from voice_sim.errors import ModelError

    try:
        engine = get_engine("whisper")
    except ModelError as e:
        pytest.skip(f"no Whisper model: {e.line()}")
    x = load_audio(espeak_wav(REPLY, rate=160))
    recognised = analyze(x, engine.transcribe(x))
    reference = analyze(x, _text_transcript(REPLY))
    assert recognised.pace.wpm is not None and reference.pace.wpm is not None
    assert abs(recognised.pace.wpm / 160 - 1) <= 0.15
    assert abs(recognised.pace.wpm / reference.pace.wpm - 1) <= 0.1


# --- API, JSON and CLI -------------------------------------------------------------


def test_json_has_the_documented_keys(espeak_wav: Callable[..., Path]) -> None:
    x = load_audio(espeak_wav(REPLY))
    plain = analyze(x).to_json()
    assert {"duration_s", "speech_s", "pitch", "pace", "loudness", "pauses", "fillers",
            "calm", "calm_score", "reasons"} <= set(plain)
    assert {"median_hz", "std_semitones", "range_semitones", "shift_semitones"} <= set(
        plain["pitch"])
    assert {"wpm", "syllables_per_s"} <= set(plain["pace"])
    assert {"rms_dbfs", "shift_db", "clipped_fraction"} <= set(plain["loudness"])
    assert {"latency_s", "count", "longest_s", "total_s"} <= set(plain["pauses"])
    assert {"count", "per_min"} <= set(plain["fillers"])
    # Without a baseline the shifts are null; without a transcript wpm and fillers are.
    assert plain["pitch"]["shift_semitones"] is None and plain["loudness"]["shift_db"] is None
    assert plain["pace"]["wpm"] is None and plain["fillers"]["count"] is None
    assert "contour" not in plain
    full = analyze(x, _text_transcript(REPLY), Baseline.from_audio(x)).to_json(contour=True)
    assert full["pitch"]["shift_semitones"] == 0 and full["loudness"]["shift_db"] == 0
    assert full["pace"]["wpm"] > 0 and full["fillers"]["count"] == 0
    c = full["contour"]
    assert len(c["times"]) == len(c["f0_hz"]) and c["times"][1] == delivery.HOP_S
    voiced = [f for f in c["f0_hz"] if f is not None]
    assert len(voiced) > 100 and np.median(voiced) == pytest.approx(
        full["pitch"]["median_hz"], rel=0.01)
    json.loads(json.dumps(full, allow_nan=False))


def test_baseline_round_trip_and_errors(espeak_wav: Callable[..., Path]) -> None:
    base = Baseline.from_audio(load_audio(espeak_wav(REPLY)))
    back = Baseline.from_json(json.loads(json.dumps(base.to_json())))
    assert back.wpm is None and base.wpm is None
    for name in ("median_hz", "std_semitones", "syllables_per_s", "rms_dbfs", "speech_s"):
        assert getattr(back, name) == pytest.approx(getattr(base, name), abs=1e-3)
    with pytest.raises(InputError, match="baseline: missing or invalid field"):
        Baseline.from_json({"median_hz": 100})
    short = load_audio(espeak_wav("Yes."))
    with pytest.raises(AudioError, match=r"^calm.wav: only 0\.\d s of speech"):
        Baseline.from_audio(short, source="calm.wav")


def test_bad_sample_arrays_are_refused() -> None:
    with pytest.raises(InputError, match="expected mono audio"):
        analyze(np.zeros((2, 1000), dtype=np.float32))
    with pytest.raises(AudioError, match="no audio samples"):
        analyze(np.zeros(0, dtype=np.float32))
    # NaN and infinite samples are treated as silence, not as an error.
    assert analyze(np.full(8000, np.nan, dtype=np.float32)).speech_s == 0


def test_pcm_integers_are_scaled(espeak_wav: Callable[..., Path]) -> None:
    x = load_audio(espeak_wav("I can see the payment was taken twice."))
    pcm = np.round(x * 32767).astype(np.int16)
    a, b = analyze(x), analyze(pcm)
    assert b.loudness.rms_dbfs is not None and a.loudness.rms_dbfs is not None
    assert b.loudness.rms_dbfs == pytest.approx(a.loudness.rms_dbfs, abs=0.1)
    assert b.pitch.median_hz == pytest.approx(a.pitch.median_hz, rel=0.01)


def test_cli_json_and_text(espeak_wav: Callable[..., Path], sox: Callable[..., Path],
                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calm = sox(espeak_wav(REPLY), tmp_path / "calm.wav", "gain", "-n", "-12")
    loud = sox(calm, tmp_path / "loud.wav", "gain", "8")
    assert main(["delivery", str(loud), "--baseline", str(calm), "--no-transcript",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["calm"] is False and out["loudness"]["shift_db"] == pytest.approx(8, abs=0.3)
    assert main(["delivery", str(calm), "--no-transcript"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("calm: yes") and "no baseline" in text


def test_cli_errors_are_one_line(espeak_wav: Callable[..., Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["delivery", str(tmp_path / "missing.wav"), "--no-transcript"]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.wav: no such file" in err and "\n" not in err
    short = espeak_wav("Yes.")
    assert main(["delivery", str(espeak_wav(REPLY)), "--baseline", str(short),
                 "--no-transcript"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{short}: only" in err and "a baseline needs" in err and "\n" not in err


def test_warm_up_from_a_background_thread() -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            delivery.warm_up()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and delivery._warm
