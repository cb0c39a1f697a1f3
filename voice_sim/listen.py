"""Live capture of one spoken answer.

The microphone callback only queues blocks (it must never block). The caller's
thread runs :func:`capture_answer`: it writes every block to the answer's WAV at
once (so Ctrl-C or a crash loses nothing), detects speech (energy over an adaptive
noise floor, confirmed by the Silero voice model: voice_sim.vad), and hands speech to
an engine thread that turns the engine's partial results into live captions. The turn
ends on a pause whose length the end-of-turn decision (voice_sim.endpoint: a learned
model by default, the word-list rule on request) reads from the words so far, the
decoder's sentence-end probability and the final pitch, at the maximum length, or on a
key (Enter ends it, ``q`` + Enter quits). :data:`PAUSE_HINT_S` into a pause the engine
is told of it, so that a stream that can (Whisper's) decodes the words up to it at once.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

from voice_sim.audio import FRAME_S, SAMPLE_RATE
from voice_sim.endpoint import (
    DECISIONS,
    PATIENCE,
    TURN_ENDS,
    Decision,
    Heard,
    Pitch,
    TurnEnd,
    Words,
    final_pitch,
    model_pause_needed,
    pause_needed,
    words_state,
)
from voice_sim.errors import AudioError, DeviceError, InputError

if TYPE_CHECKING:
    import numpy as np
    import soundfile

    from voice_sim.engines import Engine, Stream, Transcript
    from voice_sim.vad import SpeechProbability

EndReason = Literal["silence", "max_length", "key", "quit"]
END_REASONS: tuple[EndReason, ...] = ("silence", "max_length", "key", "quit")

_SFC_SET_UPDATE_HEADER_AUTO = 0x1061
"""libsndfile command: rewrite the WAV header after every write (see WavSink)."""


MIN_SPEECH_S = 0.2
"""Seconds of speech before a pause may end the turn (a cough or a click does not)."""
MARGIN_DB = 12.0
"""dB above the noise floor that count as speech."""
HYSTERESIS_DB = 3.0
"""dB: once speaking, the level may drop this far below the threshold and still count."""
MIN_SPEECH_DBFS = -50.0
"""dBFS: nothing quieter is speech, however quiet the room."""
FLOOR_WINDOW_S = 4.0
"""Seconds: the noise floor is the quietest block level over this window."""
FLOOR_LEARN_S = 0.5
"""Seconds of audio before the measured floor replaces the quiet-room assumption;
blocks heard meanwhile are classified again once the floor is known."""
PREROLL_S = 0.3
"""Seconds of audio before the first speech given to the engine (soft onsets)."""
BREATH_S = 0.1
"""Seconds of sound without a voice in a pause that count as a breath (see TurnDetector)."""
COVER_SLACK_S = 0.05
"""Seconds: the engine's text counts as covering the speech when it reaches this close
to the speech's end."""
DELIVERY_TAIL_S = 0.2
"""Seconds into a pause at which ``capture_answer``'s ``on_pause`` is given the answer's
samples so far. The live delivery analysis of an answer that ends in that pause covers
its speech and this much of the silence after it, so its costly half runs while the
turn-end decision waits instead of after it (0.3 s is the shortest wait,
voice_sim.endpoint.WAITS)."""
PAUSE_HINT_S = 0.06
"""Seconds of pause after which the engine is told the trainee paused (a stream that
can, Whisper's, then decodes the words up to the pause at once; shorter gaps are
within words)."""


