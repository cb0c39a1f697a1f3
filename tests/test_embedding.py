"""The embedding model's graph kept between processes (``embedding_ort.cached_session``):
the same vectors from the kept graph, and a damaged one never used."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice_sim import embedding, embedding_ort


def test_kept_graph_gives_the_same_vectors_and_a_damaged_one_is_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("VOICE_SIM_CACHE", str(tmp_path))
    folder = embedding.model_dir()
    built = embedding._build(folder, "onnxruntime")  # nothing kept yet: built, then kept
    kept = list((tmp_path / "embedding").glob("minilm-*.onnx"))
    assert len(kept) == 1

    def no_build(model: object) -> bytes:
        raise AssertionError("the graph was written again instead of read")

    with monkeypatch.context() as m:
        m.setattr(embedding_ort, "graph_bytes", no_build)
        again = embedding._build(folder, "onnxruntime")
    assert again.session is not None and again.layers == ()
    texts = ["I'm so sorry about the wait.", "Could you give me the order number?"]
    assert np.array_equal(built.embed(texts), again.embed(texts))  # bit for bit
    data = bytearray(kept[0].read_bytes())
    data[len(data) // 2] ^= 1
    kept[0].write_bytes(bytes(data))
    assert embedding_ort.cached_session(folder, None) is None



def _adapter(path: Path, size: float = 0.05, **change: object) -> Path:
    """A rank-8 adapter of the top layer's query and feed-forward matrices, random
    factors of standard deviation ``size`` (the file format of ``read_adapter``)."""
    import numpy as np

    rng = np.random.default_rng(0)
    names = ["encoder.layer.5.attention.self.query.weight",
             "encoder.layer.5.intermediate.dense.weight"]
    shapes = [(384, 384), (1536, 384)]
    arrays: dict[str, object] = {"names": np.array(names), "scale": np.float32(2.0)}
    for k, (out, inp) in enumerate(shapes):
        arrays[f"a{k}"] = (rng.normal(size=(8, inp)) * size).astype(np.float16)
        arrays[f"b{k}"] = (rng.normal(size=(out, 8)) * size).astype(np.float16)
    arrays.update(change)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "no_factors",
                                    "wrong_shape", "not_finite", "unknown_tensor"])
def test_broken_adapter_is_one_error_naming_the_file(damage: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged adapter file (a half-copied install, a hand-edited file) is a
    ModelError naming the file and the fix, never a traceback from NumPy."""
    import numpy as np

    from voice_sim.errors import ModelError

    good = _adapter(tmp_path / "good.npz")
    bad = tmp_path / "rubric_adapter.npz"
    if damage == "truncated":
        bad.write_bytes(good.read_bytes()[:2_000])
    elif damage == "garbage":
        bad.write_bytes(b"not an adapter")
    elif damage == "no_factors":
        np.savez(bad, names=np.array([], dtype=str), scale=np.float32(2))
    elif damage == "wrong_shape":
        _adapter(bad, a0=np.zeros((8, 100), np.float16))
    elif damage == "not_finite":
        _adapter(bad, scale=np.float32(np.inf))
    elif damage == "unknown_tensor":
        _adapter(bad, names=np.array(["encoder.layer.9.x.weight", "y.weight"]))
    monkeypatch.setenv("VOICE_SIM_CACHE", str(tmp_path / "cache"))
    for runtime in ("numpy", "onnxruntime"):
        with pytest.raises(ModelError, match=r"rubric_adapter\.npz") as e:
            embedding._build(embedding.model_dir(), runtime, bad)
        assert "pip install --force-reinstall voice-sim" in e.value.hint
        assert "\n" not in str(e.value)


def test_an_adapter_changes_the_encoder_and_a_zero_one_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    monkeypatch.setenv("VOICE_SIM_CACHE", str(tmp_path / "cache"))
    folder = embedding.model_dir()
    texts = ["I totally get why you're fed up.", "That's our policy.",
             "I'll send a replacement by Friday.", "Is there anything else I can do?"]
    plain = embedding._build(folder, "numpy").embed(texts)
    adapter = _adapter(tmp_path / "a.npz")
    adapted = embedding._build(folder, "numpy", adapter).embed(texts)
    assert float((plain * adapted).sum(axis=1).max()) < 0.999  # every text moved
    zero = _adapter(tmp_path / "zero.npz", size=0.0)
    assert np.array_equal(embedding._build(folder, "numpy", zero).embed(texts), plain)
    if embedding._build(folder, "onnxruntime", adapter).session is not None:
        ort = embedding._build(folder, "onnxruntime", adapter).embed(texts)  # kept graph
        assert float((ort * adapted).sum(axis=1).min()) >= 0.98  # the same adapted model


def test_read_adapter_gives_scale_times_b_a(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5)).astype(np.float16), rng.normal(size=(3, 2)).astype(np.float16)
    path = tmp_path / "a.npz"
    np.savez(path, names=np.array(["x.weight"]), scale=np.float32(2.0), a0=a, b0=b)
    d = embedding.read_adapter(path)
    assert list(d) == ["x.weight"] and d["x.weight"].dtype == np.float32
    assert np.allclose(d["x.weight"], 2.0 * (b.astype(np.float32) @ a.astype(np.float32)))


def test_the_kept_graph_is_named_by_the_adapter(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_SIM_CACHE", str(tmp_path))
    folder = embedding.model_dir()
    one = _adapter(tmp_path / "one.npz")
    other = _adapter(tmp_path / "other.npz", size=0.04)
    names = {embedding_ort._cache_file(folder, x) for x in (None, one, other)}
    assert len(names) == 3 and None not in names
