"""The sounddevice boundary, through the real PortAudio.

This machine has no sound card. Each PortAudio test runs in a subprocess (so
PortAudio's state never leaks into the test process) whose HOME holds an
``.asoundrc`` defining ALSA ``type file`` devices: a speaker that writes what it plays
to a raw file, and microphones that read what they record from one. An empty HOME is
the real "no audio device" machine. Only argument checks and the device-kind check
(which needs an output-only card, from ``tests/fake_audio.py``) run in process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ASOUNDRC = """
pcm.sim-speaker {{
    type file
    slave.pcm "null"
    file "{out}"
    format "raw"
}}
pcm.sim-mic-a {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{mic}"
    format "raw"
}}
pcm.sim-mic-b {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{mic}"
    format "raw"
}}
"""


def _run(code: str, home: Path, *, env: dict[str, str] | None = None,
         cli: bool = False) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` (or ``voice-sim`` args, with ``cli``) in a fresh process."""
    args = ["-m", "voice_sim", *code.split("\0")] if cli else ["-c", textwrap.dedent(code)]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": str(home), **(env or {})})


@pytest.fixture
def no_devices(tmp_path: Path) -> Path:
    """A HOME with no ALSA configuration: PortAudio finds nothing here."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def sim(tmp_path: Path) -> dict[str, Path]:
    """A HOME with the virtual devices, a microphone recording (a chirp) and paths."""
    home = tmp_path / "home"
    home.mkdir()
    out, mic = tmp_path / "speaker.raw", tmp_path / "mic.f32"
    # PortAudio asks for float32, so the raw files hold float32 samples.
    t = np.arange(32_000) / 16_000
    (0.5 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype("<f4").tofile(mic)
    (home / ".asoundrc").write_text(ASOUNDRC.format(out=out, mic=mic))
    return {"home": home, "out": out, "mic": mic}


# --- a machine without sound hardware -------------------------------------------------


def test_devices_command_on_a_machine_without_devices(no_devices: Path) -> None:
    r = _run("devices", no_devices, cli=True)
    assert r.returncode == 0 and r.stderr == ""
    assert "No audio devices found" in r.stdout and "voice-sim doctor" in r.stdout
    r = _run("devices\0--json", no_devices, cli=True)
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_no_microphone_or_speaker_is_one_clear_error(no_devices: Path) -> None:
    r = _run("""
        from voice_sim import devices
        from voice_sim.errors import DeviceError
        for call in (lambda: devices.record(1.0), lambda: devices.play([0.1] * 100, 16000),
                     lambda: devices.resolve_device(None, "input")):
            try:
                call()
            except DeviceError as e:
                print(e.line())
    """, no_devices)
    assert r.returncode == 0, r.stderr
    mic, speaker, resolve = r.stdout.splitlines()
    assert mic.startswith("no microphone found") and "voice-sim devices" in mic
    assert "voice-sim doctor" in mic
    assert speaker.startswith("no speaker found")
    assert resolve == mic


def test_say_without_a_speaker_exits_2_with_one_line(no_devices: Path, tmp_path: Path) -> None:
    r = _run("say\0Hello.", no_devices, cli=True,
             env={"VOICE_SIM_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 2
    assert r.stderr.startswith("voice-sim: error: no speaker found")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_missing_portaudio_names_the_package_to_install(no_devices: Path) -> None:
    # sounddevice's own loader runs and fails as it does where libportaudio2 is absent.
    r = _run("""
        import ctypes.util
        real = ctypes.util.find_library
        ctypes.util.find_library = lambda name: None if "portaudio" in name else real(name)
        from voice_sim import devices
        from voice_sim.errors import DeviceError
        try:
            devices.list_devices()
        except DeviceError as e:
            print(type(e.__cause__).__name__, "|", e.line())
    """, no_devices)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OSError | the PortAudio library is missing")
    assert "sudo apt-get install libportaudio2" in r.stdout


# --- virtual ALSA devices ----------------------------------------------------------


def test_list_and_resolve_virtual_devices(sim: dict[str, Path]) -> None:
    r = _run("""
        import json
        from voice_sim import devices
        from voice_sim.errors import DeviceError
        found = devices.list_devices()
        out = {"devices": [d.to_json() for d in found], "errors": []}
        idx = {d.name: d.index for d in found}
        out["resolved"] = [
            devices.resolve_device("SIM-MIC-A", "input"),
            devices.resolve_device("mic-b", "input"),
            devices.resolve_device(idx["sim-speaker"], "output"),
            devices.resolve_device(str(idx["sim-mic-b"]), "input"),
            devices.resolve_device(None, "output"),
        ]
        out["index"] = idx
        for spec in ("sim-mic", "usb headset", 99):
            try:
                devices.resolve_device(spec, "input")
            except DeviceError as e:
                out["errors"].append(e.line())
        print(json.dumps(out))
    """, sim["home"])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    idx = out["index"]
    assert set(idx) == {"sim-speaker", "sim-mic-a", "sim-mic-b"}
    assert all(d["hostapi"] == "ALSA" and d["max_input_channels"] > 0 for d in out["devices"])
    assert sum(d["is_default_output"] for d in out["devices"]) == 1
    assert out["resolved"] == [idx["sim-mic-a"], idx["sim-mic-b"], idx["sim-speaker"],
                               idx["sim-mic-b"], None]
    ambiguous, unknown, bad_index = out["errors"]
    assert ambiguous.startswith("microphone 'sim-mic' is ambiguous: it matches 2 devices")
    assert "sim-mic-a" in ambiguous and "sim-mic-b" in ambiguous
    assert unknown.startswith("no microphone matches 'usb headset'")
    assert all(name in unknown for name in idx)
    assert bad_index.startswith("microphone 99 does not exist — choose one of:")


def test_record_reads_the_virtual_microphone_exactly(sim: dict[str, Path]) -> None:
    rec = sim["out"].with_suffix(".rec")
    r = _run("""
        import os
        from voice_sim import devices
        x = devices.record(0.5, device="mic-a", sr=16000)
        print(x.dtype, x.shape)
        x.astype("<f4").tofile(os.environ["REC_OUT"])
    """, sim["home"], env={"REC_OUT": str(rec)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "float32 (8000,)"
    recorded = np.fromfile(rec, dtype="<f4")
    assert np.array_equal(recorded, np.fromfile(sim["mic"], dtype="<f4")[:8000])


def test_play_writes_exactly_the_samples_to_the_virtual_speaker(
        sim: dict[str, Path], tmp_path: Path) -> None:
    sent = (0.3 * np.sin(2 * np.pi * 330 * np.arange(11025) / 22050)).astype("<f4")
    sent.tofile(tmp_path / "tone.f32")
    r = _run("""
        import os
        import numpy as np
        from voice_sim import devices
        devices.play(np.fromfile(os.environ["TONE"], dtype="<f4"), 22050, "sim-speaker")
    """, sim["home"], env={"TONE": str(tmp_path / "tone.f32")})
    assert r.returncode == 0, r.stderr
    played = np.fromfile(sim["out"], dtype="<f4")
    start = int(np.flatnonzero(played)[0]) - 1  # the tone starts at sin(0) = 0
    assert np.array_equal(played[start:start + len(sent)], sent)
    assert not played[start + len(sent):].any()


def test_say_plays_the_rendered_line_on_the_chosen_speaker(
        sim: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    r = _run("say\0I would like to speak to a manager.\0--output-device\0speaker", sim["home"],
             cli=True, env={"VOICE_SIM_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr
    (line,) = [p for p in (cache / "tts").glob("*.wav")]
    expected, sr = sf.read(str(line), dtype="float32")
    assert sr == 22_050
    played = np.fromfile(sim["out"], dtype="<f4")
    start = int(np.flatnonzero(played)[0]) - int(np.flatnonzero(expected)[0])
    assert np.array_equal(played[start:start + len(expected)], expected)


def test_devices_command_lists_the_virtual_devices(sim: dict[str, Path]) -> None:
    r = _run("devices", sim["home"], cli=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all("ALSA" in line for line in lines)
    assert sum("default out" in line for line in lines) == 1
    r = _run("devices\0--json", sim["home"], cli=True)
    names = {d["name"] for d in json.loads(r.stdout)}
    assert names == {"sim-speaker", "sim-mic-a", "sim-mic-b"}


def test_bad_play_and_record_arguments_are_input_errors() -> None:
    from voice_sim import devices
    from voice_sim.errors import InputError

    with pytest.raises(InputError, match="cannot record 0 s"):
        devices.record(0)
    with pytest.raises(InputError, match="cannot play audio of shape"):
        devices.play(np.zeros((2, 2, 2)), 16000)
    with pytest.raises(InputError, match="at 0 Hz"):
        devices.play(np.zeros(10), 0)


def test_a_device_that_refuses_the_rate_gets_resampled_audio(
        sim: dict[str, Path], tmp_path: Path) -> None:
    # Many sound cards only run at their own rate (here 44.1 kHz, the ALSA default):
    # play and record still work, through a resampler.
    sent = (0.3 * np.sin(2 * np.pi * 330 * np.arange(22050) / 22050)).astype("<f4")
    sent.tofile(tmp_path / "tone.f32")
    rec = tmp_path / "rec.f32"
    r = _run("""
        import os
        import numpy as np
        import sounddevice as sd
        from voice_sim import devices

        def only_native(device=None, samplerate=None, **kw):
            if samplerate != sd.query_devices(device)["default_samplerate"]:
                raise sd.PortAudioError("Invalid sample rate [PaErrorCode -9997]")

        sd.check_output_settings = sd.check_input_settings = only_native
        devices.play(np.fromfile(os.environ["TONE"], dtype="<f4"), 22050, "sim-speaker")
        devices.record(0.5, "mic-a", 16000).astype("<f4").tofile(os.environ["REC"])
    """, sim["home"], env={"TONE": str(tmp_path / "tone.f32"), "REC": str(rec)})
    assert r.returncode == 0, r.stderr
    played = np.fromfile(sim["out"], dtype="<f4")
    played = played[np.flatnonzero(played)[0]:]
    assert abs(len(np.trim_zeros(played)) - 44100) < 50  # 1 s at the device's 44.1 kHz
    recorded = np.fromfile(rec, dtype="<f4")
    assert len(recorded) == 8000
    # The mic file is read at 44.1 kHz, then resampled: the chirp arrives 2.76x faster.
    mic = np.fromfile(sim["mic"], dtype="<f4")
    from voice_sim.audio import resample

    expected = resample(mic[:22050], 44100, 16000)[:8000]
    assert np.max(np.abs(recorded[200:-200] - expected[200:-200])) < 1e-3


def test_an_index_of_the_wrong_kind_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # Output-only and input-only hardware, from the project's fake sound card.
    from fake_audio import install

    from voice_sim import devices
    from voice_sim.errors import DeviceError

    install(monkeypatch)
    with pytest.raises(DeviceError, match=r"^device 1 \(Fake Speaker\) is not a microphone "
                                          r"— choose one of: 0: Fake Microphone$"):
        devices.resolve_device(1, "input")
    assert devices.resolve_device(None, "input") is None
    assert devices.resolve_device("speaker", "output") == 1
