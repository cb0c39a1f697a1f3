"""Never lose a recording: ``kill -9`` at random moments during ``practice`` and ``run``.

Calls are started again and again in the same sessions folder and history database
and killed at seeded random moments of seeded phases (``VOICE_SIM_KILL_SEED`` replays
a schedule): during start-up, right after the session folder appears, and a random time
after the first and after the second turn was saved — so kills are known to land
mid-call, not only before it, and the test checks that they did. After
every kill: each ``session.json`` parses; every turn it lists has its customer and
answer WAVs, readable and of the right length and content; the answer being recorded
when the kill came holds exactly the audio captured so far; the history database
passes ``PRAGMA integrity_check`` and loads. At the end a call runs to completion in
the same folders and no temporary file is left anywhere.

``practice`` runs on the fake sound card (tests/kill_driver.py) with a digitally
silent room, so the samples every answer WAV must hold are known exactly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PERSONA = "double-billing"
SPEED = 5.0
"""The fake sound card's pace: five times real time."""
DELAY_S = 2.0
"""Fake seconds (0.4 s real) from the end of a line to the answer."""
KILLS = 8
"""Kills in all, alternating practice and run."""
PHASES = (None, 0, 1, 2)
"""When each pair of kills comes: during start-up (None), or after the call saved this
many turns (then a random moment later: a line playing, an answer half recorded,
scoring, the last save, the report, the history)."""
WAIT_S = 120.0
"""Longest wait for a call to reach its phase (a model load on a busy machine)."""
DRIVER = Path(__file__).with_name("kill_driver.py")
BLOCK_BYTES = 640
"""One microphone block (20 ms at 16 kHz, 16-bit)."""


@dataclass
class Ledger:
    """What the tests saw across all the kills."""

    kills: list[str] = field(default_factory=list)
    sessions_checked: int = 0
    turns_checked: int = 0
    partial_answers: int = 0


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The persona's sample replies rendered by TTS, as 16 kHz 16-bit WAVs (so the
    samples a recording must hold are exact)."""
    pytest.importorskip("faster_whisper", reason="the whisper extra is not installed")
    from voice_sim.audio import load_audio, write_wav
    from voice_sim.persona import load_persona
    from voice_sim.speak import Voice, cached_render

    trainee = Voice(id="en-us", rate=160, pitch=45)
    folder = tmp_path_factory.mktemp("answers")
    persona = load_persona(PERSONA)
    replies = [line.sample_reply for line in persona.lines.values() if line.sample_reply]
    out = []
    for i, text in enumerate(replies, 1):
        out.append(write_wav(folder / f"{i:02d}.wav", load_audio(cached_render(text, trainee))))
    return out


def _pcm(path: Path) -> Any:
    import soundfile as sf

    data, _ = sf.read(str(path), dtype="int16", always_2d=True)
    return data[:, 0]


def _fed_pcm(answer: Path) -> Any:
    """The answer as the fake microphone delivers it in 16-bit (see fake_audio)."""
    import numpy as np

    from voice_sim.audio import load_audio

    return (np.clip(load_audio(answer), -1.0, 1.0) * 32767).astype(np.int16)


def _header_covers_file(wav: Path) -> None:
    """The WAV header accounts for the audio on disk: at most the one block being
    written at the moment of the kill may lie beyond it."""
    import struct

    raw = wav.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE", f"{wav}: not a WAV file"
    pos = 12
    while pos + 8 <= len(raw):
        tag, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        if tag == b"data":
            on_disk = len(raw) - pos - 8
            assert 0 <= on_disk - size <= BLOCK_BYTES, (
                f"{wav}: the header covers {size} bytes of audio, {on_disk} are on disk")
            return
        pos += 8 + size + (size & 1)
    raise AssertionError(f"{wav}: no data chunk")


def _nonzero_span(x: Any) -> Any:
    import numpy as np

    nz = np.flatnonzero(x)
    return x[nz[0]:nz[-1] + 1] if nz.size else x[:0]


def _check_practice_answer(wav: Path, fed: Path, complete: bool) -> None:
    """The WAV holds the fed answer (all of it, or a prefix when cut off by the kill):
    the room is digitally silent, so the sound in it is exactly the answer's."""
    import numpy as np

    _header_covers_file(wav)
    got = _pcm(wav)
    want = _nonzero_span(_fed_pcm(fed))
    nz = np.flatnonzero(got)
    if not nz.size:
        assert not complete, f"{wav}: silent, but the turn was scored"
        return
    heard = got[nz[0]:nz[-1] + 1]
    if complete:
        assert len(heard) == len(want), f"{wav}: {len(heard)} samples of speech, fed {len(want)}"
    else:
        assert len(heard) <= len(want), f"{wav}: more sound than the answer fed"
        want = want[: len(heard)]
    assert np.array_equal(heard, want), f"{wav}: differs from the audio fed"


