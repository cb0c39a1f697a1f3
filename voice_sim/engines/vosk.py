"""Vosk (Kaldi): streaming recognition with partial results and per-word confidence.

The primary engine: it decodes as audio arrives, so a final result is ready moments
after the last chunk, and every word carries start/end times and a 0..1 confidence.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.audio import SAMPLE_RATE
from voice_sim.engines import Transcript, Word
from voice_sim.errors import InputError, ModelError

if TYPE_CHECKING:
    import numpy as np

BATCH_CHUNK = SAMPLE_RATE // 4
"""Samples fed per call when transcribing a whole clip (Vosk's examples use 4000)."""


def load(model: str | os.PathLike[str] | None = None) -> VoskEngine:
    """Load a Vosk model (``model`` or the first found, see :mod:`voice_sim.models`).

    Prefer :func:`voice_sim.engines.get_engine`, which loads each model once per process.
    """
    from voice_sim.models import resolve_vosk_model

    path = resolve_vosk_model(model)
    try:
        import vosk
    except ImportError as e:
        raise ModelError("the vosk package is not installed", hint="pip install vosk") from e
    vosk.SetLogLevel(-1)  # Kaldi logs every model load to stderr otherwise
    with _stderr_captured() as captured:
        try:
            handle = vosk.Model(str(path))
        except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
            failure: Exception | None = e
        else:
            failure = None
    if failure is not None:
        # Kaldi prints its reason (and pages of usage) to fd 2 even at log level -1;
        # its last ERROR line is the one worth showing.
        reasons = re.findall(r"ERROR \(VoskAPI:.*?:\d+\) (.+)", captured.text)
        reason = reasons[-1].strip() if reasons else str(failure)
        raise ModelError(f"model folder {path}: Vosk cannot load it ({reason})",
                         hint="the folder is incomplete or damaged; fetch it again "
                              "(`voice-sim models fetch`)") from failure
    if captured.text:
        sys.stderr.write(captured.text)  # not Kaldi's: someone else's, pass it on
    return VoskEngine(path, handle)


class _Captured:
    text = ""


@contextlib.contextmanager
def _stderr_captured() -> Iterator[_Captured]:
    """Point fd 2 at a temporary file for the duration; the text is kept on exit."""
    out = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.text = tmp.read().decode("utf-8", errors="replace")


class VoskEngine:
    """A loaded Vosk model; :meth:`stream` gives each utterance a recognizer of its own."""

    name = "vosk"

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self.model = str(path)
        self._handle = handle

    def stream(self) -> VoskStream:
        """Start recognising one utterance."""
        return VoskStream(self)

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """Transcribe a whole mono float32 clip at SAMPLE_RATE."""
        s = self.stream()
        for i in range(0, len(samples), BATCH_CHUNK):
            s.feed(samples[i:i + BATCH_CHUNK])
        return s.finish()


class VoskStream:
    """One utterance through a ``KaldiRecognizer``.

    Vosk cuts the audio into its own utterances at long pauses; each one's words are
    kept as they come, with times from the start of the stream.
    """

    def __init__(self, engine: VoskEngine) -> None:
        import vosk

        self._engine = engine
        self._rec = vosk.KaldiRecognizer(engine._handle, SAMPLE_RATE)
        self._rec.SetWords(True)
        self._words: list[Word] = []
        self._texts: list[str] = []
        self._samples = 0
        self._done = False

    def feed(self, chunk: np.ndarray) -> bool:
        """Decode a chunk; True when Vosk closed an utterance (its words are kept)."""
        import numpy as np

        if self._done:
            raise InputError("this stream is finished", hint="start a new one with stream()")
        if chunk.ndim != 1:
            raise InputError(f"audio chunk has shape {chunk.shape}; expected mono samples",
                             hint="average the channels first")
        pcm = (np.clip(chunk, -1.0, 1.0) * 32767.0).astype("<i2")
        self._samples += len(pcm)
        if self._rec.AcceptWaveform(pcm.tobytes()):
            self._keep(json.loads(self._rec.Result()))
            return True
        return False

    def accept(self, chunk: np.ndarray) -> str:
        """Feed mono float32 samples at SAMPLE_RATE; return the text so far (partial)."""
        if self.feed(chunk):
            return " ".join(self._texts)
        partial = json.loads(self._rec.PartialResult()).get("partial", "")
        return " ".join([*self._texts, partial]).strip()

    def finish(self) -> Transcript:
        """End the utterance and return every word recognised."""
        if not self._done:
            self._done = True
            self._keep(json.loads(self._rec.FinalResult()))
        return Transcript(engine="vosk", model=self._engine.model,
                          text=" ".join(self._texts),
                          duration_s=self._samples / SAMPLE_RATE, words=tuple(self._words))

    def _keep(self, result: dict[str, Any]) -> None:
        text = (result.get("text") or "").strip()
        if text:
            self._texts.append(text)
        for w in result.get("result", ()):
            conf = w.get("conf")
            self._words.append(Word(
                word=str(w["word"]), start=float(w["start"]), end=float(w["end"]),
                conf=None if conf is None else min(1.0, max(0.0, float(conf)))))
