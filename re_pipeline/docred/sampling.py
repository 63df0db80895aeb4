"""Step 1's pair sampler: every related pair, plus N/A pairs at 3 N/A : 1 related.

Most ordered entity pairs of a document hold no relation (about 97% in DocRED);
training the existence classifier on all of them drowns the related ones. Wang et
al. (2019) keep all related pairs and sub-sample the N/A ones at a 3:1 ratio. The
sample is redrawn every epoch, so over training the model still sees most N/A pairs.
"""

from __future__ import annotations

import random

from re_pipeline.docred.data import DocFeatures, Pair


def sample_pairs(feature: DocFeatures, rng: random.Random, ratio: float = 3.0) -> list[Pair]:
    """All related pairs of one document plus ``ratio`` times as many N/A pairs
    (all of them if there are fewer); a document without related pairs keeps
    ``ratio`` N/A pairs so it still teaches "no relation"."""
    related = feature.related_pairs()
    unrelated = [p for p in feature.all_pairs() if p not in feature.labels]
    want = round(ratio * max(len(related), 1))
    return related + rng.sample(unrelated, min(want, len(unrelated)))
