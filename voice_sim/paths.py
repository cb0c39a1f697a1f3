"""Where voice-sim keeps files: one place to look them up, each overridable."""

from __future__ import annotations

import os
from pathlib import Path

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


def _dir(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else default


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
