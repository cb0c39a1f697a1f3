"""The one boundary to sounddevice (PortAudio): list, pick, play and record.

Nothing else in voice-sim imports sounddevice. It is imported on first use, and
every PortAudio failure is turned into a :class:`DeviceError` here, naming the device
and the fix. Fakes for tests replace ``sys.modules["sounddevice"]`` before first use.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from voice_sim.audio import SAMPLE_RATE
from voice_sim.errors import DeviceError, InputError

if TYPE_CHECKING:
    import argparse
    from types import ModuleType

    import numpy as np

Kind = Literal["input", "output"]

_NAMES = {"input": "microphone", "output": "speaker"}
_SEE = "see `voice-sim devices` and `voice-sim doctor`"


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device."""

    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    """Hertz."""
    hostapi: str = ""
    """e.g. ``ALSA``."""
    is_default_input: bool = False
    is_default_output: bool = False

    def channels(self, kind: Kind) -> int:
        """Channels this device offers in the ``input`` or ``output`` direction."""
        return self.max_input_channels if kind == "input" else self.max_output_channels

    def to_json(self) -> dict[str, Any]:
        """The ``voice-sim devices --json`` object."""
        return asdict(self)


def load_sounddevice() -> ModuleType:
    """The sounddevice module, imported on first use with an install hint if missing."""
    if "sounddevice" in sys.modules and sys.modules["sounddevice"] is not None:
        return sys.modules["sounddevice"]
    try:
        with _quiet_stderr():
            import sounddevice as sd
    except OSError as e:  # sounddevice raises OSError when libportaudio is not found
        raise DeviceError(f"the PortAudio library is missing ({e})",
                          hint="install it: sudo apt-get install libportaudio2") from e
    except ImportError as e:
        raise DeviceError("the sounddevice package is not installed",
                          hint="install it: pip install sounddevice") from e
    return sd


def list_devices() -> list[DeviceInfo]:
    """Every audio device PortAudio can see (an empty list on a machine with none)."""
    sd = load_sounddevice()
    try:
        raw = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = _defaults(sd)
    except sd.PortAudioError as e:
        raise DeviceError(f"cannot list audio devices ({e})", hint=_SEE) from e
    devices = []
    for i, d in enumerate(raw):
        api = hostapis[d["hostapi"]]["name"] if 0 <= d["hostapi"] < len(hostapis) else ""
        devices.append(DeviceInfo(
            index=i, name=str(d["name"]),
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_samplerate=float(d["default_samplerate"]), hostapi=str(api),
            is_default_input=i == default_in, is_default_output=i == default_out))
    return devices


def resolve_device(spec: str | int | None, kind: Kind) -> int | None:
    """The device index for ``spec`` (an index, or part of a name, any case).

    ``None`` means the system default and returns None, or the first device of that
    kind when the system names no default. Raises :class:`DeviceError` when there is
    no such device, the name matches several, or the machine has no device of the kind.
    """
    if kind not in _NAMES:
        raise ValueError(f"kind must be 'input' or 'output', not {kind!r}")
    what = _NAMES[kind]
    found = list_devices()
    usable = [d for d in found if d.channels(kind) > 0]
    if not usable:
        raise DeviceError(f"no {what} found: this machine has no audio {kind} device",
                          hint=f"connect one or check the sound system; {_SEE}")
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        if any(d.is_default_input if kind == "input" else d.is_default_output for d in usable):
            return None
        return usable[0].index
    choices = "; ".join(f"{d.index}: {d.name}" for d in usable)
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        if any(d.index == index for d in usable):
            return index
        other = next((d for d in found if d.index == index), None)
        problem = (f"device {index} ({other.name}) is not a {what}" if other
                   else f"{what} {index} does not exist")
        raise DeviceError(problem, hint=f"choose one of: {choices}")
    wanted = spec.strip().lower()
    exact = [d for d in usable if d.name.lower() == wanted]
    matches = exact or [d for d in usable if wanted in d.name.lower()]
    if len(matches) == 1:
        return matches[0].index
    if not matches:
        raise DeviceError(f"no {what} matches {spec!r}", hint=f"choose one of: {choices}")
    names = "; ".join(f"{d.index}: {d.name}" for d in matches)
    raise DeviceError(f"{what} {spec!r} is ambiguous: it matches {len(matches)} devices",
                      hint=f"give more of the name or the number: {names}")


