"""int8 fidelity: how closely int8 encoders reproduce a SpERT model's own fp32 predictions,
without and with activation smoothing (``re_pipeline.inference.smooth``) at several strengths α.

Calibration uses the first 256 CoNLL04 training sentences; fidelity is SpERT's strict micro
F1 of the int8 predictions scored against the fp32 model's predictions on sentences the model
never saw: Wikipedia sentences from Re-DocRED's dev_revised.json, after the documents of the
bundled sample corpus (100 = the same predictions). Training sentences would not do: the
model is sure of them, and quantization noise rarely flips a sure prediction. No labels are
involved and CoNLL04 dev.json is left alone, so choosing α here does not tune on it.

Run from the repository root, e.g.::

    .venv/bin/python bench/int8_bench.py --models models/spert-conll04 models/spert-conll04-seed7
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import median, update_section
from bench.spert_bench import DATA, load_data
from re_pipeline.config import SAMPLE_CORPUS
from re_pipeline.inference import CALIBRATION_SENTENCES, SMOOTHING_ALPHA, calibration_batches, for_inference
from re_pipeline.spert.data import Example, SentencePrediction, Types
from re_pipeline.spert.evaluator import evaluate
from re_pipeline.spert.predict import SpertPredictor
from re_pipeline.training import set_threads, tune_malloc


def as_gold(tokens: list[list[str]], preds: list[SentencePrediction]) -> list[Example]:
    """fp32 predictions as gold sentences, to score other predictions against them."""
    return [
        Example(
            words,
            [(e.start, e.end, e.type) for e in p.entities],
            [(r.head, r.tail, r.type) for r in p.relations],
        )
        for words, p in zip(tokens, preds, strict=True)
    ]


def fidelity(
    model_dir: Path, alphas: list[float], calibration: list[list[str]], held_out: list[list[str]]
) -> dict[str, tuple[float, float]]:
    """Per variant, (entity F1, strict relation F1) of its predictions against fp32's."""
    fp32 = SpertPredictor.load(model_dir, device="cpu")
    types = Types.load(model_dir / "types.json")
    gold = as_gold(held_out, fp32.predict_tokens(held_out))
    variants: dict[str, tuple[str, float | None]] = {"torch int8": ("torch", None), "onnx int8": ("onnx", None)}
    variants[f"torch int8, α {SMOOTHING_ALPHA}"] = ("torch", SMOOTHING_ALPHA)
    variants |= {f"onnx int8, α {a}": ("onnx", a) for a in alphas}
    out = {}
    for name, (runtime, alpha) in variants.items():
        batches, strength = None, SMOOTHING_ALPHA  # no calibration batches: quantized as trained
        if alpha is not None:
            batches = calibration_batches(fp32.tokenizer, calibration, fp32.batch_size)
            strength = alpha
        model = for_inference(fp32.model, torch.device("cpu"), runtime, True, batches, strength)
        preds = SpertPredictor(model, fp32.tokenizer, "cpu", fp32.batch_size).predict_tokens(held_out)
        s = evaluate(gold, preds, types).summary()
        out[name] = (s["ent_micro_f1"], s["rel_nec_micro_f1"])
        print(f"{model_dir.name} {name}: entities {out[name][0]:.2f}, relations {out[name][1]:.2f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=Path, required=True, help="trained SpERT model directories")
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.5, 0.7, 0.8, 0.9])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sentences", type=int, default=1000, help="unseen sentences to compare predictions on")
    parser.add_argument("--section", default="int8 fidelity: activation smoothing")
    args = parser.parse_args()
    set_threads(args.threads)
    tune_malloc()
    train_set, _, _ = load_data("conll04", None)
    calibration = [ex.tokens for ex in train_set[:CALIBRATION_SENTENCES]]
    sample_docs = len(json.loads(SAMPLE_CORPUS.read_text()))
    docs = json.loads((DATA / "redocred" / "dev_revised.json").read_text())[sample_docs:]
    held_out = [sentence for doc in docs for sentence in doc["sents"]][: args.sentences]
    results = {m: fidelity(m, args.alphas, calibration, held_out) for m in args.models}

    names = list(next(iter(results.values())))
    header = " | ".join(m.name for m in args.models)
    rows = []
    for name in names:
        cells = " | ".join(f"{results[m][name][0]:.2f} / {results[m][name][1]:.2f}" for m in args.models)
        ent, rel = (median([results[m][name][k] for m in args.models]) for k in (0, 1))
        rows.append(f"| {name} | {cells} | {ent:.2f} / {rel:.2f} |")
    body = f"""
Agreement of int8 encoders with each model's own fp32 predictions: SpERT's strict micro F1 (entities /
relations with NEC) of the int8 predictions scored against fp32's, on {len(held_out)} Re-DocRED dev sentences
the models never saw (100 = the same predictions); calibration: the first {len(calibration)} CoNLL04 training
sentences. "α": feed-forward inputs smoothed before quantizing (`re_pipeline.inference.smooth`); without:
quantized as trained. ONNX int8 quantizes MatMuls only.

| encoder | {header} | median |
|---|{"---:|" * len(args.models)}---:|
{chr(10).join(rows)}
"""
    update_section(args.section, body)


if __name__ == "__main__":
    main()
