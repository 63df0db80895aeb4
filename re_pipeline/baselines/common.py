"""What both baselines share: training settings, a Hugging Face model directory, the training run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from re_pipeline.config import BaselineTrainConfig
from re_pipeline.encoder import load_tokenizer
from re_pipeline.training import EpochLog, fit, update_metrics, write_report


def run_training(
    model: torch.nn.Module,
    tokenizer: Any,
    batches: Callable[[int], Sequence[Any]],
    loss_fn: Callable[[Any], torch.Tensor],
    dev_scores: Callable[[], dict[str, float]] | None,
    metric: str,
    out_dir: str | Path | None,
    args: BaselineTrainConfig,
    desc: str,
) -> list[EpochLog]:
    """``fit`` with the best epoch saved as a Hugging Face model directory, plus metrics.json and the curve."""

    def save(log: EpochLog) -> None:
        if out_dir is not None:
            model.save_pretrained(str(out_dir))
            tokenizer.save_pretrained(str(out_dir))

    def report(history: list[EpochLog]) -> None:
        if out_dir is not None:
            update_metrics(out_dir, {"training": asdict(args)})
            write_report(out_dir, history, metric, [metric] if dev_scores else [])

    if out_dir is not None:
        (Path(out_dir) / "metrics.json").unlink(missing_ok=True)  # no stale figures from an earlier run
    return fit(model, batches, loss_fn, args, dev_scores, metric, save, desc, report)


def new_hf_model(
    encoder: str, auto_class: str, labels: list[str], special_tokens: list[str] | None = None
) -> tuple[Any, Any]:
    """A fresh baseline model (``transformers.<auto_class>`` with a new head over ``labels``) on a
    pretrained encoder, and its tokenizer; ``special_tokens`` are added to both (embeddings resized)."""
    import transformers

    tokenizer = load_tokenizer(encoder)
    label_ids = {t: i for i, t in enumerate(labels)}
    model = getattr(transformers, auto_class).from_pretrained(
        encoder, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_ids, local_files_only=True
    )
    if special_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": special_tokens})
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer


def load_hf_model(path: str | Path, auto_class: str) -> tuple[Any, Any]:
    """A baseline's model (``transformers.<auto_class>``) and tokenizer from its directory, offline."""
    import transformers

    model = getattr(transformers, auto_class).from_pretrained(str(path), local_files_only=True)
    return model, load_tokenizer(str(path))