def play(samples: np.ndarray, sr: int, device: str | int | None = None) -> None:
    """Play mono (or frames x channels) float audio at ``sr`` Hz; returns when done."""
    import numpy as np

    data = np.asarray(samples, dtype=np.float32)
    if data.ndim not in (1, 2) or sr <= 0:
        raise InputError(f"cannot play audio of shape {data.shape} at {sr} Hz",
                         hint="pass mono samples and a positive sample rate")
    if data.size == 0:
        return
    sd = load_sounddevice()
    index = resolve_device(device, "output")
    rate = _usable_rate(sd, index, "output", int(sr))
    if rate != sr:
        from voice_sim.audio import resample

        data = resample(data, int(sr), rate)
    try:
        # Low latency: the persona answers within a human turn gap (~200 ms), so the
        # ~100 ms default output buffer is too much.
        sd.play(data, rate, device=index, blocking=True, latency="low")
    except sd.PortAudioError as e:
        raise DeviceError(f"cannot play on {_label(sd, index, 'output')} ({e})",
                          hint=f"try another --output-device; {_SEE}") from e


class Player:
    """One line playing on an output stream fed by a callback, so it can be cut short:
    :meth:`stop` aborts the stream (the device drops what it had buffered), and
    :meth:`stop_at` ends it at a later sample. :attr:`pos` is how far it has been handed
    to the device, in samples of the line."""

    def __init__(self, samples: np.ndarray, sr: int, device: str | int | None = None) -> None:
        import threading

        import numpy as np

        data = np.asarray(samples, dtype=np.float32)
        if data.ndim != 1 or sr <= 0:
            raise InputError(f"cannot play audio of shape {data.shape} at {sr} Hz",
                             hint="pass mono samples and a positive sample rate")
        self._sd = sd = load_sounddevice()
        self.index = resolve_device(device, "output")
        rate = _usable_rate(sd, self.index, "output", int(sr))
        if rate != sr:
            from voice_sim.audio import resample

            data = resample(data, int(sr), rate)
        self.data, self.sr = data, rate
        self.pos = 0
        self._end = len(data)
        self.done = threading.Event()
        self.stopped_at: float | None = None
        """``perf_counter()`` when playback was cut short (None: it ran to its end)."""
        self._stream: Any = None

    def start(self) -> Player:
        """Start playing; returns at once."""
        sd = self._sd
        if not len(self.data):
            self.done.set()
            return self
        try:
            self._stream = sd.OutputStream(samplerate=self.sr, device=self.index, channels=1,
                                           dtype="float32", latency="low",
                                           callback=self._callback,
                                           finished_callback=self.done.set)
            self._stream.start()
        except sd.PortAudioError as e:
            raise DeviceError(f"cannot play on {_label(sd, self.index, 'output')} ({e})",
                              hint=f"try another --output-device; {_SEE}") from e
        return self

    def _callback(self, outdata: Any, frames: int, t: Any, status: Any) -> None:
        n = max(0, min(frames, self._end - self.pos))
        outdata[:n, 0] = self.data[self.pos:self.pos + n]
        outdata[n:] = 0
        self.pos += n
        if n < frames:
            raise self._sd.CallbackStop

    @property
    def position_s(self) -> float:
        """Seconds of the line handed to the device so far."""
        return self.pos / self.sr

    def stop(self) -> None:
        """Cut the line off now."""
        import time

        self._end = min(self._end, self.pos)
        if self.stopped_at is None and not self.done.is_set():
            self.stopped_at = time.perf_counter()
        s = self._stream
        if s is not None:
            with contextlib.suppress(self._sd.PortAudioError):
                s.abort()
        self.done.set()

    def stop_at(self, sample: int) -> None:
        """End the line at ``sample`` (of the line at its own rate) instead of its end."""
        import time

        if sample < self._end:
            self._end = max(self.pos, sample)
            self.stopped_at = time.perf_counter()  # refined by the caller if it matters

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the line is over; True when it is."""
        return self.done.wait(timeout)

    def close(self) -> None:
        """Release the stream (safe to call twice)."""
        s, self._stream = self._stream, None
        if s is not None:
            try:
                s.stop()
                s.close()
            except self._sd.PortAudioError:
                pass


def record(seconds: float, device: str | int | None = None, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Record ``seconds`` of mono float32 audio at ``sr`` Hz (blocking)."""
    if not seconds > 0 or sr <= 0:
        raise InputError(f"cannot record {seconds} s at {sr} Hz",
                         hint="give a positive duration and sample rate")
    sd = load_sounddevice()
    index = resolve_device(device, "input")
    rate = _usable_rate(sd, index, "input", int(sr))
    try:
        data = sd.rec(round(seconds * rate), samplerate=rate, channels=1, dtype="float32",
                      device=index, blocking=True)
    except sd.PortAudioError as e:
        raise DeviceError(f"cannot record from {_label(sd, index, 'input')} at {rate} Hz ({e})",
                          hint=f"try another --input-device; {_SEE}") from e
    samples = data[:, 0].copy()
    if rate != sr:
        from voice_sim.audio import resample

        samples = resample(samples, rate, int(sr))
    return samples


