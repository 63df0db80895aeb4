"""The SpERT network (Eberts & Ulges, "Span-based Joint Entity and Relation Extraction
with Transformer Pre-training", ECAI 2020), in one file.

Per sentence, one encoder pass gives subword embeddings. Every word span of up to
``max_span_width`` words is a candidate; its representation is the max-pool of its
subword embeddings ("fusion") concatenated with a learned width embedding. The
entity classifier sees [CLS ∘ span] and picks a type or ``none``; spans classified
``none`` are dropped. For both directions of every pair of kept spans, the
relation classifier sees [span1 ∘ context ∘ span2], where the localized context is
the max-pool of the subwords strictly between the spans (zeros when there are
none), and gives one sigmoid per relation type; a relation holds at score ≥ α.

All span and pair representations are built as tensor ops over a whole batch
(see :class:`RangePool`); there is no Python loop over spans or pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from re_pipeline.config import saved_config
from re_pipeline.encoder import WordBatch, encode, encoder_from_config, pool_words
from re_pipeline.spert.data import PredictedEntity, PredictedRelation, SentencePrediction
from re_pipeline.training import load_weights, save_weights, write_json

FUSIONS = ("max", "sum", "mean")
CONTEXTS = ("localized", "full", "cls")


@dataclass
class SpertConfig:
    entity_types: list[str]  # without "none", which is class 0
    relation_types: list[str]
    symmetric_relations: list[str] = field(default_factory=list)
    max_span_width: int = 10  # candidate spans at inference, in words
    width_dim: int = 25
    width_embeddings: int = 100  # widths beyond this share the last embedding
    dropout: float = 0.1
    fusion: str = "max"  # span fusion over subwords: max | sum | mean (paper's ablation)
    context: str = "localized"  # relation context: localized | full (sentence) | cls (paper's ablation)
    relation_threshold: float = 0.4  # α
    init_std: float = 0.02
    max_pairs: int = 5000  # pairs scored per chunk at inference, to bound memory

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {self.context!r}")


@dataclass
class SpertBatch:
    """Training input: sentences plus flat lists of sampled spans and pairs.

    Sampled spans of all sentences are concatenated (``entity_sent`` says whose);
    ``rel_head``/``rel_tail`` index those rows, so no padding masks are needed.
    """

    words: WordBatch
    entity_sent: torch.Tensor  # (N,)
    entity_start: torch.Tensor  # (N,) first word
    entity_end: torch.Tensor  # (N,) one past the last word
    entity_labels: torch.Tensor  # (N,) 0 = none
    rel_head: torch.Tensor  # (M,) rows of the entity tensors
    rel_tail: torch.Tensor  # (M,)
    rel_labels: torch.Tensor  # (M, relation types) multi-hot, float

    def to(self, device: torch.device | str) -> SpertBatch:
        return SpertBatch(self.words.to(device), *(t.to(device) for k, t in vars(self).items() if k != "words"))


def candidate_spans(lengths: torch.Tensor, max_width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every span of 1..max_width words inside each sentence: (sentence, start, end) tensors,
    ordered by sentence, then start, then width."""
    longest = int(lengths.max()) if lengths.numel() else 0
    start = torch.arange(longest, device=lengths.device)[:, None].expand(longest, max_width)
    end = start + torch.arange(1, max_width + 1, device=lengths.device)[None, :]
    valid = end[None] <= lengths[:, None, None]  # (B, longest, max_width)
    sent, i, w = valid.nonzero(as_tuple=True)
    return sent, start[i, w], end[i, w]


