"""The sox test fixture is repeatable: tests judging audio near a limit (the calm edges)
must see the same samples every run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def test_the_same_sox_transform_gives_the_same_bytes(espeak_wav: Callable[..., Path],
                                                     sox: Callable[..., Path],
                                                     tmp_path: Path) -> None:
    src = espeak_wav("Let me sort that out for you right now.")
    for fx in (("gain", "-n", "-12"), ("pitch", "300", "tempo", "1.2"), ("gain", "4")):
        a = sox(src, tmp_path / "a.wav", *fx).read_bytes()
        b = sox(src, tmp_path / "b.wav", *fx).read_bytes()
        assert a == b, fx
