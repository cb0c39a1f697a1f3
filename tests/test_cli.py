"""The command line: version, help without heavy imports, and the one error boundary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from voice_sim import __version__, cli

HEAVY = ("numpy", "librosa", "soundfile", "sounddevice", "soxr", "vosk", "faster_whisper",
         "ctranslate2", "pyttsx3", "scipy", "numba", "jsonschema")
VOICE_SIM = Path(sys.executable).parent / "voice-sim"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd=cwd)


def test_version_from_the_console_script_and_python_m() -> None:
    if not VOICE_SIM.exists():
        pytest.skip(f"console script not installed at {VOICE_SIM} (pip install -e .)")
    for cmd in ([str(VOICE_SIM), "--version"], [sys.executable, "-m", "voice_sim", "--version"]):
        r = _run(*cmd)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"voice-sim {__version__}"


def test_help_lists_commands_without_importing_heavy_libraries() -> None:
    # Every command's --help too: parsing must never import what a command runs on.
    code = f"""
import sys
from voice_sim import cli
commands = [" ".join(c.words) for c in cli.commands()]
for argv in [["--help"], *[[*c.split(), "--help"] for c in commands]]:
    try:
        cli.main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
print(",".join(commands))
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    r = _run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    commands, heavy = r.stdout.splitlines()[-2:]
    assert {"doctor", "devices", "voices", "say", "persona check", "history import",
            "models fetch", "fixtures make"} <= set(commands.split(","))
    assert heavy == ""


def test_commands_is_the_tree_argparse_parses(capsys: pytest.CaptureFixture[str]) -> None:
    """What :func:`cli.commands` lists is what the parser takes: each group's help
    names exactly its listed actions, and each command runs what it says."""
    parser = cli.build_parser()
    listed = cli.commands(parser)
    assert len({c.words for c in listed}) == len(listed) > 20
    for group in [(), *[c.words for c in listed if c.target == cli.GROUP_HELP]]:
        children = {c.words[-1] for c in listed if c.words[:-1] == group and c.words != group}
        if not group:
            parser.print_help()
        else:
            assert cli.main(list(group)) == 0  # a group alone prints its help
        shown = capsys.readouterr().out
        assert children and all(f"    {name}" in shown for name in children), (group, shown)
    for c in listed:
        if c.target != cli.GROUP_HELP:
            assert ":" in c.target and c.arguments[0].dest == "help", c
            assert c.parser.get_default("_target") == c.target


def test_help_text() -> None:
    r = _run(sys.executable, "-m", "voice_sim", "--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: voice-sim")
    for command in ("doctor", "devices", "voices", "say"):
        assert f"    {command}" in r.stdout


def test_import_time_of_help_stays_small() -> None:
    # -X importtime lists every module imported: none of the heavy ones may appear.
    r = _run(sys.executable, "-X", "importtime", "-m", "voice_sim", "--help")
    assert r.returncode == 0
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "voice_sim.cli" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY}


def test_no_command_prints_help() -> None:
    r = _run(sys.executable, "-m", "voice_sim")
    assert r.returncode == 0 and r.stdout.startswith("usage: voice-sim")


