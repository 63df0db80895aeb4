"""Precision, recall and F1 from counts: the one implementation every evaluator uses.

Scores are computed from per-type true positive / false positive / false negative
counts. Micro averages sum the counts over types; macro averages take the mean of
the per-type P, R and F1 over the types that occur in the gold or the predicted
items: that is what SpERT's evaluator reports (scikit-learn's
``precision_recall_fscore_support`` with ``labels`` = the types seen, ``zero_division=0``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float
    support: int  # number of gold items

    def as_dict(self, percent: bool = True) -> dict[str, Any]:
        scale = 100.0 if percent else 1.0
        return {k: (v * scale if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn


def prf(c: Counts) -> PRF:
    """P/R/F1 with zero_division = 0."""
    p = c.tp / (c.tp + c.fp) if c.tp + c.fp else 0.0
    r = c.tp / (c.tp + c.fn) if c.tp + c.fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return PRF(p, r, f, c.tp + c.fn)


def count_by_type(
    gold: Iterable[Hashable], pred: Iterable[Hashable], type_of: Callable[[Any], str]
) -> dict[str, Counts]:
    """Per-type counts of exact matches between two collections of hashable items.

    An item that differs from every gold item in any field (including its type)
    is a false positive of its own type; the gold item it missed is a false
    negative of the gold type.
    """
    gold_set, pred_set = set(gold), set(pred)
    counts: dict[str, Counts] = {}
    for item in gold_set | pred_set:
        c = counts.setdefault(type_of(item), Counts())
        if item in gold_set and item in pred_set:
            c.tp += 1
        elif item in pred_set:
            c.fp += 1
        else:
            c.fn += 1
    return counts


@dataclass(frozen=True)
class Scores:
    micro: PRF
    macro: PRF
    per_type: dict[str, PRF]

    def as_dict(self) -> dict[str, Any]:
        """Percentages, as papers report them."""
        return {
            "micro": self.micro.as_dict(),
            "macro": self.macro.as_dict(),
            "per_type": {t: s.as_dict() for t, s in self.per_type.items()},
        }


def summarize(counts: dict[str, Counts], types: list[str]) -> Scores:
    """Per-type scores for every declared type; micro and macro averages over the types seen."""
    per_type = {t: prf(counts.get(t, Counts())) for t in types}
    total = Counts()
    for t in types:
        total.add(counts.get(t, Counts()))
    seen = [per_type[t] for t in types if t in counts]
    n = max(len(seen), 1)
    macro = PRF(
        sum(s.precision for s in seen) / n,
        sum(s.recall for s in seen) / n,
        sum(s.f1 for s in seen) / n,
        total.tp + total.fn,
    )
    return Scores(prf(total), macro, per_type)


def format_table(title: str, scores: Scores) -> str:
    """A Markdown table: one row per type, then micro and macro."""
    rows = [f"| {title} | P | R | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, s in [*scores.per_type.items(), ("**micro**", scores.micro), ("**macro**", scores.macro)]:
        rows.append(f"| {name} | {100 * s.precision:.2f} | {100 * s.recall:.2f} | {100 * s.f1:.2f} | {s.support} |")
    return "\n".join(rows)
