"""Where voice-sim keeps files, and every setting read from the environment.

Each environment variable is read here, and only here: a value that cannot be used
is refused with one line naming the variable, the value and the fix
(:class:`~voice_sim.errors.InputError`), never a traceback.

=========================  ==========================================================
``VOICE_SIM_CACHE``        rendered persona lines (:func:`cache_dir`)
``VOICE_SIM_DATA``         history and sessions (:func:`data_dir`)
``VOICE_SIM_SESSIONS``     session folders (:func:`sessions_dir`)
``VOICE_SIM_HISTORY``      the history database file (:func:`history_file`)
``VOICE_SIM_PERSONAS``     extra persona folders, ``:``-separated (:func:`personas_dirs`)
``VOICE_SIM_MAX_AUDIO_S``  longest audio file read, seconds (:func:`max_audio_s`)
``VOICE_SIM_MODELS_URL``   where ``voice-sim fetch`` downloads from (:func:`models_url`)
``VOSK_MODEL_PATH``        a Vosk model folder (:func:`vosk_model_env`)
``VOICE_SIM_EMBEDDING_``   ``RUNTIME``: ``numpy`` runs the sentence encoder in NumPy
                           even where onnxruntime is installed
                           (:func:`embedding_runtime`)
=========================  ==========================================================
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PACKAGE_DIR = Path(__file__).resolve().parent
"""The installed ``voice_sim`` package (shipped data lives here)."""

SOURCE_ROOT = PACKAGE_DIR.parent
"""The checkout when run from source; holds ``personas/`` and ``audio_models/``."""


FILE_MODE = 0o664
"""Permissions asked for when voice-sim creates a file (sessions, reports, audio); the
umask narrows them further. Never world-writable, even under a umask of 000."""

DIR_MODE = 0o775
"""Permissions asked for when voice-sim creates a folder (see :data:`FILE_MODE`)."""


def create_file(path: str | os.PathLike[str]) -> int:
    """Create (or truncate) ``path`` for writing with :data:`FILE_MODE`; an open fd."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)


def temp_name(path: Path, suffix: str = "") -> Path:
    """The temp file beside ``path`` that is written first, then renamed over it:
    ``.NAME.THREAD.PID.tmp`` (the pid last, so a sweep can tell a dead writer's temp;
    the thread, so two threads writing one file never share a temp). ``suffix`` is
    for writers that need an extension (``.wav``)."""
    return path.with_name(f".{path.name}.{threading.get_ident()}.{os.getpid()}.tmp{suffix}")


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """fsync a folder, so the names created, renamed or removed in it survive a power
    cut (the fsync of a file keeps its data, not the entry that names it). A file
    system that cannot fsync a folder (some network and FUSE ones) is left as it is:
    the rename has still happened, it is only less durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def make_dirs(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` and its missing parents (:data:`DIR_MODE`), each new one
    recorded durably in its parent (:func:`fsync_dir`); nothing when it exists."""
    f = Path(folder)
    if f.is_dir():
        return
    missing = [d for d in (f, *f.parents) if not d.exists()]
    f.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for d in reversed(missing):
        fsync_dir(d.parent)


def replace_atomic(tmp: Path, path: Path) -> None:
    """fsync ``tmp`` (written by someone else: a synthesiser, a library) and rename it
    over ``path``, so ``path`` is either the old file or the whole new one; then fsync
    the folder, so the new name is on disk too."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that a reader never sees half of it, and a crash
    or power cut leaves either the old file or the new one: the data goes to a temp
    file beside it (created with :data:`FILE_MODE`), is fsynced, and renamed over
    ``path`` when the block ends without an exception, and the folder is fsynced so
    the rename itself is on disk; otherwise the temp is removed. The folder is created
    when missing. Raises OSError (callers say what failed)."""
    p = Path(path)
    make_dirs(p.parent)
    tmp = temp_name(p)
    try:
        with open(create_file(tmp), mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)  # fsynced above: the rename publishes a complete file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(p.parent)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_file`; return the path."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)


