#!/usr/bin/env python3
"""Speed and memory of content scoring with the semantic layer.

Usage: ``scripts/bench_rubric.py [--n 300] [--runtimes]``. Prints, each on its own line:

* model load: a fresh process importing the scorer, reading the rubric and loading the
  embedding model and the classifier (what a call pays, in the background, while the
  first line plays), with the encoder's graph kept by an earlier process; then the
  first load after an install (the graph written and kept);
* rubric load and persona load: a fresh process reading and compiling the built-in
  ``rubric.yaml``, and reading and checking a shipped persona (imports included);
* resident memory added by that load (RSS after minus before);
* one reply scored warm (model loaded; each reply new to the cache): median and p95 over
  ``--n`` replies of the labelled corpus, each with its customer line;
* one reply again with the customer line embedded beforehand (as when it is embedded
  while the line plays);
* ``check-reply --jsonl`` throughput: a real ``voice-sim check-reply --jsonl`` process on
  ``--n`` lines, with one worker process and with two, wall clock including its
  start-up, and steady (that run minus a one-line run: the start-up and model load
  taken out);
* with ``--profile``: where the CPU time of scoring goes, stage by stage (rules, text
  normalisation, clauses, tokenizer, the encoder's matrix products, GELU, LayerNorm,
  pooling, features and classifier, evidence, JSON), for one reply at a time and for a
  ``--jsonl``-style batch;
* with ``--encoders``: CPU time per text of the encoder alone (onnxruntime) with all 6
  layers or the first 3, float32 or 8-bit products, batched as ``--jsonl`` and one text
  at a time (the shipped setting is :data:`voice_sim.embedding.LAYERS` /
  :data:`~voice_sim.embedding.INT8`; the others need a retrained classifier to score);
* with ``--runtimes``: the same MiniLM forward pass in torch and onnxruntime where they
  are importable (they are not project dependencies; run it with a Python that has them),
  next to the NumPy one.

Targets: one reply <= 25 ms warm on 2 cores, ``--jsonl`` >= 200 replies/s, model load
<= 2 s, resident memory added <= 300 MB. A shared machine's other load slows the
wall-clock figures: the 1-minute load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT / "tests" / "data" / "corpus"


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _pairs(n: int) -> list[tuple[str, str]]:
    rows = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    step = max(1, len(rows) // n)
    return [(r["reply"], r["customer"]) for r in rows[::step]][:n]


def _jsonl(pairs: list[tuple[str, str]], workers: int) -> tuple[float, float]:
    """Wall and CPU seconds of a real ``voice-sim check-reply --jsonl`` process (its
    workers included)."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for reply, customer in pairs:
            f.write(json.dumps({"reply": reply, "customer": customer}) + "\n")
        name = f.name
    try:
        t = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "voice_sim", "check-reply", "--jsonl", name,
                        "--workers", str(workers)],
                       stdout=subprocess.DEVNULL, check=True, env=_ENV)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(name)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def _load() -> None:
    """Child: time the load in a fresh process, print JSON."""
    before = _rss_mb()
    t0 = time.perf_counter()
    from voice_sim.rubric import load_rubric, score_reply

    rubric = load_rubric()
    rubric_s = time.perf_counter() - t0
    from voice_sim.embedding import load_model
    from voice_sim.rubric_semantic import exemplar_bank, load_classifier

    model = load_model()
    load_classifier()
    exemplar_bank(rubric, model)
    score_reply("Thanks for waiting.", "Hello?")
    secs = time.perf_counter() - t0
    print(json.dumps({"load_s": secs, "rubric_s": rubric_s,
                      "rss_added_mb": _rss_mb() - before}))


def _persona() -> None:
    """Child: time importing the persona loader and loading a shipped persona."""
    t0 = time.perf_counter()
    from voice_sim.persona import load_persona

    load_persona(str(ROOT / "personas" / "double-billing.yaml"))
    print(json.dumps({"persona_s": time.perf_counter() - t0}))


_ENV = dict(os.environ)
"""The environment of the timed processes. Installed, the package has its bytecode
compiled; a shell with ``PYTHONDONTWRITEBYTECODE`` would make every process compile
every module again (0.1 s of CPU), so the bytecode is kept in a temporary folder."""