@dataclass(frozen=True)
class TurnConfig:
    """How the end of the trainee's turn is detected (see voice_sim.endpoint)."""

    silence_end_s: float | None = None
    """Upper bound: seconds of pause after speech that end the turn whatever the words
    and pitch say; None: the ``turn_end`` profile's longest wait."""
    max_answer_s: float = 60.0
    """Seconds: the turn ends here whatever is happening."""
    no_answer_s: float | None = None
    """Seconds to wait for speech to begin before ending with ``silence``; None: up to
    ``max_answer_s``."""
    turn_end: TurnEnd = "normal"
    """The trade-off between answering fast and never cutting the trainee off."""
    stall_s: float = 2.0
    """Seconds without a block from the microphone before it counts as lost."""
    decision: Decision = "model"
    """How the words decide: the learned model, or the word-list rule (benchmarks)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or f.name in ("turn_end", "decision"):
                continue
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise InputError(f"turn setting {f.name}={v!r}: must be a number >= 0",
                                 hint="e.g. --silence-end 1.5")
        if ((self.silence_end_s is not None and self.silence_end_s < FRAME_S)
                or self.max_answer_s <= 0):
            raise InputError(
                f"turn setting silence_end_s={self.silence_end_s}, max_answer_s="
                f"{self.max_answer_s}: silence must be >= {FRAME_S} s and the answer > 0 s",
                hint="e.g. --silence-end 1.5 --max-answer 60")
        if self.turn_end not in TURN_ENDS:
            raise InputError(f"turn setting turn_end={self.turn_end!r}: not a choice",
                             hint=f"one of {', '.join(TURN_ENDS)}")
        if self.decision not in DECISIONS:
            raise InputError(f"turn setting decision={self.decision!r}: not a choice",
                             hint=f"one of {', '.join(DECISIONS)}")


@dataclass(frozen=True)
class Block:
    """One block from the microphone."""

    samples: np.ndarray
    """Mono float32 at SAMPLE_RATE."""
    at: float
    """``time.perf_counter()`` when the audio callback received it."""
    clean: np.ndarray | None = None
    """The same audio with the persona's echo cancelled (a block heard over a line and
    handed back to the answer: voice_sim.bargein); None: ``samples`` is all there is."""

    @property
    def heard(self) -> np.ndarray:
        """What the trainee said: the echo-cancelled audio when there is one."""
        return self.samples if self.clean is None else self.clean


@dataclass(frozen=True, eq=False)
class CapturedAnswer:
    """One captured answer and how its turn ended."""

    reason: EndReason
    samples: np.ndarray = field(repr=False)
    """Mono float32 at SAMPLE_RATE: what the engine heard (from just before the first
    speech) plus the trailing silence; the transcript's word times refer to it."""
    offset_s: float
    """Seconds from the start of the capture (and of the WAV) to ``samples[0]``."""
    duration_s: float
    """Seconds captured in all (the WAV's length)."""
    heard_speech: bool
    """True when at least ``min_speech_s`` of speech was heard."""
    speech_start_s: float | None
    """Seconds from the start of the capture to the first speech (the trainee's
    hesitation), None when no speech was heard."""
    speech_end_s: float | None
    """Seconds from the start of the capture to the end of the last speech."""
    speech_s: float
    """Seconds of blocks classed as speech."""
    transcript: Transcript | None
    captions: tuple[str, ...]
    """The distinct partial results, in order."""
    ended_at: float
    """``perf_counter()`` when the end was detected (for a silence end: when the block
    completing the silence arrived from the device)."""
    final_at: float | None
    """``perf_counter()`` when the final transcript was ready (None: still pending)."""
    wav: Path | None
    noise_floor_dbfs: float
    pending: Future[Transcript] | None = field(default=None, repr=False, compare=False)
    """The final transcript still being decoded (``capture_answer(wait_final=False)``);
    ``transcript`` is None meanwhile."""
    partial: str = ""
    """The engine's latest text when the turn ended."""
    partial_covers: bool = False
    """True when ``partial`` had decoded the speech up to its end (safe to plan on)."""
    end_why: str = ""
    """For a silence end: what the end of the speech said (voice_sim.endpoint)."""
    pause_s: float | None = None
    """For a silence end: the pause that ended the turn, in seconds."""
    pause_at: float | None = None
    """``perf_counter()`` when the block that began the final pause arrived (the first
    block after the last speech), for the latency benchmark's stages."""
    words_at: float | None = None
    """``perf_counter()`` when the engine's words first reached the final pause (None:
    they never did before the end)."""

    @property
    def speech_end_at(self) -> float | None:
        """``perf_counter()`` when the speech ended, for a silence end (None otherwise)."""
        return None if self.pause_s is None else self.ended_at - self.pause_s

    @property
    def finalize_s(self) -> float | None:
        """Seconds from the detected end to the final transcript (None: pending)."""
        return None if self.final_at is None else self.final_at - self.ended_at

    @property
    def text(self) -> str:
        """The final transcript's text ('' without an engine)."""
        return self.transcript.text if self.transcript else ""


# --- voice activity -------------------------------------------------------------------

def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS (-120 for digital silence)."""
    import numpy as np

    if not samples.size:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-120.0, 20.0 * math.log10(rms)) if rms > 0 else -120.0


def engine_words(text: str, end_p: float | None) -> Words:
    """What an engine's latest text, covering the speech up to the pause, says of it:
    :func:`voice_sim.endpoint.words_state`, except that a quick decode (one with an
    ``end_p``) that neither reads as finished nor as going on leaves it ``pending``: the
    commit's beam search, on its way, decides."""
    w = words_state(text, end_p)
    return "pending" if end_p is not None and w == "unknown" else w


