"""One call in the browser: a web trainee and a web speaker for :func:`run_call`.

The browser streams its microphone as 16 kHz mono 16-bit PCM over a WebSocket;
:class:`StreamedMic` turns those frames into the same :class:`~voice_sim.listen.Block`
stream a sound card gives, so :func:`voice_sim.listen.capture_answer` — its turn
detector, early final, captions and incremental WAV — runs unchanged on it (whatever
detector ``listen`` uses, the web path uses too). :class:`PageAudio` sends each
persona line to the page as WAV bytes once; the speaker is ``practice``'s
:class:`~voice_sim.bargein.ListeningSpeaker`, each line a :class:`WebPlayer` the page
plays and stops on the server's word, so the trainee talking over the customer stops
them in the browser as on a sound card (the line's echo from the page's speaker
cancelled first) and the answer given back to the microphone.

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
from voice_sim.listen import Block, BlockSource
from voice_sim.practice import LiveTrainee

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

STOP_ACK_S = 0.5
"""Seconds a line cut short waits for the page to say it has stopped."""


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


class StreamedMic(BlockSource):
    """The browser's microphone, as :func:`capture_answer` reads a sound card.

    :meth:`push` (event-loop thread) takes 16-bit little-endian PCM at SAMPLE_RATE in
    any frame size and queues it as 20 ms blocks stamped with their arrival time. Read,
    drained and given back as a :class:`~voice_sim.listen.Microphone` is (the speaker
    listens through it while a line plays: voice_sim.bargein).
    """

    block_s = FRAME / SAMPLE_RATE
    name = "browser microphone"

    def __init__(self, ahead_s: float = AHEAD_S) -> None:
        import numpy as np

        super().__init__()
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
            self._next(0)
        return True

    def queued_s(self) -> float:
        """Seconds of audio received and not read yet (given-back blocks aside)."""
        return self._q.qsize() * self.block_s

    def _next(self, timeout: float) -> Block | None:
        try:
            return self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return None


def as_microphone(mic: StreamedMic) -> Microphone:
    """``mic`` where :func:`capture_answer` (or the listening speaker) wants a
    :class:`~voice_sim.listen.Microphone`: they use only what a
    :class:`~voice_sim.listen.BlockSource` has, with ``block_s`` and ``name``."""
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


class PageAudio:
    """The page's loudspeaker.

    A clip goes to the page once, as one binary message (its :func:`clip_key`, then
    WAV bytes), and is decoded there ahead of time; saying a line is then a tiny
    ``play`` message, so neither encoding, transfer nor decoding sits between the end
    of the trainee's answer and the customer's reply. :meth:`preload` sends a call's
    lines while the opening plays. :meth:`player` is the listening speaker's player
    factory (voice_sim.bargein): each line is a :class:`WebPlayer` the page plays, and
    stops when the trainee talks over it.
    """

    def __init__(self, send: Send, controls: Controls) -> None:
        self.send = send
        self.controls = controls
        self._sent: set[bytes] = set()
        self._lock = threading.Lock()
        self._n = 0
        self.current: WebPlayer | None = None
        """The line playing, or last played."""

    def clip(self, samples: np.ndarray, sr: int) -> bytes:
        """The clip's key, sending the clip first if the page does not have it."""
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
            self.clip(samples, sr)

    def player(self, samples: np.ndarray, sr: int) -> WebPlayer:
        """A line to play in the page (started by :meth:`WebPlayer.start`)."""
        self._n += 1
        self.current = WebPlayer(self, samples, sr, self._n)
        return self.current

    def on_message(self, msg: dict[str, Any]) -> None:
        """The page's ``playing`` or ``played`` (event-loop thread); a message without
        ``n`` is about the latest line."""
        p = self.current
        n = msg.get("n")
        if p is None or (n is not None and n != p.n):
            return  # an older line's news: that line is over
        p.heard_from_page(msg)


class _Over:
    """A :class:`WebPlayer`'s ``done``: set when the page says the line has played, and
    treated as set once the call is quit or the page is late by PLAY_SLACK_S (a page
    that never reports must not hang the call)."""

    def __init__(self, controls: Controls) -> None:
        self._ev = threading.Event()
        self.controls = controls
        self.deadline = float("inf")

    def set(self) -> None:
        self._ev.set()

    def is_set(self) -> bool:
        return (self._ev.is_set() or self.controls.quit.is_set()
                or time.perf_counter() > self.deadline)

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.perf_counter() + timeout
        while not self.is_set():
            left = 0.05 if end is None else min(0.05, end - time.perf_counter())
            if left <= 0:
                return False
            self._ev.wait(left)
        return True