def cmd_devices(args: argparse.Namespace) -> int:
    """``voice-sim devices``: list audio devices."""
    devices = list_devices()
    if getattr(args, "json", False):
        print(json.dumps([d.to_json() for d in devices], indent=2))
        return 0
    if not devices:
        print("No audio devices found: no microphone and no speaker.")
        print("Headless use still works (voice-sim transcribe, say --out, run --answers); "
              "see `voice-sim doctor`.")
        return 0
    for d in devices:
        marks = [m for m, on in (("default in", d.is_default_input),
                                 ("default out", d.is_default_output)) if on]
        print(f"{d.index:>3}  {d.name}  ({d.hostapi}; in {d.max_input_channels}, "
              f"out {d.max_output_channels}, {d.default_samplerate:.0f} Hz)"
              + (f"  [{', '.join(marks)}]" if marks else ""))
    return 0


def _usable_rate(sd: ModuleType, index: int | None, kind: Kind, sr: int) -> int:
    """``sr`` if the device takes it, else the device's own rate (we resample).

    Many hardware devices only run at 44.1 or 48 kHz, while speech is 16 kHz and
    espeak-ng renders 22.05 kHz.
    """
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=index, channels=1, dtype="float32", samplerate=sr)
        return sr
    except (sd.PortAudioError, ValueError):
        try:
            own = int(sd.query_devices(index, kind=kind)["default_samplerate"])
        except (sd.PortAudioError, ValueError):
            return sr  # let the stream report the real problem
        return own if own > 0 else sr


def _defaults(sd: ModuleType) -> tuple[int, int]:
    """The default (input, output) indices, -1 where there is none."""
    value = sd.default.device
    try:
        d_in, d_out = value
    except TypeError:
        d_in = d_out = value
    return _as_index(sd, d_in, "input"), _as_index(sd, d_out, "output")


def _as_index(sd: ModuleType, value: object, kind: Kind) -> int:
    if value is None:
        return -1
    if isinstance(value, int):
        return value
    try:
        info = sd.query_devices(value, kind=kind)
        return int(info["index"])
    except (sd.PortAudioError, ValueError):
        return -1


def _label(sd: ModuleType, index: int | None, kind: Kind) -> str:
    """A device's name for a message, e.g. ``speaker 3 "USB Audio"``."""
    what = _NAMES[kind]
    try:
        info = sd.query_devices(index, kind=kind)
        return f"{what} {info['index']} {info['name']!r}"
    except (sd.PortAudioError, ValueError):
        return f"the default {what}" if index is None else f"{what} {index}"


class _quiet_stderr:
    """Silence fd 2 while PortAudio initialises: ALSA and JACK print probe warnings
    (``ALSA lib ... Unknown PCM``) that mean nothing to a user; errors still raise."""

    def __enter__(self) -> None:
        try:
            sys.stderr.flush()
            self.saved: int | None = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except OSError:
            self.saved = None

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
