"""The persona's voice: text to speech with pyttsx3 (espeak-ng).

Every render runs in its own short-lived process, forked from a worker that has
loaded pyttsx3 but never synthesised. That is what makes each render correct:

* espeak-ng keeps synthesis state between utterances in static storage (the phase of
  its pitch "flutter"), so within one process the same line comes out slightly
  different every time; a fresh fork renders it byte-identically, every time.
* pyttsx3 keeps the last text and file between calls (an empty ``runAndWait``
  re-renders it; only the last queued file is written): a process that renders one
  file and exits cannot see a previous render.
* pyttsx3 prints to stdout: the worker points its fd 1 at /dev/null for good, so no
  fd juggling happens in our own process, where other threads may be printing.

Two more pyttsx3 2.99 quirks are handled in :func:`_render_once`: ``runAndWait``
returns before the file is written, and settings queued through it are sometimes
cancelled. ``scripts/bench_foundation.py`` compares this design with one engine
reused, a new engine per render and a subprocess per render.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.errors import InputError, TTSError
from voice_sim.paths import replace_atomic, temp_name, write_atomic

if TYPE_CHECKING:
    import argparse

    import numpy as np

TTS_SAMPLE_RATE = 22_050
"""Hertz. What espeak-ng renders (and what cached WAVs hold)."""

DEFAULT_VOICES = ("gmw/en-us", "gmw/en", "en-us", "en")
"""Tried in order when a :class:`Voice` names no voice: the first one installed wins."""

RATE_RANGE = (80, 450)
"""Words per minute espeak-ng accepts."""

CACHE_FORMAT = 1
"""Bump when the cached files' content changes for the same text and voice."""

_START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Voice:
    """How the persona sounds."""

    id: str | None = None
    """espeak-ng voice id, name or language (see ``voice-sim voices``), optionally with a
    variant (``gmw/en-us+f3``); None = the default English voice."""
    rate: int = 170
    """Words per minute (80-450); an everyday phone pace."""
    pitch: int = 50
    """0-99 on the espeak scale; 50 is the voice's normal pitch."""
    volume: float = 0.9
    """0.0-1.0; a little below full scale so loud lines never clip."""

    def __post_init__(self) -> None:
        if self.id is not None and (not isinstance(self.id, str) or not self.id.strip()):
            raise InputError(f"voice id must be a non-empty name, not {self.id!r}",
                             hint="see `voice-sim voices`, or leave it out for the default")
        if not _is_int(self.rate) or not RATE_RANGE[0] <= self.rate <= RATE_RANGE[1]:
            raise InputError(f"voice rate {self.rate!r} is out of range",
                             hint=f"use a whole number of words per minute, "
                                  f"{RATE_RANGE[0]}-{RATE_RANGE[1]}")
        if not _is_int(self.pitch) or not 0 <= self.pitch <= 99:
            raise InputError(f"voice pitch {self.pitch!r} is out of range",
                             hint="use a whole number 0-99 (50 = normal)")
        if (isinstance(self.volume, bool) or not isinstance(self.volume, int | float)
                or not 0.0 <= self.volume <= 1.0):
            raise InputError(f"voice volume {self.volume!r} is out of range",
                             hint="use a number from 0.0 to 1.0")

    def to_json(self) -> dict[str, Any]:
        """The voice as a JSON object."""
        return asdict(self)


