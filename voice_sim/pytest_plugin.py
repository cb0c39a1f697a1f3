"""pytest plugin: persona calls under test, in Python or as ``*.call.yaml`` files.

Registered through the ``pytest11`` entry point, so installing voice-sim is enough.

* Fixtures: ``voice_sim_call(persona, answers, engine=None, baseline=None, …)`` runs a
  call headless on prerecorded answers and returns a
  :class:`~voice_sim.callspec.CallResult`; ``voice_sim_engine`` is the loaded speech
  engine. The ``assert_*`` helpers of :mod:`voice_sim.callspec` are re-exported here.
* Call specs: every ``*.call.yaml`` file is collected as one test item; a failure
  lists each unmet expectation with its line in the spec and what was heard.
* The engine: ``--voice-sim-engine`` on the command line, else the spec's ``engine:``,
  else the ini option ``voice_sim_engine``, else ``auto``. Every result and report
  names the engine used; a missing model skips the test with the reason.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from voice_sim.callspec import (
    SPEC_SUFFIX,
    CallResult,
    CallSpec,
    CallSpecError,
    Failure,
    assert_agitated,
    assert_calm,
    assert_line,
    assert_max_score,
    assert_min_score,
    assert_no_pitfall,
    assert_no_step,
    assert_outcome,
    assert_pitfall,
    assert_step,
    evaluate,
    load_spec,
)
from voice_sim.engines import ENGINE_NAMES
from voice_sim.errors import ModelError, VoiceSimError
from voice_sim.record import SessionRecord, TurnRecord

if TYPE_CHECKING:
    from voice_sim.engines import Engine

__all__ = [
    "CallResult",
    "SessionRecord",
    "TurnRecord",
    "assert_agitated",
    "assert_calm",
    "assert_line",
    "assert_max_score",
    "assert_min_score",
    "assert_no_pitfall",
    "assert_no_step",
    "assert_outcome",
    "assert_pitfall",
    "assert_step",
]

_RESULTS = pytest.StashKey[dict[tuple[Any, ...], CallResult]]()
_SESSIONS = pytest.StashKey[Path]()


# --- options ------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--voice-sim-engine``, ``--voice-sim-model``, ``--voice-sim-sessions`` and their
    ini twins."""
    group = parser.getgroup("voice-sim", "voice-sim persona calls")
    group.addoption("--voice-sim-engine", choices=ENGINE_NAMES, default=None,
                    help="speech engine for call tests (overrides call specs and the ini "
                         "option voice_sim_engine; default auto)")
    group.addoption("--voice-sim-model", metavar="PATH", default=None,
                    help="speech model folder for that engine")
    group.addoption("--voice-sim-sessions", metavar="DIR", default=None,
                    help="keep the session folders of call tests here (default: pytest's "
                         "temporary folder)")
    parser.addini("voice_sim_engine", "speech engine for call tests: auto, vosk or whisper",
                  default="")
    parser.addini("voice_sim_model", "speech model folder for call tests", default="")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers call tests carry, and the per-run result cache."""
    config.addinivalue_line("markers", "voice_sim: a persona call run on prerecorded answers")
    known = " ".join(config.getini("markers"))
    if "model:" not in known:
        config.addinivalue_line("markers", "model: needs a speech model; skipped with the "
                                "reason when none is found")
    if "slow:" not in known:
        config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.stash[_RESULTS] = {}


def pytest_report_header(config: pytest.Config) -> str:
    """Name the engine call tests use by default, so a report always says which."""
    from voice_sim.engines import select_engine

    name, model = _engine_choice(config)
    try:
        kind, folder = select_engine(name, model)
    except VoiceSimError as e:
        return f"voice-sim: engine {name}: unavailable, call tests will be skipped ({e.line()})"
    via = f"{name} -> {kind}" if name != kind else kind
    return f"voice-sim: call tests use engine {via} ({folder}) unless a spec names another"


def _engine_choice(config: pytest.Config, engine: str | None = None,
                   model: str | None = None) -> tuple[str, str | None]:
    """(engine name, model folder): the command line, else what the spec or test asks
    for, else the ini options, else auto."""
    name = (config.getoption("voice_sim_engine") or engine
            or str(config.getini("voice_sim_engine") or "") or "auto")
    model = (config.getoption("voice_sim_model") or model
             or str(config.getini("voice_sim_model") or "") or None)
    if name not in ENGINE_NAMES:
        raise pytest.UsageError(f"voice_sim_engine = {name!r}: choose "
                                f"{', '.join(ENGINE_NAMES[:-1])} or {ENGINE_NAMES[-1]}")
    return name, model


def _sessions_root(config: pytest.Config) -> Path:
    """Where call tests write their session folders (one folder per pytest run)."""
    if _SESSIONS not in config.stash:
        given = config.getoption("voice_sim_sessions")
        if given:
            root = Path(given)
            root.mkdir(parents=True, exist_ok=True)
        else:
            factory = getattr(config, "_tmp_path_factory", None)
            root = (factory.mktemp("voice-sim-sessions", numbered=True) if factory
                    else Path(tempfile.mkdtemp(prefix="voice-sim-sessions-")))
        config.stash[_SESSIONS] = root
    return config.stash[_SESSIONS]


def _load_engine(name: str, model: str | None) -> Engine:
    """The engine, or a skip naming what is missing (never a silent pass)."""
    from voice_sim.engines import get_engine

    try:
        return get_engine(name, model)
    except ModelError as e:
        _skip(name, e)


def _skip(engine: str, e: ModelError) -> NoReturn:
    """Skip the test with the reason; reported at the test's own location (the spec file
    or the test function), not inside this plugin."""
    raise pytest.skip.Exception(f"voice-sim engine {engine!r} unavailable: {e.line()}",
                                _use_item_location=True)


def _stamp(path: Path | None) -> tuple[Any, ...]:
    """Names, sizes and times of the files a run reads: an edit means a new run."""
    if path is None or not path.exists():
        return ()  # the run itself reports the missing file or folder
    if path.is_dir():
        return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                     for p in sorted(path.iterdir()) if p.is_file())
    st = path.stat()
    return (st.st_size, st.st_mtime_ns)


def _run_cached(config: pytest.Config, persona: str, answers: Path, engine: str,
                model: str | None, baseline: Path | None, rubric: Path | None) -> CallResult:
    """Run a call, once per pytest run for the same persona, audio, engine and baseline:
    a spec and a Python test on the same answers share one run."""
    from voice_sim.callspec import run_answers
    from voice_sim.engines import select_engine

    try:
        # What ``auto`` stands for here, so "auto" and "whisper" share a run.
        kind, folder = select_engine(engine, model)
    except ModelError as e:
        _skip(engine, e)
    answers, baseline = answers.resolve(), baseline.resolve() if baseline else None
    key = (persona, str(answers), _stamp(answers), kind, str(folder.resolve()),
           str(baseline), _stamp(baseline), str(rubric), _stamp(rubric))
    cache = config.stash[_RESULTS]
    hit = cache.get(key)
    if hit is None:
        eng = _load_engine(kind, str(folder))
        try:
            hit = run_answers(persona, answers, engine=eng, baseline=baseline, rubric=rubric,
                              out_root=_sessions_root(config))
        except ModelError as e:
            _skip(engine, e)
        cache[key] = hit
    return hit


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def voice_sim_engine(request: pytest.FixtureRequest) -> Engine:
    """The speech engine call tests use (``--voice-sim-engine`` / ini
    ``voice_sim_engine``, default auto); the test is skipped with the reason when its
    model cannot be found."""
    name, model = _engine_choice(request.config)
    return _load_engine(name, model)


@pytest.fixture
def voice_sim_call(request: pytest.FixtureRequest) -> Callable[..., CallResult]:
    """Run a persona headless against a folder of answer audio:
    ``voice_sim_call(persona, answers, engine=None, baseline=None, model=None,
    rubric=None) -> CallResult``.

    Relative paths are taken from the test file's folder. ``engine=None`` uses the
    configured engine; a missing model skips the test with the reason.
    """
    here = Path(str(request.node.path)).parent
    config = request.config

    def run(persona: str | os.PathLike[str], answers: str | os.PathLike[str], *,
            engine: str | None = None, baseline: str | os.PathLike[str] | None = None,
            model: str | None = None,
            rubric: str | os.PathLike[str] | None = None) -> CallResult:
        chosen, chosen_model = _engine_choice(config, engine, model)
        text = os.fspath(persona)
        is_path = "/" in text or text.endswith((".yaml", ".yml"))
        return _run_cached(config, str((here / text).resolve()) if is_path else text,
                           here / answers, chosen, chosen_model,
                           None if baseline is None else here / baseline,
                           None if rubric is None else here / rubric)

    return run


# --- call specs as test items ---------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect ``*.call.yaml`` files."""
    if file_path.name.endswith(SPEC_SUFFIX):
        return CallSpecFile.from_parent(parent, path=file_path)
    return None


