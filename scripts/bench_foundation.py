#!/usr/bin/env python3
"""Figures for the foundation: CLI start-up, text-to-speech speed, isolation cost, memory.

    .venv/bin/python scripts/bench_foundation.py [--runs N]

Targets: ``voice-sim --help`` median <= 0.3 s; a cached persona line <= 5 ms.
The isolation section compares the ways of keeping pyttsx3 renders independent
(see voice_sim/speak.py): per render time, and how many different outputs five
renders of the same line gave (1 = repeatable).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
LINE = ("I have called three times about this bill and nobody has fixed it, so I want "
        "a refund today.")  # 20 words


def _median_s(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _child(code: str, env: dict[str, str] | None = None) -> str:
    """Run Python code in a fresh process; its last stdout line."""
    r = subprocess.run([PY, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       check=True, env={**os.environ, **(env or {})}, cwd=ROOT, timeout=600)
    return r.stdout.strip().splitlines()[-1]


def bench_startup(runs: int) -> None:
    script = Path(PY).parent / "voice-sim"
    cmd = [str(script), "--help"] if script.exists() else [PY, "-m", "voice_sim", "--help"]
    bare = _median_s([PY, "-c", "pass"], runs)
    help_s = _median_s(cmd, runs)
    print(f"startup   voice-sim --help: median {help_s * 1000:.0f} ms of {runs} runs "
          f"(target <= 300 ms; bare python {bare * 1000:.0f} ms)")


def bench_tts(runs: int, cache: str) -> None:
    env = {"VOICE_SIM_CACHE": cache}
    out = _child(f"""
        import statistics, time
        t0 = time.perf_counter()
        from voice_sim import speak
        t1 = time.perf_counter()
        speak.cached_render({LINE!r})
        t2 = time.perf_counter()
        hits = []
        for _ in range({runs * 10}):
            s = time.perf_counter()
            speak.cached_render({LINE!r})
            hits.append(time.perf_counter() - s)
        warm, spaced = [], []
        for i in range({runs}):
            s = time.perf_counter()
            speak.render_wav({LINE!r} + f" Call {{i}}.", None, "{cache}/w.wav")
            warm.append(time.perf_counter() - s)
        for i in range({runs}):
            time.sleep(0.2)  # as between persona lines: the next renderer is ready
            s = time.perf_counter()
            speak.render_wav({LINE!r} + f" Line {{i}}.", None, "{cache}/w.wav")
            spaced.append(time.perf_counter() - s)
        print(t1 - t0, t2 - t1, statistics.median(hits), statistics.median(warm),
              statistics.median(spaced))
    """, env)
    imp, cold, hit, warm, spaced = map(float, out.split())
    first = float(_child(f"""
        import time
        t = time.perf_counter()
        from voice_sim import speak
        speak.cached_render({LINE!r})
        print(time.perf_counter() - t)
    """, env))
    print(f"tts       20-word line, cold (worker start + render): {cold * 1000:.0f} ms "
          f"(after {imp * 1000:.0f} ms import)")
    print(f"tts       20-word line, worker running, not cached: median {warm * 1000:.0f} ms "
          f"back to back, {spaced * 1000:.0f} ms with 0.2 s between lines")
    print(f"tts       cached line: median {hit * 1000:.2f} ms per call (target <= 5 ms); "
          f"first call in a new process incl. import: {first * 1000:.0f} ms")


# Each isolation option renders LINE five times, then prints: seconds per render and
# the number of distinct outputs.
_REUSED = """
    import hashlib, os, threading, time
    from pyttsx3.drivers import _espeak
    from pyttsx3.drivers.espeak import EspeakDriver
    import pyttsx3
    devnull = os.open(os.devnull, os.O_WRONLY); real_out = os.dup(1); os.dup2(devnull, 1)
    def render(engine, path):
        done = threading.Event()
        token = engine.connect("finished-utterance", lambda **kw: done.set())
        EspeakDriver.setProperty("voice", "gmw/en-us"); EspeakDriver.setProperty("rate", 170)
        while _espeak.IsPlaying():
            time.sleep(0.001)
        engine.save_to_file(LINE, path); engine.runAndWait(); done.wait(30)
        engine.disconnect(token)
    engine = pyttsx3.init("espeak")
    render(engine, "/dev/null")  # not timed: first-use costs
    hashes, t = set(), time.perf_counter()
    for i in range(5):
        if NEW_ENGINE:
            # the old engine must be gone first: its destructor unhooks espeak's callback
            del engine; import gc; gc.collect(); engine = pyttsx3.Engine("espeak")
        render(engine, f"{TMP}/r{i}.wav")
        hashes.add(hashlib.md5(open(f"{TMP}/r{i}.wav", "rb").read()).hexdigest())
    os.write(real_out, f"{(time.perf_counter() - t) / 5} {len(hashes)}\\n".encode())
