"""A fake ``sounddevice`` for tests: a scripted microphone and a recording speaker.

:class:`FakeSoundDevice` stands in for the ``sounddevice`` module at its own level:
``query_devices``, ``default``, ``InputStream``, ``OutputStream``, ``play``, ``rec``,
``wait``, ``stop`` and the exception classes behave like the real ones, callbacks
included, each stream on its own thread and paced in real time times ``speed``.

The microphone plays a script: background noise, and a queue of answers, each fed
``delay_s`` after the persona's line (a playback) has finished, or straight away.
Everything sent to the speaker is kept in :attr:`FakeSoundDevice.played` with the
times it started, so a test can assert what came out and when.

Install it with :func:`installed` (a context manager) or :func:`install` (pytest's
``monkeypatch``); both put it in ``sys.modules["sounddevice"]``, which is where
every lazy ``import sounddevice`` in voice-sim looks.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voice_sim.audio import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np
    import pytest

DEFAULT_BLOCK_S = 0.02
"""Seconds per block when a stream is opened with ``blocksize=0`` or ``None``."""


class PortAudioError(Exception):
    """Raised like sounddevice's: bad device, bad settings, or a stream error."""


class CallbackStop(Exception):
    """Raise in a callback to stop the stream after the current block."""


class CallbackAbort(Exception):
    """Raise in a callback to abort the stream at once."""


class CallbackFlags:
    """Over/underflow flags passed to callbacks (always clear here: the fake never drops)."""

    input_underflow = False
    input_overflow = False
    output_underflow = False
    output_overflow = False
    priming_output = False

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<sounddevice.CallbackFlags: no flags set>"


@dataclass(frozen=True)
class FakeDevice:
    """One entry of the fake device table."""

    name: str
    inputs: int
    outputs: int
    samplerate: float = 48_000.0
    """Hertz: the device's default rate (streams may ask for any rate)."""


DEFAULT_DEVICES = (
    FakeDevice("Fake Microphone", inputs=1, outputs=0),
    FakeDevice("Fake Speaker", inputs=0, outputs=2),
)


@dataclass
class Playback:
    """What one output stream sent to the speaker."""

    device: int
    samplerate: int
    started_at: float
    """``time.perf_counter()`` when the stream pulled its first block."""
    start_s: float
    """Fake-clock seconds (see :meth:`FakeSoundDevice.now`) of the first block."""
    sound_at: float | None = None
    """``perf_counter()`` when the first block holding sound was pulled (None: all silent)."""
    end_s: float | None = None
    """Fake-clock seconds when the last block has finished playing (None while playing)."""
    blocks: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def samples(self) -> np.ndarray:
        """Everything played, mono float32 (channels averaged)."""
        import numpy as np

        if not self.blocks:
            return np.zeros(0, np.float32)
        return np.concatenate(self.blocks).astype(np.float32)

    @property
    def duration_s(self) -> float:
        """Seconds of audio pulled so far."""
        return sum(len(b) for b in self.blocks) / self.samplerate


@dataclass
class _Answer:
    samples: np.ndarray
    delay_s: float
    after_playback: bool
    start_s: float | None = None
    """Fake-clock seconds when feeding began."""
    end_s: float | None = None
    pos: int = 0
    """Samples fed so far."""


class _Default:
    """``sounddevice.default``: device is an [input, output] pair."""

    def __init__(self) -> None:
        self.device: list[int | str | None] = [0, 1]
        self.samplerate: float | None = None
        self.channels: list[int | None] = [None, None]
        self.dtype: list[str] = ["float32", "float32"]
        self.latency: list[str] = ["high", "high"]
        self.blocksize = 0
        self.extra_settings: list[Any] = [None, None]
        self.prime_output_buffers_using_stream_callback = False

    def reset(self) -> None:
        """Back to the factory defaults."""
        self.__init__()  # type: ignore[misc]


