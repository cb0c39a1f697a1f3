"""One call in the browser: a web trainee and a web speaker for :func:`run_call`.

The browser streams its microphone as 16 kHz mono 16-bit PCM over a WebSocket;
:class:`StreamedMic` turns those frames into the same :class:`~voice_sim.listen.Block`
stream a sound card gives, so :func:`voice_sim.listen.capture_answer` — its turn
detector, early final, captions and incremental WAV — runs unchanged on it (whatever
detector ``listen`` uses, the web path uses too). :class:`WebSpeaker` sends each
persona line to the page as WAV bytes and returns once the page says it has played.

Everything else is ``voice-sim practice``: the same :func:`run_call`, the same
session folder, report and history (:func:`voice_sim.report.after_call`). A dropped
connection, the "end call" button or the call-length cap end the call as ``quit``
with every completed turn and the audio of the current one kept.

Threads: the WebSocket handler runs on the server's event loop and only queues (audio
frames, control messages); the call runs on a thread of its own; messages to the page
go back through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voice_sim.audio import FRAME, SAMPLE_RATE, wav_bytes
from voice_sim.listen import Block

if TYPE_CHECKING:
    import numpy as np

    from voice_sim.delivery import Baseline
    from voice_sim.engines import Engine
    from voice_sim.listen import Microphone, TurnConfig
    from voice_sim.persona import Line, Persona
    from voice_sim.session import Answer, SessionResult

Send = Callable[[dict[str, Any] | bytes], None]
"""Queue one message to the page (JSON object, or binary); safe from any thread."""

AHEAD_S = 2.0
"""Seconds a page's audio may run ahead of the wall clock (network and timer jitter)."""

BACKLOG_S = 30.0
"""Seconds of unread audio kept; older blocks are dropped."""

BASELINE_WAIT_S = 10.0
"""Seconds the calm reading waits for speech before the level check says "too quiet"."""

PLAY_SLACK_S = 3.0
"""Seconds past a line's length to wait for the page to say it has played it."""


@dataclass(frozen=True)
class CallLimits:
    """The caps on one browser call."""

    max_answer_s: float = 60.0
    """Seconds: one answer ends here (``TurnConfig.max_answer_s``)."""
    max_call_s: float = 20 * 60.0
    """Seconds: the whole call ends as ``quit`` here."""
    silence_end_s: float | None = None
    """The most seconds of silence after speech before an answer ends (``practice
    --silence-end``); None: the :attr:`turn_end` profile's longest wait, as ``practice``."""
    turn_end: str = "normal"
    """The end-of-turn profile (voice_sim.endpoint), as ``practice --turn-end``."""

    def turn_config(self) -> TurnConfig:
        """The turn detector's settings for an answer of this call (as ``practice``'s)."""
        from voice_sim.practice import live_turn_config

        return live_turn_config(self.silence_end_s, self.max_answer_s, self.turn_end)


class StreamedMic:
    """The browser's microphone, as :func:`capture_answer` reads a sound card.

    :meth:`push` (event-loop thread) takes 16-bit little-endian PCM at SAMPLE_RATE in
    any frame size and queues it as 20 ms blocks stamped with their arrival time.
    """

    block_s = FRAME / SAMPLE_RATE
    name = "browser microphone"

    def __init__(self, ahead_s: float = AHEAD_S) -> None:
        import numpy as np

        self.ahead_s = ahead_s
        """Seconds the audio may run ahead of the wall clock before it is refused."""
        self._q: queue.SimpleQueue[Block] = queue.SimpleQueue()
        self._rest = np.zeros(0, np.float32)
        self.received = 0
        """Samples received since the page opened the microphone."""
        self._first: float | None = None

    def push(self, pcm: bytes) -> bool:
        """Queue one frame from the page; False when audio is arriving faster than real
        time (the frame is dropped: no microphone does that)."""
        import numpy as np

        at = time.perf_counter()
        if self._first is None:
            self._first = at
        x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
        if self.received + len(x) > (at - self._first + self.ahead_s) * SAMPLE_RATE:
            return False
        self.received += len(x)
        x = np.concatenate([self._rest, x]) if self._rest.size else x
        n = len(x) // FRAME * FRAME
        for i in range(0, n, FRAME):
            self._q.put(Block(x[i:i + FRAME], at))
        self._rest = x[n:]
        # Nobody reading (the briefing page, a long line): keep only the recent past,
        # which is all the turn detector learns the room's noise from.
        while self.queued_s() > BACKLOG_S:
            self.read(0)
        return True

    def queued_s(self) -> float:
        """Seconds of audio received and not read yet."""
        return self._q.qsize() * self.block_s

    def read(self, timeout: float = 0.05) -> Block | None:
        """The next block, or None when none arrived within ``timeout`` seconds."""
        try:
            return self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return None

    def drain(self) -> list[Block]:
        """Everything queued so far (heard before the turn began)."""
        out = []
        while (b := self.read(0)) is not None:
            out.append(b)
        return out


