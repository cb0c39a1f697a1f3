"""The pytest plugin, call specs and ``voice-sim fixtures make``.

Plugin behaviour is checked the way a user meets it: pytester runs pytest on a folder
holding call specs and answer audio (the example suite's committed WAVs), with the
plugin loaded through its ``pytest11`` entry point. A run that drives a real call goes
to a subprocess: pytester's in-process runs unload the modules they imported, and
numpy and the speech engines cannot be loaded twice in one process.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from voice_sim.audio import info, load_audio
from voice_sim.callspec import CallResult, CallSpecError, load_spec
from voice_sim.cli import main
from voice_sim.errors import ModelError

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).parent / "example_suite"


def _whisper_or_skip() -> None:
    from voice_sim.engines import select_engine

    try:
        select_engine("whisper")
    except ModelError as e:
        pytest.skip(f"the whisper engine is needed here: {e.line()}")


def _bad_call(pytester: pytest.Pytester) -> None:
    shutil.copytree(EXAMPLE / "bad-call", pytester.path / "answers")
    shutil.copy(EXAMPLE / "calm-baseline.wav", pytester.path / "calm.wav")


@pytest.mark.slow
@pytest.mark.model
def test_specs_and_helpers_pass_and_fail_readably(pytester: pytest.Pytester) -> None:
    _whisper_or_skip()
    _bad_call(pytester)
    pytester.makefile(".call.yaml", passes=textwrap.dedent("""\
        persona: double-billing
        answers: answers
        baseline: calm.wav
        expect:
          outcome: hung_up
          max_score: 40
          turns:
            1: {pitfalls: [argue], calm: false}
            2: {line: angrier, pitfalls: [excuse]}
        """))
    pytester.makefile(".call.yaml", fails=textwrap.dedent("""\
        persona: double-billing
        answers: answers
        baseline: calm.wav
        expect:
          outcome: resolved
          turns:
            1:
              steps: [apologize]
              calm: true
            3: {steps: [follow_up]}
        """))
    pytester.makepyfile(test_helpers=textwrap.dedent("""\
        from voice_sim.pytest_plugin import assert_step

        def test_uses_the_fixture(voice_sim_call):
            result = voice_sim_call("double-billing", "answers", baseline="calm.wav")
            assert result.engine == "whisper"
            assert_step(result, 2, "apologize")
        """))
    sessions = pytester.path / "sessions"
    result = pytester.runpytest_subprocess("-v", "--voice-sim-engine", "whisper",
                                           "--voice-sim-sessions", str(sessions))
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["voice-sim: call tests use engine whisper *",
                                 "*fails.call.yaml::fails FAILED*",
                                 "*passes.call.yaml::passes PASSED*",
                                 "*test_helpers.py::test_uses_the_fixture FAILED*"])
    # One call for all three tests: the same persona, answers, engine and baseline.
    assert len(list(sessions.iterdir())) == 1
    result.stdout.fnmatch_lines([
        "*call fails: 4 expectations not met (persona double-billing, engine whisper, "
        "outcome hung_up, score 0)*",
        "*fails.call.yaml:5: expected outcome resolved — the call ended hung_up after 2 "
        "turns, last customer line hangs_up*",
        "*fails.call.yaml:8: expected step apologize in turn 1 — heard: “That's not true*",
        "*fails.call.yaml:9: calm expected in turn 1 — pitch +* semitones above baseline*",
        "*fails.call.yaml:10: turn 3 expected — the call ended hung_up after 2 turns*",
        "*turn 1 (opening): “*” — argue; not calm*",
        "*session folder: *",
        "*AssertionError: expected step apologize in turn 2 — heard: “*” (found: excuse)*",
    ])
    # The session folder holds a record the typed result reads back.
    session = CallResult.load(next(sessions.iterdir()))
    assert session.outcome == "hung_up" and session.engine == "whisper"
    assert [t.line for t in session.turns] == ["opening", "angrier"]
    assert session.turn(1).pitfalls == ("argue",) and not session.turn(1).calm


def test_missing_model_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    _bad_call(pytester)
    pytester.makefile(".call.yaml", needs_vosk=textwrap.dedent("""\
        persona: double-billing
        answers: answers
        engine: vosk
        expect: {outcome: hung_up}
        """))
    pytester.makepyfile(test_engine=textwrap.dedent("""\
        def test_engine(voice_sim_engine):
            raise AssertionError("must not run without its model")
        """))
    missing = pytester.path / "no-such-model"
    result = pytester.runpytest("-rs", "--voice-sim-engine", "vosk",
                                "--voice-sim-model", str(missing))
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([
        f"SKIPPED*needs_vosk.call.yaml*voice-sim engine 'vosk' unavailable:*{missing}*",
        f"SKIPPED*test_engine.py*voice-sim engine 'vosk' unavailable:*{missing}*",
    ])


def test_bad_spec_fails_with_file_line_col(pytester: pytest.Pytester) -> None:
    (pytester.path / "answers").mkdir()
    pytester.makefile(".call.yaml", bad=textwrap.dedent("""\
        persona: double-billing
        answers: answer
        expect:
          outcome: resovled
          min_score: 170
          turns:
            1: {steps: [apologise, stay_calm], calm: yes please}
            first: {calm: true}
          colour: blue
        """), broken="persona: [double-billing\nanswers: answers\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*bad.call.yaml:2:10: error: answers: no such folder *",
        "*bad.call.yaml:4:12: error: expect.outcome: unknown outcome 'resovled' — did you "
        "mean resolved?*",
        "*bad.call.yaml:5:14: error: expect.min_score: must be a number 0-100, not 170*",
        "*bad.call.yaml:7:17: error: expect.turns.1.steps: unknown step id 'apologise' — did "
        "you mean apologize?*",
        "*bad.call.yaml:7:28: error: expect.turns.1.steps: stay_calm is measured from the "
        "audio*use `calm: true`*",
        "*bad.call.yaml:7:46: error: expect.turns.1.calm: must be true or false*",
        "*bad.call.yaml:8:5: error: expect.turns.first: turn 'first' is not a turn number*",
        "*bad.call.yaml:9:3: error: expect.colour: unknown field 'colour'*",
        "*broken.call.yaml:2:8: error: YAML syntax error*",
    ])


def test_a_spec_that_checks_nothing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    spec = tmp_path / "empty.call.yaml"
    spec.write_text("persona: double-billing\nanswers: a\nexpect:\n  turns: {}\n")
    with pytest.raises(CallSpecError, match=r"empty.call.yaml:3:1: expect: nothing "
                                            r"to check"):
        load_spec(spec)


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.slow
def test_fixtures_make_renders_answers_and_a_call_spec(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from voice_sim.delivery import analyze

    said = "I'm sorry, that should not have happened. Let me fix it for you today."
    spec = _write(tmp_path / "upset.fixtures.yaml", f"""\
        persona: double-billing
        baseline: calm.wav
        outcome: resolved
        replies:
          - text: "{said}"
            steps: [apologize, offer_solution]
            calm: true
          - text: "{said}"
            agitated: true
          - text: "{said}"
            telephone: true
        """)
    assert main(["fixtures", "make", str(spec)]) == 0
    answers = [tmp_path / "upset" / f"0{n}.wav" for n in (1, 2, 3)]
    metas = [info(p) for p in answers]
    assert [m.sample_rate for m in metas] == [16000, 16000, 8000]
    assert {(m.channels, m.subtype) for m in metas} == {(1, "PCM_16")}
    assert info(tmp_path / "calm.wav").duration_s > 4
    calm, upset = (analyze(load_audio(p)) for p in answers[:2])
    # Agitated: faster (same words in less time), higher and louder.
    assert metas[1].duration_s < 0.85 * metas[0].duration_s
    assert calm.pitch.median_hz and upset.pitch.median_hz
    assert upset.pitch.median_hz > calm.pitch.median_hz * 2 ** (2 / 12)
    assert calm.loudness.rms_dbfs and upset.loudness.rms_dbfs
    assert upset.loudness.rms_dbfs > calm.loudness.rms_dbfs + 2
    out = capsys.readouterr().out
    assert "02.wav" in out and "(agitated)" in out and "8000 Hz (telephone)" in out

    call = load_spec(tmp_path / "upset.call.yaml")
    assert (call.persona, call.outcome, call.answers) == ("double-billing", "resolved",
                                                          tmp_path / "upset")
    assert call.baseline == tmp_path / "calm.wav"
    assert [(t.index, t.steps, t.calm) for t in call.turns] == [
        (1, ("apologize", "offer_solution"), True)]

    # Fewer replies: the stale answer goes; a filled-in call spec is kept.
    _write(spec, """\
        persona: double-billing
        replies: ["Sorry about that."]
        """)
    (tmp_path / "upset.call.yaml").write_text("# mine\n")
    assert main(["fixtures", "make", str(spec)]) == 0
    assert sorted(p.name for p in (tmp_path / "upset").iterdir()) == ["01.wav"]
    assert (tmp_path / "upset.call.yaml").read_text() == "# mine\n"
    # --force rewrites it; with nothing expected yet it is not a passing test.
    assert main(["fixtures", "make", str(spec), "--force"]) == 0
    with pytest.raises(CallSpecError, match="nothing to check"):
        load_spec(tmp_path / "upset.call.yaml")


def test_fixtures_make_bad_spec_is_one_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    spec = _write(tmp_path / "x.fixtures.yaml", """\
        persona: double-billing
        replies:
          - text: "Hello."
            agitatd: true
          - rate: 900
        """)
    assert main(["fixtures", "make", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{spec}:4:5: replies[0].agitatd: unknown field 'agitatd' — did you mean " \
           "agitated?" in err[0]
    assert "(and 1 more)" in err[0]
    assert err[0].count("error:") == 1  # the CLI says it once
    assert not (tmp_path / "x").exists()