class TurnDetector:
    """Decides when a turn ends: voice activity, then the end-of-turn rule.

    A block is speech when its energy is above an adaptive noise floor (which also
    times the speech's start and end to the block) and the Silero model
    (voice_sim.vad) hears a voice in that stretch of sound: a door, a cough or a fan
    is not speech however loud. Such a sound in a pause (an in-breath, most often) does
    hold the turn open: the pause counts again from its end. When a pause follows
    enough speech, the pause that ends the turn comes from voice_sim.endpoint: the
    words so far (:attr:`heard` for the learned decision, :attr:`words` for the rule,
    both set by the caller from the engine's text), the final pitch (measured here on
    the last speech) and ``config.turn_end``, capped by ``config.silence_end_s``.

    All timing is counted in samples, so it behaves the same whether audio arrives in
    real time or faster.
    """

    def __init__(self, config: TurnConfig, sr: int = SAMPLE_RATE, *,
                 vad: SpeechProbability | bool = True) -> None:
        from voice_sim.vad import SpeechProbability

        self.config = config
        self.sr = sr
        self.vad: SpeechProbability | None = (SpeechProbability(sr) if vad is True
                                               else vad or None)
        self.pos = 0
        """Samples seen since the turn started."""
        self._total = 0
        # (sample index, level) with increasing levels: a sliding-window minimum.
        self._window: deque[tuple[int, float]] = deque()
        # Until the room has been heard, assume it is quiet enough that the absolute
        # minimum is the threshold. The assumption is placed in the past so it leaves
        # the window after FLOOR_LEARN_S of audio.
        span = int(FLOOR_WINDOW_S * sr)
        self._prior_index = -span + int(min(FLOOR_LEARN_S, FLOOR_WINDOW_S) * sr)
        self._window.append((self._prior_index, MIN_SPEECH_DBFS - MARGIN_DB))
        self._learning: list[tuple[int, float, int, bool]] | None = []
        """(pos, level, samples, voice heard) of blocks classified under the assumption."""
        self.level = -120.0
        self.voiced = False
        """The latest block is loud enough to be speech (energy only)."""
        self.speaking = False
        """The latest block is speech: loud enough, in a stretch the model heard a voice in."""
        self.speech_samples = 0
        self.speech_start: int | None = None
        self.speech_end: int | None = None
        self.words: Words = "unknown"
        """What the engine's text says about the speech so far (set by the caller)."""
        self.heard: Heard | None = None
        """The engine's text and end probability when they cover the speech up to the
        pause (set by the caller; the learned decision reads them), else None."""
        self.pitch: Pitch | None = None
        """The final pitch of the speech before the current pause (None: not measured)."""
        self.why = ""
        self._stretch: list[tuple[int, int]] = []
        self._heard_voice = False
        self._recent: deque[tuple[int, np.ndarray]] = deque()
        self._hold_until = 0
        """Turn position before which the pause cannot end the turn (a breath was heard)."""

    @property
    def floor_dbfs(self) -> float:
        """The current noise-floor estimate."""
        return self._window[0][1]

    @property
    def threshold_dbfs(self) -> float:
        """Level above which a block is speech (lower while already speaking)."""
        t = max(self.floor_dbfs + MARGIN_DB, MIN_SPEECH_DBFS)
        return t - HYSTERESIS_DB if self.voiced else t

    @property
    def armed(self) -> bool:
        """True once enough speech was heard for a pause to end the turn."""
        return self.speech_samples >= MIN_SPEECH_S * self.sr

    @property
    def silence_s(self) -> float:
        """Seconds since the last speech (0 while speaking or before any speech)."""
        return 0.0 if self.speech_end is None else (self.pos - self.speech_end) / self.sr

    def hear(self, text: str, covered: int | None, end_p: float | None) -> bool:
        """Give the decision the engine's latest words: ``text``, covering ``covered``
        samples of the turn (None: the engine has heard nothing yet), with the decoder's
        sentence-end probability ``end_p``. They count only when they reach the speech's
        end (:data:`COVER_SLACK_S`); until then the words are ``pending``. True when they
        do but the word lists cannot read them: the caller then asks the stream for the
        commit it holds in the pause (the one way capture_answer, bench_turn_end.py and
        the tests feed the decision)."""
        if (self.speech_end is not None and covered is not None
                and covered >= self.speech_end - COVER_SLACK_S * self.sr):
            self.words, self.heard = engine_words(text, end_p), Heard(text, end_p)
            return self.words in ("pending", "unknown")
        self.words = "pending" if self.speech_end is not None else "unknown"
        self.heard = None
        return False

    def pause_needed(self) -> float:
        """Seconds of pause that end the turn now (measuring the final pitch once)."""
        if self.pitch is None:
            self.pitch = final_pitch(self.recent_speech()) if self.speech_end else "unknown"
        if self.config.decision == "model" and self.heard is not None:
            need, self.why = model_pause_needed(self.heard, self.pitch, self.config.turn_end,
                                                self.config.silence_end_s,
                                                speech_s=self.speech_samples / self.sr)
            return need
        need, self.why = pause_needed(self.words, self.pitch, self.config.turn_end,
                                      self.config.silence_end_s,
                                      speech_s=self.speech_samples / self.sr)
        return need

    def recent_speech(self) -> np.ndarray:
        """The last seconds of audio up to the end of the speech."""
        import numpy as np

        if not self._recent or self.speech_end is None:
            return np.zeros(0, np.float32)
        first = self._recent[0][0]
        x = np.concatenate([b for _, b in self._recent])
        return x[:max(0, self.speech_end - first)]

    def observe(self, samples: np.ndarray) -> None:
        """Learn the noise floor from audio that is not part of the turn."""
        self._floor_update(level_dbfs(samples), len(samples))
        if self._window[0][0] != self._prior_index:
            self._learning = None

    def start_turn(self) -> None:
        """Begin a turn: speech counters to zero, the noise floor kept."""
        self.pos = 0
        self.speech_samples = 0
        self.speech_start = self.speech_end = None
        self.voiced = self.speaking = False
        self._stretch, self._heard_voice = [], False
        self._recent.clear()
        self.pitch, self.words, self.why, self.heard = None, "unknown", "", None
        self._hold_until = 0
        if self.vad is not None:
            self.vad.reset()

    def push(self, samples: np.ndarray) -> EndReason | None:
        """Classify one block; return the end reason when this block ends the turn."""
        lvl = level_dbfs(samples)
        n = len(samples)
        self.voiced = lvl > self.threshold_dbfs
        self._floor_update(lvl, n)
        voice = True
        if self.vad is not None:
            self.vad.push(samples)
            voice = self.vad.speaking
        self._recent.append((self.pos, samples))
        while len(self._recent) > 1 and self._recent[1][0] < self.pos - 2 * self.sr:
            self._recent.popleft()
        if self.voiced:
            self._stretch.append((self.pos, n))
            if voice and not self._heard_voice:
                # The model heard a voice: the whole stretch so far was speech.
                self._heard_voice = True
                for p, k in self._stretch[:-1]:
                    self._speech(p, k)
            if self._heard_voice:
                self._speech(self.pos, n)
        else:
            self._stretch, self._heard_voice = [], False
        self.speaking = self.voiced and self._heard_voice
        if (self.voiced and not self._heard_voice and self.speech_end is not None
                and sum(k for _, k in self._stretch) >= BREATH_S * self.sr):
            # A sound that is not a voice, in a pause after speech: an in-breath (or a
            # noise); people breathe in to go on, so the pause starts again from here.
            self._hold_until = self.pos + n + int(
                PATIENCE[self.config.turn_end].unsure_s * self.sr)
            self.why = "a breath in the pause"
        if self._learning is not None:
            self._learning.append((self.pos, lvl, n, voice))
            if self._window[0][0] != self._prior_index:
                self._reclassify()
        self.pos += n
        c = self.config
        # Not on a loud block the voice model has yet to judge: the trainee going on
        # after the pause is heard by its energy a block or two before its voice.
        if (self.armed and not self.voiced and self.pos >= self._hold_until
                and self.silence_s >= self.pause_needed()):
            return "silence"
        if self.pos >= c.max_answer_s * self.sr:
            return "max_length"
        if c.no_answer_s is not None and not self.armed and self.pos >= c.no_answer_s * self.sr:
            return "silence"
        return None

    def _speech(self, pos: int, n: int) -> None:
        if self.speech_start is None:
            self.speech_start = pos
        self.speech_samples += n
        self.speech_end = pos + n
        self.pitch = None  # a new pause will need measuring

    def _reclassify(self) -> None:
        """The floor is measured now: judge the blocks heard under the assumption again
        (in a noisy room they were noise, not speech)."""
        blocks, self._learning = self._learning or [], None
        thr = max(self.floor_dbfs + MARGIN_DB, MIN_SPEECH_DBFS)
        voiced = [(p, n) for p, lvl, n, voice in blocks if lvl > thr and voice]
        self.speech_samples = sum(n for _, n in voiced)
        self.speech_start = voiced[0][0] if voiced else None
        self.speech_end = voiced[-1][0] + voiced[-1][1] if voiced else None
        self.voiced = self.speaking = bool(voiced) and voiced[-1][0] == blocks[-1][0]
        self.pitch = None

    def _floor_update(self, lvl: float, n: int) -> None:
        self.level = lvl
        self._total += n
        w = self._window
        while w and w[-1][1] >= lvl:
            w.pop()
        w.append((self._total, lvl))
        horizon = self._total - int(FLOOR_WINDOW_S * self.sr)
        while len(w) > 1 and w[0][0] <= horizon:
            w.popleft()


