"""A fake call page: the browser's loudspeaker and microphone, and the room between them.

What :mod:`voice_sim.serve_call` sends (clips, ``play``, ``stop``, ``stop_at``) is
played in real time on the page's own clock; every 20 ms a frame of its microphone is
pushed to the :class:`~voice_sim.serve_call.StreamedMic` as the page's worklet sends
it: quiet room noise, plus the trainee's speech where a test places it, plus (with
``echo``) what the page's speaker played ``echo_delay_s`` earlier at that gain, the
acoustic path from a laptop's speaker into its microphone. The page answers ``playing``
and ``played`` as call.js does. Only the hardware is fake: the server side under test
is the real one.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf

from voice_sim.audio import SAMPLE_RATE

FRAME = 320


@dataclass
class Played:
    """One line as the page played it."""

    n: int
    samples: np.ndarray
    start_s: float
    """Page seconds when it started."""
    end_s: float | None = None
    """Page seconds when it stopped (None: still playing)."""
    stop_asked_s: float | None = None
    """Page seconds when ``stop`` or ``stop_at`` arrived."""
    at: int = 0
    """Samples played so far."""
    end: int = field(default=0)
    """Sample it ends at."""

    @property
    def played_s(self) -> float:
        return self.at / SAMPLE_RATE


class FakePage:
    """The page's speaker and microphone in real time (start with ``with``)."""

    def __init__(self, mic: Any, *, echo: float = 0.0, echo_delay_s: float = 0.08,
                 room_dbfs: float = -65.0, seed: int = 0) -> None:
        self.mic = mic
        self.audio: Any = None
        """The server's voice_sim.serve_call.PageAudio, told ``playing``/``played``."""
        self.echo = echo
        self.delay = round(echo_delay_s * SAMPLE_RATE)
        self.room = 10 ** (room_dbfs / 20)
        self.rng = np.random.default_rng(seed)
        self.clips: dict[str, np.ndarray] = {}
        self.played: list[Played] = []
        self.messages: list[dict[str, Any]] = []
        self._talk: list[tuple[int, float, np.ndarray]] = []
        self._voice: list[tuple[int, np.ndarray]] = []
        self._out = np.zeros(0, np.float32)
        """What the speaker played, for the echo (the last second)."""
        self._lock = threading.Lock()
        self._queue: list[dict[str, Any]] = []
        self._frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-page")

    # --- what the server sends -------------------------------------------------------

    def send(self, msg: dict[str, Any] | bytes) -> None:
        if isinstance(msg, bytes):
            data, sr = sf.read(io.BytesIO(msg[16:]), dtype="float32")
            assert sr == SAMPLE_RATE, sr
            self.clips[msg[:16].decode()] = data
            return
        self.messages.append(msg)
        if msg.get("type") in ("play", "stop", "stop_at"):
            with self._lock:
                self._queue.append(msg)

    # --- what the test places --------------------------------------------------------

    def talk_during(self, line: int, at_s: float, samples: np.ndarray) -> None:
        """The trainee says ``samples`` from ``at_s`` seconds into the ``line``-th line
        the page plays (1: the first)."""
        self._talk.append((line, at_s, samples.astype(np.float32)))

    def now_s(self) -> float:
        return self._frames * FRAME / SAMPLE_RATE

    # --- the page's clock ------------------------------------------------------------

    def __enter__(self) -> FakePage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _tell(self, msg: dict[str, Any]) -> None:
        if self.audio is not None:
            self.audio.on_message(msg)

    def _handle(self, msg: dict[str, Any]) -> None:
        cur = self.played[-1] if self.played and self.played[-1].end_s is None else None
        if msg["type"] == "play":
            clip = self.clips[msg["key"]]
            p = Played(n=msg["n"], samples=clip, start_s=self.now_s(), end=len(clip))
            self.played.append(p)
            for line, at_s, s in self._talk:
                if line == len(self.played):
                    self._voice.append((self._frames * FRAME + round(at_s * SAMPLE_RATE), s))
            self._tell({"type": "playing", "n": p.n, "latency_s": 0.02})
        elif cur is not None and msg.get("n") == cur.n:
            cur.stop_asked_s = self.now_s()
            if msg["type"] == "stop":
                cur.end = cur.at
            else:
                cur.end = max(cur.at, min(cur.end, round(msg["at_s"] * SAMPLE_RATE)))

    def _frame(self) -> np.ndarray:
        out = np.zeros(FRAME, np.float32)
        cur = self.played[-1] if self.played and self.played[-1].end_s is None else None
        if cur is not None:
            k = min(FRAME, cur.end - cur.at)
            out[:k] = cur.samples[cur.at:cur.at + k]
            cur.at += k
            if cur.at >= cur.end:
                cur.end_s = self.now_s() + k / SAMPLE_RATE
                self._tell({"type": "played", "n": cur.n, "played_s": cur.played_s,
                            "latency_s": 0.02})
        self._out = np.concatenate([self._out, out])[-SAMPLE_RATE:]
        start = self._frames * FRAME
        mic = (self.rng.standard_normal(FRAME) * self.room).astype(np.float32)
        if self.echo:
            a = len(self._out) - FRAME - self.delay
            if a >= 0:
                mic += self.echo * self._out[a:a + FRAME]
        for at, s in self._voice:
            lo, hi = max(start, at), min(start + FRAME, at + len(s))
            if lo < hi:
                mic[lo - start:hi - start] += s[lo - at:hi - at]
        return mic

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            with self._lock:
                todo, self._queue = self._queue, []
            for msg in todo:
                self._handle(msg)
            mic = self._frame()
            self.mic.push((np.clip(mic, -1, 1) * 32767).astype("<i2").tobytes())
            self._frames += 1
            wait = t0 + self._frames * FRAME / SAMPLE_RATE - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
