"""`voice-sim serve` without a browser: safety (token, Host, Origin, path escapes,
oversized and too-fast frames), bad command lines, the pages, and — with Whisper — the
web trainee's level check, answer cap and a dropped connection keeping the call."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mini_persona import mini_persona

from voice_sim.errors import InputError
from voice_sim.serve import MAX_MESSAGE_BYTES, ServeConfig, check_config, is_loopback, serving

PERSONAS = Path(__file__).parents[1] / "personas"
EXAMPLES = Path(__file__).parent / "example_suite"


class _UnusedEngine:
    """The server holds an engine for its calls; these tests start none."""

    name = "unused"
    model = "unused"

    def transcribe(self, samples: Any) -> Any:
        raise AssertionError("no call is started in this test")

    def stream(self) -> Any:
        raise AssertionError("no call is started in this test")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


@pytest.fixture
def server(tmp_path: Path) -> Any:
    (tmp_path / "sessions" / "20261201-120000-mini").mkdir(parents=True)
    (tmp_path / "sessions" / "20261201-120000-mini" / "session.json").write_text(
        json.dumps({"persona": "mini"}))
    (tmp_path / "sessions" / "20261201-120000-mini" / "report.html").write_text(
        "<!DOCTYPE html><html><body>\n<p>report</p></body></html>")
    (tmp_path / "sessions" / "escape").symlink_to("/etc")
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "mini.yaml").write_text(mini_persona("mini"))
    config = ServeConfig(port=0, sessions=tmp_path / "sessions", data=tmp_path / "data",
                         personas=(tmp_path / "personas",))
    with serving(config, _UnusedEngine()) as s:
        yield s


def _ws(url: str, origin: str | None, cookie: str | None = None, **kw: Any) -> Any:
    from websockets.sync.client import connect

    headers = {"Origin": origin} if origin else {}
    if cookie:
        headers["Cookie"] = cookie
    return connect(url, additional_headers=headers, open_timeout=10, **kw)


def test_pages_have_a_csp_that_forbids_network_loads(server: Any) -> None:
    for path in ("", "call/mini", "trainers", "history"):
        code, body, headers = _get(server.url + path)
        assert code == 200, (path, body[:200])
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "http" not in csp, csp
        assert b"<script>" not in body  # no inline script: only /static/ files
    code, body, headers = _get(server.url + "sessions/20261201-120000-mini/report.html")
    assert code == 200 and b'href="/call/mini"' in body
    assert "script-src" not in headers["Content-Security-Policy"]  # reports run no script


def test_loopback_checks_the_host_header(server: Any) -> None:
    assert _get(server.url)[0] == 200
    code, body, _ = _get(server.url, {"Host": f"attacker.example:{server.port}"})
    assert code == 403 and b"not this server" in body


def test_token_is_required_on_every_request(tmp_path: Path) -> None:
    token = "t" * 10 + "0123456789ab"
    config = ServeConfig(port=0, token=token, sessions=tmp_path / "s", data=tmp_path / "d",
                         personas=(PERSONAS,))
    with serving(config, _UnusedEngine()) as s:
        base = s.url.split("?")[0]
        assert s.url.endswith(f"?token={token}")
        for path in ("", "trainers", "static/call.js", "call/double-billing"):
            code, body, _ = _get(base + path)
            assert code == 403 and b"token" in body, path
            assert _get(base + path + "?token=wrong" + "x" * 16)[0] == 403
        code, _, headers = _get(s.url)
        assert code == 200
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert _get(base + "trainers", {"Cookie": cookie})[0] == 200
        ws_url = base.replace("http", "ws") + "ws/call/double-billing"
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus) as e:
            _ws(ws_url, base.rstrip("/"))
        assert e.value.response.status_code == 403
        with _ws(ws_url, base.rstrip("/"), cookie) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"


def test_check_config() -> None:
    assert check_config("127.0.0.1", 8765, None) is None
    made = check_config("0.0.0.0", 8765, None)
    assert made is not None and len(made) >= 16
    assert check_config("0.0.0.0", 8765, "a" * 20) == "a" * 20
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("0.0.0.0")
    for host, port, token, word in (("127.0.0.1", 0, None, "--port"),
                                    ("127.0.0.1", 70000, None, "--port"),
                                    ("no such host", 8765, None, "--host"),
                                    ("0.0.0.0", 8765, "short", "--token"),
                                    ("0.0.0.0", 8765, "x" * 16 + "<>", "--token")):
        with pytest.raises(InputError, match=word):
            check_config(host, port, token)


def _serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voice_sim", "serve", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_bad_input_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _serve_cli("--port", str(port))
    assert r.returncode == 2 and "in use" in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    for args, word in ((["--host", "300.1.2.3"], "--host"),
                       (["--host", "0.0.0.0", "--token", "abc"], "--token"),
                       (["--port", "0"], "--port")):
        r = _serve_cli(*args)
        assert r.returncode == 2 and word in r.stderr, r
        assert len(r.stderr.strip().splitlines()) == 1


def test_websocket_origin_is_checked(server: Any) -> None:
    from websockets.exceptions import InvalidStatus

    url = server.url.replace("http", "ws") + "ws/call/mini"
    for origin in ("http://attacker.example", f"http://localhost.attacker:{server.port}",
                   None):
        with pytest.raises(InvalidStatus) as e:
            _ws(url, origin)
        assert e.value.response.status_code == 403, origin
    with _ws(url, server.url.rstrip("/")) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "ready", "persona": "mini",
                                                   "last_baseline": False}


@pytest.mark.parametrize("path", [
    "sessions/..%2F..%2F..%2Fetc/passwd",
    "sessions/%2e%2e/%2e%2e",
    "sessions/20261201-120000-mini/..%2Fsession.json",
    "sessions/20261201-120000-mini/.hidden",
    "sessions/escape/passwd",  # a symlink out of the sessions folder
    "sessions/20261201-120000-mini/session.json%00.wav",
    "static/..%2Fserve.py",
    "static/%2e%2e%2fserve.py",
    "static/../serve.py",
    "personas/..%2F..%2Fetc/lines/passwd.wav",
    "personas/mini/lines/..%2F..%2Fmini.wav",
])
def test_no_path_escapes(server: Any, path: str) -> None:
    code, body, _ = _get(server.url + path)
    assert code == 404, (path, body[:200])
    assert b"root:" not in body and b"import" not in body


def test_served_files_inside_their_folders(server: Any) -> None:
    assert _get(server.url + "sessions/20261201-120000-mini/session.json")[0] == 200
    code, _, headers = _get(server.url + "static/call.js")
    assert code == 200 and headers["Content-Type"].startswith("text/javascript")


def test_oversized_frames_close_the_socket(server: Any) -> None:
    from websockets.exceptions import ConnectionClosed

    url = server.url.replace("http", "ws") + "ws/call/mini"
    for big in (b"\0" * (MAX_MESSAGE_BYTES + 2), json.dumps({"type": "x" * MAX_MESSAGE_BYTES})):
        with _ws(url, server.url.rstrip("/"), max_size=None) as ws:
            ws.recv(timeout=10)
            ws.send(big)
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=10)
            assert ws.close_code == 1009


def test_audio_faster_than_real_time_is_refused(server: Any) -> None:
    from websockets.exceptions import ConnectionClosed

    url = server.url.replace("http", "ws") + "ws/call/mini"
    with _ws(url, server.url.rstrip("/")) as ws:
        ws.recv(timeout=10)
        second = np.zeros(16000, "<i2").tobytes()  # 1 s per frame, under the size cap
        with pytest.raises(ConnectionClosed):
            for _ in range(10):
                ws.send(second)
            while True:
                ws.recv(timeout=10)
        assert ws.close_code == 1008


def test_controls_cap_the_call() -> None:
    from voice_sim.serve_call import Controls

    c = Controls(deadline=time.perf_counter() + 0.05)
    c.press()
    assert c.poll() == "key" and c.poll() is None
    time.sleep(0.1)
    assert c.poll() == "quit" and c.poll() == "quit" and c.quit.is_set()


def test_call_graph_svg_for_every_shipped_persona() -> None:
    from voice_sim.persona import find_personas
    from voice_sim.serve_pages import graph_svg

    personas = find_personas([PERSONAS])
    assert len(personas) >= 9
    for p in personas:
        svg = ET.fromstring(graph_svg(p))
        ns = "{http://www.w3.org/2000/svg}"
        nodes = svg.findall(f"{ns}g")
        ends = {line.end for line in p.lines.values() if line.end}
        assert len(nodes) >= len(p.lines) + len(ends), p.id
        labels = {n.find(f"{ns}text").text for n in nodes}  # type: ignore[union-attr]
        assert ends <= labels and p.start[:19] in {(x or "")[:19] for x in labels}
        assert len(svg.findall(f"{ns}path")) >= len(p.lines) - 1


# --- with Whisper ----------------------------------------------------------------------

def _fed(samples: np.ndarray, then_silence_s: float = 1.5) -> Any:
    """A streamed microphone a thread feeds ``samples`` into at four times real time,
    starting once the capture is listening (as the page streams during a turn)."""
    import threading

    from voice_sim.serve_call import StreamedMic

    mic = StreamedMic(ahead_s=1e9)
    x = np.concatenate([np.zeros(8000, np.float32), samples,
                        np.zeros(int(then_silence_s * 16000), np.float32)])
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()

    def feed() -> None:
        time.sleep(0.3)
        for i in range(0, len(pcm), 640):
            mic.push(pcm[i:i + 640])
            time.sleep(0.0015)

    threading.Thread(target=feed, daemon=True).start()
    return mic


@pytest.mark.slow
@pytest.mark.model
def test_level_check_in_the_page(whisper_engine: Any) -> None:
    from dataclasses import replace

    from voice_sim.audio import load_audio
    from voice_sim.practice import live_turn_config
    from voice_sim.serve_call import Controls, capture_baseline

    calm = load_audio(EXAMPLES / "calm-baseline.wav")
    calm = calm / np.abs(calm).max() * 0.5
    verdicts = {}
    for name, x in (("fine", calm), ("quiet", calm * 0.02), ("clipped", calm * 8)):
        controls = Controls(deadline=time.perf_counter() + 60)
        config = replace(live_turn_config(), no_answer_s=3.0)  # quick "too quiet"
        _, baseline, level = capture_baseline(_fed(x), whisper_engine, config, controls)
        verdicts[name] = level["verdict"]
        assert (baseline is not None) == (level["verdict"] == "fine") or name == "clipped"
    assert verdicts == {"fine": "fine", "quiet": "too quiet", "clipped": "clipped"}


@pytest.mark.slow
@pytest.mark.model
def test_answer_length_is_capped(whisper_engine: Any, tmp_path: Path) -> None:
    from voice_sim.audio import load_audio
    from voice_sim.persona import load_persona
    from voice_sim.practice import live_turn_config
    from voice_sim.serve_call import Controls, WebTrainee

    speech = load_audio(EXAMPLES / "good-call" / "02.wav")  # 9 s
    sent: list[Any] = []
    trainee = WebTrainee(_fed(speech), whisper_engine, live_turn_config(max_answer_s=2.0),
                         Controls(deadline=time.perf_counter() + 60), sent.append)
    line = load_persona("double-billing").start_line
    answer = trainee.answer(1, line, tmp_path / "a.wav")
    assert answer is not None and answer.end_reason == "max_length"
    assert len(answer.samples) <= 2.0 * 16000
    kinds = [m["type"] for m in sent]
    assert kinds[0] == "listening" and kinds[-1] == "heard"
    assert set(kinds[1:-1]) <= {"caption"}


@pytest.mark.slow
@pytest.mark.model
def test_browser_answer_waits_out_a_mid_answer_pause(whisper_engine: Any,
                                                     tmp_path: Path) -> None:
    """The browser call ends answers as ``practice`` does: an unfinished phrase and a
    1.1 s pause do not end the turn (a 0.8 s cap on every answer once did), the
    finished sentence after it does."""
    from voice_sim.audio import load_audio
    from voice_sim.persona import load_persona
    from voice_sim.serve_call import CallLimits, Controls, WebTrainee
    from voice_sim.speak import cached_render

    first = load_audio(cached_render("Okay, so what I can do for you is"))
    second = load_audio(cached_render("refund the second payment to your card today."))
    speech = np.concatenate([first, np.zeros(int(1.1 * 16000), np.float32), second])
    sent: list[Any] = []
    trainee = WebTrainee(_fed(speech, then_silence_s=3.0), whisper_engine,
                         CallLimits().turn_config(),
                         Controls(deadline=time.perf_counter() + 60), sent.append)
    answer = trainee.answer(1, load_persona("double-billing").start_line, tmp_path / "a.wav")
    assert answer is not None and answer.end_reason == "silence"
    assert len(answer.samples) >= len(speech) - 0.2 * 16000  # the second part is in it
    if answer.pending is not None:  # planned on the words so far; the final decoded now
        assert answer.final_go is not None
        answer.final_go.set()
        text = answer.pending.result(timeout=60).text
    else:
        assert answer.transcript is not None
        text = answer.transcript.text
    assert "refund" in text.lower()


def _stream(ws: Any, samples: np.ndarray, real_time: bool) -> None:
    """Send audio as the page does: 20 ms frames of 16-bit PCM, in real time or at once
    (at most AHEAD_S seconds of it)."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    for i in range(0, len(pcm), 640):
        ws.send(pcm[i:i + 640])
        if real_time:
            time.sleep(0.02)


