"""The encoder's layers as an onnxruntime graph, built here from the loaded weights.

Why: onnxruntime's matrix products pack each weight once, when the session is made,
where NumPy's BLAS packs it again on every product; for the few dozen tokens of one
reply that halves the CPU time of a pass (measured in ``docs/content_scoring.md``),
and its 8-bit integer products (:func:`_int8_dense`) take 0.6x the time of float32
ones. The arithmetic is the NumPy pass's (:func:`voice_sim.embedding._product`), and a
text's states do not depend on what else is in its batch (sequences of one length
share a batch, no padding, per-token scales), as in :mod:`voice_sim.embedding`.

No ONNX file ships and the ``onnx`` package is not needed: :func:`graph_bytes` writes
the graph's protocol-buffer encoding itself (the handful of ONNX message fields it
uses are listed beside the code), with the weights :class:`~voice_sim.embedding.Model`
already holds. The word and position embeddings stay in NumPy (a memory-mapped table
and a sum); the graph takes their sum and returns the last layer's token states.

The graph is written once and kept in the cache folder (:func:`cached_session`: named
by the weights file, voice-sim's adapter, this code and NumPy's version, checked by a
SHA-256), so a later process skips quantizing the weights and writing it — 0.1 s of CPU
at every start, the same bytes, so the same vectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from voice_sim.embedding import Model

_OPSET = 21
_IR_VERSION = 9
_FLOAT, _UINT8, _INT8, _INT64 = 1, 2, 3, 7  # TensorProto.DataType
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7  # AttributeProto.AttributeType


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 fields: two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_Parts = list[bytes | memoryview]
"""An encoded message as pieces, joined once at the end (the weights are not copied
at every level of nesting)."""


def _size(parts: _Parts) -> int:
    return sum(len(x) if isinstance(x, bytes) else x.nbytes for x in parts)


def _field(num: int, parts: _Parts) -> _Parts:
    """A length-delimited field (strings, bytes, sub-messages)."""
    return [_varint(num << 3 | 2) + _varint(_size(parts)), *parts]


def _int(num: int, value: int) -> _Parts:
    return [_varint(num << 3) + _varint(value)]


def _str(num: int, s: str) -> _Parts:
    return _field(num, [s.encode()])


def _attr(name: str, value: float | int | list[int]) -> _Parts:
    """AttributeProto: name 1, f 2, i 3, ints 8, type 20."""
    if isinstance(value, float):
        body = [_varint(2 << 3 | 5) + struct.pack("<f", value), *_int(20, _ATTR_FLOAT)]
    elif isinstance(value, int):
        body = [*_int(3, value), *_int(20, _ATTR_INT)]
    else:
        body = [*(x for v in value for x in _int(8, v)), *_int(20, _ATTR_INTS)]
    return [*_str(1, name), *body]


def _tensor(name: str, arr: np.ndarray) -> _Parts:
    """TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian)."""
    import numpy as np

    dtype = {np.dtype(np.float32): _FLOAT, np.dtype(np.uint8): _UINT8,
             np.dtype(np.int8): _INT8, np.dtype(np.int64): _INT64}[arr.dtype]
    dims = [x for d in arr.shape for x in _int(1, d)]
    data = np.ascontiguousarray(arr).data.cast("B")
    return [*dims, *_int(2, dtype), *_str(8, name), *_field(9, [data])]


def _value_info(name: str, dims: list[int | str]) -> _Parts:
    """ValueInfoProto (name 1, type 2) of a float tensor: TypeProto.tensor_type 1 →
    elem_type 1, shape 2 → dim 1 → dim_value 1 / dim_param 2."""
    shape = [x for d in dims for x in _field(1, _int(1, d) if isinstance(d, int)
                                             else _str(2, d))]
    return [*_str(1, name), *_field(2, _field(1, [*_int(1, _FLOAT), *_field(2, shape)]))]


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[_Parts] = []
        self.inits: list[_Parts] = []

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(_tensor(name, arr))
        return name

    def node(self, op: str, inputs: list[str], **attrs: float | int | list[int]) -> str:
        """NodeProto: input 1, output 2, name 3, op_type 4, attribute 5."""
        out = f"{op}_{len(self.nodes)}"
        self.nodes.append([*(x for i in inputs for x in _str(1, i)), *_str(2, out),
                           *_str(3, out), *_str(4, op),
                           *(x for k, v in attrs.items() for x in _field(5, _attr(k, v)))])
        return out


def graph_bytes(model: Model) -> bytes:
    """The serialized ONNX model of the encoder layers: input ``h`` (batch, n, 384), the
    summed word, position and token-type embeddings; output ``states`` (batch, n, 384).
    Weights the model holds as integers (:data:`voice_sim.embedding.INT8`) are
    multiplied in 8-bit integers (:func:`_int8_dense`)."""
    import numpy as np

    from voice_sim.embedding import _EPS, _HEADS, DIM

    g = _Graph()
    if model.layers and model.layers[0].qkv_s is not None:
        g.const("axis_last", np.array([-1], dtype=np.int64))
        g.const("zp128", np.array(128, dtype=np.uint8))
        g.const("f127", np.array(127.0, dtype=np.float32))
        g.const("tiny", np.array(1e-12, dtype=np.float32))
    d = DIM // _HEADS
    g.const("split5", np.array([0, 0, 3, _HEADS, d], dtype=np.int64))
    g.const("merge3", np.array([0, 0, DIM], dtype=np.int64))
    for j in range(3):
        g.const(f"part{j}", np.array(j, dtype=np.int64))

    def ln(x: str, p: tuple[np.ndarray, np.ndarray], name: str) -> str:
        return g.node("LayerNormalization", [x, g.const(name + ".g", p[0]),
                                             g.const(name + ".b", p[1])],
                      axis=-1, epsilon=float(_EPS))

    def dense(x: str, w: np.ndarray, b: np.ndarray, name: str,
              s: np.ndarray | None) -> str:
        if s is not None:
            return _int8_dense(g, x, w, s, b, name)
        return g.node("Add", [g.node("MatMul", [x, g.const(name + ".w", w)]),
                              g.const(name + ".b", b)])

    h = ln("h", model.ln0, "ln0")
    for i, ly in enumerate(model.layers):
        p = f"layer{i}"
        # (3, batch, heads, n, d); the 1/sqrt(d) scale is folded into the query weights
        qkv = dense(h, ly.qkv_w, ly.qkv_b, p + ".qkv", ly.qkv_s)
        qkv = g.node("Transpose", [g.node("Reshape", [qkv, "split5"])], perm=[2, 0, 3, 1, 4])
        q, k, v = (g.node("Gather", [qkv, f"part{j}"], axis=0) for j in range(3))
        s = g.node("Softmax", [g.node("MatMul", [q, g.node("Transpose", [k],
                                                           perm=[0, 1, 3, 2])])], axis=-1)
        ctx = g.node("Reshape", [g.node("Transpose", [g.node("MatMul", [s, v])],
                                        perm=[0, 2, 1, 3]), "merge3"])
        h = ln(g.node("Add", [dense(ctx, ly.out_w, ly.out_b, p + ".out", ly.out_s), h]), ly.ln1,
               p + ".ln1")
        up = g.node("Gelu", [dense(h, ly.up_w, ly.up_b, p + ".up", ly.up_s)])
        h = ln(g.node("Add", [dense(up, ly.down_w, ly.down_b, p + ".down", ly.down_s), h]), ly.ln2,
               p + ".ln2")
    nodes = [*g.nodes, [*_str(1, h), *_str(2, "states"), *_str(3, "states"),
                        *_str(4, "Identity")]]
    graph = [*(x for n in nodes for x in _field(1, n)), *_str(2, "minilm"),
             *(x for t in g.inits for x in _field(5, t)),
             *_field(11, _value_info("h", ["batch", "n", DIM])),
             *_field(12, _value_info("states", ["batch", "n", DIM]))]
    opset = [*_str(1, ""), *_int(2, _OPSET)]
    return b"".join([*_int(1, _IR_VERSION), *_field(7, graph), *_field(8, opset)])


def _int8_dense(g: _Graph, x: str, w: np.ndarray, s: np.ndarray, b: np.ndarray,
                name: str) -> str:
    """``x @ w + b`` in 8-bit integers, ``w`` integers -127..127 with column scales
    ``s``: each row of ``x`` (one token) scaled by its own largest magnitude to 1..255
    around 128, the product summed exactly in int32 (``MatMulInteger``, both operands
    uint8 with zero point 128: see the note in the body), then scaled
    back by column and by row — the arithmetic of :func:`voice_sim.embedding._product`.
    Per-row scales keep a token's result independent of the other rows of its batch
    (onnxruntime's ``DynamicQuantizeMatMul`` scales a whole batch by one number, which
    would make a text's vector depend on its neighbours); integer sums are exact, so
    their order does not matter either."""
    import numpy as np

    row = g.node("Div", [g.node("Max", [g.node("ReduceMax", [g.node("Abs", [x]), "axis_last"],
                                               keepdims=1), "tiny"]), "f127"])
    # round(x / row) + 128 as uint8, one block per row (opset 21's blocked quantization;
    # its zero point must have the scale's shape)
    zp = g.node("Expand", ["zp128", g.node("Shape", [row])])
    xq = g.node("QuantizeLinear", [x, row, zp], axis=-1, block_size=int(w.shape[0]))
    # the weights go in as uint8 around 128 too: onnxruntime multiplies uint8 by int8
    # with pairwise int16 sums on CPUs without VNNI (AVX2 only), which saturate
    # (255 * 127 * 2 > 32767) and made the vectors differ from the NumPy pass's (cosine
    # 0.97 on an AVX2 EPYC); its uint8 x uint8 kernel widens first and sums exactly
    wq = (w.astype(np.int16) + 128).astype(np.uint8)
    acc = g.node("MatMulInteger", [xq, g.const(name + ".wq", wq), "zp128", "zp128"])
    y = g.node("Mul", [g.node("Cast", [acc], to=_FLOAT), g.const(name + ".s", s)])
    return g.node("Add", [g.node("Mul", [y, row]), g.const(name + ".b", b)])


CACHE_KEEP = 3
"""Graphs kept in the cache folder (checkouts of different versions may share it)."""


def _cache_file(folder: Path, adapter: Path | None) -> Path | None:
    """Where the graph of the model in ``folder`` with ``adapter`` is kept between
    processes: named by everything it is made from — the weights file (path, size,
    modification time), the adapter's bytes, the code that writes it (this module and
    :mod:`voice_sim.embedding`, whose settings :data:`~voice_sim.embedding.LAYERS` and
    :data:`~voice_sim.embedding.INT8` it holds) and NumPy's version (the quantization's
    arithmetic). None without a usable cache folder (it is only a shortcut)."""
    import numpy as np

    from voice_sim import embedding
    from voice_sim.errors import InputError
    from voice_sim.paths import cache_dir

    weights = folder / "model.safetensors"
    try:
        st = weights.stat()
        root = cache_dir() / "embedding"
        key = hashlib.sha256(repr((str(weights.resolve()), st.st_size, st.st_mtime_ns,
                                   embedding.LAYERS, embedding.INT8, np.__version__)).encode())
        for module in (__file__, embedding.__file__):
            key.update(Path(module).read_bytes())
        key.update(b"no adapter" if adapter is None else adapter.read_bytes())
    except (OSError, InputError):  # e.g. a bad VOICE_SIM_CACHE: built as before
        return None
    return root / f"minilm-{key.hexdigest()[:32]}.onnx"


def cached_session(folder: Path, adapter: Path | None) -> Any:
    """A session of the graph an earlier process wrote for the model in ``folder`` with
    ``adapter`` (:func:`voice_sim.embedding.read_adapter`), or
    None when there is none (or it is not intact: its last 32 bytes are the SHA-256 of
    the rest). Reading it skips quantizing the weights and writing the graph: 0.1 s of
    CPU at every start."""
    path = _cache_file(folder, adapter)
    try:
        data = path.read_bytes() if path is not None else b""
    except OSError:
        return None
    graph, digest = data[:-32], data[-32:]
    if len(data) <= 32 or hashlib.sha256(graph).digest() != digest:
        return None
    return _session(graph)


def session(model: Model) -> Any:
    """An onnxruntime session of the encoder layers (:func:`graph_bytes`); the graph is
    kept for the next process (:func:`cached_session`) when the cache folder allows."""
    graph = graph_bytes(model)
    out = _session(graph)
    path = _cache_file(model.folder, model.adapter)
    if path is not None:
        from voice_sim.paths import write_atomic

        with contextlib.suppress(OSError):  # a read-only cache: built again next time
            write_atomic(path, graph + hashlib.sha256(graph).digest())
            old = sorted(path.parent.glob("minilm-*.onnx"), key=lambda f: f.stat().st_mtime)
            for f in old[:-CACHE_KEEP]:
                f.unlink()
    return out


def _session(graph: bytes) -> Any:
    """An onnxruntime session of a serialized graph, on one thread that does not spin
    (the machine is shared; a reply's products are small)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
