"""Run ``voice-sim practice`` on the fake sound card, for tests/test_never_lose.py.

    python tests/kill_driver.py --speed 4 --delay 1.2 A1.wav A2.wav -- practice ID --out DIR

The fake microphone is digitally silent apart from the answers, fed in the order given,
each ``--delay`` fake seconds after a persona line has finished playing; so a test can
tell exactly which samples the answer WAVs must hold, even after the process was
killed. Everything after ``--`` goes to the real CLI (``voice_sim.cli.main``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speed", type=float, default=1.0, help="fake clock vs real time")
    p.add_argument("--delay", type=float, default=0.5,
                   help="fake seconds from the end of a line to the answer")
    p.add_argument("answers", nargs="+", type=Path, help="answer WAVs, in turn order")
    args = p.parse_args(argv[:split])

    from fake_audio import installed

    from voice_sim import cli
    from voice_sim.audio import load_audio

    answers = [load_audio(a) for a in args.answers]
    with installed(answers=answers, speed=args.speed, delay_s=args.delay, noise_dbfs=None):
        return cli.main(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
