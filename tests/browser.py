"""A headless chromium driven over the DevTools protocol, for the browser tests.

Debian's chromium, a tiny DevTools client on ``websockets``: pages open in fresh tabs
(more tabs of the same chromium each get their own connection, so each can be driven
from its own thread), every console error, uncaught exception and browser log error
(Content-Security-Policy violations, failed loads) is collected, keys can be typed, and
a full-page screenshot is decoded (a small PNG decoder on numpy) so a test can check
what was really drawn.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                                    "(apt-get install chromium; scripts/setup does it)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1200,900", "--remote-debugging-port=0"]


_KEYS = {"Tab": 9, "Enter": 13, "Escape": 27, " ": 32, "ArrowDown": 40, "ArrowUp": 38}
"""Windows virtual key codes of the named keys."""


# --- a tiny DevTools client --------------------------------------------------------------


class Browser:
    """One page in a headless chromium, over the DevTools protocol."""

    def __init__(self, ws: Any, devtools: str = "", tab: bool = False) -> None:
        self.ws = ws
        self.devtools = devtools
        """host:port of the chromium's DevTools server"""
        self.tab = tab
        """connected to one tab (not to the browser): :meth:`open` loads it"""
        self.n = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             page: bool = True, timeout: float = 30.0) -> dict[str, Any]:
        """Send a command and wait for its answer, keeping the events seen meanwhile."""
        self.n += 1
        msg: dict[str, Any] = {"id": self.n, "method": method, "params": params or {}}
        if page and self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            got = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if got.get("id") == self.n:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                result: dict[str, Any] = got["result"]
                return result
            self.events.append(got)

    def open(self, url: str, before: str | None = None) -> None:
        """Open ``url`` in a fresh tab (or, for a :meth:`new_tab`, in that tab) and wait
        for its load event; ``before`` is JavaScript run in every page of the tab before
        the page's own (e.g. :func:`echo_path`)."""
        if not self.tab:
            target = self.call("Target.createTarget", {"url": "about:blank"}, page=False)
            self.session = self.call("Target.attachToTarget",
                                     {"targetId": target["targetId"], "flatten": True},
                                     page=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        if before is not None:
            self.call("Page.addScriptToEvaluateOnNewDocument", {"source": before})
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, deadline
                                                                   - time.monotonic()))))
        self.call("Runtime.evaluate", {"expression": "1"})  # flushes queued events

    @contextmanager
    def new_tab(self) -> Iterator[Browser]:
        """Another tab of this chromium (in front of the others), on a connection of its
        own: another thread may drive it while this one is in use. Closed on leaving."""
        from websockets.sync.client import connect

        target = self.call("Target.createTarget", {"url": "about:blank"}, page=False)
        try:
            with connect(f"ws://{self.devtools}/devtools/page/{target['targetId']}",
                         max_size=None, open_timeout=20) as ws:
                yield Browser(ws, self.devtools, tab=True)
        finally:
            self.call("Target.closeTarget", {"targetId": target["targetId"]}, page=False)

    def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Load ``url`` in the current tab and wait for its load event."""
        mark = len(self.events)
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", since=mark, timeout=timeout)

    def wait_event(self, method: str, *, since: int = 0, timeout: float = 30.0) -> None:
        """Wait until an event ``method`` has been seen after ``self.events[since]``."""
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events[since:]):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} within {timeout:g} s")
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, left))))

    def wait(self, expression: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
        """Evaluate ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout:g} s: {expression}")
            time.sleep(interval)

    def press(self, key: str) -> None:
        """Type one key, as a person at the keyboard would (focus moves, buttons click)."""
        code = _KEYS.get(key, ord(key.upper()) if len(key) == 1 else 0)
        text = {"Enter": "\r", " ": " "}.get(key, key if len(key) == 1 else "")
        base = {"key": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code,
                "code": {" ": "Space"}.get(key, key if len(key) > 1 else f"Key{key.upper()}")}
        self.call("Input.dispatchKeyEvent", {"type": "keyDown", **base,
                                             **({"text": text} if text else {})})
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", **base})

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                  for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                out.append("exception: " + str(p.get("exceptionDetails", {}).get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log ({p['entry'].get('source')}): {p['entry'].get('text')}")
        return out

    def js(self, expression: str, *, awaited: bool = False) -> Any:
        """Evaluate JavaScript in the page (DevTools is not bound by the page's CSP)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": awaited})
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"].get("text"))
        return r["result"].get("value")

    def screenshot(self) -> np.ndarray:
        """The whole page as an RGB array (height, width, 3)."""
        w, h = self.js("[document.documentElement.scrollWidth,"
                       " document.documentElement.scrollHeight]")
        shot = self.call("Page.captureScreenshot", {
            "format": "png", "optimizeForSpeed": True, "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}})
        return decode_png(base64.b64decode(shot["data"]))


def echo_path(gain: float, delay_s: float) -> str:
    """JavaScript for :meth:`Browser.open`'s ``before``: the room's echo path inside the
    browser. Chromium's fake microphone is a file that never hears the page's speaker;
    with this, every sound the page plays (a node connected to an audio context's
    speaker) also reaches the microphone ``getUserMedia`` gives the page, ``delay_s``
    later at ``gain``, through the browser's own audio graphs (a DelayNode and a
    GainNode, bridged into a mixing context by MediaStreams, so with their buffering
    and clock drift), mixed with the fake microphone: a laptop's speaker and
    microphone without a headset.

    The trainee can be made to speak at a moment chosen while the page runs, into the
    microphone only: ``await __load(name, base64 WAV)`` once, then ``__say(name)``
    starts it 20 ms later and returns that moment (epoch ms, the page's clock)."""
    return _ECHO_JS.replace("GAIN_", repr(float(gain))).replace("DELAY_", repr(float(delay_s)))


_ECHO_JS = """(() => {
  const GAIN = GAIN_, DELAY = DELAY_;
  const md = navigator.mediaDevices;
  const realGum = md.getUserMedia.bind(md);
  const connect = AudioNode.prototype.connect;
  let mix = null;
  const mixer = () => {
    if (!mix) {
      const ctx = new AudioContext();
      mix = { ctx, dest: ctx.createMediaStreamDestination() };
    }
    return mix;
  };
  md.getUserMedia = async (constraints) => {
    const stream = await realGum(constraints);
    const m = mixer();
    connect.call(m.ctx.createMediaStreamSource(stream), m.dest);
    await m.ctx.resume();
    window.__echoPath = { gain: GAIN, delay: DELAY };
    return m.dest.stream;
  };
  const voices = {};
  window.__load = async (name, b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    voices[name] = await mixer().ctx.decodeAudioData(bytes.buffer);
    return voices[name].duration;
  };
  window.__say = (name) => {
    const m = mixer();
    const src = m.ctx.createBufferSource();
    src.buffer = voices[name];
    connect.call(src, m.dest);
    src.start(m.ctx.currentTime + 0.02);
    return performance.timeOrigin + performance.now() + 20;
  };
  AudioNode.prototype.connect = function (dest, ...rest) {
    const out = connect.call(this, dest, ...rest);
    if (dest instanceof AudioDestinationNode) {
      const ctx = this.context;
      if (!ctx.__echo) {
        const delay = ctx.createDelay(1.0);
        delay.delayTime.value = DELAY;
        const gain = ctx.createGain();
        gain.gain.value = GAIN;
        const tap = ctx.createMediaStreamDestination();
        connect.call(delay, gain);
        connect.call(gain, tap);
        const m = mixer();
        connect.call(m.ctx.createMediaStreamSource(tap.stream), m.dest);
        ctx.__echo = delay;
      }
      connect.call(this, ctx.__echo);
    }
    return out;
  };
})();"""


@contextmanager
def chromium(tmp: Path, extra: Sequence[str] = ()) -> Iterator[Browser]:
    """A headless chromium with its own throwaway profile (``extra``: more flags)."""
    from websockets.sync.client import connect

    profile = tmp / "profile"
    assert CHROMIUM is not None
    proc = subprocess.Popen([CHROMIUM, *FLAGS, *extra, f"--user-data-dir={profile}",
                             "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit {proc.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None,
                     open_timeout=20) as ws:
            browser = Browser(ws, f"127.0.0.1:{port}")
            yield browser
            browser.call("Browser.close", page=False)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- PNG --------------------------------------------------------------------------------


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what chromium writes) to RGB."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = channels = 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    rows = raw.reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), dtype=np.uint8)
    prev = np.zeros(width * channels, dtype=np.uint8)
    bpp = channels
    for y in range(height):
        f, line = rows[y, 0], rows[y, 1:]
        if f == 0:
            cur = line.copy()
        elif f == 1:  # Sub: a running sum per channel, mod 256
            cur = (np.cumsum(line.reshape(width, bpp).astype(np.int64), axis=0) % 256
                   ).astype(np.uint8).ravel()
        elif f == 2:  # Up
            cur = line + prev
        else:  # Average and Paeth depend on the pixel just decoded: byte by byte
            cur_l = [0] * len(line)
            lp = prev.tolist()
            for i, v in enumerate(line.tolist()):
                a = cur_l[i - bpp] if i >= bpp else 0
                b = lp[i]
                if f == 3:
                    cur_l[i] = (v + (a + b) // 2) & 0xFF
                else:
                    c = lp[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur_l[i] = (v + pred) & 0xFF
            cur = np.array(cur_l, dtype=np.uint8)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, channels)[:, :, :3]


# --- a microphone for chromium ------------------------------------------------------------


def capture_file(path: Path, parts: Sequence[tuple[float, Path]], total_s: float,
                 sr: int = 16_000) -> Path:
    """The WAV chromium plays as its microphone (``--use-file-for-fake-audio-capture``):
    each ``(start_s, file)`` placed at ``start_s`` seconds in silence ``total_s`` long.

    Chromium loops the file, so ``total_s`` must outlast the call; quiet room noise
    (-70 dBFS) keeps the turn detector's noise floor realistic.
    """
    from voice_sim.audio import load_audio, write_wav

    rng = np.random.default_rng(7)
    out = (rng.standard_normal(int(total_s * sr)) * 10 ** (-70 / 20)).astype(np.float32)
    for start, f in parts:
        x = load_audio(f)
        i = int(start * sr)
        if i + len(x) > len(out):
            raise ValueError(f"{f} at {start} s does not fit in {total_s} s")
        out[i:i + len(x)] += x
    return write_wav(path, out, sr)


WORK_S = 8.0
"""Seconds allowed for the server to finish a turn (end detected -> next line sent),
on two shared cores with three calls running: ~0.3-0.6 s alone on an idle machine,
but up to 7 s seen with the tests nice'd under a load of 11 (4 s failed there)."""

SILENCE_END_S = 0.8
"""The pause after an answer before the turn detector ends it (a margin: the live
rule may end it sooner)."""


def seconds(path: Path) -> float:
    """A sound file's length in seconds."""
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def plain_personas(shipped: Path, folder: Path) -> Path:
    """The shipped personas, with double-billing's phrasing variants and voice-by-mood
    taken out: the fake microphone's file is laid out in advance from the lengths of the
    lines, so every call must say each line in the one voice and words known here."""
    from ruamel.yaml import YAML

    folder.mkdir()
    for f in shipped.glob("*.yaml"):
        shutil.copy(f, folder)
    yaml = YAML()
    path = folder / "double-billing.yaml"
    data = yaml.load(path.read_text(encoding="utf-8"))
    data["customer"]["voice"].pop("per_mood", None)
    for line in data["lines"]:
        line.pop("variants", None)
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(data, out)
    return folder


def line_lengths(persona_id: str, folder: Path) -> dict[str, float]:
    """Each line's length as the call will play it (the same cached TTS render)."""
    from voice_sim.persona import load_persona
    from voice_sim.speak import cached_render

    p = load_persona(folder / f"{persona_id}.yaml")
    return {k: seconds(line.audio or cached_render(line.text, p.voice))
            for k, line in p.lines.items()}


def timeline(first_at: float, answers: list[Path], lines_after: list[float],
             work_s: float = WORK_S) -> list[tuple[float, Path]]:
    """Where each answer goes: the first at ``first_at``; each next one after the answer
    before it, the silence that ends it, the server's work (``work_s``) and the line it
    answers."""
    at, out = first_at, []
    for i, a in enumerate(answers):
        out.append((at, a))
        if i + 1 < len(answers):
            at += seconds(a) + SILENCE_END_S + work_s + lines_after[i] + 0.7
    return out
