"""``re-pipeline docred train|evaluate|predict``.

``register`` adds the sub-command to the package CLI; handlers import torch and
the model code only when they run, so ``re-pipeline --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from re_pipeline.config import DocRETrainConfig, add_runtime_flag, from_args, positive_int

DEFAULT_DATA = "../shared/data/redocred/dev_revised.json"


def register(subparsers: Any) -> None:
    """Add ``docred`` with its ``train``, ``evaluate`` and ``predict`` commands."""
    defaults = DocRETrainConfig()
    docred = subparsers.add_parser(
        "docred",
        help="document-level relation extraction: the DocRED two-step model",
        description="Train, evaluate and run the DocRED two-step model (Wang et al. 2019) or its one-step baseline.",
    )
    commands = docred.add_subparsers(dest="docred_command", required=True)

    train = commands.add_parser(
        "train",
        help="train a two-step (or one-step) model directory",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train on DocRED-format JSON; the dev set picks the best epoch and tunes the thresholds. "
        "Example (first 400 / last 100 documents of one file): "
        f"re-pipeline docred train --train {DEFAULT_DATA} --train-slice 0:400 --dev {DEFAULT_DATA} "
        "--dev-slice -100: --out models/docred-twostep",
    )
    train.add_argument("--train", required=True, help="DocRED-format JSON to train on")
    train.add_argument("--train-slice", help="START:END documents of --train (e.g. 0:400)")
    train.add_argument("--dev", required=True, help="DocRED-format JSON for per-epoch evaluation")
    train.add_argument("--dev-slice", help="START:END documents of --dev (e.g. -100:)")
    train.add_argument("--max-train", type=positive_int, help="use at most N training documents (after slicing)")
    train.add_argument("--out", default="models/docred-twostep", help="model directory to write")
    train.add_argument(
        "--mode",
        choices=["twostep", "onestep", "shared"],
        default="twostep",
        help="twostep: two models (paper); onestep: the BiLinear baseline; shared: both steps on one encoder",
    )
    train.add_argument("--epochs", type=positive_int, default=defaults.epochs, help="training epochs")
    train.add_argument(
        "--lr", type=float, default=defaults.lr, help="encoder learning rate (paper: 1e-5 for BERT-base)"
    )
    train.add_argument(
        "--head-lr", type=float, default=defaults.head_lr, help="learning rate of the projection and BiLinear"
    )
    train.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="documents per update")
    train.add_argument(
        "--step2-batch-size",
        type=positive_int,
        default=defaults.step2_batch_size,
        help="documents per update of step 2 (it sees fewer pairs)",
    )
    train.add_argument(
        "--step2-extra-epochs",
        type=int,
        default=defaults.step2_extra_epochs,
        help="epochs step 2 trains beyond --epochs (it learns from fewer pairs)",
    )
    train.add_argument("--step2-lr", type=float, default=defaults.step2_lr, help="step 2's encoder learning rate")
    train.add_argument(
        "--pooling", choices=["mean", "logsumexp"], default=defaults.pooling, help="entity over mentions (paper: mean)"
    )
    train.add_argument(
        "--na-ratio", type=float, default=defaults.na_ratio, help="step 1's sampled N/A pairs per related pair"
    )
    train.add_argument(
        "--step2-output",
        choices=["softmax", "sigmoid"],
        default=defaults.step2_output,
        help="step 2's type scores: one softmax (top type + any above a tuned threshold) or 96 sigmoids",
    )
    train.add_argument(
        "--type-dim",
        type=int,
        default=defaults.type_dim,
        help="entity type embedding size; 0 leaves types out (the paper's model)",
    )
    train.add_argument(
        "--context",
        choices=["none", "attention"],
        default=defaults.context,
        help="attention: add a learned pair-localized context (tokens both entities attend to) to each pair's "
        "scores; on Re-DocRED it learns faster but ends level at 10 epochs (BENCHMARKS.md)",
    )
    train.add_argument("--seed", type=int, default=defaults.seed, help="seeds sampling, shuffling, init and dropout")
    _common(train)
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="official F1 / Ign F1, step-1 P/R/F1, step-2 accuracy, per relation",
        description="Evaluate a model directory on gold-annotated DocRED JSON (gold entities given), "
        "or score an existing DocRED result file with --results (as DocRED's evaluation script does).",
    )
    evaluate.add_argument("--model", default="models/docred-twostep", help="model directory")
    evaluate.add_argument("--data", required=True, help="DocRED-format JSON with labels")
    evaluate.add_argument("--slice", help="START:END documents of --data")
    evaluate.add_argument("--train", help="training JSON, for Ign F1 (facts seen in training are ignored)")
    evaluate.add_argument("--train-slice", help="START:END documents of --train")
    evaluate.add_argument("--results", help="score this DocRED result JSON instead of running a model")
    evaluate.add_argument("--tune", action="store_true", help="re-tune thresholds on --data (and save them)")
    evaluate.add_argument("--predictions", help="also write the predictions here (DocRED result format)")
    evaluate.add_argument("--report", help="write the metrics JSON here")
    _common(evaluate)
    add_runtime_flag(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    predict = commands.add_parser(
        "predict",
        help="score the relations between given entities",
        description="Predict relations for documents whose entities are known: DocRED JSON (vertexSet) in, "
        'DocRED results out ([{"title","h_idx","t_idx","r","score"}]); or document Parquet in, Parquet out '
        "(predicted.entities in, predicted.relations filled).",
    )
    predict.add_argument("--model", default="models/docred-twostep", help="model directory")
    predict.add_argument("--input", required=True, help="DocRED-format JSON or document Parquet")
    predict.add_argument("--slice", help="START:END documents of --input (DocRED JSON)")
    predict.add_argument("--output", required=True, help="result JSON (DocRED input) or Parquet (Parquet input)")
    _common(predict)
    add_runtime_flag(predict)
    predict.set_defaults(func=cmd_predict)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", help="encoder name or path (default: the shipped MiniLM)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads")
    parser.add_argument(
        "--eval-batch-size", "--batch-size-eval", type=positive_int, default=8, help="documents per inference batch"
    )


def _setup(args: argparse.Namespace) -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from re_pipeline.training import set_threads

    set_threads(args.threads)


def cmd_train(args: argparse.Namespace) -> int:
    _setup(args)
    from re_pipeline.config import Settings
    from re_pipeline.docred.data import load_docred
    from re_pipeline.docred.train import train

    train_docs = load_docred(args.train, args.train_slice)[: args.max_train]
    dev_docs = load_docred(args.dev, args.dev_slice)
    config = from_args(DocRETrainConfig, args)
    metrics = train(config, Settings.load(encoder=args.encoder).encoder_path, train_docs, dev_docs, args.out)
    best = metrics["best"]
    print(f"best epoch {best['epoch']}: F1 {100 * best['f1']:.2f}, Ign F1 {100 * best['ign_f1']:.2f} -> {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _setup(args)
    from re_pipeline.docred.data import load_docred
    from re_pipeline.docred.evaluate import evaluate
    from re_pipeline.docred.metrics import official_scores, train_facts
    from re_pipeline.docred.predict import DocREPredictor

    docs = load_docred(args.data, args.slice)
    in_train = train_facts(load_docred(args.train, args.train_slice)) if args.train else set()
    no_ign = {} if args.train else {"ign_f1": None}  # without the training facts Ign F1 would just be F1
    if args.results:
        scores = official_scores(json.loads(Path(args.results).read_text()), docs, in_train) | no_ign
        print(format_report(scores | {"thresholds": "(from the result file)"}))
        return 0
    if args.tune and args.runtime != "torch":
        raise SystemExit("--tune saves the model directory; run it with the torch runtime")
    predictor = DocREPredictor.load(args.model, args.device, runtime=args.runtime)
    scores, predictions = evaluate(
        predictor, docs, in_train, tune_thresholds=args.tune, batch_size=args.eval_batch_size
    )
    scores |= no_ign
    if args.tune:
        predictor.save(args.model)
    if args.predictions:
        Path(args.predictions).write_text(json.dumps(predictions))
    if args.report:
        Path(args.report).write_text(json.dumps(scores, indent=2))
    print(format_report(scores))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    _setup(args)
    from re_pipeline.docred.data import load_docred
    from re_pipeline.docred.predict import DocREPredictor
    from re_pipeline.documents import Annotations, from_table, to_table

    predictor = DocREPredictor.load(args.model, args.device, runtime=args.runtime)
    if args.input.endswith(".parquet"):
        import pyarrow.parquet as pq

        docs = from_table(pq.read_table(args.input))
        predictor.predict(docs, args.eval_batch_size)
        pq.write_table(to_table(docs), args.output)
        n = sum(len(d.predicted.relations) for d in docs)
    else:
        docs = load_docred(args.input, args.slice)
        for d in docs:  # the annotated entities are the input; gold relations are not used
            d.predicted = Annotations(d.gold.entities, [])
        features = predictor.features(docs)
        results = predictor.to_docred(features, predictor.facts(features, args.eval_batch_size))
        Path(args.output).write_text(json.dumps(results))
        n = len(results)
    print(f"{len(docs)} documents, {n} relations -> {args.output}")
    return 0


def format_report(scores: dict[str, Any]) -> str:
    """The metrics as readable text: totals, the two steps, then a per-relation table."""
    ign = f"{100 * scores['ign_f1']:.2f}" if scores.get("ign_f1") is not None else "n/a (give --train)"
    lines = [
        f"F1 {100 * scores['f1']:.2f}  Ign F1 {ign}  "
        f"P {100 * scores['precision']:.2f}  R {100 * scores['recall']:.2f}  "
        f"({scores['correct']} correct / {scores['predicted']} predicted / {scores['gold']} gold)",
        f"thresholds: {scores['thresholds']}",
    ]
    if "step1" in scores:
        s1 = scores["step1"]
        lines.append(
            f"step 1 (pairs): P {100 * s1['precision']:.2f}  R {100 * s1['recall']:.2f}  F1 {100 * s1['f1']:.2f}; "
            f"step 2 accuracy on gold related pairs: {100 * scores['step2_accuracy']:.2f}"
        )
    lines.append(f"{'relation':<10}{'gold':>6}{'pred':>6}{'P':>8}{'R':>8}{'F1':>8}")
    for rel, v in sorted(scores["per_relation"].items(), key=lambda kv: -kv[1]["gold"]):
        lines.append(
            f"{rel:<10}{v['gold']:>6}{v['predicted']:>6}"
            f"{100 * v['precision']:>8.1f}{100 * v['recall']:>8.1f}{100 * v['f1']:>8.1f}"
        )
    return "\n".join(lines)
