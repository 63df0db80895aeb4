"""Encoder passes on ONNX Runtime: a CPU inference path for any ``transformers`` encoder.

Why: ONNX Runtime's int8 kernels run a MiniLM pass faster than torch's dynamic int8 (SpERT on one
thread: 1.9x against 1.7x fp32's speed on an AVX-512 host, BENCHMARKS.md "SpERT on CoNLL04"), and in
fp32, with the same outputs to ~1e-5, it was 1.04-1.14x faster than eager PyTorch on the AVX2-only
hosts of earlier runs (about even, 0.94-1.11x, on AVX-512). Only the encoder moves; span pooling and the
classifiers stay in PyTorch, so a model keeps one code path and one set of weights.

The encoder is exported when the predictor is built (seconds for MiniLM), never
stored: a model directory stays the single source of truth. Export uses eager
attention so the graph is plain MatMul/Softmax that ONNX Runtime fuses and, with
``int8``, quantizes dynamically (int8 weights per output channel, activations per batch).
ONNX Runtime is an optional dependency: ``pip install onnxruntime onnx``.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

_INPUTS = ("input_ids", "attention_mask")


class _LastHidden(torch.nn.Module):
    """The encoder as a function of (input_ids, attention_mask) -> last hidden states."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(encoder: torch.nn.Module, path: Path, int8: bool = False) -> Path:
    """Write ``encoder`` as an ONNX graph with dynamic batch and sequence axes (int8: quantized)."""
    encoder = copy.deepcopy(encoder).float().eval()
    if hasattr(encoder, "set_attn_implementation"):
        encoder.set_attn_implementation("eager")
    # A padded batch, so the traced graph is one that masks padding.
    example = (torch.tensor([[1, 2, 3, 4], [1, 2, 0, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]))
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "hidden")}
    fp32 = path.with_suffix(".fp32.onnx") if int8 else path
    with torch.no_grad(), warnings.catch_warnings():
        # Expected from tracing: shape checks frozen as constants (the axes stay dynamic),
        # and a note on how index ops are lowered (no negative indices here).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Exporting aten::index", UserWarning)
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        torch.onnx.export(
            _LastHidden(encoder),
            example,
            str(fp32),
            input_names=list(_INPUTS),
            output_names=["hidden"],
            dynamic_axes=dynamic,
            opset_version=17,
            # The TorchScript exporter, deprecated but kept on purpose: ONNX Runtime runs its
            # graph of MiniLM 1.07x (fp32) and 1.19x (int8) faster than the torch.export one.
            dynamo=False,
        )
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # its advice to pre-process first (shape inference fails on BERT graphs)
        try:
            # MatMuls only: by default the embedding tables (Gather) would be quantized too, which
            # saves no time and, one scale per table, costs accuracy in every token.
            quantize_dynamic(
                str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
            )
        finally:
            logging.disable(previous)
    return path


class OnnxEncoder(torch.nn.Module):
    """Drop-in for a ``transformers`` encoder at inference: same call, same ``config``,
    ``last_hidden_state`` computed by ONNX Runtime on the CPU with torch's thread count."""

    def __init__(self, encoder: torch.nn.Module, int8: bool = False) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise RuntimeError("the onnx runtime needs ONNX Runtime: pip install onnxruntime onnx") from err

        self.config = encoder.config
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle pool threads would spin after each pass, taking cores from the PyTorch work that follows.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(encoder, Path(tmp) / "encoder.onnx", int8)
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        feed = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        (hidden,) = self.session.run(["hidden"], feed)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("an ONNX Runtime encoder is for inference only; save the model it was exported from")

    def __deepcopy__(self, memo: dict[int, Any]) -> OnnxEncoder:
        return self  # a session is immutable and shareable; nothing to copy
