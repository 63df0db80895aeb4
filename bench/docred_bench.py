"""DocRED two-step vs one-step: accuracy, training curve, and speed over the encoder floor.

Trains (or, with ``--load``, reuses) <models-dir>/docred-<mode> on one slice of a
DocRED-format file, evaluates on another, times inference against the time of the
model's own encoder forward passes over the same length-sorted batches (the
floor: inference cannot be faster than its encoder passes), and writes the "DocRED two-step" section of
BENCHMARKS.md. Example (the recorded run):

    HF_HUB_OFFLINE=1 python bench/docred_bench.py --epochs 7 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import median, per_round_ratio, update_section
from re_pipeline.config import PROJECT_DIR, DocRETrainConfig, Settings, from_args

ATLOP = (
    "ATLOP, same encoder, 7 epochs: F1 51.06 / Ign F1 50.48 (held-back test); "
    "F1 by epoch from the 2nd: 38.6, 38.3, 46.3, 49.8, 49.8, 51.1"
)


def encoder_floor(predictor, features, batch_size: int) -> float:
    """Seconds of the encoder forward passes alone, over the batches inference uses."""
    from re_pipeline.docred.data import batches, collate
    from re_pipeline.encoder import encode

    start = time.perf_counter()
    with torch.inference_mode():
        for model in predictor.models.values():
            for idx in batches([len(f.input_ids) for f in features], batch_size):
                b = collate([features[i] for i in idx], [[] for _ in idx], pad_id=predictor.pad_id)
                encode(model.encoder, b.input_ids, b.attention_mask)
    return time.perf_counter() - start


def time_inference(predictor, docs, batch_size: int, repeats: int) -> dict[str, float]:
    """Median end-to-end ``predict`` time (tokenizing included) and median floor, interleaved; the ratio is
    the median of the per-round ratios."""
    runs, floors = [], []
    for _ in range(repeats):
        fresh = copy.deepcopy(docs)
        start = time.perf_counter()
        predictor.predict(fresh, batch_size)
        runs.append(time.perf_counter() - start)
        floors.append(encoder_floor(predictor, predictor.features(fresh), batch_size))
    t, f = median(runs), median(floors)
    return {"seconds": t, "floor": f, "ratio": per_round_ratio(runs, floors), "docs_per_s": len(docs) / t}


def describe(config: Any) -> str:
    """A DocRE model's configuration in a few words, for the report."""
    types = f"{config.type_dim}-dim entity types" if config.entity_types else "no entity types"
    context = ", pair-localized context" if config.context == "attention" else ""
    return f"({config.pooling} pooling, {config.output} outputs, {types}{context})"


