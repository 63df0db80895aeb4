"""``re-pipeline spert train|evaluate|predict|convert``.

Heavy imports (torch, transformers) happen inside the handlers, so building the
argument parser stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from re_pipeline.config import SpertTrainConfig, add_runtime_flag, from_args, positive_int
from re_pipeline.spert.data import Types, load_examples


def register(subparsers: Any) -> None:
    """Add the ``spert`` command and its sub-commands to the main CLI's subparsers."""
    defaults = SpertTrainConfig()
    spert = subparsers.add_parser("spert", help="SpERT joint entity and relation extraction (train, evaluate, predict)")
    sub = spert.add_subparsers(dest="spert_command", required=True)

    train = sub.add_parser(
        "train",
        help="train on SpERT JSON or DocRED-format data (paper's hyperparameters by default)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--train", required=True, type=Path, help="SpERT JSON or DocRED-format JSON")
    train.add_argument("--dev", type=Path, help="evaluated after every epoch; the best epoch is kept")
    train.add_argument(
        "--types",
        type=Path,
        help="SpERT types.json (default: types.json beside --train, else the types seen in the training data)",
    )
    train.add_argument(
        "--train-slice", "--train-range", help="START:END documents (DocRED) or sentences (SpERT) of --train"
    )
    train.add_argument("--dev-slice", "--dev-range", help="START:END of --dev")
    train.add_argument("--out", required=True, type=Path, help="model directory to write")
    train.add_argument("--encoder", help="encoder name or path; default: the configured encoder (MiniLM)")
    train.add_argument("--epochs", type=positive_int, default=defaults.epochs, help="training epochs")
    train.add_argument(
        "--batch-size", type=positive_int, default=defaults.batch_size, help="sentences per training step"
    )
    train.add_argument(
        "--lr", type=float, default=defaults.lr, help="peak learning rate (AdamW, linear warmup 10%% then decay)"
    )
    train.add_argument(
        "--bias-correction",
        action=argparse.BooleanOptionalAction,
        default=defaults.bias_correction,
        help="correct Adam's moment estimates for their zero start (torch's AdamW); --no-bias-correction trains "
        "as SpERT's reference code does (transformers' AdamW, correct_bias=False, with --adam-eps 1e-6)",
    )
    train.add_argument("--adam-eps", type=float, default=defaults.adam_eps, help="Adam's epsilon")
    train.add_argument("--neg-entities", type=int, default=defaults.neg_entities, help="Ne per sentence")
    train.add_argument("--neg-relations", type=int, default=defaults.neg_relations, help="Nr per sentence")
    train.add_argument(
        "--fusion", choices=["max", "sum", "mean"], default=defaults.fusion, help="span fusion (ablation)"
    )
    train.add_argument(
        "--context", choices=["localized", "full", "cls"], default=defaults.context, help="relation context (ablation)"
    )
    train.add_argument("--max-train", type=positive_int, help="use only the first N training sentences (quick runs)")
    train.add_argument("--seed", type=int, default=defaults.seed, help="seeds sampling, shuffling, init and dropout")
    _runtime_flags(train)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="SpERT's evaluation (entities, relations without/with NEC) of a model")
    ev.add_argument("--model", required=True, type=Path, help="trained model directory")
    ev.add_argument("--data", required=True, type=Path, help="SpERT JSON or DocRED-format JSON with gold labels")
    ev.add_argument("--slice", "--range", help="START:END documents (DocRED) or sentences (SpERT)")
    ev.add_argument("--json", action="store_true", help="print the full scores as JSON instead of tables")
    _runtime_flags(ev)
    _cpu_flags(ev)
    ev.set_defaults(func=cmd_evaluate)

    pred = sub.add_parser("predict", help="entities and relations, with scores and character offsets, as JSON lines")
    pred.add_argument("--model", required=True, type=Path, help="trained model directory")
    source = pred.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="raw text (split into sentences and words by the ingest tokenizer)")
    source.add_argument("--input", type=Path, help=".txt (one document per line) or SpERT JSON (pre-tokenized)")
    pred.add_argument("--output", type=Path, help="JSON lines file (default: stdout)")
    _runtime_flags(pred)
    _cpu_flags(pred)
    pred.set_defaults(func=cmd_predict)

    conv = sub.add_parser("convert", help="derive SpERT training sentences (and types.json) from DocRED-format JSON")
    conv.add_argument("input", type=Path, help="DocRED-format JSON")
    conv.add_argument("output", type=Path, help="SpERT JSON to write; types.json goes beside it")
    conv.add_argument("--slice", "--range", help="START:END documents")
    conv.set_defaults(func=cmd_convert)


