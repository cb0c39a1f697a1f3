"""One engine for every call: live practice, headless runs and the demo.

:func:`run_call` drives a persona through a call. Where the trainee's answers come
from (:class:`Trainee`: the microphone, a folder of recordings, or a synthetic
trainee speaking through TTS) and where the persona's voice goes (:class:`Speaker`:
the sound card, or nowhere) are the only things that differ between the three
commands; transcription, delivery analysis, content scoring, mood and transitions
are the same code for all of them.

Every call writes a session folder (:class:`SessionWriter`) as it goes: each
turn's audio as soon as it exists, and ``session.json`` rewritten atomically after
each turn, so a crash, a kill or Ctrl-C keeps every completed turn and the audio
captured so far of the current one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from voice_sim.errors import InputError, SessionError
from voice_sim.record import FORMAT as SESSION_FORMAT
from voice_sim.record import Closing, SessionRecord, TurnRecord
from voice_sim.steps import OUTCOMES

if TYPE_CHECKING:
    import numpy as np

    from voice_sim.bargein import Interruption, Yield
    from voice_sim.delivery import Baseline, Delivery, Prepared
    from voice_sim.engines import Engine, Transcript
    from voice_sim.persona import Line, Move, Persona
    from voice_sim.rubric import Content, Rubric, TurnScore
    from voice_sim.speak import Voice

BASELINE_SENTENCE = (
    "Thank you for calling. I have your account open in front of me, and I will "
    "stay with you until we have sorted this out together."
)
"""What the trainee reads aloud, calmly, to calibrate the delivery analysis."""


class Quit(Exception):
    """The trainee ended the call (``q`` at the prompt, or Ctrl-C)."""


# --- what a turn produces ---------------------------------------------------------------

@dataclass(frozen=True)
class TurnTiming:
    """``perf_counter()`` stamps along a turn's critical path, for the latency benchmark
    (scripts/bench_latency.py); not written to ``session.json``."""

    ended: float | None
    """The end of the answer was detected (live only)."""
    final: float | None
    """The final transcript was ready."""
    content: float
    """The words were scored."""
    delivery: float
    """The delivery was analysed."""
    moved: float
    """The mood moved and the next line was chosen."""
    started: float | None = None
    """The persona's next line started playing (None: the call ended without one)."""

    def stages(self) -> dict[str, float]:
        """Seconds spent in each stage, in order (only those with both ends known)."""
        marks = [("final", self.final), ("content", self.content),
                 ("delivery", self.delivery), ("moved", self.moved),
                 ("started", self.started)]
        out: dict[str, float] = {}
        prev = self.ended
        for name, at in marks:
            if prev is not None and at is not None:
                out[name] = at - prev
            prev = at if at is not None else prev
        return out


@dataclass(frozen=True)
class Answer:
    """One trainee answer, however it was captured."""

    samples: np.ndarray = field(repr=False)
    """Mono float32 at SAMPLE_RATE."""
    wav: Path
    """The answer's audio in the session folder."""
    transcript: Transcript | None = None
    """Set when the capture already transcribed it (live streaming); else the session
    transcribes ``samples``."""
    ended_at: float | None = None
    """``perf_counter()`` when the end of the answer was detected (live only)."""
    final_at: float | None = None
    """``perf_counter()`` when its final transcript was ready (live only)."""
    prepared: Future[Prepared] | None = field(default=None, repr=False, compare=False)
    """The transcript-free half of the delivery analysis (live only; else the session
    does it all), of the samples it names (``source``): the speech and
    voice_sim.listen.DELIVERY_TAIL_S of the pause that ended the answer, started in
    that pause, or, when the answer ended otherwise, all of ``samples``, started when
    the end was detected (voice_sim.delivery.Preparer)."""
    end_reason: str = "file"
    """``silence``, ``max_length``, ``key`` (live), ``file`` or ``synthetic``."""
    source: str = ""
    """Where it came from: a file name, or the synthetic reply's text."""
    pending: Future[Transcript] | None = field(default=None, repr=False, compare=False)
    """The final transcript still being decoded when the answer ended (live only); the
    next line is then planned on ``partial`` and confirmed on this."""
    partial: str = ""
    """The engine's text when the answer ended (live only)."""
    final_go: threading.Event | None = field(default=None, repr=False, compare=False)
    """Set to start decoding ``pending`` (live only): the session sets it once the
    reply sounds, so the final's beam search does not slow the planning of that reply
    (voice_sim.listen.capture_answer ``final_after``; it starts anyway after
    listen.FINAL_HOLD_S)."""
    speech_end_at: float | None = None
    """``perf_counter()`` when the trainee's speech ended (live only)."""