# --- the microphone -------------------------------------------------------------------

class BlockSource:
    """Blocks read in order from a source's own queue (:meth:`_next`), with blocks
    already read given back (:meth:`unread`): a speaker that listens while the persona
    talks (voice_sim.bargein) hands the trainee's words back as the next turn's start,
    and the rest back as audio heard before it. The sound card's :class:`Microphone`
    and the browser's (voice_sim.serve_call.StreamedMic) share this."""

    block_s: float
    name: str

    def __init__(self) -> None:
        self._back: deque[Block] = deque()
        """Blocks given back to be read again as the next turn's start (barge-in)."""
        self._before: list[Block] = []
        """Blocks given back as heard before the next turn (they teach the floor)."""

    def _next(self, timeout: float) -> Block | None:
        """The source's next block, or None when none arrived within ``timeout``."""
        raise NotImplementedError

    def read(self, timeout: float = 0.05) -> Block | None:
        """The next block, or None when none arrived within ``timeout`` seconds."""
        if self._back:
            return self._back.popleft()
        return self._next(timeout)

    def drain(self) -> list[Block]:
        """Everything queued so far (audio heard before the turn began), except blocks
        given back with :meth:`unread` as the turn's start, and those queued after them
        (the trainee is talking: they are the turn's too, read after the given-back ones)."""
        out, self._before = self._before, []
        back, self._back = self._back, deque()
        later: list[Block] = []
        while (b := self._next(0)) is not None:
            later.append(b)
        self._back = back
        if back:
            back.extend(later)
        else:
            out.extend(later)
        return out

    def unread(self, blocks: list[Block], *, turn: bool) -> None:
        """Give blocks already read back: as the start of the next turn (``turn``: the
        trainee began talking over the persona), else as audio before it."""
        if turn:
            self._back.extend(blocks)
        else:
            self._before.extend(blocks)