"""

_ONE_RENDER = """
import sys, threading, time, pyttsx3
from pyttsx3.drivers import _espeak
from pyttsx3.drivers.espeak import EspeakDriver
e = pyttsx3.init("espeak"); done = threading.Event()
e.connect("finished-utterance", lambda **kw: done.set())
EspeakDriver.setProperty("voice", "gmw/en-us"); EspeakDriver.setProperty("rate", 170)
while _espeak.IsPlaying():
    time.sleep(0.001)
e.save_to_file(sys.argv[1], sys.argv[2]); e.runAndWait(); done.wait(30)
"""

_SUBPROCESS = """
    import hashlib, subprocess, sys, time
    hashes, t = set(), time.perf_counter()
    for i in range(5):
        subprocess.run([sys.executable, "-c", ONE_RENDER, LINE, f"{TMP}/s{i}.wav"],
                       check=True, stdout=subprocess.DEVNULL)
        hashes.add(hashlib.md5(open(f"{TMP}/s{i}.wav", "rb").read()).hexdigest())
    print((time.perf_counter() - t) / 5, len(hashes))
"""

_FORK_WORKER = """
    import hashlib, time
    from voice_sim import speak
    speak.warm_up(); speak.render_wav("Warm up.", None, f"{TMP}/x.wav")
    hashes, t = set(), time.perf_counter()
    for i in range(5):
        p = speak.render_wav(LINE, speak.Voice("gmw/en-us", rate=170), f"{TMP}/f{i}.wav")
        hashes.add(hashlib.md5(p.read_bytes()).hexdigest())
    print((time.perf_counter() - t) / 5, len(hashes))
"""


def bench_isolation(tmp: str) -> None:
    head = f"LINE = {LINE!r}\nTMP = {tmp!r}\nONE_RENDER = {_ONE_RENDER!r}\n"
    options = (
        ("one engine reused (in process)", head + "NEW_ENGINE = False\n" +
         textwrap.dedent(_REUSED)),
        ("new engine per render (in process)", head + "NEW_ENGINE = True\n" +
         textwrap.dedent(_REUSED)),
        ("new Python subprocess per render", head + textwrap.dedent(_SUBPROCESS)),
        ("fork worker (voice_sim.speak, chosen)", head + textwrap.dedent(_FORK_WORKER)),
    )
    for name, code in options:
        per, distinct = _child(code).split()
        print(f"isolation {name}: {float(per) * 1000:.0f} ms per render; "
              f"{distinct} distinct output(s) from 5 identical renders")


def bench_memory(cache: str) -> None:
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN holds the largest finished child.
    out = _child(f"""
        import resource
        from voice_sim import speak
        speak.render({LINE!r})
        me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        speak._stop_worker()
        worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(me, worker)
    """, {"VOICE_SIM_CACHE": cache})
    me, worker = map(int, out.split())
    help_kib = int(_child("""
        import resource, subprocess, sys
        subprocess.run([sys.executable, "-m", "voice_sim", "--help"], stdout=subprocess.DEVNULL)
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """))
    print(f"memory    peak RSS: voice-sim --help {help_kib / 1024:.0f} MiB; "
          f"a process after render(): {me / 1024:.0f} MiB; TTS worker and its forks: "
          f"{worker / 1024:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="repetitions (default 15)")
    args = parser.parse_args()
    print(f"machine   {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="voice-sim-bench-") as tmp:
        bench_startup(args.runs)
        bench_tts(args.runs, str(Path(tmp) / "cache"))
        bench_isolation(tmp)
        bench_memory(str(Path(tmp) / "cache"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
