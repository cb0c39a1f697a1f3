#!/usr/bin/env python3
"""A virtual microphone and speaker for real-time end-to-end runs, with no sound card.

How: two ALSA ``type file`` PCMs defined in a private config (``ALSA_CONFIG_PATH``, so
nothing system-wide changes). The microphone ``vsim_mic`` reads its samples from a
named pipe as 16-bit mono 16 kHz, so it must be opened in that format (as
``voice_sim.listen.Microphone`` does; a ``plug`` cannot convert it, because the file
PCM reads its infile only on plain reads). The speaker ``vsim_spk`` writes into another
pipe, through a ``plug`` that converts whatever PortAudio sends to 16-bit mono 16 kHz.

The file PCM itself is not paced (reading a plain file, PortAudio gets minutes of
audio in a second). Pacing comes from the pipes: this script writes the microphone
pipe in real time (silence between answers), so PortAudio's reads block exactly as
on a real device, and it drains the speaker pipe in real time, with the pipe shrunk
to one page, so playback takes as long as the audio lasts. PulseAudio is not needed.

Measured here (2 cores, bench_latency.py): blocks arrive every 20 ms, no sample lost
or reordered; one pipe page (~0.13 s at 16 kHz) of buffering on the speaker side.

Use from Python (before anything imports sounddevice)::

    va = VirtualAudio(folder).activate()
    va.say(samples)               # the "trainee" speaks into vsim_mic
    ... voice-sim code opens --input-device vsim_mic --output-device vsim_spk ...

or from a shell, to run the real CLI against prerecorded answers::

    python scripts/virtual_mic.py run --dir /tmp/vsim a1.wav a2.wav &
    ALSA_CONFIG_PATH=$(python scripts/virtual_mic.py env --dir /tmp/vsim) \\
        voice-sim practice billing --input-device vsim_mic --output-device vsim_spk
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SR = 16_000
BLOCK = 320
"""Samples per write: 20 ms."""
MIC, SPEAKER = "vsim_mic", "vsim_spk"
SYSTEM_CONF = ("/usr/share/alsa/alsa.conf", "/etc/alsa/alsa.conf")
F_SETPIPE_SZ = 1031
"""fcntl command (Linux): set a pipe's buffer size."""
SOUND_INT16 = 30
"""A speaker block with a sample above this (int16; about -60 dBFS) is sound, not dither."""

ASOUNDRC = """\
# voice-sim virtual audio (scripts/virtual_mic.py): file PCMs on named pipes.
# The microphone has no plug in front: ALSA's file PCM reads its infile only on plain
# reads, and a plug (mmap access) would bypass it. So it must be opened as it is fed:
# 16-bit mono 16 kHz (voice_sim.listen.Microphone does).
pcm.{mic} {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{mic_fifo}"
  format "raw"
  hint {{ show on; description "voice-sim virtual microphone (S16_LE mono 16 kHz)" }}
}}
pcm.{spk}_raw {{ type file; slave.pcm "null"; file "{spk_fifo}"; format "raw" }}
pcm.{spk} {{
  type plug
  slave {{ pcm "{spk}_raw"; format S16_LE; rate {sr}; channels 1 }}
  hint {{ show on; description "voice-sim virtual speaker" }}
}}
"""


@dataclass
class Utterance:
    """One answer spoken into the virtual microphone; times are ``perf_counter()``."""

    samples: np.ndarray
    delay_s: float
    speech_end: int
    """Sample index where the speech in ``samples`` ends (trailing silence excluded)."""
    start_at: float | None = None
    """When its first block was written to the pipe."""
    speech_end_at: float | None = None
    """When the block holding its last speech sample was written."""
    end_at: float | None = None
    done: threading.Event | None = None


def speech_end_index(x: np.ndarray, thr_dbfs: float = -40.0) -> int:
    """Index just past the last 20 ms frame louder than ``thr_dbfs``."""
    import numpy as np

    n = len(x) // BLOCK
    frames = x[: n * BLOCK].reshape(n, BLOCK).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1)) + 1e-12
    loud = np.flatnonzero(20 * np.log10(rms) > thr_dbfs)
    return int((loud[-1] + 1) * BLOCK) if loud.size else 0


def speech_start_index(x: np.ndarray, thr_dbfs: float = -40.0) -> int:
    """Index of the first 20 ms frame louder than ``thr_dbfs``."""
    import numpy as np

    n = len(x) // BLOCK
    frames = x[: n * BLOCK].reshape(n, BLOCK).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1)) + 1e-12
    loud = np.flatnonzero(20 * np.log10(rms) > thr_dbfs)
    return int(loud[0] * BLOCK) if loud.size else 0


