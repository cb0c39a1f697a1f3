#!/usr/bin/env python3
"""Turn latency of the live path, in real time, through a virtual microphone.

Session mode (the default) drives the whole live call as ``voice-sim practice`` runs
it: :func:`voice_sim.session.run_call` with a :class:`voice_sim.practice.LiveTrainee`
on a :class:`voice_sim.listen.Microphone` (the ALSA virtual microphone ``vsim_mic``,
fed in real time by scripts/virtual_mic.py), a :class:`voice_sim.bargein.ListeningSpeaker`
on the virtual speaker ``vsim_spk``, Whisper (or ``--engine``), the shipped personas
(``--persona``, one call each, ``--calls``) and a synthetic calm baseline, as
``practice`` records one. The trainee's answers are TTS renders of each line's
``sample_reply``, spoken ``--delay`` seconds after the persona's line is heard to end
at the speaker. Per turn it prints, in milliseconds:

  perceived the true end of the trainee's speech (known from the rendered answer) ->
            the first sound of the persona's reply at the speaker: the gap the trainee
            hears (targets: median <= 500 ms, p95 <= 900 ms)
  detect    the true end of the speech -> the end detected (the pause the end-of-turn
            rule waited, device buffering included), split into
            pause_seen  -> the first block after the speech (the voice model's verdict)
            words_seen  -> the engine's words reach the pause (the pause's own decode)
            decided     -> the end detected (the rest of the pause the rule asked for)
  latency   Turn.latency_s: the end detected -> the next line handed to the speaker,
            split into
            final     -> the final transcript ready (absent when the line was planned
                         on the partial words: session.CONFIRM_S)
            content   -> the words scored
            delivery  -> the delivery analysed
            moved     -> the mood moved and the next line chosen
            started   -> the line handed to the speaker
  audible   the end detected -> the line's first sound at the speaker
  deaf      the line finished playing -> the microphone capturing the next answer

and the distribution (median, p95, max) of each over all turns, with the load average
at the start and the end (the machine may be shared). ``--trace`` also prints the
Whisper stream's decodes (pause, partial, commit) around each turn's end.

Capture mode (``--mode capture``) measures only capture_answer + playback of a fixed
line, on short espeak-ng sentences: perceived, detect, final, play (final transcript ->
sound at the speaker) and turn (end detected -> sound).

Barge-in mode (``--mode barge-in``, ALSA only) plays persona lines with a simulated
echo path and counts false barge-ins, then interrupts lines and times the stop (see
:func:`run_barge_in`).

``--device fake`` runs either through the tests' fake sound card (tests/fake_audio.py,
no PortAudio) instead, at ``--speed`` times real time, labelled as such in the output.
In session mode there the answer to each reply is queued as the reply is said; a reply
that gives way takes its answer back (the trainee is still on the last one), each
turn's reply sound is found by time, and yields are counted as on ALSA (``yielded``).

    .venv/bin/python scripts/bench_latency.py --engine whisper [--turn-end fast] [--json]
    .venv/bin/python scripts/bench_latency.py --mode capture --answers 10 --engine whisper
    .venv/bin/python scripts/bench_latency.py --mode barge-in [--trials 20] [--echo-trials 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The fake sound card (--device fake) is a test double: it lives with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SENTENCES = [
    "I understand why you are upset, let me look into your order right now.",
    "I am sorry this happened, that sounds really frustrating.",
    "So the charge appeared twice on your statement this month.",
    "Let me check the delivery status for you.",
    "Thank you for your patience while I pull up your account.",
    "I can issue a refund today, and you will see it within five days.",
    "What I can do is send a replacement by express shipping.",
    "Could you tell me the order number, please?",
    "You are right, we should have called you back yesterday.",
    "I will stay on the line until this is sorted out.",
    "Here is what happens next: I file the claim and email you the reference.",
    "Is there anything else I can help you with today?",
]
PERSONA_LINE = "Fine. And how long is that going to take?"
DEFAULT_PERSONAS = "double-billing,late-sofa,perfectionist"
"""Session mode: shipped personas whose good path takes 3-4 turns of 7-13 s answers."""


def render(text: str, folder: Path, i: int, voice: str = "en-us") -> Any:
    """espeak-ng to a WAV, loaded as 16 kHz float32."""
    from voice_sim.audio import load_audio

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("bench_latency: espeak-ng is not installed (apt-get install espeak-ng)")
    out = folder / f"{i:02d}.wav"
    subprocess.run([exe, "-v", voice, "-s", "165", "-w", str(out), text], check=True)
    return load_audio(out)


def stats(xs: list[float]) -> dict[str, float] | None:
    """Median, p95 and max, in milliseconds (None: no figures, e.g. ``--trials 0``)."""
    if not xs:
        return None
    s = sorted(xs)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    return {"median_ms": round(statistics.median(s) * 1000, 1),
            "p95_ms": round(p95 * 1000, 1), "max_ms": round(s[-1] * 1000, 1)}


def run_alsa(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Through PortAudio and the ALSA virtual devices."""
    from virtual_mic import MIC, SPEAKER, VirtualAudio

    va = VirtualAudio(folder / "vmic").activate()  # before sounddevice is imported
    from voice_sim import devices
    from voice_sim.listen import Microphone, capture_answer

    answers = [render(SENTENCES[i % len(SENTENCES)], folder, i) for i in range(args.answers)]
    line = render(PERSONA_LINE, folder, 99, voice="en-us+m3")
    engine = load_engine(args.engine)
    cfg = turn_config(args)
    rows = []
    with Microphone(MIC) as mic:
        time.sleep(0.5)  # let the device settle and the floor be learned
        for i, ans in enumerate(answers):
            u = va.say(ans, delay_s=0.4)
            got = capture_answer(mic, engine, cfg)
            asked = time.perf_counter()
            # The next persona line: pre-rendered, played on the virtual speaker. Playback
            # blocks for the line's length; its start is seen by the speaker thread.
            if args.play == "devices":
                devices.play(line, 16_000, device=SPEAKER)
            else:
                sd = devices.load_sounddevice()
                sd.play(line, 16_000, device=devices.resolve_device(SPEAKER, "output"),
                        blocking=True, latency="low")
            sound = va.wait_sound(asked - 0.001)
            if got.reason != "silence" or sound is None or u.speech_end_at is None:
                print(f"  answer {i}: ended by {got.reason}, sound={sound}: skipped",
                      file=sys.stderr)
                continue
            rows.append(row(i, got, u.speech_end_at, sound))
            print_row(rows[-1])
    va.close()
    return rows