def env_path(name: str) -> Path | None:
    """The path in environment variable ``name`` (None when unset or empty)."""
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def _dir(env: str, default: Path) -> Path:
    return env_path(env) or default


def max_audio_s(default: float) -> float:
    """Seconds: the longest audio file read (``VOICE_SIM_MAX_AUDIO_S``, else ``default``)."""
    from voice_sim.errors import InputError

    value = os.environ.get("VOICE_SIM_MAX_AUDIO_S", "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise InputError(f"VOICE_SIM_MAX_AUDIO_S={value!r}: not a number of seconds above 0",
                         hint=f"set it to a number such as {default:g}, or unset it")
    return seconds


def history_file() -> Path | None:
    """The history database named by ``VOICE_SIM_HISTORY`` (None: the default place)."""
    return env_path("VOICE_SIM_HISTORY")


EMBEDDING_RUNTIME_ENV = "VOICE_SIM_EMBEDDING_RUNTIME"
EMBEDDING_RUNTIMES = ("onnxruntime", "numpy")


def embedding_runtime() -> str:
    """What runs the sentence encoder (``VOICE_SIM_EMBEDDING_RUNTIME``): ``onnxruntime``
    (the default; the NumPy pass still runs where it is not installed) or ``numpy``."""
    from voice_sim.errors import InputError

    value = os.environ.get(EMBEDDING_RUNTIME_ENV, "").strip()
    if not value:
        return EMBEDDING_RUNTIMES[0]
    if value not in EMBEDDING_RUNTIMES:
        raise InputError(f"{EMBEDDING_RUNTIME_ENV}={value!r}: not a runtime",
                         hint=f"set it to {' or '.join(EMBEDDING_RUNTIMES)}, or unset it")
    return value


def vosk_model_env() -> Path | None:
    """The Vosk model folder named by ``VOSK_MODEL_PATH`` (None when unset)."""
    return env_path("VOSK_MODEL_PATH")


def models_url(default: str) -> str:
    """Where model archives are downloaded from (``VOICE_SIM_MODELS_URL``, else
    ``default``), without a trailing slash."""
    from voice_sim.errors import InputError

    value = os.environ.get("VOICE_SIM_MODELS_URL", "").strip() or default
    if not value.startswith(("http://", "https://", "file://")):
        raise InputError(f"VOICE_SIM_MODELS_URL={value!r}: not an http(s) or file address",
                         hint="set it to e.g. https://example.org/models, or unset it")
    return value.rstrip("/")


def cache_dir() -> Path:
    """Rendered persona lines and other re-creatable files (``VOICE_SIM_CACHE``)."""
    from platformdirs import user_cache_path

    return _dir("VOICE_SIM_CACHE", user_cache_path("voice-sim"))


def data_dir() -> Path:
    """The history database and default session folders (``VOICE_SIM_DATA``)."""
    from platformdirs import user_data_path

    return _dir("VOICE_SIM_DATA", user_data_path("voice-sim"))


def sessions_dir() -> Path:
    """Where session folders go unless ``--out`` says otherwise (``VOICE_SIM_SESSIONS``)."""
    return _dir("VOICE_SIM_SESSIONS", data_dir() / "sessions")


def models_dirs() -> list[Path]:
    """Folders searched for speech models after ``--model`` and ``VOSK_MODEL_PATH``."""
    dirs = [Path.cwd() / "audio_models", SOURCE_ROOT / "audio_models",
            Path.home() / ".cache" / "vosk"]
    seen: list[Path] = []
    for d in dirs:
        if d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def personas_dirs() -> list[Path]:
    """Folders searched for persona files (``VOICE_SIM_PERSONAS`` first, colon-separated)."""
    extra = [Path(p).expanduser() for p in os.environ.get("VOICE_SIM_PERSONAS", "").split(
        os.pathsep) if p]
    dirs = [*extra, Path.cwd() / "personas", SOURCE_ROOT / "personas", PACKAGE_DIR / "personas"]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen
