"""``re-pipeline baseline ner|re train|evaluate``: the pipeline baselines SpERT is compared with.

``baseline re evaluate --ner DIR`` scores the classic pipeline (NER predictions
fed to the relation classifier); without ``--ner`` it classifies gold entity pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from re_pipeline.config import BaselineTrainConfig, from_args, positive_int
from re_pipeline.spert.data import Types, load_examples


def register(subparsers: Any) -> None:
    """Add the ``baseline`` command and its sub-commands to the main CLI's subparsers."""
    defaults = BaselineTrainConfig()
    baseline = subparsers.add_parser(
        "baseline", help="pipeline baselines: BIO NER and a marker-based relation classifier"
    )
    tasks = baseline.add_subparsers(dest="baseline_task", required=True)
    for task, text in (("ner", "BIO-tagging NER (token classification)"), ("re", "relation classification of pairs")):
        parser = tasks.add_parser(task, help=text)
        sub = parser.add_subparsers(dest="baseline_command", required=True)

        train = sub.add_parser(
            "train", help=f"train the {text} model", formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        train.add_argument("--train", required=True, type=Path, help="SpERT JSON or DocRED-format JSON")
        train.add_argument("--dev", type=Path, help="evaluated after every epoch; the best epoch is kept")
        train.add_argument("--types", type=Path, help="types.json; default: the one beside --train")
        train.add_argument("--out", required=True, type=Path, help="model directory to write")
        train.add_argument("--encoder", help="encoder name or path; default: the configured encoder (MiniLM)")
        train.add_argument("--epochs", type=positive_int, default=defaults.epochs, help="training epochs")
        train.add_argument(
            "--batch-size", type=positive_int, default=defaults.batch_size, help="sentences per training step"
        )
        train.add_argument(
            "--lr", type=float, default=defaults.lr, help="peak learning rate (AdamW, linear warmup 10%% then decay)"
        )
        train.add_argument("--max-train", type=positive_int, help="use only the first N training sentences")
        train.add_argument(
            "--seed", type=int, default=defaults.seed, help="seeds sampling, shuffling, init and dropout"
        )
        train.add_argument("--threads", type=positive_int, help="torch CPU threads")
        if task == "re":
            train.add_argument(
                "--neg-per-sentence",
                type=int,
                default=defaults.neg_per_sentence,
                help="`none` pairs per sentence (-1: all)",
            )
        train.set_defaults(func=cmd_train, task=task)

        ev = sub.add_parser("evaluate", help=f"evaluate the {text} model")
        ev.add_argument("--model", required=True, type=Path, help="model directory")
        ev.add_argument("--data", required=True, type=Path, help="SpERT JSON or DocRED-format JSON")
        ev.add_argument("--types", type=Path, help="types.json (default: beside --data)")
        if task == "re":
            ev.add_argument("--ner", type=Path, help="NER model directory: evaluate the chained pipeline")
        ev.add_argument("--threads", type=positive_int, help="torch CPU threads")
        ev.add_argument("--json", action="store_true", help="print the scores as JSON")
        ev.set_defaults(func=cmd_evaluate, task=task)


def _types(path: Path | None, data: Path) -> Types:
    return Types.load(path or data.parent / "types.json")


def cmd_train(args: argparse.Namespace) -> None:
    from re_pipeline.config import Settings
    from re_pipeline.training import set_threads, tune_malloc

    set_threads(args.threads)
    tune_malloc()
    train_set = load_examples(args.train)[: args.max_train]
    dev_set = load_examples(args.dev) if args.dev else []
    options = from_args(BaselineTrainConfig, args)
    if args.task == "re":
        from re_pipeline.baselines.relation import train_relation as train
    else:
        from re_pipeline.baselines.ner import train_ner as train
    encoder = Settings.load(encoder=args.encoder).encoder_path
    _, history = train(train_set, dev_set, _types(args.types, args.train), encoder, args.out, options)
    print(f"model written to {args.out}; last epoch: {history[-1].metrics or history[-1].loss}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from re_pipeline.metrics import format_table
    from re_pipeline.training import set_threads

    set_threads(args.threads)
    gold = load_examples(args.data)
    types = _types(args.types, args.data)
    if args.task == "ner":
        from re_pipeline.baselines.ner import NerTagger, entity_scores

        scores = entity_scores(
            [ex.entities for ex in gold], NerTagger.load(args.model).predict([ex.tokens for ex in gold]), types.entities
        )
        print(json.dumps(scores.as_dict(), indent=2) if args.json else format_table("Entities", scores))
        return
    from re_pipeline.baselines.ner import NerTagger
    from re_pipeline.baselines.relation import RelationClassifier
    from re_pipeline.spert.evaluator import evaluate

    relation = RelationClassifier.load(args.model)
    sentences = [ex.tokens for ex in gold]
    entities = NerTagger.load(args.ner).predict(sentences) if args.ner else [ex.entities for ex in gold]
    result = evaluate(gold, relation.predict(sentences, entities), types)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.report())
