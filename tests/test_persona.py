"""Persona format: validation (with exact positions), loading, the mood machine, and
the trainer commands (check, new, schema, personas, graph, speak, record)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from voice_sim import cli
from voice_sim.errors import PersonaError
from voice_sim.paths import SOURCE_ROOT
from voice_sim.persona import (
    Call,
    check_paths,
    check_persona,
    find_personas,
    load_persona,
    scan_personas,
    schema,
)
from voice_sim.persona_edit import set_line_audio
from voice_sim.persona_graph import mermaid
from voice_sim.steps import PITFALL_IDS, STEP_IDS
from voice_sim.yamlfile import load_yaml

# The smallest valid persona; tests swap single lines, so positions below refer to
# these line numbers.
MINI = """\
id: mini
title: Mini
difficulty: easy
briefing:
  situation: A short test call.
customer:
  name: Pat
  voice:
    id: en-us
mood:
  start: 5
max_turns: 4
lines:
  - id: opening
    text: "Hello."
    expects: [empathize]
    hurts: [dismissive]
    next:
      - heard: [empathize]
        goto: thanks
      - goto: bye
  - id: thanks
    text: "Thanks."
    end: resolved
  - id: bye
    text: "Bye."
    end: hung_up
"""


def write(folder: Path, text: str, name: str = "mini.yaml") -> Path:
    """Write a persona file."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def replace(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def errors_of(path: Path) -> list[str]:
    _, problems = check_persona(path)
    return [p.line_text() for p in problems if p.severity == "error"]


def one_error(path: Path) -> str:
    found = errors_of(path)
    assert len(found) == 1, found
    return found[0]


# --- validation ---------------------------------------------------------------------

def test_minimal_persona_is_valid(tmp_path: Path) -> None:
    persona, problems = check_persona(write(tmp_path, MINI))
    assert problems == []
    assert persona is not None
    assert persona.start == "opening" and persona.voice.id == "en-us"
    assert persona.lines["opening"].expects == ("empathize",)
    assert persona.on_max_turns == "escalated"


def test_unknown_step_lists_the_valid_ones(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("expects: [empathize]", "expects: [empathise]")))
    err = one_error(p)
    assert err.startswith(f"{p}:16:15: error: lines[0].expects[0]: unknown step id 'empathise'")
    assert "did you mean 'empathize'?" in err
    assert all(s in err for s in STEP_IDS)


def test_unknown_pitfall_and_step_in_the_wrong_list(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("hurts: [dismissive]", "hurts: [rude, empathize]")))
    found = errors_of(p)
    assert found[0].startswith(f"{p}:17:13: error: lines[0].hurts[0]: unknown pitfall id 'rude'")
    assert all(x in found[0] for x in PITFALL_IDS)
    assert found[1].startswith(f"{p}:17:19: error: lines[0].hurts[1]: 'empathize' is a step, "
                               "not a pitfall")


def test_unknown_id_in_a_condition_and_in_weights(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("heard: [empathize]", "heard: [calm_down]"),
                                ("  start: 5\n", "  start: 5\n  weights:\n    empathy: -1\n")))
    found = errors_of(p)
    assert found[0].startswith(f"{p}:13:5: error: mood.weights.empathy: 'empathy' is not a "
                               "step or pitfall id — did you mean 'empathize'?")
    assert found[1].startswith(f"{p}:21:17: error: lines[0].next[0].heard[0]: unknown step or "
                               "pitfall id 'calm_down'")


def test_transition_to_a_missing_line(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("goto: thanks", "goto: thank")))
    err = one_error(p)
    assert err.startswith(f"{p}:20:9: error: lines[0].next[0].goto: 'thank' is not a line — "
                          "did you mean 'thanks'?")
    assert "resolved, escalated, hung_up" in err


def test_unreachable_line(tmp_path: Path) -> None:
    p = write(tmp_path, MINI + '  - id: spare\n    text: "Unused."\n    end: resolved\n')
    assert one_error(p) == (f"{p}:28:5: error: lines[3].id: line 'spare' can never be reached "
                            "— point a `goto` at it, or remove it")


def test_line_from_which_no_end_can_be_reached(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("      - goto: bye\n", "      - goto: loop\n")) +
              '  - id: loop\n    text: "Again."\n    next: loop\n')
    found = errors_of(p)
    assert found == [f"{p}:25:5: error: lines[2].id: line 'bye' can never be reached — point "
                     "a `goto` at it, or remove it",
                     f"{p}:28:5: error: lines[3].id: no end can be reached from line 'loop': "
                     "every path from it loops back — add a rule that leads to a line with "
                     "`end:`, or `goto: resolved` / `hung_up`"]


def test_duplicate_line_ids(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("- id: bye", "- id: thanks")))
    found = errors_of(p)
    assert found[0].startswith(f"{p}:21:9: error: lines[0].next[1].goto: 'bye' is not a line")
    assert found[1].startswith(f"{p}:25:5: error: lines[2].id: duplicate line id 'thanks' "
                               "(first used on line 22) — give every line its own id")


@pytest.mark.parametrize("text,message", [
    ('text: ""', "is empty"), ('text: "   "', "is empty"), ("text:", "must be text, not empty")])
