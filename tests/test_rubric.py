"""Content scoring: normalisation, the traps, evidence, rubric files, turn score, CLI,
and quality on the labelled replies (tests/data/replies.jsonl)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from voice_sim.cli import main
from voice_sim.engines import Word
from voice_sim.errors import InputError, RubricError
from voice_sim.rubric import (
    BUILTIN_PATH,
    CONTENT_IDS,
    check_rubric,
    compile_pattern,
    load_rubric,
    rubric_beside,
    score_reply,
    turn_score,
)
from voice_sim.steps import PITFALL_IDS, STEP_IDS
from voice_sim.textnorm import normalize

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "replies.jsonl"


def _eval_module():
    spec = importlib.util.spec_from_file_location("eval_rubric", ROOT / "scripts" /
                                                  "eval_rubric.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "spoken"), [
    ("I'm sorry, I can't refund the $40.", "um im sorry i cant refund the forty dollars"),
    ("Don't worry—it'll arrive on the 3rd.", "dont worry it will arrive on the third"),
    ("You're right; I I apologise.", "your right i apologize"),
    ("It's 10% off until 6:30pm.", "its ten percent off till six thirty pm"),
    ("Reference 4471, OK?", "reference four four seven one ok"),
    ("I'll call you, I'd like to help.", "ill call you id like to help"),
])
def test_typed_and_spoken_text_normalise_the_same(typed: str, spoken: str) -> None:
    assert normalize(typed).tokens == normalize(spoken).tokens


def test_normalised_tokens_map_back_to_the_original_words() -> None:
    text = "Um, I'm sorry — the $40.50 charge won't happen again."
    n = normalize(text)
    assert n.text == "i am sorry the forty dollars fifty charge will not happen again"
    words = {tok: text[s:e] for tok, (s, e) in zip(n.tokens, n.spans, strict=True)}
    assert words["am"] == "I'm"
    assert words["dollars"] == "$40.50"
    assert words["not"] == "won't"
    assert n.original_span(*n.token_range(n.text.index("charge"), n.text.index("charge") + 6)) \
        == (text.index("charge"), text.index("charge") + 6)


def test_ill_and_id_expand_only_where_the_context_fits() -> None:
    assert normalize("ill send it").tokens[:2] == ("i", "will")
    assert normalize("she is feeling ill today").tokens[-2] == "ill"
    assert normalize("your order id is here").tokens[2] == "id"


# --- the traps in the reference ------------------------------------------------------


@pytest.mark.parametrize(("reply", "absent", "present"), [
    ("I won't transfer you.", "escalate", "excuse"),
    ("I don't understand why you're upset.", "empathize", "dismissive"),
    ("I'm not going to refund anything.", "offer_solution", "excuse"),
    ("Sorry, but that's our policy.", "apologize", "excuse"),
    ("I understand how frustrating this is, but there's nothing I can do.", "empathize",
     "excuse"),
    ("I'm sorry you feel that way.", "apologize", "dismissive"),
    ("i understand your upset but honestly youre overreacting", "empathize", "dismissive"),
])
def test_negation_non_apologies_and_but_clauses(reply: str, absent: str, present: str) -> None:
    content = score_reply(reply)
    assert absent not in content.ids
    assert present in content.ids


def test_a_but_followed_by_an_alternative_keeps_the_step() -> None:
    content = score_reply("I'm so sorry, but I can't refund it; I can send a replacement today.")
    assert {"apologize", "offer_solution", "set_expectations"} <= content.ids
    assert "excuse" not in content.ids


def test_a_suppressed_step_is_reported_with_its_reason() -> None:
    content = score_reply("I understand how frustrating this is, but there's nothing I can do.")
    (note,) = [d for d in content.suppressed if d.id == "empathize"]
    assert "but" in note.note and note.evidence.startswith("I understand")


def test_refusal_without_alternative_is_an_excuse_with_one_is_honest() -> None:
    assert score_reply("No, I can't.").ids == {"excuse"}
    assert score_reply("I can't waive the fee, but I can split it over 3 months.").ids == {
        "set_expectations", "offer_solution"}


def test_no_problem_and_no_wonder_are_not_negations() -> None:
    assert "offer_solution" in score_reply("No problem, I'll send a replacement today.").ids
    assert "empathize" in score_reply("No wonder you're fed up.").ids


@pytest.mark.parametrize(("reply", "present", "absent"), [
    # honest limits
    ("We can't promise an exact match to a screen.", {"set_expectations"}, set()),
    ("That's above what I can approve myself, so I'm bringing in my team leader.",
     {"set_expectations", "escalate"}, {"excuse"}),
    # agreeing that something is unfair is empathy; saying the complaint is unfair argues
    ("You're right, and that isn't fair on you.", {"empathize"}, {"argue"}),
    ("That's not fair, our prices are fine.", {"argue"}, {"empathize"}),
    # a refusal with an alternative is honest; the same refusal alone is an excuse
    ("I can't change the ink, but I can post you a printed sample.",
     {"set_expectations", "offer_solution"}, {"excuse"}),
    ("I can't change the ink.", {"excuse"}, {"set_expectations"}),
    ("Sorry, I can't.", {"excuse"}, {"apologize"}),
    ("I can't, but I'll ask my manager to call you.", {"set_expectations", "escalate"},
     {"excuse"}),
    # hand-overs to a named person, or with no "to ..."
    ("My team leader Jordan can, and I can bring Jordan in.", {"escalate"}, set()),
    ("Let me transfer you now.", {"escalate"}, set()),
    ("I can't transfer you now.", {"excuse"}, {"escalate"}),
    ("You can bring it in to any branch.", set(), {"escalate"}),
    # anyone's promise of an immediate call-back
    ("Jordan will call you straight back.", {"follow_up"}, set()),
    ("Is there anything more I can do for you?", {"follow_up"}, set()),
    # the system as the reason for not doing something offers nothing
    ("The system doesn't let me book a time.", {"excuse"}, {"offer_solution"}),
    ("There's nothing more I can do.", {"excuse"}, set()),
    # decisions on the borderline cases (see rubric.yaml)
    ("Just restart the router, okay?", {"dismissive"}, set()),
    ("I'm booking an engineer, and just restart it if it drops again, okay?",
     {"offer_solution"}, {"dismissive"}),
    ("Let me make it plain: you keep your number and your voicemail.",
     {"set_expectations"}, set()),
    ("You keep saying that, but it's not true.", {"argue"}, {"set_expectations"}),
    # times on a clock; the agent's own call-back time stays follow_up only
    ("The part arrives at nine tomorrow and it'll be ready by twelve noon.",
     {"set_expectations"}, set()),
    ("I'll call you tomorrow at nine to confirm.", {"follow_up"}, {"set_expectations"}),
    # validation without a feeling word; "how much" here is not a question
    ("I understand how much these matter to you.", {"empathize"}, {"ask_clarify"}),
    ("You have every right to expect these to be perfect.", {"empathize"}, set()),
    ("I'll have it corrected on the new proof.", {"offer_solution"}, set()),
])
def test_misses_found_while_writing_persona_replies(reply: str, present: set[str],
                                                    absent: set[str]) -> None:
    ids = score_reply(reply).ids
    assert present <= ids, (reply, sorted(ids))
    assert not absent & ids, (reply, sorted(ids))


def test_speech_engine_slips_in_model_answers_still_score() -> None:
    """Whisper on synthetic speech drops articles and mishears "one": the phrase
    around them still carries the step."""
    assert "empathize" in score_reply("on a pension that's real squeeze").ids
    assert "break_down" in score_reply("let's take them well at a time starting with "
                                       "the ink color").ids
    assert "empathize" in score_reply("I understand how much these matter to, let's "
                                      "go").ids


def test_a_step_without_any_stock_phrase() -> None:
    customer = "I've been on hold for forty minutes and got transferred three times!"
    content = score_reply("Forty minutes on hold and three transfers — I'd be annoyed too.",
                          customer)
    assert content.ids == {"empathize", "listen_reflect"}
    reflect = content.get("listen_reflect")
    assert reflect is not None and "forty" in reflect.rule


def test_listen_reflect_is_judged_against_the_customer_line() -> None:
    reply = "So the parcel arrived soaked and the box was torn open."
    assert "listen_reflect" in score_reply(reply, "My parcel came soaked and torn!").ids
    assert "listen_reflect" not in score_reply(reply, "Why is my bill so high?").ids
    assert score_reply("I hear you.", "My parcel came soaked and torn!").ids == frozenset()
    framed = score_reply("So what you're saying is the refund never reached your card?",
                         "My refund never reached my card.")
    assert framed.get("listen_reflect") is not None
    assert "frame" in framed.get("listen_reflect").rule  # type: ignore[union-attr]


def test_naming_the_item_in_an_offer_is_not_a_restatement() -> None:
    content = score_reply("I'm removing the late fee now.", "You charged me a late fee!")
    assert "listen_reflect" not in content.ids
    assert "offer_solution" in content.ids


@pytest.mark.parametrize(("typed", "spoken"), [
    ("I'm so sorry about the delay. I'll refund the $40 today; you'll see it in 3-5 days.",
     "um im so sorry about the delay uh ill refund the forty dollars today youll see it in "
     "three to five days"),
    ("Let's take this one step at a time: first the refund, then the address.",
     "lets take this one step at a time first the refund then the address"),
    ("That's not true, you're wrong.", "thats not true your wrong"),
    ("I'll call you tomorrow. Is there anything else I can help with?",
     "ill call you tomorrow is there anything else i can help with"),
    ("I want to help, and I need us to keep this respectful.",
     "i want to help and i need us to keep this respectful"),
])
def test_typed_and_spoken_replies_score_the_same(typed: str, spoken: str) -> None:
    a, b = score_reply(typed), score_reply(spoken)
    assert a.ids == b.ids and a.ids


# --- evidence ------------------------------------------------------------------------


def test_evidence_is_the_exact_words_of_the_reply() -> None:
    # (with the adapted encoder, "...I'm SO sorry. I'll send a replacement by Friday." is
    # a known miss of set_expectations: docs/content_scoring.md, the adapter shipped)
    reply = ("Oh no, that's awful — I'm SO sorry. I'll send a replacement, and you'll have it "
             "by Friday.")
    content = score_reply(reply)
    assert {"empathize", "apologize", "offer_solution", "set_expectations"} <= content.ids
    for d in (*content.steps, *content.pitfalls):
        assert reply[d.span[0]:d.span[1]] == d.evidence
        assert d.rule and d.weight > 0
        assert d.start_s is None and d.end_s is None
    assert content.get("apologize").evidence == "I'm SO sorry"  # type: ignore[union-attr]
    assert content.get("set_expectations").evidence == "you'll have it by Friday"  # type: ignore[union-attr]


def test_word_timings_give_evidence_seconds() -> None:
    spoken = ["um", "i'm", "really", "sorry", "about", "that", "i'll", "refund", "you", "today"]
    words = [Word(w, 0.4 * k, 0.4 * k + 0.3) for k, w in enumerate(spoken)]
    reply = " ".join(w.word for w in words)
    content = score_reply(reply, words=words)
    apology = content.get("apologize")
    assert apology is not None
    assert apology.evidence.startswith("i'm really sorry")
    assert apology.start_s == pytest.approx(0.4) and apology.end_s is not None
    assert apology.end_s >= 1.2 + 0.3 - 1e-9
    offer = content.get("offer_solution")
    assert offer is not None and offer.start_s is not None and offer.start_s >= 2.4 - 1e-9


def test_content_json_shape() -> None:
    d = json.loads(json.dumps(score_reply("Calm down. I'll refund you.").to_json()))
    assert [s["id"] for s in d["steps"]] == ["offer_solution"]
    assert [p["id"] for p in d["pitfalls"]] == ["dismissive"]
    assert set(d["steps"][0]) >= {"id", "kind", "evidence", "span", "start_s", "end_s",
                                  "rule", "weight", "where"}


# --- the rubric file -----------------------------------------------------------------


def test_builtin_rubric_is_valid_and_complete() -> None:
    assert check_rubric(BUILTIN_PATH) == []
    rb = load_rubric()
    assert load_rubric() is rb  # loaded once per process
    for id_ in STEP_IDS:
        assert rb.weight(id_) > 0 and rb.mood(id_) < 0
    for id_ in PITFALL_IDS:
        assert rb.weight(id_) > 0 and rb.mood(id_) > 0
    with pytest.raises(InputError, match="did you mean 'empathize'"):
        rb.mood("empathise")


def _write(tmp_path: Path, text: str, name: str = "rubric.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_a_trainer_file_extends_and_overrides(tmp_path: Path) -> None:
    # a trainer's regional idiom the built-in scorer does not read as empathy ("I reckon
    # that's a proper pickle" sits at p 0.50 in the built-in model: too close to call)
    reply = "Righto, that's a proper palaver."
    assert "empathize" not in score_reply(reply).ids
    extra = _write(tmp_path, "ids:\n  empathize:\n    weight: 40\n    mood: -2.5\n"
                   "    patterns:\n      - \"a proper <pickle>\"\n"
                   "classes:\n  pickle: [pickle, mess, jam, palaver]\n")
    rb = load_rubric(extra)
    content = score_reply(reply, rubric=rb)
    assert "empathize" in content.ids
    assert content.get("empathize").where == "rubric.yaml:6"  # type: ignore[union-attr]
    assert rb.weight("empathize") == 40 and rb.mood("empathize") == -2.5
    assert rb.weight("apologize") == load_rubric().weight("apologize")
    # built-in phrases still count
    assert "apologize" in score_reply("I'm so sorry.", rubric=rb).ids
    assert load_rubric(extra) is rb
    # an edited file is read again
    extra.write_text("ids:\n  empathize:\n    weight: 10\n", encoding="utf-8")
    os.utime(extra, ns=(1, 1))
    assert load_rubric(extra).weight("empathize") == 10


def test_replace_drops_the_builtin_phrases(tmp_path: Path) -> None:
    extra = _write(tmp_path, "ids:\n  apologize:\n    replace: true\n"
                   "    exemplars: [we owe you one]\n")
    rb = load_rubric(extra)
    assert "apologize" not in score_reply("I'm so sorry.", rubric=rb).ids
    assert "apologize" in score_reply("Honestly, we really owe you one.", rubric=rb).ids


@pytest.mark.parametrize(("text", "where", "words"), [
    ("ids:\n  empathise:\n    weight: 3\n", ":2:3:", ["ids.empathise", "did you mean 'empathize'"]),
    ("ids:\n  excuse:\n    weight: lots\n", ":3:13:", ["ids.excuse.weight", "number"]),
    ("ids:\n  excuse:\n    mood: 50\n", ":3:11:", ["ids.excuse.mood", "-10 to 10"]),
    ("ids:\n  excuse:\n    patterns:\n      - \"not my (job\"\n", ":4:9:",
     ["ids.excuse.patterns[0]", "missing ')'"]),
    ("ids:\n  excuse:\n    patterns:\n      - \"it is <nonsense>\"\n", ":4:9:",
     ["unknown class <nonsense>"]),
    ("ids:\n  excuse:\n    patterns: [\"[just]\"]\n", ":3:16:", ["match no words"]),
    ("ids:\n  stay_calm:\n    patterns: [breathe]\n", ":3:5:", ["measured from the audio"]),
    ("ids:\n  excuse:\n    paterns: [x]\n", ":3:5:", ["did you mean 'patterns'"]),
    ("ids: [1, 2\n", ":2:1:", ["YAML syntax error"]),
    ("ids:\n  excuse: !!python/object:os.system {}\n", ":2:11:", ["tag"]),
])
def test_invalid_rubric_files_name_file_line_and_field(tmp_path: Path, text: str, where: str,
                                                        words: list[str]) -> None:
    bad = _write(tmp_path, text, "mine.yaml")
    problems = check_rubric(bad)
    assert problems, text
    line = problems[0].line_text()
    assert line.startswith(str(bad)) and where in line, line
    for w in words:
        assert w in line, line
    with pytest.raises(RubricError, match=r"mine\.yaml"):
        load_rubric(bad)


def test_check_rubric_reports_every_problem(tmp_path: Path) -> None:
    bad = _write(tmp_path, "ids:\n  excuse:\n    weight: x\n  argue:\n    mood: y\n")
    assert [p.field for p in check_rubric(bad)] == ["ids.excuse.weight", "ids.argue.mood"]


def test_rubric_beside_a_persona(tmp_path: Path) -> None:
    persona = _write(tmp_path, "id: x\n", "angry-bob.yaml")
    assert rubric_beside(persona) is None
    _write(tmp_path, "ids: {}\n")
    assert rubric_beside(persona) == tmp_path / "rubric.yaml"


def test_pattern_language() -> None:
    import re

    rx = re.compile(compile_pattern("i (am|was) [really] sorry ... <num> *"))
    assert rx.match("i am sorry forty eight hours ")
    assert rx.match("i was really sorry about the delay of two days ")
    assert not rx.match("i was really sorry about the long delay of two days ")
    assert not rx.match("i am not sorry ")
    assert re.compile(compile_pattern("don't (be)? upset")).match("do not upset ")
    with pytest.raises(ValueError, match="start or end"):
        compile_pattern("... sorry")


# --- turn score ----------------------------------------------------------------------


def test_turn_score_formula_and_explanation() -> None:
    content = score_reply("That sounds exhausting. That's our policy.")
    assert content.ids == {"empathize", "excuse"}
    rb = load_rubric()
    ts = turn_score(content, ["empathize", "offer_solution"])
    possible = rb.weight("empathize") + rb.weight("offer_solution")
    expected = round(100 * rb.weight("empathize") / possible - rb.weight("excuse"))
    assert ts.score == max(0, expected)
    assert ts.explanation[0].startswith("expected empathize: heard ('That sounds exhausting')")
    assert any(line.startswith("expected offer_solution: missed") for line in ts.explanation)
    assert any(line.startswith("pitfall excuse") for line in ts.explanation)
    assert ts.explanation[-1].startswith("score:")


def test_turn_score_counts_other_steps_a_little_and_calm() -> None:
    rb = load_rubric()
    content = score_reply("I'm so sorry. I'll refund you today.")
    only = turn_score(content, ["offer_solution"])
    assert only.score == 100
    assert turn_score(content, ["offer_solution", "empathize"]).score == round(
        100 * (rb.weight("offer_solution") + 0.25 * rb.weight("apologize"))
        / (rb.weight("offer_solution") + rb.weight("empathize")))
    calm = turn_score(content, ["offer_solution"], calm=True)
    tense = turn_score(content, ["offer_solution"], calm=False)
    assert calm.score == 100 and tense.score < 100
    assert "stay_calm" in tense.expected
    open_ = turn_score(score_reply("Okay."), [])
    assert open_.score == 0 and "no step expected" in open_.explanation[0]
    with pytest.raises(InputError, match="steps are"):
        turn_score(content, ["excuse"])


# --- command line --------------------------------------------------------------------


def test_cli_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-reply", "Sorry, but that's our policy.", "--expect", "apologize"]) == 0
    out = capsys.readouterr().out
    assert "excuse" in out and "not counted" in out and "score: 0/100" in out
    assert main(["check-reply", "I'm so sorry about that.", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["steps"][0]["id"] == "apologize" and d["score"]["score"] == 42


def test_cli_jsonl_keeps_order_and_names_bad_lines(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text('{"reply": "Calm down."}\n\n{"reply": "I hear you.", "customer": "late"}\n'
                 '{"reply": "So your parcel is late?", "customer": "My parcel is late",'
                 ' "expect": ["listen_reflect"]}\n', encoding="utf-8")
    assert main(["check-reply", "--jsonl", str(f)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["line"] for x in lines] == [1, 3, 4]
    assert lines[0]["pitfalls"][0]["id"] == "dismissive"
    assert lines[1]["steps"] == [] and lines[2]["score"]["score"] == 100
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"reply": "ok"}\n{"reply": 3}\n'))
    assert main(["check-reply", "--jsonl", "-"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed before the whole batch is checked
    assert captured.err.strip() == ('voice-sim: error: stdin:2: "reply" is missing or not a '
                                    'string — every line needs "reply": "what the trainee said"')
    f.write_text('{"reply": "ok"}\n{"reply": "x"\n', encoding="utf-8")
    assert main(["check-reply", "--jsonl", str(f)]) == 2
    assert f"{f}:2: not valid JSON" in capsys.readouterr().err


def test_cli_jsonl_workers_keep_order_and_equal_one_process(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import voice_sim.rubric_cli as rubric_cli

    rows = [json.loads(x) for x in DATA.read_text(encoding="utf-8").splitlines()[:11]]
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps({"reply": r["reply"], "customer": r.get("customer")})
                         + "\n" for r in rows), encoding="utf-8")
    monkeypatch.setattr(rubric_cli, "PARALLEL_CHUNK", 3)  # four tasks for two processes
    outs = []
    for workers in ("1", "2"):
        assert main(["check-reply", "--jsonl", str(f), "--workers", workers]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]
    assert [json.loads(x)["line"] for x in outs[1].splitlines()] == list(range(1, 12))
    assert main(["check-reply", "--jsonl", str(f), "--workers", "-1"]) == 2
    assert "--workers -1" in capsys.readouterr().err


def test_cli_bad_rubric_and_missing_text(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "ids:\n  excuse:\n    weight: lots\n")
    assert main(["check-reply", "x", "--rubric", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:3:13" in err and "ids.excuse.weight" in err
    assert main(["check-reply"]) == 2
    assert "no reply to check" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["eval_rubric.py", "--data"], ["train_rubric.py", "--add"],
                                     ["finetune_rubric.py", "--add"], ["eval_added_data.py"]])
@pytest.mark.parametrize(("line", "says"), [
    ('{"reply": 3, "steps": [], "pitfalls": []}', ":2: field 'reply' must be the reply's text"),
    ('{"reply": "Sorry.", "steps": ["sympathy"], "pitfalls": []}',
     ":2: field 'steps': unknown id 'sympathy'"),
    ("not json", ":2: not JSON"),
    (None, ": no such file or folder"),
])
def test_the_data_scripts_name_a_bad_labelled_file_in_one_line(
        tmp_path: Path, command: list[str], line: str | None, says: str) -> None:
    """Every script that reads a labelled file (to score, to train on, to fine-tune the
    encoder with) checks it first: one line naming file:line and field, exit 2, before
    any model loads."""
    bad = tmp_path / "bad.jsonl"
    if line is not None:
        good = '{"reply": "I can see why that is upsetting.", "steps": ["empathize"], ' \
               '"pitfalls": []}'
        bad.write_text(f"{good}\n{line}\n", encoding="utf-8")
    script, *flag = command
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *flag, str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"{script.removesuffix('.py')}: {bad}{says}"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


# --- quality on the labelled replies -------------------------------------------------

FLOORS = {
    "listen_reflect": 0.80, "empathize": 0.90, "apologize": 0.90, "ask_clarify": 0.85,
    "offer_solution": 0.88, "set_expectations": 0.88, "follow_up": 0.90, "escalate": 0.90,
    "set_boundary": 0.90, "break_down": 0.90, "document": 0.88, "blame_customer": 0.90,
    "excuse": 0.85, "dismissive": 0.90, "argue": 0.90,
}
"""Per-id F1 floors over all replies, just under what ``scripts/eval_rubric.py`` measures."""


def test_the_labelled_set_is_large_varied_and_split() -> None:
    rows = _eval_module().load_rows(DATA)
    assert len(rows) >= 150
    held = [r for r in rows if r["split"] == "heldout"]
    assert 0.2 <= len(held) / len(rows) <= 0.3, len(held) / len(rows)
    assert len({r["reply"] for r in rows}) == len(rows)
    for split in ("tune", "heldout"):
        seen = Counter(i for r in rows if r["split"] == split for i in r["steps"] + r["pitfalls"])
        assert set(CONTENT_IDS) <= set(seen), split
    traps = Counter(t for r in rows for t in r["traps"])
    for trap in ("negation", "non_apology", "understand_but", "paraphrase", "reflect_bare",
                 "reflect_customer", "asr", "empty"):
        assert traps[trap] >= 3, trap
    assert all(r["customer"] for r in rows)
    assert set(FLOORS) == set(CONTENT_IDS)


@pytest.mark.slow
def test_quality_on_the_labelled_replies() -> None:
    ev = _eval_module()
    rows = ev.load_rows(DATA)
    got = {r["id"]: set(score_reply(r["reply"], r.get("customer")).ids) for r in rows}
    result = ev.evaluate(rows, predict=lambda r: got[r["id"]])
    assert result["macro_f1"] >= 0.85
    held = ev.evaluate([r for r in rows if r["split"] == "heldout"],
                       predict=lambda r: got[r["id"]])
    assert held["macro_f1"] >= 0.85
    low = {i: round(v["f1"], 3) for i, v in result["per_id"].items() if v["f1"] < FLOORS[i]}
    assert not low, low
