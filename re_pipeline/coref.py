"""Coreference-aware entity grouping: a document's mentions -> entities (mention clusters).

Two layers, so grouping works before any model is trained and improves once one is:

* **rules** (the floor): mentions of the same type corefer when their normalized
  names match, one is the other's acronym, or (persons) one is a first or last
  name of the other;
* a **learned mention-pair scorer**: string features (the rules among them) plus,
  when given, encoder embeddings of both mentions, trained on DocRED ``vertexSet``
  clusters.

Pair probabilities then go through type-constrained average-link agglomerative
clustering: two clusters merge only if their types agree and the mean probability
over all their cross pairs passes the threshold, which avoids the chaining that
single-link transitive closure produces.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from re_pipeline.documents import Document, Entity, Mention, canonical_name, normalize_name

_STOP = {"the", "of", "a", "an", "and", "in", "for", "on", "at", "to", "de", "la", "le", "von", "van", "der"}
_WORD = re.compile(r"\w+")
_DIGITS = re.compile(r"\d+")

FEATURES = [
    "exact",
    "normalized",
    "head_word",
    "acronym",
    "token_subset",
    "person_name_part",
    "same_type",
    "same_sentence",
    "sentence_distance",
    "token_jaccard",
    "digits_differ",
    "rule",
]


def _tokens(text: str) -> list[str]:
    return [t.casefold() for t in _WORD.findall(text)]


def _content(tokens: list[str]) -> set[str]:
    return {t for t in tokens if t not in _STOP}


def is_acronym(short: str, long: str) -> bool:
    """'NASA' for 'National Aeronautics and Space Administration', 'U.S.' for 'United States'."""
    letters = "".join(c for c in short if c.isalpha())
    words = [w for w in _WORD.findall(long) if w.casefold() not in _STOP]
    if len(letters) < 2 or len(words) < 2 or not short.replace(".", "").isupper():
        return False
    return letters.casefold() == "".join(w[0] for w in words).casefold()


@dataclass(frozen=True)
class _Profile:
    """What the pair features need of one mention, computed once per mention."""

    mention: Mention
    tokens: tuple[str, ...]
    content: frozenset[str]
    normalized: str
    digits: frozenset[str]

    @classmethod
    def of(cls, m: Mention) -> _Profile:
        tokens = tuple(_tokens(m.text))
        content = frozenset(_content(list(tokens)))
        return cls(m, tokens, content, normalize_name(m.text), frozenset(_DIGITS.findall(m.text)))


def _features(pa: _Profile, pb: _Profile) -> list[float]:
    a, b = pa.mention, pb.mention
    ta, tb = pa.tokens, pb.tokens
    short, long = (pa.content, pb.content) if len(pa.content) <= len(pb.content) else (pb.content, pa.content)
    same_type = a.type == b.type
    acronym = is_acronym(a.text, b.text) or is_acronym(b.text, a.text)
    person_part = (
        same_type and a.type == "PER" and bool(short) and short < long and (ta[-1:] == tb[-1:] or ta[:1] == tb[:1])
    )
    normalized = bool(pa.normalized) and pa.normalized == pb.normalized
    distance = abs(a.sent - b.sent)
    return [
        float(a.text.casefold() == b.text.casefold()),
        float(normalized),
        float(bool(ta) and bool(tb) and ta[-1] == tb[-1]),
        float(acronym),
        float(bool(short) and short <= long),
        float(person_part),
        float(same_type),
        float(distance == 0),
        math.log1p(distance) / math.log(50),
        len(pa.content & pb.content) / max(len(pa.content | pb.content), 1),
        float(bool(pa.digits) and bool(pb.digits) and pa.digits != pb.digits),
        float(same_type and (normalized or acronym or person_part)),
    ]


@dataclass
class ScorerConfig:
    embedding_dim: int = 0  # 0: string features only
    hidden: int = 64
    threshold: float = 0.5


class PairScorer(nn.Module):
    """Coreference probability of a mention pair from its features and (optionally) embeddings."""

    def __init__(self, config: ScorerConfig):
        super().__init__()
        self.config = config
        emb_out = 64 if config.embedding_dim else 0
        self.embed = nn.Linear(3 * config.embedding_dim, emb_out) if config.embedding_dim else None
        self.mlp = nn.Sequential(
            nn.Linear(len(FEATURES) + emb_out, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1)
        )

    def forward(self, features: torch.Tensor, emb_a: torch.Tensor | None, emb_b: torch.Tensor | None) -> torch.Tensor:
        """Logits (P,) for P pairs: features (P, F), embeddings (P, H) each or None."""
        x = features
        if self.embed is not None:
            if emb_a is None or emb_b is None:
                raise ValueError("this scorer was trained with mention embeddings; pass them")
            x = torch.cat([x, torch.relu(self.embed(torch.cat([emb_a, emb_b, emb_a * emb_b], -1)))], -1)
        return self.mlp(x).squeeze(-1)

    def save(self, folder: str | Path) -> None:
        from re_pipeline.training import save_weights, write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "config.json", {"model": "coref-pair-scorer", "features": FEATURES, **asdict(self.config)})
        save_weights(self, folder / "model.safetensors")

    @classmethod
    def load(cls, folder: str | Path) -> PairScorer:
        import json

        from re_pipeline.training import load_weights

        raw = json.loads((Path(folder) / "config.json").read_text())
        if raw.get("features") != FEATURES:
            raise ValueError(f"{folder}: trained with other features ({raw.get('features')}); retrain it")
        model = cls(ScorerConfig(**{k: raw[k] for k in ("embedding_dim", "hidden", "threshold")}))
        load_weights(model, Path(folder) / "model.safetensors")
        return model.eval()


def pair_index(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indexes (i, j), i < j, of all unordered pairs of n items."""
    i, j = torch.triu_indices(n, n, offset=1)
    return i, j


