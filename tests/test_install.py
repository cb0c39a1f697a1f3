"""Installed as a user installs it: a wheel, a fresh virtualenv, another folder.

The wheel is built from a copy of the sources (the checkout gets no ``build/``), then
installed with its ``whisper`` extra into a new virtualenv outside the checkout, every
dependency resolved from the wheel's own metadata by pip. From a folder that is not
the checkout, ``voice-sim personas`` must list the shipped personas (from inside the
installed package) and a persona of the user's own, and ``voice-sim demo --json`` must
play a whole call. About two minutes: most of it is pip, and numba compiling librosa's
kernels on the demo's first use in a new environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "voice_sim", "personas")
"""What a wheel is built from (everything else in the checkout is for developers)."""


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


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
            "voice_sim/data/calm_model.json"} <= names
    assert not [n for n in names if "fake_audio" in n]  # a test double, not shipped
    assert {"voice_sim/web/call.js", "voice_sim/web/mic-worklet.js",
            "voice_sim/web/app.css"} <= names  # `voice-sim serve` needs no network
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1e3:.0f} kB, {len(names)} files")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    py, cli = venv / "bin" / "python", venv / "bin" / "voice-sim"
    _run([str(py), "-m", "pip", "install", "-q", f"{wheel}[whisper]"], tmp_path, env,
         timeout=900)

    # Another folder, holding a persona of the user's own in ./personas (as today).
    home = tmp_path / "elsewhere"
    (home / "personas").mkdir(parents=True)
    mine = (ROOT / "personas" / "double-billing.yaml").read_text(encoding="utf-8")
    (home / "personas" / "my-caller.yaml").write_text(
        mine.replace("id: double-billing", "id: my-caller"), encoding="utf-8")
    where = _run([str(py), "-c", "import voice_sim; print(voice_sim.__file__)"], home, env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

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
