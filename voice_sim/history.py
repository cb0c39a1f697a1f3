"""Progress over time: every session's summary in an embedded SQLite database.

The database is ``paths.data_dir()/history.sqlite3`` unless ``VOICE_SIM_HISTORY``
or ``--db`` names another file. Each finished call adds its summary (score, calm
score, outcome, and per step how often it was heard where the customer's line
expected it); ``voice-sim history import DIR…`` adds existing session folders.

Safety:

* The session folder is the key, so recording or importing a session twice keeps
  one row (the newer summary wins) — import is idempotent.
* WAL mode, a busy timeout and one ``BEGIN IMMEDIATE`` transaction per session:
  two calls finishing at once both land, neither blocks the other for long.
* A file that is not a voice-sim history (garbage, another program's database, a
  newer schema) is refused with a clear message and left byte-for-byte untouched;
  it is never recreated or overwritten. The schema version is ``PRAGMA
  user_version``; ``PRAGMA application_id`` marks the file as ours.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from voice_sim.errors import InputError, SessionError, VoiceSimError
from voice_sim.record import SessionRecord, load_session
from voice_sim.steps import PITFALL_IDS, STEP_IDS

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the layout below; bumped (with a migration) on change."""

APPLICATION_ID = 0x56534D48
"""``PRAGMA application_id`` ("VSMH"): marks a SQLite file as a voice-sim history."""

BUSY_TIMEOUT_S = 15.0
"""Seconds a writer waits for another one (a session insert takes milliseconds)."""

SPARK_MAX = 40
"""Sessions shown in a terminal sparkline (the newest), so a line fits 80 columns."""

SCHEMA = """
CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    session_dir   TEXT NOT NULL UNIQUE,
    started_at    TEXT NOT NULL,
    persona       TEXT NOT NULL,
    persona_title TEXT NOT NULL,
    mode          TEXT NOT NULL,
    status        TEXT NOT NULL,
    outcome       TEXT,
    score         REAL NOT NULL,
    calm_score    REAL,
    calm_turns    INTEGER NOT NULL,
    turns         INTEGER NOT NULL,
    duration_s    REAL,
    engine        TEXT,
    recorded_at   TEXT NOT NULL
);
CREATE INDEX sessions_by_time ON sessions (started_at);
CREATE TABLE steps (
    session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    step       TEXT NOT NULL,
    expected   INTEGER NOT NULL,
    achieved   INTEGER NOT NULL,
    heard      INTEGER NOT NULL,
    PRIMARY KEY (session_id, step)
);
CREATE TABLE pitfalls (
    session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    pitfall    TEXT NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (session_id, pitfall)
);
"""


# --- what is stored ------------------------------------------------------------------


@dataclass(frozen=True)
class StepTally:
    """How one step went in one session."""

    expected: int
    """Turns whose customer line expected the step."""
    achieved: int
    """Of those, turns where it was heard (``stay_calm``: the delivery was calm)."""
    heard: int
    """Turns where it was heard at all, expected or not."""

    @property
    def rate(self) -> float | None:
        """achieved / expected, 0..1; None when no line expected the step."""
        return self.achieved / self.expected if self.expected else None


