"""The two-step paper's model: document encoder, entity pooling, BiLinear pair scorer.

One class serves every use by configuration: step 1 (1 output: "some relation
holds"), step 2 (96 relation types), the one-step baseline (N/A + 96 types), and
the shared-encoder variant (column 0 is step 1, columns 1.. are step 2, so both
steps cost one encoder pass). Outputs are independent sigmoids, because a pair can
hold several relations, except in a step 2 configured with ``output="softmax"`` (the
trainer's default): one distribution over the types ("which relation"), trained
against the pair's gold types as a soft target; the predictor keeps the top type plus
any other above a tuned threshold.

Pipeline (Wang et al. 2019, "Fine-tune Bert for DocRED with Two-step Process"):
the whole document goes through the encoder (long ones in overlapping windows, see
``re_pipeline.encoder.encode``); a mention is the mean of its subword embeddings;
an entity pools its mentions (mean as in the paper, or log-sum-exp as in ATLOP);
a linear layer projects entities to 128 dims; a BiLinear layer scores (head, tail).
As an option (on for new models), a learned embedding of the entity's type (PER,
LOC, ...) joins its pooled embedding before the projection, as DocRED's baselines
give the model entity types: the types of head and tail narrow the relation down.
Also an option, ``context="attention"``: a pair-localized context in the spirit of
ATLOP's, learned rather than read from the encoder's attention (which would need
eager attention and window-stitched attention maps): each entity attends over the
document's tokens, a pair's context is the token average weighted by the product of
head and tail attention (tokens relevant to both), and a linear layer adds its
evidence to the pair's scores. "brother" between two people is what tells sibling
from spouse; the entities alone cannot.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from re_pipeline.config import saved_config
from re_pipeline.docred.data import Batch
from re_pipeline.encoder import encode, encoder_from_config, load_encoder


@dataclass
class DocREConfig:
    num_labels: int  # 1 (step 1), 96 (step 2), 97 (one-step, shared)
    task: str = "step1"  # "step1", "step2", "onestep" or "shared": how the labels are read
    pooling: str = "mean"  # entity over mentions: "mean" (paper) or "logsumexp" (ATLOP)
    output: str = "sigmoid"  # "sigmoid" (independent outputs) or "softmax" (step 2 only: one distribution)
    entity_types: list[str] = field(default_factory=list)  # type vocabulary; empty: no type embedding
    type_dim: int = 20  # used only when entity_types is set
    context: str = "none"  # "none" (paper) or "attention": pair-localized context added to the scores
    context_heads: int = 4
    context_dim: int = 64  # attention query/key size over all heads
    proj_dim: int = 128
    dropout: float = 0.1
    encoder: dict[str, Any] = field(default_factory=dict)  # the encoder's PretrainedConfig, filled on save


class DocREModel(nn.Module):
    def __init__(self, config: DocREConfig, encoder: nn.Module) -> None:
        super().__init__()
        if config.pooling not in ("mean", "logsumexp"):
            raise ValueError(f"unknown pooling {config.pooling!r}")
        if config.context not in ("none", "attention"):
            raise ValueError(f"unknown context {config.context!r}")
        if config.output not in ("sigmoid", "softmax") or (config.output == "softmax" and config.task != "step2"):
            raise ValueError(f"output {config.output!r} is not available for task {config.task!r}")
        self.config = config
        self.encoder = encoder
        d = config.proj_dim
        self.dropout = nn.Dropout(config.dropout)
        self.type_ids = {t: i + 1 for i, t in enumerate(config.entity_types)} if config.entity_types else None
        self.type_embedding = (
            nn.Embedding(len(config.entity_types) + 1, config.type_dim, padding_idx=0) if config.entity_types else None
        )
        type_dim = config.type_dim if config.entity_types else 0
        self.proj = nn.Linear(encoder.config.hidden_size + type_dim, d)
        # The BiLinear weight of nn.Bilinear, kept as a tensor so that all pairs of a
        # batch are scored with two einsums (see pair_logits).
        bound = 1 / math.sqrt(d)
        self.bilinear = nn.Parameter(torch.empty(config.num_labels, d, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(config.num_labels).uniform_(-bound, bound))
        if config.context == "attention":
            hidden = encoder.config.hidden_size
            self.context_query = nn.Linear(hidden, config.context_dim)
            self.context_key = nn.Linear(hidden, config.context_dim)
            self.context_out = nn.Linear(hidden, config.num_labels)

    @classmethod
    def from_encoder(cls, config: DocREConfig, encoder_name_or_path: str) -> DocREModel:
        """A new model on top of pretrained encoder weights (for training)."""
        return cls(config, load_encoder(encoder_name_or_path))

    def mention_embeddings(self, hidden: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
        """(B, M, H) mean of each mention's subwords, from prefix sums: no loop, no
        (B, M, T) mask. Padded mentions have an empty span and come out as zeros."""
        prefix = torch.cat([hidden.new_zeros(hidden[:, :1].shape), hidden.float().cumsum(1)], dim=1)
        start, end = spans[..., 0], spans[..., 1]
        h = hidden.shape[-1]
        total = prefix.gather(1, end[..., None].expand(-1, -1, h)) - prefix.gather(
            1, start[..., None].expand(-1, -1, h)
        )
        return total / (end - start).clamp(min=1)[..., None]

    def entity_embeddings(self, mentions: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, E, H) pooled over each entity's mentions; padded slots are masked out
        and padded entities come out as zeros."""
        b, e, k = index.shape
        h = mentions.shape[-1]
        gathered = mentions.gather(1, index.reshape(b, e * k, 1).expand(-1, -1, h)).reshape(b, e, k, h)
        m = mask[..., None]
        if self.config.pooling == "mean":
            return (gathered * m).sum(2) / m.sum(2).clamp(min=1)
        pooled = gathered.masked_fill(~m, float("-inf")).logsumexp(2)
        return pooled.masked_fill(~mask.any(2, keepdim=True), 0.0)

    def pair_logits(self, entities: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """(B, P, C) BiLinear scores of the (head, tail) pairs.

        Scoring the full E x E matrix (entity-side product first, then one dot per
        pair) costs O(E*C*d^2 + E^2*C*d), far less than O(P*C*d^2) per pair.
        """
        x = self.dropout(self.proj(self.dropout(entities)))
        b, e, _ = x.shape
        left = torch.einsum("bed,cdk->bcek", x, self.bilinear)
        scores = torch.einsum("bcek,bfk->bcef", left, x).reshape(b, -1, e * e)
        flat = (pairs[..., 0] * e + pairs[..., 1])[:, None, :].expand(-1, scores.shape[1], -1)
        return scores.gather(2, flat).transpose(1, 2) + self.bias

    def pair_context(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, entities: torch.Tensor, pairs: torch.Tensor
    ) -> torch.Tensor:
        """(B, P, H) each pair's localized context: tokens weighted by how much both the
        head and the tail attend to them (summed over heads, normalized to sum 1)."""
        b, t, _ = hidden.shape
        heads = self.config.context_heads
        size = self.config.context_dim // heads
        keys = self.context_key(hidden).view(b, t, heads, size)
        queries = self.context_query(entities).view(b, entities.shape[1], heads, size)
        scores = torch.einsum("behd,bthd->bhet", queries, keys) / math.sqrt(size)
        attention = scores.masked_fill(~attention_mask.bool()[:, None, None, :], float("-inf")).softmax(-1)
        weights = hidden.new_zeros(b, pairs.shape[1], t)
        for head in range(heads):  # one (B, P, T) product at a time: pairs x tokens is the big dimension
            per_head = attention[:, head]  # (B, E, T)
            head_att = per_head.gather(1, pairs[..., :1].expand(-1, -1, t))
            tail_att = per_head.gather(1, pairs[..., 1:].expand(-1, -1, t))
            weights = weights + head_att * tail_att
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
        return torch.bmm(weights, hidden)

    def forward(self, batch: Batch) -> torch.Tensor:
        hidden = encode(self.encoder, batch.input_ids, batch.attention_mask)
        mentions = self.mention_embeddings(hidden, batch.mention_spans)
        entities = self.entity_embeddings(mentions, batch.entity_mentions, batch.entity_mention_mask).float()
        pooled = entities
        if self.type_embedding is not None:
            if batch.entity_types is None:
                raise ValueError("this model embeds entity types: collate the batch with type_ids=model.type_ids")
            entities = torch.cat([entities, self.type_embedding(batch.entity_types)], dim=-1)
        logits = self.pair_logits(entities, batch.pairs)
        if self.config.context == "attention":
            context = self.pair_context(hidden.float(), batch.attention_mask, pooled, batch.pairs)
            logits = logits + self.context_out(self.dropout(context))
        return logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.config.output == "softmax":
            return logits.float().softmax(-1)
        return logits.float().sigmoid()

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy per output (sigmoid), averaged over the real (unpadded) pairs.

        Softmax outputs take cross-entropy against the gold types spread evenly (a pair
        with two relations puts half its target on each): one contrastive signal per
        pair instead of 96 mostly negative ones, which is what step 2's top-type
        accuracy needs. The shared variant adds the two steps' losses, each over its
        own pairs: column 0 over every sampled pair, the type columns over the related
        pairs only."""
        if self.config.output == "softmax":
            target = labels / labels.sum(-1, keepdim=True).clamp(min=1)
            ce = -(target * logits.float().log_softmax(-1)).sum(-1)
            return _masked_mean(ce, pair_mask & labels.any(-1))
        bce = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        if self.config.task != "shared":
            return _masked_mean(bce.mean(-1), pair_mask)
        return _masked_mean(bce[..., 0], pair_mask) + _masked_mean(
            bce[..., 1:].mean(-1), labels[..., 0].bool() & pair_mask
        )

    def save_pretrained(self, directory: str | Path) -> None:
        """``config.json`` (with the encoder's architecture) + ``model.safetensors``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = asdict(self.config) | {"encoder": self.encoder.config.to_dict()}
        (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: torch.device | str = "cpu") -> DocREModel:
        """Loads a saved model offline: the encoder is rebuilt from its config, then
        every weight comes from ``model.safetensors``."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config = saved_config(DocREConfig, json.loads((directory / "config.json").read_text()), directory)
        model = cls(config, encoder_from_config(config.encoder))
        model.load_state_dict(load_file(str(directory / "model.safetensors"), device=str(device)))
        return model.to(device).eval()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)