@dataclass(frozen=True)
class VoiceInfo:
    """One installed espeak-ng voice."""

    id: str
    """What :attr:`Voice.id` takes, e.g. ``gmw/en-us``."""
    name: str
    """e.g. ``English (America)``."""
    languages: tuple[str, ...]
    """Language codes, e.g. ``("en-us",)``."""
    gender: str | None = None
    age: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``voice-sim voices --json`` object."""
        d = asdict(self)
        d["languages"] = list(self.languages)
        return d


# --- public API ---------------------------------------------------------------------


def render(text: str, voice: Voice | None = None) -> np.ndarray:
    """Speak ``text`` in ``voice``; mono float32 samples at :data:`audio.SAMPLE_RATE`."""
    import tempfile

    from voice_sim.audio import SAMPLE_RATE, resample

    with tempfile.TemporaryDirectory(prefix="voice-sim-tts-") as tmp:
        path = render_wav(text, voice, Path(tmp) / "line.wav")
        samples, sr = _read_wav(path)
    return resample(samples, sr, SAMPLE_RATE)


def render_wav(text: str, voice: Voice | None, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` spoken in ``voice`` to ``path`` as espeak-ng renders it
    (16-bit mono WAV at :data:`TTS_SAMPLE_RATE`), atomically."""
    voice = voice or Voice()
    text = _check_text(text)
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{out}: is a folder", hint="name a .wav file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out.parent}: cannot create the folder ({e.strerror})",
                         hint="choose a writable place") from e
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"{out.parent}: the folder is not writable",
                         hint="choose a writable place (for the cache: set VOICE_SIM_CACHE)")
    tmp = temp_name(out, ".wav")
    try:
        _render_file(text, voice, tmp)
        replace_atomic(tmp, out)
    except OSError as e:
        raise InputError(f"{out}: cannot write ({e.strerror})",
                         hint="check the folder exists and is writable") from e
    finally:
        tmp.unlink(missing_ok=True)
    return out


def cached_render(text: str, voice: Voice | None = None) -> Path:
    """A WAV of ``text`` in ``voice`` from the cache (``cache_dir()/tts``), rendered once.

    The file name is a hash of the text, the voice settings and the installed
    pyttsx3/espeak-ng (so an upgrade re-renders). A hit costs a hash and a stat.
    """
    voice = voice or Voice()
    text = _check_text(text)
    folder = _tts_dir()
    stamp = _engine_stamp(folder)
    if stamp is not None:
        hit = folder / _cache_name(text, voice, stamp)
        if hit.is_file():
            return hit
    with _LOCK:
        stamp = _worker().stamp
    _write_stamp(folder, stamp)
    path = folder / _cache_name(text, voice, stamp)
    if not path.is_file():
        render_wav(text, voice, path)
    return path


def list_voices() -> list[VoiceInfo]:
    """The voices espeak-ng has installed, as pyttsx3 reports them."""
    with _LOCK:
        return list(_worker().voices)


def voice_exists(voice_id: str) -> bool:
    """True when espeak-ng knows ``voice_id`` (an id, a name or a language code, with an
    optional ``+variant``); espeak-ng itself silently falls back to its default."""
    with _LOCK:
        return _worker().resolve(voice_id) is not None


def engine_version() -> str:
    """The installed engine, e.g. ``pyttsx3 2.99, espeak-ng 1.51`` (starts the worker)."""
    with _LOCK:
        stamp = _worker().stamp
    return f"pyttsx3 {stamp['pyttsx3']}, espeak-ng {stamp['espeak']}"


def default_voice() -> str:
    """The espeak-ng voice a :class:`Voice` without an id uses (starts the worker)."""
    with _LOCK:
        return _worker().default_voice


def warm_up() -> None:
    """Start the TTS worker now, so the first uncached line is not delayed (~0.1 s)."""
    with _LOCK:
        _worker()


def play(samples: np.ndarray, sr: int, device: str | int | None = None) -> None:
    """Play audio on the speaker (blocking); see :func:`voice_sim.devices.play`."""
    from voice_sim import devices

    devices.play(samples, sr, device)


# --- commands -------------------------------------------------------------------------


