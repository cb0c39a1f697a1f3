"""Audio constants, loading and writing.

Everything downstream works on mono float32 at :data:`SAMPLE_RATE`; every other
figure is derived from the constants here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from voice_sim.errors import AudioError

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16_000
"""Hertz. The analysis rate: both speech engines and the delivery analysis use it."""

FRAME_S = 0.02
"""Seconds per analysis frame (20 ms, the usual speech frame)."""

FRAME = int(SAMPLE_RATE * FRAME_S)
"""Samples per analysis frame."""

SILENCE_DBFS = -60.0
"""dBFS. A file whose peak stays below this holds no usable sound."""

MAX_DURATION_S = 15.0 * 60
"""Seconds. Longer inputs are refused before they are read, so a stray three-hour
file never fills memory; one answer or persona line is far shorter than this.
``VOICE_SIM_MAX_AUDIO_S`` overrides it (:func:`voice_sim.paths.max_audio_s`)."""

READABLE = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".opus")
"""File endings the loader is asked to read (libsndfile decides in the end)."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding it."""

    path: Path
    sample_rate: int
    """Hertz, as stored."""
    channels: int
    frames: int
    """Samples per channel, as stored."""
    subtype: str
    """libsndfile's name for the sample format, e.g. ``PCM_16``, ``FLOAT``."""

    @property
    def duration_s(self) -> float:
        """Seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read an audio file's header, with a clear error for anything unreadable."""
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file", hint="check the path")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file", hint="name one audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: the file is empty (0 bytes)", hint="record or export it again")
    try:
        with _quiet_stderr():
            i = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        detail = _short(e)
        if "does not exist" in detail:  # libsndfile's words for bytes its MP3 decoder refused
            detail = "format not recognised"
        raise AudioError(
            f"{p}: not a readable audio file ({detail})",
            hint="use WAV, FLAC, OGG or MP3; convert with e.g. `sox in.xxx out.wav`",
        ) from e
    return AudioInfo(p, int(i.samplerate), int(i.channels), int(i.frames), str(i.subtype))


def check_audio(path: str | os.PathLike[str], *,
                max_duration_s: float | None = None) -> AudioInfo:
    """Everything :func:`load_audio` can refuse from the header alone, without decoding:
    missing, empty, unreadable, 0 frames, over-long, or a WAV cut short.

    Cheap, so a command checks all its input files before it loads a speech model.
    """
    from voice_sim.paths import max_audio_s

    meta = info(path)
    limit = max_audio_s(MAX_DURATION_S) if max_duration_s is None else max_duration_s
    if meta.frames == 0:
        raise AudioError(f"{meta.path}: holds no audio (0 frames)", hint="record it again")
    if meta.duration_s > limit:
        raise AudioError(
            f"{meta.path}: {meta.duration_s:.1f} s long, over the {limit:g} s limit",
            hint="trim it, or raise VOICE_SIM_MAX_AUDIO_S",
        )
    _check_wav_complete(meta.path)
    return meta


def load_audio(
    path: str | os.PathLike[str],
    sr: int = SAMPLE_RATE,
    *,
    allow_silent: bool = False,
    max_duration_s: float | None = None,
) -> np.ndarray:
    """Load any readable audio file as mono float32 at ``sr`` Hz.

    Any sample rate (8 kHz telephone audio included), bit depth and channel count;
    channels are averaged. NaN and infinite samples become silence. Raises
    :class:`AudioError` for a missing, empty, unreadable, over-long or (unless
    ``allow_silent``) silent file.
    """
    import numpy as np
    import soundfile as sf

    meta = check_audio(path, max_duration_s=max_duration_s)
    try:
        with _quiet_stderr():
            mono, file_sr = _read_mono(meta.path)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        raise AudioError(
            f"{meta.path}: the audio data is damaged ({_short(e)})",
            hint="export or record the file again",
        ) from e
    if mono.shape[0] == 0:
        raise AudioError(f"{meta.path}: holds no audio (0 frames)", hint="record it again")
    # Compressed formats whose data ends early decode short of the header's length.
    # (10% slack: some MP3 headers only estimate it.)
    if mono.shape[0] < 0.9 * meta.frames:
        raise AudioError(
            f"{meta.path}: is cut short: it holds {mono.shape[0] / file_sr:.2f} s of the "
            f"{meta.duration_s:.2f} s its header promises",
            hint="the recording or copy was interrupted; record or export it again",
        )
    samples = resample(mono, int(file_sr), sr)
    # After resampling: its ringing can overshoot full scale by a few percent.
    np.clip(samples, -1.0, 1.0, out=samples)
    if not allow_silent and is_silent(samples):
        raise AudioError(
            f"{meta.path}: is silent (peak below {SILENCE_DBFS:.0f} dBFS)",
            hint="check the microphone level and record again",
        )
    return samples