def _check_customer(path: Path, line: dict[str, Any], persona: Any, mood: float) -> None:
    """The customer's audio is the line's phrasing in the voice at the mood it was said."""
    from dataclasses import replace

    import soundfile as sf

    from voice_sim.call import Call
    from voice_sim.speak import cached_render

    src = persona.lines[line["line"]]
    variant = line.get("variant") or 0
    said = replace(src, text=src.texts[variant], variant=variant)
    call = Call(persona, seed=0)
    call.mood = mood
    ref = src.audio if src.audio and not variant else \
        cached_render(said.text, call.voice_for(said))
    got, want = sf.info(str(path)), sf.info(str(ref))
    assert (got.frames, got.samplerate) == (want.frames, want.samplerate), path


def _check_session(d: Path, kind: str, answers: list[Path], ledger: Ledger | None) -> None:
    """Check one session folder; count what was seen in ``ledger`` (when given)."""
    import numpy as np

    from voice_sim.persona import load_persona

    files = {p.name for p in d.iterdir() if not p.name.endswith(".tmp")}
    if "session.json" not in files:
        # Killed between creating the folder and the first save (milliseconds): there
        # must be nothing else in it to lose.
        assert not files, f"{d}: files but no session.json: {sorted(files)}"
        return
    rec = json.loads((d / "session.json").read_text(encoding="utf-8"))
    assert rec["status"] in ("in_progress", "complete", "failed"), rec["status"]
    assert rec["mode"] == kind
    persona = load_persona(rec["persona"])
    tally = ledger or Ledger()
    tally.sessions_checked += 1
    for t in rec["turns"]:
        n = t["index"]
        _check_customer(d / t["customer"]["audio"], t["customer"], persona, t["mood_before"])
        wav = d / t["answer_audio"]
        if kind == "practice":
            _check_practice_answer(wav, answers[n - 1], complete=True)
        else:
            assert np.array_equal(_pcm(wav), _pcm(answers[n - 1])), wav
        tally.turns_checked += 1
    if rec["closing"]:
        _check_customer(d / rec["closing"]["audio"], rec["closing"], persona,
                        rec["turns"][-1]["mood_after"])
    # The turn that was under way: its customer line (written whole or not at all) and
    # the answer captured so far.
    n = len(rec["turns"]) + 1
    if n > len(answers):
        return
    customer = d / f"turn-{n:02d}-customer.wav"
    if customer.exists() and rec["turns"]:
        move = rec["turns"][-1]["move"]
        if move["next_line"]:
            _check_customer(customer, {"line": move["next_line"],
                                       "variant": move["next_variant"]}, persona,
                            move["mood_after"])
    wav = d / f"turn-{n:02d}-answer.wav"
    if wav.exists() and rec["status"] == "in_progress":
        tally.partial_answers += 1
        if kind == "practice":
            _check_practice_answer(wav, answers[n - 1], complete=False)
        else:
            assert np.array_equal(_pcm(wav), _pcm(answers[n - 1])), wav


def _check_history(db: Path, out: Path) -> int:
    """The database is sound and names only finished sessions; returns its row count."""
    from voice_sim.history import load_history

    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    rows = load_history(db)
    for s in rows:
        rec = json.loads((Path(s.session_dir) / "session.json").read_text(encoding="utf-8"))
        assert rec["status"] == "complete", s.session_dir
        assert Path(s.session_dir).parent == out
    return len(rows)