@dataclass(frozen=True)
class SessionSummary:
    """One session as the history keeps it."""

    session_dir: str
    """Absolute path of the session folder: the key."""
    started_at: str
    """ISO 8601 with the UTC offset, as in ``session.json``."""
    persona: str
    persona_title: str
    mode: str
    status: str
    outcome: str | None
    score: float
    """0-100, the session score."""
    calm_score: float | None
    """0-100, the mean of the turns' calm scores; None with no turn."""
    calm_turns: int
    turns: int
    duration_s: float | None
    engine: str | None
    steps: Mapping[str, StepTally] = field(default_factory=dict)
    pitfalls: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: SessionRecord, session_dir: str | os.PathLike[str] | None
                    = None) -> SessionSummary:
        """Summarise a session record; ``session_dir`` defaults to the one it names."""
        tallies: dict[str, list[int]] = {}
        pitfalls: dict[str, int] = {}
        calm_scores = [t.delivery.calm_score for t in record.turns
                       if t.delivery.calm_score is not None]
        for t in record.turns:
            heard = {d.id for d in t.steps} | ({"stay_calm"} if t.delivery.calm else set())
            expects = set(t.expects)
            for s in heard | expects:
                tally = tallies.setdefault(s, [0, 0, 0])
                tally[0] += s in expects
                tally[1] += s in expects and s in heard
                tally[2] += s in heard
            for d in t.pitfalls:
                pitfalls[d.id] = pitfalls.get(d.id, 0) + 1
        return cls(
            session_dir=str(Path(session_dir or record.session_dir).resolve()),
            started_at=record.started_at, persona=record.persona,
            persona_title=record.persona_title or record.persona, mode=record.mode,
            status=record.status, outcome=record.outcome, score=record.score,
            calm_score=round(sum(calm_scores) / len(calm_scores), 1) if calm_scores else None,
            calm_turns=record.calm_turns, turns=len(record.turns),
            duration_s=record.duration_s, engine=record.engine,
            steps={k: StepTally(*v) for k, v in sorted(tallies.items())},
            pitfalls=dict(sorted(pitfalls.items())))

    @property
    def when(self) -> datetime:
        """The start time in the local time zone."""
        try:
            return datetime.fromisoformat(self.started_at).astimezone()
        except ValueError:
            return datetime.fromtimestamp(0, UTC)

    def to_json(self) -> dict[str, Any]:
        """JSON form (``voice-sim history --json``)."""
        return {
            "session_dir": self.session_dir, "started_at": self.started_at,
            "persona": self.persona, "persona_title": self.persona_title, "mode": self.mode,
            "status": self.status, "outcome": self.outcome, "score": self.score,
            "calm_score": self.calm_score, "calm_turns": self.calm_turns, "turns": self.turns,
            "duration_s": self.duration_s, "engine": self.engine,
            "steps": {k: {"expected": v.expected, "achieved": v.achieved, "heard": v.heard,
                          "rate": None if v.rate is None else round(v.rate, 3)}
                      for k, v in self.steps.items()},
            "pitfalls": dict(self.pitfalls),
        }


# --- the database ----------------------------------------------------------------------


def history_path(db: str | os.PathLike[str] | None = None) -> Path:
    """The database file: ``db``, else ``VOICE_SIM_HISTORY``, else in the data folder."""
    if db:
        return Path(db).expanduser()
    from voice_sim.paths import data_dir, history_file

    return history_file() or data_dir() / "history.sqlite3"


def _not_ours(path: Path, why: str) -> SessionError:
    return SessionError(f"{path}: not a voice-sim history database ({why}) — move it aside; "
                        "it was left untouched",
                        hint="voice-sim starts a new history there once it is gone, or "
                             "use --db / VOICE_SIM_HISTORY to pick another file")


def _db_error(path: Path, e: sqlite3.Error) -> SessionError:
    """One clear line for a SQLite failure."""
    text = str(e)
    if isinstance(e, sqlite3.OperationalError) and "locked" in text:
        return SessionError(f"{path}: the history database stayed busy for "
                            f"{BUSY_TIMEOUT_S:.0f} s", hint="try again in a moment")
    if isinstance(e, sqlite3.OperationalError) and ("unable to open" in text
                                                    or "readonly" in text):
        return SessionError(f"{path}: cannot open the history database for writing ({text})",
                            hint="check the folder's permissions, or use --db")
    return _not_ours(path, text)