def _runtime_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (1 for speed comparisons)")
    parser.add_argument(
        "--eval-batch-size",
        type=positive_int,
        default=SpertTrainConfig.eval_batch_size,
        help="sentences per inference batch (on one CPU thread, 8 is faster: less padding, BENCHMARKS.md)",
    )


def _cpu_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--int8",
        action="store_true",
        help="CPU only: dynamic int8 encoder with smoothed activations: 1.6-1.8x the sentences/s with AVX-512 "
        "VNNI, 1.65-1.9x with --runtime onnx (BENCHMARKS.md); less on AVX2-only CPUs",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="with --int8: SpERT or DocRED-format JSON whose sentences set the activation smoothing "
        "(default: the bundled sample corpus; the training data fits best)",
    )
    add_runtime_flag(parser)


def _setup(args: argparse.Namespace) -> None:
    from re_pipeline.training import set_threads, tune_malloc

    set_threads(args.threads)
    tune_malloc()


def _predictor(args: argparse.Namespace) -> Any:
    from re_pipeline.spert.predict import SpertPredictor

    _setup(args)
    if args.calibration and not args.int8:
        raise SystemExit("--calibration sets the int8 smoothing; it needs --int8")
    calibration = [ex.tokens for ex in load_examples(args.calibration)] if args.calibration else None
    return SpertPredictor.load(
        args.model, args.device, args.eval_batch_size, int8=args.int8, runtime=args.runtime, calibration=calibration
    )


def _types_for(args: argparse.Namespace, train_set: list[Any]) -> Types:
    path = args.types or args.train.parent / "types.json"
    return Types.load(path) if path.exists() else Types.from_examples(train_set)


def cmd_train(args: argparse.Namespace) -> None:
    from re_pipeline.config import Settings
    from re_pipeline.spert.train import train

    _setup(args)
    train_set = load_examples(args.train, args.train_slice)[: args.max_train]
    dev_set = load_examples(args.dev, args.dev_slice) if args.dev else []
    train_args = from_args(SpertTrainConfig, args)
    encoder = Settings.load(encoder=args.encoder).encoder_path
    _, history = train(train_set, dev_set, _types_for(args, train_set), encoder, args.out, train_args)
    print(f"model written to {args.out}; last epoch: {history[-1].metrics or history[-1].loss}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from re_pipeline.spert.evaluator import evaluate

    predictor = _predictor(args)
    types = Types.load(args.model / "types.json")
    gold = load_examples(args.data, args.slice)
    result = evaluate(gold, predictor.predict_tokens([ex.tokens for ex in gold]), types)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.report())


def cmd_predict(args: argparse.Namespace) -> None:
    predictor = _predictor(args)
    out = args.output.open("w") if args.output else sys.stdout
    try:
        if args.text is not None:
            rows = [predictor.predict_text(args.text)]
        elif args.input.suffix == ".json":
            examples = load_examples(args.input)
            preds = predictor.predict_tokens([ex.tokens for ex in examples])
            rows = [
                {
                    "orig_id": ex.orig_id,
                    "tokens": ex.tokens,
                    "entities": [vars(e) for e in p.entities],
                    "relations": [vars(r) for r in p.relations],
                }
                for ex, p in zip(examples, preds, strict=True)
            ]
        else:
            lines = [line for line in args.input.read_text().splitlines() if line.strip()]
            rows = [predictor.predict_text(line, f"text:{i}") for i, line in enumerate(lines)]
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


def cmd_convert(args: argparse.Namespace) -> None:
    from re_pipeline.spert.data import write_examples

    examples = load_examples(args.input, args.slice)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_examples(args.output, examples)
    types = Types.from_examples(examples)
    (args.output.parent / "types.json").write_text(json.dumps(types.to_json(), indent=2))
    n_rel = sum(len(ex.relations) for ex in examples)
    print(f"{len(examples)} sentences, {n_rel} relations -> {args.output} (+ types.json)")
