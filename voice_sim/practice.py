"""The call commands: ``practice`` (live), ``run`` (prerecorded answers), ``demo``.

All three build a :class:`~voice_sim.session.Trainee` and a
:class:`~voice_sim.session.Speaker` and hand them to :func:`voice_sim.session.run_call`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.errors import InputError, VoiceSimError

if TYPE_CHECKING:
    from concurrent.futures import Future

    import numpy as np

    from voice_sim.delivery import Baseline
    from voice_sim.engines import Engine, Transcript
    from voice_sim.listen import TurnConfig
    from voice_sim.persona import Line, Persona
    from voice_sim.record import SessionRecord
    from voice_sim.session import Answer, SessionResult

DEMO_PERSONA = "double-billing"
"""The persona the demo plays when none is named."""


# Each command checks its files and devices first and loads the speech model last, so
# bad input is reported at once rather than after seconds of model loading.

def _scripts(args: argparse.Namespace, persona_spec: str) -> tuple[Persona, Any]:
    """The persona and the rubric (the rubric first: checking the persona's voice
    starts the TTS engine)."""
    from voice_sim.embedding import model_dir
    from voice_sim.persona import load_persona
    from voice_sim.rubric import load_rubric, rubric_beside

    model_dir()  # the scorer's model is installed (one line naming the package if not)
    given = getattr(args, "rubric", None)
    rubric = load_rubric(given) if given else None
    persona = load_persona(persona_spec)
    # a rubric.yaml beside the persona file is the trainer's, unless --rubric says otherwise
    return persona, rubric or load_rubric(rubric_beside(persona.path))


def _seed(args: argparse.Namespace) -> int:
    """``--seed``, checked, or a fresh one (recorded in session.json for a replay)."""
    from voice_sim.call import SEED_MAX, new_seed

    seed = getattr(args, "seed", None)
    if seed is None:
        return new_seed()
    if not 0 <= seed <= SEED_MAX:
        raise InputError(f"--seed {seed}: must be 0-{SEED_MAX}",
                         hint="use the seed a scorecard printed, or leave it out")
    return int(seed)


def _persona_spec(args: argparse.Namespace, named: str | None, seed: int,
                  default: str | None = None) -> str:
    """The persona a call plays: the one named, or with ``--random`` one drawn from
    ``seed`` among the installed personas (of ``--difficulty``, when given)."""
    import random

    from voice_sim.persona import find_personas

    if not getattr(args, "random", False):
        if getattr(args, "difficulty", None):
            raise InputError("--difficulty needs --random",
                             hint=f"`--random --difficulty {args.difficulty}`, or name a persona")
        if named is None and default is None:
            raise InputError("no persona named", hint="name one (see `voice-sim personas`), "
                             "or use --random [--difficulty easy|medium|hard]")
        return named or str(default)
    if named is not None:
        raise InputError(f"a persona ({named}) and --random together",
                         hint="name a persona, or use --random, not both")
    pool = sorted((p for p in find_personas()
                   if args.difficulty in (None, p.difficulty)), key=lambda p: p.id)
    if not pool:
        level = f" of difficulty {args.difficulty}" if args.difficulty else ""
        raise InputError(f"no valid persona{level} installed",
                         hint="see `voice-sim personas`")
    return str(random.Random(seed).choice(pool).path)


def _engine(args: argparse.Namespace) -> Engine:
    from voice_sim.engines import get_engine

    return get_engine(args.engine, args.model)


def _read_baseline(path: str | None) -> np.ndarray | None:
    """The calm reading's samples (None without a file)."""
    from voice_sim.audio import load_audio

    return load_audio(path) if path else None


def _baseline_of(samples: np.ndarray, engine: Engine) -> Baseline:
    from voice_sim.delivery import Baseline

    return Baseline.from_audio(samples, engine.transcribe(samples))