def _type_codes(mentions: list[Mention]) -> torch.Tensor:
    index: dict[str, int] = {}
    return torch.tensor([index.setdefault(m.type, len(index)) for m in mentions], dtype=torch.long)


def candidate_pairs(mentions: list[Mention]) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs that may corefer: those of the same type (a type conflict never merges)."""
    i, j = pair_index(len(mentions))
    codes = _type_codes(mentions)
    keep = codes[i] == codes[j]
    return i[keep], j[keep]


def pair_inputs(
    mentions: list[Mention], pairs: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair indexes (all pairs by default) and their features (P, F)."""
    i, j = pairs if pairs is not None else pair_index(len(mentions))
    profiles = [_Profile.of(m) for m in mentions]
    feats = torch.tensor(
        [_features(profiles[a], profiles[b]) for a, b in zip(i.tolist(), j.tolist(), strict=True)],
        dtype=torch.float32,
    ).reshape(-1, len(FEATURES))
    return i, j, feats


def probabilities(
    mentions: list[Mention], scorer: PairScorer | None = None, embeddings: torch.Tensor | None = None
) -> torch.Tensor:
    """(M, M) symmetric coreference probabilities, 0 across types; the 1/0 rules without a scorer."""
    n = len(mentions)
    probs = torch.zeros((n, n))
    i, j = candidate_pairs(mentions) if n > 1 else (torch.zeros(0, dtype=torch.long),) * 2
    if len(i) == 0:
        return probs
    i, j, feats = pair_inputs(mentions, (i, j))
    if scorer is None:
        p = feats[:, FEATURES.index("rule")]
    else:
        with torch.inference_mode():
            emb_a = embeddings[i] if embeddings is not None else None
            emb_b = embeddings[j] if embeddings is not None else None
            p = torch.sigmoid(scorer(feats, emb_a, emb_b).float())
    probs[i, j] = p
    probs[j, i] = p
    return probs


def cluster(mentions: list[Mention], probs: torch.Tensor, threshold: float = 0.5) -> list[list[int]]:
    """Type-constrained average-link agglomerative clustering; returns clusters of mention indexes.

    Keeps the sum of cross-pair probabilities between every two clusters, so a merge
    is a vector update and the best next merge one argmax over the matrix.
    """
    n = len(mentions)
    members = [[k] for k in range(n)]
    if n < 2:
        return members
    codes = _type_codes(mentions)
    allowed = codes[:, None] == codes[None, :]
    allowed.fill_diagonal_(False)
    sums = probs.double().clone()
    sizes = torch.ones(n, dtype=torch.float64)
    while True:
        avg = (sums / (sizes[:, None] * sizes[None, :])).masked_fill(~allowed, -1.0)
        x, y = divmod(int(avg.argmax()), n)
        if avg[x, y] < threshold:
            break
        x, y = min(x, y), max(x, y)
        sums[x] += sums[y]
        sums[:, x] += sums[:, y]
        sizes[x] += sizes[y]
        allowed[y, :] = False
        allowed[:, y] = False
        members[x] += members[y]
        members[y] = []
    return sorted((sorted(c) for c in members if c), key=lambda c: c[0])