class Microphone(BlockSource):
    """An open input stream whose callback only queues blocks.

    Keep one open for a whole session: opening a stream per turn costs time and would
    miss an answer begun the moment the persona stops. Blocks come out of
    :meth:`read` as mono float32 at SAMPLE_RATE whatever the device's own rate.
    """

    def __init__(self, device: int | str | None = None, *, block_s: float = FRAME_S) -> None:
        self.spec = device
        self.block_s = block_s
        self.device: int | None = None
        self.name = "microphone"
        self.samplerate = SAMPLE_RATE
        """Hertz: the rate the device is opened at (blocks are resampled from it)."""
        self.overflows = 0
        """Blocks the device reported as overflowed (audio lost before it reached us)."""
        self._q: queue.SimpleQueue[tuple[float, Any]] = queue.SimpleQueue()
        self._stream: Any = None
        self._resampler: Any = None
        super().__init__()

    def open(self) -> Microphone:
        """Open and start the input stream; raises DeviceError naming the device."""
        from voice_sim.devices import load_sounddevice, resolve_device

        sd = load_sounddevice()
        self.device = resolve_device(self.spec, "input")
        try:
            info = sd.query_devices(self.device, "input")
            self.name = str(info["name"])
            rate = SAMPLE_RATE
            try:
                sd.check_input_settings(device=self.device, channels=1, dtype="int16",
                                        samplerate=SAMPLE_RATE)
            except sd.PortAudioError:
                # Raw hardware devices may refuse 16 kHz: record at their own rate and
                # resample outside the callback.
                rate = int(info["default_samplerate"])
            if rate != SAMPLE_RATE:
                import soxr

                self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
            self.samplerate = rate
            # 16-bit: what every microphone delivers natively, and the only format a
            # raw-file virtual microphone (scripts/virtual_mic.py) can serve.
            self._stream = sd.InputStream(samplerate=rate, blocksize=round(rate * self.block_s),
                                          device=self.device, channels=1, dtype="int16",
                                          callback=self._callback)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as e:
            self.close()
            raise DeviceError(f"microphone {self.spec if self.spec is not None else self.name!r}"
                              f": cannot open ({e})",
                              hint="pick another with --input-device (see `voice-sim devices`)"
                              ) from e
        return self

    def _callback(self, indata: Any, frames: int, t: Any, status: Any) -> None:
        # Runs on the audio thread: copy and queue, nothing else (no locks held long,
        # no I/O, no allocation beyond the copy).
        if status:
            self.overflows += 1
        self._q.put((time.perf_counter(), indata[:, 0].copy()))

    def _next(self, timeout: float) -> Block | None:
        import numpy as np

        try:
            at, raw = self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return None
        x = raw.astype(np.float32) / 32768.0
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        return Block(x, at)

    @property
    def active(self) -> bool:
        """True while the device is delivering audio."""
        return bool(self._stream is not None and self._stream.active)

    def close(self) -> None:
        """Stop and close the stream (safe to call twice)."""
        s, self._stream = self._stream, None
        if s is not None:
            s.stop()
            s.close()

    def __enter__(self) -> Microphone:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- incremental WAV ------------------------------------------------------------------

class WavSink:
    """A 16-bit WAV written block by block, valid on disk after every write.

    libsndfile is told to rewrite the header after each write, so a crash or a kill
    leaves a complete file holding everything captured; ``fsync`` (slow on real disks:
    ~1-3 ms) runs only every ``sync_s`` seconds of audio, for power loss. With ``append``
    an existing recording of the same format goes on (an answer continued after the
    persona gave way: voice_sim.bargein); what it held is never rewritten.
    """

    def __init__(self, path: str | os.PathLike[str], sr: int = SAMPLE_RATE,
                 sync_s: float = 1.0, *, append: bool = False) -> None:
        import soundfile as sf

        from voice_sim.paths import fsync_dir, make_dirs

        self.path = Path(path)
        self.sr = sr
        self.frames = 0
        self._sync_every = max(1, int(sync_s * sr))
        self._since_sync = 0
        try:
            make_dirs(self.path.parent)
            if append and self.path.exists():
                self._f: soundfile.SoundFile | None = sf.SoundFile(str(self.path), "r+")
                if self._f.samplerate != sr or self._f.channels != 1:
                    raise RuntimeError(f"it is {self._f.samplerate} Hz, "
                                       f"{self._f.channels} channel(s), not {sr} Hz mono")
                self._f.seek(0, sf.SEEK_END)
            else:
                self._f = sf.SoundFile(str(self.path), "w", samplerate=sr, channels=1,
                                       subtype="PCM_16", format="WAV")
            fsync_dir(self.path.parent)  # the file's name is durable from the first block
        except (OSError, RuntimeError) as e:
            raise AudioError(f"{self.path}: cannot write the answer recording ({e})",
                             hint="check the folder exists and is writable") from e
        self._auto_header()

    def _auto_header(self) -> None:
        import soundfile as sf

        try:
            sf._snd.sf_command(self._f._file, _SFC_SET_UPDATE_HEADER_AUTO,  # type: ignore[union-attr]
                               sf._ffi.NULL, 1)
            self._auto = True
        except AttributeError:
            # A soundfile without these internals: fall back to flush (header + fsync)
            # after every block — slower, equally safe.
            self._auto = False

    def write(self, samples: np.ndarray) -> None:
        """Append mono float samples and make them durable."""
        import numpy as np

        if self._f is None:
            raise AudioError(f"{self.path}: already closed", hint="open a new WavSink")
        self._f.write(np.clip(samples, -1.0, 1.0))
        self.frames += len(samples)
        self._since_sync += len(samples)
        if not self._auto or self._since_sync >= self._sync_every:
            self._f.flush()
            self._since_sync = 0

    def close(self) -> None:
        """Finish the file (safe to call twice)."""
        f, self._f = self._f, None
        if f is not None:
            f.close()

    def __enter__(self) -> WavSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- engine feeding -------------------------------------------------------------------

_END = "end"
_ABANDON = "abandon"
_PAUSE = "pause"
_COMMIT = "commit"
FINAL_HOLD_S = 1.0
"""Seconds at most that a final transcript held for ``capture_answer(final_after=...)``
waits for its event before it is decoded anyway (a caller that never sets it)."""


