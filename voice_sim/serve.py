"""``voice-sim serve``: the call engine as a local web app (aiohttp).

Pages: home (``/``), before and during a call (``/call/ID``, whose script speaks to
``/ws/call/ID``), trainers (``/trainers``), history (``/history``), a session's report
and audio (``/sessions/NAME/FILE``), a persona line's audio
(``/personas/ID/lines/LINE.wav``) and the page scripts (``/static/FILE``, shipped in
the package: no CDN, nothing from the network).

Safety, in one place (:func:`_guard` and :func:`_ws_allowed`):

* Bound to 127.0.0.1 unless ``--host`` says otherwise; then a token (printed at start)
  is required on every request — as ``?token=`` once (it becomes a same-site cookie)
  or the cookie. On loopback the Host header must name the loopback address and port,
  so a web page elsewhere cannot reach the server through a rebinding DNS name.
* Every WebSocket's Origin must be this server; a message over
  :data:`MAX_MESSAGE_BYTES` closes the socket (1009), audio arriving faster than real
  time closes it (1008), and at most :data:`MAX_CALLS` calls run at once; answers
  and calls have a maximum length (:class:`voice_sim.serve_call.CallLimits`).
* Files are served only from the sessions folder, the personas (their lines) and the
  package's static folder, by names matching :data:`_NAME`, resolved and checked to
  lie inside their folder.
* A Content-Security-Policy on every response forbids inline script and every load
  from anywhere but this server.

Each call is :func:`voice_sim.serve_call.run_web_call` on a thread of its own; all
calls share the one loaded speech engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from voice_sim.errors import InputError, VoiceSimError

if TYPE_CHECKING:
    from voice_sim.delivery import Baseline
    from voice_sim.engines import Engine
    from voice_sim.persona import Persona, PersonaFile
    from voice_sim.serve_call import CallLimits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

MAX_MESSAGE_BYTES = 32 * 1024
"""Bytes: the largest WebSocket message taken (1 s of 16 kHz 16-bit audio is 32,000;
the page sends 20 ms frames of 640)."""

MAX_CALLS = 4
"""Calls at once (each holds a thread and its share of two cores)."""

TOKEN_COOKIE = "voice_sim_token"
MIN_TOKEN_CHARS = 16

LAST_BASELINE = "last-baseline.wav"
"""The most recent calm reading recorded in the page, in the data folder."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
"""A file or folder name that may be served: no separators, no leading dot."""

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
"""The app's pages: scripts, styles, audio and sockets from this server only."""