def cmd_voices(args: argparse.Namespace) -> int:
    """``voice-sim voices``: list installed voices."""
    voices = list_voices()
    lang = (getattr(args, "lang", None) or "").strip().lower()
    if lang:
        voices = [v for v in voices if any(
            code.lower() == lang or code.lower().startswith(lang + "-") for code in v.languages)]
    if getattr(args, "json", False):
        print(json.dumps([v.to_json() for v in voices], indent=2))
        return 0
    if not voices:
        print(f"no voices for language {lang!r}" if lang else "no voices installed")
        return 1
    width = max(len(v.id) for v in voices)
    for v in voices:
        print(f"{v.id:<{width}}  {v.name}  ({', '.join(v.languages)})")
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    """``voice-sim say``: speak text, or write it to a WAV file."""
    default = Voice()
    voice = Voice(
        id=args.voice or None,
        rate=default.rate if args.rate is None else args.rate,
        pitch=default.pitch if args.pitch is None else args.pitch,
        volume=default.volume if args.volume is None else args.volume,
    )
    if voice.id is not None and not voice_exists(voice.id):
        raise InputError(f"--voice {voice.id!r}: no such voice",
                         hint="see `voice-sim voices --lang en`")
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() != ".wav":
            raise InputError(f"--out {out}: must end in .wav", hint="e.g. --out line.wav")
        render_wav(args.text, voice, out)
        print(out)
        return 0
    from voice_sim import devices

    # Fail on a missing speaker before spending time rendering.
    device = devices.resolve_device(getattr(args, "output_device", None), "output")
    samples, sr = _read_wav(cached_render(args.text, voice))
    devices.play(samples, sr, device)
    return 0


# --- the worker: parent side ----------------------------------------------------------


class _Worker:
    """The worker process: forks one renderer per line (see the module doc)."""

    def __init__(self) -> None:
        import subprocess  # here, not at the top: a cache hit never needs it

        boot = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "from voice_sim.speak import _worker_main; _worker_main()")
        root = str(Path(__file__).resolve().parent.parent)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", boot, root],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=0, close_fds=True)
        except OSError as e:
            raise TTSError(f"cannot start the text-to-speech worker ({e})",
                           hint="check the Python installation") from e
        hello = self._reply(_START_TIMEOUT_S, "starting pyttsx3")
        if not hello.get("ok"):
            self.close()
            raise TTSError(f"pyttsx3/espeak-ng cannot start: {hello.get('error')}",
                           hint="install espeak-ng: sudo apt-get install libespeak-ng1 "
                                "espeak-ng; and pip install pyttsx3")
        self.stamp: dict[str, Any] = hello["stamp"]
        self.voices: tuple[VoiceInfo, ...] = tuple(
            VoiceInfo(v["id"], v["name"], tuple(v["languages"]), v["gender"], v["age"])
            for v in hello["voices"])
        self.variants: frozenset[str] = frozenset(hello["variants"])
        if not self.voices:
            self.close()
            raise TTSError("espeak-ng has no voices installed",
                           hint="sudo apt-get install --reinstall espeak-ng-data")
        resolved = (self.resolve(d) for d in DEFAULT_VOICES)
        self.default_voice: str = next((r for r in resolved if r), self.voices[0].id)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def resolve(self, voice_id: str) -> str | None:
        """The voice id as espeak-ng will use it, or None when it is unknown."""
        base, _, variant = voice_id.strip().lower().partition("+")
        if variant and variant not in self.variants:
            return None
        for v in self.voices:
            if base in (v.id, v.id.rsplit("/", 1)[-1], v.name.lower(), *v.languages):
                return v.id + (f"+{variant}" if variant else "")
        return None

    def render(self, text: str, voice: Voice, path: Path) -> None:
        espeak_voice = self.default_voice if voice.id is None else self.resolve(voice.id)
        if espeak_voice is None:
            raise InputError(f"voice {voice.id!r} is not installed",
                             hint="see `voice-sim voices --lang en`")
        request = {"op": "render", "text": text, "voice": espeak_voice, "rate": voice.rate,
                   "pitch": voice.pitch, "volume": voice.volume, "path": str(path)}
        self._send(request)
        reply = self._reply(_render_timeout(text), f"rendering {_clip(text)!r}")
        if not reply.get("ok"):
            raise TTSError(f"espeak-ng could not render {_clip(text)!r}: {reply.get('error')}",
                           hint="try simpler text; run `voice-sim doctor`")

    def close(self) -> None:
        import subprocess

        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        except OSError as e:
            raise TTSError("the text-to-speech worker stopped unexpectedly",
                           hint="run `voice-sim doctor`") from e

    def _reply(self, timeout: float, doing: str) -> dict[str, Any]:
        import select

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.proc.kill()
                raise TTSError(f"text-to-speech timed out after {timeout:.0f} s {doing}",
                               hint="run `voice-sim doctor`")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait()
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(
                    errors="replace").strip()
                last = err.splitlines()[-1] if err else f"exit {self.proc.returncode}"
                raise TTSError(f"the text-to-speech worker stopped while {doing} ({last})",
                               hint="run `voice-sim doctor`")
            buf += chunk
        reply: dict[str, Any] = json.loads(buf)
        return reply