def run_fake(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Through the tests' fake sound card at real-time speed (no PortAudio)."""
    from fake_audio import installed
    from virtual_mic import speech_end_index

    from voice_sim import devices
    from voice_sim.listen import Microphone, capture_answer

    answers = [render(SENTENCES[i % len(SENTENCES)], folder, i) for i in range(args.answers)]
    line = render(PERSONA_LINE, folder, 99, voice="en-us+m3")
    engine = load_engine(args.engine)
    cfg = turn_config(args)
    rows = []
    with installed(speed=1.0) as fake, Microphone() as mic:
        for ans in answers:
            fake.add_answer(ans, delay_s=0.4)
        devices.play(line, 16_000)
        for i, ans in enumerate(answers):
            got = capture_answer(mic, engine, cfg)
            devices.play(line, 16_000)
            start, _ = fake.answers_fed[i]
            pb = fake.played[-1]
            if got.reason != "silence" or start is None or pb.sound_at is None:
                print(f"  answer {i}: ended by {got.reason}: skipped", file=sys.stderr)
                continue
            # Fake-clock seconds to perf_counter (speed 1: the same scale).
            speech_end_at = fake._t0 + start + speech_end_index(ans) / 16_000
            rows.append(row(i, got, speech_end_at, pb.sound_at))
            print_row(rows[-1])
    return rows


# --- the whole session -------------------------------------------------------------------

TRAINEE_VOICE = {"id": "en-us", "rate": 160, "pitch": 45}
"""The synthetic trainee's voice (the demo's)."""
STAGES = ("final", "content", "delivery", "moved", "started")
"""The critical path of a turn, as voice_sim.session.TurnTiming stamps it."""


class _Observed:
    """Wraps the session's trainee and speaker to note when a line finished playing and
    when the microphone was listening again (nothing else changes)."""

    def __init__(self, trainee: Any, speaker: Any) -> None:
        self.trainee, self.speaker = trainee, speaker
        self.spoke_until: list[float] = []
        self.listening_at: list[float] = []

    def answer(self, turn: int, line: Any, wav: Path) -> Any:
        self.listening_at.append(time.perf_counter())
        return self.trainee.answer(turn, line, wav)

    def speak(self, samples: Any, sr: int) -> float:
        started = self.speaker.speak(samples, sr)
        self.spoke_until.append(time.perf_counter())
        return float(started)

    @property
    def last(self) -> Any:
        """The speaker's barge-in of the latest line (the session reads it)."""
        return self.speaker.last

    @property
    def on_sound(self) -> Any:
        """The speaker's hook for the line's first sound (the session sets it)."""
        return self.speaker.on_sound

    @on_sound.setter
    def on_sound(self, fn: Any) -> None:
        self.speaker.on_sound = fn

    @property
    def replying(self) -> bool:
        """The next line answers the trainee (the session sets it)."""
        return bool(self.speaker.replying)

    @replying.setter
    def replying(self, on: bool) -> None:
        self.speaker.replying = on

    @property
    def gave_way(self) -> Any:
        """The latest line gave way to the trainee going on (the session reads it)."""
        return self.speaker.gave_way

    def go_on(self, before: Any) -> Any:
        return self.trainee.go_on(before)


def run_session(args: argparse.Namespace, folder: Path, persona_id: str,
                va: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The real call engine: run_call + LiveTrainee(Microphone) + ListeningSpeaker, answers
    (TTS renders of each line's sample_reply) spoken into the microphone in real time,
    each ``--delay`` seconds after the persona's line has finished playing."""
    import threading

    import numpy as np
    from virtual_mic import MIC, SOUND_INT16, SPEAKER, speech_end_index

    mic_dev, spk_dev = (MIC, SPEAKER) if va is not None else (None, None)

    from voice_sim.audio import load_audio
    from voice_sim.bargein import ListeningSpeaker
    from voice_sim.delivery import Baseline
    from voice_sim.listen import Microphone
    from voice_sim.persona import load_persona
    from voice_sim.practice import LiveTrainee, live_turn_config
    from voice_sim.rubric import load_rubric
    from voice_sim.session import (
        BASELINE_SENTENCE,
        CallEvents,
        CallOptions,
        run_call,
    )
    from voice_sim.speak import Voice, cached_render

    persona = load_persona(persona_id)
    voice = Voice(**TRAINEE_VOICE)  # type: ignore[arg-type]
    replies = {line.id: load_audio(cached_render(line.sample_reply, voice))
               for line in persona.lines.values() if line.sample_reply and not line.end}
    engine = load_engine(args.engine)
    baseline = None
    if not args.no_baseline:
        # As `practice` does before the call: a calm reading (here synthetic) analysed
        # with the engine's transcript, which also warms the delivery analysis up.
        calm = load_audio(cached_render(BASELINE_SENTENCE, voice))
        baseline = Baseline.from_audio(calm, engine.transcribe(calm))
    fed: list[dict[str, Any]] = []  # one per answer spoken: its times
    lines: list[tuple[Any, float]] = []
    gave_way: list[int] = []  # indexes in ``lines`` of replies that gave way
    cv = threading.Condition()
    stop = threading.Event()
    fake = None

    def on_line(line: Any, mood: float) -> None:
        with cv:
            lines.append((line, time.perf_counter()))
            cv.notify()
        if fake is not None and line.id in replies:
            # The fake sound card starts it delay_s after this line's playback ends.
            fake.add_answer(replies[line.id], delay_s=args.delay)
            fed.append({"line": line.id, "at_line": len(lines) - 1,
                        "speech_end_index": speech_end_index(replies[line.id])})

    def on_yield(y: Any) -> None:
        # The reply just said gave way: the trainee is still on the same answer, which
        # needs no reply of its own.
        with cv:
            gave_way.append(len(lines) - 1)
        if fake is not None and fed and fed[-1].get("at_line") == len(lines) - 1:
            # The fake card was told to answer that reply once it ended: take it back.
            if fake.withdraw_answer():
                fed.pop()
            else:
                print("  a reply gave way after its answer began: the answers are out of "
                      "step from here", file=sys.stderr)
        if obs.spoke_until:
            obs.spoke_until.pop()  # nor is the reply's end a line the trainee heard out

    def feeder() -> None:
        # ALSA: wait for the line's sound to start at the virtual speaker and then stop,
        # as a listener would, and answer `--delay` seconds later.
        assert va is not None
        done = 0
        while not stop.is_set():
            with cv:
                while len(lines) == done and not stop.is_set():
                    cv.wait(0.1)
                if stop.is_set():
                    return
                line, asked = lines[done]
                done += 1
            if line.id not in replies or done - 1 in gave_way:
                continue
            began = va.wait_sound(asked, timeout=30.0)
            if began is None:
                return
            # The line sounds from its first audible sample to its last: a listener hears
            # it out (a pause between its sentences is not its end).
            loud = np.flatnonzero(np.abs(voice_samples(line)) > SOUND_INT16 / 32768)
            sounding = (loud[-1] - loud[0]) / 16_000 if loud.size else 0.0
            while not stop.is_set() and (time.perf_counter() < began + sounding - 0.05
                                         or va.speaker_quiet_for() < QUIET_END_S):
                if done - 1 in gave_way:
                    break
                time.sleep(0.005)
            if done - 1 in gave_way:
                continue
            heard_end = time.perf_counter() - QUIET_END_S
            u = va.say(replies[line.id], delay_s=max(0.0, args.delay - QUIET_END_S))
            fed.append({"line": line.id, "utterance": u, "line_end": heard_end})

    def voice_samples(line: Any) -> Any:
        return load_audio(line.audio or cached_render(line.text, persona.voice))

    out_root = folder / "sessions"
    cfg = live_turn_config(args.silence_end, turn_end=args.turn_end)  # as `practice` does
    # Each answer's capture, for the stages of the detection (pause seen, words seen).
    import voice_sim.listen as listen

    captured: list[Any] = []
    capture = listen.capture_answer

    def capture_noted(*a: Any, **kw: Any) -> Any:
        got = capture(*a, **kw)
        captured.append(got)
        return got

    listen.capture_answer = capture_noted  # type: ignore[assignment]
    ctx: Any
    if args.device == "fake":
        from fake_audio import installed

        ctx = installed(speed=args.speed)
    else:
        import contextlib

        ctx = contextlib.nullcontext()
    thread = None
    with ctx as fake_dev:
        fake = fake_dev
        if va is not None:
            thread = threading.Thread(target=feeder, daemon=True, name="bench-feeder")
            thread.start()
        with Microphone(mic_dev) as mic:
            obs = _Observed(LiveTrainee(mic, engine, cfg),
                            ListeningSpeaker(mic, spk_dev,
                                             when_interrupted=persona.when_interrupted))
            options = CallOptions(engine=engine, baseline=baseline,
                                  baseline_source=None if baseline is None else "synthetic",
                                  rubric=load_rubric(), coach="after", out_root=out_root,
                                  mode="practice")
            t0 = time.perf_counter()
            result = run_call(persona, obs, obs, options,
                              CallEvents(on_line=on_line, on_yield=on_yield))
            wall = time.perf_counter() - t0
        stop.set()
        listen.capture_answer = capture  # type: ignore[assignment]
        fed_times = fake.answers_fed if fake is not None else []
        fake_t0 = fake._t0 if fake is not None else 0.0
        played = list(fake.played) if fake is not None else []
    if thread is not None:
        thread.join(timeout=2.0)
    rows = []
    for i, t in enumerate(result.turns):
        tm = t.timing
        r: dict[str, Any] = {"answer": i, "end_reason": t.answer.end_reason,
                             "latency": t.latency_s, "text": t.transcript.text,
                             "planned": t.plan is not None,
                             "plan_changed": t.plan is not None and bool(t.plan.changed),
                             "interrupted": t.interruption is not None,
                             "yielded": len(t.yields)}
        if tm is not None:
            r.update(tm.stages())
        if t.latency_s is None or tm is None or tm.ended is None:
            print(f"  turn {t.index}: no next line or no live end ({t.answer.end_reason})",
                  file=sys.stderr)
            continue
        sound = None
        f = fed[i] if i < len(fed) else None
        if va is not None:
            sound = next((x for x in va.sound_starts if x >= (tm.moved or tm.ended)), None)
            # The answer this turn ended: the last one begun before its end was detected
            # (by time, not by count: a reply that gave way is answered by no one).
            begun = [g["utterance"] for g in fed if g.get("utterance") is not None
                     and g["utterance"].start_at is not None
                     and g["utterance"].start_at < tm.ended]
            u = max(begun, key=lambda x: x.start_at) if begun else None
            if u is not None and u.speech_end_at is not None:
                r["detect"] = tm.ended - u.speech_end_at
                got = next((c for c in captured if c.ended_at == tm.ended), None)
                if got is not None:
                    r["why"], r["partial"] = got.end_why, got.partial
                if got is not None and got.pause_at is not None:
                    r["pause_seen"] = got.pause_at - u.speech_end_at
                    if got.words_at is not None:
                        r["words_seen"] = got.words_at - got.pause_at
                        r["decided"] = tm.ended - got.words_at
                trace_turn(u.speech_end_at, tm.ended)
                if sound is not None:
                    r["perceived"] = sound - u.speech_end_at
        elif f is not None and i < len(fed_times) and fed_times[i][0] is not None:
            speech_end = fake_t0 + (fed_times[i][0] + f["speech_end_index"] / 16_000) / args.speed
            r["detect"] = tm.ended - speech_end
            # The reply's first sound: the first after the line was chosen (by time, not
            # by count: a reply that gave way had sounded before the answer's end).
            sound = next((pb.sound_at for pb in played if pb.sound_at is not None
                          and pb.sound_at >= (tm.moved or tm.ended)), None)
            if sound is not None:
                r["perceived"] = sound - speech_end
        if sound is not None:
            r["audible"] = sound - tm.ended
        if i + 1 < len(obs.listening_at) and i + 1 < len(obs.spoke_until):
            r["deaf"] = obs.listening_at[i + 1] - obs.spoke_until[i + 1]
        rows.append(r)
        print_session_row(r)
    first_deaf = obs.listening_at[0] - obs.spoke_until[0] if obs.spoke_until else None
    meta = {"persona": persona.id, "outcome": result.outcome, "score": result.score,
            "turns": len(result.turns),
            "session_wall_s": round(wall, 2), "first_deaf_ms": None if first_deaf is None
            else round(first_deaf * 1000, 1),
            "baseline": baseline is not None}
    return rows, meta


def run_barge_in(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Interruptions and echo, on the ALSA virtual devices in real time with a simulated
    echo path (the speaker's audio back into the microphone, ``--echo`` gain, 80 ms late).

    Echo trials: persona lines played with nobody talking; any barge-in is false, and so
    is any yield (every line after the first is played as a reply).
    Interruption trials: a trainee answer starts 0.8-2.0 s into a line (seeded); the stop
    time is from the answer's first sound at the microphone to the line's stream being
    stopped (``stop``), and to its last sound at the virtual speaker (``heard_stop``,
    which adds the speaker pipe's ~0.13 s of buffering, a property of this virtual
    device rather than of the product)."""
    import random

    from virtual_mic import MIC, SPEAKER, VirtualAudio

    va = VirtualAudio(folder / "vmic", echo_gain=0.4 if args.echo is None else args.echo,
                      echo_delay_s=0.08).activate()
    from voice_sim.audio import load_audio
    from voice_sim.bargein import ListeningSpeaker
    from voice_sim.listen import Microphone, TurnConfig, capture_answer
    from voice_sim.persona import load_persona
    from voice_sim.speak import Voice, cached_render

    lines = []
    for pid in DEFAULT_PERSONAS.split(","):
        persona = load_persona(pid)
        for line in persona.lines.values():
            x = load_audio(line.audio or cached_render(line.text, persona.voice))
            if len(x) >= 3.0 * 16_000:
                lines.append(x)
    voice = Voice(**TRAINEE_VOICE)  # type: ignore[arg-type]
    answers = [load_audio(cached_render(s, voice)) for s in SENTENCES]
    rng = random.Random(15)
    false, stops, heard, detects, overlaps = 0, [], [], [], []
    false_yields = 0
    aec_ms: list[float] = []
    cancelled = 0
    missed = 0
    with Microphone(MIC) as mic:
        speaker = ListeningSpeaker(mic, SPEAKER)
        for i in range(args.echo_trials):
            # Every line after the first as a reply (as the call's are): its echo must not
            # pass for the trainee going on either (a false yield).
            speaker.replying = i > 0
            speaker.speak(lines[i % len(lines)], 16_000)
            false += speaker.last is not None
            false_yields += getattr(speaker, "gave_way", None) is not None
            aec_ms += speaker.aec_ms
            cancelled += speaker.aec is not None and speaker.aec.lag is not None
            print(f"  echo {i + 1:2d}: {'FALSE BARGE-IN' if speaker.last else 'ok'}"
                  f"{'  FALSE YIELD' if getattr(speaker, 'gave_way', None) else ''}  "
                  f"echo gain {speaker.echo_gain_db:.1f} dB", file=sys.stderr)
        for i in range(args.trials):
            line = lines[rng.randrange(len(lines))]
            ans = answers[i % len(answers)]
            u = va.say(ans, delay_s=rng.uniform(0.8, 2.0))
            speaker.trace = [] if args.trace else None
            started = speaker.speak(line, 16_000)
            cut = speaker.last
            time.sleep(0.4)  # the speaker pipe drains
            onset = None
            if u.start_at is not None:
                from virtual_mic import speech_start_index

                onset = u.start_at + speech_start_index(ans) / 16_000
            if cut is None or onset is None or speaker.last_player.stopped_at is None:
                missed += 1
                print(f"  trial {i + 1:2d}: NOT STOPPED", file=sys.stderr)
            else:
                stops.append(speaker.last_player.stopped_at - onset)
                heard.append(va.last_sound_at - onset)
                detects.append(cut.detect_s)
                overlaps.append(cut.overlap_s)
                print(f"  trial {i + 1:2d}: at {cut.at_s:.2f} s, stopped "
                      f"{stops[-1] * 1000:4.0f} ms after the onset (heard "
                      f"{heard[-1] * 1000:4.0f} ms)", file=sys.stderr)
            if speaker.trace and onset is not None:
                trace_barge_in(speaker, started, onset)
            capture_answer(mic, None, TurnConfig(silence_end_s=0.5))  # the rest of it
    va.close()
    within = sum(s <= 0.150 for s in stops)
    return {"echo_trials": args.echo_trials, "false_barge_ins": false,
            "false_yields": false_yields,
            "interruption_trials": args.trials, "not_stopped": missed,
            "stopped_within_150ms": f"{within}/{args.trials}",
            "stopped_within_150ms_pct": round(100 * within / max(1, args.trials), 1),
            "figures": {"stop": stats(stops), "heard_stop": stats(heard),
                        "detect": stats(detects), "overlap": stats(overlaps)},
            "echo_gain": 0.4 if args.echo is None else args.echo,
            "echo_cancelled_lines": f"{cancelled}/{args.echo_trials}",
            "canceller_ms_per_block": stats([m / 1000 for m in aec_ms]) if aec_ms else None}


def trace_barge_in(speaker: Any, started: float, onset: float) -> None:
    """``--trace``: the line's echo path and each block's judgement around the onset."""
    aec = speaker.aec
    print(f"      echo gain {speaker.echo_gain_db:.1f} dB, lag {speaker.echo_lag}, canceller "
          f"delay {None if aec is None else aec.lag} (found at "
          f"{None if aec is None else aec.base}), ERLE {0 if aec is None else aec.ratio_db:.1f}"
          f" dB; onset {(onset - started) * 1000:.0f} ms into the line", file=sys.stderr)
    for t, rule, raw, lvl, bar, alone, p, run, lag in speaker.trace:
        ms = (started + t - onset) * 1000
        if -200 <= ms <= 400:
            print(f"      {ms:+5.0f} ms {rule:>5} mic {raw:6.1f} judged {lvl:6.1f} bar "
                  f"{bar:6.1f} echo {alone:6.1f} p {p:.2f} run {run} delay {lag}", file=sys.stderr)


QUIET_END_S = 0.15
"""Seconds of silence at the virtual speaker that mark the end of the persona's line,
once the line's last sample that virtual_mic.py counts as sound (SOUND_INT16) has
played: before, a pause between the line's sentences would read as its end, and the
trainee's answer would talk over the rest (5 of 11 turns on 2026-12-02)."""
JOBS: list[tuple[str, float, float, float]] = []
"""``--trace``: the Whisper stream's background decodes (kind, start, end, audio s)."""


def trace_jobs() -> None:
    """Note every background decode of the Whisper stream (``--trace``)."""
    from voice_sim.engines import whisper

    for kind in ("_commit_job", "_partial_job", "_pause_job"):
        fn = getattr(whisper.WhisperStream, kind, None)
        if fn is None:
            continue

        def noted(self: Any, start: int, audio: Any, *rest: Any, _fn: Any = fn,
                  _kind: str = kind) -> Any:
            t = time.perf_counter()
            try:
                return _fn(self, start, audio, *rest)
            finally:
                JOBS.append((_kind.strip("_").removesuffix("_job"), t, time.perf_counter(),
                             len(audio) / 16_000))

        setattr(whisper.WhisperStream, kind, noted)


def trace_turn(speech_end: float, ended: float) -> None:
    """Print the decodes that ran between the speech's end and the detected end."""
    for kind, a, b, n in JOBS:
        if b >= speech_end - 0.5 and a <= ended:
            print(f"      {kind:>7} {n:5.2f} s of audio: {(a - speech_end) * 1000:+5.0f} .. "
                  f"{(b - speech_end) * 1000:+5.0f} ms from the speech's end", file=sys.stderr)


def print_session_row(r: dict[str, Any]) -> None:
    parts = " ".join(f"{k} {r[k] * 1000:5.0f}" for k in STAGES if k in r)
    extra = "".join(f"  {k} {r[k] * 1000:5.0f} ms" for k in (
        "audible", "deaf", "pause_seen", "words_seen", "decided", "detect", "perceived")
        if k in r)
    extra += "  (planned)" if r.get("planned") else ""
    if r.get("detect") is not None and r["detect"] < 0:
        extra += f"  CUT OFF ({r.get('why')}) on {r.get('partial', '')[-40:]!r}"
    extra += "  (INTERRUPTED)" if r.get("interrupted") else ""
    extra += f"  (YIELDED x{r['yielded']})" if r.get("yielded") else ""
    print(f"  turn {r['answer'] + 1:2d}: latency {r['latency'] * 1000:5.0f} ms = {parts}"
          f"{extra}  {r['text'][:40]!r}", file=sys.stderr)


def turn_config(args: argparse.Namespace) -> Any:
    from voice_sim.practice import live_turn_config

    return live_turn_config(args.silence_end, turn_end=args.turn_end)


def load_engine(name: str) -> Any:
    import numpy as np

    from voice_sim.engines import get_engine

    engine = get_engine(name)
    # The first decode pays one-off costs (allocations, caches); a real session pays it
    # while the persona speaks its first line, so it is not part of any turn.
    engine.transcribe(np.zeros(16_000, np.float32))
    return engine


def row(i: int, got: Any, speech_end_at: float, sound_at: float) -> dict[str, Any]:
    return {"answer": i, "detect": got.ended_at - speech_end_at,
            "final": got.finalize_s, "play": sound_at - got.final_at,
            "turn": sound_at - got.ended_at, "perceived": sound_at - speech_end_at,
            "why": got.end_why, "text": got.text}


def print_row(r: dict[str, Any]) -> None:
    print(f"  answer {r['answer']:2d}: detect {r['detect'] * 1000:+6.0f} ms  final "
          f"{r['final'] * 1000:5.0f} ms  play {r['play'] * 1000:4.0f} ms  turn "
          f"{r['turn'] * 1000:5.0f} ms  perceived {r['perceived'] * 1000:5.0f} ms  "
          f"({r['why']}) {r['text'][:40]!r}", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description="live turn latency through a virtual microphone")
    p.add_argument("--mode", choices=("session", "capture", "barge-in"), default="session",
                   help="session: the whole live call (run_call + LiveTrainee + "
                        "ListeningSpeaker, default); capture: capture_answer + playback "
                        "only; barge-in: interruption and echo trials (alsa only)")
    p.add_argument("--trials", type=int, default=20,
                   help="barge-in mode: interruptions (default 20)")
    p.add_argument("--echo-trials", type=int, default=50,
                   help="barge-in mode: lines played with only their echo (default 50)")
    p.add_argument("--echo", type=float, default=None,
                   help="gain of the simulated echo path, speaker -> microphone (default: "
                        "0.4 in barge-in mode, none otherwise)")
    p.add_argument("--persona", default=DEFAULT_PERSONAS,
                   help="session mode: shipped personas to call, comma-separated, taken in "
                        f"turn (default {DEFAULT_PERSONAS})")
    p.add_argument("--calls", type=int, default=3,
                   help="session mode: calls in a row (default 3)")
    p.add_argument("--delay", type=float, default=0.4,
                   help="session mode: seconds from the end of a line to the answer")
    p.add_argument("--no-baseline", action="store_true",
                   help="session mode: no calm baseline (the warm-up then runs in the call)")
    p.add_argument("--answers", type=int, default=10,
                   help="capture mode: spoken answers (default 10)")
    p.add_argument("--engine", default="auto", help="auto, vosk or whisper")
    p.add_argument("--device", choices=("alsa", "fake"), default="alsa",
                   help="alsa: PortAudio + ALSA virtual mic (default); fake: fake_audio")
    p.add_argument("--speed", type=float, default=1.0,
                   help="fake device only: pacing relative to real time (default 1)")
    p.add_argument("--play", choices=("devices", "low"), default="devices",
                   help="capture mode: devices: voice_sim.devices.play (the product path, "
                        "default); low: sounddevice.play with latency='low' (alsa only)")
    p.add_argument("--silence-end", type=float, default=None,
                   help="upper bound on the pause that ends a turn (default: --turn-end's)")
    p.add_argument("--turn-end", choices=("fast", "normal", "patient"), default="normal")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--trace", action="store_true",
                   help="session mode: print the Whisper stream's decodes around each end; "
                        "barge-in mode: each block's judgement around each onset")
    args = p.parse_args()
    if args.device == "alsa" and args.speed != 1.0:
        p.error("--speed is for --device fake (the ALSA virtual microphone runs in real time)")
    label = ("PortAudio + ALSA virtual microphone (real time)" if args.device == "alsa"
             else f"fake sounddevice at {args.speed:g}x real time (NOT PortAudio)")
    load = os.getloadavg()
    print(f"bench_latency: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the "
          "start", file=sys.stderr)
    if args.trace:
        trace_jobs()
    meta: dict[str, Any] = {}
    if args.mode == "barge-in":
        if args.device != "alsa":
            p.error("--mode barge-in runs on the ALSA virtual devices")
        with tempfile.TemporaryDirectory(prefix="vsim-bench-") as tmp:
            result = run_barge_in(args, Path(tmp))
        result.update({"mode": args.mode, "nproc": os.cpu_count(),
                       "loadavg": [round(x, 2) for x in load],
                       "loadavg_end": [round(x, 2) for x in os.getloadavg()]})
        print(json.dumps(result, indent=2) if args.json else
              "\n".join(f"{k}: {v}" for k, v in result.items()))
        return 0
    with tempfile.TemporaryDirectory(prefix="vsim-bench-") as tmp:
        folder = Path(tmp)
        if args.mode == "session":
            personas = [x.strip() for x in args.persona.split(",") if x.strip()]
            print(f"bench_latency: {args.calls} live call(s) with {', '.join(personas)} "
                  f"through {label}", file=sys.stderr)
            rows, calls = [], []
            va = None
            if args.device == "alsa":
                from virtual_mic import VirtualAudio

                # Once per process: ALSA reads its config when PortAudio starts.
                va = VirtualAudio(folder / "vmic", echo_gain=args.echo or 0.0).activate()
            for c in range(args.calls):
                got, m = run_session(args, folder / f"call{c}", personas[c % len(personas)],
                                     va)
                rows += got
                calls.append(m)
                print(f"  call {c + 1}: {m['outcome']} in {m['turns']} turns, score "
                      f"{m['score']:g}, {m['session_wall_s']} s", file=sys.stderr)
            if va is not None:
                va.close()
            meta["calls"] = calls
            keys: tuple[str, ...] = ("perceived", "latency", "audible", *STAGES, "deaf",
                                     "detect", "pause_seen", "words_seen", "decided")
            meta["planned_turns"] = sum(bool(r.get("planned")) for r in rows)
            meta["plan_changed_outcome"] = sum(bool(r.get("plan_changed")) for r in rows)
            meta["false_interruptions"] = sum(bool(r.get("interrupted")) for r in rows)
            # Ends detected in a pause the trainee then went on from, whose reply gave
            # way (one answer in the end, timed to the reply that finally played).
            meta["yielded"] = sum(r.get("yielded", 0) for r in rows)
            # An end detected before the speech's true end cut the trainee off: counted,
            # and kept out of the gap figures (a negative gap is no gap).
            cut = [r for r in rows if r.get("detect") is not None and r["detect"] < 0]
            meta["premature_ends"] = len(cut)
            for r in cut:
                for k in ("perceived", "detect", "pause_seen", "words_seen", "decided"):
                    r.pop(k, None)
        else:
            print(f"bench_latency: {args.answers} answers through {label}", file=sys.stderr)
            rows = (run_alsa if args.device == "alsa" else run_fake)(args, folder)
            keys = ("perceived", "detect", "final", "play", "turn")
    if not rows:
        print("bench_latency: no turn ended on silence with a next line", file=sys.stderr)
        return 1
    figures = {k: stats([r[k] for r in rows if r.get(k) is not None]) for k in keys
               if any(r.get(k) is not None for r in rows)}
    result = {"mode": args.mode, "device": args.device, "speed": args.speed,
              "engine": args.engine, "answers": len(rows), "silence_end_s": args.silence_end,
              "turn_end": args.turn_end, "nproc": os.cpu_count(),
              "loadavg": [round(x, 2) for x in load],
              "loadavg_end": [round(x, 2) for x in os.getloadavg()], "figures": figures,
              **meta}
    if args.mode == "capture":
        result["play"] = args.play
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.mode} mode; device: {label}; engine: {args.engine}; turns: {len(rows)}; "
              f"load average {load[0]:.2f} on {os.cpu_count()} cores")
        for k, v in figures.items():
            print(f"{k:>9}: median {v['median_ms']:7.1f} ms   p95 {v['p95_ms']:7.1f} ms   "
                  f"max {v['max_ms']:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