def as_microphone(mic: StreamedMic) -> Microphone:
    """``mic`` where :func:`capture_answer` wants a :class:`~voice_sim.listen.Microphone`:
    it uses only ``read``, ``drain``, ``block_s`` and ``name``, which both have."""
    from typing import cast

    return cast("Microphone", mic)


class Controls:
    """What the page asks for, as the :class:`~voice_sim.listen.KeyPoll` that
    :func:`capture_answer` polls: ``key`` (end my answer) or ``quit`` (end the call).

    ``quit`` stays set once given (the button, a dropped connection, the call-length
    cap), so every later poll and every wait for playback sees it.
    """

    def __init__(self, deadline: float) -> None:
        self._presses: queue.SimpleQueue[Literal["key"]] = queue.SimpleQueue()
        self.quit = threading.Event()
        self.played = threading.Event()
        self.deadline = deadline
        """``perf_counter()`` at which the call is stopped (the length cap)."""

    def press(self) -> None:
        """The trainee ended an answer (Enter, or the button)."""
        self._presses.put("key")

    def poll(self) -> Literal["key", "quit"] | None:
        """``quit``, ``key`` or None; consumes a ``key``."""
        if self.quit.is_set() or time.perf_counter() > self.deadline:
            self.quit.set()
            return "quit"
        try:
            return self._presses.get_nowait()
        except queue.Empty:
            return None

    def clear(self) -> None:
        """Forget answer-end presses made before now (a quit is kept)."""
        while True:
            try:
                self._presses.get_nowait()
            except queue.Empty:
                return


def clip_key(samples: np.ndarray, sr: int) -> bytes:
    """16 ASCII bytes naming a clip by its content (the page keeps clips by it)."""
    import hashlib

    h = hashlib.blake2b(samples.tobytes(), digest_size=8, key=sr.to_bytes(4, "little"))
    return h.hexdigest().encode()


def line_clips(persona: Persona) -> list[tuple[np.ndarray, int]]:
    """Every line's audio as the call will play it (as ``session._LineVoice`` decodes it:
    the recording or the cached TTS render, float32, channels averaged), opening first."""
    import soundfile as sf

    from voice_sim.speak import cached_render

    order = [persona.start_line, *(x for x in persona.lines.values() if x.id != persona.start)]
    out = []
    for line in order:
        path = line.audio or cached_render(line.text, persona.voice)
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        out.append((data.mean(axis=1, dtype="float32"), int(sr)))
    return out


class WebSpeaker:
    """The page's loudspeaker.

    A clip goes to the page once, as one binary message (its :func:`clip_key`, then
    WAV bytes), and is decoded there ahead of time; saying a line is then a tiny
    ``play`` message, so neither encoding, transfer nor decoding sits between the end
    of the trainee's answer and the customer's reply. :meth:`preload` sends a call's
    lines while the opening plays.
    """

    def __init__(self, send: Send, controls: Controls) -> None:
        self.send = send
        self.controls = controls
        self._sent: set[bytes] = set()
        self._lock = threading.Lock()

    def _clip(self, samples: np.ndarray, sr: int) -> bytes:
        key = clip_key(samples, sr)
        with self._lock:  # the clip is queued before any play that names it
            if key not in self._sent:
                self.send(key + wav_bytes(samples, sr))
                self._sent.add(key)
        return key

    def preload(self, clips: list[tuple[np.ndarray, int]]) -> None:
        """Send clips the call may play (each at most once)."""
        for samples, sr in clips:
            if self.controls.quit.is_set():
                return
            self._clip(samples, sr)

    def speak(self, samples: np.ndarray, sr: int) -> float:
        """Play the line; return when the page has played it (or the call is quit)."""
        from voice_sim.session import Quit

        key = self._clip(samples, sr)
        self.controls.played.clear()
        started = time.perf_counter()
        self.send({"type": "play", "key": key.decode()})
        end = started + len(samples) / sr + PLAY_SLACK_S
        while not self.controls.played.wait(0.05):
            if self.controls.poll() == "quit":
                raise Quit()
            if time.perf_counter() > end:
                break  # a page that never reports playback must not hang the call
        return started