class WebPlayer:
    """One line played in the page, driven as :class:`voice_sim.devices.Player` is (the
    same attributes and methods): ``play`` starts it, ``stop`` cuts it off now, and
    ``stop_at`` ends it at a sample of the line (the page schedules it sample-exact on
    its audio clock). The page says ``playing`` when it starts and ``played`` when it
    ends (cut short or not), with its output latency.

    :attr:`pos` counts from the page's ``playing`` on the wall clock (the page plays in
    real time); :attr:`stopped_at` is when the page said it had stopped, plus its
    output latency, so the overlap recorded includes everything the trainee heard.
    """

    def __init__(self, page: PageAudio, samples: np.ndarray, sr: int, n: int) -> None:
        import numpy as np

        self.page, self.n = page, n
        self.data = np.asarray(samples, dtype=np.float32)
        self.sr = int(sr)
        self.done = _Over(page.controls)
        self.stopped_at: float | None = None
        """``perf_counter()`` when playback was cut short (None: it ran to its end)."""
        self.output_latency_s = 0.0
        """Seconds from the page's start to sound at its speaker, as the page reports."""
        self._end = len(self.data)
        self._playing_at: float | None = None
        self._stop_sent: float | None = None
        self._ack = threading.Event()

    @property
    def pos(self) -> int:
        """Samples of the line played so far (0 until the page says it is playing)."""
        if self._playing_at is None:
            return 0
        return min(self._end, round((time.perf_counter() - self._playing_at) * self.sr))

    @property
    def position_s(self) -> float:
        """Seconds of the line played so far."""
        return self.pos / self.sr

    def start(self) -> WebPlayer:
        """Ask the page to play the line; returns at once."""
        if not len(self.data):
            self.done.set()
            return self
        key = self.page.clip(self.data, self.sr)
        self.done.deadline = time.perf_counter() + len(self.data) / self.sr + PLAY_SLACK_S
        self.page.send({"type": "play", "key": key.decode(), "n": self.n})
        return self

    def heard_from_page(self, msg: dict[str, Any]) -> None:
        """The page's ``playing`` (the line started) or ``played`` (it ended)."""
        at = time.perf_counter()
        latency = msg.get("latency_s")
        if isinstance(latency, int | float) and 0 <= latency < 5:
            self.output_latency_s = float(latency)
        if msg.get("type") == "playing" and self._playing_at is None:
            self._playing_at = at
        elif msg.get("type") == "played":
            if self._stop_sent is not None:
                self.stopped_at = at + self.output_latency_s
            self._ack.set()
            self.done.set()

    def stop(self) -> None:
        """Cut the line off now."""
        if self.done.is_set():
            return
        self._end = min(self._end, self.pos)
        self._stop_sent = self.stopped_at = time.perf_counter()
        self.page.send({"type": "stop", "n": self.n})
        self.done.set()

    def stop_at(self, sample: int) -> None:
        """End the line at ``sample`` (of the line) instead of its end."""
        if sample < self._end:
            self._end = max(self.pos, sample)
            self.stopped_at = time.perf_counter()  # refined by the caller if it matters
            self.page.send({"type": "stop_at", "n": self.n, "at_s": self._end / self.sr})

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the line is over; True when it is."""
        return self.done.wait(timeout)

    def close(self) -> None:
        """Cut short, wait (briefly) for the page to say the sound has stopped, for
        :attr:`stopped_at`."""
        if self._stop_sent is not None:
            self._ack.wait(STOP_ACK_S)


class WebTrainee(LiveTrainee):
    """The trainee in the browser: one answer per turn from the streamed microphone,
    ended by the turn detector, by Enter or the button, or by quitting; an answer the
    persona's reply cut off goes on (:meth:`go_on`) as in ``practice``."""

    source = "browser microphone"

    def __init__(self, mic: StreamedMic, engine: Engine, config: TurnConfig,
                 controls: Controls, send: Send) -> None:
        super().__init__(as_microphone(mic), engine, config, keys=controls)
        self.controls, self.send = controls, send
        self._turn = 0

    def answer(self, turn: int, line: Line, wav: Path) -> Answer | None:
        """Capture one answer (see :meth:`voice_sim.practice.LiveTrainee.answer`)."""
        self._turn = turn
        self.send({"type": "listening", "turn": turn})
        return self._capture(wav)

    def _caption(self, text: str) -> None:
        self.send({"type": "caption", "text": text})

    def _heard(self, got: Any) -> None:
        self.send({"type": "heard", "turn": self._turn, "reason": got.reason,
                   "why": got.end_why})


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
                 limits: CallLimits, audio: PageAudio | None = None) -> SessionResult:
    """The call, exactly as ``practice`` runs it (the persona listens while it talks, so
    the trainee can interrupt: voice_sim.bargein), then the report and the history
    entry. ``audio`` is the page's loudspeaker (the socket routes the page's
    ``playing``/``played`` to it); None: a new one on ``send``."""
    from voice_sim.bargein import ListeningSpeaker
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
        cut = turn.record.interruption
        send({"type": "turn", "index": turn.index, "transcript": turn.transcript.text,
              "mood": round(turn.move.mood_after, 1), "score": turn.score.score,
              "steps": sorted(turn.content.ids),
              "stages_ms": {k: round(1000 * v, 1) for k, v in stages.items()},
              "interruption": None if cut is None else cut.to_json(),
              "turn_taking": turn_taking(turn.record)})

    def on_yield(gave_way: Any) -> None:
        send({"type": "gave_way", **gave_way.to_json()})

    def on_hint(hint: str) -> None:
        send({"type": "hint", "text": hint})

    events = CallEvents(on_line=on_line, on_turn=on_turn, on_hint=on_hint, on_yield=on_yield)
    trainee = WebTrainee(mic, setup.engine, config, controls, send)
    page = audio if audio is not None else PageAudio(send, controls)
    speaker = ListeningSpeaker(as_microphone(mic), when_interrupted=setup.persona.when_interrupted,
                               player=page.player)

    def preload() -> None:
        try:
            page.preload(line_clips(setup.persona))
        except Exception:
            return  # only a head start: a line that fails here is sent (or fails) when due

    threading.Thread(target=preload, daemon=True, name="voice-sim-preload").start()
    result = run_call(setup.persona, trainee, speaker, options, events)
    after_call(result.dir, result.record)
    return result
