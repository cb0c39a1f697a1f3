"""The fake sounddevice: device table, callback streams, play/rec, and the answer script."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from fake_audio import FakeDevice, FakeSoundDevice, install, installed

from voice_sim import devices
from voice_sim.audio import SAMPLE_RATE, load_audio
from voice_sim.errors import DeviceError

pytestmark = pytest.mark.audio_device

SPEED = 20.0


@pytest.fixture(scope="module")
def speech(espeak_wav: object) -> np.ndarray:
    return load_audio(espeak_wav("Thank you for waiting, I have your account open."))  # type: ignore[operator]


def test_installed_replaces_the_module_and_restores_it() -> None:
    before = sys.modules.get("sounddevice")
    with installed(speed=SPEED) as fake:
        import sounddevice

        assert sounddevice is fake
        assert devices.load_sounddevice() is fake
    assert sys.modules.get("sounddevice") is before


def test_device_table_drives_the_real_device_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, devices=(FakeDevice("USB Headset Mic", 1, 0),
                                  FakeDevice("Laptop Speakers", 0, 2),
                                  FakeDevice("USB Headset Phones", 0, 2)))
    listed = devices.list_devices()
    assert [d.name for d in listed] == ["USB Headset Mic", "Laptop Speakers",
                                        "USB Headset Phones"]
    assert listed[0].is_default_input and listed[1].is_default_output
    assert devices.resolve_device("headset", "input") == 0
    assert devices.resolve_device("phones", "output") == 2
    with pytest.raises(DeviceError, match="ambiguous"):
        devices.resolve_device("p", "output")
    with pytest.raises(DeviceError, match="no microphone matches 'webcam'"):
        devices.resolve_device("webcam", "input")


def test_query_devices_behaves_like_sounddevice() -> None:
    fake = FakeSoundDevice()
    assert fake.query_devices(kind="input")["name"] == "Fake Microphone"
    assert fake.query_devices("speaker", "output")["index"] == 1
    with pytest.raises(ValueError, match="No input device matching 'speaker'"):
        fake.query_devices("speaker", "input")
    with pytest.raises(ValueError, match="Not an output device"):
        fake.query_devices(0, "output")
    with pytest.raises(fake.PortAudioError):
        fake.query_devices(9)
    assert "Fake Speaker" in repr(fake.query_devices())


def test_play_records_what_came_out_and_when(speech: np.ndarray) -> None:
    with installed(speed=SPEED) as fake:
        devices.play(speech, SAMPLE_RATE)
        devices.play(speech[:8000], SAMPLE_RATE)
    assert len(fake.played) == 2
    first, second = fake.played
    assert np.array_equal(first.samples[:len(speech)], speech)
    assert not first.samples[len(speech):].any()  # only the padding of the last block
    assert first.end_s is not None and second.start_s >= first.end_s - 0.05
    assert first.sound_at is not None and second.started_at > first.sound_at
    assert abs(first.duration_s - len(speech) / SAMPLE_RATE) < 0.03


def test_record_returns_the_scripted_answer(speech: np.ndarray) -> None:
    with installed(speed=SPEED, noise_dbfs=None) as fake:
        fake.add_answer(speech, delay_s=0.5, after_playback=False)
        got = devices.record(len(speech) / SAMPLE_RATE + 1.0)
    lag = int(np.argmax(np.abs(got) > 1e-4)) - int(np.argmax(np.abs(speech) > 1e-4))
    assert abs(lag - 0.5 * SAMPLE_RATE) <= 0.02 * SAMPLE_RATE + 1  # one block of slack
    assert np.allclose(got[lag:lag + len(speech)], speech, atol=1e-6)
    assert fake.answers_left == 0


def test_answers_wait_for_the_persona(speech: np.ndarray) -> None:
    """An answer queued 'after playback' starts only once a line has finished playing."""
    with installed(speed=SPEED) as fake:
        fake.add_answer(speech, delay_s=0.2)
        rec = fake.rec(SAMPLE_RATE // 2, samplerate=SAMPLE_RATE, channels=1, blocking=True)
        assert fake.answers_fed == []  # nothing played yet: the trainee keeps quiet
        assert np.abs(rec).max() < 0.01
        fake.play(speech[:4000], SAMPLE_RATE, blocking=True)
        rec = fake.rec(SAMPLE_RATE, samplerate=SAMPLE_RATE, channels=1, blocking=True)
    (start, _end), = fake.answers_fed
    end = fake.played[0].end_s
    assert start is not None and end is not None and start >= end + 0.2 - 0.03
    assert np.abs(rec).max() > 0.1


def test_an_answer_not_yet_begun_can_be_taken_back(speech: np.ndarray) -> None:
    """A reply that gave way takes back the answer queued for it (bench_latency.py)."""
    with installed(speed=SPEED) as fake:
        fake.add_answer(speech, delay_s=0.0, after_playback=False)
        fake.add_answer(speech[:4000], delay_s=0.2)
        fake.add_answer(speech[:2000], delay_s=0.2)
        assert fake.withdraw_answer() and fake.answers_left == 2
        fake.rec(SAMPLE_RATE // 2, samplerate=SAMPLE_RATE, channels=1, blocking=True)
        assert fake.withdraw_answer() and fake.answers_left == 1  # the first is under way
        assert not fake.withdraw_answer()  # ... and is not taken back
        fake.rec(3 * SAMPLE_RATE, samplerate=SAMPLE_RATE, channels=1, blocking=True)
    (start, end), = fake.answers_fed  # the first, to its end; nothing after it
    assert start is not None and end is not None and fake.answers_left == 0


def test_callback_stream_int16_and_callback_stop() -> None:
    blocks: list[np.ndarray] = []
    done = threading.Event()
    with installed(speed=SPEED, noise_dbfs=-20.0) as fake:

        def cb(indata: np.ndarray, frames: int, t: object, status: object) -> None:
            blocks.append(indata.copy())
            if len(blocks) == 5:
                raise fake.CallbackStop

        s = fake.InputStream(samplerate=SAMPLE_RATE, blocksize=160, channels=1, dtype="int16",
                             callback=cb, finished_callback=done.set)
        s.start()
        assert done.wait(5)
        assert not s.active
    assert len(blocks) == 5 and all(b.shape == (160, 1) and b.dtype == np.int16 for b in blocks)
    # -20 dBFS noise in int16 units: RMS about 3277.
    rms = float(np.sqrt(np.mean(np.concatenate(blocks).astype(float) ** 2)))
    assert 2500 < rms < 4200


def test_a_failing_callback_aborts_its_stream() -> None:
    done = threading.Event()
    with installed(speed=SPEED) as fake:

        def cb(outdata: np.ndarray, frames: int, t: object, status: object) -> None:
            raise KeyboardInterrupt("boom")

        s = fake.OutputStream(samplerate=SAMPLE_RATE, channels=1, callback=cb,
                              finished_callback=done.set)
        s.start()
        assert done.wait(5)
    assert isinstance(fake.callback_errors[0], KeyboardInterrupt)
    assert not s.active


def test_bad_settings_raise_portaudio_errors() -> None:
    fake = FakeSoundDevice()
    with pytest.raises(fake.PortAudioError, match="channels"):
        fake.InputStream(channels=4)
    with pytest.raises(fake.PortAudioError, match="Not an output device"):
        fake.check_output_settings(device=0)
    with pytest.raises(ValueError):
        FakeSoundDevice(speed=0)
