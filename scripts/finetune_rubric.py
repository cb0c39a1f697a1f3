#!/usr/bin/env python3
"""Experiment (issue 12): does fine-tuning the sentence encoder beat the frozen one?

Usage::

    nice -n 19 scripts/finetune_rubric.py [--folds 4] [--epochs 3] [--rank 8] [--top 6]
        [--crossfit K] [--clauses] [--keep LAMBDA] [--add FILE ...] [--only-fold N]
        [--json FILE]
    nice -n 19 scripts/finetune_rubric.py --write --clauses --keep 10   # the shipped adapter

Needs CPU torch (training only: ``pip install torch==2.13.0`` — the CPU build the
registry serves — then ``pip install -e '.[dev,train]'``); scoring never does.

What it measures. The tuning situations of the corpus (:func:`train_rubric.tuning_rows`;
with ``--add FILE``, that file's situations too) are cut into ``--folds`` groups of
whole situations (sorted names, every ``folds``-th one). For each fold, on the other
situations plus the extra and the project's replies (never scored):

* **frozen**: all-MiniLM-L6-v2 as shipped, then :func:`train_rubric.fit` (logistic per
  id over pooled clause vectors, rule ids, customer similarity, cues, TF-IDF);
* **fine-tuned**: LoRA adapters (rank ``--rank`` on the query and value projections and
  both feed-forward matrices of the top ``--top`` layers) and a multi-label head trained
  jointly with torch. The head sees what the shipped classifier sees beside the vectors
  (the customer similarity through the same adapted encoder, the rule ids, the cues:
  :func:`encode_rows`), so the adapter learns what those do not already give. The
  factors are rounded to float16 and added to the weights (:func:`merged`), the NumPy
  encoder of :mod:`voice_sim.embedding` is built from them, and the same
  :func:`train_rubric.fit` is trained on its vectors — the pipeline that would ship.
  With ``--crossfit K`` the classifier learns from out-of-fold vectors instead
  (:func:`oof_adapters`: K more adapters per fold, each without a K-th of the training
  situations); with ``--clauses`` the adapter also learns from every clause of the
  training replies as a short reply of its own (:func:`clause_items`); with ``--keep
  LAMBDA`` a second loss keeps the published model's cosines between the batch's
  clauses and customer lines (the space the similarity features are measured in);
* **head**: the torch head's own decisions (same thresholds), for reference.

All are scored on the fold's situations with :func:`eval_rubric.evaluate` (macro-F1
over the 15 ids, lowest recall, pitfall false alarms on pitfall-free replies), per fold
and pooled. The torch encoder is checked against the NumPy one (float32 products) first.
Deterministic: fixed seed, deterministic algorithms, 2 threads. Figures and verdict:
``docs/content_scoring.md`` — ``--clauses --keep 10`` wins all four corpus folds and the
outside writers' replies, so ``--write --clauses --keep 10`` is the shipped adapter
(``voice_sim/rubric_adapter.npz``; then ``scripts/train_rubric.py`` retrains the
classifier on its vectors).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import eval_rubric as er  # noqa: E402
import train_rubric as tr  # noqa: E402

from voice_sim import embedding  # noqa: E402
from voice_sim.paths import atomic_file  # noqa: E402
from voice_sim.rubric import CONTENT_IDS  # noqa: E402
from voice_sim.rubric_semantic import thresholds, unit_spans  # noqa: E402
from voice_sim.rubric_units import units  # noqa: E402
from voice_sim.steps import PITFALL_IDS  # noqa: E402
from voice_sim.textnorm import normalize  # noqa: E402

SEED = 0
LAYERS = 6
HEADS = 12
DIM = 384
TARGETS = ("attention.self.query", "attention.self.value", "intermediate.dense",
           "output.dense")
"""The matrices of a layer that get a LoRA adapter (names as in the safetensors file)."""


def load_weights() -> dict[str, Any]:
    """The shipped model's tensors as NumPy arrays (copied out of the memory map)."""
    import numpy as np

    w = embedding._read_safetensors(embedding.model_dir() / "model.safetensors")
    return {k: np.array(v, dtype=np.float32) for k, v in w.items()}


