"""Training: step 1 and step 2 side by side (or the one-step baseline), one epoch of
each per round, then a dev evaluation of the combined system; the best round's
models, thresholds, metrics and curves are kept in one model directory.

What each model trains on (Wang et al. 2019):
- step 1: every related pair plus N/A pairs sampled 3:1, redrawn every epoch;
- step 2: only the related pairs, over the 96 types (a pair may hold several): one softmax
  against the gold types spread evenly (default), or 96 sigmoids;
- one-step: every ordered pair, N/A + 96 types (DocRED's BiLinear baseline);
- shared (optional variant): step 1's sample, both steps' losses on one model.

Learning rates: the paper fine-tunes BERT-base at 1e-5. MiniLM (6 layers, 22M
parameters) on 400 documents for 10 epochs sees ~1,000 updates at batch 4, so we use
5e-5 for the encoder (the usual rate for small BERTs; ATLOP uses it too) and 1e-3
for the freshly initialized projection and BiLinear layers, which otherwise barely
move in so few steps. Step 2 sees only related pairs, so it trains at 2 documents a
batch and an encoder rate of 1e-4 (``DocRETrainConfig.batch_size_of``), for 4 epochs more
(``DocRETrainConfig.epochs_of``). Defaults (10 epochs, 14 for step 2, log-sum-exp pooling
over mentions, a softmax step 2, entity type embeddings) are the best measured here:
Re-DocRED dev F1 53.3 and step-2 accuracy 85.8 (52.9 and 84.8 with step 2 stopping at 10;
51.7 and 83.5 with step 1's batch and rate for step 2), against 51.2 and 80.0 with 96 sigmoids and no types, and
45.5 for the paper's plain model at 5 epochs (BENCHMARKS.md).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from re_pipeline.config import DocRETrainConfig
from re_pipeline.docred.data import DocFeatures, Pair, batches, build_features, collate, num_labels
from re_pipeline.docred.evaluate import evaluate
from re_pipeline.docred.metrics import train_facts
from re_pipeline.docred.model import DocREConfig, DocREModel
from re_pipeline.docred.predict import MODES, DocREPredictor
from re_pipeline.docred.sampling import sample_pairs
from re_pipeline.documents import Document
from re_pipeline.encoder import load_tokenizer, resolve_device
from re_pipeline.relation_types import docred_relations
from re_pipeline.training import EpochLog, adamw, linear_warmup_decay, plot_curves, seed_everything, write_json


def make_optimizer(model: DocREModel, config: DocRETrainConfig, total_steps: int) -> tuple[Any, Any]:
    """AdamW with one rate for the pretrained encoder and a higher one for the new head."""
    optimizer = adamw(model, config.lr_of(model.config.task), config.weight_decay, head_lr=config.head_lr)
    return optimizer, linear_warmup_decay(optimizer, total_steps, config.warmup)


def training_pairs(task: str, feature: DocFeatures, rng: random.Random, config: DocRETrainConfig) -> list[Pair]:
    if task in ("step1", "shared"):
        return sample_pairs(feature, rng, config.na_ratio)
    if task == "step2":
        return feature.related_pairs()
    return feature.all_pairs()


def train_epoch(
    model: DocREModel,
    task: str,
    features: Sequence[DocFeatures],
    optimizer: Any,
    scheduler: Any,
    rng: random.Random,
    config: DocRETrainConfig,
    num_relations: int,
    pad_id: int,
    desc: str = "",
) -> float:
    """One pass over ``features`` in shuffled batches; returns the mean loss."""
    model.train()
    device = next(model.parameters()).device
    total, n = 0.0, 0
    bar = tqdm(
        batches([len(f.input_ids) for f in features], config.batch_size_of(task), rng),
        desc=desc,
        leave=False,
        mininterval=5,
    )
    for idx in bar:
        feats = [features[i] for i in idx]
        pairs = [training_pairs(task, f, rng, config) for f in feats]
        batch = collate(feats, pairs, task, num_relations, pad_id, model.type_ids).to(device)
        loss = model.loss(model(batch), batch.labels, batch.pair_mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total, n = total + loss.item(), n + 1
        bar.set_postfix(loss=f"{total / n:.4f}")
    return total / max(n, 1)


def train(
    config: DocRETrainConfig,
    encoder: str,
    train_docs: Sequence[Document],
    dev_docs: Sequence[Document],
    out_dir: str | Path,
    relations: list[str] | None = None,
) -> dict[str, Any]:
    """Train, keep the best round (dev F1 with thresholds tuned on dev) in ``out_dir``,
    and return its metrics with the per-epoch history."""
    seed_everything(config.seed)
    rng = random.Random(config.seed)
    device = resolve_device(config.device)
    relations = relations or docred_relations()
    tokenizer = load_tokenizer(encoder)
    train_feats = build_features(tokenizer, train_docs, relations)
    dev_feats = build_features(tokenizer, dev_docs, relations)
    in_train = train_facts(train_docs)
    tasks = MODES[config.mode]
    entity_types = sorted({t for f in train_feats for t in f.entity_types}) if config.type_dim else []
    models, optimizers, task_feats = {}, {}, {}
    for task in tasks:
        output = config.step2_output if task == "step2" else "sigmoid"
        model_config = DocREConfig(
            num_labels(task, len(relations)),
            task,
            pooling=config.pooling,
            output=output,
            entity_types=entity_types,
            type_dim=config.type_dim,
            context=config.context,
        )
        models[task] = DocREModel.from_encoder(model_config, encoder).to(device)
        # Step 2 learns only from related pairs: documents without any teach it nothing.
        task_feats[task] = [f for f in train_feats if f.labels] if task == "step2" else train_feats
        steps = config.epochs_of(task) * math.ceil(len(task_feats[task]) / config.batch_size_of(task))
        optimizers[task] = make_optimizer(models[task], config, steps)
    predictor = DocREPredictor(
        config.mode, models, tokenizer, relations, extra={"encoder": encoder, "train": asdict(config)}
    )
    history: list[EpochLog] = []
    best: dict[str, Any] = {"f1": -1.0}
    rounds = max(config.epochs_of(task) for task in tasks)
    for epoch in range(1, rounds + 1):
        start = time.perf_counter()
        losses = {
            task: train_epoch(
                models[task],
                task,
                task_feats[task],
                *optimizers[task],
                rng,
                config,
                len(relations),
                tokenizer.pad_token_id or 0,
                f"{task} epoch {epoch}/{config.epochs_of(task)}",
            )
            for task in tasks
            if epoch <= config.epochs_of(task)
        }
        log = EpochLog(epoch, sum(losses.values()), time.perf_counter() - start)
        start = time.perf_counter()
        scores, _ = evaluate(predictor, dev_docs, in_train, dev_feats, tune_thresholds=True)
        log.eval_seconds = time.perf_counter() - start
        log.metrics = {"f1": 100 * scores["f1"], "ign_f1": 100 * scores["ign_f1"]}
        log.metrics |= {f"loss_{t}": v for t, v in losses.items()}
        if "step2_accuracy" in scores:
            log.metrics |= {"step1_f1": 100 * scores["step1"]["f1"], "step2_accuracy": 100 * scores["step2_accuracy"]}
        history.append(log)
        tqdm.write(
            f"epoch {epoch}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in log.metrics.items())
            + f" ({log.train_seconds:.0f} s train, {log.eval_seconds:.0f} s eval)"
        )
        if scores["f1"] > best["f1"]:
            best = {**scores, "epoch": epoch}
            predictor.save(out_dir)
    # predictor.save at the best round stored that round's thresholds with its weights.
    metrics = {"best": best, "history": [asdict(h) for h in history]}
    write_json(Path(out_dir) / "metrics.json", metrics)
    plot_curves(history, Path(out_dir) / "curves.png", metrics=["f1", "ign_f1"])
    return metrics
