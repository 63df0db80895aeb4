"""Tiny randomly initialised models for fast tests of the pipeline's plumbing (not its accuracy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ENTITY_TYPES = ["PER", "ORG", "LOC", "TIME", "NUM", "MISC"]


def _conll_examples() -> tuple[Any, list[Any]]:
    from re_pipeline.spert.data import Example, Types

    types = Types(["Loc", "Org", "Peop"], ["Live_In", "OrgBased_In", "Work_For"])
    examples = [
        Example(
            ["John", "Smith", "works", "for", "Acme", "Corporation", "in", "Boston", "."],
            [(0, 2, "Peop"), (4, 6, "Org"), (7, 8, "Loc")],
            [(0, 1, "Work_For"), (1, 2, "OrgBased_In")],
        ),
        Example(["Mary", "lives", "in", "Paris", "."], [(0, 1, "Peop"), (3, 4, "Loc")], [(0, 1, "Live_In")]),
        Example(
            ["The", "unbelievably", "hyperextended", "Kowalczykowski", "visited", "Reykjavik", "yesterday", "."],
            [(3, 4, "Peop"), (5, 6, "Loc")],
            [],
        ),
    ]
    return types, examples


#: A CoNLL04-like toy set (sentences with a word split into many subwords) for SpERT and baseline tests.
TYPES, EXAMPLES = _conll_examples()


def tokenizer() -> Any:
    from re_pipeline.config import default_encoder
    from re_pipeline.encoder import load_tokenizer

    return load_tokenizer(default_encoder())


def tiny_encoder(tok: Any, max_positions: int = 512, seed: int = 0, dropout: float = 0.1) -> torch.nn.Module:
    """A 2-layer, 32-dim BERT over the real MiniLM vocabulary (dropout 0 to overfit on purpose)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return BertModel(config).eval()


def tiny_registry(models_dir: Path, with_docred: bool = True) -> Path:
    """A model registry whose current SpERT (and two-step) models are tiny and random."""
    from re_pipeline.docred.data import num_labels
    from re_pipeline.docred.model import DocREConfig, DocREModel
    from re_pipeline.docred.predict import DocREPredictor
    from re_pipeline.registry import Registry
    from re_pipeline.relation_types import docred_relations
    from re_pipeline.spert.model import SpertConfig, SpertModel

    tok = tokenizer()
    relations = docred_relations()
    spert = SpertModel(SpertConfig(ENTITY_TYPES, relations[:8], max_span_width=3), tiny_encoder(tok)).eval()
    with torch.no_grad():  # a random model would call most spans entities; make "none" the usual answer
        spert.entity_classifier.weight.normal_(0, 0.3)  # spans differ in their logits ...
        spert.entity_classifier.bias[0] = 4.5  # ... and only a few beat "none"
        spert.relation_classifier.bias.fill_(0.5)
    spert.save_pretrained(models_dir / "spert-tiny", tok)
    registry = Registry(models_dir)
    registry.register("spert", "spert-tiny", {"relation_f1": 0.0}, promote="always")
    if with_docred:
        models = {
            t: DocREModel(DocREConfig(num_labels(t, len(relations)), t, "mean"), tiny_encoder(tok, seed=1)).eval()
            for t in ("step1", "step2")
        }
        DocREPredictor("twostep", models, tok, relations, {"step1": 0.9, "step2": 0.9}).save(models_dir / "docred-tiny")
        registry.register("docred", "docred-tiny", {"f1": 0.0}, promote="always")
    return models_dir
