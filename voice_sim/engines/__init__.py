"""Speech-to-text engines behind one small protocol, picked by name.

``vosk`` is the primary engine (streaming, partial results, per-word confidence);
``whisper`` is offline English with no download (faster-whisper + a bundled
tiny.en); ``auto`` picks Vosk when an English Vosk model is found, else Whisper.
Engines are loaded once per process (see :func:`get_engine`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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


ENGINES: dict[str, Callable[[str | None], Engine]] = {}
"""Engine name -> loader taking an optional model path. Filled by the engine modules."""

ENGINE_NAMES = ("auto", "vosk", "whisper")