def numpy_model(weights: dict[str, Any]) -> embedding.Model:
    """The NumPy encoder of :mod:`voice_sim.embedding` built from ``weights`` (the same
    code path as at run time, with the tensors swapped in)."""
    with mock.patch.object(embedding, "_read_safetensors", lambda _path: weights):
        return embedding._build(embedding.model_dir(), runtime="numpy")


def make_encoder(weights: dict[str, Any], top: int, rank: int, alpha: float,
                 n_fixed: int = 0) -> Any:
    """A torch re-implementation of the BERT encoder over ``weights`` (frozen), with
    LoRA factors on :data:`TARGETS` of the top ``top`` layers and a linear head over
    the max and mean of the unit vectors, their similarity to the customer's line and
    ``n_fixed`` features that do not depend on the encoder (:func:`encode_rows`)."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = {k: torch.from_numpy(v) for k, v in weights.items()}
            self.first = LAYERS - top
            self.scale = alpha / rank
            self.lora = nn.ParameterDict()
            for i in range(self.first, LAYERS):
                for t in TARGETS:
                    out_d, in_d = weights[f"encoder.layer.{i}.{t}.weight"].shape
                    key = f"{i}_{t.replace('.', '_')}"
                    a = torch.empty(rank, in_d)
                    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
                    self.lora[key + "_a"] = nn.Parameter(a)
                    self.lora[key + "_b"] = nn.Parameter(torch.zeros(out_d, rank))
            self.head = nn.Linear(2 * DIM + 1 + n_fixed, len(CONTENT_IDS))
            self.plain = False  # True: the published model (adapters off)

        def lin(self, x: Any, i: int, t: str) -> Any:
            p = f"encoder.layer.{i}.{t}"
            y = x @ self.w[p + ".weight"].T + self.w[p + ".bias"]
            key = f"{i}_{t.replace('.', '_')}"
            if key + "_a" in self.lora and not self.plain:
                y = y + (x @ self.lora[key + "_a"].T) @ self.lora[key + "_b"].T * self.scale
            return y

        def ln(self, x: Any, p: str) -> Any:
            return torch.nn.functional.layer_norm(x, (DIM,), self.w[p + ".weight"],
                                                  self.w[p + ".bias"], eps=1e-12)

        def embed_tokens(self, ids: Any) -> Any:
            n = ids.shape[-1]
            h = (self.w["embeddings.word_embeddings.weight"][ids]
                 + self.w["embeddings.position_embeddings.weight"][:n]
                 + self.w["embeddings.token_type_embeddings.weight"][0])
            return self.ln(h, "embeddings.LayerNorm")

        def layers(self, h: Any, mask: Any, start: int, stop: int) -> Any:
            """Layers start..stop-1 over (batch, n, 384) states; ``mask`` (batch, n)
            marks real tokens (padding is never attended to)."""
            bsz, n, _ = h.shape
            d = DIM // HEADS
            neg = (~mask)[:, None, None, :] * torch.finfo(h.dtype).min
            for i in range(start, stop):
                p = f"encoder.layer.{i}."
                q = self.lin(h, i, "attention.self.query")
                k = self.lin(h, i, "attention.self.key")
                v = self.lin(h, i, "attention.self.value")
                q, k, v = (x.view(bsz, n, HEADS, d).transpose(1, 2) for x in (q, k, v))
                s = q @ k.transpose(-1, -2) / math.sqrt(d) + neg
                ctx = (s.softmax(-1) @ v).transpose(1, 2).reshape(bsz, n, DIM)
                h = self.ln(self.lin(ctx, i, "attention.output.dense") + h,
                            p + "attention.output.LayerNorm")
                up = torch.nn.functional.gelu(self.lin(h, i, "intermediate.dense"))
                h = self.ln(self.lin(up, i, "output.dense") + h, p + "output.LayerNorm")
            return h

        def factors(self) -> dict[str, Any]:
            """The adapters: tensor names, the scale, and per name the factors ``a{k}``
            (rank, in) and ``b{k}`` (out, rank) in float16."""
            import numpy as np

            names: list[str] = []
            out: dict[str, Any] = {}
            with torch.no_grad():
                for key in sorted(k[:-2] for k in self.lora if k.endswith("_a")):
                    i, t = key.split("_", 1)
                    name = next(x for x in TARGETS if x.replace(".", "_") == t)
                    out[f"a{len(names)}"] = self.lora[key + "_a"].numpy().astype(np.float16)
                    out[f"b{len(names)}"] = self.lora[key + "_b"].numpy().astype(np.float16)
                    names.append(f"encoder.layer.{i}.{name}.weight")
            return {"names": np.array(names), "scale": np.float32(self.scale), **out}

    return Encoder()


def merged(weights: dict[str, Any], factors: dict[str, Any]) -> dict[str, Any]:
    """``weights`` plus ``scale·B·A`` of each adapted matrix, the factors rounded to
    float16 first (the size an adapter file would ship at) and multiplied in float32
    (:func:`voice_sim.embedding.adapter_deltas`, as at run time)."""
    out = dict(weights)
    for name, d in embedding.adapter_deltas(factors).items():
        out[name] = weights[name] + d
    return out


def save_factors(factors: dict[str, Any], path: Path) -> None:
    """Write the adapter as :func:`voice_sim.embedding.read_adapter` reads it."""
    import numpy as np

    with atomic_file(path, "wb") as f:
        np.savez_compressed(f, **factors)


def encode_rows(rows: list[dict[str, Any]], tok_model: embedding.Model
                ) -> list[dict[str, Any]]:
    """Per reply: token ids and, per unit, the token rows its vector averages (the
    rows :func:`voice_sim.embedding._pool` uses); the token ids of the customer's line
    (normalised, as :func:`train_rubric.featurize` embeds it; None without one); and the
    features of :func:`voice_sim.rubric_semantic.dense_features` that do not depend on
    the encoder (rule ids, word cues, negated echo), so the head learns beside them what
    the shipped classifier learns beside them, and the adapter learns to keep the
    reply's similarity to the customer's line meaningful (``listen_reflect`` is judged
    against it)."""
    import numpy as np

    from voice_sim.rubric import load_rubric, rule_content
    from voice_sim.rubric_cues import cue_vector, negated_echo

    base = load_rubric()
    out = []
    for row in rows:
        norm = normalize(row["reply"])
        us = units(norm)
        text = norm.text if us else row["reply"]
        ids, offs = tok_model._tokenize([text])[0]
        spans = unit_spans(norm, us) if us else [(0, len(text))]
        pools = []
        for a, b in spans:
            rws = [k for k, (s, e) in enumerate(offs) if e > s and s >= a and e <= b]
            pools.append(rws or list(range(len(ids))))
        gold = set(row["steps"]) | set(row["pitfalls"])
        cn = normalize(row.get("customer") or "").text
        rule_ids = rule_content(row["reply"], row.get("customer"), rubric=base).ids
        fixed = np.concatenate([
            np.array([1.0 if i in rule_ids else 0.0 for i in CONTENT_IDS], dtype=np.float32),
            cue_vector(norm.text), negated_echo([u.text for u in us], cn)])
        out.append({"ids": ids, "pools": pools, "fixed": fixed,
                    "cust": tok_model._tokenize([cn])[0][0] if cn else None,
                    "y": [1.0 if i in gold else 0.0 for i in CONTENT_IDS],
                    "mask": [1.0] * len(CONTENT_IDS)})
    return out


def clause_items(rows: list[dict[str, Any]], tok_model: embedding.Model
                 ) -> list[dict[str, Any]]:
    """Each clause of a reply of two clauses or more, as a reply of its own (answering the
    same customer line): short replies, which the corpus has few of. A clause holds no
    id its whole reply lacks, so those are known negatives; the reply's own ids may or
    may not be in this clause, so they are left out of the loss (``mask`` 0)."""
    out = []
    for row in rows:
        us = units(normalize(row["reply"]))
        if len(us) < 2:
            continue
        gold = set(row["steps"]) | set(row["pitfalls"])
        for u in us:
            (it,) = encode_rows([{"reply": u.text, "customer": row.get("customer"),
                                  "steps": [], "pitfalls": []}], tok_model)
            it["mask"] = [0.0 if i in gold else 1.0 for i in CONTENT_IDS]
            out.append(it)
    return out


def attach_customers(enc: Any, items: list[dict[str, Any]]) -> None:
    """Each item's ``clow``: the lower states of its customer's line (each distinct line
    computed once and shared), or None."""
    lines = list(dict.fromkeys(tuple(it["cust"]) for it in items if it["cust"]))
    lows = dict(zip(lines, lower_states(enc, [{"ids": list(c)} for c in lines]),
                    strict=True))
    for it in items:
        it["clow"] = lows[tuple(it["cust"])] if it["cust"] else None


def lower_states(enc: Any, items: list[dict[str, Any]]) -> list[Any]:
    """States after the frozen lower layers, per reply (batches of similar length,
    padding masked: the states are those of the reply alone to ~1e-7)."""
    import torch

    out: list[Any] = [None] * len(items)
    order = sorted(range(len(items)), key=lambda k: len(items[k]["ids"]))
    with torch.no_grad():
        for a in range(0, len(order), 32):
            ks = order[a:a + 32]
            n = max(len(items[k]["ids"]) for k in ks)
            ids = torch.zeros(len(ks), n, dtype=torch.long)
            mask = torch.zeros(len(ks), n, dtype=torch.bool)
            for b, k in enumerate(ks):
                ids[b, :len(items[k]["ids"])] = torch.tensor(items[k]["ids"])
                mask[b, :len(items[k]["ids"])] = True
            h = enc.layers(enc.embed_tokens(ids), mask, 0, enc.first)
            for b, k in enumerate(ks):
                out[k] = h[b, :len(items[k]["ids"])].clone()
    return out


def upper(enc: Any, lows: list[Any]) -> Any:
    """The adapted top layers over texts' lower states ((n_i, 384) each): padded to one
    batch (padding masked), (batch, longest, 384) out."""
    import torch

    n = max(x.shape[0] for x in lows)
    h = torch.zeros(len(lows), n, DIM)
    mask = torch.zeros(len(lows), n, dtype=torch.bool)
    for b, x in enumerate(lows):
        h[b, :x.shape[0]] = x
        mask[b, :x.shape[0]] = True
    return enc.layers(h, mask, enc.first, LAYERS)


def batch_logits(enc: Any, lows: list[Any], items: list[dict[str, Any]],
                 keep: bool = False) -> Any:
    """Head logits of a batch: the adapted top layers (:func:`upper`), each unit pooled
    (unit-normalised mean of its tokens), max and mean over units, the similarity to the
    customer's line and the item's fixed features. With ``keep``, also the cosines
    between every unit and customer line of the batch (``--keep``)."""
    import torch

    h = upper(enc, lows)
    # the batch's distinct customer lines through the same layers: mean of all their
    # token states, unit length (the model's pooling, as Model.embed)
    cl = list({id(it["clow"]): it["clow"] for it in items if it["clow"] is not None}.values())
    cvec: dict[int, Any] = {}
    if cl:
        hc = upper(enc, cl)
        for b, x in enumerate(cl):
            cvec[id(x)] = torch.nn.functional.normalize(hc[b, :x.shape[0]].mean(0), dim=-1)
    feats = []
    every = [*cvec.values()]
    for b, it in enumerate(items):
        vs = torch.stack([h[b, rws].mean(0) for rws in it["pools"]])
        vs = torch.nn.functional.normalize(vs, dim=-1)
        every.extend(vs)
        c = cvec.get(id(it["clow"])) if it["clow"] is not None else None
        cs = (vs @ c).max().reshape(1) if c is not None else torch.zeros(1)
        feats.append(torch.cat([vs.max(0).values, vs.mean(0), cs,
                                torch.from_numpy(it["fixed"])]))
    logits = enc.head(torch.stack(feats))
    if not keep:
        return logits
    v = torch.stack(every)
    return logits, v @ v.T


def train_adapter(weights: dict[str, Any], items: list[dict[str, Any]], lows: list[Any],
                  args: Any, log: str = "") -> Any:
    """LoRA + head trained on ``items`` (``lows``: their :func:`lower_states`); returns
    the encoder."""
    import numpy as np
    import torch

    torch.manual_seed(SEED)
    rng = np.random.RandomState(SEED)
    enc = make_encoder(weights, args.top, args.rank, args.alpha, len(items[0]["fixed"]))
    y = torch.tensor([it["y"] for it in items])
    mask = torch.tensor([it["mask"] for it in items])
    pos = y.sum(0).clamp(min=1)
    pos_weight = ((mask.sum(0) - pos) / pos).clamp(min=1.0, max=20.0)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    opt = torch.optim.AdamW([{"params": enc.lora.parameters(), "lr": args.lr},
                             {"params": enc.head.parameters(), "lr": args.head_lr}],
                            weight_decay=0.01)
    # batches of similar length (little padding), in a seeded random order
    order = sorted(range(len(items)), key=lambda k: (len(items[k]["ids"]), k))
    batches = [order[a:a + args.batch] for a in range(0, len(order), args.batch)]
    steps = args.epochs * len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / steps))
    t = time.perf_counter()
    for ep in range(args.epochs):
        total = 0.0
        for bi in rng.permutation(len(batches)):
            ks = batches[bi]
            b_lows, b_items = [lows[k] for k in ks], [items[k] for k in ks]
            m = mask[ks]
            if args.keep:  # keep the published model's geometry (the similarity features)
                logits, cos = batch_logits(enc, b_lows, b_items, keep=True)
                with torch.no_grad():
                    enc.plain = True
                    cos0 = batch_logits(enc, b_lows, b_items, keep=True)[1]
                    enc.plain = False
                geometry = ((cos - cos0) ** 2).mean()
            else:
                logits, geometry = batch_logits(enc, b_lows, b_items), torch.zeros(())
            loss = ((loss_fn(logits, y[ks]) * m).sum() / m.sum().clamp(min=1.0)
                    + args.keep * geometry)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(ks)
        print(f"    {log}epoch {ep + 1}: loss {total / len(items):.4f} "
              f"({time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)
    return enc


def head_predict(enc: Any, items: list[dict[str, Any]], lows: list[Any]) -> list[set[str]]:
    import torch

    cut = torch.tensor([tr.PITFALL_THRESHOLD if i in PITFALL_IDS else tr.STEP_THRESHOLD
                        for i in CONTENT_IDS])
    out = []
    with torch.no_grad():
        for a in range(0, len(items), 32):
            p = batch_logits(enc, lows[a:a + 32], items[a:a + 32]).sigmoid()
            out.extend({i for i, ok in zip(CONTENT_IDS, row >= cut, strict=True) if ok}
                       for row in p)
    return out


def check_encoder(weights: dict[str, Any]) -> float:
    """Largest difference between the torch and NumPy token states on a few texts, the
    NumPy encoder with float32 products (the shipped 8-bit ones differ by their
    rounding, up to ~0.2 in a state)."""
    import numpy as np
    import torch

    with mock.patch.object(embedding, "INT8", False):
        model = numpy_model(weights)
    enc = make_encoder(weights, 0, 1, 1.0)
    texts = ["I totally get why you're fed up.", "so um the engineer never came on tuesday",
             "Sorry, but that's our policy and there's nothing I can do about it, okay?"]
    worst = 0.0
    with torch.no_grad():
        for t in texts:
            ids, _ = model._tokenize([t])[0]
            ref = model._states_many([ids])[0]
            tid = torch.tensor([ids])
            h = enc.layers(enc.embed_tokens(tid), torch.ones_like(tid, dtype=torch.bool), 0,
                           LAYERS)[0].numpy()
            worst = max(worst, float(np.abs(h - ref).max()))
    return worst


def predict_fit(train: list[dict[str, Any]], test: list[dict[str, Any]]) -> list[set[str]]:
    """The shipped recipe (:func:`train_rubric.fit`) trained on ``train``, deciding
    ``test`` (both featurized by :func:`train_rubric.featurize`) as the run time does:
    a step the rules also found needs only the rule-agreement threshold
    (:func:`voice_sim.rubric_semantic.thresholds`)."""
    clf = tr.classifier(tr.fit(train))
    return [{i for i, q, th in zip(clf.ids, clf.probabilities(f["dense"], f["text"]),
                                   thresholds(clf, f["rule_ids"]), strict=True) if q >= th}
            for f in test]


def featurize_with(model: embedding.Model, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`train_rubric.featurize` with ``model`` as the process's encoder."""
    return tr.featurize(rows, log=False, model=model)


