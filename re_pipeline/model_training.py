"""Training the pipeline's models, registered in ``models/registry.json``.

Three roles, trained from one DocRED-format corpus: SpERT on sentences derived
from it (mention detector and sentence-level extractor), the coreference pair
scorer on its entity clusters, and the DocRED two-step model on its documents.
Each new model is registered with its dev metrics and promoted to current only
if it beats the current one (``promote="if-better"``).

Profiles: ``quick`` trains small models on the bundled sample corpus in a few
minutes on a CPU (a demo, not a useful extractor); ``full`` trains on a real
corpus with the papers' settings (GPU recommended).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from re_pipeline.config import PROJECT_DIR, SAMPLE_CORPUS

SHARED_REDOCRED = PROJECT_DIR.parent / "shared" / "data" / "redocred" / "dev_revised.json"


@dataclass(frozen=True)
class Profile:
    corpus: Path
    train: slice  # documents of the corpus to train on
    dev: slice  # and to select checkpoints and thresholds on
    spert_epochs: int
    docred_epochs: int
    coref_epochs: int
    spert_lr: float = 5e-5  # the paper's; the quick profile trades it for convergence in a few steps
    docred_pooling: str = "logsumexp"  # best on Re-DocRED; on the 22 sample documents mean learns faster


PROFILES = {
    "quick": Profile(
        SAMPLE_CORPUS,
        slice(0, 22),
        slice(22, 30),
        spert_epochs=4,
        docred_epochs=8,
        coref_epochs=20,
        spert_lr=3e-4,
        docred_pooling="mean",
    ),
    "full": Profile(
        SHARED_REDOCRED, slice(0, 400), slice(400, 500), spert_epochs=20, docred_epochs=10, coref_epochs=30
    ),
}
ROLES = ("spert", "coref", "docred")


def train_models(
    profile: str,
    models_dir: str | Path,
    encoder: str,
    *,
    corpus: str | Path | None = None,
    roles: tuple[str, ...] = ROLES,
    device: str = "auto",
    promote: str = "if-better",
) -> dict[str, dict[str, Any]]:
    """Train ``roles`` per ``profile`` into ``models_dir``; returns per role: name, metrics, promoted."""
    from re_pipeline.ingest import load_valid_corpus
    from re_pipeline.registry import Registry

    spec = PROFILES[profile]
    docs = load_valid_corpus(corpus or spec.corpus)
    train, dev = docs[spec.train], docs[spec.dev]
    if not train or not dev or any(d.gold is None for d in train + dev):
        raise ValueError("training needs a DocRED-format corpus with gold annotations for both splits")
    registry = Registry(Path(models_dir))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    trainers = {"spert": _train_spert, "coref": _train_coref, "docred": _train_docred}
    evaluated_on = f"{Path(corpus or spec.corpus).name} [{spec.dev.start}:{spec.dev.stop}]"
    results = {}
    for role in roles:
        name = f"{role}-{profile}-{stamp}"
        metrics = trainers[role](spec, train, dev, registry.root / name, encoder, device)
        promoted = registry.register(role, name, metrics, promote, evaluated_on)
        results[role] = {"name": name, "metrics": metrics, "promoted": promoted}
    return results


def _train_spert(spec: Profile, train: list, dev: list, out: Path, encoder: str, device: str) -> dict[str, float]:
    from re_pipeline.config import SpertTrainConfig
    from re_pipeline.spert.data import Types, document_examples
    from re_pipeline.spert.train import train as train_spert

    train_ex = [ex for d in train for ex in document_examples(d, gold=True)]
    dev_ex = [ex for d in dev for ex in document_examples(d, gold=True)]
    types = Types.from_examples(train_ex + dev_ex)
    args = SpertTrainConfig(epochs=spec.spert_epochs, lr=spec.spert_lr, device=device)
    _, history = train_spert(train_ex, dev_ex, types, encoder, out, args)
    best = max(history, key=lambda h: (h.metrics.get("rel_nec_micro_f1", -1.0), h.metrics.get("ent_micro_f1", -1.0)))
    return {
        "relation_f1": best.metrics.get("rel_nec_micro_f1", 0.0),
        "entity_f1": best.metrics.get("ent_micro_f1", 0.0),
    }


def _train_coref(spec: Profile, train: list, dev: list, out: Path, encoder: str, device: str) -> dict[str, float]:
    from re_pipeline.coref import Grouper, ScorerConfig, gold_pairs, train_scorer
    from re_pipeline.coref_metrics import coref_scores

    scorer, _ = train_scorer(train, dev, ScorerConfig(), epochs=spec.coref_epochs)
    scorer.save(out)
    grouper = Grouper(scorer, scorer.config.threshold)
    scores = coref_scores([d.gold.entities for d in dev], [grouper.group(gold_pairs(d)[0]) for d in dev])
    return {"conll_f1": scores["conll_f1"], "exact_cluster_f1": scores["exact_cluster"]["f1"]}


def _train_docred(spec: Profile, train: list, dev: list, out: Path, encoder: str, device: str) -> dict[str, float]:
    from re_pipeline.config import DocRETrainConfig
    from re_pipeline.docred.train import train as train_docred

    config = DocRETrainConfig(epochs=spec.docred_epochs, pooling=spec.docred_pooling, device=device)
    metrics = train_docred(config, encoder, train, dev, out)
    return {"f1": 100 * metrics["best"]["f1"], "ign_f1": 100 * metrics["best"]["ign_f1"]}
