"""Pipeline baselines vs SpERT on CoNLL04 dev.

Trains the BIO NER tagger and the marker-based relation classifier on train.json
(or reuses their model directories with ``--train none``), chains them (NER ->
relations over every ordered pair of predicted entities) and scores everything
with SpERT's evaluator, next to the SpERT model from ``bench/spert_bench.py``.

    .venv/bin/python bench/baselines_bench.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import update_section
from bench.spert_bench import DATA, summary_table
from re_pipeline.baselines.ner import NerTagger, entity_scores, train_ner
from re_pipeline.baselines.relation import RelationClassifier, train_relation
from re_pipeline.config import PROJECT_DIR, BaselineTrainConfig, Settings
from re_pipeline.spert.data import Types, read_examples
from re_pipeline.spert.evaluator import evaluate
from re_pipeline.training import set_threads, tune_malloc

MODELS = PROJECT_DIR / "models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ner-epochs", type=int, default=5)
    parser.add_argument("--re-epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--re-neg", type=int, default=2, help="`none` pairs per sentence per epoch for relations")
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--train",
        choices=["both", "ner", "re", "none"],
        default="both",
        help="which models to train; the others are loaded from models/baseline-{ner,re}-conll04",
    )
    parser.add_argument("--spert", type=Path, default=MODELS / "spert-conll04", help="SpERT model directory")
    args = parser.parse_args()
    set_threads(args.threads)
    tune_malloc()
    root = DATA / "conll04"
    train_set, dev_set = read_examples(root / "train.json")[: args.max_train], read_examples(root / "dev.json")
    types = Types.load(root / "types.json")
    ner_dir, re_dir = MODELS / "baseline-ner-conll04", MODELS / "baseline-re-conll04"
    encoder = Settings.load().encoder_path
    if args.train in ("both", "ner"):
        train_ner(train_set, dev_set, types, encoder, ner_dir, BaselineTrainConfig(epochs=args.ner_epochs, lr=args.lr))
    if args.train in ("both", "re"):
        re_args = BaselineTrainConfig(epochs=args.re_epochs, batch_size=16, lr=args.lr, neg_per_sentence=args.re_neg)
        train_relation(train_set, dev_set, types, encoder, re_dir, re_args)
    ner, relation = NerTagger.load(ner_dir), RelationClassifier.load(re_dir)

    sentences = [ex.tokens for ex in dev_set]
    predicted_entities = ner.predict(sentences)
    ner_scores = entity_scores([ex.entities for ex in dev_set], predicted_entities, types.entities)
    gold_entities = evaluate(dev_set, relation.predict(sentences, [ex.entities for ex in dev_set]), types)
    pipeline = evaluate(dev_set, relation.predict(sentences, predicted_entities), types)

    rows = ["| CoNLL04 dev, micro F1 (macro F1) | entities | relations with NEC (strict) |", "|---|---:|---:|"]
    spert_metrics = args.spert / "metrics.json"
    if spert_metrics.exists() and "dev_evaluation" in (m := json.loads(spert_metrics.read_text())):
        ent, rel = m["dev_evaluation"]["entities"], m["dev_evaluation"]["relations_nec"]
        rows.append(
            f"| SpERT (joint, {len(m['history'])} epochs) | {ent['micro']['f1']:.2f} ({ent['macro']['f1']:.2f}) "
            f"| {rel['micro']['f1']:.2f} ({rel['macro']['f1']:.2f}) |"
        )
    rows.append(
        f"| pipeline: BIO NER -> marker RE | {100 * pipeline.entities.micro.f1:.2f} "
        f"({100 * pipeline.entities.macro.f1:.2f}) | {100 * pipeline.relations_nec.micro.f1:.2f} "
        f"({100 * pipeline.relations_nec.macro.f1:.2f}) |"
    )
    rows.append(
        f"| marker RE given gold entities (upper bound of the pipeline's RE) | - "
        f"| {100 * gold_entities.relations_nec.micro.f1:.2f} ({100 * gold_entities.relations_nec.macro.f1:.2f}) |"
    )
    ner_m, re_m = (json.loads((d / "metrics.json").read_text()) for d in (ner_dir, re_dir))
    nt, rt = ner_m["training"], re_m["training"]
    body = f"""
Encoder: MiniLM (same as SpERT). NER: `AutoModelForTokenClassification`, BIO labels on first subwords,
{len(ner_m["history"])} epochs, batch {nt["batch_size"]}, lr {nt["lr"]}, best epoch {ner_m["best_epoch"]}. Relations:
`AutoModelForSequenceClassification` with [E1]/[/E1]/[E2]/[/E2] markers added to the vocabulary,
{len(re_m["history"])} epochs, batch {rt["batch_size"]}, lr {rt["lr"]}, every related pair plus {rt["neg_per_sentence"]}
random `none` pairs per sentence per epoch, best epoch {re_m["best_epoch"]}. {len(train_set)} training sentences;
all scored with SpERT's evaluator (NER entity-level as seqeval).

{chr(10).join(rows)}

NER alone: entity micro P/R/F1 {100 * ner_scores.micro.precision:.2f} / {100 * ner_scores.micro.recall:.2f} /
{100 * ner_scores.micro.f1:.2f}, macro F1 {100 * ner_scores.macro.f1:.2f}.

Pipeline, all figures:

{summary_table(pipeline.summary())}
"""
    update_section("Pipeline baselines vs SpERT on CoNLL04", body)


if __name__ == "__main__":
    main()