TALKED_OVER = "you talked over the customer"
"""The delivery reason a barge-in adds."""
CONFIRM_S = 0.0
"""Seconds after the end of a live answer that the final transcript is waited for; later,
the next line is spoken as planned on the partial words and confirmed afterwards. None:
the words the end-of-turn rule read were decoded at the pause, and the final's beam
search, begun about then, lands 0.3-0.5 s later (bench_latency.py); a final already
done is still used."""


@dataclass(frozen=True)
class Plan:
    """The next line was chosen on the words heard so far, before the final transcript."""

    partial: str
    """The text it was chosen on."""
    changed: bool | None = None
    """Whether the final transcript would have chosen another line or mood (None: not
    confirmed yet)."""
    snapshot: Any = field(default=None, repr=False, compare=False)
    """The call's state before the planned move, for the confirmation."""

    def to_json(self) -> dict[str, Any]:
        """The turn's ``planned`` object in ``session.json``."""
        return {"partial": self.partial, "final_changed_outcome": self.changed}


@dataclass(frozen=True)
class Turn:
    """One customer line and the trainee's answer to it, fully scored."""

    index: int
    """1 for the first answer."""
    line: Line
    customer_audio: str
    """File name of the customer's audio in the session folder."""
    answer: Answer
    transcript: Transcript
    content: Content
    delivery: Delivery
    score: TurnScore
    move: Move
    latency_s: float | None
    """Seconds from the detected end of the answer to the start of the persona's next
    line (live only; None in headless runs)."""
    hint: str
    """The one short coaching hint for this turn."""
    timing: TurnTiming | None = field(default=None, compare=False, repr=False)
    """Where the time went between the end of the answer and the next line."""
    interruption: Interruption | None = None
    """The trainee talked over the customer's line (live only)."""
    plan: Plan | None = None
    """Set when the next line was chosen on the partial words (live only)."""
    yields: tuple[Yield, ...] = ()
    """Replies that cut the trainee off and gave way when the trainee went on (live
    only): undone, and the answer's parts are this one answer. Not talking over."""

    @cached_property
    def record(self) -> TurnRecord:
        """The turn as the session record keeps it."""
        return TurnRecord.from_json(self.to_json(), self.index)

    def to_json(self) -> dict[str, Any]:
        """The turn's entry in ``session.json`` (the JSON of :attr:`record`)."""
        return {
            "index": self.index,
            "customer": {"line": self.line.id, "text": self.line.text,
                         "variant": self.line.variant,
                         "audio": self.customer_audio, "expects": list(self.line.expects)},
            "answer_audio": self.answer.wav.name,
            "answer_source": self.answer.source,
            "end_reason": self.answer.end_reason,
            "transcript": self.transcript.text,
            "words": [{"word": w.word, "start": w.start, "end": w.end, "conf": w.conf}
                      for w in self.transcript.words],
            **self.content.to_json(),
            "delivery": self.delivery.to_json(contour=True),
            "turn_score": self.score.to_json(),
            "mood_before": self.move.mood_before,
            "mood_after": self.move.mood_after,
            "move": self.move.to_json(),
            "latency_s": None if self.latency_s is None else round(self.latency_s, 4),
            "hint": self.hint,
            "interruption": None if self.interruption is None else self.interruption.to_json(),
            "planned": None if self.plan is None else self.plan.to_json(),
            "yielded": [y.to_json() for y in self.yields],
        }


# --- pluggable audio in and out -----------------------------------------------------------

class Trainee(Protocol):
    """Where the trainee's answers come from."""

    def answer(self, turn: int, line: Line, wav: Path) -> Answer | None:
        """Capture the answer to ``line``, saving its audio at ``wav``; None when there
        are no more answers (headless runs). Raises :class:`Quit` to end the call."""
        ...


class Speaker(Protocol):
    """Where the persona's voice goes."""

    def speak(self, samples: np.ndarray, sr: int) -> float:
        """Start saying a line; return ``perf_counter()`` at its start. Returns once the
        line has been heard in full."""
        ...


class SilentSpeaker:
    """Headless: lines are written to the session folder, not played."""

    def speak(self, samples: np.ndarray, sr: int) -> float:
        """Nothing to play; the line 'starts' now."""
        return time.perf_counter()


class DeviceSpeaker:
    """The sound card, through the one sounddevice boundary."""

    def __init__(self, device: str | int | None = None) -> None:
        from voice_sim import devices

        self.device = devices.resolve_device(device, "output")

    def speak(self, samples: np.ndarray, sr: int) -> float:
        """Play the line to the end (blocking)."""
        from voice_sim import devices

        started = time.perf_counter()
        devices.play(samples, sr, self.device)
        return started