class FakeSoundDevice:
    """A stand-in for the ``sounddevice`` module (see the module docstring).

    ``speed`` > 1 runs every stream faster than real time (audio content and sample
    counts are unchanged, only the pacing). ``noise_dbfs`` is the level of the
    microphone's background noise (None: digital silence). ``echo`` mixes that
    fraction of what the speaker plays into the microphone, like a laptop without
    echo cancellation. ``echo_gap`` (start, seconds) loses that many seconds of each
    playback's echo ``start`` fake seconds into it, as a speaker buffer that ran dry
    does: the rest of the line comes back that much later, for good.
    """

    PortAudioError = PortAudioError
    CallbackStop = CallbackStop
    CallbackAbort = CallbackAbort
    CallbackFlags = CallbackFlags
    __version__ = "0.0-fake"

    def __init__(
        self,
        answers: Sequence[np.ndarray] = (),
        *,
        speed: float = 1.0,
        delay_s: float = 0.3,
        after_playback: bool = True,
        noise_dbfs: float | None = -70.0,
        echo: float = 0.0,
        echo_gap: tuple[float, float] | None = None,
        devices: Sequence[FakeDevice] = DEFAULT_DEVICES,
        seed: int = 0,
    ) -> None:
        import numpy as np

        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = float(speed)
        self.noise_dbfs = noise_dbfs
        self.echo = float(echo)
        self.echo_gap = echo_gap
        self.devices = tuple(devices)
        self.default = _Default()
        self.default.device = [
            next((i for i, d in enumerate(self.devices) if d.inputs), None),
            next((i for i, d in enumerate(self.devices) if d.outputs), None),
        ]
        self.played: list[Playback] = []
        """Every playback, in the order the output streams started."""
        self.mic_blocks = 0
        """Blocks the microphone has delivered."""
        self.callback_errors: list[BaseException] = []
        """Exceptions raised by user callbacks (each aborted its stream, as in sounddevice)."""
        self._lock = threading.RLock()
        self._rng = np.random.default_rng(seed)
        self._t0 = time.perf_counter()
        self._answers: list[_Answer] = []
        self._next_answer = 0
        self._prev_answer_end: float | None = None
        self._first_mic_s: float | None = None
        self._playing: set[_FakeStream] = set()
        self._last_play_end: float | None = None
        self._streams: set[_FakeStream] = set()
        self._last_call: _Call | None = None
        for a in answers:
            self.add_answer(a, delay_s=delay_s, after_playback=after_playback)

    # --- the script -------------------------------------------------------------------

    def now(self) -> float:
        """The fake clock: seconds since creation, times ``speed``."""
        return (time.perf_counter() - self._t0) * self.speed

    def add_answer(self, samples: np.ndarray, *, sr: int = SAMPLE_RATE, delay_s: float = 0.3,
                   after_playback: bool = True) -> None:
        """Queue an answer for the microphone.

        With ``after_playback`` it starts ``delay_s`` after a playback that ends after
        the previous answer; otherwise ``delay_s`` after the previous answer (or after
        the first input stream starts). ``samples`` are mono float at ``sr`` Hz.
        """
        import numpy as np

        from voice_sim.audio import resample

        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if sr != SAMPLE_RATE:
            x = resample(x, sr, SAMPLE_RATE)
        with self._lock:
            self._answers.append(_Answer(x, float(delay_s), after_playback))

    def withdraw_answer(self) -> bool:
        """Take back the answer queued last, unless it has begun; True when it was (a
        script that queued an answer to a line the call then took back)."""
        with self._lock:
            if len(self._answers) > self._next_answer and self._answers[-1].start_s is None:
                self._answers.pop()
                return True
            return False

    @property
    def answers_fed(self) -> list[tuple[float, float | None]]:
        """(start, end) fake-clock seconds of each answer fed so far."""
        with self._lock:
            return [(a.start_s, a.end_s) for a in self._answers if a.start_s is not None]

    @property
    def answers_left(self) -> int:
        """Answers queued and not yet begun."""
        with self._lock:
            return len(self._answers) - self._next_answer

    def speaker_audio(self) -> np.ndarray:
        """Everything played so far, back to back, mono float32."""
        import numpy as np

        with self._lock:
            parts = [p.samples for p in self.played]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    # --- the sounddevice API ----------------------------------------------------------

    def query_devices(self, device: int | str | None = None,
                      kind: str | None = None) -> Any:
        """Like ``sounddevice.query_devices``: the whole list, or one device's dict."""
        if kind not in ("input", "output", None):
            raise ValueError(f"Invalid kind: {kind!r}")
        if device is None and kind is None:
            return _DeviceList(self._info(i) for i in range(len(self.devices)))
        idx = self._device_id(device, kind)
        info = self._info(idx)
        if kind and info[f"max_{kind}_channels"] < 1:
            raise ValueError(f"Not an {kind} device: {info['name']!r}")
        return info

    def query_hostapis(self, index: int | None = None) -> Any:
        """One fake host API holding every device."""
        api = {"name": "Fake", "devices": list(range(len(self.devices))),
               "default_input_device": self.default.device[0] if self.default.device[0]
               is not None else -1,
               "default_output_device": self.default.device[1] if self.default.device[1]
               is not None else -1}
        if index is None:
            return (api,)
        if index != 0:
            raise PortAudioError(f"Error querying host API {index}")
        return api

    def check_input_settings(self, device: int | str | None = None, channels: int | None = None,
                             dtype: Any = None, extra_settings: Any = None,
                             samplerate: float | None = None) -> None:
        """Raise PortAudioError when the settings cannot work (like sounddevice)."""
        self._check_settings("input", device, channels, dtype)

    def check_output_settings(self, device: int | str | None = None, channels: int | None = None,
                              dtype: Any = None, extra_settings: Any = None,
                              samplerate: float | None = None) -> None:
        """Raise PortAudioError when the settings cannot work (like sounddevice)."""
        self._check_settings("output", device, channels, dtype)

    def InputStream(self, samplerate: float | None = None, blocksize: int | None = None,
                    device: int | str | None = None, channels: int | None = None,
                    dtype: Any = None, latency: Any = None, extra_settings: Any = None,
                    callback: Callable[..., None] | None = None,
                    finished_callback: Callable[[], None] | None = None,
                    clip_off: Any = None, dither_off: Any = None, never_drop_input: Any = None,
                    prime_output_buffers_using_stream_callback: Any = None) -> _FakeStream:
        """A microphone stream fed from the script (callback or blocking ``read``)."""
        return _FakeStream(self, "input", samplerate, blocksize, device, channels, dtype,
                           callback, finished_callback)

    def OutputStream(self, samplerate: float | None = None, blocksize: int | None = None,
                     device: int | str | None = None, channels: int | None = None,
                     dtype: Any = None, latency: Any = None, extra_settings: Any = None,
                     callback: Callable[..., None] | None = None,
                     finished_callback: Callable[[], None] | None = None,
                     clip_off: Any = None, dither_off: Any = None, never_drop_input: Any = None,
                     prime_output_buffers_using_stream_callback: Any = None) -> _FakeStream:
        """A speaker stream whose output is recorded (callback or blocking ``write``)."""
        return _FakeStream(self, "output", samplerate, blocksize, device, channels, dtype,
                           callback, finished_callback)

    def play(self, data: Any, samplerate: float | None = None, mapping: Any = None,
             blocking: bool = False, loop: bool = False, **kwargs: Any) -> None:
        """Play an array (like ``sounddevice.play``); ``wait()`` blocks until done."""
        import numpy as np

        self.stop()
        x = np.asarray(data)
        if x.dtype == np.float64:
            x = x.astype(np.float32)
        frames = x.reshape(len(x), -1)
        call = _Call(frames, loop=loop)
        stream = self.OutputStream(samplerate=samplerate, channels=frames.shape[1],
                                   dtype=frames.dtype, callback=call.out_callback,
                                   finished_callback=call.finished, **_stream_kwargs(kwargs))
        call.start(self, stream, blocking)

    def rec(self, frames: int | None = None, samplerate: float | None = None,
            channels: int | None = None, dtype: Any = None, out: np.ndarray | None = None,
            mapping: Any = None, blocking: bool = False, **kwargs: Any) -> np.ndarray:
        """Record into an array (like ``sounddevice.rec``); ``wait()`` blocks until full."""
        import numpy as np

        self.stop()
        if out is None:
            if frames is None:
                raise TypeError("frames must be specified")
            ch = channels or self.default.channels[0] or 1
            out = np.zeros((int(frames), ch), dtype=dtype or self.default.dtype[0])
        call = _Call(out, loop=False)
        stream = self.InputStream(samplerate=samplerate, channels=out.shape[1], dtype=out.dtype,
                                  callback=call.in_callback, finished_callback=call.finished,
                                  **_stream_kwargs(kwargs))
        call.start(self, stream, blocking)
        return out

    def wait(self, ignore_errors: bool = True) -> None:
        """Block until the last ``play``/``rec`` has finished."""
        if self._last_call is not None:
            self._last_call.wait()

    def stop(self, ignore_errors: bool = True) -> None:
        """Stop the last ``play``/``rec``."""
        if self._last_call is not None:
            self._last_call.stream.stop()
            self._last_call.stream.close()

    def get_status(self) -> Any:
        """Flags of the last ``play``/``rec`` (never set)."""
        if self._last_call is None:
            raise RuntimeError("play()/rec()/playrec() was not called yet")
        return CallbackFlags()

    def get_stream(self) -> _FakeStream:
        """The stream of the last ``play``/``rec``."""
        if self._last_call is None:
            raise RuntimeError("play()/rec()/playrec() was not called yet")
        return self._last_call.stream

    def sleep(self, msec: int) -> None:
        """Sleep ``msec`` fake milliseconds."""
        time.sleep(msec / 1000 / self.speed)

    def get_portaudio_version(self) -> tuple[int, str]:
        """A version tuple that says it is the fake."""
        return (0, "fake PortAudio (tests/fake_audio.py)")

    def close_all(self) -> None:
        """Stop every stream still running (called when the fake is uninstalled)."""
        with self._lock:
            streams = list(self._streams)
        for s in streams:
            s.abort()
            s.close()

    # --- internals ----------------------------------------------------------------------

    def _info(self, i: int) -> dict[str, Any]:
        d = self.devices[i]
        return {"name": d.name, "index": i, "hostapi": 0,
                "max_input_channels": d.inputs, "max_output_channels": d.outputs,
                "default_low_input_latency": 0.01, "default_low_output_latency": 0.01,
                "default_high_input_latency": 0.04, "default_high_output_latency": 0.04,
                "default_samplerate": d.samplerate}

    def _device_id(self, device: int | str | None, kind: str | None) -> int:
        """Resolve like sounddevice: an index, or space-separated parts of the name."""
        if device is None:
            pair = self.default.device
            device = pair[0] if kind == "input" else pair[1] if kind == "output" else pair[0]
            if device is None:
                raise PortAudioError(f"Error querying device -1 (no default {kind} device)")
        if isinstance(device, int):
            if not 0 <= device < len(self.devices):
                raise PortAudioError(f"Error querying device {device}")
            return device
        parts = device.lower().split()
        matches = []
        for i, d in enumerate(self.devices):
            if kind and getattr(d, "inputs" if kind == "input" else "outputs") < 1:
                continue
            full, pos = f"{d.name}, Fake".lower(), 0
            for part in parts:
                pos = full.find(part, pos)
                if pos < 0:
                    break
                pos += len(part)
            else:
                matches.append(i)
        what = kind or "input/output"
        if not matches:
            raise ValueError(f"No {what} device matching {device!r}")
        if len(matches) > 1:
            raise ValueError(f"Multiple {what} devices found for {device!r}")
        return matches[0]

    def _check_settings(self, kind: str, device: int | str | None, channels: int | None,
                        dtype: Any) -> None:
        idx = self._device_id(device, kind)
        have = self._info(idx)[f"max_{kind}_channels"]
        if have < 1:
            raise PortAudioError(f"Not an {kind} device: {self.devices[idx].name!r}")
        if channels is not None and channels > have:
            raise PortAudioError(f"Error opening {kind} stream: Invalid number of channels "
                                 f"[PaErrorCode -9998]")
        _dtype(dtype)

    def _mic_block(self, frames: int, now: float) -> np.ndarray:
        """``frames`` microphone samples from fake-clock time ``now`` on.

        ``now`` is the block's nominal start (stream start + samples so far), not the
        wall clock, so an answer lands on the same sample however the threads are
        scheduled.
        """
        import numpy as np

        with self._lock:
            if self.noise_dbfs is None:
                block = np.zeros(frames, np.float32)
            else:
                amp = 10 ** (self.noise_dbfs / 20)
                block = (self._rng.standard_normal(frames) * amp).astype(np.float32)
            if self.echo and self._playing:
                for s in self._playing:
                    pb = s._playback
                    if (self.echo_gap is not None and pb is not None and not s._gapped
                            and now - pb.start_s >= self.echo_gap[0]):
                        s._gapped = True
                        gap = np.zeros(round(self.echo_gap[1] * SAMPLE_RATE), np.float32)
                        rest = s._echo_rest
                        s._echo_rest = gap if rest is None else np.concatenate([gap, rest])
                    block += self.echo * s.take_echo(frames)
            if self._first_mic_s is None:
                self._first_mic_s = now
            ans = self._current_answer(now)
            if ans is not None:
                if ans.start_s is None:
                    ans.start_s = now
                take = min(frames, len(ans.samples) - ans.pos)
                block[:take] += ans.samples[ans.pos:ans.pos + take]
                ans.pos += take
                if ans.pos >= len(ans.samples):
                    ans.end_s = now + take / SAMPLE_RATE
                    self._next_answer += 1
                    self._prev_answer_end = ans.end_s
            self.mic_blocks += 1
            return block

    def _current_answer(self, now: float) -> _Answer | None:
        if self._next_answer >= len(self._answers):
            return None
        ans = self._answers[self._next_answer]
        if ans.start_s is not None:
            return ans
        prev = self._prev_answer_end
        if ans.after_playback:
            # Wait for a persona line that ended after the previous answer.
            end = self._last_play_end
            if self._playing or end is None or (prev is not None and end < prev):
                return None
            due = end + ans.delay_s
        else:
            due = (prev if prev is not None else self._first_mic_s or 0.0) + ans.delay_s
        return ans if now >= due else None

    def _register(self, s: _FakeStream, *, running: bool) -> None:
        with self._lock:
            if running:
                self._streams.add(s)
            else:
                self._streams.discard(s)

    def _speaker_started(self, s: _FakeStream) -> Playback:
        with self._lock:
            pb = Playback(device=s.device, samplerate=int(s.samplerate),
                          started_at=time.perf_counter(), start_s=self.now())
            self.played.append(pb)
            self._playing.add(s)
            return pb

    def _speaker_stopped(self, s: _FakeStream, pb: Playback) -> None:
        with self._lock:
            pb.end_s = pb.start_s + pb.duration_s
            self._playing.discard(s)
            self._last_play_end = max(self._last_play_end or 0.0, pb.end_s)