class _EngineFeeder:
    """Feeds an engine stream on a thread of its own, so slow partial decodes never delay
    the voice-activity decisions; reports changed partials as captions, and keeps the
    latest text with how much of the fed audio it covers (the end-of-turn rule trusts
    words only when they reach the pause)."""

    def __init__(self, source: Engine | Stream,
                 on_caption: Callable[[str], None] | None) -> None:
        self.stream: Stream = source if _is_stream(source) else source.stream()  # type: ignore[union-attr,assignment]
        self.on_caption = on_caption
        self.captions: list[str] = []
        self.error: BaseException | None = None
        self.latest: tuple[str, int, float | None] = ("", 0, None)
        """(text, samples of the fed audio it covers, the engine's probability that it
        ends a sentence: voice_sim.endpoint.words_state)."""
        self.done: Future[Transcript] = Future()
        self._after: threading.Event | None = None
        self._fed_n = 0
        self._q: queue.SimpleQueue[np.ndarray | str] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="engine-feeder", daemon=True)
        self._thread.start()

    def feed(self, samples: np.ndarray) -> None:
        self._q.put(samples)

    def pause(self) -> None:
        """Tell the stream, after the audio fed so far, that the speaker paused."""
        if hasattr(self.stream, "pause"):
            self._q.put(_PAUSE)

    def commit(self) -> None:
        """Ask the stream for the committed words of the current pause now (a stream
        that holds its commit in a pause, Whisper's: the greedy words left it unsure)."""
        if hasattr(self.stream, "commit"):
            self._q.put(_COMMIT)

    def _run(self) -> None:
        import numpy as np

        try:
            while True:
                item = self._q.get()
                if isinstance(item, str) and item in (_PAUSE, _COMMIT):
                    getattr(self.stream, item)()
                    continue
                if isinstance(item, str):
                    if item == _END:
                        if self._after is not None:
                            self._after.wait(FINAL_HOLD_S)
                        self.done.set_result(self.stream.finish())
                    return
                # Whatever piled up while the engine was busy goes in as one chunk.
                parts = [item]
                end = None
                while True:
                    try:
                        nxt = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(nxt, str):
                        end = nxt
                        break
                    parts.append(nxt)
                chunk = np.concatenate(parts) if len(parts) > 1 else item
                self._fed_n += len(chunk)
                text = (self.stream.accept(chunk) or "").strip()
                covered = getattr(self.stream, "covered_s", None)
                self.latest = (text, self._fed_n if covered is None
                               else round(covered * SAMPLE_RATE),
                               getattr(self.stream, "end_p", None))
                if text and (not self.captions or text != self.captions[-1]):
                    self.captions.append(text)
                    if self.on_caption is not None:
                        self.on_caption(text)
                if end in (_PAUSE, _COMMIT):
                    getattr(self.stream, end)()
                elif end is not None:
                    self._q.put(end)
        except BaseException as e:
            self.error = e
            if not self.done.done():
                self.done.set_exception(e)

    def check(self) -> None:
        """Re-raise, in the caller's thread, whatever failed in the engine thread."""
        if self.error is not None:
            raise self.error

    def finish(self, after: threading.Event | None = None) -> Future[Transcript]:
        """Finish the stream after the queued audio: the final transcript, to come; with
        ``after``, decoded only once that event is set (or FINAL_HOLD_S went by)."""
        self._after = after
        self._q.put(_END)
        return self.done

    def abandon(self) -> None:
        """Stop the thread without a result (the capture failed)."""
        self._q.put(_ABANDON)
        self._thread.join(timeout=5.0)


def _is_stream(source: object) -> bool:
    return hasattr(source, "accept") and hasattr(source, "finish")


# --- keys and the live line -----------------------------------------------------------

class KeyPoll(Protocol):
    """Anything that reports an early-end key press."""

    def poll(self) -> Literal["key", "quit"] | None:
        """``key`` (end this answer), ``quit`` (end the session) or None; consumes it."""
        ...

    def clear(self) -> None:
        """Forget presses made before now."""
        ...


