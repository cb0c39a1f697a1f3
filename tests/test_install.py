"""Installed as a user installs it: a wheel, a fresh virtualenv, another folder.

The wheel is built once, from a copy of the sources (the checkout gets no ``build/``),
then ``pip install WHEEL[whisper]`` puts it into a new virtualenv outside the checkout
and resolves every dependency from the wheel's own metadata. From a folder that is not
the checkout, ``voice-sim personas`` must list the shipped personas (from inside the
installed package) and a persona of the user's own, and ``voice-sim demo --json`` must
play a whole call.

The dependencies are not unpacked again (that was most of two minutes, with numba
compiling librosa's kernels anew): the new virtualenv sees a folder that exposes, from
the environment running the tests, exactly the distributions the wheel's
``Requires-Dist`` (with the ``whisper`` extra) pulls in, transitively — nothing else,
not this checkout's editable install, not the test tools. pip still resolves the
wheel's requirements against what it sees (and must install nothing but the wheel),
so a dependency missing from the metadata fails the run as it would for a user: it is
not there to import.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "voice_sim", "personas")
"""What a wheel is built from (everything else in the checkout is for developers)."""


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
         ) -> subprocess.CompletedProcess[str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    # Where the minutes go (shown with -s, or beside a failure).
    print(f"{time.perf_counter() - t0:6.1f} s  {Path(argv[0]).name} {' '.join(argv[1:4])}")
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _requires(wheel: Path) -> list[str]:
    """The wheel's own ``Requires-Dist`` lines."""
    with zipfile.ZipFile(wheel) as z:
        [name] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(z.read(name)).get_all("Requires-Dist") or []


