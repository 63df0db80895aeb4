"""What both baselines share: training settings, a Hugging Face model directory, the training run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from re_pipeline.training import EpochLog, FitConfig, fit, update_metrics, write_report


@dataclass
class BaselineArgs:
    epochs: int = 5
    batch_size: int = 8
    lr: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 42
    eval_batch_size: int = 32
    neg_per_sentence: int = 2  # relation baseline: `none` pairs sampled per sentence each epoch (-1 = all)


def run_training(
    model: torch.nn.Module,
    tokenizer: Any,
    batches: Callable[[int], Sequence[Any]],
    loss_fn: Callable[[Any], torch.Tensor],
    dev_scores: Callable[[], dict[str, float]] | None,
    metric: str,
    out_dir: str | Path | None,
    args: BaselineArgs,
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
    config = FitConfig(args.epochs, args.lr, args.weight_decay, args.warmup, args.grad_clip)
    return fit(model, batches, loss_fn, config, dev_scores, metric, save, desc, report)
