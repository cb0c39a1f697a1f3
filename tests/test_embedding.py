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
    assert embedding_ort.cached_session(folder) is None
