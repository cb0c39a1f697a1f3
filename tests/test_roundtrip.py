"""Text → speech (pyttsx3, the persona's own voice) → Whisper → text, and Whisper's
incremental stream against its whole-clip transcription."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from voice_sim.audio import SAMPLE_RATE
from voice_sim.engines import Transcript, Word, get_engine, word_error_rate
from voice_sim.engines.whisper import PAUSE_S, WhisperEngine
from voice_sim.errors import ModelError, TTSError

pytestmark = pytest.mark.model

SENTENCES = (
    "I have been waiting on hold for almost an hour.",
    "I understand, and I am sorry you had to wait so long.",
    "Let me look at your account right now.",
    "The package was supposed to arrive last week.",
    "I will send you a replacement today at no charge.",
    "Thank you for your patience while I check the details.",
)


@pytest.fixture(scope="module")
def whisper() -> WhisperEngine:
    try:
        engine = get_engine("whisper")
    except ModelError as e:
        pytest.skip(e.line())
    assert isinstance(engine, WhisperEngine)
    return engine


@pytest.fixture(scope="module")
def rendered() -> list[np.ndarray]:
    from voice_sim.speak import render

    try:
        return [render(s) for s in SENTENCES]
    except TTSError as e:
        pytest.skip(e.line())


ANSWER = slice(1, 4)
"""The sentences spoken as one answer."""


@pytest.fixture(scope="module")
def answer(rendered: list[np.ndarray]) -> np.ndarray:
    """Three sentences spoken as one answer, with natural pauses and trailing silence."""
    pause = np.zeros(int(0.6 * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    for x in rendered[ANSWER]:
        parts += [x, pause]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def whole(whisper: WhisperEngine, answer: np.ndarray) -> Transcript:
    """The answer transcribed in one go."""
    return whisper.transcribe(answer)


@pytest.mark.slow
def test_pyttsx3_to_whisper_word_error_rate(whisper: WhisperEngine,
                                            rendered: list[np.ndarray]) -> None:
    hyps = [whisper.transcribe(x).text for x in rendered]
    wer = word_error_rate(" ".join(SENTENCES), " ".join(hyps))
    assert wer <= 0.15, list(zip(SENTENCES, hyps, strict=True))


def test_whole_clip_words_are_timed(whole: Transcript, answer: np.ndarray) -> None:
    t = whole
    duration = len(answer) / SAMPLE_RATE
    assert t.engine == "whisper" and t.duration_s == pytest.approx(duration)
    check_words(t.words, duration)
    # Words keep no punctuation; the text keeps Whisper's.
    assert all(w.word[-1] not in ".,?!" for w in t.words)
    assert t.text.rstrip()[-1] in ".?!"


@pytest.mark.slow
def test_stream_is_incremental_and_matches_transcribe(whisper: WhisperEngine,
                                                      rendered: list[np.ndarray],
                                                      answer: np.ndarray,
                                                      whole: Transcript) -> None:
    stream = whisper.stream()
    partials: list[str] = []
    committed: list[float] = []
    step = SAMPLE_RATE // 5
    for i in range(0, len(answer), step):
        stream.accept(answer[i:i + step])
        # As if the CPU kept up with a live feed: background work is done before more
        # audio arrives.
        stream.settle()
        text = stream.text()
        if text and (not partials or text != partials[-1]):
            partials.append(text)
        committed.append(stream.committed_s)
    # Partial results came while the answer was being spoken, and grew.
    assert len(partials) >= 3
    assert len(partials[-1]) > len(partials[0])
    # Segments were committed at the pauses, before the end: finish() has little left.
    assert sum(1 for a, b in itertools.pairwise(committed) if b > a) >= 2
    assert committed[-1] >= len(answer) / SAMPLE_RATE - 0.6 - PAUSE_S
    final = stream.finish()
    assert word_error_rate(whole.text, final.text) <= 0.1, (whole.text, final.text)
    assert word_error_rate(" ".join(SENTENCES[ANSWER]), final.text) <= 0.15, final.text
    check_words(final.words, len(answer) / SAMPLE_RATE)
    assert final.duration_s == pytest.approx(len(answer) / SAMPLE_RATE)
    # Committed segments keep their place in time: the last sentence's words start
    # where it does.
    last_starts = (len(answer) - len(rendered[ANSWER][-1])) / SAMPLE_RATE - 0.6
    n_last = len(SENTENCES[ANSWER][-1].split())
    assert all(w.start >= last_starts - 0.3 for w in final.words[-n_last + 1:])
    assert final.words[-n_last - 1].end <= last_starts


@pytest.mark.slow
def test_stream_fed_faster_than_it_decodes(whisper: WhisperEngine,
                                           answer: np.ndarray) -> None:
    """Fed as fast as possible, accept() skips work rather than queueing it; finish()
    still returns every word."""
    stream = whisper.stream()
    for i in range(0, len(answer), 1600):
        stream.accept(answer[i:i + 1600])
    final = stream.finish()
    assert word_error_rate(" ".join(SENTENCES[ANSWER]), final.text) <= 0.15, final.text
    check_words(final.words, len(answer) / SAMPLE_RATE)


def test_stream_of_silence_is_empty(whisper: WhisperEngine) -> None:
    stream = whisper.stream()
    for _ in range(10):
        stream.accept(np.zeros(SAMPLE_RATE // 10, dtype=np.float32))
    t = stream.finish()
    assert t.text == "" and t.words == () and t.duration_s == pytest.approx(1.0)


def check_words(words: tuple[Word, ...], duration_s: float) -> None:
    assert words, "no words recognised"
    for w in words:
        assert 0.0 <= w.start <= w.end <= duration_s + 1e-6, w
        assert w.conf is not None and 0.0 <= w.conf <= 1.0, w
        assert w.word == w.word.strip() and w.word
    assert all(a.end <= b.start + 1e-6 for a, b in itertools.pairwise(words))