def test_empty_text(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, replace(MINI, ('text: "Thanks."', text)))
    assert one_error(p).startswith(f"{p}:23:5: error: lines[1].text: {message}")


def test_missing_audio_file(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ('text: "Bye."', 'text: "Bye."\n    audio: mini/bye.wav')))
    err = one_error(p)
    assert err.startswith(f"{p}:27:5: error: lines[2].audio: audio file 'mini/bye.wav' not found")
    assert f"voice-sim persona record {p} --line bye" in err


@pytest.mark.parametrize("audio,message", [
    ("/etc/hostname", "is absolute"),
    ("../outside.wav", "uses '..' and leaves the persona's folder"),
    ("mini/../../outside.wav", "uses '..'"),
])
def test_audio_paths_that_escape(tmp_path: Path, audio: str, message: str) -> None:
    p = write(tmp_path, replace(MINI, ('text: "Bye."', f'text: "Bye."\n    audio: {audio}')))
    assert one_error(p).startswith(f"{p}:27:5: error: lines[2].audio: audio path '{audio}' "
                                   f"{message}")


def test_audio_symlink_out_is_refused_and_inside_is_fine(
        tmp_path: Path, espeak_wav: Callable[..., Path]) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    real = outside / "take.wav"
    real.write_bytes(espeak_wav("Bye then.").read_bytes())
    folder = tmp_path / "personas"
    (folder / "mini").mkdir(parents=True)
    (folder / "mini" / "bye.wav").symlink_to(real)
    p = write(folder, replace(MINI, ('text: "Bye."', 'text: "Bye."\n    audio: mini/bye.wav')))
    err = one_error(p)
    assert err.startswith(f"{p}:27:5: error: lines[2].audio: audio path 'mini/bye.wav' is a "
                          f"symlink to {real}, outside the persona's folder")
    (folder / "mini" / "bye.wav").unlink()
    (folder / "mini" / "bye.wav").write_bytes(real.read_bytes())
    persona, problems = check_persona(p)
    assert problems == [] and persona is not None
    assert persona.lines["bye"].audio == (folder / "mini" / "bye.wav").resolve()


def test_audio_that_is_not_audio(tmp_path: Path) -> None:
    (tmp_path / "mini").mkdir()
    (tmp_path / "mini" / "bye.wav").write_text("not a wav")
    p = write(tmp_path, replace(MINI, ('text: "Bye."', 'text: "Bye."\n    audio: mini/bye.wav')))
    assert "lines[2].audio: audio file 'mini/bye.wav' is not usable" in one_error(p)


def test_unknown_voice_is_only_a_warning(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("id: en-us", "id: en-xx+f3")))
    persona, problems = check_persona(p)
    assert persona is not None
    assert [x.line_text()[:60] for x in problems] == [
        f"{p}:9:5: warning: customer.voice.id: unknown voice 'en-x"[:60]]
    assert cli.main(["persona", "check", str(p)]) == 0


def test_yaml_syntax_error_has_a_position(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("expects: [empathize]", "expects: [empathize")))
    err = one_error(p)
    assert err.startswith(f"{p}:17:10: error: YAML syntax error: while parsing a flow sequence")


def test_duplicate_key_is_a_yaml_error(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("title: Mini\n", "title: Mini\ntitle: Again\n")))
    assert one_error(p).startswith(f"{p}:3:1: error: YAML syntax error")


def test_python_tags_are_refused(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("title: Mini", "title: !!python/object:os.system x")))
    assert "the tag tag:yaml.org,2002:python/object:os.system is not allowed" in one_error(p)


def test_unknown_field_missing_field_and_wrong_type(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("difficulty: easy\n", "dificulty: easy\n"),
                                ("max_turns: 4", "max_turns: four"),
                                ('    end: hung_up', '    ends: hung_up')))
    found = errors_of(p)
    assert found[0] == (f"{p}:1:1: error: difficulty: missing field 'difficulty' — add "
                        "`difficulty:` to the file (How hard the call is for a trainee.)")
    assert found[1].startswith(f"{p}:3:1: error: dificulty: unknown field 'dificulty' — did you "
                               "mean 'difficulty'?")
    assert found[2] == (f"{p}:12:1: error: max_turns: must be a whole number, not text — write "
                        "a whole number such as 8")
    assert f"{p}:27:5: error: lines[2].ends: unknown field 'ends' — did you mean 'end'?" \
        in "\n".join(found)
    assert any("line 'bye' has neither `next` nor `end`" in e for e in found)


def test_file_name_must_match_id(tmp_path: Path) -> None:
    p = write(tmp_path, MINI, name="other.yaml")
    assert one_error(p) == (f"{p}:1:1: error: id: id 'mini' differs from the file name "
                            "'other.yaml' — rename the file to mini.yaml or set `id: other`")


def test_rule_shape_problems(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("      - goto: bye\n",
                                       "      - goto: bye\n      - heard: [apologize]\n"
                                       "        not_heard: [apologize]\n        goto: bye\n")))
    found = errors_of(p)
    assert found == [
        f"{p}:21:9: error: lines[0].next[1]: this rule has no condition, so the rules after "
        "it are never used — move it to the end of the list, or give it a condition",
        f"{p}:22:9: error: lines[0].next[2]: 'apologize' is both in heard and not_heard: the "
        "rule can never match — keep it in one of the two",
        f"{p}:22:9: error: lines[0].next[2]: the last rule of line 'opening' has conditions, so "
        "a reply could match no rule — add a final rule with only `goto:` (the default)"]