class VirtualAudio:
    """The pipes, the ALSA config, and the threads that pace them in real time."""

    def __init__(self, folder: str | os.PathLike[str], *, echo_gain: float = 0.0,
                 echo_delay_s: float = 0.05) -> None:
        self.folder = Path(folder)
        self.echo_gain = echo_gain
        """Fraction of what the speaker plays mixed back into the microphone (a simulated
        echo path: a laptop's speaker next to its microphone, no echo cancelling) ..."""
        self.echo_delay_s = echo_delay_s
        """... this many seconds after the speaker received it (the room, the device)."""
        self._echo: deque[tuple[float, np.ndarray]] = deque()
        self._echo_buf: np.ndarray | None = None
        self.mic_fifo = self.folder / "mic.fifo"
        self.spk_fifo = self.folder / "speaker.fifo"
        self.conf = self.folder / "asoundrc"
        self.sound_starts: list[float] = []
        """``perf_counter()`` of each first non-silent block the speaker received after a
        quiet spell (a new line starting)."""
        self.speaker_blocks = 0
        self.mic_blocks = 0
        self.spoken: list[np.ndarray] = []
        """What the speaker received, block by block (int16)."""
        self.keep_speaker = False
        self._queue: deque[Utterance] = deque()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fds: list[int] = []
        self._last_sound = 0.0

    def setup(self) -> VirtualAudio:
        """Create the folder, the two named pipes and the ALSA config."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for f in (self.mic_fifo, self.spk_fifo):
            if not f.exists():
                os.mkfifo(f)
        self.conf.write_text(ASOUNDRC.format(mic=MIC, spk=SPEAKER, sr=SR,
                                             mic_fifo=self.mic_fifo, spk_fifo=self.spk_fifo))
        return self

    def env(self) -> dict[str, str]:
        """The environment that makes PortAudio see the two devices."""
        system = next((c for c in SYSTEM_CONF if Path(c).exists()), None)
        if system is None:
            raise SystemExit("virtual_mic: no alsa.conf found (apt-get install libasound2)")
        return {"ALSA_CONFIG_PATH": f"{system}:{self.conf}"}

    def activate(self) -> VirtualAudio:
        """Set up, start, and put the config in this process's environment.

        Call it before sounddevice is imported: ALSA reads the config once, when
        PortAudio starts, and PortAudio's device probe opens both pipes (an open with
        no one at the other end would block, so the pipes must be open here first).
        """
        if "sounddevice" in sys.modules:
            raise SystemExit("virtual_mic: activate() must run before sounddevice is imported")
        self.setup()
        os.environ.update(self.env())
        return self.start()

    def start(self) -> VirtualAudio:
        """Open both pipes and start pacing them."""
        import fcntl

        # O_RDWR: opening never blocks and the pipe survives PortAudio's device probes
        # opening and closing the other end.
        for f in (self.mic_fifo, self.spk_fifo):
            fd = os.open(f, os.O_RDWR)
            fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)  # one page: ~0.13 s of audio
            self._fds.append(fd)
        for target in (self._feed, self._drain):
            t = threading.Thread(target=target, daemon=True, name=target.__name__)
            t.start()
            self._threads.append(t)
        return self

    def say(self, samples: np.ndarray, delay_s: float = 0.0) -> Utterance:
        """Queue mono float audio (16 kHz) for the microphone, ``delay_s`` after the
        previous utterance (or now)."""
        import numpy as np

        x = np.asarray(samples, dtype=np.float32)
        u = Utterance(x, delay_s, speech_end_index(x), done=threading.Event())
        with self._cv:
            self._queue.append(u)
            self._cv.notify()
        return u

    def wait_sound(self, after: float, timeout: float = 10.0) -> float | None:
        """The first time the speaker got sound after ``after`` (perf_counter), or None."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            hits = [t for t in self.sound_starts if t >= after]
            if hits:
                return hits[0]
            time.sleep(0.002)
        return None

    @property
    def last_sound_at(self) -> float:
        """``perf_counter()`` when the speaker last received sound."""
        return self._last_sound

    def speaker_quiet_for(self) -> float:
        """Seconds since the speaker last received sound."""
        return time.perf_counter() - self._last_sound

    def close(self) -> None:
        """Stop the threads and close the pipes."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=1.0)
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def _feed(self) -> None:
        """Write the microphone pipe at 16 kHz: queued utterances, silence otherwise."""
        import numpy as np

        fd = self._fds[0]
        silence = np.zeros(BLOCK, np.int16).tobytes()
        start, k = time.perf_counter(), 0
        current: Utterance | None = None
        pos, due = 0, 0.0
        while not self._stop.is_set():
            # Pace by an absolute schedule; if the reader stalled (device closed), start
            # the schedule again instead of bursting to catch up.
            wait = start + k * BLOCK / SR - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.2:
                start, k = time.perf_counter(), 0
            if current is None:
                with self._cv:
                    if self._queue:
                        current, pos = self._queue.popleft(), 0
                        due = time.perf_counter() + current.delay_s
            data = silence
            echo = self._echo_block() if self.echo_gain else None
            speaking = current is not None and time.perf_counter() >= due
            if speaking:
                assert current is not None
                chunk = current.samples[pos:pos + BLOCK]
                mix = np.zeros(BLOCK, np.float32)
                mix[:len(chunk)] = chunk
                if echo is not None:
                    mix += echo
                data = np.clip(mix * 32767, -32768, 32767).astype(np.int16).tobytes()
            elif echo is not None and echo.any():
                data = np.clip(echo * 32767, -32768, 32767).astype(np.int16).tobytes()
            try:
                os.write(fd, data)
            except OSError:
                return
            now = time.perf_counter()
            if speaking and current is not None:
                if pos == 0:
                    current.start_at = now
                if pos <= current.speech_end <= pos + BLOCK:
                    current.speech_end_at = now + (current.speech_end - pos - BLOCK) / SR
                pos += BLOCK
                if pos >= len(current.samples):
                    current.end_at = now
                    assert current.done is not None
                    current.done.set()
                    current = None
            self.mic_blocks += 1
            k += 1

    def _echo_block(self) -> np.ndarray:
        """BLOCK samples of the echo due now: speaker audio ``echo_delay_s`` old."""
        import numpy as np

        due = time.perf_counter() - self.echo_delay_s
        parts = [self._echo_buf] if self._echo_buf is not None else []
        while self._echo and self._echo[0][0] <= due:
            parts.append(self._echo.popleft()[1])
        buf = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        # The two pipes' threads are paced apart: never let a backlog build up, or the
        # echo's delay would drift (a real echo path's delay is steady).
        buf = buf[-2 * BLOCK:]
        out = np.zeros(BLOCK, np.float32)
        out[:min(BLOCK, len(buf))] = buf[:BLOCK]
        self._echo_buf = buf[BLOCK:] if len(buf) > BLOCK else None
        return out

    def _drain(self) -> None:
        """Read the speaker pipe at 16 kHz, noting when each line's sound begins."""
        import numpy as np

        fd = self._fds[1]
        start, got = time.perf_counter(), 0
        quiet = True
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                quiet, start, got = True, time.perf_counter(), 0
                continue
            try:
                data = os.read(fd, BLOCK * 2)
            except OSError:
                return
            now = time.perf_counter()
            x = np.frombuffer(data[: len(data) // 2 * 2], np.int16)
            self.speaker_blocks += 1
            if self.echo_gain:
                self._echo.append((now, x.astype(np.float32) / 32768 * self.echo_gain))
            if self.keep_speaker:
                self.spoken.append(x.copy())
            if np.abs(x).max(initial=0) > SOUND_INT16:
                if quiet or now - self._last_sound > 0.3:
                    self.sound_starts.append(now)
                quiet = False
                self._last_sound = now
            got += len(x)
            wait = start + got / SR - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.2:
                start, got = time.perf_counter(), 0


def _run(args: argparse.Namespace) -> int:
    """Feed answers into the microphone, each after the persona's line has finished."""
    from voice_sim.audio import load_audio

    va = VirtualAudio(args.dir).setup().start()
    print(f"virtual_mic: feeding {MIC}; speaker {SPEAKER}. In another shell:\n"
          f"  export ALSA_CONFIG_PATH={va.env()['ALSA_CONFIG_PATH']}", file=sys.stderr)
    try:
        for path in args.answers:
            x = load_audio(path)
            # Wait for a line to play and then end (0.5 s of quiet after sound).
            seen = len(va.sound_starts)
            while len(va.sound_starts) == seen or va.speaker_quiet_for() < 0.5:
                time.sleep(0.02)
            u = va.say(x, delay_s=args.delay)
            assert u.done is not None
            u.done.wait()
            print(f"virtual_mic: spoke {path}", file=sys.stderr)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        va.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="create the pipes and the ALSA config")
    s.add_argument("--dir", default="/tmp/voice-sim-vmic")
    s = sub.add_parser("env", help="print the ALSA_CONFIG_PATH value")
    s.add_argument("--dir", default="/tmp/voice-sim-vmic")
    s = sub.add_parser("run", help="feed answers (WAVs) in real time, each after a line")
    s.add_argument("--dir", default="/tmp/voice-sim-vmic")
    s.add_argument("--delay", type=float, default=0.5, help="seconds after the line ends")
    s.add_argument("answers", nargs="+")
    args = p.parse_args(argv)
    va = VirtualAudio(args.dir)
    if args.cmd == "setup":
        va.setup()
        print(f"export ALSA_CONFIG_PATH={va.env()['ALSA_CONFIG_PATH']}")
        return 0
    if args.cmd == "env":
        va.setup()
        print(va.env()["ALSA_CONFIG_PATH"])
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