def after_call(session_dir: Path, record: SessionRecord) -> Path | None:
    """Write ``report.html`` and add the session to the history, at the end of a call.

    The call itself is already saved, so a problem here is a warning on stderr (and
    the report path is None), never a lost session or a changed exit code."""
    from voice_sim import history
    from voice_sim.report import write_report

    report: Path | None = None
    try:
        report = write_report(session_dir, record=record)
    except VoiceSimError as e:
        print(f"voice-sim: warning: report not written: {e.line()}", file=sys.stderr)
    try:
        history.record_session(record)
    except VoiceSimError as e:
        print(f"voice-sim: warning: history not updated: {e.line()}", file=sys.stderr)
    return report


def _finish(result: SessionResult, args: argparse.Namespace) -> int:
    from voice_sim.scorecard import format_scorecard

    after_call(result.dir, result.record)  # report.html + history; problems are warnings
    if getattr(args, "json", False):
        print(json.dumps(result.record.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_scorecard(result.record))
    min_score = getattr(args, "min_score", None)
    if min_score is not None and result.score < min_score:
        print(f"voice-sim: score {result.score:g} is below --min-score {min_score:g}",
              file=sys.stderr)
        return 1
    return 130 if result.record.interrupted else 0


def _out_root(args: argparse.Namespace) -> Path | None:
    return Path(args.out) if getattr(args, "out", None) else None


def cmd_run(args: argparse.Namespace) -> int:
    """``voice-sim run PERSONA --answers DIR``: a call on prerecorded answers."""
    from voice_sim.session import CallOptions, FileTrainee, SilentSpeaker, run_call

    if args.min_score is not None and not 0 <= args.min_score <= 100:
        raise InputError(f"--min-score {args.min_score:g}: must be 0-100", hint="e.g. 70")
    trainee = FileTrainee(args.answers)
    calm = _read_baseline(args.baseline)
    seed = _seed(args)
    persona, rubric = _scripts(args, args.persona)
    _warm_call()
    engine = _engine(args)
    baseline = _baseline_of(calm, engine) if calm is not None else None
    options = CallOptions(engine=engine, baseline=baseline, baseline_source=args.baseline,
                          rubric=rubric, coach="after", out_root=_out_root(args), mode="run",
                          seed=seed)
    return _finish(run_call(persona, trainee, SilentSpeaker(), options), args)


def demo_reply(line: Line) -> str | None:
    """The synthetic trainee's reply: the persona's sample reply for the line."""
    return line.sample_reply or None


def cmd_demo(args: argparse.Namespace) -> int:
    """``voice-sim demo``: a whole call with a synthetic trainee, headless and offline."""
    from voice_sim.audio import load_audio
    from voice_sim.delivery import Baseline
    from voice_sim.session import (
        BASELINE_SENTENCE,
        CallOptions,
        DeviceSpeaker,
        ScriptedTrainee,
        SilentSpeaker,
        run_call,
    )
    from voice_sim.speak import Voice, cached_render

    speaker = DeviceSpeaker(args.output_device) if args.play else SilentSpeaker()
    seed = _seed(args)
    persona, rubric = _scripts(args, _persona_spec(args, args.persona, seed, DEMO_PERSONA))
    missing = [line.id for line in persona.lines.values() if not line.end and not
               line.sample_reply]
    if missing:
        raise InputError(f"{persona.path}: lines {', '.join(missing)} have no sample_reply, "
                         "so the demo trainee has nothing to say",
                         hint="add `sample_reply:` to those lines, or pick another --persona")
    _warm_call()
    engine = _engine(args)
    trainee_voice = Voice(id="en-us", rate=160, pitch=45)
    if not args.json:
        print(f"Demo call: {persona.title} — a synthetic trainee answers "
              f"(engine: {engine.name}).", file=sys.stderr)
    calm = load_audio(cached_render(BASELINE_SENTENCE, trainee_voice))
    baseline = Baseline.from_audio(calm, engine.transcribe(calm))
    options = CallOptions(engine=engine, baseline=baseline,
                          baseline_source="synthetic calm reading", rubric=rubric,
                          coach="after", out_root=_out_root(args), mode="demo", seed=seed)
    events = None if args.json else _terminal_events()
    result = run_call(persona, ScriptedTrainee(demo_reply, trainee_voice), speaker, options,
                      events)
    return _finish(result, args)


def live_turn_config(silence_end_s: float | None = None, max_answer_s: float = 60.0,
                     turn_end: str = "normal") -> TurnConfig:
    """How ``practice`` ends the trainee's turn: the end-of-turn rule's ``turn_end``
    profile (voice_sim.endpoint), with ``silence_end_s`` as the upper bound."""
    from voice_sim.listen import TurnConfig

    return TurnConfig(silence_end_s=silence_end_s, max_answer_s=max_answer_s,
                      turn_end=turn_end)  # type: ignore[arg-type]


class LiveTrainee:
    """The microphone: one answer per turn, ended by voice activity or a key.

    The browser's trainee (voice_sim.serve_call.WebTrainee) is this on the streamed
    microphone, telling the page instead of the terminal (:meth:`_caption`,
    :meth:`_heard`)."""

    source = "microphone"
    """The answer's ``source`` in the session."""

    def __init__(self, mic: Any, engine: Engine, config: Any, keys: Any = None,
                 live_line: Any = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from voice_sim.listen import LiveLine

        self.mic, self.engine, self.config = mic, engine, config
        self.keys = keys
        self.live_line = live_line if live_line is not None else LiveLine(enabled=False)
        # The costly half of the delivery analysis runs here, from DELIVERY_TAIL_S into
        # the pause that ends the answer (voice_sim.delivery.Preparer), instead of after it.
        self._analysis = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-sim-prep")

    def answer(self, turn: int, line: Line, wav: Path) -> Answer | None:
        """Capture one answer; ``q`` + Enter quits the call."""
        print("  (your turn — speak; Enter ends your answer, q + Enter quits)",
              file=sys.stderr)
        return self._capture(wav)

    def go_on(self, before: Answer) -> Answer:
        """The persona's reply cut the trainee off and gave way (voice_sim.bargein): the
        rest of the answer, from where ``before`` ended, appended to its recording; the
        two parts are one answer (samples, words, recording)."""
        return self._capture(before.wav, before)

    def _capture(self, wav: Path, before: Answer | None = None) -> Answer:
        import numpy as np

        from voice_sim.audio import SAMPLE_RATE
        from voice_sim.delivery import Preparer
        from voice_sim.engines import Transcript
        from voice_sim.listen import WavSink, capture_answer
        from voice_sim.session import Answer, Quit

        head = before.samples if before is not None else np.zeros(0, np.float32)
        prep = Preparer(self._analysis, head)

        # The final transcript is not waited for here: the session plans the next line
        # on the words so far and confirms it on the final (session.CONFIRM_S), whose
        # decode it starts once the reply sounds (Answer.final_go).
        go = threading.Event()
        sink = WavSink(wav, append=True) if before is not None else wav
        try:
            got = capture_answer(self.mic, self.engine, self.config, sink=sink,
                                 on_caption=self._caption,
                                 on_level=self.live_line.level, keys=self.keys, on_end=prep.on_end,
                                 on_pause=prep.on_pause,
                                 wait_final=False, final_after=go, whole=before is not None)
        finally:
            if isinstance(sink, WavSink):
                sink.close()
        self.live_line.clear()
        if got.reason == "quit":
            raise Quit()
        self._heard(got)
        transcript, final_at, pending = got.transcript, got.final_at, got.pending
        partial = got.partial
        samples = got.samples
        if before is not None:
            samples = np.concatenate([head, got.samples])
            offset = len(head) / SAMPLE_RATE
            first: Future[Transcript] | Transcript | None = (
                before.pending if before.transcript is None else before.transcript)
            if before.transcript is None and before.pending is not None and before.pending.done():
                first = before.pending.result()  # decoded while the trainee went on
            said = first.text if isinstance(first, Transcript) else before.partial
            partial = " ".join(t for t in (said, partial) if t)
            if pending is not None:
                pending = _joined(first, pending, offset)
            elif transcript is not None:
                joined = _joined(first, transcript, offset)
                transcript, pending = (joined.result(), None) if joined.done() else (None,
                                                                                     joined)
                final_at = None if pending is not None else final_at
        if pending is not None and not got.partial_covers:
            # The words so far stop short of the answer's end (a slow decode, a key
            # press): nothing to plan on, so the final transcript is waited for.
            go.set()
            transcript, final_at, pending = pending.result(), time.perf_counter(), None
        return Answer(samples=samples, wav=wav, transcript=transcript,
                      ended_at=got.ended_at, final_at=final_at, end_reason=got.reason,
                      source=self.source, prepared=prep.future,
                      pending=pending, partial=partial,
                      final_go=go if pending is not None else None, speech_end_at=got.speech_end_at)


    def _caption(self, text: str) -> None:
        """The words so far, as the trainee speaks."""
        self.live_line.caption(text)

    def _heard(self, got: Any) -> None:
        """The answer's end was heard (before its transcript is final)."""


def _joined(first: Future[Transcript] | Transcript | None,
            second: Future[Transcript] | Transcript, offset_s: float) -> Future[Transcript]:
    """One transcript of an answer in two parts, ``second``'s words ``offset_s`` later,
    as soon as both are decoded (either may still be decoding)."""
    from concurrent.futures import Future

    out: Future[Transcript] = Future()
    parts = [first, second]
    lock = threading.Lock()

    def ready(_: object = None) -> None:
        with lock:  # both parts may land at once, on two threads
            if out.done() or any(isinstance(p, Future) and not p.done() for p in parts):
                return
            out.set_running_or_notify_cancel()
        try:
            a, b = (p.result() if isinstance(p, Future) else p for p in parts)
        except BaseException as e:
            out.set_exception(e)
            return
        assert b is not None
        out.set_result(join_transcripts(a, b, offset_s))

    for p in parts:
        if isinstance(p, Future):
            p.add_done_callback(ready)
    ready()
    return out


def join_transcripts(a: Transcript | None, b: Transcript, offset_s: float) -> Transcript:
    """``a`` then ``b`` (whose times start ``offset_s`` into the whole) as one."""
    from dataclasses import replace

    if a is None:
        a = replace(b, text="", words=(), duration_s=0.0)
    words = a.words + tuple(replace(w, start=round(w.start + offset_s, 3),
                                    end=round(w.end + offset_s, 3)) for w in b.words)
    return replace(b, text=" ".join(t for t in (a.text, b.text) if t), words=words,
                   duration_s=offset_s + b.duration_s)


def cmd_practice(args: argparse.Namespace) -> int:
    """``voice-sim practice PERSONA``: a live call through the microphone and speaker."""
    from voice_sim.bargein import ListeningSpeaker
    from voice_sim.devices import resolve_device
    from voice_sim.listen import KeyWatcher, LiveLine, Microphone, capture_answer
    from voice_sim.session import BASELINE_SENTENCE, CallOptions, run_call

    if args.baseline and args.no_baseline:
        raise InputError("--baseline and --no-baseline together",
                         hint="give one of them, or neither to record a baseline now")
    seed = _seed(args)
    spec = _persona_spec(args, args.persona, seed)  # a wrong choice is told before devices
    config = live_turn_config(args.silence_end, args.max_answer,
                              getattr(args, "turn_end", "normal"))
    calm = _read_baseline(args.baseline)
    resolve_device(args.output_device, "output")
    resolve_device(args.input_device, "input")
    persona, rubric = _scripts(args, spec)
    _warm_analysis()  # its imports and compile run while the model loads
    engine = _engine(args)
    _print_briefing(persona)
    keys = KeyWatcher().start()
    live_line = LiveLine()
    with Microphone(args.input_device) as mic:
        baseline, source = None, None
        if calm is not None:
            baseline, source = _baseline_of(calm, engine), args.baseline
        elif not args.no_baseline:
            from voice_sim.delivery import Baseline

            print("\nFirst, read this aloud calmly, at your normal pace:\n\n  "
                  f"\u201c{BASELINE_SENTENCE}\u201d\n", file=sys.stderr)
            got = capture_answer(mic, engine, config, keys=keys,
                                 on_level=live_line.level, on_caption=live_line.caption)
            live_line.clear()
            if got.heard_speech:
                baseline = Baseline.from_audio(got.samples, got.transcript)
                source = "recorded at the start of the session"
            else:
                print("  (no speech heard: population defaults are used instead)",
                      file=sys.stderr)
        options = CallOptions(engine=engine, baseline=baseline, baseline_source=source,
                              rubric=rubric, coach=args.coach, out_root=_out_root(args),
                              mode="practice", seed=seed)
        trainee = LiveTrainee(mic, engine, config, keys, live_line)
        # The persona listens while it talks: the trainee can interrupt (voice_sim.bargein).
        speaker = ListeningSpeaker(mic, args.output_device,
                                   when_interrupted=persona.when_interrupted)
        result = run_call(persona, trainee, speaker, options, _terminal_events())
    return _finish(result, args)


def _warm_analysis() -> None:
    """Start paying the delivery analysis's first-use cost (librosa imports, numba) in
    the background, so neither the baseline reading nor the first turn waits for it."""
    import threading

    from voice_sim.delivery import warm_up
    from voice_sim.errors import VoiceSimError

    def run() -> None:
        try:
            warm_up()
        except VoiceSimError:
            return  # e.g. librosa missing: the analysis reports it properly when used

    threading.Thread(target=run, daemon=True, name="voice-sim-warmup").start()


def _warm_call() -> None:
    """A headless call (``run``, ``demo``) has no opening line playing to hide the
    first-use costs behind: the delivery analysis (:func:`_warm_analysis`) and the
    content scorer's model start loading while the speech engine loads (every input
    is checked by then)."""
    from voice_sim.embedding import warm_up

    _warm_analysis()
    warm_up()


def _print_briefing(persona: Persona) -> None:
    b = persona.briefing
    print(f"\n{persona.title}  ({persona.difficulty})\n\n{b.situation}", file=sys.stderr)
    for fact in b.facts:
        print(f"  • {fact}", file=sys.stderr)
    if b.goal:
        print(f"\nYour goal: {b.goal}", file=sys.stderr)


def _terminal_events() -> Any:
    from voice_sim.session import CallEvents

    def on_line(line: Line, mood: float) -> None:
        print(f"\n\U0001f4de customer (mood {mood:.1f}/10): {line.text}", file=sys.stderr)

    def on_answer(turn: Any) -> None:
        print(f"   you: {turn.transcript.text or '(nothing heard)'}", file=sys.stderr)
        cut = turn.record.interruption
        if cut is not None:
            print(f"   ({cut.describe()})", file=sys.stderr)

    def on_yield(gave_way: Any) -> None:
        from voice_sim.record import YIELD_NOTE, YieldRecord

        y = YieldRecord.from_json(gave_way.to_json())
        print(f"   ({y.describe()} — go on; {YIELD_NOTE})", file=sys.stderr)

    def on_hint(hint: str) -> None:
        print(f"   coach: {hint}", file=sys.stderr)

    return CallEvents(on_line=on_line, on_answer=on_answer, on_hint=on_hint,
                      on_yield=on_yield)