def test_end_and_next_together_and_bad_end_state(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("    end: resolved\n", "    end: solved\n    next: bye\n")))
    found = errors_of(p)
    assert found[0].startswith(f"{p}:24:5: error: lines[1].end: 'solved' is not allowed here — "
                               "did you mean 'resolved'? use one of: resolved, escalated, hung_up")
    assert found[1].startswith(f"{p}:25:5: error: lines[1].next: line 'thanks' has both `end` "
                               "and `next`")


def test_turn_limit_target_and_start(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("max_turns: 4\n",
                                       "max_turns: 4\non_max_turns: opening\nstart: thanks\n")))
    found = errors_of(p)
    assert found[0].startswith(f"{p}:13:1: error: on_max_turns: line 'opening' has no `end`")
    assert found[1].startswith(f"{p}:14:1: error: start: the opening line 'thanks' has `end`")


def test_resolution_must_fit_in_max_turns(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("max_turns: 4", "max_turns: 1"),
                                ("goto: thanks", "goto: middle")) +
              '  - id: middle\n    text: "Go on."\n    next: thanks\n')
    assert one_error(p) == (f"{p}:12:1: error: max_turns: resolving takes at least 2 replies "
                            "but max_turns is 1 — raise max_turns to 2 or more")


def test_always_rules_need_a_condition(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("lines:\n", "always:\n  - goto: bye\nlines:\n")))
    assert one_error(p).startswith(f"{p}:14:5: error: always[0]: a rule under `always` needs a "
                                   "condition")


def test_empty_file_and_wrong_top_level(tmp_path: Path) -> None:
    p = write(tmp_path, "# nothing yet\n")
    assert one_error(p) == (f"{p}: error: the file is empty — start from "
                            "`voice-sim persona new ID`")
    p = write(tmp_path, "- id: mini\n", name="list.yaml")
    assert one_error(p) == (f"{p}:1:1: error: must be a mapping of fields, not a list — indent "
                            "the fields under it (`key: value`, one per line)")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("expects: [empathize]", "expects: [empathise]"),
                                ("goto: thanks", "goto: thank"),
                                ('text: "Bye."', 'text: ""'),
                                ("start: 5", "start: 12")))
    found = errors_of(p)
    assert len(found) >= 4
    assert [int(e.split(":")[1]) for e in found] == sorted(int(e.split(":")[1]) for e in found)


# --- loading ------------------------------------------------------------------------

def test_load_by_id_and_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    write(folder, MINI)
    monkeypatch.setenv("VOICE_SIM_PERSONAS", str(folder))
    by_id = load_persona("mini")
    assert by_id.path == folder / "mini.yaml"
    assert load_persona(folder / "mini.yaml").lines == by_id.lines
    with pytest.raises(PersonaError) as e:
        load_persona("minni")
    assert "did you mean 'mini'?" in e.value.line()
    with pytest.raises(PersonaError, match="no such persona file"):
        load_persona(tmp_path / "nope.yaml")


def test_load_invalid_raises_with_every_problem(tmp_path: Path) -> None:
    p = write(tmp_path, replace(MINI, ("expects: [empathize]", "expects: [empathise]"),
                                ("goto: thanks", "goto: thank")))
    with pytest.raises(PersonaError) as e:
        load_persona(p)
    assert len(e.value.problems) == 2
    assert e.value.line().startswith(f"invalid persona {p}:16:15: lines[0].expects[0]: ")
    assert "(and 1 more)" in e.value.line() and "voice-sim persona check" in e.value.line()


def test_scan_collects_invalid_files(tmp_path: Path) -> None:
    write(tmp_path, MINI)
    write(tmp_path, replace(MINI, ("id: mini", "id: broken"), ("goto: bye", "goto: nowhere")),
          name="broken.yaml")
    found = {pf.path.name: pf for pf in scan_personas([tmp_path])}
    assert found["mini.yaml"].persona is not None
    assert found["broken.yaml"].persona is None
    assert "'nowhere' is not a line" in found["broken.yaml"].errors[0].message
    assert [p.id for p in find_personas([tmp_path])] == ["mini"]