class KeyWatcher:
    """Enter ends the answer early; ``q`` + Enter quits. Reads lines from stdin on a
    daemon thread; does nothing when stdin is not a terminal (unless ``enabled``)."""

    def __init__(self, stdin: IO[str] | None = None, *, enabled: bool | None = None) -> None:
        self.stdin = stdin if stdin is not None else sys.stdin
        if enabled is None:
            enabled = bool(getattr(self.stdin, "isatty", lambda: False)())
        self.enabled = enabled
        self._q: queue.SimpleQueue[Literal["key", "quit"]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> KeyWatcher:
        """Start reading (once; the thread lives as long as the process reads stdin)."""
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="keys", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        for line in self.stdin:
            self._q.put("quit" if line.strip().lower() in ("q", "quit") else "key")
        # stdin closed (Ctrl-D): treat it as quitting, as a shell would.
        self._q.put("quit")

    def poll(self) -> Literal["key", "quit"] | None:
        """The oldest unhandled press, or None."""
        try:
            return self._q.get_nowait()
        except queue.Empty:
            return None

    def clear(self) -> None:
        """Forget presses made before now (e.g. during the persona's line)."""
        while self.poll() is not None:
            pass


class LiveLine:
    """One terminal line rewritten with ``\\r``: a level meter and the live caption.

    Silent when ``out`` is not a terminal (unless ``enabled``), so logs and pipes get no
    control characters.
    """

    CELLS = 8

    def __init__(self, out: IO[str] | None = None, *, enabled: bool | None = None,
                 width: int | None = None, interval_s: float = 0.05) -> None:
        self.out = out if out is not None else sys.stdout
        if enabled is None:
            enabled = bool(getattr(self.out, "isatty", lambda: False)())
        self.enabled = enabled
        self.width = width
        self.interval_s = interval_s
        self.caption_text = ""
        self.level_dbfs = -120.0
        self._last = 0.0
        self._drawn = False
        self._lock = threading.Lock()

    def level(self, dbfs: float) -> None:
        """Show a new level (redrawn at most every ``interval_s``)."""
        self.level_dbfs = dbfs
        if time.perf_counter() - self._last >= self.interval_s:
            self.draw()

    def caption(self, text: str) -> None:
        """Show a new partial result."""
        self.caption_text = text
        self.draw()

    def render(self) -> str:
        """The line as it is drawn (without the ``\\r``)."""
        # -60 dBFS (a quiet room) shows no cells, 0 dBFS all of them.
        filled = round(min(1.0, max(0.0, (self.level_dbfs + 60.0) / 60.0)) * self.CELLS)
        meter = "[" + "▮" * filled + "▯" * (self.CELLS - filled) + "]"
        width = self.width or _terminal_width()
        room = max(0, width - len(meter) - 2)
        text = self.caption_text
        if len(text) > room:
            text = "…" + text[-(room - 1):] if room > 1 else ""
        return f"{meter} {text}".ljust(width - 1)

    def draw(self) -> None:
        """Rewrite the line now."""
        if not self.enabled:
            return
        with self._lock:
            self.out.write("\r" + self.render())
            self.out.flush()
            self._drawn = True
            self._last = time.perf_counter()

    def clear(self) -> None:
        """Blank the line and put the cursor at its start, ready for other output."""
        if not self.enabled or not self._drawn:
            return
        with self._lock:
            width = self.width or _terminal_width()
            self.out.write("\r" + " " * (width - 1) + "\r")
            self.out.flush()
            self._drawn = False
        self.caption_text = ""

    def close(self, final: str | None = None) -> None:
        """End the line (replacing it with ``final`` when given)."""
        if not self.enabled or not (self._drawn or final):
            return
        with self._lock:
            width = self.width or _terminal_width()
            self.out.write("\r" + (final or "").ljust(width - 1) + "\n" if final
                           else "\n")
            self.out.flush()
            self._drawn = False
        self.caption_text = ""


def _terminal_width() -> int:
    import shutil

    return max(20, shutil.get_terminal_size((80, 24)).columns)


# --- one answer -----------------------------------------------------------------------

def capture_answer(
    mic: Microphone,
    engine: Engine | Stream | None = None,
    config: TurnConfig | None = None,
    *,
    sink: str | os.PathLike[str] | WavSink | None = None,
    on_caption: Callable[[str], None] | None = None,
    on_level: Callable[[float], None] | None = None,
    keys: KeyPoll | None = None,
    on_end: Callable[[np.ndarray], None] | None = None,
    on_pause: Callable[[np.ndarray], None] | None = None,
    wait_final: bool = True,
    final_after: threading.Event | None = None,
    whole: bool = False,
) -> CapturedAnswer:
    """Capture one answer from an open microphone until the turn ends.

    Audio queued before the call (the persona's line) only teaches the noise floor;
    blocks the microphone was given back as the turn's start (:meth:`Microphone.unread`,
    a barge-in) are the answer's first. ``engine`` (an Engine, or one of its streams) is
    fed the speech as it comes and finished when the turn ends; its latest text is what
    the end-of-turn rule reads. Without an engine the answer is only recorded. ``sink``
    (a path or a :class:`WavSink`) receives every block as it arrives and is closed on
    return or on any exception, Ctrl-C included.
    ``on_caption`` gets each new partial text (on the engine thread), ``on_level``
    each block's level in dBFS. ``on_end`` gets the answer's samples (the same array as
    ``CapturedAnswer.samples``) the moment the end is detected, before the final
    transcript is waited for: work that needs no transcript can start there.
    ``on_pause`` gets the answer's samples so far :data:`DELIVERY_TAIL_S` into each pause
    after speech; when the answer ends in that pause, ``on_end`` is given that same array
    (not the longer one with the whole pause), so work begun on it stands. With
    ``wait_final=False`` the final transcript is not waited for at all: it comes in
    ``CapturedAnswer.pending`` and ``partial`` holds the text so far; with
    ``final_after`` too, the final decode itself starts only when that event is set (at
    most :data:`FINAL_HOLD_S` later), so that it does not take the CPU from the work
    the caller does first on the partial words (the live session: until the reply
    sounds). With ``whole``, ``samples`` (and the engine's audio) start at the turn's
    first block rather than just before the first speech: an answer going on after the
    persona gave way, whose pause belongs to it. Blocks handed back with an
    echo-cancelled copy (:attr:`Block.clean`) are recorded as heard and given to the
    engine and the detector without the echo. Raises DeviceError when the microphone
    stops delivering audio.
    """
    import numpy as np

    called = time.perf_counter()
    cfg = config or TurnConfig()
    det = TurnDetector(cfg)  # loads the voice model on first use: blocks queue meanwhile
    before = mic.drain()
    for b in before:
        if b.at <= called:
            det.observe(b.samples)
    # Blocks that arrived since the call are the turn's (the trainee may start at once);
    # a source that cannot take blocks back (the browser's) has them teach the floor.
    late = [b for b in before if b.at > called]
    if hasattr(mic, "unread"):
        mic.unread(late, turn=True)
    else:
        for b in late:
            det.observe(b.samples)
    det.start_turn()
    if keys is not None:
        keys.clear()
    wav = sink if isinstance(sink, WavSink) or sink is None else WavSink(sink)
    feeder = _EngineFeeder(engine, on_caption) if engine is not None else None

    blocks: list[np.ndarray] = []
    fed_from: int | None = None  # index of the first block given to the engine
    fed_at = 0  # turn position (samples) of the engine's first sample
    held: list[int] = []  # indexes of blocks held back (silence) from the engine
    preroll = max(1, round(PREROLL_S / mic.block_s))
    reason: EndReason | None = None
    ended_at = time.perf_counter()
    last_block_at = ended_at
    pause_at: float | None = None
    words_at: float | None = None
    hinted = True  # the engine was told of the current pause
    tail: np.ndarray | None = None  # the samples given to on_pause in the current pause
    asked = True  # the engine was asked for the committed words of the current pause
    try:
        while reason is None:
            if keys is not None and (k := keys.poll()) is not None:
                reason, ended_at = k, time.perf_counter()
                break
            if feeder is not None:
                feeder.check()
                text, covered, end_p = feeder.latest
                unread = det.hear(text, None if fed_from is None else fed_at + covered,
                                  end_p)
                if det.heard is not None and words_at is None and pause_at is not None:
                    words_at = time.perf_counter()
                if unread and not asked:
                    # Words the rule cannot read: it waits for the commit's, which the
                    # stream holds in a pause until asked.
                    asked = True
                    feeder.commit()
            block = mic.read(timeout=0.05)
            if block is None:
                if time.perf_counter() - last_block_at > cfg.stall_s:
                    raise DeviceError(
                        f"microphone {mic.name!r} stopped delivering audio "
                        f"after {det.pos / SAMPLE_RATE:.1f} s",
                        hint="check the device is still connected, or pick another with "
                             "--input-device; what was captured is saved"
                        + (f" in {wav.path}" if wav is not None else ""))
                continue
            last_block_at = block.at
            x = block.heard
            blocks.append(x)
            if wav is not None:
                wav.write(block.samples)  # the raw microphone, echo and all
            reason = det.push(x)
            if det.speaking:
                pause_at = words_at = tail = None
            elif pause_at is None and det.speech_end is not None:
                pause_at = block.at
                hinted = asked = False
            if reason is not None:
                ended_at = block.at
            if on_level is not None:
                on_level(det.level)
            first = 0 if feeder is None else fed_from  # where ``samples`` will start
            if (on_pause is not None and tail is None and pause_at is not None
                    and first is not None and det.silence_s >= DELIVERY_TAIL_S):
                tail = np.concatenate(blocks[first:]).astype(np.float32, copy=False)
                on_pause(tail)
            i = len(blocks) - 1
            if feeder is None:
                continue
            if det.voiced or (whole and fed_from is None):
                if fed_from is None:
                    # Speech began: give the engine a little of what came before it.
                    held = held if whole else held[-preroll:]
                    fed_from = held[0] if held else i
                    fed_at = sum(len(b) for b in blocks[:fed_from])
                for j in held:
                    feeder.feed(blocks[j])
                held = []
                feeder.feed(x)
            elif fed_from is not None:
                # Pauses too: a stream that commits its words at pauses (Whisper's) is
                # driven by what it is fed, and the end-of-turn rule waits for them.
                feeder.feed(x)
                if not hinted and det.armed and det.silence_s >= PAUSE_HINT_S:
                    hinted = True
                    feeder.pause()
            else:
                held.append(i)
                if fed_from is None and len(held) > preroll:
                    held.pop(0)
        if feeder is not None and fed_from is None:
            # No speech at all: let the engine see the last moments, so it still
            # returns a (normally empty) transcript of its own making.
            fed_from = held[0] if held else len(blocks)
            for j in held:
                feeder.feed(blocks[j])
        start = fed_from or 0
        samples = (np.concatenate(blocks[start:]) if blocks[start:]
                   else np.zeros(0, np.float32)).astype(np.float32, copy=False)
        if (tail is not None and det.speech_end is not None
                and det.speech_end <= fed_at + len(tail)):
            samples_to_analyse = tail  # the answer ended in the pause on_pause was told of
        else:
            samples_to_analyse = samples
        if on_end is not None:
            on_end(samples_to_analyse)
        partial = feeder.latest[0] if feeder is not None else ""
        pending = feeder.finish(final_after) if feeder is not None else None
        transcript = None
        final_at: float | None = time.perf_counter()
        if pending is not None:
            if wait_final:
                transcript = pending.result()
                final_at, pending = time.perf_counter(), None
            else:
                final_at = None
    except BaseException:
        if feeder is not None:
            feeder.abandon()
        raise
    finally:
        if wav is not None and wav is not sink:
            wav.close()

    offset = sum(len(b) for b in blocks[:start])
    sr = SAMPLE_RATE
    return CapturedAnswer(
        reason=reason,
        samples=samples,
        offset_s=offset / sr,
        duration_s=det.pos / sr,
        heard_speech=det.armed,
        speech_start_s=None if det.speech_start is None or not det.armed
        else det.speech_start / sr,
        speech_end_s=None if det.speech_end is None else det.speech_end / sr,
        speech_s=det.speech_samples / sr,
        transcript=transcript,
        captions=tuple(feeder.captions) if feeder is not None else (),
        ended_at=ended_at,
        final_at=final_at,
        wav=wav.path if wav is not None else None,
        noise_floor_dbfs=det.floor_dbfs,
        pending=pending,
        partial=partial,
        # The words reached the pause (what the decision read), however the word lists
        # would read them: a quick decode's unsure words are as safe to plan on.
        partial_covers=det.heard is not None and bool(det.heard.text.strip()),
        end_why=det.why if reason == "silence" else "",
        pause_s=det.silence_s if reason == "silence" and det.armed else None,
        pause_at=pause_at,
        words_at=words_at,
    )
