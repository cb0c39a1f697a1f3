"""Atomic writes: the data and the name that points at it both reach the disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from voice_sim import paths


class Fsyncs:
    """Every fsync made, as (kind, inode, the watched file's inode then: 0 if none)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.watched: Path | None = None

    def dirs(self) -> list[int]:
        return [ino for kind, ino, _ in self.calls if kind == "dir"]


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Fsyncs:
    """os.fsync spied on (the real one still runs)."""
    rec, real = Fsyncs(), os.fsync

    def spy(fd: int) -> None:
        st = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        now = rec.watched.stat().st_ino if rec.watched and rec.watched.exists() else 0
        rec.calls.append((kind, st.st_ino, now))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return rec


@pytest.mark.parametrize("data", ["text ✓\n", b"\x00bytes"])
def test_write_atomic_fsyncs_the_file_then_its_folder(
        tmp_path: Path, fsyncs: Fsyncs, data: str | bytes) -> None:
    out = tmp_path / "session.json"
    out.write_text("old", encoding="utf-8")
    fsyncs.watched = out
    paths.write_atomic(out, data)
    assert (out.read_bytes() if isinstance(data, bytes) else out.read_text("utf-8")) == data
    assert [p.name for p in tmp_path.iterdir()] == ["session.json"]  # no temp left
    # The new file's data, then its own folder once the name points at it (else the
    # rename could still be lost).
    [(kind, new, before), (dir_kind, folder, after)] = fsyncs.calls
    assert (kind, dir_kind) == ("file", "dir") and new != before
    assert folder == tmp_path.stat().st_ino and after == new == out.stat().st_ino


def test_replace_atomic_fsyncs_the_folder_after_the_rename(
        tmp_path: Path, fsyncs: Fsyncs) -> None:
    tmp, out = tmp_path / ".line.wav.tmp", tmp_path / "line.wav"
    tmp.write_bytes(b"RIFF")
    fsyncs.watched = out
    paths.replace_atomic(tmp, out)
    assert out.read_bytes() == b"RIFF" and not tmp.exists()
    [(kind, new, before), (dir_kind, folder, after)] = fsyncs.calls
    assert (kind, dir_kind, before) == ("file", "dir", 0)
    assert folder == tmp_path.stat().st_ino and after == new == out.stat().st_ino


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), paths.atomic_file(out) as f:
        f.write("half a new file")
        raise RuntimeError("killed mid-write")
    assert out.read_text("utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_new_folders_are_recorded_in_their_parents(
        tmp_path: Path, fsyncs: Fsyncs) -> None:
    out = tmp_path / "a" / "b" / "x.wav"
    paths.write_atomic(out, b"RIFF")
    a, b = tmp_path / "a", tmp_path / "a" / "b"
    # tmp_path holds the entry for a/, a/ the one for b/, b/ the one for x.wav
    assert fsyncs.dirs() == [tmp_path.stat().st_ino, a.stat().st_ino, b.stat().st_ino]
    paths.write_atomic(out, b"RIFF2")  # the folders exist now: only the file's own
    assert fsyncs.dirs()[3:] == [b.stat().st_ino]


def test_the_embedding_runtime_setting_is_read_and_refused_here(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from voice_sim.errors import InputError

    for value, runtime in (("", "onnxruntime"), ("numpy", "numpy"),
                           (" onnxruntime ", "onnxruntime")):
        monkeypatch.setenv("VOICE_SIM_EMBEDDING_RUNTIME", value)
        assert paths.embedding_runtime() == runtime
    monkeypatch.setenv("VOICE_SIM_EMBEDDING_RUNTIME", "onnx")
    with pytest.raises(InputError) as e:
        paths.embedding_runtime()
    assert e.value.line() == ("VOICE_SIM_EMBEDDING_RUNTIME='onnx': not a runtime — set it to "
                              "onnxruntime or numpy, or unset it")
