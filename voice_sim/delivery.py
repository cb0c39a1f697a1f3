"""Delivery analysis: is the trainee calm and steady?

One spoken answer (mono float32 at :data:`voice_sim.audio.SAMPLE_RATE`) is measured
for pitch, pace, loudness, pauses and fillers, then judged against the speaker's own
calm baseline when there is one, else against population defaults. Speakers differ
by an octave, so pitch is never judged in absolute Hz: only its change from the
baseline (in semitones) and its variability (in semitones) count.

How it is measured (all frames 10 ms apart):

* **Pitch**: librosa's YIN (fast: ~50x pyin) picks the period; a frame is voiced
  when the normalised cross-correlation of two windows one period apart reaches
  :data:`VOICING_MIN_CORRELATION` (Praat's criterion) and it carries speech energy.
  Octave slips and stray frames are removed against a running median.
* **Speech activity**: frame energy against a threshold set from the recording's own
  noise floor and speech level; stretches must hold voicing to count as speech
  (so clicks, breaths and noise bursts do not).
* **Pace**: words per minute from the transcript, and syllables per second from
  voiced energy peaks (syllable nuclei, after de Jong & Wempe 2009), both over the
  same speaking time: a speaking rate as conversational norms count it, ordinary
  pauses in, long silences capped (see :data:`PACE_PAUSE_CAP_S`).
* **Voice quality** (:class:`Voice`): alpha ratio, Hammarberg index and spectral slopes
  from a 32 ms power spectrum per frame, as eGeMAPS defines them, and HNR from the
  voicing correlation, all averaged over the voiced frames; articulation rate over the
  speech alone. They do not depend on the recording level, so they show effort where a
  level-normalised recording hides loudness.

Against a calm baseline, :mod:`voice_sim.calm` fuses every cue's change into one
calibrated verdict; without one, the population defaults below judge each measure.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from voice_sim.audio import SAMPLE_RATE
from voice_sim.errors import AudioError, InputError, ModelError, VoiceSimError

if TYPE_CHECKING:
    import argparse
    from concurrent.futures import Executor, Future

    import numpy as np

    from voice_sim.calm import Cue
    from voice_sim.engines import Transcript

# --- analysis parameters -----------------------------------------------------------

HOP_S = 0.01
"""Seconds between analysis frames (Praat's default pitch time step for a 75 Hz floor)."""

HOP = int(SAMPLE_RATE * HOP_S)
"""Samples between analysis frames."""

FRAME_LENGTH = 1024
"""Samples per YIN frame (64 ms): YIN needs two periods of the lowest pitch plus the
comparison window (2 x 15 ms at 65 Hz + 32 ms); a power of two keeps the FFT fast."""

CORR_WINDOW = 512
"""Samples (32 ms) compared one period apart for the voicing decision: about three
periods of a 100 Hz voice, as Praat's 3-periods-of-the-floor window."""

F0_MIN_HZ = 65.0
"""Hz. Lowest pitch tracked: below the lowest usual male speaking F0 (~75 Hz) with
room for creaky phrase ends; also above 50/60 Hz mains hum."""

F0_MAX_HZ = 500.0
"""Hz. Highest pitch tracked: above the 400 Hz often used for speech, so a raised
female voice (calm ~200-220 Hz, agitated peaks 400+) is not folded an octave down."""

VOICING_MIN_CORRELATION = 0.5
"""Normalised correlation at the YIN period above which a frame is voiced. Praat's
default voicing threshold is 0.45; on the LibriVox test clips any value in 0.4-0.7
agrees with Praat's voiced/unvoiced decision on ~75-80% of frames, 0.5 among the best."""

OUTLIER_SEMITONES = 4.0
"""A voiced frame further than this from the median of its +-50 ms neighbours is an
octave slip or a stray frame and is dropped. Real pitch glides move < ~1 semitone per
10 ms, so the running median follows them."""

MIN_VOICED_RUN_S = 0.03
"""Seconds. Shorter voiced runs are dropped: a vowel lasts > 40 ms."""

STRAY_RUN_S = 0.1
"""Seconds. A voiced run shorter than this whose median lies more than
STRAY_RUN_SEMITONES from the answer's median is a stray (a buzzy fricative, a
subharmonic): found on the test clips as 40-60 ms runs at 3-4x the speaker's F0
that Praat's path search rejects. Stressed vowels last longer than 0.1 s."""

STRAY_RUN_SEMITONES = 7.0
"""Semitones (a fifth) from the answer's median F0 beyond which a short run is stray."""

NOISE_PERCENTILE = 10.0
"""The frame-energy percentile taken as the noise floor (an answer starts and ends
with silence, and pauses take well over 10% of spontaneous speech)."""

SPEECH_PERCENTILE = 95.0
"""The frame-energy percentile taken as the speech level (loud vowels)."""

SPEECH_OVER_NOISE_DB = 6.0
"""dB. A frame is speech-active when its energy is this far over the noise floor..."""

SPEECH_BELOW_PEAK_DB = 35.0
"""dB. ...and no further than this under the speech level (weak consonants sit about
30 dB below vowels; breaths and room noise lower still)."""

MIN_SEGMENT_VOICED_S = 0.05
"""Seconds of voicing a stretch of sound needs to count as speech (no word is
shorter; a cough, click, breath or noise burst has none)."""

SYLLABLE_MIN_DIP_DB = 2.0
"""dB. An energy peak is a new syllable nucleus when the dips on both sides are at
least this deep (de Jong & Wempe 2009, "Praat script to detect syllable nuclei")."""

SYLLABLE_BELOW_PEAK_DB = 25.0
"""dB. Nuclei lie within this of the speech level (de Jong & Wempe's silence threshold)."""

SYLLABLE_MIN_GAP_S = 0.05
"""Seconds between nuclei at the least: faster than any speech (~8-9 syllables/s at
most), so it only stops one vowel's ripple counting twice."""

SYLLABLE_BAND_HZ = (250.0, 2500.0)
"""Hz. The band whose energy peaks mark vowels (first and second formants)."""

SYLLABLE_WINDOW = 400
"""Samples (25 ms) per energy frame for syllable nuclei: short enough that fast
syllables (7/s) stay apart. Window, band and dip were chosen together on the test
clips: nuclei within 5% of the reference syllable count for LibriVox and espeak at
120-280 wpm, and within 5% of the original after sox tempo, pitch and gain changes."""

SYLLABLES_PER_WORD = 1.4
"""Average syllables per spoken English word, to state a syllable rate in words per
minute. Conversational English averages ~1.3-1.5 (function words are short); 1.4
also matched the LibriVox reference and the espeak test sentences."""

SPECTRUM_WINDOW = 512
"""Samples (32 ms) per power spectrum for the voice-quality cues: two to three periods
of a low voice, so harmonics are resolved in the 0-500 Hz slope."""

CLIP_LEVEL = 0.99
"""|sample| at or above this (-0.09 dBFS) counts as clipped."""

# --- pauses ------------------------------------------------------------------------

PAUSE_MIN_S = 0.3
"""Seconds. A silence this long inside an answer is a pause; shorter gaps are stop
closures and breaths within fluent speech (pause studies use 0.2-0.3 s cut-offs;
turn-taking gaps average ~0.2 s, Stivers et al. 2009, PNAS)."""

PACE_PAUSE_CAP_S = 1.0
"""Seconds. Each silence counts at most this much toward the speaking time that pace
is measured over. Conversational-pace norms (~150 wpm) are speaking rates, ordinary
pauses included (sentence breaks in fluent reading run ~0.5-1 s); a longer silence
is hesitation, reported under pauses, and counting it in full would let a long
pause hide a rushed delivery."""

WORD_TIMING_SLACK_S = 0.3
"""Seconds of slack on the transcript's word timings when they pick the speech that
belongs to the answer (Whisper's word times can be a few tenths off)."""

DEAD_AIR_S = 3.0
"""Seconds. A silence this long on a call is dead air: the caller wonders whether
you are still there (broadcast and contact-centre practice)."""

LATENCY_WARN_S = 2.0
"""Seconds before the first word that start to sound hesitant: conversational turns
start ~0.2 s after the other speaker, and silences over ~1 s (Jefferson's "standard
maximum") are heard as trouble; a thoughtful reply may take a little longer."""

LATENCY_BAD_S = 4.0
"""Seconds before the first word that is clearly too long (beyond dead air)."""

# --- population defaults (no baseline) ---------------------------------------------

TARGET_WPM = 150.0
"""Words per minute to aim for: the average US English conversational rate (National
Center for Voice and Speech); 120-160 is the usual calm conversational range."""

RUSHED_WPM = 170.0
"""Words per minute above which a reply starts to read as rushed (audiobooks are
read at 150-160; 170 is brisk)."""

TOO_FAST_WPM = 210.0
"""Words per minute that is clearly too fast for a calming reply (news bursts reach
~200-230 and sound hurried)."""

PITCH_STD_WARN_ST = 4.5
"""Semitones of F0 standard deviation above which pitch swings widely. Calm speech
measured here: the LibriVox reader 1.9-3.3 per clip, espeak voices 1.6-2.4."""

PITCH_STD_BAD_ST = 6.5
"""Semitones of F0 standard deviation that is clearly agitated (anger widens F0
range; Demenko & Jastrzebska 2012 on emergency calls)."""

QUIET_DBFS = -40.0
"""dBFS RMS over speech under which the answer is too quiet to hear well (typical
close-microphone speech sits at -30 to -15 dBFS)."""

FILLERS_WARN_PER_MIN = 6.0
"""Filler words per minute that start to distract: filled pauses run at ~2-6 per
100 words in spontaneous speech, i.e. ~3-9 per minute at 150 wpm."""

FILLERS_BAD_PER_MIN = 12.0
"""Filler words per minute that clearly undermine a calm, confident reply."""

FILLERS_MIN_COUNT = 3
"""Fewer fillers than this are never judged (one "um" in a short reply is normal)."""

RAMBLING_S = 60.0
"""Seconds of talk in one answer that is too long for a de-escalation turn: keep
replies short, acknowledge, then act (about 150 words at a calm pace)."""

RAMBLING_WORDS = 150
"""Words in one answer that is too long (one minute at 150 wpm)."""

MIN_JUDGED_SPEECH_S = 2.0
"""Seconds of speech below which pace is not judged (a two-word reply has no pace)."""

MIN_JUDGED_VOICED_S = 0.5
"""Seconds of voicing below which pitch is not judged."""

# --- change from the speaker's own calm baseline -----------------------------------
# Against a baseline one calibrated model judges (voice_sim.calm); each "bad" limit
# below still makes an answer not calm on its own when the cue is measured on enough
# speech (voice_sim.calm.combine). The "warn" limits draw the report's bands.

PITCH_SHIFT_WARN_ST = 1.5
"""Semitones above baseline that start to show tension. Stress raises mean F0 (about
+9 Hz, ~0.7 st, on average in Scherer 1977's interviews); 1.5 st is twice that and
above a speaker's day-to-day drift."""

PITCH_SHIFT_BAD_ST = 3.0
"""Semitones above baseline that are clearly agitated (a raised, tense voice)."""

VARIABILITY_WARN_RATIO = 1.5
"""F0 variability (std in semitones) over baseline that starts to sound agitated."""

VARIABILITY_BAD_RATIO = 2.0
"""F0 variability over baseline that is clearly agitated (anger widens F0 range)."""

PACE_WARN_RATIO = 1.1
"""Syllable rate over baseline that starts to sound hurried. The measure itself moves
up to ~5% between versions of one clip (sox tempo x1.04 reads 1.02-1.06)."""

PACE_BAD_RATIO = 1.15
"""Syllable rate over baseline that is clearly rushed: about a sixth faster than your
own calm reading (stress and anger speed speech up). sox tempo x1.3 reads 1.19-1.30 on
the test replies and x1.04 reads 1.02-1.06. It decides alone only on enough syllables
(voice_sim.calm.LIMIT_MIN_CONFIDENCE): calm 6-12-syllable emotion-pl answers read up
to 1.48."""

LOUDNESS_WARN_DB = 3.0
"""dB over baseline that starts to sound like a raised voice."""

LOUDNESS_BAD_DB = 6.0
"""dB over baseline that is a raised voice: ANSI S3.5 puts "raised" vocal effort ~6 dB
over "normal" and "loud" ~12 dB over."""

CLIPPED_WARN = 0.001
"""Fraction of speech samples clipped that starts to matter (0.1%: audible crackle)."""

CLIPPED_BAD = 0.01
"""Fraction of speech samples clipped that means shouting or a far too hot input."""

BASELINE_MISMATCH_ST = 7.0
"""Semitones below the baseline that suggest the baseline is another speaker (a
calm voice does not drop a fifth; a man and a woman sit about an octave apart)."""

BASELINE_MIN_SPEECH_S = 5.0
"""Seconds of speech a calm baseline needs (a reading of two sentences). Measured by
scripts/bench_calm.py (leave-one-speaker-out on emotion-pl with the baselines cut
short): with 3.9 s of baseline speech the worst speaker falls to 0.69 (accuracy 0.85),
with 5.7 s every speaker stays at 0.85 or more (accuracy 0.90), with 7.8 s 0.92. The
session's calm sentence read at 160-200 wpm gives 5.8-6.6 s."""

BASELINE_MIN_VOICED_S = 1.0
"""Seconds of voicing a calm baseline needs for a stable median pitch."""

DRIFT_BLOCK_S = 1.0
"""Seconds of voicing per block when measuring a baseline's pitch drift (about one
phrase's worth of vowels: long enough for a stable median, short enough for the
baseline to hold several)."""

# --- verdict -----------------------------------------------------------------------

CALM_MIN_SCORE = 60
"""A calm score below this is not calm even when no single measure is clearly off."""

CORE_CHECKS = frozenset({"pitch_shift", "pitch_variability", "pace", "loudness_shift",
                         "clipping", "no_speech"})
"""Signs of agitation: any one of these at its "bad" limit makes the answer not calm.
The others (latency, dead air, fillers, rambling, a quiet level) are steadiness and
call craft: they lower the score but do not alone decide the verdict."""

WEIGHTS = {
    "pitch_shift": 40.0, "pace": 35.0, "loudness_shift": 35.0, "pitch_variability": 25.0,
    "clipping": 25.0, "dead_air": 20.0, "latency": 15.0, "fillers": 15.0,
    "rambling": 10.0, "quiet": 10.0, "no_speech": 100.0,
}
"""Points a check takes off the 100-point calm score when it reaches its "bad" limit
(scaled linearly from its "warn" limit, capped at 1.5x). Pitch, pace and loudness
change are the core signs of agitation; the rest are steadiness and call craft."""

CUE_CHECK = {"loudness": "loudness_shift"}
"""Model cue names that _fine_notes knows under another check name."""

# --- fillers -----------------------------------------------------------------------

FILLERS = frozenset({"um", "uh", "er", "erm", "uhm", "ah", "eh", "hm", "mm", "em"})
"""Hesitation sounds counted as fillers (after collapsing repeated letters, so
"ummm" is "um"). Words such as "like" or "you know" are left out: they are often
meant, and a word list cannot tell."""

_REPEATS = re.compile(r"(.)\1+")
_NON_WORD = re.compile(r"[^a-z0-9']+")

_warm_lock = threading.Lock()
_warm = False


# --- results -----------------------------------------------------------------------


@dataclass(frozen=True)
class Pitch:
    """Fundamental frequency (F0) of the voiced frames."""

    median_hz: float | None
    """Hz; None when too little voicing was found."""
    std_semitones: float | None
    """Standard deviation of F0 in semitones around the median: variability."""
    range_semitones: float | None
    """10th to 90th percentile of F0, in semitones."""
    voiced_fraction: float
    """Voiced frames over speech frames, 0..1."""
    voiced_s: float
    """Seconds of voicing."""
    shift_semitones: float | None = None
    """Median F0 over the baseline's, in semitones; None without a baseline."""
    variability_ratio: float | None = None
    """std_semitones over the baseline's; None without a baseline."""
    high_hz: float | None = None
    """Hz, the 90th percentile of F0: how high the voice goes."""
    rise_semitones: float | None = None
    """high_hz over the baseline's high_hz, in semitones: how much higher the peaks
    reach than in the calm reading; None without a baseline (or an older one)."""


@dataclass(frozen=True)
class Pace:
    """Speaking rate over the speaking time (each pause counted at most PACE_PAUSE_CAP_S)."""

    wpm: float | None
    """Words per minute from the transcript; None without one."""
    syllables_per_s: float | None
    """Acoustic syllable nuclei per second; None with no speech."""
    wpm_from_syllables: float | None
    """syllables_per_s stated in words per minute (/ SYLLABLES_PER_WORD * 60)."""
    syllables: int
    """Syllable nuclei found."""
    seconds: float
    """Speaking time the rates are over: speech plus pauses, each pause counted at most
    PACE_PAUSE_CAP_S."""
    ratio: float | None = None
    """syllables_per_s over the baseline's; None without a baseline."""


@dataclass(frozen=True)
class Loudness:
    """Level over the speech frames."""

    rms_dbfs: float | None
    """RMS level of the speech in dBFS (a full-scale sine is -3 dBFS); None with no speech."""
    clipped_fraction: float
    """Fraction of speech samples at full scale, 0..1."""
    too_quiet: bool
    shift_db: float | None = None
    """rms_dbfs over the baseline's, in dB; None without a baseline."""
    drift: float | None = None
    """dB squared times seconds: how far the level of each DRIFT_BLOCK_S of speech
    wanders from the whole (mean squared deviation times DRIFT_BLOCK_S); None under two
    blocks. A baseline's drift tells how little a short answer's level proves (see
    Baseline.pitch_drift)."""


@dataclass(frozen=True)
class Pauses:
    """Silences in the answer."""

    latency_s: float | None
    """Seconds of silence before the first speech; None with no speech."""
    count: int
    """Internal pauses of PAUSE_MIN_S or more."""
    longest_s: float
    total_s: float
    dead_air: int
    """Silences of DEAD_AIR_S or more, the opening one included."""


@dataclass(frozen=True)
class Voice:
    """Vocal effort and voice quality over the voiced speech: the cues of the eGeMAPS
    family (Eyben et al. 2016) that do not depend on the recording level. All None
    when too little voicing was found (MIN_JUDGED_VOICED_S)."""

    alpha_ratio_db: float | None
    """Energy 1-5 kHz over 50-1000 Hz, dB, mean over voiced frames: rises with effort."""
    hammarberg_db: float | None
    """Strongest peak 0-2 kHz over strongest 2-5 kHz, dB: falls with effort."""
    slope_0_500: float | None
    """dB per kHz, spectral slope 0-500 Hz."""
    slope_500_1500: float | None
    """dB per kHz, spectral slope 500-1500 Hz: flattens with effort."""
    hnr_db: float | None
    """Harmonics-to-noise ratio, dB (from the period correlation r: 10 log10 r/(1-r)),
    mean over voiced frames."""
    articulation_rate: float | None
    """Syllable nuclei per second of speech, pauses left out; None with no speech."""


@dataclass(frozen=True)
class Fillers:
    """Hesitation words found in the transcript (None fields without a transcript)."""

    count: int | None
    per_min: float | None
    """Per minute of speaking time."""
    words: tuple[str, ...] = ()
    """The fillers as heard, in order."""


@dataclass(frozen=True)
class Talk:
    """How long the answer is."""

    seconds: float
    """From the first to the last speech sound."""
    words: int | None
    """Words in the transcript (fillers included); None without one."""
    rambling: bool


@dataclass(frozen=True)
class Check:
    """One measure judged against its limits: what moved the calm score and why."""

    name: str
    value: float
    warn: float
    """Where the score starts to drop."""
    bad: float
    """Where this measure alone makes the answer not calm."""
    unit: str
    penalty: float
    """Points taken off the calm score."""
    reason: str


@dataclass(frozen=True)
class Contour:
    """The F0 contour for plots: one value per frame, None where unvoiced."""

    times: tuple[float, ...]
    """Seconds from the start of the audio."""
    f0_hz: tuple[float | None, ...]


@dataclass(frozen=True)
class Baseline:
    """The speaker's own calm delivery, to judge change against."""

    median_hz: float
    std_semitones: float
    syllables_per_s: float
    rms_dbfs: float
    speech_s: float
    wpm: float | None = None
    # Added with the calibrated calm model (voice_sim.calm); None in baselines saved
    # before it, which leaves those cues out of the verdict.
    high_hz: float | None = None
    """Hz, 90th percentile of F0."""
    voiced_s: float | None = None
    syllables: int | None = None
    alpha_ratio_db: float | None = None
    hammarberg_db: float | None = None
    slope_0_500: float | None = None
    slope_500_1500: float | None = None
    hnr_db: float | None = None
    articulation_rate: float | None = None
    level_drift: float | None = None
    """Loudness.drift of the baseline (dB squared times seconds); None when too short."""
    pitch_drift: float | None = None
    """Semitones squared times seconds: how far the median pitch of each DRIFT_BLOCK_S
    of the baseline's voicing wanders from the whole baseline's (mean squared deviation
    times DRIFT_BLOCK_S). A reader's pitch starts a sentence high and falls (declination),
    so n seconds of voicing give a median pitch that is off by about sqrt(drift / n)
    semitones even when nothing changed: voice_sim.calm trusts a short answer's pitch
    only that far. None when the baseline is too short to tell (or older)."""

    @classmethod
    def from_audio(cls, samples: np.ndarray, transcript: Transcript | None = None, *,
                   source: str = "the baseline") -> Baseline:
        """Measure a short calm reading; ``source`` names it in error messages."""
        return cls.from_delivery(analyze(samples, transcript), source=source)

    @classmethod
    def from_delivery(cls, d: Delivery, *, source: str = "the baseline") -> Baseline:
        """Take the baseline from an analysed calm reading."""
        hint = "record 5-10 s of calm reading at your usual pace and loudness"
        if d.speech_s < BASELINE_MIN_SPEECH_S:
            raise AudioError(f"{source}: only {d.speech_s:.1f} s of speech, "
                             f"a baseline needs {BASELINE_MIN_SPEECH_S:.0f} s", hint=hint)
        p, s, r = d.pitch.median_hz, d.pace.syllables_per_s, d.loudness.rms_dbfs
        std = d.pitch.std_semitones
        if p is None or std is None or d.pitch.voiced_s < BASELINE_MIN_VOICED_S:
            raise AudioError(f"{source}: only {d.pitch.voiced_s:.1f} s of voiced speech, "
                             f"a baseline needs {BASELINE_MIN_VOICED_S:.0f} s", hint=hint)
        if s is None or s <= 0 or r is None:
            raise AudioError(f"{source}: no syllables found in the speech", hint=hint)
        v = d.voice
        return cls(median_hz=p, std_semitones=std, syllables_per_s=s, rms_dbfs=r,
                   speech_s=d.speech_s, wpm=d.pace.wpm, high_hz=d.pitch.high_hz,
                   voiced_s=d.pitch.voiced_s, syllables=d.pace.syllables,
                   alpha_ratio_db=v.alpha_ratio_db, hammarberg_db=v.hammarberg_db,
                   slope_0_500=v.slope_0_500, slope_500_1500=v.slope_500_1500,
                   hnr_db=v.hnr_db, articulation_rate=v.articulation_rate,
                   level_drift=d.loudness.drift, pitch_drift=_pitch_drift(d.contour.f0_hz, p))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (stored in session.json)."""
        return {k: _round(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        """Read back :meth:`to_json`; a missing or wrong field raises InputError."""
        try:
            opt = {k: None if data.get(k) is None else float(data[k]) for k in _OPTIONAL}
            return cls(median_hz=float(data["median_hz"]),
                       std_semitones=float(data["std_semitones"]),
                       syllables_per_s=float(data["syllables_per_s"]),
                       rms_dbfs=float(data["rms_dbfs"]), speech_s=float(data["speech_s"]),
                       syllables=None if data.get("syllables") is None
                       else int(data["syllables"]), **opt)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"baseline: missing or invalid field ({e})",
                             hint="record the baseline again") from e


_OPTIONAL = ("wpm", "high_hz", "voiced_s", "alpha_ratio_db", "hammarberg_db", "slope_0_500",
             "slope_500_1500", "hnr_db", "articulation_rate", "level_drift",
             "pitch_drift")
"""Baseline fields that may be missing from older saved baselines (all floats)."""


def _pitch_drift(f0_hz: tuple[float | None, ...], median_hz: float) -> float | None:
    """Baseline.pitch_drift from the baseline's contour: its voiced frames in time order,
    cut into blocks of DRIFT_BLOCK_S; None with fewer than two blocks."""
    import numpy as np

    st = np.array([12.0 * math.log2(v / median_hz) for v in f0_hz if v is not None])
    size = round(DRIFT_BLOCK_S / HOP_S)
    blocks = len(st) // size
    if blocks < 2:
        return None
    med = np.median(st[:blocks * size].reshape(blocks, size), axis=1)
    return float(np.mean(med ** 2)) * DRIFT_BLOCK_S


@dataclass(frozen=True)
class Delivery:
    """Everything measured about one answer, and the verdict."""

    duration_s: float
    """Seconds of audio."""
    speech_s: float
    """Seconds of speech: first to last speech sound, less the pauses of PAUSE_MIN_S or
    more (articulation time; pace is over Pace.seconds, which keeps ordinary pauses)."""
    pitch: Pitch
    pace: Pace
    loudness: Loudness
    voice: Voice
    pauses: Pauses
    fillers: Fillers
    talk: Talk
    calm: bool
    calm_score: int
    """0..100."""
    reasons: tuple[str, ...]
    """Plain words with the numbers: what decided the verdict first, then the other
    problems by weight, then notes on what was fine."""
    checks: tuple[Check, ...]
    baseline: Baseline | None
    contour: Contour = field(repr=False, compare=False)
    agitation: float | None = None
    """P(agitated) from the calibrated model (voice_sim.calm); None without a baseline."""
    cues: tuple[Cue, ...] = ()
    """The model's cues against the baseline, biggest evidence of agitation first."""
    voice_calm: bool | None = None
    """The voice's own verdict when something else made the delivery not calm (talking
    over the customer, voice_sim.session); None: ``calm`` is the voice's verdict."""

    def to_json(self, *, contour: bool = False) -> dict[str, Any]:
        """The ``voice-sim delivery --json`` object; ``contour=True`` adds the F0 contour."""
        out: dict[str, Any] = {
            "duration_s": _round(self.duration_s),
            "speech_s": _round(self.speech_s),
            "pitch": _json(self.pitch),
            "pace": _json(self.pace),
            "loudness": _json(self.loudness),
            "voice": _json(self.voice),
            "pauses": _json(self.pauses),
            "fillers": {**_json(self.fillers), "words": list(self.fillers.words)},
            "talk": _json(self.talk),
            "calm": self.calm,
            "calm_score": self.calm_score,
            "reasons": list(self.reasons),
            "checks": [_json(c) for c in self.checks],
            "agitation": _round(self.agitation),
            "cues": [_json(c) for c in self.cues],
            "voice_calm": self.voice_calm,
            "baseline": None if self.baseline is None else self.baseline.to_json(),
        }
        if contour:
            out["contour"] = {"times": [round(t, 2) for t in self.contour.times],
                              "f0_hz": [None if f is None else round(f, 1)
                                        for f in self.contour.f0_hz]}
        return out


# --- analysis ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Frames:
    """Per-frame measures, all of the same length."""

    f0: np.ndarray
    """Hz, NaN where unvoiced."""
    energy_db: np.ndarray
    """Mean square of the frame's centre window, in dB re full scale."""
    band_db: np.ndarray
    """Mean square in the SYLLABLE_BAND_HZ band (vowels) over SYLLABLE_WINDOW, in dB."""
    active: np.ndarray
    """Energy says speech may be here."""
    speech: np.ndarray
    """Inside a speech segment."""
    segments: list[tuple[int, int]]
    """Speech segments as [start, end) frame indices, pauses between them."""
    speech_level_db: float
    corr: np.ndarray
    """Normalised correlation one YIN period apart (the voicing strength, for HNR)."""
    shape: np.ndarray
    """(frames, 4): alpha ratio dB, Hammarberg index dB, slope 0-500 Hz and slope
    500-1500 Hz in dB/kHz (see _spectral_shape)."""


@dataclass(frozen=True, eq=False)
class Prepared:
    """The costly half of :func:`analyze` (pitch, energy and speech activity per frame),
    which needs no transcript: a live session computes it while the final transcript
    is still being decoded, and passes it to :func:`analyze`."""

    source: np.ndarray = field(repr=False)
    """The very array it was computed from (``analyze`` checks it is the same one)."""
    x: np.ndarray = field(repr=False)
    frames: _Frames = field(repr=False)


def prepare(samples: np.ndarray) -> Prepared:
    """The transcript-free measures of ``samples``, for ``analyze(..., prepared=)``."""
    x = _check_samples(samples)
    return Prepared(source=samples, x=x, frames=_frames(x))


class Preparer:
    """:func:`prepare` for a live answer, started as early as the capture allows: on the
    samples ``voice_sim.listen.capture_answer`` gives ``on_pause`` (the speech and
    ``listen.DELIVERY_TAIL_S`` of each pause after it), kept when the answer ends in
    that pause (``on_end`` is then given the same array), else on ``on_end``'s samples.
    ``head``: samples that go before the captured ones (an answer going on after the
    persona gave way). :attr:`future` is what ``Answer.prepared`` takes; its
    ``source`` is the array the session analyses."""

    def __init__(self, pool: Executor, head: np.ndarray | None = None) -> None:
        self._pool = pool
        self._head = head if head is not None and len(head) else None
        self._last: tuple[np.ndarray, Future[Prepared]] | None = None
        self.future: Future[Prepared] | None = None

    def _start(self, x: np.ndarray) -> Future[Prepared]:
        import numpy as np

        whole = x if self._head is None else np.concatenate([self._head, x])
        return self._pool.submit(prepare, whole)

    def on_pause(self, x: np.ndarray) -> None:
        self._last = (x, self._start(x))

    def on_end(self, x: np.ndarray) -> None:
        if self._last is not None and self._last[0] is x:
            self.future = self._last[1]
        else:
            self.future = self._start(x)


def analyze(samples: np.ndarray, transcript: Transcript | None = None,
            baseline: Baseline | None = None, *, prepared: Prepared | None = None) -> Delivery:
    """Measure one spoken answer and judge whether it sounds calm and steady.

    ``prepared`` (from :func:`prepare` on these same samples) skips the costly half; the
    result is identical."""
    import numpy as np

    if prepared is not None and prepared.source is samples:
        x, fr = prepared.x, prepared.frames
    else:
        x = _check_samples(samples)
        fr = _frames(x)
    duration = len(x) / SAMPLE_RATE
    segs = _answer_segments(fr.segments, transcript)
    in_answer = np.zeros(len(fr.f0), dtype=bool)
    for s, e in segs:
        in_answer[s:e] = True
    f0 = np.where(in_answer, fr.f0, np.nan)

    onset = segs[0][0] * HOP_S if segs else 0.0
    offset = min(segs[-1][1] * HOP_S, duration) if segs else 0.0
    gaps = [(b0 - a1) * HOP_S for (_, a1), (b0, _) in pairwise(segs)]
    speech_s = sum(e - s for s, e in segs) * HOP_S
    # Pace runs over speaking time as conversational norms count it: ordinary pauses
    # included, but each silence counts at most PACE_PAUSE_CAP_S (see its note).
    pace_s = speech_s + sum(min(g, PACE_PAUSE_CAP_S) for g in gaps)

    voiced = ~np.isnan(f0)
    voiced_s = float(voiced.sum()) * HOP_S
    pitch = _pitch(f0[voiced], voiced_s, voiced_s / speech_s if speech_s else 0.0)

    nuclei = _syllable_nuclei(fr, voiced & in_answer)
    syl_per_s = nuclei / pace_s if pace_s > 0 else None
    words = _words(transcript)
    lexical = [w for w in words if not _is_filler(w)]
    fill = [w for w in words if _is_filler(w)]
    wpm = len(lexical) / pace_s * 60.0 if transcript is not None and pace_s > 0 else None
    pace = Pace(wpm=wpm, syllables_per_s=syl_per_s,
                wpm_from_syllables=None if syl_per_s is None
                else syl_per_s * 60.0 / SYLLABLES_PER_WORD,
                syllables=nuclei, seconds=pace_s)

    voice = _voice(fr, voiced, nuclei, speech_s)
    rms_db, clipped, level_drift = _loudness(x, segs)
    loud = Loudness(rms_dbfs=rms_db, clipped_fraction=clipped,
                    too_quiet=rms_db is not None and rms_db < QUIET_DBFS, drift=level_drift)

    latency = onset if segs else None
    dead = sum(g >= DEAD_AIR_S for g in gaps) + int(latency is not None
                                                    and latency >= DEAD_AIR_S)
    pauses = Pauses(latency_s=latency, count=len(gaps), longest_s=max(gaps, default=0.0),
                    total_s=float(sum(gaps)), dead_air=dead)
    fillers = Fillers(count=None if transcript is None else len(fill),
                      per_min=None if transcript is None
                      else (len(fill) / pace_s * 60.0 if pace_s > 0 else 0.0),
                      words=tuple(fill))
    talk_s = offset - onset
    talk = Talk(seconds=talk_s, words=None if transcript is None else len(words),
                rambling=talk_s > RAMBLING_S or len(words) > RAMBLING_WORDS)

    if baseline is not None:
        if pitch.median_hz is not None and pitch.std_semitones is not None:
            pitch = replace(pitch,
                            shift_semitones=12.0 * math.log2(pitch.median_hz
                                                             / baseline.median_hz),
                            variability_ratio=pitch.std_semitones
                            / max(baseline.std_semitones, 0.1),
                            rise_semitones=None if pitch.high_hz is None
                            or baseline.high_hz is None
                            else 12.0 * math.log2(pitch.high_hz / baseline.high_hz))
        if syl_per_s is not None and speech_s >= MIN_JUDGED_SPEECH_S:
            pace = replace(pace, ratio=syl_per_s / baseline.syllables_per_s)
        if rms_db is not None:
            loud = replace(loud, shift_db=rms_db - baseline.rms_dbfs)

    contour = Contour(times=tuple(round(i * HOP_S, 2) for i in range(len(f0))),
                      f0_hz=tuple(None if math.isnan(v) else round(float(v), 1) for v in f0))
    draft = Delivery(duration_s=duration, speech_s=speech_s, pitch=pitch, pace=pace,
                     loudness=loud, voice=voice, pauses=pauses, fillers=fillers, talk=talk,
                     calm=False, calm_score=0, reasons=(), checks=(), baseline=baseline,
                     contour=contour)
    checks = _judge(draft)
    if baseline is not None and segs:
        return _verdict_against_baseline(draft, checks)
    score = max(0, min(100, round(100.0 - sum(c.penalty for c in checks))))
    calm = bool(segs) and score >= CALM_MIN_SCORE and not any(
        c.name in CORE_CHECKS and c.value >= c.bad for c in checks)
    # What decided the verdict comes first (session hints quote reasons[0]).
    problems = sorted((c for c in checks if c.penalty > 0),
                      key=lambda c: (not (c.name in CORE_CHECKS and c.value >= c.bad),
                                     -c.penalty))
    reasons = tuple(c.reason for c in problems) + _fine_notes(draft, checks)
    return replace(draft, calm=calm, calm_score=score, reasons=reasons, checks=tuple(checks))


def _verdict_against_baseline(draft: Delivery, checks: list[Check]) -> Delivery:
    """The calibrated verdict (voice_sim.calm) fused with the steadiness checks.

    The model gives P(agitated); the calm score maps P = 0 to 100 and P = 0.5 (the
    verdict's edge) to CALM_MIN_SCORE, linearly, and the steadiness checks (latency,
    dead air, fillers, rambling, a quiet level, clipping) take their points off as
    without a baseline. Clipping at its "bad" limit still decides alone."""
    from voice_sim import calm as calm_model

    assert draft.baseline is not None
    p, cues = calm_model.judge(draft, draft.baseline)
    edge = calm_model.AGITATED_P
    if p <= edge:
        model_score = 100.0 - (100.0 - CALM_MIN_SCORE) * p / edge
    else:
        model_score = CALM_MIN_SCORE * (1.0 - p) / (1.0 - edge)
    score = max(0, min(100, round(model_score - sum(c.penalty for c in checks))))
    clipped = any(c.name == "clipping" and c.value >= c.bad for c in checks)
    calm = p < edge and score >= CALM_MIN_SCORE and not clipped
    decided = tuple(c.reason for c in cues if c.reason)
    problems = sorted((c for c in checks if c.penalty > 0),
                      key=lambda c: (not (c.name == "clipping" and c.value >= c.bad),
                                     -c.penalty))
    fine = {CUE_CHECK.get(c.name, c.name) for c in cues if not c.reason}
    ok = [Check(n, 0.0, 0.0, 0.0, "", 0.0, "") for n in fine]
    reasons = decided + tuple(c.reason for c in problems) + _fine_notes(draft, ok)
    return replace(draft, calm=calm, calm_score=score, reasons=reasons, checks=tuple(checks),
                   agitation=p, cues=cues)


def _check_samples(samples: np.ndarray) -> np.ndarray:
    import numpy as np

    a = np.asarray(samples)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise InputError(f"delivery: expected mono audio samples, got an array of shape "
                         f"{a.shape}", hint="average the channels first (audio.load_audio "
                         "does this)")
    if a.size == 0:
        raise AudioError("delivery: no audio samples to analyse", hint="record the answer again")
    if np.issubdtype(a.dtype, np.integer):
        # PCM integers: scale to -1..1 as soundfile would.
        a = a.astype(np.float32) / float(2 ** (8 * a.dtype.itemsize - 1))
    elif not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"delivery: audio samples must be numbers, got {a.dtype}",
                         hint="pass mono float32 samples at 16 kHz")
    x = np.nan_to_num(a.astype(np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(x, -1.0, 1.0, out=x)
    return x


def _frames(x: np.ndarray) -> _Frames:
    """Pitch, energy and speech activity, one value per HOP."""
    try:
        import librosa
    except ImportError as e:
        raise VoiceSimError("the delivery analysis needs librosa, which is not installed",
                            hint="run scripts/setup, or pip install librosa") from e
    import numpy as np
    from scipy.signal import sosfiltfilt

    # librosa.yin needs at least one full frame; pad short clips with silence.
    if len(x) < FRAME_LENGTH:
        x = np.pad(x, (0, FRAME_LENGTH - len(x)))
    n_in = len(x) // HOP + 1
    f0 = librosa.yin(x, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=SAMPLE_RATE,
                     frame_length=FRAME_LENGTH, hop_length=HOP, center=True)
    n = min(len(f0), n_in)
    f0 = f0[:n]

    # Windows centred on each frame (librosa pads FRAME_LENGTH // 2 on both sides),
    # compared one YIN period apart.
    period = np.clip(np.round(SAMPLE_RATE / f0), 1, FRAME_LENGTH - CORR_WINDOW).astype(int)
    pad = FRAME_LENGTH // 2 + FRAME_LENGTH
    xp = np.pad(x, pad)
    centre = np.arange(n) * HOP + pad
    start = centre - (CORR_WINDOW + period) // 2
    idx = start[:, None] + np.arange(CORR_WINDOW)[None, :]
    a = xp[idx]
    b = xp[idx + period[:, None]]
    ea = np.einsum("ij,ij->i", a, a)
    eb = np.einsum("ij,ij->i", b, b)
    corr = np.einsum("ij,ij->i", a, b) / np.sqrt(ea * eb + 1e-20)
    energy_db = 10.0 * np.log10(ea / CORR_WINDOW + 1e-12)
    sidx = (centre - SYLLABLE_WINDOW // 2)[:, None] + np.arange(SYLLABLE_WINDOW)[None, :]
    xb = np.pad(sosfiltfilt(_band_filter(), x).astype(np.float32), pad)[sidx]
    band_db = 10.0 * np.log10(np.einsum("ij,ij->i", xb, xb) / SYLLABLE_WINDOW + 1e-12)

    floor = float(np.percentile(energy_db, NOISE_PERCENTILE))
    level = float(np.percentile(energy_db, SPEECH_PERCENTILE))
    threshold = max(floor + SPEECH_OVER_NOISE_DB, level - SPEECH_BELOW_PEAK_DB)
    active = energy_db > threshold
    voiced = active & (corr >= VOICING_MIN_CORRELATION) & (f0 >= F0_MIN_HZ) & (f0 <= F0_MAX_HZ)
    if level - floor < SPEECH_OVER_NOISE_DB:
        # No sound stands out from the background: nothing was said.
        voiced[:] = False
    f0v = np.where(voiced, f0, np.nan)
    f0v = _clean_contour(f0v)

    segments = _segments(active, ~np.isnan(f0v))
    speech = np.zeros(n, dtype=bool)
    for first, last in segments:
        speech[first:last] = True
    f0v[~speech] = np.nan
    return _Frames(f0=f0v, energy_db=energy_db, band_db=band_db, active=active,
                   speech=speech, segments=segments, speech_level_db=level, corr=corr,
                   shape=_spectral_shape(xp, centre))


def _spectral_shape(xp: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Per frame: alpha ratio, Hammarberg index, and the spectral slopes 0-500 Hz and
    500-1500 Hz (the columns of SHAPE_CUES), from a Hann-windowed power spectrum of
    SPECTRUM_WINDOW samples, defined as eGeMAPS defines them (Eyben et al. 2016)."""
    import numpy as np

    sidx = (centre - SPECTRUM_WINDOW // 2)[:, None] + np.arange(SPECTRUM_WINDOW)[None, :]
    frames = xp[sidx] * np.hanning(SPECTRUM_WINDOW).astype(np.float32)
    freqs = np.fft.rfftfreq(SPECTRUM_WINDOW, 1.0 / SAMPLE_RATE)
    keep = freqs < 5000.0
    power = np.abs(np.fft.rfft(frames, axis=1)[:, keep]) ** 2 + 1e-12
    f = freqs[keep]

    def band(lo: float, hi: float) -> np.ndarray:
        return (f >= lo) & (f < hi)

    low, high = band(50, 1000), band(1000, 5000)
    alpha = 10.0 * np.log10(power[:, high].sum(axis=1) / power[:, low].sum(axis=1))
    hamm = 10.0 * np.log10(power[:, band(0, 2000)].max(axis=1)
                           / power[:, band(2000, 5000)].max(axis=1))
    db = 10.0 * np.log10(power)
    out = [alpha, hamm]
    for lo, hi in ((0.0, 500.0), (500.0, 1500.0)):
        m = band(lo, hi)
        fk = f[m] / 1000.0 - np.mean(f[m] / 1000.0)
        out.append((db[:, m] - db[:, m].mean(axis=1, keepdims=True)) @ fk / float(fk @ fk))
    return np.stack(out, axis=1)


def _band_filter() -> np.ndarray:
    from scipy.signal import butter

    return butter(4, SYLLABLE_BAND_HZ, btype="bandpass", fs=SAMPLE_RATE, output="sos")


def _clean_contour(f0: np.ndarray) -> np.ndarray:
    """Drop octave slips, stray frames and runs too short to be a vowel."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    st = 12.0 * np.log2(f0 / 100.0)
    half = 5
    padded = np.pad(st, half, constant_values=np.nan)
    windows = sliding_window_view(padded, 2 * half + 1)
    has = ~np.isnan(windows)
    counts = has.sum(axis=1)
    # nanmedian of each window without warnings for all-NaN windows
    sorted_w = np.sort(np.where(has, windows, np.inf), axis=1)
    lo = np.clip((counts - 1) // 2, 0, None)
    hi = np.clip(counts // 2, 0, None)
    rows = np.arange(len(st))
    med = (sorted_w[rows, lo] + sorted_w[rows, hi]) / 2.0
    bad = np.isnan(st) | (np.abs(st - med) > OUTLIER_SEMITONES) | (counts < 3)
    out = np.where(bad, np.nan, f0)
    # Drop runs of voiced frames shorter than MIN_VOICED_RUN_S.
    min_run = max(1, round(MIN_VOICED_RUN_S / HOP_S))
    stray_run = round(STRAY_RUN_S / HOP_S)
    runs = _runs(~np.isnan(out))
    for s, e in runs:
        if e - s < min_run:
            out[s:e] = np.nan
    if np.isnan(out).all():
        return out
    centre = float(np.nanmedian(st[~np.isnan(out)]))
    for s, e in runs:
        if e - s < stray_run and not np.isnan(out[s:e]).all() \
                and abs(float(np.nanmedian(st[s:e])) - centre) > STRAY_RUN_SEMITONES:
            out[s:e] = np.nan
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs in a boolean array."""
    import numpy as np

    m = np.concatenate(([False], mask.astype(bool), [False]))
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def _segments(active: np.ndarray, voiced: np.ndarray) -> list[tuple[int, int]]:
    """Speech stretches: active runs joined across gaps shorter than a pause, kept
    only when they hold enough voicing to be speech."""
    gap = round(PAUSE_MIN_S / HOP_S)
    need = max(1, round(MIN_SEGMENT_VOICED_S / HOP_S))
    merged: list[list[int]] = []
    for s, e in _runs(active):
        if merged and s - merged[-1][1] < gap:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged if int(voiced[s:e].sum()) >= need]


def _answer_segments(segments: list[tuple[int, int]],
                     transcript: Transcript | None) -> list[tuple[int, int]]:
    """The speech segments that belong to the answer.

    With word timings, segments wholly before the first word or after the last (a
    cough, a chair, a voice in the room) are left out; engine timings can be a few
    tenths off, hence WORD_TIMING_SLACK_S, and timings that would drop more than half
    the speech are not trusted at all."""
    if transcript is None or not transcript.words or not segments:
        return segments
    w0 = min(w.start for w in transcript.words) - WORD_TIMING_SLACK_S
    w1 = max(w.end for w in transcript.words) + WORD_TIMING_SLACK_S
    keep = [(s, e) for s, e in segments if e * HOP_S > w0 and s * HOP_S < w1]
    total = sum(e - s for s, e in segments)
    return keep if sum(e - s for s, e in keep) >= 0.5 * total else segments


def _pitch(f0: np.ndarray, voiced_s: float, voiced_fraction: float) -> Pitch:
    import numpy as np

    if voiced_s < MIN_JUDGED_VOICED_S or f0.size == 0:
        return Pitch(None, None, None, voiced_fraction, voiced_s)
    median = float(np.median(f0))
    st = 12.0 * np.log2(f0 / median)
    p10, p90 = np.percentile(st, [10, 90])
    return Pitch(median_hz=median, std_semitones=float(np.std(st)),
                 range_semitones=float(p90 - p10), voiced_fraction=voiced_fraction,
                 voiced_s=voiced_s, high_hz=median * 2.0 ** (float(p90) / 12.0))


def _voice(fr: _Frames, voiced: np.ndarray, nuclei: int, speech_s: float) -> Voice:
    """The voice-quality cues, averaged over the answer's voiced frames."""
    import numpy as np

    art = nuclei / speech_s if speech_s > 0 else None
    if float(voiced.sum()) * HOP_S < MIN_JUDGED_VOICED_S:
        return Voice(None, None, None, None, None, art)
    alpha, hamm, slope_lo, slope_hi = (float(v) for v in fr.shape[voiced].mean(axis=0))
    r = np.clip(fr.corr[voiced], 1e-3, 1.0 - 1e-3)
    hnr = float(np.mean(10.0 * np.log10(r / (1.0 - r))))
    return Voice(alpha_ratio_db=alpha, hammarberg_db=hamm, slope_0_500=slope_lo,
                 slope_500_1500=slope_hi, hnr_db=hnr, articulation_rate=art)


def _syllable_nuclei(fr: _Frames, voiced: np.ndarray) -> int:
    """Count syllable nuclei: voiced peaks of the 300-3000 Hz energy with dips of at
    least SYLLABLE_MIN_DIP_DB on both sides (after de Jong & Wempe 2009; the band
    favours vowels over fricatives and low hum)."""
    import numpy as np
    from scipy.signal import find_peaks

    if not voiced.any():
        return 0
    env = fr.band_db
    level = float(np.percentile(env[fr.speech], SPEECH_PERCENTILE)) if fr.speech.any() \
        else float(env.max())
    peaks, _ = find_peaks(env, prominence=SYLLABLE_MIN_DIP_DB,
                          distance=max(1, round(SYLLABLE_MIN_GAP_S / HOP_S)),
                          height=level - SYLLABLE_BELOW_PEAK_DB)
    # A nucleus is voiced; allow one frame either side for peaks at a voicing edge.
    near = voiced | np.roll(voiced, 1) | np.roll(voiced, -1)
    return int(np.sum(near[peaks]))


def _loudness(x: np.ndarray, segs: list[tuple[int, int]]
              ) -> tuple[float | None, float, float | None]:
    """RMS level in dBFS, the clipped fraction and the level's drift (Loudness.drift),
    over the speech segments."""
    import numpy as np

    parts = [x[s * HOP:min(e * HOP, len(x))] for s, e in segs]
    seg = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if seg.size == 0:
        return None, 0.0, None
    rms = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64))))
    clipped = float(np.mean(np.abs(seg) >= CLIP_LEVEL))
    if rms <= 0:
        return None, clipped, None
    size = round(DRIFT_BLOCK_S * SAMPLE_RATE)
    blocks = len(seg) // size
    drift = None
    if blocks >= 2:
        ms = np.mean(np.square(seg[:blocks * size].reshape(blocks, size), dtype=np.float64),
                     axis=1)
        dev = 10.0 * np.log10(np.maximum(ms, 1e-20)) - 20.0 * math.log10(rms)
        drift = float(np.mean(dev ** 2)) * DRIFT_BLOCK_S
    return 20.0 * math.log10(rms), clipped, drift


def _words(transcript: Transcript | None) -> list[str]:
    """Normalised words of the transcript (punctuation-only tokens dropped)."""
    if transcript is None:
        return []
    tokens = [w.word for w in transcript.words] if transcript.words else transcript.text.split()
    out = []
    for t in tokens:
        for part in t.lower().replace("-", " ").split():
            w = _NON_WORD.sub("", part).strip("'")
            if w:
                out.append(w)
    return out


def _is_filler(word: str) -> bool:
    return _REPEATS.sub(r"\1", word) in FILLERS


# --- verdict -----------------------------------------------------------------------


def _check(name: str, value: float, warn: float, bad: float, unit: str,
           reason: str) -> Check:
    excess = (value - warn) / (bad - warn) if bad != warn else float(value >= bad)
    penalty = round(WEIGHTS[name] * min(max(excess, 0.0), 1.5), 1)
    return Check(name, value, warn, bad, unit, penalty, reason if penalty > 0 else "")


def _judge(d: Delivery) -> list[Check]:
    """Every measure that can be judged, with its penalty and reason."""
    checks: list[Check] = []
    if not d.talk.seconds and d.pauses.latency_s is None:
        checks.append(Check("no_speech", 0.0, 0.0, 0.0, "s", WEIGHTS["no_speech"],
                            f"no speech heard in {d.duration_s:.1f} s of audio"))
        return checks
    p, pace, loud, b = d.pitch, d.pace, d.loudness, d.baseline
    if b is not None:
        # Against a baseline, pitch, pace and loudness are judged together by the
        # calibrated model (voice_sim.calm); only steadiness and call craft stay here.
        return checks + _steadiness(d)

    if p.shift_semitones is not None:
        v = p.shift_semitones
        checks.append(_check("pitch_shift", v, PITCH_SHIFT_WARN_ST, PITCH_SHIFT_BAD_ST, "st",
                             f"pitch {abs(v):.1f} semitones {'above' if v >= 0 else 'below'} "
                             "your calm baseline — breathe out and let your voice settle"))
    if p.variability_ratio is not None:
        v = p.variability_ratio
        checks.append(_check("pitch_variability", v, VARIABILITY_WARN_RATIO,
                             VARIABILITY_BAD_RATIO, "x",
                             f"pitch swinging {v:.1f}x as much as in your calm baseline "
                             f"({p.std_semitones:.1f} vs {b.std_semitones:.1f} semitones)"
                             if b else ""))
    elif p.std_semitones is not None:
        v = p.std_semitones
        checks.append(_check("pitch_variability", v, PITCH_STD_WARN_ST, PITCH_STD_BAD_ST, "st",
                             f"pitch swinging widely ({v:.1f} semitones of variation; calm "
                             "speech is usually 2-4)"))

    if pace.ratio is not None and b is not None and pace.syllables_per_s is not None:
        v = pace.ratio
        checks.append(_check("pace", v, PACE_WARN_RATIO, PACE_BAD_RATIO, "x",
                             f"speaking {v:.2f}x as fast as your calm baseline "
                             f"({pace.syllables_per_s:.1f} vs {b.syllables_per_s:.1f} "
                             "syllables per second) — slow down"))
    elif d.speech_s >= MIN_JUDGED_SPEECH_S:
        wpm, how = (pace.wpm, "") if pace.wpm is not None else (
            pace.wpm_from_syllables, " (estimated from syllables)")
        if wpm is not None:
            advice = ("slow down toward" if wpm >= TOO_FAST_WPM
                      else "a little fast, aim for about")
            checks.append(_check("pace", wpm, RUSHED_WPM, TOO_FAST_WPM, "wpm",
                                 f"about {wpm:.0f} words per minute{how} — {advice} "
                                 f"{TARGET_WPM:.0f}"))

    if loud.shift_db is not None:
        v = loud.shift_db
        checks.append(_check("loudness_shift", v, LOUDNESS_WARN_DB, LOUDNESS_BAD_DB, "dB",
                             f"{v:.1f} dB louder than your calm baseline — lower your voice"
                             if v >= 0 else f"{-v:.1f} dB quieter than your calm baseline"))
    return checks + _steadiness(d)


def _steadiness(d: Delivery) -> list[Check]:
    """Clipping, level, latency, dead air, fillers, rambling: judged the same with or
    without a baseline."""
    checks: list[Check] = []
    loud = d.loudness
    checks.append(_check("clipping", loud.clipped_fraction, CLIPPED_WARN, CLIPPED_BAD, "",
                         f"{100 * loud.clipped_fraction:.1f}% of the speech is clipped — "
                         "you may be shouting, or the microphone gain is too high"))
    if loud.rms_dbfs is not None:
        # Quieter is worse: judge the shortfall under QUIET_DBFS (warn at it, bad 10 dB under).
        short = QUIET_DBFS - loud.rms_dbfs
        checks.append(_check("quiet", short, 0.0, 10.0, f"dB under {QUIET_DBFS:.0f} dBFS",
                             f"very quiet ({loud.rms_dbfs:.0f} dBFS) — speak up or move "
                             "closer to the microphone"))

    if d.pauses.latency_s is not None:
        v = d.pauses.latency_s
        checks.append(_check("latency", v, LATENCY_WARN_S, LATENCY_BAD_S, "s",
                             f"{v:.1f} s of silence before you started — begin sooner, "
                             "even with a short acknowledgement"))
    long_gaps = d.pauses.dead_air - int((d.pauses.latency_s or 0.0) >= DEAD_AIR_S)
    checks.append(_check("dead_air", float(long_gaps), 0.0, 2.0, "",
                         f"{long_gaps} silence{'s' if long_gaps != 1 else ''} of "
                         f"{DEAD_AIR_S:.0f} s or more mid-answer (longest "
                         f"{d.pauses.longest_s:.1f} s) — dead air makes a caller "
                         "wonder if you are still there"))

    if d.fillers.count is not None and d.fillers.per_min is not None \
            and d.fillers.count >= FILLERS_MIN_COUNT:
        v = d.fillers.per_min
        heard = ", ".join(sorted(set(d.fillers.words)))
        checks.append(_check("fillers", v, FILLERS_WARN_PER_MIN, FILLERS_BAD_PER_MIN, "/min",
                             f"{d.fillers.count} filler words ({heard}), {v:.0f} per minute "
                             "— a short silent pause sounds calmer"))
    words = f", {d.talk.words} words" if d.talk.words is not None else ""
    long_answer = (f"a long answer ({d.talk.seconds:.0f} s{words}) — keep it short: "
                   "acknowledge, then say what you will do")
    checks.append(Check("rambling", d.talk.seconds, RAMBLING_S, RAMBLING_S, "s",
                        WEIGHTS["rambling"] if d.talk.rambling else 0.0,
                        long_answer if d.talk.rambling else ""))
    return checks


def _fine_notes(d: Delivery, checks: list[Check]) -> tuple[str, ...]:
    """Short notes on the core measures that were fine, so a calm verdict has reasons too."""
    ok = {c.name for c in checks if c.penalty == 0}
    notes = []
    shift = d.pitch.shift_semitones
    if shift is not None and shift <= -BASELINE_MISMATCH_ST:
        notes.append(f"pitch {-shift:.1f} semitones below your baseline — is the baseline "
                     "the same speaker? Record it again if not")
    elif shift is not None and shift <= -PITCH_SHIFT_WARN_ST:
        notes.append(f"pitch {-shift:.1f} semitones below your calm baseline")
    elif "pitch_shift" in ok and shift is not None and shift <= PITCH_SHIFT_WARN_ST:
        # (against a baseline "ok" means the calm model did not word the cue, which can
        # be low confidence or its family worded by another cue: the value must be fine)
        notes.append(f"pitch within {abs(shift):.1f} semitones of your calm baseline")
    if "pace" in ok and (d.pace.ratio is None or d.pace.ratio <= PACE_WARN_RATIO):
        if d.pace.ratio is not None:
            notes.append(f"pace {d.pace.ratio:.2f}x your calm baseline")
        elif d.pace.wpm is not None:
            notes.append(f"about {d.pace.wpm:.0f} words per minute, a calm pace")
        elif d.pace.wpm_from_syllables is not None:
            notes.append(f"about {d.pace.wpm_from_syllables:.0f} words per minute "
                         "(estimated from syllables), a calm pace")
    if "loudness_shift" in ok and d.loudness.shift_db is not None \
            and d.loudness.shift_db <= LOUDNESS_WARN_DB:
        notes.append(f"loudness within {abs(d.loudness.shift_db):.1f} dB of your calm baseline")
    return tuple(notes)


# --- warm-up and CLI ---------------------------------------------------------------


def warm_up() -> None:
    """Pay the first-use cost (librosa imports, numba compile) on a tiny signal.

    Safe to call from a background thread at session start and more than once. Takes
    ~2 s; the very first run after installing librosa also compiles and caches its
    numba code on disk, ~30 s on 2 cores (measured by scripts/bench_delivery.py)."""
    global _warm
    with _warm_lock:
        if _warm:
            return
        import numpy as np

        t = np.arange(int(0.6 * SAMPLE_RATE)) / SAMPLE_RATE
        tone = (0.3 * np.sin(2 * np.pi * 120.0 * t) * (t > 0.1)).astype(np.float32)
        analyze(tone)
        _warm = True


def cmd_delivery(args: argparse.Namespace) -> int:
    """``voice-sim delivery AUDIO [--baseline AUDIO] [--engine ...|--no-transcript] [--json]``."""
    from voice_sim.audio import load_audio

    samples = load_audio(args.audio)
    baseline = None
    if args.baseline:
        base = load_audio(args.baseline)
        baseline = Baseline.from_audio(base, source=str(args.baseline))
    transcript = None
    if not args.no_transcript:
        transcript = _transcribe(samples, args.engine, args.model)
    d = analyze(samples, transcript, baseline)
    if args.json:
        print(json.dumps(d.to_json(), indent=2))
    else:
        print(format_delivery(d))
    return 0


def _transcribe(samples: np.ndarray, engine: str, model: str | None) -> Transcript:
    from voice_sim.engines import get_engine

    try:
        return get_engine(engine, model).transcribe(samples)
    except ModelError as e:
        hint = f"{e.hint}; " if e.hint else ""
        raise ModelError(e.message, hint=f"{hint}or run with --no-transcript for the "
                         "acoustic measures only") from e


def format_delivery(d: Delivery) -> str:
    """The human-readable report printed by ``voice-sim delivery``."""

    def num(v: float | None, fmt: str, unit: str = "") -> str:
        return "-" if v is None else f"{v:{fmt}}{unit}"

    p, pc, lo, pa, fi = d.pitch, d.pace, d.loudness, d.pauses, d.fillers
    lines = [f"calm: {'yes' if d.calm else 'no'} (score {d.calm_score}/100)"
             + ("" if d.baseline else "  [no baseline: population defaults]")]
    shift = f", shift {p.shift_semitones:+.1f} st" if p.shift_semitones is not None else ""
    lines.append(f"  pitch     median {num(p.median_hz, '.0f', ' Hz')}, variability "
                 f"{num(p.std_semitones, '.1f', ' st')}, range "
                 f"{num(p.range_semitones, '.1f', ' st')}{shift}")
    ratio = f", {pc.ratio:.2f}x baseline" if pc.ratio is not None else ""
    lines.append(f"  pace      {num(pc.wpm, '.0f', ' wpm')} (words), "
                 f"{num(pc.syllables_per_s, '.1f', ' syllables/s')}{ratio}")
    lshift = f", shift {lo.shift_db:+.1f} dB" if lo.shift_db is not None else ""
    lines.append(f"  loudness  {num(lo.rms_dbfs, '.1f', ' dBFS')}{lshift}, clipped "
                 f"{100 * lo.clipped_fraction:.2f}%")
    v = d.voice
    lines.append(f"  voice     alpha ratio {num(v.alpha_ratio_db, '.1f', ' dB')}, Hammarberg "
                 f"{num(v.hammarberg_db, '.1f', ' dB')}, HNR {num(v.hnr_db, '.1f', ' dB')}, "
                 f"articulation {num(v.articulation_rate, '.1f', ' syllables/s')}")
    if d.agitation is not None:
        lines.append(f"  calm model P(agitated) {d.agitation:.2f}: " + ", ".join(
            f"{c.name} {c.evidence:+.2f} (confidence {c.confidence:.2f})" for c in d.cues[:4]))
    lines.append(f"  pauses    latency {num(pa.latency_s, '.1f', ' s')}, {pa.count} pauses "
                 f"(longest {pa.longest_s:.1f} s, total {pa.total_s:.1f} s), dead air "
                 f"{pa.dead_air}")
    lines.append(f"  fillers   {num(fi.count, 'd')} ({num(fi.per_min, '.1f', '/min')})")
    lines.append(f"  talk      {d.talk.seconds:.1f} s, speaking {d.speech_s:.1f} s"
                 + (f", {d.talk.words} words" if d.talk.words is not None else ""))
    if d.reasons:
        lines.append("reasons:")
        lines.extend(f"  - {r}" for r in d.reasons)
    return "\n".join(lines)


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else round(v, 4)
    return v


def _json(obj: Any) -> dict[str, Any]:
    return {k: _round(v) for k, v in asdict(obj).items()}