REPORT_CSP = ("default-src 'none'; img-src data:; media-src data: 'self'; "
              "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
"""Reports and the history page (as :data:`voice_sim.report.CSP`): no script at all."""

STATIC_DIR = Path(__file__).resolve().parent / "web"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``voice-sim serve`` was told."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    """0: any free port (tests)."""
    token: str | None = None
    """Required on every request when set (always set off loopback)."""
    sessions: Path | None = None
    """Where session folders go (default :func:`voice_sim.paths.sessions_dir`)."""
    personas: tuple[Path, ...] | None = None
    """Persona folders (default :func:`voice_sim.paths.personas_dirs`)."""
    data: Path | None = None
    """Where the last calm reading is kept (default :func:`voice_sim.paths.data_dir`)."""
    max_answer_s: float = 60.0
    max_call_s: float = 20 * 60.0
    turn_end: str = "normal"
    """The end-of-turn profile (``--turn-end``: fast, normal, patient)."""
    silence_end_s: float | None = None
    """``--silence-end``: the most seconds of silence before an answer ends (None: the
    profile's longest wait)."""

    def limits(self) -> CallLimits:
        """The caps and turn settings of each browser call."""
        from voice_sim.serve_call import CallLimits

        return CallLimits(max_answer_s=self.max_answer_s, max_call_s=self.max_call_s,
                          turn_end=self.turn_end, silence_end_s=self.silence_end_s)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_config(host: str, port: int, token: str | None) -> str | None:
    """Validate the command line; return the token to require (made up off loopback
    when none was given). Raises InputError with the fix."""
    if not 1 <= port <= 65535:
        raise InputError(f"--port {port}: must be 1-65535", hint=f"e.g. --port {DEFAULT_PORT}")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise InputError(f"--host {host!r}: not an address of this machine ({e})",
                         hint="use 127.0.0.1 (this machine only) or 0.0.0.0 (the network)"
                         ) from e
    if token is not None:
        if len(token) < MIN_TOKEN_CHARS or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
            raise InputError(f"--token: {len(token)} characters; needs at least "
                             f"{MIN_TOKEN_CHARS} letters, digits, '-' or '_'",
                             hint="leave --token out to have one made and printed")
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(24)


# --- the app ---------------------------------------------------------------------------

@dataclass
class _State:
    """What the running server holds (one per app)."""

    config: ServeConfig
    engine: Engine
    rubric: Any
    sessions: Path
    personas: tuple[Path, ...]
    data: Path
    port: int = 0
    """The port actually bound (the config's may be 0)."""
    calls: set[Any] = field(default_factory=set)
    _scan: tuple[tuple[tuple[str, float], ...], list[PersonaFile]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def persona_files(self) -> list[PersonaFile]:
        """Every persona file, valid or not; re-checked only when a file changed."""
        from voice_sim.persona import scan_personas

        stamp = tuple(sorted((str(f), f.stat().st_mtime) for d in self.personas
                             if d.is_dir() for f in d.iterdir() if f.suffix in (".yaml", ".yml")
                             or f.is_dir()))
        with self._lock:
            if self._scan is not None and self._scan[0] == stamp:
                return self._scan[1]
        found = scan_personas(self.personas)
        with self._lock:
            self._scan = (stamp, found)
        return found

    def persona(self, pid: str) -> Persona | None:
        """A valid persona by id."""
        for pf in self.persona_files():
            if pf.persona is not None and pf.persona.id == pid:
                return pf.persona
        return None


_APP_KEY = web.AppKey("voice_sim", _State)
"""Where the application keeps its :class:`_State`."""


def _state(request: web.Request) -> _State:
    state: _State = request.app[_APP_KEY]
    return state


def _html(text: str, status: int = 200, csp: str = PAGE_CSP) -> web.Response:
    from aiohttp import web

    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": csp})


def _refuse(status: int, message: str) -> web.Response:
    from voice_sim.serve_pages import error_page

    return _html(error_page(status, message), status=status)


def _allowed_hosts(config: ServeConfig, port: int) -> set[str]:
    names = {config.host, "localhost", "127.0.0.1", "[::1]"}
    return {f"{n}:{port}" for n in names} | ({n for n in names} if port == 80 else set())


def _make_guard(config: ServeConfig) -> Any:
    from aiohttp import web

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request],
                                                             Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        port = _state(request).port
        if config.token is None and request.host not in _allowed_hosts(config, port):
            return _refuse(403, f"Host {request.host!r} is not this server's address "
                           f"(open http://127.0.0.1:{port}/)")
        given = None
        if config.token is not None:
            given = request.query.get("token")
            have = given or request.cookies.get(TOKEN_COOKIE) or ""
            if not hmac.compare_digest(have.encode(), config.token.encode()):
                return _refuse(403, "the access token is missing or wrong: open the address "
                               "`voice-sim serve` printed, with its ?token=")
        resp = await handler(request)
        resp.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        if given and not resp.prepared:
            resp.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="Strict")
        return resp

    return guard


def build_app(config: ServeConfig, engine: Engine, rubric: Any = None) -> web.Application:
    """The aiohttp application (routes, the guard, the shared engine)."""
    from aiohttp import web

    from voice_sim.paths import data_dir, personas_dirs, sessions_dir

    app = web.Application(middlewares=[_make_guard(config)], client_max_size=64 * 1024)
    app[_APP_KEY] = _State(
        config=config, engine=engine, rubric=rubric,
        sessions=(config.sessions or sessions_dir()),
        personas=config.personas if config.personas is not None else tuple(personas_dirs()),
        data=config.data or data_dir(), port=config.port)
    app.router.add_get("/", home)
    app.router.add_get("/call/{pid}", call_page)
    app.router.add_get("/ws/call/{pid}", call_socket)
    app.router.add_get("/trainers", trainers)
    app.router.add_get("/history", history_page)
    app.router.add_get("/sessions/{name}/{file}", session_file)
    app.router.add_get("/personas/{pid}/lines/{lid}.wav", line_audio)
    app.router.add_get("/static/{file}", static)
    app.on_shutdown.append(_end_calls)
    return app


def safe_child(root: Path, *parts: str) -> Path | None:
    """``root/parts…`` when every part is a plain name and the result, symlinks
    resolved, is an existing file inside ``root``; else None."""
    if not all(_NAME.match(p) and ".." not in p for p in parts):
        return None
    base = root.resolve()
    p = base.joinpath(*parts).resolve()
    return p if p.is_relative_to(base) and p.is_file() else None


# --- pages -------------------------------------------------------------------------------

def _report_urls(state: _State, dirs: list[str]) -> dict[str, str]:
    root = state.sessions.resolve()
    out = {}
    for d in dirs:
        p = Path(d)
        if p.parent == root and (p / "report.html").is_file():
            out[d] = f"/sessions/{p.name}/report.html"
    return out


def _sessions(state: _State) -> list[Any]:
    from voice_sim import history

    try:
        return history.load_history()
    except VoiceSimError:
        return []  # a damaged history must not stop practice; `voice-sim history` says why


async def home(request: web.Request) -> web.Response:
    """Personas, recent sessions and progress per step."""
    from voice_sim.serve_pages import home_page

    state = _state(request)
    files, sessions = await asyncio.to_thread(lambda: (state.persona_files(), _sessions(state)))
    urls = _report_urls(state, [s.session_dir for s in sessions])
    return _html(home_page(files, sessions, urls))


async def call_page(request: web.Request) -> web.Response:
    """Before the call, and the call."""
    from voice_sim.serve_pages import call_page as render
    from voice_sim.session import BASELINE_SENTENCE

    state = _state(request)
    pid = request.match_info["pid"]
    persona = await asyncio.to_thread(state.persona, pid)
    if persona is None:
        return _refuse(404, f"no valid persona '{pid}' (see the Trainers page)")
    return _html(render(persona, has_last_baseline=(state.data / LAST_BASELINE).is_file(),
                        baseline_sentence=BASELINE_SENTENCE, ws_path=f"/ws/call/{persona.id}"))


def _shown(state: _State, path: Path) -> str:
    for d in state.personas:
        with contextlib.suppress(ValueError):
            return str(path.resolve().relative_to(d.resolve().parent))
    return path.name


async def trainers(request: web.Request) -> web.Response:
    """Persona files, their problems, lines and graphs."""
    from voice_sim.serve_pages import trainers_page

    state = _state(request)
    files = await asyncio.to_thread(state.persona_files)
    return _html(trainers_page(files, {str(f.path): _shown(state, f.path) for f in files}))


async def history_page(request: web.Request) -> web.Response:
    """The history page of ``voice-sim history --html``, served."""
    from voice_sim.history import render_history

    state = _state(request)
    sessions = await asyncio.to_thread(_sessions, state)
    text = render_history(sessions)
    for d, url in _report_urls(state, [s.session_dir for s in sessions]).items():
        text = text.replace((Path(d) / "report.html").as_uri(), url)
    return _html(text, csp=REPORT_CSP)


async def session_file(request: web.Request) -> web.StreamResponse:
    """A file of a session folder: its report (with a way back in) or its audio."""
    from aiohttp import web

    state = _state(request)
    name, fname = request.match_info["name"], request.match_info["file"]
    path = safe_child(state.sessions, name, fname)
    if path is None or path.suffix not in (".html", ".wav", ".json"):
        return _refuse(404, "no such session file")
    if path.suffix == ".html":
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        return _html(_with_way_back(text, path.parent), csp=REPORT_CSP)
    return web.FileResponse(path, headers={"Content-Security-Policy": REPORT_CSP})


def _with_way_back(report: str, session: Path) -> str:
    """The report with a bar on top: try the same customer again, or go home."""
    from html import escape

    try:
        record = json.loads((session / "session.json").read_text(encoding="utf-8"))
        pid = str(record.get("persona") or "")
    except (OSError, ValueError):
        pid = ""
    again = (f'<a id="try-again" href="/call/{escape(pid, quote=True)}">Try this customer '
             "again</a> · " if _NAME.match(pid) else "")
    bar = (f'<nav style="padding:10px 16px;background:#111827;font:15px sans-serif">'
           f'<span style="color:#fff">{again}<a href="/">Home</a></span></nav>')
    bar = bar.replace("<a ", '<a style="color:#93c5fd" ')
    return report.replace("<body>\n", "<body>\n" + bar + "\n", 1)


async def line_audio(request: web.Request) -> web.StreamResponse:
    """A persona line's audio: its recording, or the TTS render (cached)."""
    from aiohttp import web

    from voice_sim.speak import cached_render

    state = _state(request)
    pid, lid = request.match_info["pid"], request.match_info["lid"]
    persona = await asyncio.to_thread(state.persona, pid)
    line = persona.lines.get(lid) if persona is not None else None
    if persona is None or line is None:
        return _refuse(404, "no such persona line")
    try:
        path = line.audio or await asyncio.to_thread(cached_render, line.text, persona.voice)
        assert path is not None
    except VoiceSimError as e:
        return _refuse(500, e.line())
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


async def static(request: web.Request) -> web.StreamResponse:
    """The page scripts and stylesheet, from the package."""
    from aiohttp import web

    path = safe_child(STATIC_DIR, request.match_info["file"])
    if path is None or path.suffix not in STATIC_TYPES:
        return _refuse(404, "no such file")
    return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix]})


