"""The saved model directory and batched inference for the pipeline.

A model directory holds everything inference needs, offline::

    config.json        mode ("twostep", "onestep" or "shared"), relation ids, thresholds
    step1/ step2/      (or onestep/, shared/) each a DocREModel: config.json + model.safetensors
    tokenizer/         the encoder's tokenizer
    metrics.json       dev metrics of the kept checkpoint and the per-epoch history
    curves.png         training curves

Two-step decision rule: a pair is related if step 1's probability reaches
``thresholds["step1"]``; step 2 then gives it its top type plus every other type
whose probability reaches ``thresholds["step2"]``. A fact's score is
p(related) * p(type). One-step rule (DocRED baseline): every (pair, type) whose
probability reaches ``thresholds["onestep"]``. The shared variant applies the
two-step rule to its column 0 (step 1) and columns 1.. (step 2).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from re_pipeline.docred.data import Batch, DocFeatures, Pair, build_features, collate
from re_pipeline.docred.model import DocREModel
from re_pipeline.documents import Document, Relation
from re_pipeline.encoder import autocast, length_batches, load_tokenizer, resolve_device
from re_pipeline.inference import for_inference

log = logging.getLogger(__name__)

#: (head, tail, relation index, score)
Fact = tuple[int, int, int, float]

MODES = {"twostep": ("step1", "step2"), "onestep": ("onestep",), "shared": ("shared",)}


def step_probs(mode: str, probs: dict[str, list[torch.Tensor]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per document, p(related) (P,) and p(type) (P, R) of a two-step or shared model."""
    if mode == "twostep":
        return [p[:, 0] for p in probs["step1"]], probs["step2"]
    return [p[:, 0] for p in probs["shared"]], [p[:, 1:] for p in probs["shared"]]


@torch.inference_mode()
def pair_probs(
    model: DocREModel,
    features: Sequence[DocFeatures],
    pairs: Sequence[Sequence[Pair]] | None = None,
    batch_size: int = 8,
    pad_id: int = 0,
    max_tokens: int | None = None,
) -> list[torch.Tensor]:
    """Probabilities (P_i, C) of each document's pairs (default: all ordered
    pairs), in input order. Documents go in length-sorted batches to keep padding small,
    of at most ``max_tokens`` padded subwords when given."""
    model.eval()
    device = next(model.parameters()).device
    pairs = pairs if pairs is not None else [f.all_pairs() for f in features]
    out: list[torch.Tensor] = [torch.zeros((0, model.config.num_labels))] * len(features)
    for idx in length_batches([len(f.input_ids) for f in features], batch_size, max_tokens):
        batch: Batch = collate(
            [features[i] for i in idx], [pairs[i] for i in idx], pad_id=pad_id, type_ids=model.type_ids
        ).to(device)
        with autocast(device):
            probs = model.probabilities(model(batch)).cpu()
        for row, i in enumerate(idx):
            out[i] = probs[row, : len(pairs[i])]
    return out


def decode_twostep(pairs: Sequence[Pair], p1: torch.Tensor, p2: torch.Tensor, t1: float, t2: float) -> list[Fact]:
    """Facts of one document from step-1 probabilities (P,) and step-2 ones (P, R)."""
    keep = (p1 >= t1).nonzero().flatten()
    if keep.numel() == 0:
        return []
    sub = p2[keep]
    chosen = (sub >= t2) | torch.nn.functional.one_hot(sub.argmax(-1), sub.shape[-1]).bool()
    rows, rels = chosen.nonzero(as_tuple=True)
    heads_tails = torch.tensor(pairs, dtype=torch.long)[keep[rows]]
    scores = p1[keep[rows]] * sub[rows, rels]
    return list(zip(*heads_tails.T.tolist(), rels.tolist(), scores.tolist(), strict=True))


def decode_onestep(pairs: Sequence[Pair], probs: torch.Tensor, threshold: float) -> list[Fact]:
    """Facts of one document from one-step probabilities (P, 1 + R); column 0 is N/A."""
    rows, rels = (probs[:, 1:] >= threshold).nonzero(as_tuple=True)
    if rows.numel() == 0:
        return []
    heads_tails = torch.tensor(pairs, dtype=torch.long)[rows]
    return list(zip(*heads_tails.T.tolist(), rels.tolist(), probs[rows, rels + 1].tolist(), strict=True))