def _check(conn: sqlite3.Connection, path: Path) -> bool:
    """Is this our database (True), or a new empty file (False)? Anything else raises,
    having only read the file."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise SessionError(f"{path}: history schema {version} is newer than this "
                               f"voice-sim understands ({SCHEMA_VERSION})",
                               hint="upgrade voice-sim, or use --db to pick another file")
        if not {"sessions", "steps", "pitfalls"} <= tables:
            raise _not_ours(path, "its tables are missing")
        return True
    if app == 0 and version == 0 and not tables:
        return False
    raise _not_ours(path, f"it holds other data: tables {', '.join(sorted(tables)) or 'none'}"
                    if app == 0 else f"application id {app:#x}")


@contextmanager
def connect(db: str | os.PathLike[str] | None = None, *,
            create: bool = True) -> Iterator[sqlite3.Connection | None]:
    """An open, checked history database (None when it does not exist and ``create``
    is False). Creates the file and its tables when missing or empty."""
    path = history_path(db)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a history database file",
                         hint="name a file, e.g. history.sqlite3")
    if not path.exists():
        if not create:
            yield None
            return
        from voice_sim.paths import DIR_MODE

        try:
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        except OSError as e:
            raise SessionError(f"{path.parent}: cannot create the folder ({e.strerror})",
                               hint="use --db or VOICE_SIM_HISTORY to pick another file") \
                from e
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as e:
        raise _db_error(path, e) from e
    try:
        try:
            # One read transaction: the three reads in _check must see one snapshot,
            # or a process creating the file at this moment looks like foreign data.
            conn.execute("BEGIN")
            try:
                ours = _check(conn, path)
            finally:
                conn.execute("COMMIT")
            if not ours:
                _create(conn, path)
            _set_wal(conn)
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as e:
            raise _db_error(path, e) from e
        yield conn
    finally:
        conn.close()


def _create(conn: sqlite3.Connection, path: Path) -> None:
    # BEGIN IMMEDIATE takes the write lock first; a second process creating the same
    # new file at the same moment waits, then finds the tables made and skips.
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _check(conn, path):
            # One statement at a time: executescript() would commit the transaction.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL needs a moment of exclusive access; under a concurrent first use
    # it can report "locked" even with a busy timeout, so retry briefly.
    for attempt in range(50):
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 49:
                raise
            time.sleep(0.05)


def _store(conn: sqlite3.Connection, s: SessionSummary) -> str:
    """Insert or replace one summary in one transaction; ``added`` or ``updated``."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT id FROM sessions WHERE session_dir = ?",
                           (s.session_dir,)).fetchone()
        values = (s.started_at, s.persona, s.persona_title, s.mode, s.status, s.outcome,
                  s.score, s.calm_score, s.calm_turns, s.turns, s.duration_s, s.engine, now)
        cols = ("started_at, persona, persona_title, mode, status, outcome, score, "
                "calm_score, calm_turns, turns, duration_s, engine, recorded_at")
        if row is None:
            sid = conn.execute(f"INSERT INTO sessions (session_dir, {cols}) VALUES "
                               f"(?, {', '.join('?' * 13)})",
                               (s.session_dir, *values)).lastrowid
        else:
            sid = row[0]
            sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
            conn.execute(f"UPDATE sessions SET {sets} WHERE id = ?", (*values, sid))
            conn.execute("DELETE FROM steps WHERE session_id = ?", (sid,))
            conn.execute("DELETE FROM pitfalls WHERE session_id = ?", (sid,))
        conn.executemany("INSERT INTO steps VALUES (?, ?, ?, ?, ?)",
                         [(sid, k, v.expected, v.achieved, v.heard) for k, v in s.steps.items()])
        conn.executemany("INSERT INTO pitfalls VALUES (?, ?, ?)",
                         [(sid, k, n) for k, n in s.pitfalls.items()])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return "added" if row is None else "updated"