def main() -> None:
    defaults = DocRETrainConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(PROJECT_DIR.parent / "shared/data/redocred/dev_revised.json"))
    ap.add_argument("--train-slice", default="0:400")
    ap.add_argument("--dev-slice", default="-100:")
    ap.add_argument("--modes", default="twostep,onestep", help="comma-separated: twostep, onestep, shared")
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--pooling", default="mean", choices=["mean", "logsumexp"])
    ap.add_argument("--step2-output", default=defaults.step2_output, choices=["softmax", "sigmoid"])
    ap.add_argument(
        "--type-dim", type=int, default=defaults.type_dim, help="entity type embedding size (0: none, as the paper)"
    )
    ap.add_argument("--context", default=defaults.context, choices=["none", "attention"], help="pair-localized context")
    ap.add_argument(
        "--step2-batch-size", type=int, default=defaults.step2_batch_size, help="documents per update of step 2"
    )
    ap.add_argument(
        "--step2-extra-epochs", type=int, default=defaults.step2_extra_epochs, help="step 2's epochs beyond --epochs"
    )
    ap.add_argument("--step2-lr", type=float, default=defaults.step2_lr, help="step 2's encoder learning rate")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for evaluation and the speed figures")
    ap.add_argument("--train-threads", type=int, help="CPU threads for training (default: --threads)")
    ap.add_argument("--models-dir", default=str(PROJECT_DIR / "models"), help="where docred-<mode> models live")
    ap.add_argument("--load", action="store_true", help="reuse <models-dir>/docred-<mode> instead of training")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    ap.add_argument("--encoder", default=None)
    ap.add_argument("--section", default="DocRED two-step", help="BENCHMARKS.md section to (re)write")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from re_pipeline.docred.data import load_docred
    from re_pipeline.docred.evaluate import evaluate
    from re_pipeline.docred.metrics import train_facts
    from re_pipeline.docred.predict import DocREPredictor
    from re_pipeline.docred.train import train
    from re_pipeline.documents import Annotations

    encoder = Settings.load(encoder=args.encoder).encoder_path
    train_docs = load_docred(args.data, args.train_slice)
    dev_docs = load_docred(args.data, args.dev_slice)
    in_train = train_facts(train_docs)
    timing_docs = copy.deepcopy(dev_docs)
    for d in timing_docs:  # the pipeline's input: entities given, relations wanted
        d.predicted = Annotations(d.gold.entities, [])
        d.gold = None

    rows, curves, speed, tuned_on_train, settings, per_rel, per_rel_mode = [], [], [], [], [], "", ""
    for mode in args.modes.split(","):
        out = Path(args.models_dir) / f"docred-{mode}"
        if not args.load:
            torch.set_num_threads(args.train_threads or args.threads)
            config = replace(from_args(DocRETrainConfig, args), mode=mode, device="cpu")
            train(config, encoder, train_docs, dev_docs, out)
            torch.set_num_threads(args.threads)
        predictor = DocREPredictor.load(out, "cpu")
        settings.append(f"{mode}: " + "; ".join(f"{task} {describe(m.config)}" for task, m in predictor.models.items()))
        scores, _ = evaluate(predictor, dev_docs, in_train)
        fixed = copy.copy(predictor)
        fixed.thresholds = {k: 0.5 for k in predictor.thresholds}
        at_half, _ = evaluate(fixed, dev_docs, in_train)
        on_train = copy.copy(predictor)  # thresholds tuned on training documents, as with no held-out slice
        evaluate(on_train, train_docs, None, tune_thresholds=True)
        train_tuned, _ = evaluate(on_train, dev_docs, in_train)
        tuned_on_train.append(
            f"- {mode}: F1 {100 * train_tuned['f1']:.2f}, Ign F1 {100 * train_tuned['ign_f1']:.2f} ("
            + ", ".join(f"{k} {v:.3f}" for k, v in on_train.thresholds.items())
            + ")"
        )
        step = "- | -"
        if "step1" in scores:
            s1 = scores["step1"]
            step = f"{100 * s1['precision']:.1f} / {100 * s1['recall']:.1f} / {100 * s1['f1']:.1f} | "
            step += f"{100 * scores['step2_accuracy']:.1f}"
        rows.append(
            f"| {mode} | {100 * scores['precision']:.2f} | {100 * scores['recall']:.2f} | {100 * scores['f1']:.2f} | "
            f"{100 * scores['ign_f1']:.2f} | {100 * at_half['f1']:.2f} | {step} | "
            + ", ".join(f"{k} {v:.3f}" for k, v in predictor.thresholds.items())
            + " |"
        )
        history = json.loads((out / "metrics.json").read_text())["history"]
        curves.append(f"- {mode}: " + ", ".join(f"{h['metrics']['f1']:.1f}" for h in history))
        t = time_inference(predictor, timing_docs, 8, args.repeats)
        speed.append(f"| {mode} | {t['seconds']:.1f} | {t['floor']:.1f} | {t['ratio']:.2f} | {t['docs_per_s']:.2f} |")
        if not per_rel:  # the first mode's table
            per_rel_mode = mode
            top = sorted(scores["per_relation"].items(), key=lambda kv: -kv[1]["gold"])[:12]
            per_rel = "\n".join(
                f"| {r} | {v['gold']} | {v['predicted']} | {100 * v['precision']:.1f} | {100 * v['recall']:.1f} | "
                f"{100 * v['f1']:.1f} |"
                for r, v in top
            )

    n_train, n_dev = len(train_docs), len(dev_docs)
    epochs = f"{args.epochs} epochs"
    if args.step2_extra_epochs:
        epochs += f" (step 2: {args.epochs + args.step2_extra_epochs})"
    trained = (
        ""
        if not args.load
        else (
            f"\nModels loaded from {args.models_dir}/docred-<mode>, trained earlier by this script without `--load` "
            f"and the same settings ({epochs}); settings in each model's config.json.\n"
        )
    )
    body = f"""Encoder: `{Path(encoder).name}` ({encoder}); trained on `{args.data}` [{args.train_slice}]
({n_train} documents), evaluated on [{args.dev_slice}] ({n_dev} documents), {epochs}, pooling
{args.pooling}, {args.train_threads or args.threads} CPU thread(s) for training, {args.threads} for the rest.
Model settings (from the model directories): {"; ".join(settings)}.
Thresholds are tuned, and the kept epoch chosen, on the same dev documents (thresholds as the paper and
DocRED's baseline do), so these are dev figures, optimistic for unseen documents; "F1 @0.5" uses fixed
thresholds of 0.5 instead, the fairer comparison with ATLOP, whose
adaptive threshold needs no tuning (for a softmax step 2, 0.5 keeps the top type only). Ign F1 as DocRED's
evaluation script (training facts by mention names).
{trained}
| model | P | R | F1 | Ign F1 | F1 @0.5 | step-1 P / R / F1 | step-2 acc | thresholds |
|---|---:|---:|---:|---:|---:|---:|---:|---|
{chr(10).join(rows)}

Dev F1 (tuned thresholds) by epoch:
{chr(10).join(curves)}

The same models with thresholds tuned on their training documents instead (what training on every annotated
document, with no held-out slice, does; the epoch was still chosen on the dev slice):
{chr(10).join(tuned_on_train)}

Reference: {ATLOP}.

Inference, {n_dev} documents with gold entities, length-sorted batches of 8, `torch.inference_mode`, one thread;
"floor" = the same run's encoder forward passes alone over the same batches (two encoders for two-step),
median of {args.repeats}. MALLOC_* tuning: `{ {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")} }`.

| model | inference s | encoder floor s | ratio | docs/s |
|---|---:|---:|---:|---:|
{chr(10).join(speed)}

{per_rel_mode}, the 12 most frequent relations of the dev slice:

| relation | gold | predicted | P | R | F1 |
|---|---:|---:|---:|---:|---:|
{per_rel}
"""
    update_section(args.section, body)


if __name__ == "__main__":
    main()
