"""Shared test fixtures: real speech rendered by espeak-ng, cached per test session."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
def whisper() -> Any:
    """The Whisper engine (skipped with the reason when it cannot load)."""
    from voice_sim.errors import ModelError

    try:
        from voice_sim.engines import get_engine

        return get_engine("whisper")
    except (ImportError, ModelError) as e:
        pytest.skip(f"Whisper engine unavailable: {e}")


@pytest.fixture(scope="session")
def sox() -> Callable[..., Path]:
    """Transform a WAV with sox: ``sox(src, dst, *effects)``. ``-D``: no dither, so the
    same transform gives the same bytes every run (sox's dither is random noise, which
    moved a verdict near its edge from run to run); scripts/fit_calm.py renders so too."""
    exe = shutil.which("sox")
    if exe is None:
        pytest.skip("sox not installed (apt-get install sox)")

    def run(src: Path, dst: Path, *effects: str) -> Path:
        subprocess.run([exe, "-D", str(src), str(dst), *effects], check=True)
        return dst

    return run


@pytest.fixture(autouse=True, scope="session")
def _private_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every call command records into the history database: keep the tests' calls out
    of the user's own history (``VOICE_SIM_HISTORY`` is inherited by subprocesses)."""
    import os

    old = os.environ.get("VOICE_SIM_HISTORY")
    os.environ["VOICE_SIM_HISTORY"] = str(tmp_path_factory.mktemp("history") / "h.sqlite3")
    yield
    if old is None:
        os.environ.pop("VOICE_SIM_HISTORY", None)
    else:
        os.environ["VOICE_SIM_HISTORY"] = old


@pytest.fixture(scope="session")
def whisper_engine() -> Any:
    """The Whisper engine, loaded once per test run; the test is skipped without a model."""
    from voice_sim.engines import get_engine
    from voice_sim.errors import ModelError

    try:
        return get_engine("whisper")
    except ModelError as e:
        pytest.skip(f"no Whisper model: {e.line()}")


RECORDED_REPLIES = (
    "I'm so sorry about that. Being charged twice is really frustrating after such a long wait.",
    "Calm down. That's our policy, there's nothing I can do.",
    "You're right, and I apologize. Here's what I can do: I'll refund the duplicate payment "
    "right now.",
    "The refund takes three to five business days to reach your card.",
)
"""The trainee's answers in :func:`recorded_session` (the second one has pitfalls)."""


@pytest.fixture(scope="session")
def recorded_session(tmp_path_factory: pytest.TempPathFactory,
                     espeak_wav: Callable[..., Path]) -> Path:
    """A real session folder, built once per test run (~20 s): the ``run`` command's
    engine (:func:`voice_sim.session.run_call`) on four espeak answers through Whisper,
    with a calm baseline. Tests using it are marked ``slow`` and ``model``."""
    from voice_sim.audio import load_audio
    from voice_sim.delivery import Baseline
    from voice_sim.engines import get_engine
    from voice_sim.errors import ModelError
    from voice_sim.persona import load_persona
    from voice_sim.rubric import load_rubric
    from voice_sim.session import (
        BASELINE_SENTENCE,
        CallOptions,
        FileTrainee,
        SilentSpeaker,
        run_call,
    )

    try:
        engine = get_engine("whisper")
    except ModelError as e:
        pytest.skip(f"no Whisper model: {e.line()}")
    root = tmp_path_factory.mktemp("recorded")
    answers = root / "answers"
    answers.mkdir()
    for i, text in enumerate(RECORDED_REPLIES, 1):
        shutil.copy(espeak_wav(text), answers / f"{i:02d}.wav")
    calm = load_audio(espeak_wav(BASELINE_SENTENCE))
    options = CallOptions(engine=engine, baseline=Baseline.from_audio(calm),
                          baseline_source="espeak calm reading", rubric=load_rubric(),
                          out_root=root / "sessions", mode="run")
    result = run_call(load_persona("double-billing"), FileTrainee(answers), SilentSpeaker(),
                      options)
    return result.dir


REALTIME_MODULES = frozenset({
    "test_devices.py", "test_fake_audio.py", "test_listen.py", "test_never_lose.py",
    "test_report_browser.py", "test_serve.py", "test_serve_browser.py", "test_turn_path.py",
})
"""Modules whose tests race the wall clock (a fake or virtual sound card, a browser, audio
streamed at speaking pace, a kill at a chosen moment)."""

REALTIME_TESTS = frozenset({
    "test_session.py::test_killed_or_interrupted_mid_call_keeps_every_turn",
})
"""The same, one test at a time, in modules whose other tests do not."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``realtime`` every test that races the clock: those named above and every
    ``audio_device`` test. ``scripts/test`` runs the others on two workers, then these one
    at a time, so a timing verdict is never taken on a machine a second worker loads."""
    for item in items:
        module = item.path.name
        name = f"{module}::{getattr(item, 'originalname', item.name)}"
        if (module in REALTIME_MODULES or name in REALTIME_TESTS
                or item.get_closest_marker("audio_device") is not None):
            item.add_marker(pytest.mark.realtime)
