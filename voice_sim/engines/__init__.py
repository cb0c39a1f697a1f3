"""Speech-to-text engines behind one small protocol, picked by name.

``vosk`` is the primary engine (streaming, partial results, per-word confidence);
``whisper`` is offline English with no download (faster-whisper + a bundled
tiny.en); ``auto`` picks Vosk when an English Vosk model is found, else Whisper.
Engines are loaded once per process (see :func:`get_engine`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from voice_sim.errors import InputError, ModelError, VoiceSimError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Word:
    """One recognised word."""

    word: str
    start: float
    """Seconds from the start of the audio."""
    end: float
    """Seconds from the start of the audio."""
    conf: float | None = None
    """0..1, or None where the engine gives none."""


@dataclass(frozen=True)
class Transcript:
    """A final recognition result."""

    engine: str
    model: str
    """Where the model was loaded from (a path), or its name."""
    text: str
    duration_s: float
    """Seconds of audio transcribed."""
    words: tuple[Word, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The ``voice-sim transcribe --json`` object."""
        d = asdict(self)
        d["words"] = [asdict(w) for w in self.words]
        return d


class Stream(Protocol):
    """Incremental recognition of one utterance, fed in chunks as they arrive."""

    def accept(self, chunk: np.ndarray) -> str:
        """Feed mono float32 samples at SAMPLE_RATE; return the current partial text."""
        ...

    def finish(self) -> Transcript:
        """End the utterance and return the final result."""
        ...


class Engine(Protocol):
    """A loaded speech engine."""

    name: str
    model: str

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """Transcribe a whole mono float32 clip at SAMPLE_RATE."""
        ...

    def stream(self) -> Stream:
        """Start streaming recognition of one utterance."""
        ...


def _load_vosk(model: str | None) -> Engine:
    from voice_sim.engines.vosk import load

    return load(model)


def _load_whisper(model: str | None) -> Engine:
    from voice_sim.engines.whisper import load

    return load(model)


ENGINES: dict[str, Callable[[str | None], Engine]] = {
    "vosk": _load_vosk,
    "whisper": _load_whisper,
}
"""Engine name -> loader taking a model folder (None: the engine's default)."""

ENGINE_NAMES = ("auto", *ENGINES)
"""Every name ``--engine`` (and a call spec's ``engine:``) accepts: the one table of them."""

_PACKAGES = {"vosk": ("vosk", "pip install vosk"),
             "whisper": ("faster_whisper", "pip install 'voice-sim[whisper]'")}
"""Engine -> (module it needs, how to install it)."""

_loaded: dict[tuple[str, str], Engine] = {}
_load_lock = threading.Lock()


@dataclass(frozen=True)
class EngineStatus:
    """Whether an engine can run here, for ``voice-sim doctor``."""

    name: str
    available: bool
    """True when ``get_engine(name)`` would load without ``--model``."""
    model: str | None
    """The model folder it would load, or None."""
    detail: str
    """Plain words: what was found, or what is missing and how to fix it."""


def get_engine(name: str = "auto", model: str | None = None) -> Engine:
    """The engine called ``name`` with its model (a folder; None: found as documented in
    :mod:`voice_sim.models`). Each model is loaded once per process, then shared."""
    kind, path = select_engine(name, model)
    key = (kind, str(path.resolve()))
    # Held while loading: a second caller waits for the first load instead of repeating it.
    with _load_lock:
        engine = _loaded.get(key)
        if engine is None:
            engine = ENGINES[kind](str(path))
            _loaded[key] = engine
    return engine


def select_engine(name: str = "auto", model: str | None = None) -> tuple[str, Path]:
    """Which engine and model folder ``get_engine(name, model)`` would load, without
    loading anything. Raises :class:`ModelError` saying how to get what is missing."""
    from voice_sim import models

    if name not in ENGINE_NAMES:
        raise InputError(f"unknown speech engine {name!r}",
                         hint=f"choose from {', '.join(ENGINE_NAMES)}")
    if name == "auto" and model is not None:
        given = models.model_folder(model)
        kind = models.model_kind(given)
        if kind is None:
            raise ModelError(f"model folder {given}: holds neither a Vosk nor a Whisper model",
                             hint="pass an unpacked Vosk model or a CTranslate2 Whisper folder")
        name = kind
    if name == "vosk":
        _require("vosk")
        return "vosk", models.resolve_vosk_model(model)
    if name == "whisper":
        _require("whisper")
        return "whisper", models.resolve_whisper_model(model)
    # auto: English Vosk first (streaming, per-word confidence), then Whisper.
    english = models.find_vosk_model(english_only=True) if _installed("vosk") else None
    if english is not None:
        return "vosk", english
    if _installed("whisper"):
        return "whisper", models.resolve_whisper_model()
    raise ModelError("no speech engine can run: no English Vosk model found and "
                     "faster-whisper is not installed",
                     hint="run `voice-sim models fetch`, or pip install 'voice-sim[whisper]'")


def engine_status() -> list[EngineStatus]:
    """Each engine (and what ``auto`` picks): available or not, and why. Loads nothing."""
    from voice_sim import models

    out = []
    for name in (*ENGINES, "auto"):
        try:
            kind, path = select_engine(name)
        except VoiceSimError as e:
            out.append(EngineStatus(name, False, None, e.line()))
            continue
        lang = models.model_language(path, kind)  # type: ignore[arg-type]
        label = models.model_name(path)
        if name == "auto":
            detail = f"auto uses {kind} ({label})"
        elif kind == "vosk" and not (lang or "").startswith("en"):
            detail = (f"{label} is a {lang or 'unknown-language'} model, not English: "
                      f"auto will not pick it; `voice-sim models fetch` gets English")
        else:
            detail = f"{label}, language {lang or 'unknown'}"
        out.append(EngineStatus(name, True, str(path), detail))
    return out


def _installed(kind: str) -> bool:
    from importlib.util import find_spec

    return find_spec(_PACKAGES[kind][0]) is not None


def _require(kind: str) -> None:
    if not _installed(kind):
        module, hint = _PACKAGES[kind]
        raise ModelError(f"the {kind} engine needs the Python package {module}, which is "
                         f"not installed", hint=hint)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words.

    Both texts first go through :func:`voice_sim.textnorm.normalize_words` (case,
    punctuation, contractions, numbers as words, fillers), so "It's $40." and "it is
    forty dollars" match. An empty reference gives 0.0 for an empty hypothesis, else 1.0.
    """
    from voice_sim.textnorm import normalize_words

    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    # Levenshtein distance over words, one row at a time.
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)
