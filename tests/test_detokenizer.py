"""Streaming detokenisation never splits a UTF-8 character and joins to the full text."""

from __future__ import annotations

from hypothesis import assume, given, settings, strategies as st

from gpt2onnx.export.random_model import gpt2_tokenizer
from gpt2onnx.runtime.detokenizer import REPLACEMENT, StreamDecoder
from gpt2onnx.runtime.tokenizer import Tokenizer

import pytest


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    folder = tmp_path_factory.mktemp("tok")
    gpt2_tokenizer().save_pretrained(folder)
    return Tokenizer(folder / "tokenizer.json")


def stream(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    decoder = StreamDecoder(tokenizer)
    deltas = [decoder.push(i) for i in ids]
    return [d for d in deltas + [decoder.flush()] if d]


def test_gpt2_tokenizer_is_the_real_one(tokenizer):
    assert tokenizer.vocab_size == 50257
    assert tokenizer.encode("Hello") == [15496]
    assert tokenizer.encode(" hello") == [23748]
    assert tokenizer.encode("long long ago, I was a boy, I love") == [6511, 890, 2084, 11, 314, 373, 257, 2933, 11, 314, 1842]


@pytest.mark.parametrize("text", ["naïve café", "日本語のテキスト", "emoji 🙂👍🏽 and 👨‍👩‍👧", "Ελληνικά и русский", "שלום عربى"])
def test_multibyte_text_streams_without_broken_characters(tokenizer, text):
    ids = tokenizer.encode(text)
    deltas = stream(tokenizer, ids)
    assert not any(REPLACEMENT in d for d in deltas)
    assert "".join(deltas) == text


def test_byte_level_tokens_do_split_characters(tokenizer):
    # The case the stream decoder exists for: a token alone decodes to U+FFFD.
    assert any(REPLACEMENT in tokenizer.decode([i]) for i in tokenizer.encode("emoji 🙂 日本語"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50256), max_size=40))
def test_any_token_sequence_streams_to_exactly_its_decoded_text(tokenizer, ids):
    assert "".join(stream(tokenizer, ids)) == tokenizer.decode(ids)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_round_trips_and_streams_clean(tokenizer, text):
    assume(EOS_TEXT not in text)  # that text is the special token (below), which decoding leaves out
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    deltas = stream(tokenizer, ids)
    assert "".join(deltas) == text
    assert not any(REPLACEMENT in d for d in deltas) or REPLACEMENT in text


EOS_TEXT = "<|endoftext|>"


def test_the_special_token_text_is_the_special_token_as_in_transformers(tokenizer):
    """A prompt that spells <|endoftext|> gets the eos token, as GPT2TokenizerFast gives; its text is
    left out when decoding (skip_special_tokens), kept by token_text. (Hypothesis tries literals
    from the code, so it finds this text.)"""
    ids = tokenizer.encode(f"a{EOS_TEXT}b")
    assert 50256 in ids and tokenizer.decode(ids) == "ab"
    assert tokenizer.token_text(50256) == EOS_TEXT