@dataclass
class Grouper:
    """Groups one document's mentions into entities; ``scorer`` None means rules only."""

    scorer: PairScorer | None = None
    threshold: float = field(default=0.5)

    @classmethod
    def load(cls, folder: str | Path | None) -> Grouper:
        """The trained pair scorer in ``folder``; None means rules only (a folder without weights is an error,
        not a silent fallback to rules)."""
        if folder is None:
            return cls()
        if not (Path(folder) / "model.safetensors").exists():
            raise FileNotFoundError(f"no coreference model in {folder} (model.safetensors missing)")
        scorer = PairScorer.load(folder)
        return cls(scorer, scorer.config.threshold)

    def group(self, mentions: list[Mention], embeddings: torch.Tensor | None = None) -> list[Entity]:
        order = sorted(range(len(mentions)), key=lambda k: (mentions[k].sent, mentions[k].start, mentions[k].end))
        ordered = [mentions[k] for k in order]
        emb = embeddings[order] if embeddings is not None else None
        clusters = cluster(ordered, probabilities(ordered, self.scorer, emb), self.threshold)
        entities = []
        for c in clusters:
            ms = [ordered[k] for k in c]
            entities.append(Entity(ms, ms[0].type, canonical_name([m.text for m in ms])))  # as gold entities
        return entities


def gold_pairs(doc: Document) -> tuple[list[Mention], torch.Tensor]:
    """All gold mentions of a document and the (P,) same-cluster labels of their pairs (pair_index order)."""
    if doc.gold is None:
        raise ValueError(f"{doc.doc_id} has no gold clusters")
    mentions, owner = [], []
    for e, ent in enumerate(doc.gold.entities):
        for m in ent.mentions:
            mentions.append(m)
            owner.append(e)
    i, j = pair_index(len(mentions))
    owners = torch.tensor(owner)
    return mentions, (owners[i] == owners[j]).float() if len(mentions) > 1 else torch.zeros(0)


def train_scorer(
    train_docs: list[Document],
    dev_docs: list[Document],
    config: ScorerConfig,
    embeddings: dict[str, torch.Tensor] | None = None,
    epochs: int = 30,
    lr: float = 1e-3,
    seed: int = 13,
) -> tuple[PairScorer, list[float]]:
    """Fit the pair scorer on gold clusters; tune the clustering threshold on dev (CoNLL F1).

    ``embeddings`` maps doc_id -> (M, H) embeddings of the document's gold mentions in
    ``gold_pairs`` order. Returns the scorer and the per-epoch training loss.
    """
    from re_pipeline.coref_metrics import coref_scores
    from re_pipeline.training import seed_everything

    seed_everything(seed)
    model = PairScorer(config)
    data = []
    for doc in train_docs:
        mentions, labels = gold_pairs(doc)
        if len(mentions) < 2:
            continue
        i, j, feats = pair_inputs(mentions)
        emb = embeddings[doc.doc_id] if embeddings is not None else None
        data.append((feats, labels, emb[i] if emb is not None else None, emb[j] if emb is not None else None))
    loss_fn = nn.BCEWithLogitsLoss()  # unweighted: probabilities stay calibrated for the threshold
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        model.train()
        epoch_loss = 0.0
        for k in torch.randperm(len(data)).tolist():
            feats, labels, ea, eb = data[k]
            loss = loss_fn(model(feats, ea, eb), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item()
        losses.append(epoch_loss / max(len(data), 1))
    model.eval()
    gold = [d.gold.entities for d in dev_docs if d.gold is not None]
    mentions = [gold_pairs(d)[0] for d in dev_docs]
    dev_emb = [embeddings.get(d.doc_id) if embeddings else None for d in dev_docs]
    best = (-1.0, 0.5)
    for threshold in [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]:
        grouper = Grouper(model, threshold)
        pred = [grouper.group(m, e) for m, e in zip(mentions, dev_emb, strict=True)]
        best = max(best, (coref_scores(gold, pred)["conll_f1"], threshold))
    model.config.threshold = best[1]
    return model, losses
