"""Shared test fixtures: real speech rendered by espeak-ng, cached per test session."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ESPEAK = shutil.which("espeak-ng")


@pytest.fixture(scope="session")
def espeak_wav(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Render text to a WAV with the espeak-ng CLI: ``espeak_wav(text, voice=, rate=, pitch=)``.

    ``rate`` is words per minute, ``pitch`` 0-99 (50 normal), ``amplitude`` 0-200.
    Files are cached by their arguments for the whole test session.
    """
    if ESPEAK is None:
        pytest.skip("espeak-ng CLI not installed (apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("espeak")

    def render(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50,
               amplitude: int = 100) -> Path:
        key = hashlib.sha1(repr((text, voice, rate, pitch, amplitude)).encode()).hexdigest()[:16]
        out = root / f"{key}.wav"
        if not out.exists():
            subprocess.run([ESPEAK, "-v", voice, "-s", str(rate), "-p", str(pitch),
                            "-a", str(amplitude), "-w", str(out), text], check=True)
        return out

    return render


@pytest.fixture(scope="session")
def sox() -> Callable[..., Path]:
    """Transform a WAV with sox: ``sox(src, dst, *effects)``."""
    exe = shutil.which("sox")
    if exe is None:
        pytest.skip("sox not installed (apt-get install sox)")

    def run(src: Path, dst: Path, *effects: str) -> Path:
        subprocess.run([exe, str(src), str(dst), *effects], check=True)
        return dst

    return run