def _command(kind: str, answers: list[Path], out: Path, folder: Path | None = None
             ) -> list[str]:
    if kind == "practice":
        return [sys.executable, str(DRIVER), "--speed", str(SPEED), "--delay", str(DELAY_S),
                *map(str, answers), "--", "practice", PERSONA, "--no-baseline",
                "--engine", "whisper", "--out", str(out)]
    return [sys.executable, "-m", "voice_sim", "run", PERSONA, "--answers",
            str(folder or answers[0].parent), "--engine", "whisper", "--out", str(out)]


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.audio_device
def test_kill_9_at_random_moments_loses_nothing(answers: list[Path], tmp_path: Path) -> None:
    seed = int(os.environ.get("VOICE_SIM_KILL_SEED", "20261123"))
    rng = random.Random(seed)
    out = tmp_path / "sessions"
    db = tmp_path / "history.sqlite3"
    env = {**os.environ, "VOICE_SIM_HISTORY": str(db)}
    ledger = Ledger()
    # `run` gets the first two answers only: it finishes (final save, report, history)
    # inside the kill window, so kills land there too.
    short = tmp_path / "two-answers"
    short.mkdir()
    for a in answers[:2]:
        os.link(a, short / a.name)
    saved_at_kill: list[int] = []
    for k in range(KILLS):
        kind = ("practice", "run")[k % 2]
        phase = PHASES[k // 2 % len(PHASES)]
        before = set(out.glob("*")) if out.exists() else set()
        proc = subprocess.Popen(_command(kind, answers, out, short), env=env,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        if phase is None:
            time.sleep(rng.uniform(0.5, 3.0))  # imports, persona, model loading
        else:
            _wait_for_turns(proc, out, before, phase)
            time.sleep(rng.uniform(0.0, 2.0))
        at = time.monotonic() - t0
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode in (-signal.SIGKILL, 0), err.decode(errors="replace")
        new = sorted(set(out.glob("*")) - before) if out.exists() else []
        temps = len(list(out.rglob("*.tmp"))) if out.exists() else 0
        states = [_status_of(d) for d in new]
        saved_at_kill.append(max((_turns_of(d) for d in new), default=0))
        if phase:
            assert saved_at_kill[-1] >= phase, (kind, phase, states)
        ledger.kills.append(f"{kind} at {at:.2f} s: {', '.join(states) or 'no session yet'}"
                            + (f", {temps} temp file(s) left" if temps else ""))
        # Every folder again: a later call must not have disturbed an earlier one.
        for d in sorted(out.glob("*")) if out.exists() else []:
            _check_session(d, kind if d in new else _mode_of(d), answers,
                           ledger if d in new else None)
        rows = _check_history(db, out)
        ledger.kills[-1] += f", {rows} in history"
    # What the kills exercised: half of them came after a turn was saved, so saved turns
    # of killed calls were checked, not only calls killed before they began.
    assert sum(n >= 1 for n in saved_at_kill) >= KILLS // 2, ledger.kills
    assert ledger.turns_checked >= KILLS // 2 and ledger.sessions_checked >= KILLS // 2, ledger
    # A call afterwards runs to completion in the same folders and history (a headless
    # one: the practice calls above already started cleanly after each kill).
    rows_before = _check_history(db, out)
    t0 = time.monotonic()
    last = subprocess.run(_command("run", answers, out), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=180)
    ledger.kills.append(f"then a whole call in {time.monotonic() - t0:.1f} s")
    assert last.returncode == 0, last.stderr.decode(errors="replace")
    done = max(out.glob("*"), key=lambda p: p.stat().st_mtime)
    rec = json.loads((done / "session.json").read_text(encoding="utf-8"))
    assert rec["status"] == "complete" and rec["outcome"] != "quit", rec["outcome"]
    _check_session(done, "run", answers, ledger)
    assert _check_history(db, out) == rows_before + 1
    # Temporary files of killed writers were swept by the calls that came after them.
    left = sorted(p.relative_to(out) for p in out.rglob("*.tmp"))
    assert not left, left
    print(f"seed {seed}: " + "; ".join(ledger.kills)
          + f"; {ledger.sessions_checked} sessions with a session.json, {ledger.turns_checked} "
            f"saved turns, {ledger.partial_answers} answers cut off mid-recording")


def _wait_for_turns(proc: subprocess.Popen[bytes], out: Path, before: set[Path],
                    turns: int) -> None:
    """Until the call started after ``before`` has saved ``turns`` turns (0: until its
    session.json exists), or it has ended."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        new = set(out.glob("*")) - before if out.exists() else set()
        if any((d / "session.json").exists() and _turns_of(d) >= turns for d in new):
            return
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
        raise AssertionError(f"the call never saved {turns} turn(s) in {WAIT_S:g} s")


def _turns_of(d: Path) -> int:
    f = d / "session.json"
    return len(json.loads(f.read_text(encoding="utf-8"))["turns"]) if f.exists() else 0


def _status_of(d: Path) -> str:
    f = d / "session.json"
    if not f.exists():
        return "empty folder"
    rec = json.loads(f.read_text(encoding="utf-8"))
    return f"{rec['status']} after {len(rec['turns'])} turn(s)"


def _mode_of(d: Path) -> str:
    f = d / "session.json"
    return json.loads(f.read_text(encoding="utf-8"))["mode"] if f.exists() else "run"