class _DeviceList(tuple[dict[str, Any], ...]):
    """A tuple of device dicts that prints like sounddevice's table."""

    def __repr__(self) -> str:
        return "\n".join(f"  {d['index']} {d['name']}, Fake ({d['max_input_channels']} in, "
                         f"{d['max_output_channels']} out)" for d in self)


def _dtype(dtype: Any) -> Any:
    import numpy as np

    dt = np.dtype(dtype or "float32")
    if dt not in (np.dtype("float32"), np.dtype("int16"), np.dtype("int32"), np.dtype("float64"),
                  np.dtype("int8"), np.dtype("uint8")):
        raise PortAudioError(f"Invalid sample format: {dt}")
    return dt


def _stream_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in ("device", "blocksize", "latency")}


def _to_dtype(x: np.ndarray, dt: Any) -> np.ndarray:
    import numpy as np

    if dt.kind == "f":
        return x.astype(dt)
    info = np.iinfo(dt)
    scale = info.max if dt.kind == "i" else 127
    offset = 0 if dt.kind == "i" else 128
    return (np.clip(x, -1.0, 1.0) * scale + offset).astype(dt)


def _to_float(x: np.ndarray) -> np.ndarray:
    import numpy as np

    if x.dtype.kind == "f":
        return x.astype(np.float32)
    if x.dtype == np.uint8:
        return ((x.astype(np.float32) - 128) / 128).astype(np.float32)
    return (x.astype(np.float32) / np.iinfo(x.dtype).max).astype(np.float32)


