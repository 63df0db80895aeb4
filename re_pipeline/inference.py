"""Encoders as predictors run them: as trained, dynamic int8, or on ONNX Runtime (CPU).

Why int8: on CPUs without bf16 arithmetic (AVX2 without AVX-512/AMX) fp32 passes already
run near the cores' peak, so int8 matrix products are the way to go faster. Dynamic int8
quantizes each activation tensor with one scale per batch, and a transformer's
feed-forward inputs have a few channels far larger than the rest (MiniLM: max 28 against a
median channel maximum of 2), so one scale leaves the ordinary channels few levels.
Before quantizing, ``smooth`` therefore moves part of that range into the weights, as
SmoothQuant does (Xiao et al., ICML 2023): input channel j is divided by
s_j = max|x_j|^α / max|W[:, j]|^(1-α) and weight column j multiplied by it, the same
function in fp32 with flatter activations. The maxima come from calibration sentences.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from re_pipeline.config import RUNTIMES, SAMPLE_CORPUS
from re_pipeline.encoder import WordBatch, encode, word_batches

#: Migration strength: higher moves more of the activations' range into the weights, lower leaves
#: more of the outliers in the activations. In a sweep of 0.5-0.9 over two sets of three CoNLL04
#: models, 0.7-0.9 agreed about equally well with fp32 on sentences they never saw and 0.5 clearly
#: worse (BENCHMARKS.md, "int8 fidelity", and its earlier run in git history); 0.8 sits mid-plateau.
SMOOTHING_ALPHA = 0.8
#: Calibration sentences used at most: the maxima settle within a few hundred.
CALIBRATION_SENTENCES = 256


def sample_sentences() -> list[list[str]]:
    """The bundled sample corpus's sentences (Wikipedia introductions): the default calibration."""
    return [sentence for doc in json.loads(SAMPLE_CORPUS.read_text()) for sentence in doc["sents"]]


def calibration_batches(
    tokenizer: Any,
    sentences: Sequence[Sequence[str]] | None = None,
    batch_size: int = 32,
    max_tokens: int | None = None,
) -> Iterator[WordBatch]:
    """The first ``CALIBRATION_SENTENCES`` of ``sentences`` (default: the bundled sample corpus's)
    as encoder batches, for ``smooth``."""
    chosen = list(sentences if sentences is not None else sample_sentences())[:CALIBRATION_SENTENCES]
    return (words for _, words in word_batches(tokenizer, chosen, batch_size, max_tokens))


class SmoothedLinear(nn.Module):
    """``linear(x)`` computed as ``linear'(x / s)`` with ``linear'``'s weight columns times ``s``
    (``linear`` is taken over and rescaled in place)."""

    def __init__(self, linear: nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        with torch.no_grad():
            self.linear.weight.mul_(scale)
        self.register_buffer("inverse_scale", 1.0 / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inverse_scale)


def feed_forward_linears(encoder: nn.Module) -> dict[str, nn.Linear]:
    """The Linear layers that change width: in BERT-style encoders the feed-forward block
    (H -> 4H -> H), whose inputs carry the outlier channels; attention's square ones are left."""
    return {
        name: module
        for name, module in encoder.named_modules()
        if isinstance(module, nn.Linear) and module.in_features != module.out_features
    }


@torch.inference_mode()
def input_maxima(encoder: nn.Module, batches: Iterable[WordBatch]) -> dict[str, torch.Tensor]:
    """Per feed-forward Linear, the largest |input| of each channel over the calibration batches."""
    maxima: dict[str, torch.Tensor] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float()
            maxima[name] = torch.maximum(maxima[name], x) if name in maxima else x

        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in feed_forward_linears(encoder).items()]
    was_training, seen = encoder.training, 0
    encoder.eval()  # the activations inference will see: no dropout
    try:
        for words in batches:
            encode(encoder, words.input_ids, words.attention_mask)
            seen += 1
    finally:
        encoder.train(was_training)
        for hook in hooks:
            hook.remove()
    if not seen:
        raise ValueError("no calibration batches: smoothing needs a few sentences")
    return maxima


def smooth(encoder: nn.Module, batches: Iterable[WordBatch], alpha: float = SMOOTHING_ALPHA) -> nn.Module:
    """A copy of ``encoder`` computing the same function with its feed-forward inputs smoothed
    (``encoder`` itself when it has no width-changing Linear layers: nothing to smooth)."""
    if not feed_forward_linears(encoder):
        return encoder
    maxima = input_maxima(encoder, batches)
    smoothed = copy.deepcopy(encoder)
    for name, linear in feed_forward_linears(smoothed).items():
        if name not in maxima:  # never ran on the calibration sentences (e.g. an unused head)
            continue
        w_max = linear.weight.detach().abs().amax(0).float().clamp(min=1e-5)
        scale = maxima[name].clamp(min=1e-5).pow(alpha) / w_max.pow(1 - alpha)
        parent_name, _, attr = name.rpartition(".")
        setattr(smoothed.get_submodule(parent_name), attr, SmoothedLinear(linear, scale.to(linear.weight.dtype)))
    return smoothed


def quantize_int8(encoder: nn.Module) -> nn.Module:
    """The encoder with its Linear layers as dynamic int8 (per-channel weights), for CPU inference.

    Activations are quantized per batch, so predictions can differ slightly with the
    batching. Returns a quantized copy; ``encoder`` itself is left as it was.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's eager quantization announces its move to torchao
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel", UserWarning)
        return quantize_dynamic(encoder, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def inference_encoder(
    encoder: nn.Module,
    runtime: str = "torch",
    int8: bool = False,
    calibration: Iterable[WordBatch] | None = None,
    alpha: float = SMOOTHING_ALPHA,
) -> nn.Module:
    """The encoder a CPU predictor runs: as trained, torch dynamic int8, or on ONNX Runtime
    (fp32 or int8). int8 encoders are smoothed first (strength ``alpha``) when ``calibration``
    batches are given. ``encoder`` itself is left as it was."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if int8 and calibration is not None:
        encoder = smooth(encoder, calibration, alpha)
    if runtime == "onnx":
        from re_pipeline.onnx_encoder import OnnxEncoder

        return OnnxEncoder(encoder, int8)
    return quantize_int8(encoder) if int8 else encoder


def for_inference(
    model: nn.Module,
    device: torch.device,
    runtime: str = "torch",
    int8: bool = False,
    calibration: Iterable[WordBatch] | None = None,
    alpha: float = SMOOTHING_ALPHA,
) -> nn.Module:
    """``model`` (anything with an ``encoder``) ready to predict on ``device``: a copy whose encoder
    runs as asked (CPU only; see ``inference_encoder``), or the model itself when nothing changes."""
    if runtime == "torch" and not int8:
        return model.to(device).eval()
    if device.type != "cpu":
        raise ValueError("int8 and the onnx runtime are for CPUs; on a GPU, bf16 autocast is used instead")
    # The memo spares copying the trained encoder only to replace it; the caller's model is left as it was.
    swapped = inference_encoder(model.encoder, runtime, int8, calibration, alpha)
    return copy.deepcopy(model, {id(model.encoder): swapped}).eval()