_LOCK = threading.Lock()
"""Serialises use of the worker: renders may come from a background thread."""
_WORKER: _Worker | None = None


def _worker() -> _Worker:
    """The running worker, started (or restarted after a crash) on demand. Hold _LOCK."""
    global _WORKER
    if _WORKER is None or not _WORKER.alive():
        if _WORKER is not None:
            _WORKER.close()
        _WORKER = _Worker()
    return _WORKER


@atexit.register
def _stop_worker() -> None:
    global _WORKER
    if _WORKER is not None:
        _WORKER.close()
        _WORKER = None


def _render_file(text: str, voice: Voice, tmp: Path) -> None:
    """Render into ``tmp`` (which must not exist) and check the file is fresh and whole."""
    import wave

    tmp.unlink(missing_ok=True)
    with _LOCK:
        worker = _worker()
        worker.render(text, voice, tmp)
    # The path did not exist before the request: a file there now is this render's.
    # (The stdlib reads the header: no numpy import on the way to a cached line.)
    try:
        with wave.open(str(tmp), "rb") as w:
            frames = w.getnframes()
    except FileNotFoundError as e:
        raise TTSError(f"espeak-ng wrote no audio for {_clip(text)!r}",
                       hint="run `voice-sim doctor`") from e
    except (wave.Error, EOFError) as e:
        raise TTSError(f"espeak-ng wrote a damaged WAV for {_clip(text)!r} ({e})",
                       hint="run `voice-sim doctor`") from e
    if frames == 0:
        raise TTSError(f"espeak-ng rendered no sound for {_clip(text)!r}",
                       hint="give the line some words")


# --- the cache ------------------------------------------------------------------------


def _tts_dir() -> Path:
    from voice_sim.paths import cache_dir

    return cache_dir() / "tts"


def _cache_name(text: str, voice: Voice, stamp: dict[str, Any]) -> str:
    key = json.dumps({"text": text, "voice": voice.to_json(), "engine": stamp,
                      "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:32] + ".wav"


_STAMPS: dict[Path, dict[str, Any]] = {}


def _engine_stamp(folder: Path) -> dict[str, Any] | None:
    """The installed engine as the worker last described it, if it is still installed.

    Asking the worker costs a process start (~0.1 s); loading libespeak-ng here to ask
    its version costs ~10 ms. Both are too slow for a cache hit, so the worker leaves a
    stamp (versions plus size/mtime of the library, its data and pyttsx3) and a hit
    only re-checks those files.
    """
    if folder in _STAMPS:
        return _STAMPS[folder]
    try:
        stamp = json.loads((folder / "engine.json").read_text())
        for name, (size, mtime) in stamp["files"].items():
            st = os.stat(name)
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    _STAMPS[folder] = stamp
    return stamp


def _write_stamp(folder: Path, stamp: dict[str, Any]) -> None:
    try:
        # The temp is per thread: the prerender thread and the call can both write the
        # first stamp.
        write_atomic(folder / "engine.json", json.dumps(stamp, sort_keys=True))
    except OSError as e:
        raise TTSError(f"{folder}: cannot write the speech cache ({e.strerror})",
                       hint="set VOICE_SIM_CACHE to a writable folder") from e
    _STAMPS[folder] = stamp


# --- helpers ------------------------------------------------------------------------------


def _check_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise TTSError(f"nothing to say: the text is empty ({text!r})",
                       hint="give the line some words")
    return text.strip()


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import numpy as np
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)), int(sr)