_BLOCK_FRAMES = 1 << 16
"""Frames decoded at a time by :func:`_read_mono`."""


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    """Decode block by block, mixing down as it goes.

    Memory follows the audio actually present, one channel's worth: reading the file
    in one go would first allocate frames x channels as the header claims, and a
    damaged or hostile header can claim many gigabytes.
    """
    import numpy as np
    import soundfile as sf

    parts = []
    with sf.SoundFile(str(path)) as f:
        # Not SoundFile.blocks(): it pads a short last read with stale samples.
        while len(block := f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)):
            # Zero bad samples before mixing, so one broken channel does not silence
            # the other.
            block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
            parts.append(block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1
                         else block[:, 0].copy())
        file_sr = int(f.samplerate)
    mono = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return mono, file_sr


def resample(samples: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample mono float32 audio (soxr, high quality)."""
    import numpy as np

    if sr_from == sr_to:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import soxr

    return np.ascontiguousarray(soxr.resample(samples, sr_from, sr_to, "HQ"), dtype=np.float32)


def peak_dbfs(samples: np.ndarray) -> float:
    """Peak level in dBFS (``-inf`` for digital silence)."""
    import numpy as np

    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * float(np.log10(peak)) if peak > 0 else float("-inf")


def is_silent(samples: np.ndarray) -> bool:
    """True when the peak stays below :data:`SILENCE_DBFS`."""
    return peak_dbfs(samples) < SILENCE_DBFS


def wav_bytes(samples: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """Mono float audio as the bytes of a 16-bit PCM WAV (canonical 44-byte header).

    Encoded here rather than by ``soundfile.write`` into a file object: that route runs
    Python callbacks inside libsndfile, and a Ctrl-C landing in one is printed and
    swallowed by cffi, after which soundfile fails an assertion: a traceback, exit 1
    and a half-written clip instead of a clean stop. The samples come out as libsndfile
    1.2 writes them: scaled to 32 bits, rounded half to even and clipped, then the top
    16 bits kept (an arithmetic shift, so tiny negative values become -1)."""
    import struct

    import numpy as np

    data = np.asarray(samples, dtype=np.float32).reshape(-1).astype(np.float64)
    wide = np.clip(np.rint(data * 2.0**31), -(2.0**31), 2.0**31 - 1).astype(np.int64)
    pcm = (wide >> 16).astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16,
                         1, 1, sr, sr * 2, 2, 16, b"data", len(pcm))
    return header + pcm


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write mono float audio as 16-bit PCM WAV (:func:`wav_bytes`), atomically
    (:func:`paths.atomic_file`)."""
    from voice_sim.paths import atomic_file

    p = Path(path)
    data = wav_bytes(samples, sr)
    try:
        with atomic_file(p, "wb") as f:
            f.write(data)
    except OSError as e:
        raise AudioError(f"{p}: cannot write ({e.strerror})", hint="check the folder") from e
    return p


def _check_wav_complete(path: Path) -> None:
    """Raise when a WAV's data chunk is shorter than its header says.

    libsndfile quietly reads what is there, so an interrupted recording or copy would
    otherwise load as a shorter, apparently fine clip.
    """
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:] != b"WAVE":
                return
            order: Literal["little", "big"] = "little" if head[:4] == b"RIFF" else "big"
            size, pos = path.stat().st_size, 12
            while pos + 8 <= size:
                f.seek(pos)
                chunk = f.read(8)
                declared = int.from_bytes(chunk[4:], order)
                if chunk[:4] == b"data":
                    present = size - pos - 8
                    # 0 and 0xFFFFFFFF: a streaming writer that never knew the length.
                    if declared not in (0, 0xFFFFFFFF) and present < declared:
                        raise AudioError(
                            f"{path}: is cut short: it holds {100 * present // declared}% "
                            "of the audio its header promises",
                            hint="the recording or copy was interrupted; record or export "
                                 "it again",
                        )
                    return
                pos += 8 + declared + (declared & 1)
    except OSError as e:
        raise AudioError(f"{path}: cannot read ({e.strerror})", hint="check the file") from e


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 while libsndfile parses a file: its MP3 decoder
    (libmpg123) prints resync notes on damaged or non-audio input, which would bury the
    one line the CLI prints. Failures still raise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to silence
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]