def test_check_paths_folders_missing_and_duplicate_ids(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write(a, MINI)
    write(b, MINI)
    (tmp_path / "empty").mkdir()
    found = [p.line_text() for p in check_paths([a, b / "mini.yaml", tmp_path / "empty",
                                                 tmp_path / "gone"], check_voice=False)]
    assert found == [
        f"{b / 'mini.yaml'}:1:1: error: id: persona id 'mini' is also used by {a / 'mini.yaml'}"
        " — rename one of them",
        f"{tmp_path / 'empty'}: error: no persona files (*.yaml) in this folder — name a "
        "persona file or a folder holding some",
        f"{tmp_path / 'gone'}: error: no such file or folder — check the path"]


# --- the mood machine ----------------------------------------------------------------

MACHINE = """\
id: machine
title: Machine
difficulty: easy
briefing:
  situation: Exercises the mood machine.
customer:
  name: Max
  voice:
    id: en-us
mood:
  start: 6
  weights:
    empathize: -2
    apologize: -1
    offer_solution: -1
    stay_calm: -0.5
    dismissive: 1.5
    argue: 1
  hurts_factor: 2
  per_turn: 0.25
  agitated_voice: 1
max_turns: 4
on_max_turns: supervisor
always:
  - mood_at_least: 10
    goto: hung_up
    why: furious
lines:
  - id: opening
    text: "Start."
    hurts: [dismissive]
    next:
      - heard: [empathize, apologize]
        goto: calmer
        why: she feels heard
      - mood_below: 5
        goto: calmer
      - goto: middle
  - id: middle
    text: "Middle."
    next:
      - heard_ever: [apologize, offer_solution]
        goto: done
      - turn_at_least: 3
        not_heard: [argue]
        goto: calmer
      - goto: middle
  - id: calmer
    text: "Calmer."
    next:
      - heard_any: [offer_solution]
        goto: done
      - goto: middle
  - id: done
    text: "Done."
    end: resolved
  - id: supervisor
    text: "Manager please."
    end: escalated
"""


@pytest.fixture
def machine(tmp_path: Path) -> Call:
    persona = load_persona(write(tmp_path, MACHINE, name="machine.yaml"), check_voice=False)
    return Call(persona)


def test_mood_moves_by_weights_before_transitions(machine: Call) -> None:
    move = machine.advance(["empathize", "apologize"], calm=True)
    # -2 - 1 - 0.5 (calm) + 0.25 (per turn) from 6
    assert move.contributions == (("stay_calm", -0.5), ("empathize", -2.0), ("apologize", -1.0),
                                  ("per_turn", 0.25))
    assert (move.mood_before, move.mood_after) == (6.0, 2.75)
    assert move.next_line == "calmer" and machine.line.id == "calmer"
    assert move.reason == "heard empathize and apologize → line 'calmer' (she feels heard)"
    assert "stay_calm" in move.heard and move.outcome is None and not machine.ended


def test_pitfall_in_hurts_counts_double_and_agitated_voice_adds(machine: Call) -> None:
    move = machine.advance(["dismissive", "argue"], calm=False)
    assert move.contributions == (("dismissive", 3.0), ("argue", 1.0), ("agitated_voice", 1.0),
                                  ("per_turn", 0.25))
    assert move.mood_after == 10.0  # clamped at the top of the scale
    assert move.outcome == "hung_up" and move.next_line is None
    assert move.reason == "mood ≥ 10 (10) → call ends: hung_up (furious)"
    assert machine.ended
    with pytest.raises(RuntimeError, match="already ended"):
        machine.advance([])


def test_mood_condition_and_heard_ever(machine: Call) -> None:
    assert machine.advance(["apologize"]).next_line == "middle"       # 6 - 1 + .25 = 5.25
    move = machine.advance(["offer_solution"])
    assert move.reason == ("apologize and offer_solution heard during the call → line 'done' "
                           "(then the call ends: resolved)")
    assert machine.outcome == "resolved" and machine.line.id == "done"


def test_turn_conditions_and_the_turn_limit(machine: Call) -> None:
    machine.advance([])                        # → middle
    machine.advance([])                        # turn 2: middle → middle
    move = machine.advance([])                 # turn 3: turn ≥ 3, no argue → calmer
    assert move.next_line == "calmer" and move.reason == "no argue, turn ≥ 3 (3) → line 'calmer'"
    move = machine.advance([])                 # turn 4 = max_turns: calmer → middle is cut off
    assert move.rule is None and move.next_line == "supervisor"
    assert move.reason == ("turn limit 4 reached → line 'supervisor' (then the call ends: "
                           "escalated)")
    assert machine.outcome == "escalated" and machine.turn == 4


def test_same_inputs_same_path(tmp_path: Path) -> None:
    persona = load_persona(write(tmp_path, MACHINE, name="machine.yaml"), check_voice=False)
    script = [(["argue"], False), ([], None), (["apologize"], True), (["offer_solution"], True)]
    runs = []
    for _ in range(2):
        call = Call(persona)
        runs.append([call.advance(ids, calm=calm) for ids, calm in script if not call.ended])
    assert runs[0] == runs[1]
    assert [m.to_json() for m in runs[0]] == [m.to_json() for m in runs[1]]


def test_unknown_detected_id_is_refused(machine: Call) -> None:
    with pytest.raises(ValueError, match="unknown step or pitfall ids \\['shout'\\]"):
        machine.advance(["shout"])


# --- commands -----------------------------------------------------------------------

def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, MINI)
    bad = write(tmp_path, replace(MINI, ("id: mini", "id: bad"), ("goto: bye", "goto: by")),
                name="bad.yaml")
    code, out, _ = run(capsys, "persona", "check", str(good))
    assert code == 0 and "checked 1 file: all valid" in out
    code, out, _ = run(capsys, "persona", "check", str(good), str(bad))
    assert code == 1
    assert f"{bad}:21:9: error: lines[0].next[1].goto: 'by' is not a line" in out
    code, out, _ = run(capsys, "persona", "check", "--json", str(bad))
    data = json.loads(out)
    assert code == 1 and data["valid"] is False
    assert data["problems"][0]["line"] == 21 and data["problems"][0]["column"] == 9
    assert data["problems"][0]["field"] == "lines[0].next[1].goto"
    code, out, _ = run(capsys, "persona", "check", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such persona file" in out
    code, _, err = run(capsys, "persona", "speak", "nobody-at-all")
    assert code == 2 and err.startswith("voice-sim: error: no persona 'nobody-at-all'")


def test_new_writes_a_template_that_passes_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "personas"
    code, _, _ = run(capsys, "persona", "new", "parcel-lost", "--dir", str(folder))
    path = folder / "parcel-lost.yaml"
    assert code == 0 and path.exists()
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    assert text.count("#") > 20  # commented for trainers
    persona, problems = check_persona(path)
    assert problems == [] and persona is not None and persona.id == "parcel-lost"
    assert run(capsys, "persona", "check", str(path))[0] == 0
    code, _, err = run(capsys, "persona", "new", "parcel-lost", "--dir", str(folder))
    assert code == 2 and "already exists" in err and "--force" in err
    code, _, err = run(capsys, "persona", "new", "Bad_Id", "--dir", str(folder))
    assert code == 2 and "lowercase letters, digits and dashes" in err


def test_schema_command_prints_a_valid_schema(capsys: pytest.CaptureFixture[str]) -> None:
    from jsonschema import Draft202012Validator

    code, out, _ = run(capsys, "persona", "schema")
    printed = json.loads(out)
    assert code == 0 and printed == schema()
    Draft202012Validator.check_schema(printed)
    defs = printed["$defs"]
    assert defs["stepId"]["enum"] == list(STEP_IDS)
    assert defs["pitfallId"]["enum"] == list(PITFALL_IDS)
    assert defs["anyId"]["enum"] == [*STEP_IDS, *PITFALL_IDS]
    assert list(printed["properties"]["mood"]["properties"]["weights"]["properties"]) == \
        [*STEP_IDS, *PITFALL_IDS]
    assert defs["line"]["properties"]["end"]["enum"] == ["resolved", "escalated", "hung_up"]
    validator = Draft202012Validator(printed)
    shipped = sorted((SOURCE_ROOT / "personas").glob("*.yaml"))
    assert shipped
    for f in shipped:
        assert [e.message for e in validator.iter_errors(load_yaml(f))] == [], f
    wrong = load_yaml("mini.yaml", text=replace(MINI, ("max_turns: 4", "max_turn: 4")))
    assert sorted(e.message for e in validator.iter_errors(wrong)) == [
        "'max_turns' is a required property",
        "Additional properties are not allowed ('max_turn' was unexpected)"]


def test_personas_lists_valid_ones_and_names_invalid_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # only the folder named here: the shipped personas are listed in test_personas_shipped
    monkeypatch.setattr("voice_sim.paths.personas_dirs", lambda: [])
    folder = tmp_path / "extra"
    folder.mkdir()
    write(folder, MINI)
    write(folder, replace(MINI, ("id: mini", "id: broken"), ("goto: bye", "goto: x")),
          name="broken.yaml")
    code, out, err = run(capsys, "personas", "--dir", str(folder), "--json")
    listed = {p["id"]: p for p in json.loads(out)}
    assert code == 0 and listed["mini"]["path"] == str(folder / "mini.yaml")
    assert listed["mini"]["title"] == "Mini" and listed["mini"]["lines"] == 3
    assert "broken" not in listed
    assert "skipped extra/broken.yaml: invalid" in err
    code, out, _ = run(capsys, "personas", "--dir", str(folder))
    assert code == 0
    assert any(r.split()[:4] == ["mini", "Mini", "easy", "3"] for r in out.splitlines())
    code, _, err = run(capsys, "personas", "--dir", str(tmp_path / "nope"))
    assert code == 2 and "no such folder" in err


def test_graph_is_mermaid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, MACHINE, name="machine.yaml")
    code, out, _ = run(capsys, "persona", "graph", str(path))
    assert code == 0 and out == mermaid(load_persona(path, check_voice=False))
    assert out.startswith("flowchart TD\n")
    assert '  L_opening -->|"heard empathize and apologize"| L_calmer' in out
    assert '  L_middle -->|"otherwise"| L_middle' in out
    assert '  ALWAYS0{{"after any line"}} -->|"mood ≥ 10"| E_hung_up' in out
    assert '  MAXTURNS{{"after 4 turns"}} -.-> L_supervisor' in out