class _FakeStream:
    """An input or output stream run by a thread of its own, paced by the fake clock."""

    def __init__(self, fake: FakeSoundDevice, kind: str, samplerate: float | None,
                 blocksize: int | None, device: int | str | None, channels: int | None,
                 dtype: Any, callback: Callable[..., None] | None,
                 finished_callback: Callable[[], None] | None) -> None:
        i = 0 if kind == "input" else 1
        self._fake = fake
        self.kind = kind
        self.device = fake._device_id(device if device is not None else fake.default.device[i],
                                      kind)
        info = fake._info(self.device)
        have = info[f"max_{kind}_channels"]
        if have < 1:
            raise PortAudioError(f"Error opening {kind.title()}Stream: Invalid number of "
                                 f"channels [PaErrorCode -9998]")
        self.channels = int(channels or fake.default.channels[i] or have)
        if self.channels > have:
            raise PortAudioError(f"Error opening {kind.title()}Stream: Invalid number of "
                                 f"channels [PaErrorCode -9998]")
        self.dtype = str(_dtype(dtype or fake.default.dtype[i]))
        self.samplerate = float(samplerate or fake.default.samplerate or info["default_samplerate"])
        self.blocksize = int(blocksize or fake.default.blocksize or 0)
        self._frames = self.blocksize or max(1, int(self.samplerate * DEFAULT_BLOCK_S))
        self.latency = 0.01
        self._callback = callback
        self._finished_callback = finished_callback
        self._thread: threading.Thread | None = None
        self._finish_lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self.closed = False
        self._playback: Playback | None = None
        self.last_out: np.ndarray | None = None
        self._echo_q: deque[np.ndarray] = deque()
        """What the stream played, not yet heard back by the microphone (the echo path
        is a steady delay: played samples come back in order, each once)."""
        self._echo_rest: np.ndarray | None = None
        self._gapped = False
        """The echo path lost FakeSoundDevice.echo_gap of this playback already."""
        self._started_s = 0.0
        self._frames_done = 0

    # sounddevice's properties
    @property
    def active(self) -> bool:
        """True while the stream is running."""
        return not self._done.is_set()

    @property
    def stopped(self) -> bool:
        """True when the stream is not running."""
        return self._done.is_set()

    @property
    def time(self) -> float:
        """The fake clock, seconds."""
        return self._fake.now()

    @property
    def cpu_load(self) -> float:
        """Always 0: the fake costs nothing worth reporting."""
        return 0.0

    @property
    def samplesize(self) -> int:
        """Bytes per sample."""
        import numpy as np

        return int(np.dtype(self.dtype).itemsize)

    @property
    def read_available(self) -> int:
        """Frames that ``read`` can return without waiting."""
        return self._frames

    @property
    def write_available(self) -> int:
        """Frames that ``write`` can take without waiting."""
        return self._frames

    def __enter__(self) -> _FakeStream:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()

    def start(self) -> None:
        """Start the stream (a thread calls the callback once per block)."""
        if self.closed:
            raise PortAudioError("Error starting stream: Stream is closed [PaErrorCode -9988]")
        if self.active:
            return
        self._stop.clear()
        self._done.clear()
        self._started_s = self._fake.now()
        self._frames_done = 0
        self._fake._register(self, running=True)
        if self.kind == "output":
            self._playback = self._fake._speaker_started(self)
        if self._callback is not None:
            self._thread = threading.Thread(target=self._run, name=f"fake-{self.kind}",
                                            daemon=True)
            self._thread.start()

    def stop(self, ignore_errors: bool = True) -> None:
        """Stop after the current block, then call ``finished_callback``."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._finish()

    def abort(self, ignore_errors: bool = True) -> None:
        """Stop at once (the same as ``stop`` here)."""
        self.stop()

    def close(self, ignore_errors: bool = True) -> None:
        """Stop and release the stream."""
        self.stop()
        self.closed = True

    def read(self, frames: int) -> tuple[np.ndarray, bool]:
        """Blocking read of ``frames`` microphone frames (paced by the fake clock)."""
        if self.kind != "input":
            raise PortAudioError("Error reading: not an input stream")
        self._pace(frames)
        data = self._in_block(frames)
        self._frames_done += frames
        return data, False

    def write(self, data: np.ndarray) -> bool:
        """Blocking write to the speaker (paced by the fake clock)."""
        import numpy as np

        if self.kind != "output":
            raise PortAudioError("Error writing: not an output stream")
        x = np.asarray(data).reshape(len(data), -1)
        self._pace(len(x))
        self._record_out(x)
        self._frames_done += len(x)
        return False

    # internals
    def _pace(self, frames: int) -> None:
        """Sleep until ``frames`` more frames would have passed on a real device."""
        due = self._started_s + (self._frames_done + frames) / self.samplerate
        wait = (due - self._fake.now()) / self._fake.speed
        if wait > 0:
            time.sleep(wait)

    def _in_block(self, frames: int) -> np.ndarray:
        import numpy as np

        from voice_sim.audio import resample

        t = self._started_s + self._frames_done / self.samplerate
        if int(self.samplerate) == SAMPLE_RATE:
            mono = self._fake._mic_block(frames, t)
        else:
            n = max(1, round(frames * SAMPLE_RATE / self.samplerate))
            mono = resample(self._fake._mic_block(n, t), SAMPLE_RATE, int(self.samplerate))
            mono = np.resize(mono, frames) if len(mono) != frames else mono
        block = np.repeat(mono[:, None], self.channels, axis=1)
        return _to_dtype(block, np.dtype(self.dtype))

    def take_echo(self, frames: int) -> np.ndarray:
        """The next ``frames`` samples played (zeros where none were), for the echo."""
        import numpy as np

        parts = [] if self._echo_rest is None else [self._echo_rest]
        while self._echo_q:
            parts.append(self._echo_q.popleft())
        buf = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        buf = buf[-(frames + round(0.2 * SAMPLE_RATE)):]  # never a growing delay
        out = np.zeros(frames, np.float32)
        out[:min(frames, len(buf))] = buf[:frames]
        self._echo_rest = buf[frames:] if len(buf) > frames else None
        return out

    def _record_out(self, out: np.ndarray) -> None:
        pb = self._playback
        mono = _to_float(out).mean(axis=1).astype("float32")
        self.last_out = mono
        self._echo_q.append(mono)
        if pb is not None:
            if pb.sound_at is None and bool((mono != 0).any()):
                pb.sound_at = time.perf_counter()
            pb.blocks.append(mono)

    def _run(self) -> None:
        import numpy as np

        assert self._callback is not None
        flags = CallbackFlags()
        try:
            while not self._stop.is_set():
                # Input blocks exist only once captured; output is pulled ahead, at once.
                self._pace(self._frames if self.kind == "input" else 0)
                if self._stop.is_set():
                    break
                t = self._fake.now()
                try:
                    if self.kind == "input":
                        data = self._in_block(self._frames)
                        self._callback(data, self._frames, _Time(t, t), flags)
                    else:
                        out = np.zeros((self._frames, self.channels), dtype=self.dtype)
                        try:
                            self._callback(out, self._frames, _Time(t, t), flags)
                        finally:
                            self._record_out(out)
                except CallbackStop:
                    break
                except CallbackAbort:
                    break
                except BaseException as e:  # a failing callback aborts the stream, as in PortAudio
                    self._fake.callback_errors.append(e)
                    print("Exception in the fake sounddevice callback:", file=sys.stderr)
                    traceback.print_exception(e, file=sys.stderr)
                    break
                finally:
                    self._frames_done += self._frames
        finally:
            self._finish()

    def _finish(self) -> None:
        with self._finish_lock:
            if self._done.is_set():
                return
            self._done.set()
        self._fake._register(self, running=False)
        if self._playback is not None:
            self._fake._speaker_stopped(self, self._playback)
        if self._finished_callback is not None:
            self._finished_callback()


@dataclass(frozen=True)
class _Time:
    """The ``time`` argument of a callback (fake-clock seconds)."""

    inputBufferAdcTime: float
    outputBufferDacTime: float

    @property
    def currentTime(self) -> float:
        """Fake-clock seconds."""
        return self.inputBufferAdcTime


class _Call:
    """The state behind ``play``/``rec``: one array, one stream, one wait."""

    def __init__(self, data: np.ndarray, *, loop: bool) -> None:
        self.data = data
        self.loop = loop
        self.pos = 0
        self.done = threading.Event()
        self.stream: _FakeStream

    def start(self, fake: FakeSoundDevice, stream: _FakeStream, blocking: bool) -> None:
        self.stream = stream
        fake._last_call = self
        stream.start()
        if blocking:
            self.wait()

    def wait(self) -> None:
        # Short timed waits keep Ctrl-C working, as sounddevice's wait() does.
        while not self.done.wait(0.05):
            pass
        self.stream.close()

    def finished(self) -> None:
        self.done.set()

    def out_callback(self, outdata: np.ndarray, frames: int, t: _Time, status: Any) -> None:
        n = len(self.data)
        take = min(frames, n - self.pos)
        outdata[:take] = self.data[self.pos:self.pos + take]
        outdata[take:] = 0
        self.pos += take
        if self.pos >= n:
            if not self.loop:
                raise CallbackStop
            self.pos = 0

    def in_callback(self, indata: np.ndarray, frames: int, t: _Time, status: Any) -> None:
        n = len(self.data)
        take = min(frames, n - self.pos)
        self.data[self.pos:self.pos + take] = indata[:take]
        self.pos += take
        if self.pos >= n:
            raise CallbackStop


@contextmanager
def installed(fake: FakeSoundDevice | None = None, **kwargs: Any) -> Iterator[FakeSoundDevice]:
    """Put a fake in ``sys.modules["sounddevice"]`` for the ``with`` block.

    ``kwargs`` go to :class:`FakeSoundDevice` when no fake is given. Streams still
    running at the end are stopped and the real module (if it was loaded) comes back.
    """
    fake = fake or FakeSoundDevice(**kwargs)
    missing = object()
    saved = sys.modules.get("sounddevice", missing)
    sys.modules["sounddevice"] = fake  # type: ignore[assignment]
    try:
        yield fake
    finally:
        fake.close_all()
        if saved is missing:
            sys.modules.pop("sounddevice", None)
        else:
            sys.modules["sounddevice"] = saved  # type: ignore[assignment]


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeSoundDevice | None = None,
            **kwargs: Any) -> FakeSoundDevice:
    """pytest helper: install a fake for one test (undone by ``monkeypatch``).

    Streams are daemon threads; a test that may leave one running should call
    ``fake.close_all()`` (or use :func:`installed`, which does).
    """
    fake = fake or FakeSoundDevice(**kwargs)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    return fake
