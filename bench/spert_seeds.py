"""SpERT on CoNLL04 across training seeds and optimizers: how much of a dev figure is the seed.

Reads each model directory's training record (seed, optimizer settings, per-epoch dev scores)
and re-scores its kept checkpoint on dev.json, then writes one table with the medians per
optimizer next to the reference's single run. Train the models first, one per seed and optimizer, e.g.::

    re-pipeline spert train --train ../shared/data/conll04/train.json \\
        --dev ../shared/data/conll04/dev.json --out models/spert-uc-seed7 --seed 7 --threads 1 \\
        --no-bias-correction --adam-eps 1e-6

(without the last line: torch's AdamW, the default),
then, from the repository root::

    .venv/bin/python bench/spert_seeds.py --models models/spert-conll04 models/spert-uc-seed7 ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import median, update_section
from bench.spert_bench import REFERENCE, load_data
from re_pipeline.config import PROJECT_DIR
from re_pipeline.spert.evaluator import evaluate
from re_pipeline.spert.predict import SpertPredictor
from re_pipeline.training import set_threads

ENT, REL = "ent_micro_f1", "rel_nec_micro_f1"
HEAD = (
    "| model | optimizer | seed | kept epoch | entity F1, kept | strict relation F1, kept "
    "| entity F1, last | strict relation F1, last |\n|---|---|---:|---:|---:|---:|---:|---:|"
)


def optimizer_of(training: dict) -> str:
    """Models trained before the setting existed used torch's AdamW, which corrects the bias."""
    if training.get("bias_correction", True):
        return f"AdamW, bias-corrected, eps {training.get('adam_eps', 1e-8):g}"
    return f"AdamW, uncorrected, eps {training['adam_eps']:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=Path, required=True, help="SpERT model directories")
    parser.add_argument("--section", default="SpERT on CoNLL04: seeds and optimizers")
    args = parser.parse_args()
    set_threads(1)
    _, dev_set, types = load_data("conll04", None)
    sentences = [ex.tokens for ex in dev_set]

    rows, groups = [], {}
    for model_dir in args.models:
        training = json.loads((model_dir / "config.json").read_text())["training"]
        history = json.loads((model_dir / "metrics.json").read_text())["history"]
        scores = evaluate(dev_set, SpertPredictor.load(model_dir, device="cpu").predict_tokens(sentences), types)
        kept, last = scores.summary(), history[-1]["metrics"]
        optimizer = optimizer_of(training)
        groups.setdefault(optimizer, []).append((kept[ENT], kept[REL], last[ENT], last[REL]))
        path = model_dir.resolve()
        name = path.relative_to(PROJECT_DIR) if path.is_relative_to(PROJECT_DIR) else model_dir
        rows.append(
            f"| `{name}` | {optimizer} | {training['seed']} | {training['best_epoch']} | {kept[ENT]:.2f} "
            f"| {kept[REL]:.2f} | {last[ENT]:.2f} | {last[REL]:.2f} |"
        )
        print(rows[-1], flush=True)
    medians = [
        f"| {optimizer} | {len(runs)} | "
        + " | ".join(f"{median([run[i] for run in runs]):.2f}" for i in range(4))
        + " |"
        for optimizer, runs in groups.items()
    ]
    body = f"""
Each model trained with `re-pipeline spert train --seed S --threads 1` on train.json with dev.json, the uncorrected
ones with `--no-bias-correction --adam-eps 1e-6` (SpERT's reference optimizer) as in the script's docstring.
Kept: the checkpoint with the best dev strict relation F1 (what `re-pipeline spert train`
keeps), re-scored here; last: each model's final epoch, from its training record (the reference's
figures are its last epoch).
{REFERENCE}

{HEAD}
{chr(10).join(rows)}

| medians | runs | entity F1, kept | strict relation F1, kept | entity F1, last | strict relation F1, last |
|---|---:|---:|---:|---:|---:|
{chr(10).join(medians)}
"""
    update_section(args.section, body)


if __name__ == "__main__":
    main()