def test_a_user_error_is_one_line_exit_2_no_traceback(tmp_path: Path) -> None:
    r = _run(sys.executable, "-m", "voice_sim", "say", "   ", "--out", "x.wav", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == ("voice-sim: error: nothing to say: the text is empty ('   ') — "
                        "give the line some words\n")


def test_the_error_boundary_in_process(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["say", "hi", "--pitch", "120", "--out", str(tmp_path / "x.wav")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "voice-sim: error: voice pitch 120 is out of range — use a whole number " \
                  "0-99 (50 = normal)\n"


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from voice_sim import speak

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(speak, "cmd_voices", interrupted)
    assert cli.main(["voices"]) == 130
    assert capsys.readouterr().err == "voice-sim: interrupted\n"


def test_bad_arguments_are_argparse_errors_not_tracebacks() -> None:
    for args in (["no-such-command"], ["say"], ["say", "hi", "--rate", "fast"]):
        r = _run(sys.executable, "-m", "voice_sim", *args)
        assert r.returncode == 2, args
        assert "Traceback" not in r.stderr and "error:" in r.stderr


# --- voice-sim doctor ----------------------------------------------------------------


@pytest.mark.slow
def test_doctor_reports_this_machine(tmp_path: Path) -> None:
    import json
    import os

    home = tmp_path / "home"  # no ALSA configuration: the real no-sound-card machine
    home.mkdir()
    r = subprocess.run([sys.executable, "-m", "voice_sim", "doctor", "--json"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": str(home),
                            "VOICE_SIM_CACHE": str(tmp_path / "cache"),
                            "VOICE_SIM_DATA": str(tmp_path / "data")})
    report = json.loads(r.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["text-to-speech"]["status"] == "ok"
    assert "espeak-ng" in checks["text-to-speech"]["detail"]
    assert checks["PortAudio"]["status"] == "ok"
    assert checks["microphone"]["status"] == "warn"
    assert "voice-sim devices" in checks["microphone"]["fix"]
    assert checks["cache folder"] == {"name": "cache folder", "status": "ok",
                                      "detail": str(tmp_path / "cache"), "fix": "",
                                      "essential": False}
    engines_ok = any(c["status"] == "ok" for n, c in checks.items()
                     if n.startswith("speech engine "))
    assert r.returncode == (0 if engines_ok else 1) and report["ok"] == engines_ok


def test_doctor_exits_1_when_no_speech_engine_can_run(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    from voice_sim import doctor, engines

    # Stand-in for a machine with neither faster-whisper nor a Vosk model.
    monkeypatch.setattr(engines, "engine_status", lambda: [
        engines.EngineStatus(n, False, None, f"{n}: not installed — install it")
        for n in ("vosk", "whisper", "auto")])
    monkeypatch.setattr(doctor, "CHECKS", (doctor.check_python, doctor.check_engines))
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok    python: Python 3.")
    assert out[1] == "warn  speech engine vosk: vosk: not installed — install it"
    assert out[4].startswith("FAIL  speech engines: no speech engine can run — pip install")
    assert out[-1] == "Not ready: fix the FAIL lines above (speech engines)."


def test_doctor_fails_on_a_broken_content_scorer(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """Every score needs the rubric's classifier: a damaged install is a FAIL that makes
    doctor exit 1, not "Ready" followed by a failing demo."""
    from voice_sim import doctor, rubric_semantic

    bad = tmp_path / "rubric_model.npz"
    bad.write_bytes(rubric_semantic.MODEL_PATH.read_bytes()[:1000])  # a half-copied file
    monkeypatch.setattr(rubric_semantic, "MODEL_PATH", bad)
    monkeypatch.setattr(rubric_semantic, "_CLASSIFIER", None)
    monkeypatch.setattr(doctor, "CHECKS", (doctor.check_python, doctor.check_content_scorer))
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("FAIL  content scorer: the content scorer's model "
                             "rubric_model.npz is missing or broken"), out
    assert "reinstall voice-sim" in out[1]
    assert out[-1] == "Not ready: fix the FAIL lines above (content scorer)."


@pytest.mark.parametrize(("group", "actions"), [
    ("persona", ("check", "new", "schema", "speak", "record", "graph")),
    ("fixtures", ("make",)),
])
def test_a_group_alone_prints_its_actions(group: str, actions: tuple[str, ...],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([group]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: voice-sim {group} [-h] ACTION")
    for action in actions:
        assert f"    {action}" in out


@pytest.mark.parametrize("value", ["abc", "-5", "0", "inf", "nan"])
def test_a_bad_environment_setting_is_one_line(value: str, tmp_path: Path) -> None:
    import math
    import os
    import struct
    import wave

    wav = tmp_path / "x.wav"
    with wave.open(str(wav), "wb") as w:  # a good file: only the setting is wrong
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 5)))
                               for i in range(8000)))
    env = {**os.environ, "VOICE_SIM_MAX_AUDIO_S": value}
    r = subprocess.run([sys.executable, "-m", "voice_sim", "transcribe", str(wav)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"voice-sim: error: VOICE_SIM_MAX_AUDIO_S={value!r}: not a "
                               "number of seconds"), r.stderr
