"""Model discovery, resolution order, `voice-sim models fetch` and `voice-sim transcribe`.

Fetching runs against a real HTTP server on 127.0.0.1 serving zip archives built here.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import socket
import stat
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from voice_sim import models
from voice_sim.cli import main
from voice_sim.engines import select_engine
from voice_sim.errors import InputError, ModelError

NAME = "vosk-model-small-en-us-0.15"


# --- helpers -------------------------------------------------------------------------

def make_model(folder: Path, readme: str | None = None) -> Path:
    """A folder with the layout of an unpacked Vosk model (what discovery looks at)."""
    (folder / "am").mkdir(parents=True)
    (folder / "am" / "final.mdl").write_bytes(b"acoustic model")
    (folder / "conf").mkdir()
    (folder / "conf" / "model.conf").write_text("--sample-frequency=16000\n")
    if readme is not None:
        (folder / "README").write_text(readme)
    return folder


def make_whisper(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"weights")
    (folder / "config.json").write_text("{}")
    return folder


def model_zip(path: Path, top: str = NAME, extra: dict[str, bytes] | None = None) -> str:
    """Write a zip shaped like an official Vosk archive; return its SHA-256."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{top}/README", "US English model for mobile Vosk applications\n")
        zf.writestr(f"{top}/am/final.mdl", b"\x00acoustic" * 1000)
        zf.writestr(f"{top}/conf/model.conf", "--sample-frequency=16000\n")
        zf.writestr(f"{top}/graph/phones.txt", "SIL 1\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, folder it serves, request paths seen) of a local HTTP server."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            seen.append(self.path)

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Point the model search at two empty tmp folders: (audio_models, ~/.cache/vosk)."""
    local, cache = tmp_path / "audio_models", tmp_path / "cache-vosk"
    local.mkdir()
    cache.mkdir()
    monkeypatch.setattr(models, "models_dirs", lambda: [local, cache])
    monkeypatch.delenv("VOSK_MODEL_PATH", raising=False)
    return local, cache


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- fetch ---------------------------------------------------------------------------

def test_fetch_installs_good_archive(server: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base, www, seen = server
    sha = model_zip(www / "m.zip")
    dest = tmp_path / "dest"
    bar = io.StringIO()
    path = models.fetch(NAME, url=f"{base}/m.zip", sha256=sha, dest=dest, progress=bar)
    assert path == dest / NAME
    assert (path / "am" / "final.mdl").read_bytes() == b"\x00acoustic" * 1000
    assert (path / "conf" / "model.conf").is_file()
    assert os.listdir(dest) == [NAME]  # the archive and the temp folder are gone
    assert "100%" in bar.getvalue()
    info = models.describe(path, "test")
    assert info is not None and info.kind == "vosk" and info.language == "en-us"
    # A second fetch finds it installed and downloads nothing.
    seen.clear()
    assert models.fetch(NAME, url=f"{base}/m.zip", sha256=sha, dest=dest) == path
    assert seen == []


def test_fetch_official_url_from_env(server: tuple[str, Path, list[str]], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    base, www, seen = server
    model_zip(www / f"{NAME}.zip")
    monkeypatch.setenv(models.URL_BASE_ENV, base)
    # The known checksum is the official archive's, so this stand-in is refused.
    with pytest.raises(ModelError, match="checksum mismatch"):
        models.fetch(dest=tmp_path / "dest", progress=io.StringIO())
    assert seen == [f"/{NAME}.zip"]
    assert os.listdir(tmp_path / "dest") == []


def test_checksum_mismatch_leaves_nothing(server: tuple[str, Path, list[str]],
                                          tmp_path: Path) -> None:
    base, www, _ = server
    model_zip(www / "m.zip")
    dest = tmp_path / "dest"
    with pytest.raises(ModelError, match="checksum mismatch") as e:
        models.fetch(NAME, url=f"{base}/m.zip", sha256="0" * 64, dest=dest,
                     progress=io.StringIO())
    assert "nothing installed" in e.value.line()
    assert os.listdir(dest) == []


@pytest.mark.parametrize("entry", ["../escaped.txt", f"{NAME}/../../escaped.txt",
                                   "/tmp/escaped-abs.txt", "C:/escaped.txt"])
def test_path_escaping_entry_refused(server: tuple[str, Path, list[str]], tmp_path: Path,
                                     entry: str) -> None:
    base, www, _ = server
    sha = model_zip(www / "m.zip", extra={entry: b"pwned"})
    dest = tmp_path / "a" / "dest"
    with pytest.raises(ModelError, match="outside the model folder"):
        models.fetch(NAME, url=f"{base}/m.zip", sha256=sha, dest=dest, progress=io.StringIO())
    assert os.listdir(dest) == []
    assert not list(tmp_path.rglob("escaped*"))


def test_symlink_entry_refused(server: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base, www, _ = server
    archive = www / "m.zip"
    model_zip(archive)
    with zipfile.ZipFile(archive, "a") as zf:
        link = zipfile.ZipInfo(f"{NAME}/am/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = tmp_path / "dest"
    with pytest.raises(ModelError, match="symbolic link"):
        models.fetch(NAME, url=f"{base}/m.zip", sha256=sha, dest=dest, progress=io.StringIO())
    assert os.listdir(dest) == []


def test_oversized_archive_refused(server: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base, www, _ = server
    # 20 MB of zeros compresses to a few kB: a small zip bomb.
    sha = model_zip(www / "m.zip", extra={f"{NAME}/graph/HCLG.fst": bytes(20 << 20)})
    assert (www / "m.zip").stat().st_size < 1 << 20
    dest = tmp_path / "dest"
    with pytest.raises(ModelError, match="over the"):
        models.fetch(NAME, url=f"{base}/m.zip", sha256=sha, dest=dest,
                     max_unpacked_bytes=10 << 20, progress=io.StringIO())
    assert os.listdir(dest) == []


def test_archive_without_model_refused(server: tuple[str, Path, list[str]],
                                       tmp_path: Path) -> None:
    base, www, _ = server
    with zipfile.ZipFile(www / "m.zip", "w") as zf:
        zf.writestr("notes/readme.txt", "no model here")
    sha = hashlib.sha256((www / "m.zip").read_bytes()).hexdigest()
    with pytest.raises(ModelError, match="holds no Vosk model"):
        models.fetch(NAME, url=f"{base}/m.zip", sha256=sha, dest=tmp_path / "d",
                     progress=io.StringIO())
    assert os.listdir(tmp_path / "d") == []


def test_not_a_zip_refused(server: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base, www, _ = server
    (www / "m.zip").write_bytes(b"<html>not found</html>")
    sha = hashlib.sha256(b"<html>not found</html>").hexdigest()
    with pytest.raises(ModelError, match="not a zip archive"):
        models.fetch(NAME, url=f"{base}/m.zip", sha256=sha, dest=tmp_path / "d",
                     progress=io.StringIO())


def test_http_404(server: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base, _, _ = server
    with pytest.raises(ModelError, match="HTTP 404"):
        models.fetch(NAME, url=f"{base}/missing.zip", dest=tmp_path / "d",
                     progress=io.StringIO())
    assert os.listdir(tmp_path / "d") == []


def test_offline_is_one_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/{NAME}.zip"
    with pytest.raises(ModelError) as e:
        models.fetch(NAME, url=url, dest=tmp_path / "d", progress=io.StringIO())
    line = e.value.line()
    assert "cannot download" in line and "offline" in line and "\n" not in line
    assert os.listdir(tmp_path / "d") == []


def test_interrupt_mid_download_leaves_nothing(server: tuple[str, Path, list[str]],
                                               tmp_path: Path) -> None:
    base, www, _ = server
    sha = model_zip(www / "m.zip", extra={f"{NAME}/graph/big": os.urandom(3 << 20)})

    class CtrlC(io.StringIO):
        """A progress stream whose second update is a Ctrl-C."""

        calls = 0

        def write(self, s: str) -> int:
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return super().write(s)

    dest = tmp_path / "dest"
    with pytest.raises(KeyboardInterrupt):
        models.fetch(NAME, url=f"{base}/m.zip", sha256=sha, dest=dest, progress=CtrlC())
    assert os.listdir(dest) == []


def test_fetch_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown model"):
        models.fetch("vosk-model-xx-9", dest=tmp_path)
    with pytest.raises(InputError, match="--sha256 is required"):
        models.fetch("vosk-model-xx-9", url="http://127.0.0.1:1/x.zip", dest=tmp_path)
    with pytest.raises(InputError, match="64 hex"):
        models.fetch(NAME, sha256="abc", dest=tmp_path)
    with pytest.raises(InputError, match="letters, digits"):
        models.fetch("../evil", url="http://127.0.0.1:1/x.zip", sha256="0" * 64, dest=tmp_path)


def test_fetch_cli(server: tuple[str, Path, list[str]], tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    base, www, _ = server
    sha = model_zip(www / "m.zip")
    dest = tmp_path / "dest"
    argv = ["models", "fetch", NAME, "--url", f"{base}/m.zip", "--dest", str(dest)]
    assert main([*argv, "--sha256", sha]) == 0
    out, err = capsys.readouterr()
    assert f"installed in {dest / NAME}" in out
    assert f"set VOSK_MODEL_PATH={dest}" in err  # a --dest outside the searched folders
    assert main([*argv[:-2], "--dest", str(tmp_path / "other"), "--sha256", "f" * 64]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"{NAME}: [") and "100%" in lines[0]  # the progress bar
    assert len(lines) == 2 and lines[1].startswith("voice-sim: error:")
    assert "checksum mismatch" in lines[1]


# --- discovery and resolution order ---------------------------------------------------

def test_language_from_name_and_readme(tmp_path: Path) -> None:
    cases = {"vosk-model-small-en-us-0.15": "en-us", "vosk-model-en-us-0.22-lgraph": "en-us",
             "vosk-model-small-ko-0.22": "ko", "vosk-model-en-in-0.5": "en-in",
             "vosk-model-fr-0.22": "fr"}
    for name, lang in cases.items():
        assert models.model_language(make_model(tmp_path / name), "vosk") == lang
    korean = make_model(tmp_path / "model", readme="Small Korean for Vosk (Android, RPi)\n")
    assert models.model_language(korean, "vosk") == "ko"
    assert models.model_language(make_model(tmp_path / "mystery"), "vosk") is None


def test_whisper_language_from_vocabulary(tmp_path: Path) -> None:
    en = make_whisper(tmp_path / "w1")
    (en / "vocabulary.txt").write_text("t\n" * models.WHISPER_EN_VOCAB)
    multi = make_whisper(tmp_path / "w2")
    (multi / "vocabulary.txt").write_text("t\n" * (models.WHISPER_EN_VOCAB + 1))
    assert models.model_language(en, "whisper") == "en"
    assert models.model_language(multi, "whisper") == "multilingual"
    assert models.model_language(make_whisper(tmp_path / "faster-whisper-base.en"),
                                 "whisper") == "en"


def test_resolution_order(dirs: tuple[Path, Path], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    local, cache = dirs
    with pytest.raises(ModelError, match="no Vosk model found") as e:
        models.resolve_vosk_model()
    assert "voice-sim models fetch" in e.value.line() and str(local) in e.value.line()

    in_cache = make_model(cache / "vosk-model-small-en-us-0.15")
    assert models.resolve_vosk_model() == in_cache
    in_local = make_model(local / "vosk-model-en-us-0.22")
    assert models.resolve_vosk_model() == in_local  # audio_models/ before ~/.cache/vosk

    env_parent = tmp_path / "env"
    env_model = make_model(env_parent / "vosk-model-small-en-in-0.4")
    monkeypatch.setenv("VOSK_MODEL_PATH", str(env_parent))  # vosk's meaning: a folder of models
    assert models.resolve_vosk_model() == env_model
    monkeypatch.setenv("VOSK_MODEL_PATH", str(env_model))  # a model folder itself also works
    assert models.resolve_vosk_model() == env_model

    given = make_model(tmp_path / "given-model")
    assert models.resolve_vosk_model(given) == given  # --model beats everything


def test_auto_never_picks_a_non_english_model(dirs: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    local, cache = dirs
    korean = make_model(local / "vosk-model-small-ko-0.22")
    unnamed_korean = make_model(tmp_path / "k" / "model", readme="Small Korean for Vosk\n")
    monkeypatch.setenv("VOSK_MODEL_PATH", str(unnamed_korean))
    assert models.resolve_vosk_model() == unnamed_korean  # explicit vosk: first found
    assert models.find_vosk_model(english_only=True) is None
    assert select_engine("auto")[0] == "whisper"
    english = make_model(cache / "vosk-model-small-en-us-0.15")
    assert select_engine("auto") == ("vosk", english)
    assert select_engine("vosk") == ("vosk", unnamed_korean)
    assert korean in [m.path for m in models.find_models()]


def test_find_models_lists_kinds_and_places(dirs: tuple[Path, Path]) -> None:
    local, _ = dirs
    make_model(local / "vosk-model-small-en-us-0.15")
    make_whisper(local / "faster-whisper-tiny.en")
    (local / ".vosk-model-x.partial-123").mkdir()  # an interrupted fetch is not a model
    found = {m.name: m for m in models.find_models()}
    assert found["vosk-model-small-en-us-0.15"].kind == "vosk"
    assert found["vosk-model-small-en-us-0.15"].english
    assert found["faster-whisper-tiny.en"].kind == "whisper"
    assert not any(n.startswith(".") for n in found)
    labels = [p.label for p in models.places()]
    assert labels[0] == "VOSK_MODEL_PATH" and labels.count("folder") == 2


def test_models_cli_json(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    local, cache = dirs
    make_model(local / "vosk-model-small-en-us-0.15")
    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in out["models"]]
    assert "vosk-model-small-en-us-0.15" in names
    assert {"place": "folder", "path": str(cache), "exists": True} in out["searched"]
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "vosk-model-small-en-us-0.15" in text and str(cache) in text


def test_model_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        models.resolve_vosk_model(tmp_path / "nope")
    whisper = make_whisper(tmp_path / "w")
    with pytest.raises(ModelError) as e:
        models.resolve_vosk_model(whisper)
    assert "--engine whisper" in e.value.line()
    with pytest.raises(ModelError, match="not a CTranslate2 Whisper model"):
        models.resolve_whisper_model(make_model(tmp_path / "v"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError, match="is a file"):
        models.resolve_whisper_model(tmp_path / "file")


def test_models_dirs_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voice_sim.paths import models_dirs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    found = models_dirs()
    assert found[0] == tmp_path / "audio_models"
    assert found[-1] == tmp_path / "home" / ".cache" / "vosk"


# --- voice-sim transcribe -------------------------------------------------------------

@pytest.mark.model
@pytest.mark.slow
def test_transcribe_cli_json(espeak_wav: Callable[..., Path],
                             capsys: pytest.CaptureFixture[str]) -> None:
    wav = espeak_wav("Thank you for calling, how can I help you today?")
    try:
        select_engine("whisper")
    except ModelError as e:
        pytest.skip(e.line())
    assert main(["transcribe", str(wav), "--engine", "whisper", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"engine", "model", "text", "duration_s", "words"}
    assert out["engine"] == "whisper" and "help" in out["text"].lower()
    assert out["words"] and set(out["words"][0]) == {"word", "start", "end", "conf"}
    assert all(0.0 <= w["conf"] <= 1.0 for w in out["words"])
    assert 0 < out["words"][-1]["end"] <= out["duration_s"]
    assert main(["transcribe", str(wav), "--engine", "whisper"]) == 0
    assert capsys.readouterr().out.strip() == out["text"]


def test_transcribe_cli_errors(espeak_wav: Callable[..., Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    wav = espeak_wav("hello")
    assert main(["transcribe", str(wav), "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err
    assert main(["transcribe", str(tmp_path / "missing.wav")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.wav: no such file" in err
    with pytest.raises(SystemExit) as e:
        main(["transcribe", str(wav), "--engine", "nonsense"])
    assert e.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err
    with pytest.raises(InputError, match="choose from auto, vosk, whisper"):
        select_engine("nonsense")
