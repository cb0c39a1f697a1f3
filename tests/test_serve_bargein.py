"""Barge-in in the browser call: the page's line stops when the trainee talks over it,
and the line's own echo in the page's microphone does not stop it.

The server side is the real one (voice_sim.serve_call.PageAudio and WebPlayer under
voice_sim.bargein.ListeningSpeaker, on the StreamedMic); the page is tests/fake_page.py,
which plays what it is sent in real time and streams its microphone with the room's
echo path in it. tests/test_serve_browser.py does the same in real chromium.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_page import FakePage

from voice_sim.audio import SAMPLE_RATE, load_audio

pytestmark = pytest.mark.realtime

LINE = ("I have been waiting three weeks and nobody called me back. "
        "This is the worst service I have ever had.")
ANSWER = "I am so sorry, let me fix this for you right now."


@pytest.fixture(scope="module")
def speech(espeak_wav: Callable[..., Path]) -> dict[str, np.ndarray]:
    answer = load_audio(espeak_wav(ANSWER))
    loud = np.flatnonzero(np.abs(answer) > 0.01)
    return {"line": load_audio(espeak_wav(LINE, voice="en-us+m3", rate=190)),
            "answer": answer[loud[0]:loud[-1] + 1]}


def _call_parts(echo: float, when: str = "stop") -> tuple[Any, Any, Any, FakePage]:
    from voice_sim.bargein import ListeningSpeaker
    from voice_sim.serve_call import Controls, PageAudio, StreamedMic, as_microphone

    mic = StreamedMic()
    controls = Controls(deadline=time.perf_counter() + 120)
    page = FakePage(mic, echo=echo)
    audio = PageAudio(page.send, controls)
    page.audio = audio
    speaker = ListeningSpeaker(as_microphone(mic), when_interrupted=when, player=audio.player)
    return mic, controls, speaker, page


@pytest.mark.parametrize("when", ["stop", "finish_sentence"])
def test_the_page_line_stops_when_the_trainee_talks_over_it(
        speech: dict[str, np.ndarray], when: str, tmp_path: Path) -> None:
    from voice_sim.bargein import CARRY_S, PREROLL_S
    from voice_sim.listen import TurnConfig, capture_answer
    from voice_sim.serve_call import as_microphone

    mic, _, speaker, page = _call_parts(echo=0.3, when=when)
    line_s = len(speech["line"]) / SAMPLE_RATE
    with page:
        time.sleep(0.6)  # the page streams before the line: the room's floor
        page.talk_during(1, 2.0, speech["answer"])
        speaker.speak(speech["line"], SAMPLE_RATE)
        cut = speaker.last
        got = capture_answer(as_microphone(mic), None, TurnConfig(), sink=tmp_path / "a.wav")
    assert cut is not None, "the trainee talking over the line was not heard"
    played = page.played[0]
    assert played.end_s is not None and played.stop_asked_s is not None
    # Told to stop (or to end at the sentence's end) after the trainee began, and
    # soon: how soon is scripts/bench_serve.py --mode barge-in's to measure.
    began = played.start_s + 2.0
    assert began < played.stop_asked_s < began + 1.0
    assert played.played_s < line_s - 1.0
    assert cut.at_s == pytest.approx(2.0, abs=0.3)
    assert cut.finished_sentence == (when == "finish_sentence")
    assert cut.overlap_s > 0
    if when == "finish_sentence":
        assert played.end_s - began >= 0.2  # it went on to a pause in the line
    else:
        assert played.end_s - played.stop_asked_s <= 0.05
    # What was said over the line is the answer's start, with the echo taken out.
    assert got.reason == "silence" and got.heard_speech
    assert got.speech_start_s is not None and got.speech_end_s is not None
    answer_s = len(speech["answer"]) / SAMPLE_RATE
    span = got.speech_end_s - got.speech_start_s
    assert answer_s - 0.15 <= span <= answer_s + 2 * CARRY_S + PREROLL_S + 0.2


def test_the_page_line_own_echo_is_not_an_interruption(
        speech: dict[str, np.ndarray]) -> None:
    from voice_sim.listen import TurnConfig, capture_answer
    from voice_sim.serve_call import as_microphone

    mic, _, speaker, page = _call_parts(echo=0.5)
    line_s = len(speech["line"]) / SAMPLE_RATE
    with page:
        time.sleep(0.6)
        for _ in range(2):
            speaker.speak(speech["line"], SAMPLE_RATE)
            assert speaker.last is None
        got = capture_answer(as_microphone(mic), None, TurnConfig(no_answer_s=1.0))
    assert len(page.played) == 2
    for p in page.played:
        assert p.stop_asked_s is None
        assert p.played_s == pytest.approx(line_s, abs=0.03)
    assert speaker.aec is not None and speaker.aec.lag is not None  # the canceller ran
    assert not got.heard_speech


def test_a_quit_during_a_page_line_ends_it(speech: dict[str, np.ndarray]) -> None:
    """The end-call button while the customer talks: the speaker returns at once."""
    _, controls, speaker, page = _call_parts(echo=0.0)
    with page:
        time.sleep(0.3)
        threading_timer(1.0, controls.quit.set)
        t0 = time.perf_counter()
        speaker.speak(speech["line"], SAMPLE_RATE)
        took = time.perf_counter() - t0
    assert took < 2.5 < len(speech["line"]) / SAMPLE_RATE


def threading_timer(after_s: float, fn: Callable[[], Any]) -> None:
    import threading

    t = threading.Timer(after_s, fn)
    t.daemon = True
    t.start()