class CallSpecFile(pytest.File):
    """One call spec file: one test item."""

    def collect(self) -> Iterator[pytest.Item]:
        """Yield the call; a spec with problems still yields an item, which fails with
        them (one broken spec must not stop a whole run at collection)."""
        name = self.path.name.removesuffix(SPEC_SUFFIX)
        try:
            spec: CallSpec | CallSpecError = load_spec(self.path)
        except CallSpecError as e:
            spec = e
        item = CallSpecItem.from_parent(self, name=name, spec=spec)
        for mark in ("voice_sim", "model", "slow"):
            item.add_marker(mark)
        yield item


class CallFailed(Exception):
    """Expectations of a call spec that the call did not meet."""

    def __init__(self, result: CallResult, failures: list[Failure]) -> None:
        super().__init__(f"{len(failures)} expectation(s) not met")
        self.result = result
        self.failures = failures


class CallSpecItem(pytest.Item):
    """Run the spec's call and compare it with the expectations."""

    def __init__(self, *, spec: CallSpec | CallSpecError, **kw: Any) -> None:
        super().__init__(**kw)
        self.spec = spec

    def runtest(self) -> None:
        """Run (or reuse) the call, then evaluate every expectation."""
        if isinstance(self.spec, CallSpecError):
            raise self.spec
        spec = self.spec
        engine, model = _engine_choice(self.config, spec.engine, spec.model)
        result = _run_cached(self.config, spec.persona, spec.answers, engine, model,
                             spec.baseline, spec.rubric)
        self.user_properties.append(("voice_sim_engine", f"{result.engine} ({result.model})"))
        self.user_properties.append(("voice_sim_session", str(result.session_dir)))
        failures = evaluate(spec, result)
        if failures:
            raise CallFailed(result, failures)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        """A report a trainer can read: each unmet expectation, what was heard."""
        e = excinfo.value
        if isinstance(e, CallSpecError):
            return "invalid call spec:\n" + "\n".join(
                f"  {p.line_text()}" for p in e.problems)
        if isinstance(e, CallFailed):
            r = e.result
            lines = [f"call {self.name}: {len(e.failures)} expectation"
                     f"{'s' if len(e.failures) != 1 else ''} not met "
                     f"(persona {r.persona}, engine {r.engine}, outcome {r.outcome}, "
                     f"score {r.score:g})"]
            lines += [f"  {f.text()}" for f in e.failures]
            lines.append("  what was heard:")
            for t in r.turns:
                found = ", ".join([*t.steps, *t.pitfalls]) or "nothing"
                calm = "calm" if t.calm else "not calm"
                lines.append(f"    turn {t.index} ({t.line}): \u201c{t.transcript}\u201d "
                             f"— {found}; {calm}")
            lines.append(f"  session folder: {r.session_dir}")
            return "\n".join(lines)
        if isinstance(e, VoiceSimError):
            return f"voice-sim: {e.line()}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the item comes from, for pytest's report."""
        return self.path, 0, f"call spec: {self.name}"
