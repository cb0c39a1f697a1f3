"""The call engine end to end: real TTS answers, real recognition, delivery and scoring.

Every shipped persona is driven headless with good answers (its sample replies) and
with bad ones; a run is killed and interrupted mid-call; and the live path runs
through a fake sound card at the sounddevice level.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voice_sim.persona import Line, find_personas, load_persona
from voice_sim.session import (
    CallOptions,
    DeviceSpeaker,
    ScriptedTrainee,
    SilentSpeaker,
    run_call,
)
from voice_sim.speak import Voice

TRAINEE = Voice(id="en-us", rate=160, pitch=45)
SHIPPED = sorted(p.id for p in find_personas([Path(__file__).parents[1] / "personas"]))

# Whole calls through the session engine (TTS, Whisper, delivery, scoring, folder) for one
# persona of each kind of ending and difficulty: resolves by steps (easy, medium, hard),
# needs set_boundary, resolves only via escalate. Every shipped persona's good and bad
# paths are heard through the recogniser in tests/test_personas_shipped.py.
SESSION_PERSONAS = ("telecom-outage", "double-billing", "card-blocked-abroad",
                    "abusive-caller", "needs-supervisor")

BAD_REPLIES = (
    "Calm down. That's our policy and there's nothing I can do about it.",
    "You should have read the terms before you ordered. That's on you, not us.",
    "Look, you're overreacting, and that's just not true.",
    "Whatever. Not my department.",
)


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    pytest.importorskip("faster_whisper", reason="the whisper extra is not installed")
    from voice_sim.engines import get_engine

    return get_engine("whisper")


def _bad(turns: list[int]):  # type: ignore[no-untyped-def]
    def reply(line: Line) -> str:
        turns.append(1)
        return BAD_REPLIES[(len(turns) - 1) % len(BAD_REPLIES)]

    return reply


def test_shipped_personas_are_there() -> None:
    assert len(SHIPPED) >= 20
    assert set(SESSION_PERSONAS) <= set(SHIPPED)
    assert {load_persona(p).difficulty for p in SESSION_PERSONAS} == {"easy", "medium", "hard"}


@pytest.mark.slow
@pytest.mark.parametrize("persona_id", SESSION_PERSONAS)
def test_good_answers_resolve_bad_answers_escalate(persona_id: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    persona = load_persona(persona_id)
    opts = CallOptions(engine=engine, out_root=tmp_path, mode="run")

    good = run_call(persona, ScriptedTrainee(lambda line: line.sample_reply, TRAINEE),
                    SilentSpeaker(), opts)
    assert good.outcome == "resolved", [t.transcript.text for t in good.turns]
    assert good.score >= 70, good.record["turns"]

    bad = run_call(persona, ScriptedTrainee(_bad([]), TRAINEE), SilentSpeaker(), opts)
    assert bad.outcome in ("hung_up", "escalated"), [t.transcript.text for t in bad.turns]
    assert bad.score <= 40
    assert all(t.content.pitfalls for t in bad.turns)

    # The session folder holds every turn's audio and a complete session.json.
    record = json.loads((good.dir / "session.json").read_text())
    assert record == good.record.to_json()  # the typed record is what was written
    assert record["status"] == "complete"
    assert record["outcome"] == "resolved"
    assert record["engine"] == "whisper"
    mood = persona.start_mood
    for t in record["turns"]:
        assert (good.dir / t["customer"]["audio"]).stat().st_size > 1000
        assert (good.dir / t["answer_audio"]).stat().st_size > 1000
        assert {"id", "evidence"} <= set(t["steps"][0])
        assert t["delivery"]["calm"] in (True, False)
        # The mood is carried from turn to turn, stays on its 0-10 scale, and the move
        # recorded is the one applied.
        assert t["mood_before"] == mood and 0 <= t["mood_after"] <= 10
        assert (t["move"]["mood_before"], t["move"]["mood_after"]) == (
            t["mood_before"], t["mood_after"])
        mood = t["mood_after"]
    assert record["mood"] == mood
    # Good answers calm the customer down; bad ones never leave them calmer than at the
    # start.
    assert mood < persona.start_mood, [t["mood_after"] for t in record["turns"]]
    assert bad.record.mood is not None and bad.record.mood >= persona.start_mood


@pytest.mark.slow
@pytest.mark.model
def test_session_json_keys(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    persona = load_persona("double-billing")
    result = run_call(persona, ScriptedTrainee(lambda line: line.sample_reply, TRAINEE),
                      SilentSpeaker(), CallOptions(engine=engine, out_root=tmp_path))
    rec = json.loads((result.dir / "session.json").read_text())
    assert {"persona", "session_dir", "outcome", "score", "engine", "started_at",
            "duration_s", "turns"} <= set(rec)
    turn = rec["turns"][0]
    assert {"customer", "transcript", "steps", "pitfalls", "delivery", "mood_before",
            "mood_after", "latency_s"} <= set(turn)
    assert {"line", "text"} <= set(turn["customer"])
    assert {"duration_s", "speech_s", "pitch", "pace", "loudness", "pauses", "fillers",
            "calm", "calm_score", "reasons"} <= set(turn["delivery"])
    assert rec["session_dir"] == str(result.dir)
    # Never overwritten: a second session gets a folder of its own.
    again = run_call(persona, ScriptedTrainee(lambda line: None, TRAINEE), SilentSpeaker(),
                     CallOptions(engine=engine, out_root=tmp_path))
    assert again.dir != result.dir and again.outcome == "incomplete"


def _answers(tmp_path: Path, n: int) -> Path:
    from voice_sim.speak import render_wav

    persona = load_persona("double-billing")
    folder = tmp_path / "answers"
    lines = [line for line in persona.lines.values() if line.sample_reply][:n]
    for i, line in enumerate(lines, 1):
        render_wav(line.sample_reply, TRAINEE, folder / f"{i:02d}.wav")
    return folder


@pytest.mark.slow
def test_run_cli_json_incomplete_and_min_score(tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper", reason="the whisper extra is not installed")
    answers = _answers(tmp_path, 1)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "voice_sim", "run", "double-billing",
                           "--answers", str(answers), "--out", str(out), "--json",
                           "--min-score", "0", "--engine", "whisper"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["outcome"] == "incomplete"  # one answer; the call needs more
    assert len(rec["turns"]) == 1 and rec["turns"][0]["answer_source"] == "01.wav"
    from voice_sim.speak import render_wav

    bad = tmp_path / "bad"
    render_wav(BAD_REPLIES[0], TRAINEE, bad / "01.wav")
    proc = subprocess.run([sys.executable, "-m", "voice_sim", "run", "double-billing",
                           "--answers", str(bad), "--out", str(out), "--min-score", "50",
                           "--engine", "whisper"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "below --min-score 50" in proc.stderr
    assert "excuse" in proc.stdout or "dismissive" in proc.stdout  # the scorecard


def _made(path: Path, make) -> Path:  # type: ignore[no-untyped-def]
    make(path)
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "missing", "no such folder"),
        (lambda d: _made(d / "f.wav", lambda p: p.write_bytes(b"RIFF")), "not a folder"),
        (lambda d: _made(d / "empty", lambda p: p.mkdir()), "no audio files"),
    ],
)
def test_run_bad_answers_folder(tmp_path: Path, make, words: str) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run([sys.executable, "-m", "voice_sim", "run", "double-billing",
                           "--answers", str(make(tmp_path))], capture_output=True, text=True)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _ctrl_c_default() -> None:
    """In the child: Ctrl-C as at a terminal. A suite started in the background by a
    non-interactive shell (``cmd &``) inherits SIGINT ignored, and Python then never
    raises KeyboardInterrupt: the run would finish as if no one had pressed it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_run(tmp_path: Path, answers: Path) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "voice_sim", "run", "double-billing",
                             "--answers", str(answers), "--out", str(out), "--engine",
                             "whisper"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_ctrl_c_default)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for f in out.glob("*/session.json"):
            rec = json.loads(f.read_text())  # always valid JSON, even mid-write
            if rec["turns"]:
                return proc, f
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run never saved a turn")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_or_interrupted_mid_call_keeps_every_turn(tmp_path: Path, sig: int) -> None:
    pytest.importorskip("faster_whisper", reason="the whisper extra is not installed")
    answers = _answers(tmp_path, 3)
    for attempt in range(3):
        # Under load the folder's writes may lag so far behind the call that it has
        # finished by the time the first saved turn is seen: then the signal hit nothing,
        # and the run is tried again; the checks below need a run the signal stopped.
        proc, session_json = _start_run(tmp_path / f"try{attempt}", answers)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
        rec = json.loads(session_json.read_text())
        if proc.returncode != 0:
            break
    else:
        pytest.fail("three runs finished before the signal reached them")
    assert rec["turns"], rec
    for t in rec["turns"]:
        assert (session_json.parent / t["answer_audio"]).stat().st_size > 1000
        assert (session_json.parent / t["customer"]["audio"]).stat().st_size > 1000
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert rec["status"] == "complete" and rec["outcome"] in ("quit", "resolved")
        assert "Traceback" not in err
        # Ctrl-C lets every atomic write finish: no temp file is left behind.
        assert not list(session_json.parent.glob(".*.tmp"))
    else:
        assert proc.returncode == -signal.SIGKILL
        assert rec["status"] in ("in_progress", "complete")