def test_graph_escapes_quotes(tmp_path: Path) -> None:
    path = write(tmp_path, replace(MINI, ('text: "Hello."', "text: 'She said \"now\".'")))
    assert 'L_opening["opening: She said #quot;now#quot;."]' in mermaid(load_persona(path))


def test_speak_out_writes_wavs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               espeak_wav: Callable[..., Path]) -> None:
    from voice_sim.audio import info, load_audio

    (tmp_path / "mini").mkdir()
    (tmp_path / "mini" / "bye.wav").write_bytes(espeak_wav("Goodbye then.").read_bytes())
    path = write(tmp_path, replace(MINI, ('text: "Bye."', 'text: "Bye."\n    audio: mini/bye.wav')))
    out = tmp_path / "wavs"
    code, printed, _ = run(capsys, "persona", "speak", str(path), "--out", str(out))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["bye.wav", "opening.wav", "thanks.wav"]
    assert printed.split() == [str(out / f"{x}.wav") for x in ("opening", "thanks", "bye")]
    spoken = info(out / "opening.wav")
    assert spoken.sample_rate == 22050 and 0.2 < spoken.duration_s < 3
    # the recording is used as is, not the voice
    recorded = load_audio(out / "bye.wav")
    assert abs(len(recorded) / 16000 - info(tmp_path / "mini" / "bye.wav").duration_s) < 0.01
    code, printed, _ = run(capsys, "persona", "speak", str(path), "--line", "thanks", "--out",
                           str(tmp_path / "one"))
    assert code == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["thanks.wav"]
    code, _, err = run(capsys, "persona", "speak", str(path), "--line", "thank")
    assert code == 2 and "no line 'thank'" in err and "did you mean 'thanks'?" in err