# --- the call socket -------------------------------------------------------------------

def _ws_allowed(request: web.Request) -> bool:
    """The Origin of a WebSocket must be this server (as the browser reached it)."""
    origin = request.headers.get("Origin")
    return origin is not None and origin in (f"http://{request.host}",
                                             f"https://{request.host}")


class BrowserCall:
    """One WebSocket's call: its microphone, controls, calm reading and call thread."""

    def __init__(self, state: _State, persona: Persona, send: Callable[[Any], None]) -> None:
        from voice_sim.serve_call import Controls, PageAudio, StreamedMic

        self.state, self.persona, self.send = state, persona, send
        self.mic = StreamedMic()
        self.controls = Controls(deadline=time.perf_counter() + state.config.max_call_s)
        self.audio = PageAudio(send, self.controls)
        """The page's loudspeaker: the page's ``playing``/``played`` go to it."""
        self.thread: threading.Thread | None = None
        self.recorded: Baseline | None = None
        self.started = False
        self.busy = False
        """A step (the calm reading or the call) is running."""
        # The last calm reading is analysed while the trainee reads the briefing, so
        # choosing it does not delay the customer's first line.
        from concurrent.futures import Future

        self._last: Future[Baseline | None] = Future()
        threading.Thread(target=self._prepare_last, daemon=True,
                         name="voice-sim-baseline").start()

    def _prepare_last(self) -> None:
        try:
            last = self._last_baseline()
        except BaseException as e:
            self._last.set_exception(e)
            return
        self._last.set_result(last)
        if last is not None:
            self.send({"type": "last_baseline_ready"})

    def on_message(self, msg: Any) -> None:
        """One control message from the page."""
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind in ("playing", "played"):
            self.audio.on_message(msg)
        elif kind == "end_answer":
            self.controls.press()
        elif kind == "quit":
            self.controls.quit.set()
        elif kind == "baseline":
            self._run(self._baseline)
        elif kind == "start" and not self.started:
            choice = msg.get("baseline")
            coach = "live" if msg.get("coach") == "live" else "after"
            if choice not in ("recorded", "last", "none"):
                self.send({"type": "error", "message": "start: baseline must be recorded, "
                           "last or none"})
                return
            self.started = True
            self._run(lambda: self._call(str(choice), coach))
        else:
            self.send({"type": "error", "message": f"unknown message {str(kind)[:40]!r}"})

    def _run(self, work: Callable[[], dict[str, Any] | None]) -> None:
        """Run one step (the calm reading, or the call) on a thread of its own; its last
        message goes to the page once the next step may start."""
        if self.busy:
            self.send({"type": "error", "message": "busy: wait for the current step"})
            return
        self.busy = True

        def guarded() -> None:
            last: dict[str, Any] | None = None
            try:
                last = work()
            except VoiceSimError as e:
                last = {"type": "error", "message": e.line()}
            except Exception as e:
                # Said to the page and to the terminal; the session folder is already
                # saved by run_call (status failed) before the error gets here.
                print(f"voice-sim serve: call failed: {type(e).__name__}: {e}", file=sys.stderr)
                last = {"type": "error", "message": f"internal error: {type(e).__name__}"}
            finally:
                self.busy = False
            if last is not None:
                self.send(last)

        self.thread = threading.Thread(target=guarded, daemon=True, name="voice-sim-call")
        self.thread.start()

    def _baseline(self) -> dict[str, Any] | None:
        from voice_sim.audio import write_wav
        from voice_sim.practice import live_turn_config
        from voice_sim.serve_call import capture_baseline
        from voice_sim.session import Quit

        try:
            samples, baseline, level = capture_baseline(
                self.mic, self.state.engine, live_turn_config(max_answer_s=30.0),
                self.controls)
        except Quit:
            return None
        if baseline is not None:
            self.recorded = baseline
            write_wav(self.state.data / LAST_BASELINE, samples)
        return level

    def _call(self, choice: str, coach: str) -> dict[str, Any] | None:
        from voice_sim.serve_call import CallSetup, run_web_call

        baseline, source = None, None
        if choice == "recorded":
            if self.recorded is None:
                self.started = False
                return {"type": "error", "message": "no calm reading recorded yet: record "
                        "one, or choose another baseline"}
            baseline, source = self.recorded, "recorded in the browser"
        elif choice == "last":
            baseline, source = self._last.result(), "last calm reading recorded in the browser"
        setup = CallSetup(persona=self.persona, engine=self.state.engine, baseline=baseline,
                          baseline_source=source, coach=coach, out_root=self.state.sessions,
                          rubric=self.state.rubric)
        result = run_web_call(setup, self.mic, self.controls, self.send,
                              self.state.config.limits(), self.audio)
        return {"type": "done", "outcome": result.outcome, "score": result.score,
                "session": result.dir.name, "report": f"/sessions/{result.dir.name}/report.html"}

    def _last_baseline(self) -> Baseline | None:
        from voice_sim.audio import load_audio
        from voice_sim.delivery import Baseline

        path = self.state.data / LAST_BASELINE
        if not path.is_file():
            return None
        samples = load_audio(path)
        return Baseline.from_audio(samples, self.state.engine.transcribe(samples))

    def hang_up(self) -> None:
        """The page went away: end the call as ``quit`` (what was recorded stays)."""
        self.controls.quit.set()


