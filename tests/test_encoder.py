"""Word alignment and pooling of re_pipeline.encoder on words split into several subwords."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_encoder

from re_pipeline.encoder import (
    WordBatch,
    encode,
    length_batches,
    max_positions,
    pool_words,
    tokenize_words,
    word_batches,
)


@pytest.fixture(scope="module")
def tokenizer():
    from re_pipeline.config import default_encoder
    from re_pipeline.encoder import load_tokenizer

    return load_tokenizer(default_encoder())


def test_word_ranges_cover_all_subwords_between_cls_and_sep(tokenizer):
    words = ["Kowalczykowski", "met", "Tegucigalpa's", "mayor"]
    batch = tokenize_words(tokenizer, [words, ["hi"]])
    starts, ends = batch.word_start[0].tolist(), batch.word_end[0].tolist()
    assert starts[0] == 1 and all(e == s for e, s in zip(ends, starts[1:], strict=False))
    assert ends[-1] == int(batch.attention_mask[0].sum()) - 1  # [SEP] follows the last word
    assert max(e - s for s, e in zip(starts, ends, strict=True)) > 2
    assert batch.word_mask.tolist() == [[True] * 4, [True, False, False, False]]
    ids = batch.input_ids[0, starts[2] : ends[2]].tolist()
    assert tokenizer.decode(ids).replace(" ", "") == "tegucigalpa's"


def test_batched_alignment_equals_one_sentence_at_a_time_and_dropped_words_become_unk(tokenizer):
    sentences = [["a", "\u200b", "Kowalczykowski"], [], ["Reykjavik", "\u0301"], ["ok"]]
    batch = tokenize_words(tokenizer, sentences)
    for b, words in enumerate(sentences):
        alone = tokenize_words(tokenizer, [words])
        n_tokens, n_words = alone.input_ids.shape[1], alone.word_start.shape[1]
        assert torch.equal(batch.input_ids[b, :n_tokens], alone.input_ids[0])
        assert torch.equal(batch.word_start[b, :n_words], alone.word_start[0])
        assert torch.equal(batch.word_end[b, :n_words], alone.word_end[0])
        assert int(batch.word_mask[b].sum()) == len(words)
    # Words with no subwords of their own get [UNK], so every word keeps a non-empty range.
    assert batch.input_ids[0, 2] == tokenizer.unk_token_id and batch.word_end[0, 1] - batch.word_start[0, 1] == 1
    assert batch.input_ids[2, int(batch.word_start[2, 1])] == tokenizer.unk_token_id


def test_pool_words_max_and_mean_over_each_words_subwords(tokenizer):
    words = ["Kowalczykowski", "met", "Tegucigalpa's", "mayor"]
    batch = tokenize_words(tokenizer, [words, ["hi"]])
    hidden = torch.randn(2, batch.input_ids.shape[1], 6)
    reductions = (("max", lambda x: x.max(0).values), ("mean", lambda x: x.mean(0)), ("sum", lambda x: x.sum(0)))
    assert int((batch.word_end - batch.word_start).max()) >= 4  # words of several subwords
    for how, reduce in reductions:
        pooled = pool_words(hidden, batch, how)
        for i in range(len(words)):
            sub = hidden[0, batch.word_start[0, i] : batch.word_end[0, i]]
            assert torch.allclose(pooled[0, i], reduce(sub), atol=1e-6)
        assert torch.allclose(pooled[1, 0], reduce(hidden[1, 1:2]), atol=1e-6)
        assert torch.equal(pooled[1, 1:], torch.zeros(3, 6))  # padding words
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_words(hidden, batch, "min")
    # A word without subwords of its own (hand-built; align_words gives such words [UNK]) pools to zeros.
    empty_word = WordBatch(
        batch.input_ids, batch.attention_mask, batch.word_start.clone(), batch.word_end.clone(), batch.word_mask
    )
    empty_word.word_end[0, 1] = empty_word.word_start[0, 1]
    for how in ("max", "mean", "sum"):
        assert torch.equal(pool_words(hidden, empty_word, how)[0, 1], torch.zeros(6))


def test_windowed_encoding_keeps_every_token_and_matches_short_inputs(tokenizer):
    model = tiny_encoder(tokenizer, max_positions=20)
    short = tokenize_words(tokenizer, [["a", "b", "c"]])
    with torch.no_grad():
        direct = model(input_ids=short.input_ids, attention_mask=short.attention_mask).last_hidden_state
        assert torch.allclose(encode(model, short.input_ids, short.attention_mask), direct, atol=1e-6)
        long = tokenize_words(tokenizer, [[f"w{i}" for i in range(40)], ["a"]])
        out = encode(model, long.input_ids, long.attention_mask)
    assert long.input_ids.shape[1] > 20 and out.shape[:2] == long.input_ids.shape
    assert out[0, : int(long.attention_mask[0].sum())].abs().sum(-1).min() > 0  # no token left unencoded


def test_roberta_style_positions_leave_room_for_their_offset(tokenizer):
    from transformers import RobertaConfig, RobertaModel

    config = RobertaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=22, pad_token_id=1,
    )  # fmt: skip
    model = RobertaModel(config).eval()
    assert max_positions(model) == 20  # positions 2..21 of the table
    long = tokenize_words(tokenizer, [[f"w{i}" for i in range(40)]])
    with torch.no_grad():  # windows of 22 tokens would index past the table
        assert encode(model, long.input_ids, long.attention_mask).shape[:2] == long.input_ids.shape


def test_length_batches_sort_by_length_and_respect_item_and_token_budgets():
    lengths = [50, 3, 400, 7, 7, 120, 2, 60]
    batches = length_batches(lengths, batch_size=3, max_tokens=130)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each item exactly once
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths)
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 130  # an oversized item goes alone
    assert [len(b) for b in batches] == [3, 2, 1, 1, 1]
    assert length_batches(lengths, batch_size=3) == [[6, 1, 3], [4, 0, 7], [5, 2]]


def test_word_batches_tokenize_once_skip_empty_and_match_tokenize_words(tokenizer):
    sentences = [["Merkel", "visited", "Paris", "yesterday"], [], ["unbelievably"], ["a", "b"], ["x"] * 9]
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return tokenizer(*args, **kwargs)

    counting.pad_token_id, counting.unk_token = tokenizer.pad_token_id, tokenizer.unk_token
    counting.cls_token_id, counting.sep_token_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    batches = list(word_batches(counting, sentences, batch_size=2))
    assert len(calls) == 1  # one tokenizer call for every sentence, not one per batch
    assert sorted(i for chunk, _ in batches for i in chunk) == [0, 2, 3, 4]  # the empty one skipped
    lengths = [int(words.attention_mask.sum(1).max()) for _, words in batches]
    assert lengths == sorted(lengths)
    for chunk, words in batches:
        alone = tokenize_words(tokenizer, [sentences[i] for i in chunk])
        assert all(torch.equal(a, b) for a, b in zip(vars(words).values(), vars(alone).values(), strict=True))


def test_onnx_encoder_matches_torch_on_padded_and_windowed_batches(tokenizer):
    from re_pipeline.inference import inference_encoder

    model = tiny_encoder(tokenizer, max_positions=20)
    onnx = inference_encoder(model, "onnx")
    assert all(p.requires_grad for p in model.parameters())  # the caller's encoder is untouched
    # Padded rows (masking must survive the export) and a row longer than 20 positions (windows).
    for words in ([["a", "b", "c", "d", "e"], ["f"], ["Kowalczykowski", "g"]], [[f"w{i}" for i in range(40)], ["a"]]):
        batch = tokenize_words(tokenizer, words)
        with torch.no_grad():
            expected = encode(model, batch.input_ids, batch.attention_mask)
        got = encode(onnx, batch.input_ids, batch.attention_mask)
        real = batch.attention_mask.bool()
        assert got.shape == expected.shape
        assert torch.allclose(got[real], expected[real], atol=1e-4)

    with pytest.raises(RuntimeError, match="inference only"):
        onnx.state_dict()  # saving a model whose encoder is a session would lose the encoder
    quantized = encode(inference_encoder(model, "onnx", int8=True), batch.input_ids, batch.attention_mask)
    assert torch.nn.functional.cosine_similarity(quantized[real], expected[real], dim=-1).min() > 0.99
    with pytest.raises(ValueError, match="unknown runtime"):
        inference_encoder(model, "tensorrt")


def test_onnx_int8_export_has_integer_matrix_products(tokenizer, tmp_path):
    import onnx

    from re_pipeline.onnx_encoder import export_onnx

    model = tiny_encoder(tokenizer)
    ops = {n.op_type for n in onnx.load(str(export_onnx(model, tmp_path / "q.onnx", int8=True))).graph.node}
    fp32_ops = {n.op_type for n in onnx.load(str(export_onnx(model, tmp_path / "f.onnx"))).graph.node}
    assert "MatMulInteger" in ops and "MatMulInteger" not in fp32_ops and "MatMul" in fp32_ops