class WebTrainee:
    """The trainee in the browser: one answer per turn from the streamed microphone,
    ended by the turn detector, by Enter or the button, or by quitting."""

    def __init__(self, mic: StreamedMic, engine: Engine, config: TurnConfig,
                 controls: Controls, send: Send) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.mic, self.engine, self.config = mic, engine, config
        self.controls, self.send = controls, send
        self._analysis = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-sim-prep")

    def answer(self, turn: int, line: Line, wav: Path) -> Answer | None:
        """Capture one answer (see :meth:`voice_sim.practice.LiveTrainee.answer`)."""
        from voice_sim.delivery import Preparer
        from voice_sim.listen import capture_answer
        from voice_sim.session import Answer, Quit

        self.send({"type": "listening", "turn": turn})
        prep = Preparer(self._analysis)
        # As in the terminal: the next line is planned on the words so far and confirmed
        # on the final transcript, whose decode starts once the reply sounds.
        go = threading.Event()
        got = capture_answer(
            as_microphone(self.mic), self.engine, self.config, sink=wav, keys=self.controls,
            on_caption=lambda text: self.send({"type": "caption", "text": text}),
            on_end=prep.on_end, on_pause=prep.on_pause, wait_final=False, final_after=go)
        if got.reason == "quit":
            raise Quit()
        self.send({"type": "heard", "turn": turn, "reason": got.reason, "why": got.end_why})
        transcript, final_at, pending = got.transcript, got.final_at, got.pending
        if pending is not None and not got.partial_covers:
            # The words so far stop short of the answer's end: nothing to plan on.
            go.set()
            transcript, final_at, pending = pending.result(), time.perf_counter(), None
        return Answer(samples=got.samples, wav=wav, transcript=transcript,
                      ended_at=got.ended_at, final_at=final_at, end_reason=got.reason,
                      source="browser microphone", prepared=prep.future, pending=pending,
                      partial=got.partial, final_go=go if pending is not None else None,
                      speech_end_at=got.speech_end_at)


def capture_baseline(mic: StreamedMic, engine: Engine, config: TurnConfig,
                     controls: Controls) -> tuple[np.ndarray, Baseline | None, dict[str, Any]]:
    """Record the calm reading in the page: its samples, the baseline (None when no speech
    was heard) and the level check the page shows (``too quiet``, ``clipped`` or ``fine``)."""
    from dataclasses import replace

    from voice_sim.delivery import Baseline
    from voice_sim.listen import capture_answer
    from voice_sim.persona_cli import check_take
    from voice_sim.session import Quit

    if config.no_answer_s is None:
        config = replace(config, no_answer_s=BASELINE_WAIT_S)
    got = capture_answer(as_microphone(mic), engine, config, keys=controls)
    if got.reason == "quit":
        raise Quit()
    take = check_take(got.samples)
    problem = take.problem or ""
    verdict = ("clipped" if problem.startswith("clipping")
               else "too quiet" if problem.startswith(("too quiet", "silence"))
               else "fine")
    if not got.heard_speech and verdict == "fine":
        verdict = "too quiet"
    baseline = (Baseline.from_audio(got.samples, got.transcript)
                if got.heard_speech and verdict != "too quiet" else None)
    level = {"type": "level_check", "verdict": verdict, "peak_dbfs": round(take.peak_dbfs, 1),
             "advice": take.advice if verdict != "fine" else "",
             "heard": got.text}
    return got.samples, baseline, level


@dataclass(frozen=True)
class CallSetup:
    """What the page chose before the call."""

    persona: Persona
    engine: Engine
    baseline: Baseline | None
    baseline_source: str | None
    coach: str
    """``live`` (a hint after each turn, shown in the page) or ``after``."""
    out_root: Path
    rubric: Any = None


def run_web_call(setup: CallSetup, mic: StreamedMic, controls: Controls, send: Send,
                 limits: CallLimits) -> SessionResult:
    """The call, exactly as ``practice`` runs it, then the report and the history entry."""
    from voice_sim.practice import after_call
    from voice_sim.session import CallEvents, CallOptions, run_call

    config = limits.turn_config()
    options = CallOptions(engine=setup.engine, baseline=setup.baseline,
                          baseline_source=setup.baseline_source, rubric=setup.rubric,
                          coach=setup.coach, out_root=setup.out_root, mode="practice")

    def on_line(line: Line, mood: float) -> None:
        send({"type": "line", "id": line.id, "text": line.text, "mood": round(mood, 1),
              "end": line.end})

    def on_turn(turn: Any) -> None:
        from voice_sim.scorecard import turn_taking

        stages = turn.timing.stages() if turn.timing is not None else {}
        send({"type": "turn", "index": turn.index, "transcript": turn.transcript.text,
              "mood": round(turn.move.mood_after, 1), "score": turn.score.score,
              "steps": sorted(turn.content.ids),
              "stages_ms": {k: round(1000 * v, 1) for k, v in stages.items()},
              # As the scorecard says them (the page's speaker plays lines whole, so
              # today there is neither talking over nor giving way to show).
              "turn_taking": turn_taking(turn.record)})

    def on_hint(hint: str) -> None:
        send({"type": "hint", "text": hint})

    events = CallEvents(on_line=on_line, on_turn=on_turn, on_hint=on_hint)
    trainee = WebTrainee(mic, setup.engine, config, controls, send)
    speaker = WebSpeaker(send, controls)

    def preload() -> None:
        try:
            speaker.preload(line_clips(setup.persona))
        except Exception:
            return  # only a head start: a line that fails here is sent (or fails) when due

    threading.Thread(target=preload, daemon=True, name="voice-sim-preload").start()
    result = run_call(setup.persona, trainee, speaker, options, events)
    after_call(result.dir, result.record)
    return result