class FileTrainee:
    """Prerecorded answers: the audio files in a folder, taken in name order."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from voice_sim.audio import READABLE, load_audio

        self.folder = Path(folder)
        if not self.folder.exists():
            raise InputError(f"--answers {self.folder}: no such folder", hint="check the path")
        if not self.folder.is_dir():
            raise InputError(f"--answers {self.folder}: not a folder",
                             hint="name a folder of answer files (01.wav, 02.wav, …)")
        self.files = sorted(p for p in self.folder.iterdir()
                            if p.is_file() and p.suffix.lower() in READABLE)
        if not self.files:
            raise InputError(f"--answers {self.folder}: no audio files in it",
                             hint=f"add one file per answer: 01.wav, 02.wav, … "
                                  f"({', '.join(READABLE)})")
        # Every file decoded once, now, before a model loads: a bad third answer must
        # not cost a model load and two turns before it is reported. The samples are
        # kept (answers are phone-length) so no file is decoded twice.
        self.samples = [load_audio(p, allow_silent=True) for p in self.files]

    def answer(self, turn: int, line: Line, wav: Path) -> Answer | None:
        """Load the ``turn``-th file; None once they run out."""
        from voice_sim.audio import write_wav

        if turn > len(self.files):
            return None
        samples = self.samples[turn - 1]
        write_wav(wav, samples)
        return Answer(samples=samples, wav=wav, end_reason="file",
                      source=self.files[turn - 1].name)


class ScriptedTrainee:
    """A synthetic trainee: replies chosen per line, spoken through TTS.

    ``reply_for(line)`` gives the text; it is rendered in ``voice`` and goes through
    the same recognition, delivery and scoring as a real answer.
    """

    def __init__(self, reply_for: Callable[[Line], str | None], voice: Any = None) -> None:
        from voice_sim.speak import Voice

        self.reply_for = reply_for
        self.voice = voice or Voice()

    def answer(self, turn: int, line: Line, wav: Path) -> Answer | None:
        """Render the reply to ``line``; None when the script has none."""
        from voice_sim.audio import load_audio, write_wav
        from voice_sim.speak import cached_render

        text = self.reply_for(line)
        if text is None:
            return None
        samples = load_audio(cached_render(text, self.voice))
        write_wav(wav, samples)
        return Answer(samples=samples, wav=wav, end_reason="synthetic", source=text)


# --- the session folder -------------------------------------------------------------------

class SessionWriter:
    """One folder per session, written incrementally and atomically.

    The folder is named ``YYYYmmdd-HHMMSS-<persona>`` and never reused; files are
    created with the user's umask and never world-writable (:data:`paths.FILE_MODE`).
    ``session.json`` is replaced atomically (temp file, fsync, rename) after every
    change, so it is always valid JSON.
    """

    def __init__(self, root: str | os.PathLike[str], persona_id: str) -> None:
        from voice_sim.paths import DIR_MODE, fsync_dir, make_dirs

        self.root = Path(root)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        try:
            make_dirs(self.root)
        except OSError as e:
            raise SessionError(f"{self.root}: cannot create the sessions folder "
                               f"({e.strerror})", hint="pick another with --out") from e
        sweep_stale_temps(self.root)
        for n in range(1000):
            name = f"{stamp}-{persona_id}" + (f"-{n + 1}" if n else "")
            try:
                (self.root / name).mkdir(mode=DIR_MODE)
                fsync_dir(self.root)  # the folder's name survives a power cut too
            except FileExistsError:
                continue
            except OSError as e:
                raise SessionError(f"{self.root / name}: cannot create ({e.strerror})",
                                   hint="pick another folder with --out") from e
            self.dir = self.root / name
            break
        else:
            raise SessionError(f"{self.root}: too many sessions named {stamp}-{persona_id}",
                               hint="wait a second and try again")

    def path(self, name: str) -> Path:
        """A file inside the session folder."""
        return self.dir / name

    def save(self, record: SessionRecord) -> None:
        """Write ``session.json`` atomically."""
        from voice_sim.paths import write_atomic

        write_atomic(self.dir / "session.json",
                     json.dumps(record.to_json(), indent=2, ensure_ascii=False))


def sweep_stale_temps(root: Path) -> list[Path]:
    """Delete the temp files (``.NAME.THREAD.PID.tmp``, :func:`paths.temp_name`) that
    killed writers left in the session folders under ``root``; return them.

    Every file in a session folder is written to a temp file and renamed into place, so
    a ``kill -9`` mid-write can leave one behind, never a half file. Temps of a live
    process (another call running now) are left alone.
    """
    gone: list[Path] = []
    for tmp in root.glob("*/.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            tmp.unlink()
            gone.append(tmp)
        except OSError:
            # Swept by another call starting at the same moment, or not ours to remove:
            # either way it is garbage that must not stop this call.
            continue
    return gone


def _alive(pid: int) -> bool:
    """True when a process ``pid`` exists (ours, or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the call ------------------------------------------------------------------------------

@dataclass
class CallOptions:
    """Everything about a call that is not the persona or the audio in and out."""

    engine: Engine
    baseline: Baseline | None = None
    baseline_source: str | None = None
    rubric: Rubric | None = None
    coach: str = "after"
    """``live``: one hint after each turn; ``after``: hints only at the end; ``off``."""
    out_root: Path | None = None
    mode: str = "run"
    """``practice``, ``run`` or ``demo``: recorded in ``session.json``."""
    seed: int | None = None
    """Picks the persona's phrasings (``--seed``); None draws one. Recorded in
    ``session.json``: the same seed and answers replay the call exactly."""


@dataclass(frozen=True)
class CallEvents:
    """Callbacks for a user interface; every one optional."""

    on_line: Callable[[Line, float], None] | None = None
    """The persona starts a line (line, mood)."""
    on_turn: Callable[[Turn], None] | None = None
    """A turn was scored and the persona's reply to it has started (``latency_s`` set)."""
    on_answer: Callable[[Turn], None] | None = None
    """A turn was scored, before the persona replies: show the answer here, so the call
    is shown in the order it was spoken."""
    on_hint: Callable[[str], None] | None = None
    """A live coaching hint."""
    on_yield: Callable[[Yield], None] | None = None
    """The persona's reply cut the trainee off and gave way; the answer goes on."""


@dataclass(frozen=True)
class SessionResult:
    """A finished (or stopped) call."""

    persona: Persona
    dir: Path
    outcome: str
    score: float
    turns: tuple[Turn, ...]
    record: SessionRecord = field(repr=False)
    """What ``session.json`` holds, typed."""


class _LineVoice:
    """The persona's lines as audio: recorded files where the persona has them, else
    TTS, rendered ahead in a background thread so a line is ready when it is due, and
    kept decoded in memory (a line is due within milliseconds of the answer's end: no
    disk read or decode on that path)."""

    def __init__(self, persona: Persona) -> None:
        self.persona = persona
        # Keyed by line, phrasing and voice: a line's words and voice vary between calls
        # (variants) and with the mood (``per_mood``, a line's own voice).
        self._ready: dict[tuple[str, str, Voice], Path] = {}
        self._audio: dict[tuple[str, str, Voice], tuple[np.ndarray, int]] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._thread = threading.Thread(target=self._prerender, daemon=True,
                                        name="voice-sim-prerender")
        self._thread.start()

    def _prerender(self) -> None:
        # Lines in file order, every phrasing, in the voice at the opening mood: the
        # opening line first. A failure here is not lost: the same render is tried again
        # (and raises properly) when the line is due.
        from dataclasses import replace

        from voice_sim.call import Call

        at_start = Call(self.persona, seed=0)
        for line in self.persona.lines.values():
            for k, text in enumerate(line.texts):
                try:
                    phrased = replace(line, text=text, variant=k)
                    self.samples(phrased, at_start.voice_for(phrased))
                except Exception:
                    continue

    def ahead(self, pairs: Sequence[tuple[Line, Voice]]) -> None:
        """Render these (line, voice) pairs in the background, in order: the lines that
        may come next while the trainee answers. A newer call supersedes an older one."""
        with self._lock:
            self._generation += 1
            mine = self._generation

        def run() -> None:
            for line, voice in pairs:
                with self._lock:
                    if self._generation != mine:
                        return
                try:
                    self.samples(line, voice)
                except Exception:
                    continue  # rendered again, and raised properly, when the line is due

        threading.Thread(target=run, daemon=True, name="voice-sim-ahead").start()

    def path(self, line: Line, voice: Voice | None = None) -> Path:
        """The line's audio file (recorded, or rendered in ``voice``, default the
        persona's, and cached)."""
        if line.audio is not None and line.variant == 0:
            return line.audio
        voice = voice or self.persona.voice
        key = (line.id, line.text, voice)
        with self._lock:
            hit = self._ready.get(key)
        if hit is not None:
            return hit
        from voice_sim.speak import cached_render

        p = cached_render(line.text, voice)
        with self._lock:
            self._ready[key] = p
        return p

    def samples(self, line: Line, voice: Voice | None = None) -> tuple[np.ndarray, int]:
        """The line's audio at its own rate (no resampling before playback)."""
        key = (line.id, line.text, voice or self.persona.voice)
        with self._lock:
            hit = self._audio.get(key)
        if hit is not None:
            return hit
        import soundfile as sf

        data, sr = sf.read(str(self.path(line, voice)), dtype="float32", always_2d=True)
        audio = (data.mean(axis=1, dtype="float32"), int(sr))
        with self._lock:
            self._audio[key] = audio
        return audio


class _Writes:
    """The session folder's writes during a call (customer WAVs, ``session.json``), done
    in order on one background thread: the persona's next line never waits for the disk,
    and neither does the microphone after it. Each write is atomic on its own."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-sim-writes")
        self._pending: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue a write behind the ones already queued."""
        self.check()
        self._pending.append(self._pool.submit(fn, *args))

    def check(self) -> None:
        """Raise, in the caller's thread, the first write that has failed."""
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for f in done:
            f.result()

    def finish(self) -> None:
        """Wait for every queued write; raise the first failure."""
        pending, self._pending = self._pending, []
        try:
            for f in pending:
                f.result()
        finally:
            self._pool.shutdown(wait=True)


def _warm_up() -> threading.Thread:
    """Pay librosa's imports and numba compile, and load the content scorer's
    embedding model, before the trainee's first turn (while the opening line plays)."""
    def run() -> None:
        from voice_sim import delivery, embedding

        embedding.warm_up()
        delivery.warm_up()

    t = threading.Thread(target=run, daemon=True, name="voice-sim-warmup")
    t.start()
    return t


def overall_score(turns: Sequence[Turn]) -> float:
    """The session score: the mean of the turn scores (0 with no turn)."""
    if not turns:
        return 0.0
    return round(sum(t.score.score for t in turns) / len(turns), 1)


def run_call(persona: Persona, trainee: Trainee, speaker: Speaker, options: CallOptions,
             events: CallEvents | None = None) -> SessionResult:
    """Drive one call to its end, writing the session folder as it goes."""
    from voice_sim.audio import write_wav
    from voice_sim.paths import sessions_dir
    from voice_sim.persona import Call
    from voice_sim.rubric_semantic import prepare_customer

    ev = events or CallEvents()
    warm = _warm_up()
    voice = _LineVoice(persona)
    writer = SessionWriter(options.out_root or sessions_dir(), persona.id)
    call = Call(persona, options.rubric, seed=options.seed)
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    turns: list[Turn] = []
    hints: list[str] = []
    outcome: str | None = None
    closing: Closing | None = None
    error: str | None = None
    interrupted = False  # Ctrl-C, as opposed to the trainee saying quit
    pending_end: float | None = None  # when the last answer ended (for latency)

    def record(status: str) -> SessionRecord:
        return record_of(status, tuple(turns), tuple(hints), call.mood,
                         time.perf_counter() - t0, closing)

    def record_of(status: str, done: Sequence[Turn], said: Sequence[str], mood: float,
                  duration: float, ending: Closing | None) -> SessionRecord:
        return SessionRecord(
            format=SESSION_FORMAT,
            status=status,
            mode=options.mode,
            persona=persona.id,
            persona_title=persona.title,
            persona_path=str(persona.path),
            session_dir=str(writer.dir),
            outcome=outcome,
            score=overall_score(done),
            engine=options.engine.name,
            model=options.engine.model,
            baseline=options.baseline_source,
            coach=options.coach,
            started_at=started_at.isoformat(timespec="seconds"),
            duration_s=round(duration, 3),
            start_mood=persona.start_mood,
            mood=mood,
            turns=tuple(t.record for t in done),
            closing=ending,
            hints=tuple(said),
            practise_next=tuple(practise_next(done)) if options.coach != "off" else (),
            error=error,
            interrupted=interrupted,
            extra={"seed": call.seed},  # the phrasings' seed: `--seed` replays the call
        )

    def save_soon() -> None:
        # The state as it is now, written (JSON, fsync, rename) on the writes thread.
        snapshot = ("in_progress", tuple(turns), tuple(hints), call.mood,
                    time.perf_counter() - t0, closing)
        writes.submit(lambda: writer.save(record_of(*snapshot)))

    def say(line: Line, name: str, sounding: threading.Event | None = None
            ) -> tuple[str, float]:
        # Nothing slow here: the line's audio is decoded in memory already, and its copy
        # in the session folder is written while it plays. ``sounding`` is set once the
        # line sounds (by a speaker with an ``on_sound`` hook), else just before it plays.
        samples, sr = voice.samples(line, call.voice_for(line))
        if not call.ended:
            voice.ahead(call.upcoming())  # rendered while this line plays and the answer comes
        writes.submit(write_wav, writer.path(name), samples, sr)
        prepare_customer(line.text)  # its embedding, while it plays (issue 12)
        if ev.on_line is not None:
            ev.on_line(line, call.mood)
        hook = sounding is not None and hasattr(speaker, "on_sound")
        if hook:
            speaker.on_sound = sounding.set  # type: ignore[attr-defined, union-attr]
        elif sounding is not None:
            sounding.set()
        try:
            return name, speaker.speak(samples, sr)
        finally:
            if hook:
                speaker.on_sound = None  # type: ignore[attr-defined]

    writer.save(record("in_progress"))
    writes = _Writes()
    try:
        customer_audio, _ = say(call.line, "turn-01-customer.wav")
        talked_over = getattr(speaker, "last", None)  # a ListeningSpeaker's barge-in
        while True:
            n = call.turn + 1
            line = call.line
            # Straight from the end of the line to the microphone: audio that arrives
            # before capture starts only teaches it the room's noise.
            answer = trainee.answer(n, line, writer.path(f"turn-{n:02d}-answer.wav"))
            if answer is None:
                outcome = "incomplete"
                break
            # Normally long done while the opening line and the first answer went by; never
            # waited for between the persona's line and the microphone.
            warm.join()
            gave_way: list[Yield] = []
            while True:
                undo = call.copy()  # the persona as it was, should its reply give way
                turn, next_line = _score_turn(n, line, customer_audio, answer, call,
                                              options, interruption=talked_over,
                                              yields=tuple(gave_way))
                pending_end = answer.ended_at
                latency = started = None
                # The scored turn is saved while the persona's reply plays (its latency
                # is filled in by the save after the line).
                turns.append(turn)
                save_soon()
                if ev.on_answer is not None:
                    ev.on_answer(turn)
                # A turn planned on partial words is confirmed while the reply plays (it
                # waits for the final transcript first), not after: the microphone is
                # listening again as soon as the line ends.
                confirming = (_background(_confirm, turn, options) if turn.plan is not None
                              else None)
                cut: Yield | None = None
                if next_line is not None:
                    name = (f"turn-{n + 1:02d}-customer.wav" if call.outcome is None
                            else "closing-customer.wav")
                    going_on = hasattr(trainee, "go_on") and hasattr(speaker, "replying")
                    if going_on:
                        speaker.replying = True  # type: ignore[attr-defined]
                    reply_audio, started = say(next_line, name, answer.final_go)
                    cut = getattr(speaker, "gave_way", None) if going_on else None
                    if cut is None:
                        customer_audio = reply_audio
                        talked_over = getattr(speaker, "last", None)
                        if pending_end is not None:
                            latency = started - pending_end
                        if call.outcome is not None:
                            closing = Closing(line=next_line.id, text=next_line.text,
                                              audio=name,
                                              extra={"variant": next_line.variant})
                if answer.final_go is not None:
                    answer.final_go.set()  # no line, or one cut short: decode the final now
                if cut is None or next_line is None:
                    break
                # The reply cut the trainee off: it is undone, and the answer goes on.
                call.restore(undo)
                turns.pop()
                said = answer.speech_end_at
                gave_way.append(replace(cut, line=next_line.id, pause_s=None if said is None
                                        else max(0.0, cut.resumed_at - said)))
                if ev.on_yield is not None:
                    ev.on_yield(gave_way[-1])
                answer = trainee.go_on(answer)  # type: ignore[attr-defined]
            if confirming is not None:
                turn = confirming.result()
            turn = turns[-1] = _with_latency(turn, latency, started)
            if options.coach == "live" and turn.hint:
                hints.append(f"turn {n}: {turn.hint}")
                if ev.on_hint is not None:
                    ev.on_hint(turn.hint)
            if ev.on_turn is not None:
                ev.on_turn(turn)
            if call.outcome is not None:
                outcome = call.outcome
                break
            save_soon()
    except Quit:
        outcome = "quit"
    except KeyboardInterrupt:
        outcome, interrupted = "quit", True
    except BaseException as e:
        # Keep what was done, say what stopped it, and let the error go on to the CLI.
        outcome = "quit"
        error = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        try:
            writes.finish()
        except Exception as w:
            # Already failing: the first error is the one to report; note this one too.
            error = f"{error}; also: {getattr(w, 'message', None) or w}"
        writer.save(record("failed"))
        raise
    try:
        writes.finish()
    except BaseException:
        error = "the session folder could not be written completely"
        writer.save(record("failed"))
        raise
    final = record("complete")
    writer.save(final)
    assert outcome in OUTCOMES
    return SessionResult(persona=persona, dir=writer.dir, outcome=outcome,
                         score=final.score, turns=tuple(turns), record=final)


def _score_turn(n: int, line: Line, customer_audio: str, answer: Answer, call: Any,
                options: CallOptions, interruption: Interruption | None = None,
                yields: tuple[Yield, ...] = ()) -> tuple[Turn, Line | None]:
    """Transcribe (if needed), score words and delivery, and move the call on.

    A live answer whose final transcript is still being decoded is waited for up to
    :data:`CONFIRM_S`; after that the next line is chosen on the partial words (the
    :class:`Plan`) and the turn is completed from the final transcript by
    :func:`_confirm` while that line plays."""
    from concurrent.futures import TimeoutError as Late

    from voice_sim.audio import SAMPLE_RATE
    from voice_sim.delivery import analyze
    from voice_sim.engines import Transcript
    from voice_sim.rubric import score_reply, turn_score

    clock = time.perf_counter
    final_at = answer.final_at
    transcript = answer.transcript
    plan = None
    if transcript is None and answer.pending is not None:
        waited = clock() - (answer.ended_at or clock())
        try:
            transcript = answer.pending.result(timeout=max(0.0, CONFIRM_S - waited))
            final_at = clock()
        except Late:
            plan = Plan(partial=answer.partial, snapshot=call.copy())
            transcript = Transcript(engine=options.engine.name, model=options.engine.model,
                                    text=answer.partial,
                                    duration_s=len(answer.samples) / SAMPLE_RATE)
    if transcript is None:
        transcript = options.engine.transcribe(answer.samples)
        final_at = clock()
    content = score_reply(transcript.text, line.text, words=transcript.words,
                          rubric=options.rubric)
    content_at = clock()
    prepared = answer.prepared.result() if answer.prepared is not None else None
    # Planned on partial words (no word times): the voice's measures without the pace.
    delivery = analyze(_analysed(answer, prepared), None if plan is not None else transcript,
                       options.baseline, prepared=prepared)
    delivery = _talked_over(delivery, interruption)
    delivery_at = clock()
    move = call.advance(content.ids, calm=delivery.calm)
    score = turn_score(content, line.expects, calm=delivery.calm, rubric=options.rubric)
    next_line = call.line if move.next_line else None  # the phrasing the call chose
    timing = TurnTiming(ended=answer.ended_at, final=final_at, content=content_at,
                        delivery=delivery_at, moved=clock())
    turn = Turn(index=n, line=line, customer_audio=customer_audio, answer=answer,
                transcript=transcript, content=content, delivery=delivery, score=score,
                move=move, latency_s=None, hint=coach_hint(line, content, delivery),
                timing=timing, interruption=interruption, plan=plan, yields=yields)
    return turn, next_line


def _background(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """``fn(*args)`` on a daemon thread; its result (or exception) in the future."""
    out: Future[Any] = Future()

    def run() -> None:
        try:
            out.set_result(fn(*args))
        except BaseException as e:
            out.set_exception(e)

    threading.Thread(target=run, daemon=True, name="voice-sim-confirm").start()
    return out


def _analysed(answer: Answer, prepared: Prepared | None) -> np.ndarray:
    """The samples whose delivery is measured: those the prepared half was computed on
    (a live answer: its speech and the start of the pause that ended it, or all of it,
    voice_sim.delivery.Preparer), else the answer's."""
    return prepared.source if prepared is not None else answer.samples


def _talked_over(delivery: Delivery, interruption: Interruption | None) -> Delivery:
    """A barge-in is a delivery fault: the reason first, and not calm."""
    if interruption is None:
        return delivery
    from dataclasses import replace

    return replace(delivery, calm=False, reasons=(TALKED_OVER, *delivery.reasons),
                   voice_calm=delivery.calm)


def _confirm(turn: Turn, options: CallOptions) -> Turn:
    """Complete a turn planned on partial words from its final transcript: the words,
    delivery, score and hint become the final's; the move (already heard by the trainee
    as the customer's reply) stays, and ``plan.changed`` says whether the final words
    would have chosen another line or mood."""
    from dataclasses import replace

    from voice_sim.delivery import analyze
    from voice_sim.rubric import score_reply, turn_score

    assert turn.plan is not None and turn.answer.pending is not None
    transcript = turn.answer.pending.result()
    content = score_reply(transcript.text, turn.line.text, words=transcript.words,
                          rubric=options.rubric)
    prepared = turn.answer.prepared.result() if turn.answer.prepared is not None else None
    delivery = _talked_over(analyze(_analysed(turn.answer, prepared), transcript,
                                    options.baseline, prepared=prepared), turn.interruption)
    would = turn.plan.snapshot.advance(content.ids, calm=delivery.calm)
    changed = (would.next_line != turn.move.next_line
               or abs(would.mood_after - turn.move.mood_after) > 1e-6)
    score = turn_score(content, turn.line.expects, calm=delivery.calm, rubric=options.rubric)
    return replace(turn, transcript=transcript, content=content, delivery=delivery,
                   score=score, hint=coach_hint(turn.line, content, delivery),
                   plan=replace(turn.plan, changed=changed, snapshot=None))


def _with_latency(turn: Turn, latency: float | None, started: float | None) -> Turn:
    from dataclasses import replace

    timing = turn.timing and replace(turn.timing, started=started)
    return replace(turn, latency_s=latency, timing=timing)


# --- coaching --------------------------------------------------------------------------------

_NEXT_STEP_HINTS: dict[str, str] = {
    "listen_reflect": "sum up what the customer just told you, in your own words",
    "empathize": "name the feeling you hear before you fix anything",
    "apologize": "apologise plainly, with no 'but' after it",
    "ask_clarify": "ask one open question to find out what they need",
    "offer_solution": "offer a concrete option, or two to choose from",
    "set_expectations": "say honestly what you can do and by when",
    "follow_up": "promise a check-back and say when",
    "escalate": "offer to bring in a supervisor and brief them yourself",
    "set_boundary": "set a respectful limit on the language, then keep helping",
    "break_down": "take the problems one at a time, and say which comes first",
    "document": "tell them you have noted it on the account",
}

_PITFALL_HINTS: dict[str, str] = {
    "blame_customer": "leave out what the customer should have done",
    "excuse": "drop the policy or system talk and say what you can do",
    "dismissive": "don't tell the customer how to feel",
    "argue": "don't contradict; acknowledge, then explain",
}

_TALKED_OVER_HINT = "let the customer finish their sentence, then answer"


def coach_hint(line: Line, content: Content, delivery: Delivery) -> str:
    """One short, actionable hint for a turn (pitfall first, then delivery, then the
    first expected step that was missing)."""
    if content.pitfalls:
        d = content.pitfalls[0]
        return f"You said \u201c{d.evidence}\u201d: {_PITFALL_HINTS.get(d.id, d.id)}."
    if not delivery.calm and delivery.reasons:
        if delivery.reasons[0] == TALKED_OVER:
            return f"Delivery: {TALKED_OVER}: {_TALKED_OVER_HINT}."
        return f"Delivery: {delivery.reasons[0]}."
    heard = content.ids
    for step in line.expects:
        if step != "stay_calm" and step not in heard:
            done = [s.id for s in content.steps]
            lead = f"You did {', '.join(done)} — now " if done else "Next time, "
            return f"{lead}{_NEXT_STEP_HINTS.get(step, step)}."
    return ""


def practise_next(turns: Sequence[Turn], n: int = 3) -> list[str]:
    """The ``n`` things to practise next, most frequent misses first."""
    from collections import Counter

    misses: Counter[str] = Counter()
    for t in turns:
        for d in t.content.pitfalls:
            misses[f"pitfall:{d.id}"] += 2
        for step in t.line.expects:
            if step != "stay_calm" and step not in t.content.ids:
                misses[f"step:{step}"] += 1
        if not t.delivery.calm:
            # Talking over the customer is practised apart from how the voice sounded.
            if TALKED_OVER in t.delivery.reasons:
                misses["talked_over"] += 1
            if not t.delivery.voice_calm:
                misses["delivery"] += 1
    out: list[str] = []
    for key, _ in misses.most_common(n):
        kind, _, ident = key.partition(":")
        if kind == "pitfall":
            out.append(f"Avoid {ident}: {_PITFALL_HINTS[ident]}.")
        elif kind == "step":
            out.append(f"Practise {ident}: {_NEXT_STEP_HINTS.get(ident, ident)}.")
        elif kind == "talked_over":
            out.append(f"Practise turn-taking: {_TALKED_OVER_HINT}.")
        else:
            out.append("Practise calm delivery: slower, lower, steady volume.")
    return out