def _until(ws: Any, kind: str, played: bool = True) -> list[dict[str, Any]]:
    """Messages up to the first of ``kind``; each line's audio is 'played' at once."""
    seen = []
    while True:
        msg = ws.recv(timeout=30)
        if isinstance(msg, bytes):
            assert msg[16:20] == b"RIFF"  # a customer line: its key, then WAV
            continue
        ev = json.loads(msg)
        assert ev["type"] != "error", ev
        seen.append(ev)
        if ev["type"] == "play" and played:
            ws.send(json.dumps({"type": "played"}))
        if ev["type"] == kind:
            return seen


@pytest.mark.slow
@pytest.mark.model
def test_dropped_connection_ends_the_call_as_quit_and_keeps_it(whisper_engine: Any,
                                                               tmp_path: Path) -> None:
    """The page vanishes during the second answer: the call ends as `quit`, as Ctrl-C
    ends it; the first turn, the customer's lines and the second answer's audio so far
    are in the session folder, and the report and the history have the call."""
    import soundfile as sf

    from voice_sim import history
    from voice_sim.audio import load_audio

    sessions = tmp_path / "sessions"
    config = ServeConfig(port=0, sessions=sessions, data=tmp_path / "d",
                         personas=(PERSONAS,))
    first = load_audio(EXAMPLES / "good-call" / "01.wav")
    second = load_audio(EXAMPLES / "good-call" / "02.wav")[:int(1.5 * 16000)]
    with serving(config, whisper_engine) as s:
        url = s.url.replace("http", "ws") + "ws/call/double-billing"
        with _ws(url, s.url.rstrip("/"), max_size=None) as ws:
            _until(ws, "ready")
            ws.send(json.dumps({"type": "start", "baseline": "none"}))
            _until(ws, "listening")
            time.sleep(0.3)  # the capture has begun (audio before it is room noise)
            _stream(ws, np.concatenate([first, np.zeros(int(1.2 * 16000), np.float32)]),
                    real_time=True)
            seen = _until(ws, "listening")  # the first answer scored, the next line sent
            assert [e["type"] for e in seen].count("line") == 1
            time.sleep(0.3)
            _stream(ws, second, real_time=False)
            time.sleep(0.5)  # heard by the server: then the page is gone
        deadline = time.monotonic() + 20
        while not list(sessions.glob("*/report.html")) and time.monotonic() < deadline:
            time.sleep(0.1)
    (d,) = [p for p in sessions.iterdir() if p.is_dir()]
    record = json.loads((d / "session.json").read_text())
    assert (record["status"], record["outcome"]) == ("complete", "quit")
    assert len(record["turns"]) == 1 and "sorry" in record["turns"][0]["transcript"].lower()
    for name in ("turn-01-customer.wav", "turn-01-answer.wav", "turn-02-customer.wav"):
        assert sf.info(str(d / name)).duration > 1.0, name
    assert sf.info(str(d / "turn-02-answer.wav")).duration >= 1.4
    assert (d / "report.html").is_file()
    assert str(d.resolve()) in {x.session_dir for x in history.load_history()}