async def call_socket(request: web.Request) -> web.StreamResponse:
    """The call's WebSocket: PCM frames and control messages in; events and line audio out."""
    from aiohttp import WSMsgType, web

    state = _state(request)
    if not _ws_allowed(request):
        return _refuse(403, "WebSocket from another origin refused")
    persona = await asyncio.to_thread(state.persona, request.match_info["pid"])
    if persona is None:
        return _refuse(404, "no such persona")
    if len(state.calls) >= MAX_CALLS:
        return _refuse(503, f"{MAX_CALLS} calls are running already: end one first")
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20.0)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    out: asyncio.Queue[Any] = asyncio.Queue()

    def send(msg: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
            loop.call_soon_threadsafe(out.put_nowait, msg)

    async def sender() -> None:
        while (msg := await out.get()) is not None:
            try:
                if isinstance(msg, bytes):
                    await ws.send_bytes(msg)
                else:
                    await ws.send_str(json.dumps(msg))
            except (ConnectionError, RuntimeError):
                return

    call = BrowserCall(state, persona, send)
    state.calls.add(call)
    task = asyncio.create_task(sender())
    send({"type": "ready", "persona": persona.id,
          "last_baseline": (state.data / LAST_BASELINE).is_file()})
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                if not call.mic.push(msg.data):
                    await ws.close(code=1008, message=b"audio faster than real time")
                    break
            elif msg.type == WSMsgType.TEXT:
                try:
                    call.on_message(json.loads(msg.data))
                except ValueError:
                    send({"type": "error", "message": "not JSON"})
            else:
                break
    finally:
        call.hang_up()
        if call.thread is not None:
            await asyncio.to_thread(call.thread.join)  # the session is saved before we go
        out.put_nowait(None)
        await task
        state.calls.discard(call)
    return ws


async def _end_calls(app: web.Application) -> None:
    """Server stopping (Ctrl-C): every call ends as ``quit`` and is saved."""
    state: _State = app[_APP_KEY]
    threads = []
    for call in list(state.calls):
        call.hang_up()
        if call.thread is not None:
            threads.append(call.thread)
    for t in threads:
        await asyncio.to_thread(t.join)


# --- running -----------------------------------------------------------------------------

class Server:
    """The app on a socket, on an event loop of its own thread (the CLI and the tests)."""

    def __init__(self, config: ServeConfig, engine: Engine, rubric: Any = None) -> None:
        self.config, self.engine, self.rubric = config, engine, rubric
        self.port = config.port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="voice-sim-serve")

    @property
    def url(self) -> str:
        """The address to open (with the token when one is required)."""
        host = self.config.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        tail = f"?token={self.config.token}" if self.config.token else ""
        return f"http://{shown}:{self.port}/{tail}"

    def start(self) -> Server:
        """Bind and serve; raises InputError when the address cannot be used."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:
            # Whatever stopped the server before it was ready is raised by start().
            self._error = self._error or e
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from aiohttp import web

        self._stop = asyncio.Event()
        app = build_app(self.config, self.engine, self.rubric)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            self._error = _bind_error(self.config, e)
            self._ready.set()
            return
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        app[_APP_KEY].port = self.port
        # The first page load must not pay for checking every persona file.
        await asyncio.to_thread(app[_APP_KEY].persona_files)
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        """End every call (saved as ``quit``) and stop serving."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def probe_port(host: str, port: int) -> None:
    """Raise the InputError :class:`Server` would, when ``host:port`` cannot be bound."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(info[0], socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(info[4])
        except OSError as e:
            raise _bind_error(ServeConfig(host=host, port=port), e) from e


def _bind_error(config: ServeConfig, e: OSError) -> InputError:
    import errno

    where = f"{config.host}:{config.port}"
    if e.errno == errno.EADDRINUSE:
        return InputError(f"--port {config.port}: {where} is in use already",
                          hint=f"stop what uses it, or pick another: --port {config.port + 1}")
    if e.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
        return InputError(f"--host {config.host}: cannot listen on {where} ({e.strerror})",
                          hint="use 127.0.0.1, or an address this machine has")
    return InputError(f"cannot listen on {where}: {e.strerror or e}",
                      hint="try another --host or --port")


@contextlib.contextmanager
def serving(config: ServeConfig, engine: Engine, rubric: Any = None) -> Iterator[Server]:
    """A running server for the duration of a ``with`` block."""
    server = Server(config, engine, rubric).start()
    try:
        yield server
    finally:
        server.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    """``voice-sim serve [--host H] [--port P] [--token T] [--open]``."""
    from voice_sim.engines import get_engine
    from voice_sim.rubric import load_rubric

    token = check_config(args.host, args.port, args.token)
    config = ServeConfig(host=args.host, port=args.port, token=token,
                         sessions=Path(args.out) if args.out else None,
                         turn_end=getattr(args, "turn_end", "normal"),
                         silence_end_s=getattr(args, "silence_end", None))
    config.limits().turn_config()  # checked now, not at the first call
    probe_port(args.host, args.port)  # a port in use is said now, not after the model loads
    rubric = load_rubric(getattr(args, "rubric", None))
    engine = get_engine(args.engine, args.model)  # once, shared by every call
    server = Server(config, engine, rubric).start()
    print(f"voice-sim serve: open {server.url}  (engine {engine.name}; Ctrl-C stops; "
          f"calls in progress are saved)", flush=True)
    if token and args.token is None:
        print(f"voice-sim serve: access token {token} — required on every request, because "
              f"--host {args.host} is reachable from other machines", flush=True)
    if args.open:
        import webbrowser

        if not webbrowser.open(server.url):
            print(f"voice-sim: no web browser found — open {server.url} yourself",
                  file=sys.stderr)
    try:
        while server._thread.is_alive():
            server._thread.join(timeout=0.5)
    except KeyboardInterrupt:
        print("\nvoice-sim serve: stopping; calls in progress are saved", file=sys.stderr)
    finally:
        server.stop()
    return 0
