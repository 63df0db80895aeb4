"""SpERT benchmark: accuracy on a dev set, training time per epoch, single-thread inference speed.

CoNLL04 (default): train on train.json with the paper's hyperparameters, evaluate
on dev.json. DocRED (``--dataset docred``): SpERT sentences derived from the first
400 documents of Re-DocRED's dev_revised.json, evaluated on the last 100
(mention detection and sentence-level relations). ``--skip-train`` reuses a
trained model directory (its metrics.json holds the per-epoch training times).

Run from the repository root, e.g.::

    .venv/bin/python bench/spert_bench.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import median, per_round_ratio, update_section
from re_pipeline.config import PROJECT_DIR, Settings, SpertTrainConfig
from re_pipeline.encoder import encode, word_batches
from re_pipeline.inference import CALIBRATION_SENTENCES
from re_pipeline.metrics import PRF, count_by_type, format_table, prf
from re_pipeline.spert.data import Example, SentencePrediction, Types, docred_to_examples, read_examples
from re_pipeline.spert.evaluator import evaluate
from re_pipeline.spert.predict import SpertPredictor
from re_pipeline.spert.train import train
from re_pipeline.training import set_threads, tune_malloc, update_metrics

DATA = PROJECT_DIR.parent / "shared" / "data"
REFERENCE = (
    "Reference (public SpERT code on this machine, same encoder): dev at epoch 20 entity F1 82.36, "
    "strict relation F1 61.92."
)


def load_data(dataset: str, max_train: int | None) -> tuple[list[Example], list[Example], Types]:
    if dataset == "conll04":
        root = DATA / "conll04"
        train_set, dev_set = read_examples(root / "train.json"), read_examples(root / "dev.json")
        types = Types.load(root / "types.json")
    else:
        docs = json.loads((DATA / "redocred" / "dev_revised.json").read_text())
        rel_info = json.loads((DATA / "redocred" / "rel_info.json").read_text())
        train_set, dev_set = docred_to_examples(docs[:400]), docred_to_examples(docs[400:])
        types = Types.from_examples(train_set, verbose=rel_info)
    return (train_set[:max_train] if max_train else train_set), dev_set, types


@dataclass
class Speed:
    full: float  # median sentences/s of full prediction
    floor: float  # median sentences/s of the encoder passes alone on the same batches
    vs_first: float  # median over rounds of this predictor's speed / the first predictor's in that round


def inference_speeds(
    predictors: dict[str, SpertPredictor], sentences: list[list[str]], runs: int = 5
) -> dict[str, Speed]:
    """Per predictor, sentences/s of full prediction and of its encoder passes alone (the floor).
    Rounds interleave the predictors, so a slow spell of this shared machine hits them all alike;
    speed-ups are the median of the per-round ratios."""
    full: dict[str, list[float]] = {name: [] for name in predictors}
    floor: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(runs):
        for name, predictor in predictors.items():
            start = time.perf_counter()
            predictor.predict_tokens(sentences)
            full[name].append(len(sentences) / (time.perf_counter() - start))
            start = time.perf_counter()
            with torch.inference_mode():
                batches = word_batches(predictor.tokenizer, sentences, predictor.batch_size, predictor.max_tokens)
                for _, words in batches:
                    encode(predictor.model.encoder, words.input_ids, words.attention_mask)
            floor[name].append(len(sentences) / (time.perf_counter() - start))
    first = full[next(iter(predictors))]
    return {
        name: Speed(median(full[name]), median(floor[name]), per_round_ratio(full[name], first)) for name in predictors
    }


def span_detection(gold: list[Example], preds: list[SentencePrediction]) -> PRF:
    """Mention detection with the type ignored: exact span match."""
    g = [(i, s, e) for i, ex in enumerate(gold) for s, e, _ in ex.entities]
    p = [(i, e.start, e.end) for i, pred in enumerate(preds) for e in pred.entities]
    return prf(count_by_type(g, p, lambda _: "mention")["mention"])


def runtime_variants(
    predictor: SpertPredictor, int8: bool, onnx: bool, calibration: list[list[str]] | None
) -> dict[str, SpertPredictor]:
    """The same model on every CPU encoder runtime asked for, torch fp32 first (int8 smoothed
    with ``calibration`` sentences; None: the bundled sample corpus)."""
    wanted = [("torch", True)] * int8 + [("onnx", False)] * onnx + [("onnx", True)] * (onnx and int8)
    variants = {"torch fp32": predictor}
    for runtime, quantized in wanted:
        variants[f"{runtime} {'int8' if quantized else 'fp32'}"] = SpertPredictor(
            predictor.model,
            predictor.tokenizer,
            "cpu",
            predictor.batch_size,
            int8=quantized,
            runtime=runtime,
            calibration=calibration,
        )
    return variants


def variant_table(scores: dict[str, dict[str, float]], speeds: dict[str, Speed], calibration: str) -> str:
    rows = [
        f"| {name} | {s['ent_micro_f1']:.2f} | {s['rel_nec_micro_f1']:.2f} | {speeds[name].full:.1f} "
        f"| {speeds[name].floor:.1f} | {speeds[name].vs_first:.2f}x |"
        for name, s in scores.items()
    ]
    return f"""