def record_session(record: SessionRecord, *, session_dir: str | os.PathLike[str] | None = None,
                   db: str | os.PathLike[str] | None = None) -> str:
    """Add one session's summary to the history: ``added``, ``updated`` (it was there
    already), or ``empty`` (no turn was answered: nothing to learn from, not stored)."""
    summary = SessionSummary.from_record(record, session_dir)
    if summary.turns == 0:
        return "empty"
    path = history_path(db)
    with connect(db) as conn:
        assert conn is not None
        try:
            return _store(conn, summary)
        except sqlite3.Error as e:
            raise _db_error(path, e) from e


def load_history(db: str | os.PathLike[str] | None = None, *,
                 persona: str | None = None) -> list[SessionSummary]:
    """Every recorded session, oldest first (only ``persona``'s when given)."""
    path = history_path(db)
    with connect(db, create=False) as conn:
        if conn is None:
            return []
        try:
            return _load(conn, persona)
        except sqlite3.Error as e:
            raise _db_error(path, e) from e


def _load(conn: sqlite3.Connection, persona: str | None) -> list[SessionSummary]:
    where, params = ("WHERE persona = ?", (persona,)) if persona else ("", ())
    rows = conn.execute(
        "SELECT id, session_dir, started_at, persona, persona_title, mode, status, outcome, "
        f"score, calm_score, calm_turns, turns, duration_s, engine FROM sessions {where} "
        "ORDER BY started_at, id", params).fetchall()
    steps: dict[int, dict[str, StepTally]] = {}
    for sid, step, exp, ach, heard in conn.execute(
            "SELECT session_id, step, expected, achieved, heard FROM steps ORDER BY step"):
        steps.setdefault(sid, {})[step] = StepTally(exp, ach, heard)
    pits: dict[int, dict[str, int]] = {}
    for sid, pit, n in conn.execute(
            "SELECT session_id, pitfall, count FROM pitfalls ORDER BY pitfall"):
        pits.setdefault(sid, {})[pit] = n
    return [SessionSummary(session_dir=r[1], started_at=r[2], persona=r[3], persona_title=r[4],
                           mode=r[5], status=r[6], outcome=r[7], score=r[8], calm_score=r[9],
                           calm_turns=r[10], turns=r[11], duration_s=r[12], engine=r[13],
                           steps=steps.get(r[0], {}), pitfalls=pits.get(r[0], {}))
            for r in rows]


# --- import ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """What ``history import`` did."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    """(folder, why) for folders that were not imported."""


def session_folders(dirs: Sequence[str | os.PathLike[str]]) -> tuple[list[Path],
                                                                     list[tuple[str, str]]]:
    """The session folders named: each DIR that holds a ``session.json``, or the ones
    directly inside a DIR that does (a sessions folder). Returns (folders, problems)."""
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for d in map(Path, dirs):
        if not d.exists():
            problems.append((str(d), "no such folder — check the path"))
        elif not d.is_dir():
            problems.append((str(d), "not a folder — name a session folder, or a folder of "
                             "them"))
        elif (d / "session.json").is_file():
            found.append(d)
        else:
            inner = sorted(p for p in d.iterdir() if (p / "session.json").is_file())
            if inner:
                found += inner
            else:
                problems.append((str(d), "no session.json in it or in its subfolders — name "
                                 "a folder written by voice-sim practice, run or demo"))
    return found, problems


def import_sessions(dirs: Sequence[str | os.PathLike[str]],
                    db: str | os.PathLike[str] | None = None) -> ImportResult:
    """Add existing session folders to the history (idempotent)."""
    folders, skipped = session_folders(dirs)
    added: list[str] = []
    updated: list[str] = []
    path = history_path(db)
    with connect(db) as conn:
        assert conn is not None
        for f in folders:
            try:
                summary = SessionSummary.from_record(load_session(f), f)
            except VoiceSimError as e:
                skipped.append((str(f), e.line()))
                continue
            if summary.turns == 0:
                skipped.append((str(f), "no answered turn"))
                continue
            try:
                (added if _store(conn, summary) == "added" else updated).append(str(f))
            except sqlite3.Error as e:
                raise _db_error(path, e) from e
    return ImportResult(tuple(added), tuple(updated), tuple(skipped))