@pytest.mark.slow
@pytest.mark.audio_device
def test_live_path_through_a_fake_sound_card(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Persona audio comes out, the answer goes in, the turn ends on silence, the next
    line plays — through the real listen/devices code on a fake sounddevice."""
    from fake_audio import installed

    from voice_sim.audio import load_audio
    from voice_sim.listen import Microphone, TurnConfig
    from voice_sim.practice import LiveTrainee
    from voice_sim.speak import cached_render

    persona = load_persona("double-billing")
    replies = [load_audio(cached_render(line.sample_reply, TRAINEE))
               for line in persona.lines.values() if line.sample_reply]
    with installed(answers=replies, speed=4.0, delay_s=0.4) as fake, Microphone(None) as mic:
        trainee = LiveTrainee(mic, engine, TurnConfig(silence_end_s=0.8))
        result = run_call(persona, trainee, DeviceSpeaker(None),
                          CallOptions(engine=engine, out_root=tmp_path, mode="practice"))
    assert result.outcome == "resolved", [t.transcript.text for t in result.turns]
    assert [t.answer.end_reason for t in result.turns] == ["silence"] * len(result.turns)
    # Every customer line (the opening, one per answer) came out of the speaker in order.
    assert len(fake.played) == len(result.turns) + 1
    starts = [p.start_s for p in fake.played]
    assert starts == sorted(starts)
    for t in result.turns:
        assert t.latency_s is not None and t.latency_s >= 0
        assert t.answer.wav.stat().st_size > 1000
        assert t.content.steps


@pytest.mark.slow
@pytest.mark.model
def test_demo_prints_the_call_in_the_order_it_was_spoken(
        engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from voice_sim.cli import main

    assert main(["demo", "--engine", "whisper", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    said = [("customer", line.split(": ", 1)[1]) if "customer (mood" in line
            else ("you", line.split("you: ", 1)[1])
            for line in err.splitlines() if "customer (mood" in line
            or line.startswith("   you: ")]
    [session] = tmp_path.iterdir()
    rec = json.loads((session / "session.json").read_text(encoding="utf-8"))
    spoken = [x for t in rec["turns"] for x in (("customer", t["customer"]["text"]),
                                                ("you", t["transcript"] or "(nothing heard)"))]
    if rec["closing"]:
        spoken.append(("customer", rec["closing"]["text"]))
    assert len(rec["turns"]) >= 3 and said == spoken, err
