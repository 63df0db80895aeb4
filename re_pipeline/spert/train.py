"""Training SpERT with the paper's hyperparameters (defaults of :class:`SpertTrainConfig`).

Each epoch shuffles the sentences, draws fresh negative samples and runs one
encoder pass per sentence in batches of 2; after each epoch the dev set is
evaluated and the best model directory (by strict relation F1) is kept, with
``metrics.json`` and ``training_curve.png`` beside it.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from re_pipeline.config import SpertTrainConfig
from re_pipeline.encoder import load_encoder, load_tokenizer, resolve_device
from re_pipeline.spert.data import Example, Types
from re_pipeline.spert.evaluator import evaluate
from re_pipeline.spert.model import SpertBatch, SpertConfig, SpertModel
from re_pipeline.spert.predict import SpertPredictor
from re_pipeline.spert.sampling import collate, sample
from re_pipeline.training import EpochLog, fit, seed_everything, write_json, write_report


def train(
    train_set: list[Example],
    dev_set: list[Example],
    types: Types,
    encoder: str | torch.nn.Module,
    out_dir: str | Path | None,
    args: SpertTrainConfig,
    tokenizer: Any = None,
) -> tuple[SpertModel, list[EpochLog]]:
    """Train on ``train_set``, evaluate on ``dev_set`` after every epoch; return the model and the epoch logs.

    ``encoder`` is a pretrained encoder's name/path or a ready module (tests pass a
    tiny random one together with ``tokenizer``). With ``out_dir``, the best
    epoch's model directory is written there and the returned model is that one.
    """
    seed_everything(args.seed)
    device = resolve_device(args.device)
    if tokenizer is None:
        tokenizer = load_tokenizer(encoder if isinstance(encoder, str) else encoder.config.name_or_path)
    encoder_module = load_encoder(encoder) if isinstance(encoder, str) else encoder
    config = SpertConfig(
        entity_types=types.entities,
        relation_types=types.relations,
        symmetric_relations=types.symmetric,
        max_span_width=args.max_span_width,
        width_dim=args.width_dim,
        dropout=args.dropout,
        fusion=args.fusion,
        context=args.context,
        relation_threshold=args.relation_threshold,
    )
    model = SpertModel(config, encoder_module).to(device)
    rng = random.Random(args.seed)
    predictor = SpertPredictor(model, tokenizer, str(device), args.eval_batch_size)

    def batches(epoch: int) -> list[SpertBatch]:
        order = list(range(len(train_set)))
        rng.shuffle(order)
        out = []
        for i in range(0, len(order), args.batch_size):
            chunk = [train_set[j] for j in order[i : i + args.batch_size]]
            samples = [
                sample(ex, types, rng, args.neg_entities, args.neg_relations, args.max_span_width) for ex in chunk
            ]
            out.append(collate(chunk, samples, tokenizer, len(types.relations)))
        return out

    def loss_fn(batch: SpertBatch) -> torch.Tensor:
        return model.loss(batch.to(device))

    def dev_scores() -> dict[str, float]:
        return evaluate(dev_set, predictor.predict_tokens([ex.tokens for ex in dev_set]), types).summary()

    def save(log: EpochLog) -> None:
        if out_dir is not None:
            training = {**asdict(args), "train_sentences": len(train_set), "best_epoch": log.epoch}
            model.save_pretrained(out_dir, tokenizer, training)
            write_json(Path(out_dir) / "types.json", types.to_json())

    def report(history: list[EpochLog]) -> None:
        if out_dir is not None:
            write_report(out_dir, history, args.metric, ["ent_micro_f1", args.metric] if dev_set else [])

    if out_dir is not None:
        (Path(out_dir) / "metrics.json").unlink(missing_ok=True)  # no stale figures from an earlier run
    dev_eval = dev_scores if dev_set else None
    history = fit(model, batches, loss_fn, args, dev_eval, args.metric, save, "spert", report)
    if out_dir is not None:
        model = SpertModel.from_pretrained(out_dir, device)
    return model, history