def crossfit_groups(rows: list[dict[str, Any]], idx: list[int], k: int) -> list[set[str]]:
    """The situations of rows ``idx`` (sorted names) in ``k`` groups, every ``k``-th."""
    sits = sorted({rows[n]["situation"] for n in idx})
    return [set(sits[g::k]) for g in range(k)]


def oof_adapters(weights: dict[str, Any], rows: list[dict[str, Any]],
                 items: list[dict[str, Any]], lows: list[Any], idx: list[int], args: Any,
                 log: str = "") -> list[tuple[set[str], dict[str, Any]]]:
    """Cross-fitting: the situations of rows ``idx`` in ``args.crossfit`` groups
    (:func:`crossfit_groups`) and, per group, the adapter factors trained on the other
    groups' rows. The classifier learns from each row's vectors by the adapter that did
    not see it: trained on vectors of an adapter that saw its own training rows, it
    learns to trust them more than they deserve on new wording and leans less on the
    rules (stacking's classic overfit)."""
    out = []
    for g, grp in enumerate(crossfit_groups(rows, idx, args.crossfit)):
        tr_i = [n for n in idx if rows[n]["situation"] not in grp]
        enc = train_adapter(weights, [items[n] for n in tr_i], [lows[n] for n in tr_i],
                            args, f"{log}cross-fit {g} ")
        out.append((grp, enc.factors()))
    return out