def _render_timeout(text: str) -> float:
    """Seconds to wait for one render: generous (a line takes milliseconds)."""
    return 30.0 + len(text) / 20


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# --- the worker: child side (runs in its own process) ------------------------------------
#
# The worker itself never starts espeak-ng: espeak_Initialize starts a thread, and a
# fork only copies the calling thread, so a fork of an initialised process hangs. Each
# render runs in a fork that initialises pyttsx3 (~20 ms) and renders one file; one
# such fork is kept initialised in advance ("the spare"), so a line costs only its
# render when lines are more than ~20 ms apart.


def _worker_main() -> None:
    """Serve render requests on stdin, one JSON object per line; reply on stdout."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    # pyttsx3 prints "Audio saved to ..." on every file: keep it off the reply channel.
    os.dup2(devnull, 1)
    try:
        import pyttsx3.drivers.espeak  # noqa: F401  (loads libespeak-ng once, before forking)

        hello = _in_fork(_describe_engine, {}, close=(reply.fileno(),))
    except Exception as e:  # a library that cannot load is reported, not raised
        hello = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    reply.write(json.dumps(hello) + "\n")
    if not hello.get("ok"):
        return
    # From here on errors travel in replies; espeak-ng's own warnings would only clutter
    # the terminal of whoever started us.
    os.dup2(devnull, 2)
    spare = _Spare(close=(reply.fileno(), 0))
    try:
        for line in sys.stdin:
            request = json.loads(line)
            if request.get("op") == "render":
                result = spare.run(request)
                spare = _Spare(close=(reply.fileno(), 0))
            else:
                result = {"ok": False, "error": f"unknown request {request.get('op')!r}"}
            reply.write(json.dumps(result) + "\n")
    finally:
        spare.discard()


class _Spare:
    """A forked child that initialises pyttsx3 at once, then renders one request."""

    def __init__(self, close: tuple[int, ...]) -> None:
        request_r, self.request_w = os.pipe()
        self.result_r, result_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            for fd in (*close, self.request_w, self.result_r):
                os.close(fd)
            _child_main(request_r, result_w)
        os.close(request_r)
        os.close(result_w)

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Hand over the request; wait for the child to render it and exit."""
        os.write(self.request_w, json.dumps(request).encode())
        os.close(self.request_w)
        return self._result()

    def discard(self) -> None:
        """End the unused child (it sees an empty request and exits)."""
        with contextlib.suppress(OSError):
            os.close(self.request_w)
        self._result()

    def _result(self) -> dict[str, Any]:
        data = _read_all(self.result_r)
        os.close(self.result_r)
        _, status = os.waitpid(self.pid, 0)
        if os.WIFSIGNALED(status):
            return {"ok": False, "error": f"espeak-ng crashed (signal {os.WTERMSIG(status)})"}
        if not data:
            return {"ok": False, "error": "the renderer exited without an answer"}
        result: dict[str, Any] = json.loads(data)
        return result


def _child_main(request_r: int, result_w: int) -> None:
    """The spare's life: init pyttsx3, wait for one request, render it, report, exit."""
    try:
        import pyttsx3

        engine = pyttsx3.init("espeak")
        data = _read_all(request_r)
        if not data:  # discarded
            os._exit(0)
        error = _render_once(engine, json.loads(data))
        result = {"ok": error is None, "error": error}
    except BaseException as e:
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    os.write(result_w, json.dumps(result).encode())
    # No cleanup: atexit handlers and pyttsx3's destructors belong to the parent.
    os._exit(0)


