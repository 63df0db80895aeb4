"""Inference with a trained SpERT model: tokens, raw text or Documents in, entities and relations out.

Sentences are sorted by length and batched with dynamic padding (little wasted
compute on padding), run under ``torch.inference_mode`` and, on CUDA, bf16
autocast; results come back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from re_pipeline.documents import Document
from re_pipeline.encoder import autocast, load_tokenizer, resolve_device, word_batches
from re_pipeline.inference import calibration_batches, for_inference
from re_pipeline.spert.data import SentencePrediction, apply_predictions, document_json
from re_pipeline.spert.model import SpertModel


class SpertPredictor:
    def __init__(
        self,
        model: SpertModel,
        tokenizer: Any,
        device: str = "auto",
        batch_size: int = 32,
        max_tokens: int | None = None,
        int8: bool = False,
        runtime: str = "torch",
        calibration: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """``calibration``: sentences whose encoder activations set the int8 smoothing
        (``inference.smooth``; default the bundled sample corpus); in-domain ones fit best."""
        self.device = resolve_device(device)
        self.tokenizer = tokenizer
        batches = calibration_batches(tokenizer, calibration, batch_size, max_tokens) if int8 else None
        self.model = for_inference(model, self.device, runtime, int8, batches)
        self.batch_size = batch_size
        self.max_tokens = max_tokens  # padded subwords per batch: bounds memory on long sentences

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "auto",
        batch_size: int = 32,
        max_tokens: int | None = None,
        int8: bool = False,
        runtime: str = "torch",
        calibration: Sequence[Sequence[str]] | None = None,
    ) -> SpertPredictor:
        """A model directory written by training; loads offline."""
        model, tokenizer = SpertModel.from_pretrained(model_dir), load_tokenizer(str(model_dir))
        return cls(model, tokenizer, device, batch_size, max_tokens, int8, runtime, calibration)

    def predict_tokens(self, sentences: Sequence[Sequence[str]]) -> list[SentencePrediction]:
        """Predictions for pre-tokenized sentences, in input order; batched by subword length."""
        out = [SentencePrediction() for _ in sentences]
        self.model.eval()
        with torch.inference_mode(), autocast(self.device):
            for chunk, words in word_batches(self.tokenizer, sentences, self.batch_size, self.max_tokens):
                for j, pred in zip(chunk, self.model.predict(words.to(self.device)), strict=True):
                    out[j] = pred
        return out

    def predict_documents(self, docs: Sequence[Document]) -> None:
        """Fill each document's ``predicted`` mentions and sentence-level relations (all sentences batched together)."""
        sentences = [s.tokens for d in docs for s in d.sentences]
        preds = self.predict_tokens(sentences)
        pos = 0
        for doc in docs:
            apply_predictions(doc, preds[pos : pos + len(doc.sentences)])
            pos += len(doc.sentences)

    def predict_text(self, text: str, doc_id: str = "text:0") -> dict[str, Any]:
        """Raw text -> sentences and words (the ingest tokenizer) -> predictions with character offsets."""
        from re_pipeline import text as text_mod
        from re_pipeline.documents import normalize_text

        normalized = normalize_text(text)
        doc = Document(doc_id, "text", doc_id, normalized, text_mod.split(normalized))
        self.predict_documents([doc])
        return document_json(doc)
