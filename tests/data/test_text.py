"""genzoo.text: the caption tokenizer (built offline with `tokenizers`) and the small CLIP text encoder."""

import logging
import warnings

import pytest
import torch
import transformers

from genzoo.data import digit_captions
from genzoo.text import (
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    UNK_TOKEN,
    build_caption_tokenizer,
    build_text_encoder,
    caption_length,
    caption_words,
    encode_prompts,
    tokenize_prompts,
)

CAPTIONS = [caption for label in range(10) for caption in digit_captions(label)]
PAD, UNK, BOS, EOS = 0, 1, 2, 3


@pytest.fixture(scope="module")
def tokenizer():
    return build_caption_tokenizer(CAPTIONS)


@pytest.fixture(scope="module")
def text_encoder(tokenizer):
    torch.manual_seed(0)
    return build_text_encoder(tokenizer).eval()


def word_id(tokenizer, word):
    return tokenizer.convert_tokens_to_ids(word)


# ------------------------------------------------------------------------------------------------------ tokenizer
def test_special_tokens_and_vocabulary(tokenizer):
    assert isinstance(tokenizer, transformers.PreTrainedTokenizerFast)
    assert (tokenizer.pad_token, tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token) == (
        PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN,
    )
    ids = (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    assert ids == (PAD, UNK, BOS, EOS) and tokenizer.eos_token_id != 2  # not CLIP's legacy argmax pooling
    assert tokenizer.model_max_length == 16
    words = caption_words(CAPTIONS)
    assert words == sorted(set(words)) and {"seven", "7", "handwritten", "an", "eight"} <= set(words)
    assert len(tokenizer) == 4 + len(words)
    vocab = tokenizer.get_vocab()
    assert [vocab[w] for w in words] == list(range(4, 4 + len(words)))  # specials first, then the sorted words


def test_caption_length_is_the_longest_caption_in_tokens_with_bos_and_eos():
    """The trainer's default --max_prompt_length: a tokenizer of this length cuts none of the captions."""
    captions = ["a seven", "One small red circle, at the TOP left", "x"]
    assert caption_length(captions) == 2 + 9  # one small red circle , at the top left
    tokenizer = build_caption_tokenizer(captions, model_max_length=caption_length(captions))
    ids = tokenize_prompts(tokenizer, captions)
    assert (ids[:, -1] == EOS).tolist() == [False, True, False]  # the longest fills every position, EOS last
    with pytest.raises(ValueError, match="empty list"):
        caption_length([])


def test_vocabulary_is_deterministic():
    """The same captions in any order, repeated or re-cased, give the same ids."""
    a = build_caption_tokenizer(CAPTIONS)
    b = build_caption_tokenizer([c.upper() for c in reversed(CAPTIONS)] + CAPTIONS[:5])
    assert a.get_vocab() == b.get_vocab()
    assert build_caption_tokenizer(["b a", "c"]).get_vocab() == {
        PAD_TOKEN: 0, UNK_TOKEN: 1, BOS_TOKEN: 2, EOS_TOKEN: 3, "a": 4, "b": 5, "c": 6,
    }


def test_bos_eos_padding_case_and_unknown_words(tokenizer):
    ids = tokenize_prompts(tokenizer, ["a handwritten seven", "", "A HandWritten SEVEN", "a purple seven!"])
    assert ids.dtype == torch.long and ids.shape == (4, 16)
    a, handwritten, seven = (word_id(tokenizer, w) for w in ("a", "handwritten", "seven"))
    assert ids[0].tolist() == [BOS, a, handwritten, seven, EOS] + [PAD] * 11
    assert ids[1].tolist() == [BOS, EOS] + [PAD] * 14  # the empty prompt (classifier-free guidance's null prompt)
    assert torch.equal(ids[2], ids[0])  # case-insensitive
    assert ids[3].tolist()[:6] == [BOS, a, UNK, seven, UNK, EOS]  # "purple" and "!" are not in the captions
    assert torch.equal(tokenize_prompts(tokenizer, "a handwritten seven"), ids[:1])  # one string is one prompt
    # punctuation splits from words, and NFKC folds compatibility characters (full-width digits)
    assert tokenize_prompts(tokenizer, "the digit ７.")[0, :4].tolist() == [BOS] + [
        word_id(tokenizer, w) for w in ("the", "digit", "7")
    ]
    assert tokenizer.decode(ids[0], skip_special_tokens=True) == "a handwritten seven"


def test_truncation_keeps_eos_and_warns(tokenizer, caplog):
    caplog.set_level(logging.WARNING)
    short = "the digit seven"
    long = "seven " * 14 + "eight, the digit 8"  # 14 words fit between BOS and EOS
    ids = tokenize_prompts(tokenizer, [short, long])
    assert ids.shape == (2, 16)
    assert ids[1].tolist() == [BOS] + [word_id(tokenizer, "seven")] * 14 + [EOS]
    records = [r for r in caplog.records if r.name == "genzoo.text"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING  # only the long prompt, no transformers noise
    message = records[0].getMessage()
    assert (
        "The following part of your input was truncated because the text encoder can only handle sequences up to 16 "
        "tokens: 'eight, the digit 8'" in message
    )
    assert repr(long) in message and not [r for r in caplog.records if r.name.startswith("transformers")]
    caplog.clear()
    exactly = "seven " * 14  # BOS + 14 + EOS = 16: fits, no warning
    assert tokenize_prompts(tokenizer, exactly)[0, -1] == EOS and not caplog.records


def test_tokenizer_round_trip_through_save_pretrained(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    prompts = ["a handwritten seven", "An image of the digit EIGHT.", "zebra 7", "", "seven " * 20]
    expected = tokenize_prompts(tokenizer, prompts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for loaded in (
            transformers.AutoTokenizer.from_pretrained(tmp_path),
            transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path),
        ):
            assert isinstance(loaded, transformers.PreTrainedTokenizerFast)
            assert loaded.model_max_length == 16 and loaded.get_vocab() == tokenizer.get_vocab()
            assert (loaded.pad_token_id, loaded.unk_token_id, loaded.bos_token_id, loaded.eos_token_id) == (
                PAD, UNK, BOS, EOS,
            )
            assert torch.equal(tokenize_prompts(loaded, prompts), expected)


def test_bad_captions_and_prompts(tokenizer):
    with pytest.raises(ValueError, match="captions is an empty list"):
        build_caption_tokenizer([])
    with pytest.raises(TypeError, match=r"captions must all be strings; item 1 is None \(NoneType\)"):
        build_caption_tokenizer(["a seven", None])
    with pytest.raises(TypeError, match="got the single string 'a seven'"):
        build_caption_tokenizer("a seven")
    with pytest.raises(ValueError, match="hold no words"):
        build_caption_tokenizer(["", "  "])
    with pytest.raises(ValueError, match="model_max_length must be an int from 3 .* got 2"):
        build_caption_tokenizer(["a"], model_max_length=2)
    with pytest.raises(TypeError, match=r"prompts must all be strings; item 0 is 7 \(int\)"):
        tokenize_prompts(tokenizer, [7, "seven"])
    with pytest.raises(ValueError, match="prompts is an empty list"):
        tokenize_prompts(tokenizer, [])


# --------------------------------------------------------------------------------------------------- text encoder
def test_text_encoder_config_matches_the_tokenizer(tokenizer, caplog):
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder = build_text_encoder(tokenizer, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=48)
    assert isinstance(encoder, transformers.CLIPTextModel) and not caplog.records
    config = encoder.config
    assert config.vocab_size == len(tokenizer) and config.max_position_embeddings == 16
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (PAD, BOS, EOS)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (
        32, 1, 2, 48,
    )
    assert encoder.get_input_embeddings().num_embeddings == len(tokenizer)
    with pytest.raises(ValueError, match=r"hidden_size \(30\) must be a multiple of num_attention_heads \(4\)"):
        build_text_encoder(tokenizer, hidden_size=30)
    with pytest.raises(ValueError, match="num_hidden_layers must be a positive integer, got 0"):
        build_text_encoder(tokenizer, num_hidden_layers=0)


def test_encode_prompts_and_pooling_at_eos(tokenizer, text_encoder):
    prompts = ["a handwritten seven", "", "the number eight", "seven " * 20]
    states = encode_prompts(tokenizer, text_encoder, prompts)
    assert states.shape == (4, 16, 64) and states.dtype == torch.float32
    ids = tokenize_prompts(tokenizer, prompts)
    with torch.no_grad():
        out = text_encoder(input_ids=ids)
    assert torch.allclose(states, out.last_hidden_state)
    eos_position = torch.tensor([4, 1, 4, 15])
    assert torch.equal((ids == EOS).int().argmax(-1), eos_position)
    assert torch.equal(out.pooler_output, out.last_hidden_state[torch.arange(4), eos_position])
    # the highest id is not EOS, so the legacy argmax pooling would have picked another position
    assert not torch.equal(ids.argmax(-1), eos_position)
    # different prompts give different states; causal attention: the padding does not change the states before it
    assert not torch.allclose(states[0], states[2])
    alone = encode_prompts(tokenizer, text_encoder, "a handwritten seven")
    assert torch.allclose(alone, states[:1], atol=1e-6)
    assert states.requires_grad  # the encoder can train with the denoiser
    assert encode_prompts(tokenizer, text_encoder, ["a seven"], device="meta").device.type == "meta"


def test_encode_prompts_in_the_encoders_dtype(tokenizer):
    encoder = build_text_encoder(tokenizer, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16).to(torch.float64)
    assert encode_prompts(tokenizer, encoder, ["a seven"]).dtype == torch.float64


def test_text_encoder_save_load_identical(tokenizer, text_encoder, tmp_path):
    text_encoder.save_pretrained(tmp_path)
    loaded = transformers.CLIPTextModel.from_pretrained(tmp_path).eval()
    assert loaded.config.eos_token_id == EOS and loaded.config.vocab_size == len(tokenizer)
    prompts = ["a handwritten seven", "the digit 3", ""]
    with torch.no_grad():
        assert torch.equal(
            encode_prompts(tokenizer, loaded, prompts), encode_prompts(tokenizer, text_encoder, prompts)
        )