def _in_fork(func: Any, arg: dict[str, Any], close: tuple[int, ...]) -> dict[str, Any]:
    """Run ``func(arg) -> dict`` in a fork and return its result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (*close, read_end):
            os.close(fd)
        try:
            result = func(arg)
        except BaseException as e:
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    data = _read_all(read_end)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"ok": False, "error": f"espeak-ng failed to start (status {status})"}
    answer: dict[str, Any] = json.loads(data)
    return answer


def _describe_engine(_: dict[str, Any]) -> dict[str, Any]:
    """The hello message: versions, installed files, voices and variants."""
    import ctypes
    import importlib.metadata

    import pyttsx3
    from pyttsx3.drivers import _espeak

    engine = pyttsx3.init("espeak")
    info = _espeak.dll.espeak_Info
    info.restype = ctypes.c_char_p
    info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    data_path = ctypes.c_char_p()
    version = (info(ctypes.byref(data_path)) or b"?").decode()
    data = Path((data_path.value or b"").decode())
    lib = _loaded_library("libespeak-ng")
    files = [p for p in (lib, data, data / "voices",
                         Path(pyttsx3.__file__).parent / "drivers" / "espeak.py")
             if p is not None and p.exists()]
    stamp = {
        "espeak": version,
        "pyttsx3": importlib.metadata.version("pyttsx3"),
        "files": {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in files},
    }
    voices = [{"id": v.id, "name": v.name, "languages": list(v.languages or []),
               "gender": v.gender, "age": v.age} for v in engine.getProperty("voices")]
    variant_dir = data / "voices" / "!v"
    variants = sorted(p.name.lower() for p in variant_dir.iterdir()) if variant_dir.is_dir() else []
    return {"ok": True, "stamp": stamp, "voices": voices, "variants": variants}


def _loaded_library(prefix: str) -> Path | None:
    """Where the dynamic loader found a shared library (Linux: from /proc/self/maps)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/maps").read_text().splitlines():
            name = line.rsplit(" ", 1)[-1]
            if Path(name).name.startswith(prefix):
                return Path(name).resolve()
    return None


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _render_once(engine: Any, request: dict[str, Any]) -> str | None:
    """One pyttsx3 render into request["path"]; the error text, or None."""
    import threading

    from pyttsx3.drivers import _espeak
    from pyttsx3.drivers.espeak import EspeakDriver

    errors: list[str] = []
    finished = threading.Event()

    # pyttsx3 swallows exceptions from queued commands and only announces them.
    def on_error(name: object = None, exception: BaseException | None = None) -> None:
        errors.append(f"{type(exception).__name__}: {exception}")
        finished.set()

    def on_finished(name: object = None, completed: bool = True) -> None:
        if not completed:
            errors.append("synthesis was cancelled")
        finished.set()

    engine.connect("error", on_error)
    engine.connect("finished-utterance", on_finished)
    # Settings go straight to espeak-ng, which applies them on its own thread; we wait
    # until it has. Queued through pyttsx3 instead, runAndWait's closing stop() finds
    # espeak-ng busy applying them and cancels them: about 1 render in 20 came out at
    # pyttsx3's start-up rate. The rate is always set: the engine reports 175 but
    # starts at 200.
    try:
        EspeakDriver.setProperty("voice", request["voice"])
        EspeakDriver.setProperty("rate", int(request["rate"]))
        EspeakDriver.setProperty("pitch", int(request["pitch"]))
        EspeakDriver.setProperty("volume", float(request["volume"]))
    except ValueError as e:
        return str(e)
    deadline = time.monotonic() + 10
    while _espeak.IsPlaying():
        if time.monotonic() > deadline:
            return "espeak-ng did not take the voice settings"
        time.sleep(0.001)
    engine.save_to_file(request["text"], request["path"])
    engine.runAndWait()
    # runAndWait returns after one 10 ms poll, while espeak-ng may still be synthesising
    # on its own thread; the file is written just before "finished-utterance".
    if not finished.wait(timeout=_render_timeout(request["text"]) - 10):
        return "synthesis did not finish in time"
    return errors[0] if errors else None