def _child(flag: str, **env: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, flag], capture_output=True, text=True,
                         check=True, env={**_ENV, **env}).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _runtimes(texts: list[str]) -> None:
    """The forward pass in each runtime this Python has, on the same texts."""
    import numpy as np

    from voice_sim.embedding import load_model, model_dir

    m = load_model()
    ref = m.embed(list(texts))
    for _ in range(2):
        m.cache.clear()
        t = time.perf_counter()
        for x in texts:
            m.embed([x])
    print(f"runtime numpy: {1000 * (time.perf_counter() - t) / len(texts):.1f} ms per text")
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError:
        print("runtime torch: not installed here")
        return
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    w = load_file(str(model_dir() / "model.safetensors"))
    print(f"runtime torch: weights loaded in {time.perf_counter() - t0:.2f} s")

    def ln(x: torch.Tensor, p: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (384,), w[p + ".weight"], w[p + ".bias"], 1e-12)

    def lin(x: torch.Tensor, p: str) -> torch.Tensor:
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    class Bert(torch.nn.Module):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            n = ids.shape[0]
            h = ln(w["embeddings.word_embeddings.weight"][ids]
                   + w["embeddings.position_embeddings.weight"][:n]
                   + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
            for i in range(6):
                p = f"encoder.layer.{i}."
                a = p + "attention."
                q, k, v = (lin(h, f"{a}self.{z}").view(n, 12, 32).transpose(0, 1)
                           for z in ("query", "key", "value"))
                c = torch.softmax(q @ k.transpose(1, 2) / 32 ** 0.5, -1) @ v
                h = ln(h + lin(c.transpose(0, 1).reshape(n, 384), a + "output.dense"),
                       a + "output.LayerNorm")
                h = ln(h + lin(torch.nn.functional.gelu(lin(h, p + "intermediate.dense")),
                               p + "output.dense"), p + "output.LayerNorm")
            v = h.mean(0)
            return v / v.norm()

    bert = Bert()
    ids = [torch.tensor(m.tokenizer.encode(x).ids) for x in texts]
    with torch.no_grad():
        out = np.stack([bert(i).numpy() for i in ids])
        t = time.perf_counter()
        for i in ids:
            bert(i)
    print(f"runtime torch: {1000 * (time.perf_counter() - t) / len(texts):.1f} ms per text; "
          f"max difference from numpy {float(np.abs(out - ref).max()):.1e}")
    try:
        import onnxruntime as ort
    except ImportError:
        print("runtime onnxruntime: not installed here")
        return
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "minilm.onnx")
        torch.onnx.export(bert, (ids[0],), path, input_names=["ids"], output_names=["v"],
                          dynamic_axes={"ids": {0: "n"}}, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        t0 = time.perf_counter()
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        print(f"runtime onnxruntime: session created in {time.perf_counter() - t0:.2f} s "
              "(graph exported here from the same weights; not shipped)")
        out = np.stack([sess.run(None, {"ids": i.numpy()})[0] for i in ids])
        t = time.perf_counter()
        for i in ids:
            sess.run(None, {"ids": i.numpy()})
    print(f"runtime onnxruntime: {1000 * (time.perf_counter() - t) / len(texts):.1f} ms per "
          f"text; max difference from numpy {float(np.abs(out - ref).max()):.1e}")


def _encoders(texts: list[str]) -> None:
    """The encoder's CPU time per text for each depth and arithmetic."""
    import voice_sim.embedding as emb

    shipped = (emb.LAYERS, emb.INT8)
    try:
        for layers, int8 in ((6, False), (6, True), (3, False), (3, True)):
            emb.LAYERS, emb.INT8 = layers, int8
            m = emb._build(emb.model_dir(), "onnxruntime")
            m.embed(texts[:20])  # warm
            m.cache.clear()
            t = time.process_time()
            m.embed(texts)
            batch = (time.process_time() - t) / len(texts)
            t = time.process_time()
            for x in texts[:100]:
                m.cache.clear()
                m.embed([x])
            one = (time.process_time() - t) / min(100, len(texts))
            mark = "  (shipped)" if (layers, int8) == shipped else ""
            print(f"encoder, {layers} layers, {'8-bit' if int8 else 'float32'} products: "
                  f"{1000 * batch:.2f} ms CPU per text batched, {1000 * one:.2f} ms alone"
                  f"{mark}")
    finally:
        emb.LAYERS, emb.INT8 = shipped


class _Stages:
    """CPU seconds spent inside wrapped functions (outermost call only, so a stage
    called from another is not counted twice)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.depth = 0
        self.undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, label: str) -> None:
        import functools

        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*a: object, **k: object) -> object:
            t = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                self.cpu[label] = self.cpu.get(label, 0.0) + time.thread_time() - t
                self.calls[label] = self.calls.get(label, 0) + 1

        self.undo.append((owner, attr, fn))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, fn in reversed(self.undo):
            setattr(owner, attr, fn)
        self.undo.clear()


def _profile(pairs: list[tuple[str, str]]) -> None:
    """CPU time per stage, for one reply at a time and for a batch."""
    import voice_sim.embedding as emb
    import voice_sim.rubric as rubric
    import voice_sim.rubric_semantic as sem
    from voice_sim.rubric import load_rubric, score_replies, score_reply

    rb = load_rubric()
    score_reply("Warm up.", "Hello?", rubric=rb)
    model = emb.load_model()
    # Stages that nest: the inner ones are subtracted from their callers below.
    nested = [
        (rubric, "rule_content", "rules (normalise, phrases, negation, echo)"),
        (sem, "normalize", "normalise for the semantic layer"),
        (sem, "units", "clauses"),
        (emb.Model, "_tokenize", "tokenizer"),
        (emb.Model, "_states_many", "encoder (matrix products, attention, softmax)"),
        (emb, "_gelu", "encoder: GELU"),
        (emb, "_norm", "encoder: LayerNorm"),
        (emb, "_pool", "pooling clause vectors"),
        (sem, "dense_features", "features: max/mean, rules, customer similarity"),
        (sem, "tfidf", "features: TF-IDF"),
        (sem.Classifier, "probabilities", "classifier"),
        (sem, "_decide", "evidence: nearest exemplar per id"),
        (rubric, "_merge", "merging rules and semantic verdicts"),
    ]
    parent = {"encoder: GELU": "encoder (matrix products, attention, softmax)",
              "encoder: LayerNorm": "encoder (matrix products, attention, softmax)",
              "features: TF-IDF": "classifier",
              "classifier": "evidence: nearest exemplar per id",
              "features: max/mean, rules, customer similarity":
                  "evidence: nearest exemplar per id"}
    runtime = "onnxruntime" if model.session is not None else "numpy"
    print(f"encoder runtime: {runtime}")
    for label, run in (("one reply at a time", False), ("batch (as --jsonl)", True)):
        st = _Stages()
        for owner, attr, name in nested:
            st.wrap(owner, attr, name)
        model.cache.clear()
        c0 = time.thread_time()
        try:
            if run:
                contents = score_replies(pairs, rubric=rb)
            else:
                contents = [score_reply(r, c, rubric=rb) for r, c in pairs]
            t = time.thread_time()
            for c in contents:
                json.dumps(c.to_json(), ensure_ascii=False)
            st.cpu["JSON"] = time.thread_time() - t
        finally:
            st.restore()
        total = time.thread_time() - c0
        own = dict(st.cpu)
        for child, par in parent.items():
            own[par] = own.get(par, 0.0) - st.cpu.get(child, 0.0)
        print(f"profile, {label}: {1000 * total / len(pairs):.2f} ms CPU per reply "
              f"({len(pairs)} replies, each customer line new)")
        for name, secs in sorted(own.items(), key=lambda kv: -kv[1]):
            print(f"  {1000 * secs / len(pairs):6.2f} ms  {100 * secs / total:4.1f}%  {name}")
        rest = total - sum(own.values())
        print(f"  {1000 * rest / len(pairs):6.2f} ms  {100 * rest / total:4.1f}%  everything else")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="replies to score (default 300)")
    ap.add_argument("--runtimes", action="store_true", help="compare embedding runtimes")
    ap.add_argument("--profile", action="store_true", help="CPU time per stage")
    ap.add_argument("--encoders", action="store_true",
                    help="encoder CPU time per depth and arithmetic")
    ap.add_argument("--child-load", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-persona", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_load:
        _load()
        return 0
    if args.child_persona:
        _persona()
        return 0
    pairs = _pairs(args.n)
    if args.runtimes:
        _runtimes([r for r, _ in pairs[:60]])
        return 0
    if args.encoders:
        print(f"load average {os.getloadavg()[0]:.2f}")
        _encoders(list(dict.fromkeys(r for r, _ in pairs)))
        print(f"load average {os.getloadavg()[0]:.2f}")
        return 0
    if args.profile:
        print(f"load average {os.getloadavg()[0]:.2f}")
        _profile(pairs)
        print(f"load average {os.getloadavg()[0]:.2f}")
        return 0
    print(f"load average {os.getloadavg()[0]:.2f}")
    pycache = tempfile.TemporaryDirectory()
    if _ENV.pop("PYTHONDONTWRITEBYTECODE", None):
        _ENV["PYTHONPYCACHEPREFIX"] = pycache.name
        print("bytecode: kept in a temporary folder for the timed processes (this shell "
              "sets PYTHONDONTWRITEBYTECODE; an install has its bytecode compiled)")
    _jsonl(pairs[:1], 1)  # untimed: bytecode written, the encoder's graph kept
    _child("--child-persona")
    with tempfile.TemporaryDirectory() as cache:
        # first with nothing kept: the encoder's graph is written, then kept for the
        # next process (voice_sim.embedding_ort.cached_session), as after an install
        cold = _child("--child-load", VOICE_SIM_CACHE=cache)
        load = _child("--child-load", VOICE_SIM_CACHE=cache)
    print(f"model load (fresh process: import, rubric, embedding model, classifier, "
          f"exemplars): {load['load_s']:.2f} s")
    print(f"first load after an install (the encoder's graph written, then kept): "
          f"{cold['load_s']:.2f} s")
    print(f"rubric load (fresh process: import, read rubric.yaml, compile its phrases): "
          f"{load['rubric_s']:.2f} s")
    print(f"persona load (fresh process: import, read and check a shipped persona): "
          f"{_child('--child-persona')['persona_s']:.2f} s")
    print(f"resident memory added by the load: {load['rss_added_mb']:.0f} MB (the first after "
          f"an install: {cold['rss_added_mb']:.0f} MB)")

    from voice_sim.embedding import load_model
    from voice_sim.rubric import load_rubric, score_reply
    from voice_sim.textnorm import normalize

    rb = load_rubric()
    score_reply("Warm up.", "Hello?", rubric=rb)
    model = load_model()
    for label, customer_ready in (("reply and customer line new", False),
                                  ("customer line embedded before", True)):
        model.cache.clear()
        if customer_ready:  # as when the line is embedded while it plays
            model.embed([normalize(c).text for _, c in pairs if normalize(c).text])
        times = []
        c0 = time.process_time()
        for reply, customer in pairs:
            t = time.perf_counter()
            score_reply(reply, customer, rubric=rb)
            times.append(time.perf_counter() - t)
        cpu = (time.process_time() - c0) / len(pairs)
        times.sort()
        p95 = times[int(0.95 * (len(times) - 1))]
        print(f"one reply, warm ({label}): median {1000 * statistics.median(times):.1f} ms, "
              f"p95 {1000 * p95:.1f} ms ({len(times)} replies); CPU time "
              f"{1000 * cpu:.1f} ms per reply")
    one = _jsonl(pairs[:1], 1)
    for workers in (1, 2):
        full = _jsonl(pairs, workers)
        wall, child_cpu = full
        steady_wall, steady_cpu = full[0] - one[0], full[1] - one[1]
        what = f"check-reply --jsonl --workers {workers}"
        print(f"{what}: {len(pairs)} replies in {wall:.2f} s = "
              f"{len(pairs) / wall:.0f} replies/s (including process start and model load); "
              f"CPU time {child_cpu:.2f} s = {len(pairs) / child_cpu:.0f} replies per "
              f"CPU-second (load average {os.getloadavg()[0]:.2f})")
        n = len(pairs) - 1
        print(f"{what}, steady (the {len(pairs)}-line run minus a 1-line run): "
              f"{n / steady_wall:.0f} replies/s; {n / steady_cpu:.0f} replies per CPU-second")
    print(f"load average {os.getloadavg()[0]:.2f}")
    pycache.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