# --- showing progress ------------------------------------------------------------------


def progress(sessions: Sequence[SessionSummary]) -> dict[str, Any]:
    """Series over the sessions (oldest first): score, calm score and each step's rate
    (None where the step was not expected in that session)."""
    ids = [s for s in STEP_IDS if any(s in x.steps and x.steps[s].expected for x in sessions)]
    return {
        "started_at": [s.started_at for s in sessions],
        "score": [s.score for s in sessions],
        "calm_score": [s.calm_score for s in sessions],
        "steps": {k: [None if (t := s.steps.get(k)) is None or t.rate is None
                      else round(t.rate, 3) for s in sessions] for k in ids},
        "pitfalls": {k: sum(s.pitfalls.get(k, 0) for s in sessions) for k in PITFALL_IDS
                     if any(k in s.pitfalls for s in sessions)},
    }


def _first_last(values: Sequence[float | None], pct: bool = False) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return ""
    f = (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:.0f}")
    return f"{f(got[0]):>5} → {f(got[-1]):<5}"


def format_history(sessions: Sequence[SessionSummary], db: Path, persona: str | None = None,
                   width: int = 80) -> str:
    """The terminal view: sparklines of score, calm score and each step, then the
    latest sessions. Fits ``width`` columns."""
    from voice_sim.plots import sparkline

    who = f" with {persona}" if persona else ""
    if not sessions:
        return f"No sessions recorded yet{who}.\nDatabase: {db}"
    p = progress(sessions)
    n = min(len(sessions), SPARK_MAX)
    first, last = sessions[0].when, sessions[-1].when
    out = [f"History: {len(sessions)} session{'s' * (len(sessions) != 1)}{who}, "
           f"{first:%Y-%m-%d} → {last:%Y-%m-%d}",
           f"Database: {db}", ""]
    span = f"last {n}, oldest → newest" if n < len(sessions) else "oldest → newest"
    out.append(f"{'':20}{span:<{SPARK_MAX + 2}}first → last")

    def row(label: str, values: Sequence[float | None], lo: float, hi: float,
            pct: bool = False) -> str:
        tail = list(values)[-n:]
        return (f"{label[:19]:<20}{sparkline(tail, lo, hi):<{SPARK_MAX + 2}}"
                f"{_first_last(tail, pct)}").rstrip()

    out.append(row("overall score", p["score"], 0, 100))
    out.append(row("calm score", p["calm_score"], 0, 100))
    if p["steps"]:
        out.append("Steps (share of the turns that expected it where it was heard):")
        for k, vals in p["steps"].items():
            out.append(row(f"  {k}", vals, 0, 1, pct=True))
    if p["pitfalls"]:
        out.append("Pitfalls heard (all sessions): " + ", ".join(
            f"{k} {v}" for k, v in p["pitfalls"].items()))
    out.append("")
    out.append("Latest sessions:")
    for s in sessions[-8:][::-1]:
        calm = "-" if s.calm_score is None else f"{s.calm_score:.0f}"
        out.append(f"  {s.when:%Y-%m-%d %H:%M}  {s.persona[:22]:<22} "
                   f"{(s.outcome or s.status)[:10]:<10} score {s.score:>3.0f}  calm {calm:>3}"
                   f"  {s.mode[:8]}".rstrip())
    return "\n".join(line[:width] if not line.startswith("Database:") else line
                     for line in out)