class RangePool:
    """Max-, sum- and mean-pooling of word ranges [start, end) over their subwords.

    Subwords are first pooled per word; a range's max is the max of its words' maxes
    and its sum the sum of its words' sums, so each query costs two gathers:
    a sparse table (level k holds the max of 2**k consecutive words) answers range
    maxima, prefix sums answer range sums; all ranges of one width are slices of the
    same tables (``of_width``), with no gathers at all. Empty ranges pool to zeros, which
    is what SpERT's localized context is when two spans are adjacent or overlap.
    """

    def __init__(self, hidden: torch.Tensor, words: WordBatch) -> None:
        self.hidden, self.words = hidden, words
        word_max = pool_words(hidden, words, "max")  # (B, W, H)
        levels = [word_max]
        width = 1
        while 2 * width <= word_max.shape[1]:
            prev = levels[-1]
            levels.append(torch.cat([torch.maximum(prev[:, :-width], prev[:, width:]), prev[:, -width:]], dim=1))
            width *= 2
        self.table = torch.stack(levels)  # (L, B, W, H)
        self.lengths = words.word_mask.sum(1)  # (B,) words per sentence
        n_words = word_max.shape[1]
        self.log2 = torch.tensor([max(n, 1).bit_length() - 1 for n in range(n_words + 1)], device=hidden.device)

    @cached_property
    def prefix_sum(self) -> torch.Tensor:
        """(B, W+1, H) running sums of the words' subword sums; built on first use (max fusion never needs it)."""
        word_sum = pool_words(self.hidden, self.words, "sum")
        zero = self.hidden.new_zeros(self.hidden.shape[0], 1, self.hidden.shape[-1])
        return torch.cat([zero, word_sum.cumsum(1)], dim=1)

    @cached_property
    def prefix_count(self) -> torch.Tensor:
        n_sub = ((self.words.word_end - self.words.word_start) * self.words.word_mask).to(self.hidden.dtype)  # (B, W)
        return torch.cat([n_sub.new_zeros(n_sub.shape[0], 1), n_sub.cumsum(1)], dim=1)  # (B, W+1)

    def max(self, sent: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        n_words = self.table.shape[2]
        if n_words == 0:
            return self.table.new_zeros(sent.shape[0], self.table.shape[-1])
        nonempty = end > start
        start = start.clamp(max=n_words - 1)
        end = torch.maximum(end, start + 1).clamp(max=n_words)
        k = self.log2[end - start]
        left = self.table[k, sent, start]
        right = self.table[k, sent, end - (1 << k)]
        return torch.maximum(left, right) * nonempty[:, None].to(left.dtype)

    def sum(self, sent: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        end = torch.maximum(start, end)
        return self.prefix_sum[sent, end] - self.prefix_sum[sent, start]

    def mean(self, sent: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        end = torch.maximum(start, end)
        count = self.prefix_count[sent, end] - self.prefix_count[sent, start]
        return self.sum(sent, start, end) / count.clamp(min=1)[:, None]

    def of_width(self, how: str, width: int) -> torch.Tensor:
        """``how``-pooled embeddings of every span of ``width`` words as one dense (B, W - width + 1, H)
        tensor, row i the span starting at word i (spans reaching into padding included): slices of
        the sparse table or of the prefix sums, so no per-span gathers."""
        n_words = self.table.shape[2]
        if width > n_words:
            return self.table.new_zeros(self.table.shape[1], 0, self.table.shape[-1])
        if how == "max":
            k = width.bit_length() - 1
            level = self.table[k]
            return torch.maximum(level[:, : n_words - width + 1], level[:, width - (1 << k) : n_words - (1 << k) + 1])
        total = self.prefix_sum[:, width:] - self.prefix_sum[:, :-width]
        if how == "sum":
            return total
        count = self.prefix_count[:, width:] - self.prefix_count[:, :-width]
        return total / count.clamp(min=1)[..., None]


class SpertModel(nn.Module):
    def __init__(self, config: SpertConfig, encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        span_dim = hidden + config.width_dim
        self.width_embedding = nn.Embedding(config.width_embeddings, config.width_dim)
        self.entity_classifier = nn.Linear(hidden + span_dim, len(config.entity_types) + 1)
        self.relation_classifier = nn.Linear(2 * span_dim + hidden, len(config.relation_types))
        self.dropout = nn.Dropout(config.dropout)
        for module in (self.width_embedding, self.entity_classifier, self.relation_classifier):
            nn.init.normal_(module.weight, std=config.init_std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    # --- building blocks -------------------------------------------------------------------

    def encode(self, words: WordBatch) -> tuple[RangePool, torch.Tensor]:
        """One encoder pass per sentence (long ones windowed by ``encode``); pooling tables and [CLS]."""
        hidden = encode(self.encoder, words.input_ids, words.attention_mask)
        return RangePool(hidden, words), hidden[:, 0]

    def spans(self, pool: RangePool, sent: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """Span representations: fused subword embeddings ∘ width embedding, (N, H + width_dim)."""
        fused = getattr(pool, self.config.fusion)(sent, start, end)
        width = (end - start).clamp(max=self.config.width_embeddings - 1)
        return torch.cat([fused, self.width_embedding(width)], dim=-1)

    def entity_logits(self, cls: torch.Tensor, spans: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
        return self.entity_classifier(self.dropout(torch.cat([cls[sent], spans], dim=-1)))

    def context(
        self,
        pool: RangePool,
        cls: torch.Tensor,
        sent: torch.Tensor,
        start: torch.Tensor,
        end: torch.Tensor,
        head: torch.Tensor,
        tail: torch.Tensor,
    ) -> torch.Tensor:
        """Relation context of pairs of span rows: localized (max-pool of the words strictly
        between the two spans, zeros if none), the full sentence, or [CLS]."""
        pair_sent = sent[head]
        if self.config.context == "localized":
            between_start = torch.minimum(end[head], end[tail])
            between_end = torch.maximum(start[head], start[tail])
            return pool.max(pair_sent, between_start, between_end)
        if self.config.context == "full":
            return pool.max(pair_sent, torch.zeros_like(pair_sent), pool.lengths[pair_sent])
        return cls[pair_sent]

    def relation_logits(
        self,
        pool: RangePool,
        cls: torch.Tensor,
        spans: torch.Tensor,
        sent: torch.Tensor,
        start: torch.Tensor,
        end: torch.Tensor,
        head: torch.Tensor,
        tail: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (P, relation types) of [span(head) ∘ context ∘ span(tail)] for pairs of span rows."""
        context = self.context(pool, cls, sent, start, end, head, tail)
        pairs = torch.cat([spans[head], context, spans[tail]], dim=-1)
        return self.relation_classifier(self.dropout(pairs))

    # --- training --------------------------------------------------------------------------

    def loss(self, batch: SpertBatch) -> torch.Tensor:
        """Joint loss: entity cross-entropy + relation binary cross-entropy (mean over
        types), each averaged over the batch's samples, as in SpERT."""
        pool, cls = self.encode(batch.words)
        spans = self.spans(pool, batch.entity_sent, batch.entity_start, batch.entity_end)
        entity_loss = nn.functional.cross_entropy(
            self.entity_logits(cls, spans, batch.entity_sent), batch.entity_labels
        )
        if batch.rel_head.numel() == 0:
            return entity_loss
        logits = self.relation_logits(
            pool, cls, spans, batch.entity_sent, batch.entity_start, batch.entity_end, batch.rel_head, batch.rel_tail
        )
        return entity_loss + nn.functional.binary_cross_entropy_with_logits(logits, batch.rel_labels)

    # --- inference -------------------------------------------------------------------------

    def detect_entities(
        self, pool: RangePool, cls: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The candidate spans not classified ``none``: (sentence, start, end, type, probability),
        ordered as ``candidate_spans`` orders them.

        The same scores as ``entity_logits`` over ``spans`` of every candidate (at eval, without
        dropout), computed without building the (candidates x hidden) span rows: the
        classifier is linear in its three input blocks, so [CLS] and the width embeddings are
        scored once each, and the fused spans of one width come as one dense tensor
        (``RangePool.of_width``). At inference most of SpERT's time outside the encoder was
        those gathers and concatenations."""
        hidden, n_widths = cls.shape[-1], self.config.width_embeddings
        weight, max_width = self.entity_classifier.weight, self.config.max_span_width
        from_cls = cls @ weight[:, :hidden].T + self.entity_classifier.bias  # (B, C)
        from_span = weight[:, hidden : 2 * hidden]
        from_width = self.width_embedding.weight @ weight[:, 2 * hidden :].T  # (widths, C)
        found = []
        for width in range(1, max_width + 1):
            fused = pool.of_width(self.config.fusion, width)  # (B, S, H)
            logits = fused @ from_span.T + from_cls[:, None] + from_width[min(width, n_widths - 1)]
            score, label = logits.float().softmax(-1).max(-1)  # (B, S)
            inside = torch.arange(fused.shape[1], device=cls.device)[None] + width <= pool.lengths[:, None]
            sent, start = ((label > 0) & inside).nonzero(as_tuple=True)
            found.append((sent, start, start + width, label[sent, start], score[sent, start]))
        sent, start, end, label, score = (torch.cat(column) for column in zip(*found, strict=True))
        order = torch.argsort((sent * (pool.table.shape[2] + 1) + start) * (max_width + 1) + end - start)
        return sent[order], start[order], end[order], label[order], score[order]

    @torch.inference_mode()
    def predict(self, words: WordBatch) -> list[SentencePrediction]:
        """Entities and relations of each sentence of the batch (call in eval mode)."""
        cfg = self.config
        pool, cls = self.encode(words)
        sent, start, end, label, score = self.detect_entities(pool, cls)
        spans = self.spans(pool, sent, start, end)

        # Both directions of every pair of kept spans in the same sentence.
        same = sent[:, None] == sent[None, :]
        same.fill_diagonal_(False)
        head, tail = same.nonzero(as_tuple=True)
        hits, hit_scores = [], []  # (head row, tail row, relation type), score
        for i in range(0, head.numel(), cfg.max_pairs):
            h, t = head[i : i + cfg.max_pairs], tail[i : i + cfg.max_pairs]
            rel = self.relation_logits(pool, cls, spans, sent, start, end, h, t).float().sigmoid()
            pair, rtype = (rel >= cfg.relation_threshold).nonzero(as_tuple=True)
            hits.append(torch.stack([h[pair], t[pair], rtype], dim=1))
            hit_scores.append(rel[pair, rtype])
        return self._to_predictions(len(cls), sent, start, end, label, score, hits, hit_scores)

    def _to_predictions(
        self,
        n_sentences: int,
        sent: torch.Tensor,
        start: torch.Tensor,
        end: torch.Tensor,
        label: torch.Tensor,
        score: torch.Tensor,
        hits: list[torch.Tensor],
        hit_scores: list[torch.Tensor],
    ) -> list[SentencePrediction]:
        """Tensors -> per-sentence Python objects (one ``tolist`` per tensor)."""
        out = [SentencePrediction() for _ in range(n_sentences)]
        per_sentence = torch.bincount(sent, minlength=n_sentences)
        first = per_sentence.cumsum(0) - per_sentence  # row of each sentence's first kept span
        local = (torch.arange(sent.numel(), device=sent.device) - first[sent]).tolist()
        ent_types = self.config.entity_types
        columns = (sent.tolist(), start.tolist(), end.tolist(), label.tolist(), score.tolist())
        for s, a, b, lab, sc in zip(*columns, strict=True):
            out[s].entities.append(PredictedEntity(a, b, ent_types[lab - 1], sc))
        rel_types = self.config.relation_types
        sent_list = sent.tolist()
        for rows, scores in zip(hits, hit_scores, strict=True):
            for (h, t, r), sc in zip(rows.tolist(), scores.tolist(), strict=True):
                out[sent_list[h]].relations.append(PredictedRelation(local[h], local[t], rel_types[r], sc))
        return out

    # --- model directory -------------------------------------------------------------------

    def save_pretrained(self, path: str | Path, tokenizer: Any = None, training: dict[str, Any] | None = None) -> None:
        """config.json (architecture, types, hyperparameters, encoder config), model.safetensors, tokenizer files."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_json(
            path / "config.json",
            {
                "architecture": "SpERT",
                "spert": asdict(self.config),
                "encoder_config": self.encoder.config.to_dict(),
                "training": training or {},
            },
        )
        save_weights(self, path / "model.safetensors")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(path))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> SpertModel:
        """Load a model directory offline (no network, no pretrained encoder needed)."""
        import json

        obj = json.loads((Path(path) / "config.json").read_text())
        if obj.get("architecture") != "SpERT":
            raise ValueError(f"{path} does not hold a SpERT model")
        model = cls(saved_config(SpertConfig, obj["spert"], path), encoder_from_config(obj["encoder_config"]))
        load_weights(model, Path(path) / "model.safetensors", device)
        return model.to(device).eval()
