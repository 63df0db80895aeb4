"""The classic pipeline: NER tagger first, then the relation classifier over its entities.

Scored with SpERT's evaluator, so its figures compare directly with the joint model's.
"""

from __future__ import annotations

from re_pipeline.baselines.ner import NerTagger
from re_pipeline.baselines.relation import RelationClassifier
from re_pipeline.spert.data import Example, SentencePrediction, Types
from re_pipeline.spert.evaluator import Evaluation, evaluate


def pipeline_predict(
    ner: NerTagger, relation: RelationClassifier, sentences: list[list[str]]
) -> list[SentencePrediction]:
    return relation.predict(sentences, ner.predict(sentences))


def evaluate_pipeline(ner: NerTagger, relation: RelationClassifier, gold: list[Example], types: Types) -> Evaluation:
    return evaluate(gold, pipeline_predict(ner, relation, [ex.tokens for ex in gold]), types)
