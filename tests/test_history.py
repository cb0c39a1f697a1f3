"""The progress history: SQLite storage, import, concurrency, damaged files, views."""

from __future__ import annotations

import copy
import json
import multiprocessing
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from voice_sim import history
from voice_sim.cli import main
from voice_sim.errors import SessionError
from voice_sim.record import SessionRecord

typed = SessionRecord.from_json


def _record(session: Path) -> dict[str, Any]:
    rec: dict[str, Any] = json.loads((session / "session.json").read_text(encoding="utf-8"))
    return rec


# --- where the database is ---------------------------------------------------------------


def test_database_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICE_SIM_HISTORY", raising=False)
    monkeypatch.setenv("VOICE_SIM_DATA", str(tmp_path / "data"))
    assert history.history_path() == tmp_path / "data" / "history.sqlite3"
    monkeypatch.setenv("VOICE_SIM_HISTORY", str(tmp_path / "env.db"))
    assert history.history_path() == tmp_path / "env.db"
    assert history.history_path(tmp_path / "opt.db") == tmp_path / "opt.db"


def test_showing_an_absent_history_creates_nothing(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "sub" / "h.sqlite3"
    assert main(["history", "--db", str(db)]) == 0
    assert "No sessions recorded yet." in capsys.readouterr().out
    assert not db.exists() and not db.parent.exists()
    assert main(["history", "--db", str(db), "--persona", "late-sofa", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sessions"] == []


def test_an_empty_file_becomes_a_history(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    db.touch()
    assert history.load_history(db) == []
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
    assert con.execute("PRAGMA application_id").fetchone()[0] == history.APPLICATION_ID
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


# --- damaged or foreign files are refused and left alone --------------------------------


GARBAGE = bytes(range(256)) * 40


@pytest.mark.parametrize("argv", [["history"], ["history", "--json"],
                                  ["history", "import", "DIR"]])
def test_a_corrupt_file_is_reported_and_untouched(tmp_path: Path, argv: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite3"
    db.write_bytes(GARBAGE)
    session = tmp_path / "s"
    session.mkdir()
    (session / "session.json").write_text("{}", encoding="utf-8")
    argv = [str(session) if a == "DIR" else a for a in argv]
    assert main([*argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"voice-sim: error: {db}: not a voice-sim history database (")
    assert "move it aside; it was left untouched" in err and "\n" not in err
    assert db.read_bytes() == GARBAGE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.sqlite3", "s"]  # no -wal etc.


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.execute("INSERT INTO notes (body) VALUES ('mine')")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(SessionError, match=r"not a voice-sim history database \(it holds "
                                           r"other data: tables notes\)"):
        history.load_history(db)
    assert db.read_bytes() == before


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    history.load_history(db)  # nothing there: not created
    db.touch()
    history.load_history(db)  # created
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(SessionError, match="newer than this voice-sim understands"):
        history.load_history(db)


def test_a_folder_in_the_way(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--db", str(tmp_path)]) == 2
    assert "is a folder, not a history database file" in capsys.readouterr().err


# --- real sessions -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.model
def test_summary_counts_steps_against_what_lines_expected(recorded_session: Path) -> None:
    rec = _record(recorded_session)
    s = history.SessionSummary.from_record(typed(rec))
    assert s.session_dir == str(recorded_session.resolve())
    assert s.turns == len(rec["turns"]) and s.score == rec["score"]
    calm = [t["delivery"]["calm_score"] for t in rec["turns"]]
    assert s.calm_score == pytest.approx(sum(calm) / len(calm), abs=0.05)
    for step, tally in s.steps.items():
        exp = [t for t in rec["turns"] if step in t["customer"]["expects"]]
        assert tally.expected == len(exp)

        def heard(t: dict[str, Any], step: str = step) -> bool:
            if step == "stay_calm":
                return bool(t["delivery"]["calm"])
            return step in {d["id"] for d in t["steps"]}

        assert tally.achieved == sum(heard(t) for t in exp)
        assert tally.heard == sum(heard(t) for t in rec["turns"])
    assert sum(s.pitfalls.values()) == sum(len(t["pitfalls"]) for t in rec["turns"]) > 0


@pytest.mark.slow
@pytest.mark.model
def test_recording_twice_keeps_one_row(recorded_session: Path, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    rec = _record(recorded_session)
    assert history.record_session(typed(rec), db=db) == "added"
    assert history.record_session(typed(rec), db=db) == "updated"
    [s] = history.load_history(db)
    assert s == history.SessionSummary.from_record(typed(rec))
    empty = {**rec, "turns": [], "session_dir": str(tmp_path / "other")}
    assert history.record_session(typed(empty), db=db) == "empty"
    assert len(history.load_history(db)) == 1


@pytest.mark.slow
@pytest.mark.model
def test_import_is_idempotent_and_reports_what_it_skipped(
        recorded_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite3"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "session.json").write_text("{not json", encoding="utf-8")
    # The session folder, and the sessions folder holding it: one session either way.
    argv = ["history", "import", str(recorded_session), str(recorded_session.parent),
            str(broken), str(tmp_path / "missing"), "--db", str(db)]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "Imported 2 sessions (1 new, 1 already in the history)" in out
    assert f"skipped {broken}: {broken / 'session.json'}: not valid JSON (line 1)" in err
    assert f"skipped {tmp_path / 'missing'}: no such folder" in err
    assert main(["history", "import", str(recorded_session), "--db", str(db)]) == 0
    assert "(0 new, 1 already in the history)" in capsys.readouterr().out
    assert len(history.load_history(db)) == 1
    # --db given before the action works too (the action's own default must not win).
    assert main(["history", "--db", str(db), "import", str(recorded_session)]) == 0
    assert str(db) in capsys.readouterr().out


def _insert_all(db: str, records: list[dict[str, Any]], barrier: Any) -> None:
    barrier.wait()  # both processes start inserting (and creating the file) together
    for r in records:
        history.record_session(typed(r), db=db)


@pytest.mark.slow
@pytest.mark.model
def test_two_processes_recording_at_once(recorded_session: Path, tmp_path: Path) -> None:
    rec = _record(recorded_session)

    def variant(name: str) -> dict[str, Any]:
        r = copy.deepcopy(rec)
        r["session_dir"] = str(tmp_path / name)
        return r

    shared = [variant(f"both-{i}") for i in range(10)]
    mine = [[variant(f"p{p}-{i}") for i in range(20)] + shared for p in range(2)]
    db = tmp_path / "h.sqlite3"
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding a model
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_insert_all, args=(str(db), m, barrier)) for m in mine]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    got = history.load_history(db)
    assert len(got) == 50
    assert len({s.session_dir for s in got}) == 50
    con = sqlite3.connect(db)
    n_steps = con.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
    assert n_steps == 50 * len(history.SessionSummary.from_record(typed(rec)).steps)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


@pytest.mark.slow
@pytest.mark.model
def test_history_views(recorded_session: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite3"
    again = shutil.copytree(recorded_session, tmp_path / "again")
    history.import_sessions([recorded_session, again], db)
    assert main(["history", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    for line in text.splitlines():
        assert len(line) <= 80 or line.startswith("Database: "), line
    rec = _record(recorded_session)
    score = f"{rec['score']:.0f}"
    assert f"{score} → {score}" in text
    spark = next(line for line in text.splitlines() if line.startswith("overall score"))
    assert len(set(spark[20:22]) & set("▁▂▃▄▅▆▇█")) == 1
    assert "Steps (share of the turns that expected it where it was heard):" in text
    counts = history.SessionSummary.from_record(typed(rec)).pitfalls
    assert "Pitfalls heard (all sessions): " + ", ".join(
        f"{k} {2 * n}" for k, n in counts.items()) in text  # the same pitfalls in both

    assert main(["history", "--db", str(db), "--persona", "late-sofa"]) == 0
    assert "No sessions recorded yet with late-sofa." in capsys.readouterr().out

    assert main(["history", "--db", str(db), "--persona", "double-billing", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["sessions"]) == 2 and data["progress"]["score"] == [rec["score"]] * 2
    summary = history.SessionSummary.from_record(typed(rec))
    for step, rates in data["progress"]["steps"].items():
        want = summary.steps[step].rate
        assert rates == [None if want is None else round(want, 3)] * 2

    page = tmp_path / "history.html"
    assert main(["history", "--db", str(db), "--html", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "<script" not in html
    assert html.count("<svg") == 1 + len(data["progress"]["steps"])
    assert html.count((recorded_session / "report.html").as_uri()) == int(
        (recorded_session / "report.html").is_file())