Other CPU encoder runtimes for the same model (int8: dynamic, per-channel weights, feed-forward inputs
smoothed with {calibration}), accuracy and speed measured in the same run, speed in interleaved rounds
(speed vs torch fp32: the median of the per-round ratios):

| encoder | entity F1 | strict relation F1 | sentences/s | encoder floor, sentences/s | speed vs torch fp32 |
|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
"""


def summary_table(s: dict[str, float]) -> str:
    rows = ["| dev (best epoch) | micro P | micro R | micro F1 | macro F1 |", "|---|---:|---:|---:|---:|"]
    names = {"ent": "entities", "rel": "relations without NEC", "rel_nec": "relations with NEC (strict)"}
    for key, name in names.items():
        p, r, f, mf = (s[f"{key}_{x}"] for x in ("micro_p", "micro_r", "micro_f1", "macro_f1"))
        rows.append(f"| {name} | {p:.2f} | {r:.2f} | {f:.2f} | {mf:.2f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["conll04", "docred"], default="conll04")
    parser.add_argument("--model-dir", type=Path, help="default: models/spert-<dataset>")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--batch-size", type=int, default=SpertTrainConfig.eval_batch_size, help="sentences per inference batch"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=5, help="timed rounds; speeds are their medians")
    parser.add_argument("--skip-train", action="store_true", help="evaluate an already trained model directory")
    parser.add_argument("--int8", action="store_true", help="also measure the int8 encoder (accuracy and speed)")
    parser.add_argument(
        "--onnx", action="store_true", help="also measure the encoder on ONNX Runtime (fp32; int8 too with --int8)"
    )
    parser.add_argument(
        "--calibration",
        choices=["train", "sample"],
        default="train",
        help="int8 smoothing calibrated on the training sentences or on the bundled sample corpus",
    )
    parser.add_argument("--section", help="BENCHMARKS.md section to (re)write (default: one per dataset)")
    args = parser.parse_args()
    set_threads(args.threads)
    tune_malloc()
    model_dir = args.model_dir or PROJECT_DIR / "models" / f"spert-{args.dataset}"
    train_set, dev_set, types = load_data(args.dataset, args.max_train)

    if not args.skip_train:
        train_args = SpertTrainConfig(epochs=args.epochs, seed=args.seed, device="cpu")
        train(train_set, dev_set, types, Settings.load().encoder_path, model_dir, train_args)
    trained_when = "from the model's training record, not this run" if args.skip_train else "this run"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    epoch_times = [h["train_seconds"] for h in metrics["history"]]

    predictor = SpertPredictor.load(model_dir, device="cpu", batch_size=args.batch_size)
    calibration = [ex.tokens for ex in train_set] if args.calibration == "train" else None
    variants = runtime_variants(predictor, args.int8, args.onnx, calibration)
    sentences = [ex.tokens for ex in dev_set]
    predictions = {name: p.predict_tokens(sentences) for name, p in variants.items()}
    result = evaluate(dev_set, predictions["torch fp32"], types)
    spans = span_detection(dev_set, predictions["torch fp32"])
    speeds = inference_speeds(variants, sentences, args.runs)
    speed, floor = speeds["torch fp32"].full, speeds["torch fp32"].floor
    update_metrics(model_dir, {"dev_evaluation": result.as_dict(), "inference_sentences_per_s": speed})
    scores = {name: evaluate(dev_set, p, types).summary() for name, p in predictions.items() if name != "torch fp32"}
    scores = {"torch fp32": result.summary(), **scores}
    calibrated_on = {
        "train": f"the first {CALIBRATION_SENTENCES} training sentences",
        "sample": "the bundled sample corpus",
    }
    others = variant_table(scores, speeds, calibrated_on[args.calibration]) if len(variants) > 1 else ""

    curve = ", ".join(f"{h['epoch']}: {h['metrics'].get('rel_nec_micro_f1', 0):.2f}" for h in metrics["history"])
    body = f"""
Model directory: `{model_dir.relative_to(PROJECT_DIR) if model_dir.is_relative_to(PROJECT_DIR) else model_dir}`;
{len(train_set)} training sentences, {len(dev_set)} dev sentences, {len(metrics["history"])} epochs
(best epoch by strict relation F1: {metrics["best_epoch"]}), threads: {torch.get_num_threads()},
inference batch: {args.batch_size} sentences.

{summary_table(result.summary())}
| mention spans, type ignored | {100 * spans.precision:.2f} | {100 * spans.recall:.2f} | {100 * spans.f1:.2f} | - |

{REFERENCE if args.dataset == "conll04" else ""}

Dev strict relation F1 per epoch: {curve}

| speed (one CPU thread) | value |
|---|---:|
| training time per epoch, median (s; {trained_when}) | {median(epoch_times):.1f} |
| inference, sentences/s (median of {args.runs}, model load excluded) | {speed:.1f} |
| encoder passes alone on the same batches (floor), sentences/s | {floor:.1f} |
{others}
<details><summary>Per-type scores</summary>

{format_table("Entities", result.entities)}

{format_table("Relations with NEC (strict)", result.relations_nec)}

</details>
"""
    title = "SpERT on CoNLL04" if args.dataset == "conll04" else "SpERT on DocRED-derived sentences"
    update_section(args.section or title, body)


if __name__ == "__main__":
    main()