def oof_features(weights: dict[str, Any], rows: list[dict[str, Any]], idx: list[int],
                 adapters: list[tuple[set[str], dict[str, Any]]]) -> dict[int, Any]:
    """Row index -> its features (:func:`train_rubric.featurize`) by the cross-fitting
    adapter that did not see its situation."""
    out: dict[int, Any] = {}
    for grp, factors in adapters:
        part = [n for n in idx if rows[n]["situation"] in grp]
        feats = featurize_with(numpy_model(merged(weights, factors)), [rows[n] for n in part])
        out.update(zip(part, feats, strict=True))
    return out


def summary(res: dict[str, Any]) -> dict[str, float]:
    return {"macro_f1": round(res["macro_f1"], 4),
            "lowest_recall": round(min(v["recall"] for v in res["per_id"].values()), 3),
            "lowest_id": min(res["per_id"], key=lambda i: res["per_id"][i]["recall"]),
            "pitfall_false_alarms": round(res["pitfall_false_alarms"], 4),
            "n": res["n"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--only-fold", type=int, default=None, help="run one fold (0-based)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--top", type=int, default=6, help="adapted layers, counted from the top")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--head-lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crossfit", type=int, default=0, metavar="K",
                    help="train the classifier on out-of-fold vectors of K adapters, each "
                         "trained without a K-th of the situations (0: off)")
    ap.add_argument("--add", type=Path, action="append", default=[], metavar="FILE",
                    help="more labelled situations to fold over (e.g. tests/data/outside/"
                         "G.jsonl; repeatable)")
    ap.add_argument("--keep", type=float, default=0.0, metavar="LAMBDA",
                    help="weight of a loss that keeps the published model's cosines "
                         "between the clauses and customer lines of a batch")
    ap.add_argument("--clauses", action="store_true",
                    help="also train on each clause of the training replies as a short "
                         "reply (known negatives only)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--write", action="store_true",
                    help="no folds: train one adapter on every tuning reply and write it "
                         "to voice_sim/rubric_adapter.npz (then run scripts/train_rubric.py)")
    args = ap.parse_args()
    try:
        rows = tr.tuning_rows(add=args.add)  # first: a bad --add file fails in one line
    except er.DataError as e:
        print(f"finetune_rubric: {e}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    weights = load_weights()
    frozen = numpy_model(weights)  # the model as published, without voice-sim's adapter
    print(f"torch vs NumPy token states: max difference {check_encoder(weights):.2e}",
          flush=True)
    items = encode_rows(rows, frozen)
    t = time.perf_counter()
    low_enc = make_encoder(weights, args.top, 1, 1.0)
    lows = lower_states(low_enc, items)
    attach_customers(low_enc, items)
    print(f"lower {LAYERS - args.top} layers of {len(items)} replies "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    clauses: list[list[dict[str, Any]]] = [[] for _ in rows]
    clause_lows: list[list[Any]] = [[] for _ in rows]
    if args.clauses:
        for n, row in enumerate(rows):
            clauses[n] = clause_items([row], frozen)
        flat = [it for cs in clauses for it in cs]
        flat_lows = iter(lower_states(low_enc, flat))
        attach_customers(low_enc, flat)
        clause_lows = [[next(flat_lows) for _ in cs] for cs in clauses]
        print(f"{len(flat)} clauses of {sum(1 for cs in clauses if cs)} replies as short "
              "replies", flush=True)

    def training(idx: list[int]) -> tuple[list[dict[str, Any]], list[Any]]:
        """The items (and lower states) of rows ``idx``, with their clauses."""
        its = [items[n] for n in idx] + [c for n in idx for c in clauses[n]]
        lws = [lows[n] for n in idx] + [c for n in idx for c in clause_lows[n]]
        return its, lws

    if args.write:
        enc = train_adapter(weights, *training(list(range(len(rows)))), args, "all ")
        save_factors(enc.factors(), embedding.ADAPTER)
        print(f"wrote {embedding.ADAPTER.relative_to(ROOT)} "
              f"({embedding.ADAPTER.stat().st_size // 1024} KB, "
              f"{time.perf_counter() - t0:.0f} s); now run scripts/train_rubric.py",
              flush=True)
        return 0
    situations = tr.fold_situations(rows)  # extra and project replies always train
    groups = [situations[g::args.folds] for g in range(args.folds)]
    t = time.perf_counter()
    base_feats = featurize_with(frozen, rows)
    print(f"featurized {len(rows)} replies, frozen ({time.perf_counter() - t:.0f} s)",
          flush=True)
    report: dict[str, Any] = {"config": json.loads(json.dumps(vars(args), default=str)),
                              "folds": []}
    pooled: dict[str, dict[int, set[str]]] = {"frozen": {}, "finetuned": {}, "head": {}}
    for g, group in enumerate(groups):
        if args.only_fold is not None and g != args.only_fold:
            continue
        held = set(group)
        tr_idx = [n for n, r in enumerate(rows) if r["situation"] not in held]
        te_idx = [n for n, r in enumerate(rows) if r["situation"] in held]
        print(f"fold {g}: {', '.join(group)} ({len(te_idx)} replies; "
              f"{len(tr_idx)} train)", flush=True)
        preds = {"frozen": predict_fit([base_feats[n] for n in tr_idx],
                                       [base_feats[n] for n in te_idx])}
        t = time.perf_counter()
        enc = train_adapter(weights, *training(tr_idx), args, f"fold {g} ")
        train_s = time.perf_counter() - t
        preds["head"] = head_predict(enc, [items[n] for n in te_idx], [lows[n] for n in te_idx])
        t = time.perf_counter()
        tuned = numpy_model(merged(weights, enc.factors()))
        test_feats = featurize_with(tuned, [rows[n] for n in te_idx])
        if args.crossfit:
            oof = oof_features(weights, rows, tr_idx,
                               oof_adapters(weights, rows, items, lows, tr_idx, args,
                                            f"fold {g} "))
            train_feats = [oof[n] for n in tr_idx]
        else:
            train_feats = featurize_with(tuned, [rows[n] for n in tr_idx])
        preds["finetuned"] = predict_fit(train_feats, test_feats)
        fold: dict[str, Any] = {"situations": group, "train_seconds": round(train_s),
                                "featurize_seconds": round(time.perf_counter() - t)}
        test_rows = [rows[n] for n in te_idx]
        for name, pr in preds.items():
            by = {id(r): p for r, p in zip(test_rows, pr, strict=True)}
            fold[name] = summary(er.evaluate(test_rows, predict=lambda r, by=by: by[id(r)]))
            pooled[name].update(zip(te_idx, pr, strict=True))
        report["folds"].append(fold)
        print("  " + json.dumps(fold), flush=True)
    done = sorted(pooled["frozen"])
    test_rows = [rows[n] for n in done]
    report["pooled"] = {}
    for name, pr in pooled.items():
        by = {id(rows[n]): pr[n] for n in done}
        res = er.evaluate(test_rows, predict=lambda r, by=by: by[id(r)])
        report["pooled"][name] = {**summary(res), "per_id_f1": {
            i: round(v["f1"], 3) for i, v in res["per_id"].items()}}
        er._print(f"{name}, pooled over {len(report['folds'])} folds", res, confusion=0)
    report["total_seconds"] = round(time.perf_counter() - t0)
    report["load_average"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps({k: v for k, v in report.items() if k != "folds"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