def dependency_view(requires: list[str], extras: set[str], into: Path) -> list[str]:
    """Expose in ``into`` (symlinks into this environment) exactly the distributions
    ``requires`` needs with ``extras``, transitively; return their names. Raises when
    one is not installed here or not in the version asked for."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    here = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
    needed: dict[str, set[str]] = {}
    todo = [(Requirement(r), extras) for r in requires]
    while todo:
        req, wanted = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e})
                                              for e in {"", *wanted}):
            continue
        name = canonicalize_name(req.name)
        dist = here.get(name)
        assert dist is not None and req.specifier.contains(dist.version, prereleases=True), (
            f"{req} is not installed in {sys.prefix}: run scripts/setup")
        more = set(req.extras) - needed.get(name, set())
        if name in needed and not more:
            continue
        needed.setdefault(name, set()).update(req.extras)
        todo += [(Requirement(r), needed[name]) for r in dist.requires or []]

    # Which distributions own each top-level name (package dirs, modules, .libs,
    # __pycache__): a name only needed distributions own is linked whole, a shared one
    # file by file.
    owners: dict[tuple[Path, str], set[str]] = {}
    for name, dist in here.items():
        for f in dist.files or []:
            if f.parts[0] != "..":
                owners.setdefault((Path(dist.locate_file("")), f.parts[0]), set()).add(name)
    into.mkdir()
    for name in needed:
        dist = here[name]
        site = Path(dist.locate_file(""))
        assert dist.files, f"{name}: no RECORD of its files"
        for f in dist.files:
            if f.parts[0] == ".." or not (site / f).exists():
                continue  # scripts in bin/, and .pyc files never written
            top = f.parts[0]
            whole = owners[(site, top)] <= needed.keys()
            dest = into / (top if whole else f)
            if dest.exists() or dest.is_symlink():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(site / (top if whole else f))
    return sorted(needed)



@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VOICE_SIM_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(VOICE_SIM_DATA=str(tmp_path / "data"), VOICE_SIM_CACHE=str(tmp_path / "cache"))

    # -v: pip shows the build backend's own output (its deprecation warnings) only then.
    built = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w",
                  str(tmp_path / "dist"), str(src)], tmp_path, env)
    # The metadata is current: the build backend warns about nothing.
    log = built.stdout + built.stderr
    assert "DeprecationWarning" not in log and "BuildBackendWarning" not in log, log
    assert "deprecated" not in log, log
    [wheel] = (tmp_path / "dist").glob("voice_sim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (ROOT / "personas").glob("*.yaml"))
    assert {f"voice_sim/personas/{n}" for n in shipped} <= names
    assert "voice_sim/persona.schema.json" in names and "voice_sim/rubric.yaml" in names
    # The content scorer's and the calm verdict's fitted data: without them every score fails.
    assert {"voice_sim/rubric_model.npz", "voice_sim/rubric_vectors.npz",
            "voice_sim/rubric_adapter.npz", "voice_sim/data/calm_model.json"} <= names
    assert not [n for n in names if "fake_audio" in n]  # a test double, not shipped
    assert {"voice_sim/web/call.js", "voice_sim/web/mic-worklet.js",
            "voice_sim/web/app.css"} <= names  # `voice-sim serve` needs no network
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1e3:.0f} kB, {len(names)} files")

    venv = tmp_path / "venv"
    # No pip of its own (ensurepip was a tenth of the test): this pip installs into it.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py, cli = venv / "bin" / "python", venv / "bin" / "voice-sim"
    deps = dependency_view(_requires(wheel), {"whisper"}, tmp_path / "deps")
    assert {"librosa", "faster-whisper", "pyttsx3", "numpy"} <= set(deps), deps
    assert not {"voice-sim", "pytest", "hypothesis", "mypy"} & set(deps), deps
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "voice-sim-deps.pth").write_text(f"{tmp_path / 'deps'}\n", encoding="utf-8")
    installed = _run([sys.executable, "-m", "pip", "--python", str(py), "install",
                      f"{wheel}[whisper]"], tmp_path, env, timeout=900).stdout
    # pip resolved every requirement against the view: it installed the wheel alone.
    assert "Successfully installed voice-sim-" in installed, installed
    assert "Collecting" not in installed, installed

    # Another folder, holding a persona of the user's own in ./personas (as today).
    home = tmp_path / "elsewhere"
    (home / "personas").mkdir(parents=True)
    mine = (ROOT / "personas" / "double-billing.yaml").read_text(encoding="utf-8")
    (home / "personas" / "my-caller.yaml").write_text(
        mine.replace("id: double-billing", "id: my-caller"), encoding="utf-8")
    where = _run([str(py), "-c", "import sys, voice_sim; print(voice_sim.__file__); "
                  "print(*sys.path, sep='\\n')"], home, env).stdout.splitlines()
    assert Path(where[0]).is_relative_to(venv), where
    # Nothing of the checkout is importable: not its folder, not its editable install.
    assert not [p for p in where[1:] if p and Path(p).resolve().is_relative_to(ROOT)], where

    listed = _run([str(cli), "personas"], home, env).stdout
    assert "No personas found" not in listed
    rows = {line.split()[0]: line.split()[-1] for line in listed.splitlines()[1:]}
    assert set(rows) == {p.removesuffix(".yaml") for p in shipped} | {"my-caller"}, listed
    for pid, path in rows.items():
        # (shown relative to the folder when inside it)
        assert (home / path).is_relative_to(home if pid == "my-caller" else venv), (pid, path)

    demo = _run([str(cli), "demo", "--json", "--out", str(tmp_path / "sessions")], home, env)
    rec = json.loads(demo.stdout)
    assert rec["status"] == "complete" and rec["outcome"] == "resolved", rec["outcome"]
    assert Path(rec["persona_path"]).is_relative_to(venv)
    assert rec["turns"] and all(t["transcript"].strip() for t in rec["turns"])
    assert (Path(rec["session_dir"]) / "report.html").is_file()

    # The scorer and doctor work from the installed package alone (no scripts/, no tests/).
    reply = _run([str(cli), "check-reply", "--json", "I totally get why you're fed up."],
                 home, env)
    assert [f["id"] for f in json.loads(reply.stdout)["steps"]] == ["empathize"], reply.stdout
    doctor = _run([str(cli), "doctor", "--json"], home, env, timeout=300)
    checks = {c["name"]: c["status"] for c in json.loads(doctor.stdout)["checks"]}
    assert checks["content scorer"] == checks["calm model"] == "ok", checks