def test_speak_plays_on_the_speaker(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import fake_audio

    monkeypatch.setenv("VOICE_SIM_CACHE", str(tmp_path / "cache"))
    fake = fake_audio.install(monkeypatch, speed=50.0)
    path = write(tmp_path, MINI)
    code, out, _ = run(capsys, "persona", "speak", str(path), "--line", "opening")
    assert code == 0 and out.strip() == "opening: Hello."
    assert len(fake.played) == 1
    played = fake.played[0]
    assert float(np.max(np.abs(played.samples))) > 0.1


# --- record -------------------------------------------------------------------------

RECORDED = """\
# yaml-language-server: $schema=../voice_sim/persona.schema.json
# A comment that must survive.
id: mini
title: Mini   # trailing comment
difficulty: easy

briefing:
  situation: >-
    A short test call, folded over
    two lines.
customer:
  name: Pat
  voice: {id: en-us, rate: 180}
mood:
  start: 5
max_turns: 4
lines:
  # the opening
  - id: opening
    text: "Hello."
    expects: [empathize]   # aligned comment
    next:
      - heard: [empathize]
        goto: thanks
      - goto: bye

  - id: thanks
    text: 'Thanks.'
    end: resolved
  - id: bye
    text: Bye.
    end: hung_up
"""


@pytest.fixture
def takes(espeak_wav: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Patch the microphone: each ``devices.record`` call returns the next take."""
    from voice_sim import devices
    from voice_sim.audio import load_audio

    speech = load_audio(espeak_wav("Hello, this is Pat calling about my order."))
    lead = np.zeros(8000, dtype=np.float32)
    good = np.concatenate([lead, speech, lead, lead]).astype(np.float32)
    queue: list[np.ndarray] = [np.zeros(16000 * 3, dtype=np.float32),
                               np.clip(good * 8.0, -1.0, 1.0),
                               good * 0.01,
                               good]

    def record(seconds: float, device: object = None, sr: int = 16000) -> np.ndarray:
        assert sr == 16000 and seconds == 5
        return queue.pop(0)

    monkeypatch.setattr(devices, "record", record)
    return queue


def test_record_retries_until_a_usable_take(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], takes: list[np.ndarray]) -> None:
    from voice_sim.audio import load_audio

    path = write(tmp_path, RECORDED)
    code, out, _ = run(capsys, "persona", "record", str(path), "--line", "thanks",
                       "--seconds", "5", "--tries", "4")
    assert code == 0 and takes == []
    assert "take 1: silence: nothing was heard" in out
    assert "take 2: clipping:" in out
    assert "take 3: too quiet (peak -" in out
    wav = tmp_path / "mini" / "thanks.wav"
    assert f"saved {wav}" in out or "saved mini/thanks.wav" in out
    saved = load_audio(wav)
    # trimmed: the 1.5 s of leading/trailing silence is gone but for the padding
    assert 0 < len(saved) / 16000 < 3.5 + 0.6
    before = RECORDED.splitlines()
    at = before.index("    text: 'Thanks.'") + 1
    assert path.read_text().splitlines() == [*before[:at], "    audio: mini/thanks.wav",
                                             *before[at:]]
    persona, problems = check_persona(path)
    assert problems == [] and persona is not None
    assert persona.lines["thanks"].audio == wav.resolve()


def test_record_gives_up_after_the_tries(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], takes: list[np.ndarray]) -> None:
    path = write(tmp_path, RECORDED)
    code, _, err = run(capsys, "persona", "record", str(path), "--line", "bye",
                       "--seconds", "5", "--tries", "2")
    assert code == 2
    assert err.startswith("voice-sim: error: no usable take in 2 tries; the last: clipping")
    assert path.read_text() == RECORDED and not (tmp_path / "mini").exists()


def test_record_replaces_an_existing_reference(tmp_path: Path) -> None:
    path = write(tmp_path, RECORDED)
    set_line_audio(path, "opening", "mini/first.wav")
    set_line_audio(path, "opening", "mini/opening.wav")
    lines = path.read_text().splitlines()
    assert lines[19:21] == ['    text: "Hello."', "    audio: mini/opening.wav"]
    assert len(lines) == len(RECORDED.splitlines()) + 1


def test_record_refuses_unknown_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, RECORDED)
    code, _, err = run(capsys, "persona", "record", str(path), "--line", "nope")
    assert code == 2 and "no line 'nope'" in err and "lines: opening, thanks, bye" in err


WIDE = """\
id: mini
title: Mini
difficulty: easy
briefing:
    situation: Four-space mappings, flush sequences.
customer:
    name: Pat
    voice:
        id: en-us
mood:
    start: 5
max_turns: 4
lines:
- id: opening
  text: "Hello."
  next:
  - heard: [empathize]
    goto: thanks
  - goto: bye
- id: thanks
  text: "Thanks."
  end: resolved
- id: bye
  text: "Bye."
  end: hung_up
"""


def test_record_keeps_another_indentation_style(tmp_path: Path) -> None:
    path = write(tmp_path, WIDE)
    assert check_persona(path)[1] == []
    set_line_audio(path, "bye", "mini/bye.wav")
    lines = WIDE.splitlines()
    assert path.read_text().splitlines() == [*lines[:24], "  audio: mini/bye.wav", *lines[24:]]


def test_no_persona_file_is_ever_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = write(tmp_path, replace(MINI, ("title: Mini", f"title: !!python/object/apply:os.system "
                                       f"['touch {marker}']")))
    assert one_error(p)
    assert not marker.exists() and os.path.exists(p)


# --- phrasings, seeds, voice by mood, difficulty ------------------------------------------

VARIED = replace(MINI, ('    text: "Hello."\n', '    text: "Hello."\n    variants:\n'
                        '      - "Hi there."\n      - "Good morning."\n'),
                 ("    id: en-us\n", "    id: en-us\n    rate: 170\n"
                  "    per_mood: {rate: 10, pitch: 2, volume: -0.05}\n"),
                 ('    text: "Bye."\n', '    text: "Bye."\n    voice: {rate: 220, volume: 1.0}\n'))


def test_variants_and_voices_load(tmp_path: Path) -> None:
    persona, problems = check_persona(write(tmp_path, VARIED))
    assert problems == [] and persona is not None
    opening = persona.lines["opening"]
    assert opening.text == "Hello." and opening.texts == ("Hello.", "Hi there.", "Good morning.")
    assert persona.voice_per_mood.rate == 10 and persona.lines["bye"].voice.rate == 220
    assert persona.to_json()["phrasings"] == 5


def test_a_variant_repeating_the_text_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, replace(VARIED, ('- "Good morning."', '- "Hello."')))
    assert one_error(p).startswith(f"{p}:20:9: error: lines[0].variants[1]: variant 2 of "
                                   "line 'opening' repeats its text")


def test_variant_and_voice_ranges_are_checked(tmp_path: Path) -> None:
    p = write(tmp_path, replace(VARIED, ("rate: 220", "rate: 999"), ("pitch: 2,", "pitch: 50,"),
                                ('- "Hi there."', '- ""')))
    found = errors_of(p)
    assert any(":11:26:" in e and "customer.voice.per_mood.pitch: 50 is out of range" in e
               and "between -20 and 20" in e for e in found), found
    assert any("lines[0].variants[0]: is empty" in e for e in found), found
    assert any("lines[2].voice.rate: 999 is out of range" in e for e in found), found
    p = write(tmp_path, replace(VARIED, ("voice: {rate: 220", "voice: {id: x, rate: 220")))
    assert "unknown field 'id'" in one_error(p)


def test_recorded_line_with_variants_warns(tmp_path: Path) -> None:
    import shutil

    (tmp_path / "mini").mkdir()
    src = next((SOURCE_ROOT / "tests").rglob("*.wav"), None)
    if src is None:
        pytest.skip("no WAV in tests/ to use as a recording")
    shutil.copy(src, tmp_path / "mini" / "opening.wav")
    p = write(tmp_path, replace(VARIED, ('    text: "Hello."\n',
                                         '    text: "Hello."\n    audio: mini/opening.wav\n')))
    _, problems = check_persona(p)
    warnings = [x.line_text() for x in problems if x.severity == "warning"]
    assert any("has a recording but its variants have none" in w for w in warnings), problems


def test_the_seed_picks_phrasings_and_replays(tmp_path: Path) -> None:
    persona = load_persona(write(tmp_path, VARIED))
    openings = {Call(persona, seed=s).line.text for s in range(20)}
    assert openings == {"Hello.", "Hi there.", "Good morning."}
    assert [Call(persona, seed=5).line.text for _ in range(3)] == \
        [Call(persona, seed=5).line.text] * 3
    a, b = Call(persona), Call(persona)
    assert Call(persona, seed=a.seed).line.text == a.line.text and 0 <= b.seed < 2**31
    # A line said again takes a phrasing not used yet.
    call = Call(persona, seed=1)
    seen = [call.line.variant] + [call.go_to("opening").variant for _ in range(2)]
    assert sorted(seen) == [0, 1, 2]


def test_the_voice_moves_with_the_mood(tmp_path: Path) -> None:
    persona = load_persona(write(tmp_path, VARIED))
    call = Call(persona, seed=0)
    assert (call.voice.rate, call.voice.pitch, call.voice.volume) == (170, 50, 0.9)
    call.advance({"argue"})  # angrier: faster, higher, quieter here (volume -0.05 a point)
    assert call.mood > persona.start_mood and call.line.id == "bye"
    shift = round(call.mood - persona.start_mood)  # whole points
    assert shift > 0 and call.mood_shift == shift
    assert call.voice.rate == 220 + 10 * shift  # the line's own rate, then the mood
    assert call.voice.volume == round(1.0 - 0.05 * shift, 2)
    # What may be said next is known while the trainee answers: rendered ahead.
    ahead = Call(persona, seed=0).upcoming()
    assert {(line.id, voice.rate) for line, voice in ahead} == \
        {("thanks", 170 + 10 * d) for d in range(-2, 3)} | \
        {("bye", 220 + 10 * d) for d in range(-2, 3)}
    calm = Call(persona, seed=0)
    calm.mood = 0.0
    assert calm.voice.rate == 120 and calm.voice.pitch == 40


def test_difficulty_that_contradicts_the_shape_warns(tmp_path: Path) -> None:
    hard_shaped = replace(MINI, ("  start: 5\n", "  start: 9\n  hurts_factor: 3\n"
                                 "  per_turn: 0.5\n"),
                          ("expects: [empathize]",
                           "expects: [empathize, apologize, listen_reflect]"))
    p = write(tmp_path, hard_shaped)
    _, problems = check_persona(p)
    warnings = [x.line_text() for x in problems if x.severity == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{p}:3:1: warning: difficulty: "
                                                         "declared easy, but the call is "
                                                         "shaped like a hard one"), warnings
    _, problems = check_persona(write(tmp_path, replace(hard_shaped,
                                                        ("difficulty: easy", "difficulty: hard"))))
    assert problems == []


def test_random_persona_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--random [--difficulty D]`` draws from the installed personas with the seed."""
    import argparse

    from voice_sim import persona as persona_module
    from voice_sim.errors import InputError
    from voice_sim.practice import _persona_spec

    installed = find_personas()  # scanned once: each scan parses every shipped file
    monkeypatch.setattr(persona_module, "find_personas", lambda: installed)

    def spec(named: str | None = None, **kw: object) -> str:
        args = argparse.Namespace(random=kw.get("random", True),
                                  difficulty=kw.get("difficulty"))
        return _persona_spec(args, named, int(kw.get("seed", 1)), "double-billing")  # type: ignore[call-overload]

    by_path = {str(p.path): p for p in installed}
    hard = {spec(difficulty="hard", seed=s) for s in range(30)}
    assert len(hard) >= 3 and all(by_path[x].difficulty == "hard" for x in hard)
    assert spec(seed=4) == spec(seed=4)
    assert spec(random=False) == "double-billing"
    with pytest.raises(InputError, match="--difficulty needs --random"):
        spec(random=False, difficulty="easy")
    with pytest.raises(InputError, match="and --random together"):
        spec("late-sofa")


def test_scorecard_prints_the_seed() -> None:
    from voice_sim.record import SessionRecord
    from voice_sim.scorecard import format_scorecard

    record = {"persona": "mini", "outcome": "resolved", "score": 80, "turns": [],
              "status": "complete", "seed": 1234, "session_dir": "/tmp/x",
              "started_at": "2026-12-01T10:00:00+00:00"}
    assert "Seed: 1234" in format_scorecard(SessionRecord.from_json(record))
    assert SessionRecord.from_json(record).to_json()["seed"] == 1234  # kept through
    del record["seed"]
    assert "Seed" not in format_scorecard(SessionRecord.from_json(record))


def test_speak_out_writes_every_phrasing(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Each phrasing is rendered, and a line's own voice is used (``bye`` is faster)."""
    from voice_sim.audio import info
    from voice_sim.speak import Voice, render_wav

    out = tmp_path / "wavs"
    code, _, _ = run(capsys, "persona", "speak", str(write(tmp_path, VARIED)), "--out", str(out))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "bye.wav", "opening.2.wav", "opening.3.wav", "opening.wav", "thanks.wav"]
    slow = render_wav("Bye.", Voice(id="en-us", rate=170), tmp_path / "slow.wav")
    assert info(out / "bye.wav").duration_s < info(slow).duration_s


def test_a_rubric_beside_the_personas_is_not_a_persona(tmp_path: Path) -> None:
    """The README tells trainers to keep rubric.yaml beside their personas: `persona
    check` and the persona listing take it for what it is, not a broken persona."""
    import shutil

    from voice_sim.persona import check_paths, scan_personas
    from voice_sim.rubric_file import check_rubric

    shutil.copy(Path(__file__).parents[1] / "personas" / "double-billing.yaml", tmp_path)
    (tmp_path / "rubric.yaml").write_text(
        "ids:\n  empathize:\n    exemplars: [\"what a rotten week you've had\"]\n",
        encoding="utf-8")
    assert check_rubric(tmp_path / "rubric.yaml") == []
    assert [p for p in check_paths([tmp_path]) if p.severity == "error"] == []
    assert [pf.path.name for pf in scan_personas([tmp_path])] == ["double-billing.yaml"]