@dataclass
class DocREPredictor:
    """The trained model(s) of one mode, their tokenizer, relation ids and thresholds."""

    mode: str
    models: dict[str, DocREModel]
    tokenizer: Any
    relations: list[str]
    thresholds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the training settings
    max_tokens: int | None = None  # padded subwords per batch: bounds memory on long documents

    @property
    def device(self) -> torch.device:
        return next(next(iter(self.models.values())).parameters()).device

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def features(self, docs: Sequence[Document], entities: str = "predicted") -> list[DocFeatures]:
        features = build_features(self.tokenizer, docs, self.relations, entities=entities)
        known = set().union(*(m.config.entity_types for m in self.models.values()))
        if known:  # types outside the model's vocabulary reach it as "unknown": say so once per call
            types = Counter(t for f in features for t in f.entity_types)
            unknown = sum(n for t, n in types.items() if t not in known)
            if unknown > 0.5 * sum(types.values()):
                log.warning(
                    "%d of %d entities have types the relation model never saw (%s; it knows %s): "
                    "were the mentions typed with another scheme?",
                    unknown,
                    sum(types.values()),
                    ", ".join(sorted(set(types) - known)[:5]),
                    ", ".join(sorted(known)),
                )
        return features

    def probabilities(self, features: Sequence[DocFeatures], batch_size: int = 8) -> dict[str, list[torch.Tensor]]:
        """Every model's probabilities over all ordered pairs (for evaluation and tuning)."""
        return {
            task: pair_probs(m, features, None, batch_size, self.pad_id, self.max_tokens)
            for task, m in self.models.items()
        }

    def decode(self, features: Sequence[DocFeatures], probs: dict[str, list[torch.Tensor]]) -> list[list[Fact]]:
        if self.mode == "onestep":
            return [
                decode_onestep(f.all_pairs(), p, self.thresholds["onestep"])
                for f, p in zip(features, probs["onestep"], strict=True)
            ]
        t1, t2 = self.thresholds["step1"], self.thresholds["step2"]
        return [
            decode_twostep(f.all_pairs(), p1, p2, t1, t2)
            for f, p1, p2 in zip(features, *step_probs(self.mode, probs), strict=True)
        ]

    def facts(self, features: Sequence[DocFeatures], batch_size: int = 8) -> list[list[Fact]]:
        """Facts per document; in two-step mode step 2 only scores the pairs that step 1 passed."""
        if self.mode != "twostep":  # one encoder pass scores everything
            return self.decode(features, self.probabilities(features, batch_size))
        all_pairs = [f.all_pairs() for f in features]
        step1 = pair_probs(self.models["step1"], features, all_pairs, batch_size, self.pad_id, self.max_tokens)
        p1 = [p[:, 0] for p in step1]
        keep = [p >= self.thresholds["step1"] for p in p1]
        passed = [
            [pairs[k] for k in mask.nonzero().flatten().tolist()] for pairs, mask in zip(all_pairs, keep, strict=True)
        ]
        todo = [i for i, ps in enumerate(passed) if ps]
        p2 = pair_probs(
            self.models["step2"],
            [features[i] for i in todo],
            [passed[i] for i in todo],
            batch_size,
            self.pad_id,
            self.max_tokens,
        )
        out: list[list[Fact]] = [[] for _ in features]
        for i, probs in zip(todo, p2, strict=True):
            out[i] = decode_twostep(
                passed[i], p1[i][keep[i]], probs, self.thresholds["step1"], self.thresholds["step2"]
            )
        return out

    def predict(self, docs: Sequence[Document], batch_size: int = 8) -> list[Document]:
        """Fill ``predicted.relations`` (source: the mode) of documents
        whose ``predicted.entities`` are set; returns the same documents."""
        features = self.features(docs, entities="predicted")
        for doc, facts in zip(docs, self.facts(features, batch_size), strict=True):
            doc.predicted.relations = [
                Relation(h, t, self.relations[r], score, [], self.mode) for h, t, r, score in facts
            ]
        return list(docs)

    def to_docred(self, features: Sequence[DocFeatures], facts: Sequence[Sequence[Fact]]) -> list[dict[str, Any]]:
        """DocRED's prediction format: {"title", "h_idx", "t_idx", "r", "score"}."""
        return [
            {"title": f.title, "h_idx": h, "t_idx": t, "r": self.relations[r], "score": s}
            for f, fs in zip(features, facts, strict=True)
            for h, t, r, s in fs
        ]

    def save(self, directory: str | Path, metrics: dict[str, Any] | None = None) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for task, model in self.models.items():
            model.save_pretrained(directory / task)
        self.tokenizer.save_pretrained(str(directory / "tokenizer"))
        config = {"mode": self.mode, "relations": self.relations, "thresholds": self.thresholds, **self.extra}
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        if metrics is not None:
            (directory / "metrics.json").write_text(json.dumps(metrics, indent=2))

    @classmethod
    def load(
        cls, directory: str | Path, device: str = "auto", max_tokens: int | None = None, runtime: str = "torch"
    ) -> DocREPredictor:
        """A saved model directory, offline; ``runtime`` "onnx" runs the encoders on ONNX Runtime (CPU)."""
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        dev = resolve_device(device)
        mode, relations, thresholds = config.pop("mode"), config.pop("relations"), config.pop("thresholds")
        models = {
            task: for_inference(DocREModel.from_pretrained(directory / task, dev), dev, runtime) for task in MODES[mode]
        }
        tokenizer = load_tokenizer(str(directory / "tokenizer"))
        return cls(mode, models, tokenizer, relations, thresholds, config, max_tokens)
