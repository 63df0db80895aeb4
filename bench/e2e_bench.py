"""The extraction job end to end: accuracy (JEREX criteria, coreference metrics) and speed against its floor.

Documents: the last 100 of Re-DocRED dev_revised.json (models trained on the first 400). The job sees the
documents' sentences only; gold annotations are used for scoring. Speed: the job's wall time over its floor,
the time of the encoder forward passes it cannot avoid (SpERT's sentence passes, the two-step model's document
passes), timed inside the same run on the same batches by hooks on the encoders.

    python bench/e2e_bench.py --spert models/spert-docred --docred models/docred-twostep --coref models/coref-redocred
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import median, peak_rss_kib, per_round_ratio, publish  # noqa: E402
from re_pipeline.config import RUNTIMES  # noqa: E402
from re_pipeline.coref import gold_pairs  # noqa: E402
from re_pipeline.coref_metrics import coref_scores  # noqa: E402
from re_pipeline.documents import Annotations, Document  # noqa: E402
from re_pipeline.e2e import evaluate  # noqa: E402
from re_pipeline.extract import Extractor, ExtractStats  # noqa: E402
from re_pipeline.ingest import load_valid_corpus  # noqa: E402

REDOCRED = ROOT.parent / "shared" / "data" / "redocred" / "dev_revised.json"


class EncoderClock:
    """Accumulates the wall time of every forward pass of the given encoder modules."""

    def __init__(self, modules: list[torch.nn.Module]):
        self.seconds = 0.0
        self._start = 0.0
        self._hooks = [
            h for m in modules for h in (m.register_forward_pre_hook(self._pre), m.register_forward_hook(self._post))
        ]

    def stop(self) -> None:
        for hook in self._hooks:
            hook.remove()

    def _pre(self, *_: object) -> None:
        self._start = time.perf_counter()

    def _post(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._start


def build(args: argparse.Namespace, runtime: str) -> Extractor:
    return Extractor.from_paths(
        args.spert, args.coref, args.docred, args.device, cpu_runtime=runtime, docs_per_batch=args.docs_per_batch
    )


def blank(doc: Document) -> Document:
    """The document as the job sees it: no predictions yet (gold kept aside for scoring)."""
    out = copy.copy(doc)
    out.predicted = Annotations()
    return out


def timed_run(extractor: Extractor, docs: list[Document]) -> tuple[float, float, ExtractStats, list[Document]]:
    encoders = [extractor.spert.model.encoder]
    if extractor.docred is not None:
        encoders += [m.encoder for m in extractor.docred.models.values()]
    clock = EncoderClock(encoders)
    stats = ExtractStats()
    docs = [blank(d) for d in docs]
    start = time.perf_counter()
    for i in range(0, len(docs), extractor.docs_per_batch):
        extractor.process(docs[i : i + extractor.docs_per_batch], stats)
    wall = time.perf_counter() - start
    clock.stop()
    return wall, clock.seconds, stats, docs


def runtime_table(
    walls: dict[str, list[float]], floors: dict[str, list[float]], outputs: dict[str, list[Document]], n_docs: int
) -> str:
    """Each runtime's speed (interleaved runs; ratios the median of per-round ratios) and whether it
    extracted what the first one did."""
    first = next(iter(walls))

    def triples(doc: Document) -> set[tuple[int, int, str]]:
        return {(r.head, r.tail, r.type) for r in doc.predicted.relations}

    rows = ["| encoders on | documents/s | encoder floor, s | job / floor | speed vs first | same relations as first |"]
    rows.append("|---|---:|---:|---:|---:|---:|")
    for runtime in walls:
        same = sum(triples(a) == triples(b) for a, b in zip(outputs[runtime], outputs[first], strict=True))
        rows.append(
            f"| {runtime} | {n_docs / median(walls[runtime]):.2f} | {median(floors[runtime]):.1f} "
            f"| {per_round_ratio(walls[runtime], floors[runtime]):.2f}x "
            f"| {per_round_ratio(walls[first], walls[runtime]):.2f}x | {same} of {n_docs} documents |"
        )
    return "\n".join(rows)


def peak_rss(args: argparse.Namespace, n_docs: int) -> float:
    """Peak resident MiB of a fresh process running the job over ``n_docs`` documents (repeating the set)."""
    cmd = [sys.executable, __file__, "--child-docs", str(n_docs), "--spert", args.spert, "--threads", str(args.threads)]
    cmd += ["--cpu-runtime", args.cpu_runtime[0]]
    cmd += ["--docred", args.docred] if args.docred else []
    cmd += ["--coref", args.coref] if args.coref else []
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1]) / 1024


def child(args: argparse.Namespace) -> None:
    docs = load_valid_corpus(REDOCRED)
    extractor = build(args, args.cpu_runtime[0])
    pool = docs[400:]
    for k in range(args.child_docs // len(pool) + 1):
        batch = [blank(d) for d in pool][: args.child_docs - k * len(pool)]
        if batch:
            for i in range(0, len(batch), extractor.docs_per_batch):
                extractor.process(batch[i : i + extractor.docs_per_batch], ExtractStats())
    print(peak_rss_kib())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spert", required=True, help="SpERT model trained on DocRED-derived sentences")
    ap.add_argument("--docred", help="two-step model directory (omit: SpERT relations only)")
    ap.add_argument("--coref", help="coreference scorer directory (omit: rules)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--cpu-runtime",
        choices=RUNTIMES,
        nargs="+",
        default=["torch"],
        help="where the encoders run; several: timed in interleaved runs, accuracy and memory of the first",
    )
    ap.add_argument("--section", default="Extraction job end to end (SpERT + coreference + two-step)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--docs-per-batch", type=int, default=32)
    ap.add_argument("--memory-sizes", type=int, nargs="*", default=[100, 1000])
    ap.add_argument("--child-docs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_docs:
        child(args)
        return

    docs = load_valid_corpus(REDOCRED)
    dev = docs[400:]
    extractors = {runtime: build(args, runtime) for runtime in args.cpu_runtime}
    for extractor in extractors.values():
        timed_run(extractor, dev[:8])  # warm-up: lazy initialisation, allocator
    walls: dict[str, list[float]] = {runtime: [] for runtime in extractors}
    floors: dict[str, list[float]] = {runtime: [] for runtime in extractors}
    outputs: dict[str, list[Document]] = {}
    for run in range(args.runs):
        for runtime, extractor in extractors.items():
            wall, floor, stats, outputs[runtime] = timed_run(extractor, dev)
            walls[runtime].append(wall)
            floors[runtime].append(floor)
            print(
                f"run {run} {runtime}: {wall:.1f} s, floor {floor:.1f} s, ratio {wall / floor:.2f}; {stats.summary()}"
            )
    first = args.cpu_runtime[0]
    extractor, predicted = extractors[first], outputs[first]
    scores = evaluate(predicted)
    gold_mentions = coref_scores(
        [d.gold.entities for d in dev], [extractor.grouper.group(gold_pairs(d)[0]) for d in dev]
    )
    predicted_mentions = coref_scores([d.gold.entities for d in dev], [d.predicted.entities for d in predicted])
    memory = {n: peak_rss(args, n) for n in args.memory_sizes}
    memory_line = ", ".join(f"{n:,} documents {mib:,.0f} MiB" for n, mib in memory.items())
    memory_line = f"Peak resident memory of a fresh process ({first}): {memory_line}." if memory else ""

    rows = "\n".join(
        f"| {level} | {s['precision']:.2f} | {s['recall']:.2f} | **{s['f1']:.2f}** |" for level, s in scores.items()
    )
    ratios = [w / f for w, f in zip(walls[first], floors[first], strict=True)]
    runs = ", ".join(f"{r:.2f}" for r in ratios)
    wall, floor = median(walls[first]), median(floors[first])
    speed = f"""Speed (median of {args.runs} runs): **{len(dev) / wall:.2f} documents/s**; job {wall:.1f} s,
encoder floor {floor:.1f} s, job / floor **{per_round_ratio(walls[first], floors[first]):.2f}x** (runs: {runs})."""
    if len(extractors) > 1:
        speed += "\n\n" + runtime_table(walls, floors, outputs, len(dev))
    body = f"""
Models: {json.dumps(extractor.versions)}; {len(dev)} documents (Re-DocRED dev_revised.json [400:500]), device
{args.device}, {args.threads} threads, {args.docs_per_batch} documents per batch, encoders on {first}.

| level (JEREX end-to-end) | P | R | F1 |
|---|---|---|---|
{rows}

Coreference (CoNLL F1 = mean of MUC, B3, CEAF-e): from gold mentions **{gold_mentions["conll_f1"]:.2f}**
(exact-cluster F1 {gold_mentions["exact_cluster"]["f1"]:.2f}); from predicted mentions
**{predicted_mentions["conll_f1"]:.2f}** (exact-cluster F1 {predicted_mentions["exact_cluster"]["f1"]:.2f}).
JEREX (BERT-base, full DocRED train) for orientation: mentions 93, clusters 83, entities 80, relations 40 F1.

{speed}

{memory_line}
"""
    publish(args.section, body, args.no_write)


if __name__ == "__main__":
    main()
