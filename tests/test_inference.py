"""Encoders for inference: activation smoothing before int8 (``re_pipeline.inference``)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_encoder

from re_pipeline.encoder import encode, tokenize_words
from re_pipeline.inference import (
    SmoothedLinear,
    feed_forward_linears,
    inference_encoder,
    input_maxima,
    sample_sentences,
    smooth,
)

SENTENCES = [
    ["John", "Smith", "works", "for", "Acme", "in", "Boston", "."],
    ["Mary", "lives", "in", "Paris", "."],
    ["The", "unbelievably", "hyperextended", "Kowalczykowski", "visited", "Reykjavik", "."],
]


@pytest.fixture
def outlier_encoder(tokenizer):
    """A tiny encoder whose feed-forward inputs have one channel ~30x the others, as trained
    transformers do (here through the attention block's LayerNorm gain)."""
    model = tiny_encoder(tokenizer, dropout=0.0)
    with torch.no_grad():
        for layer in model.encoder.layer:
            layer.attention.output.LayerNorm.weight[3] = 30.0
    return model


def _relative_error(encoder: torch.nn.Module, batch, expected: torch.Tensor) -> float:
    with torch.no_grad():
        got = encode(encoder, batch.input_ids, batch.attention_mask)
    real = batch.attention_mask.bool()
    return float((got[real] - expected[real]).norm() / expected[real].norm())


def test_smoothing_keeps_the_function_and_flattens_feed_forward_inputs(tokenizer, outlier_encoder):
    batch = tokenize_words(tokenizer, SENTENCES)
    smoothed = smooth(outlier_encoder, [batch])
    assert all(isinstance(m, torch.nn.Linear) for m in feed_forward_linears(outlier_encoder).values())  # caller's kept
    wrapped = [m for m in smoothed.modules() if isinstance(m, SmoothedLinear)]
    assert len(wrapped) == 2 * len(outlier_encoder.encoder.layer)  # H -> 4H and 4H -> H of every layer
    with torch.no_grad():
        expected = encode(outlier_encoder, batch.input_ids, batch.attention_mask)
        got = encode(smoothed, batch.input_ids, batch.attention_mask)
    assert torch.allclose(got, expected, atol=1e-5)  # the same function in fp32

    def spread(maxima: dict[str, torch.Tensor]) -> float:
        return max(float(m.max() / m.median()) for m in maxima.values())

    # The Linears inside the wrappers see the smoothed inputs: their channels' ranges are closer.
    assert spread(input_maxima(smoothed, [batch])) < spread(input_maxima(outlier_encoder, [batch])) / 2


def test_smoothing_brings_int8_closer_to_fp32(tokenizer, outlier_encoder):
    batch = tokenize_words(tokenizer, SENTENCES)
    with torch.no_grad():
        expected = encode(outlier_encoder, batch.input_ids, batch.attention_mask)
    for runtime in ("torch", "onnx"):
        plain = inference_encoder(outlier_encoder, runtime, int8=True)
        smoothed = inference_encoder(outlier_encoder, runtime, int8=True, calibration=[batch])
        assert _relative_error(smoothed, batch, expected) < _relative_error(plain, batch, expected), runtime


def test_calibration_needs_sentences_and_defaults_to_the_sample_corpus(tokenizer):
    with pytest.raises(ValueError, match="calibration"):
        smooth(tiny_encoder(tokenizer), [])
    # An encoder whose feed-forward block keeps the width has nothing to smooth: it comes back as it was.
    from transformers import BertConfig, BertModel

    width = {"hidden_size": 16, "intermediate_size": 16}
    square = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, num_hidden_layers=1, num_attention_heads=2, **width))
    assert smooth(square, [tokenize_words(tokenizer, SENTENCES)]) is square
    sentences = sample_sentences()
    assert len(sentences) > 100 and all(isinstance(w, str) for s in sentences for w in s)


def test_calibration_sees_inference_activations_and_skips_unused_layers(tokenizer):
    model = tiny_encoder(tokenizer, dropout=0.3)
    model.unused_head = torch.nn.Linear(32, 3)  # width-changing, but never run by the encoder's forward
    batch = tokenize_words(tokenizer, SENTENCES)
    expected = input_maxima(model.eval(), [batch])
    model.train()
    got = input_maxima(model, [batch])  # dropout would make these random and larger
    assert model.training  # the caller's mode is restored
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    smoothed = smooth(model, [batch])
    assert isinstance(smoothed.unused_head, torch.nn.Linear)  # left as it was, no KeyError