def render_history(sessions: Sequence[SessionSummary], persona: str | None = None) -> str:
    """The history page: score and calm score over time, each step's rate over time,
    and the sessions with links to their reports. Self-contained like a report."""
    from voice_sim.plots import COLORS, Series, line_chart
    from voice_sim.report import STYLE, page

    who = f" — {persona}" if persona else ""
    if not sessions:
        return page(f"voice-sim history{who}", f"<main><h1>History{escape(who)}</h1>"
                    "<p>No sessions recorded yet.</p></main>")
    p = progress(sessions)
    days = [f"{s.when:%m-%d}" for s in sessions]
    # Dates label the x axis; several sessions on one day get their time as well.
    labels = [d if days.count(d) == 1 else f"{d} {s.when:%H:%M}" for d, s in zip(days, sessions,
                                                                                strict=True)]
    notes = tuple(f"{s.when:%Y-%m-%d %H:%M}, {s.persona}, {s.outcome or s.status}"
                  for s in sessions)
    charts = [line_chart(labels, [
        Series("overall score", tuple(p["score"]), COLORS["line"], notes),
        Series("calm score", tuple(p["calm_score"]), COLORS["calm"], notes)],
        title="Score over time", unit="/100", y_range=(0, 100), cls="scores")]
    for k, vals in p["steps"].items():
        pct = tuple(None if v is None else 100 * v for v in vals)
        charts.append(line_chart(labels, [Series(k, pct, COLORS["step"], notes)],
                                 title=f"{k}: % of expected turns where heard",
                                 y_range=(0, 100), cls="step", height=170))
    rows = []
    for s in reversed(sessions):
        report = Path(s.session_dir) / "report.html"
        link = (f'<a href="{escape(report.as_uri(), quote=True)}">report</a>'
                if report.is_file() else "")
        rows.append(f"<tr><td>{s.when:%Y-%m-%d %H:%M}</td><td>{escape(s.persona_title)}</td>"
                    f"<td>{escape(s.outcome or s.status)}</td><td>{s.score:.0f}</td>"
                    f"<td>{'-' if s.calm_score is None else f'{s.calm_score:.0f}'}</td>"
                    f"<td>{s.turns}</td><td>{escape(s.mode)}</td><td>{link}</td></tr>")
    body = (f'<header><div class="inner"><h1>Your progress{escape(who)}</h1>'
            f'<div class="meta">{len(sessions)} sessions, {sessions[0].when:%Y-%m-%d} → '
            f'{sessions[-1].when:%Y-%m-%d}</div></div></header><main>'
            '<h2>Over time</h2><div class="charts">'
            + "".join(f'<div class="card">{c}</div>' for c in charts)
            + '</div><h2>Sessions</h2><div class="card"><table class="steps"><tr>'
            "<th>when</th><th>persona</th><th>outcome</th><th>score</th><th>calm</th>"
            "<th>turns</th><th>mode</th><th></th></tr>" + "".join(rows)
            + "</table></div></main>")
    return page(f"voice-sim history{who}", body, STYLE)


# --- commands --------------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    """``voice-sim history [--persona ID] [--json] [--html FILE] [--db PATH]``."""
    db = getattr(args, "db", None)
    path = history_path(db)
    sessions = load_history(db, persona=args.persona)
    if args.html:
        from voice_sim.report import write_text_atomic

        out = write_text_atomic(Path(args.html), render_history(sessions, args.persona))
        print(f"History page written: {out}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"db": str(path), "persona": args.persona,
                          "sessions": [s.to_json() for s in sessions],
                          "progress": progress(sessions)}, indent=2, ensure_ascii=False))
    elif not args.html:
        print(format_history(sessions, path, args.persona))
    return 0


def cmd_history_import(args: argparse.Namespace) -> int:
    """``voice-sim history import DIR…``: add existing session folders."""
    db = getattr(args, "db", None)
    result = import_sessions(args.dirs, db)
    for folder, why in result.skipped:
        print(f"voice-sim: skipped {folder}: {why}", file=sys.stderr)
    total = len(result.added) + len(result.updated)
    print(f"Imported {total} session{'s' * (total != 1)} ({len(result.added)} new, "
          f"{len(result.updated)} already in the history) into {history_path(db)}")
    return 1 if result.skipped else 0
