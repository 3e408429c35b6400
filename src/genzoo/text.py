"""The text side of prompt-conditioned models: a small word-level tokenizer and a small CLIP text encoder.

A text-conditional denoiser (a Diffusers ``UNet2DConditionModel``) cross-attends to the last hidden states of a
``transformers.CLIPTextModel``, as Stable Diffusion does. Pretrained CLIP models are far too big for genzoo's data (and
need the network), so both pieces are built from the training captions, offline:

    tokenizer = build_caption_tokenizer(data.captions)          # transformers.PreTrainedTokenizerFast
    text_encoder = build_text_encoder(tokenizer)                 # transformers.CLIPTextModel, random weights
    states = encode_prompts(tokenizer, text_encoder, ["a handwritten seven", ""])   # (2, 16, 64)

The tokenizer is a ``tokenizers`` WordLevel model over the lower-cased words of the captions (NFKC, lower case, split
on whitespace and punctuation); its ids are

    0 ``<pad>``, 1 ``<unk>``, 2 ``<|startoftext|>`` (BOS), 3 ``<|endoftext|>`` (EOS), 4.. the sorted unique words,

and every prompt becomes ``BOS words EOS pad ... pad``, ``model_max_length`` ids long. EOS is not id 2 on purpose:
``CLIPTextModel`` pools the hidden state at the first EOS, except that a config with ``eos_token_id == 2`` (CLIP's
legacy value) makes it pool at the highest id instead, which here would be a word. Both pieces save and load with
``save_pretrained`` / ``from_pretrained`` (``transformers.AutoTokenizer`` reads the tokenizer back), so they are
ordinary components of a Diffusers pipeline.
"""

from __future__ import annotations

import logging

import torch

from .checks import check_positive_int

logger = logging.getLogger("genzoo.text")

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)  # ids 0, 1, 2, 3, in this order
DEFAULT_MAX_LENGTH = 16
MAX_MODEL_LENGTH = 1024  # a tokenizer claiming more has no real limit set (transformers' default is 1e30)


def _normalizer_and_pre_tokenizer():
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    return normalizer, pre_tokenizers.Whitespace()  # Whitespace splits on \w+|[^\w\s]+: words and punctuation


def _check_strings(values, what: str) -> list[str]:
    """``values`` as a list of strings; a bare string, a non-string item or an empty list is a clear error."""
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of strings, got the single string {values!r}; wrap it in a list.")
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"{what} must be a list of strings, got {values!r} ({type(values).__name__}).") from None
    if not values:
        raise ValueError(f"{what} is an empty list; give at least one string.")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{what} must all be strings; item {i} is {value!r} ({type(value).__name__}).")
    return values


def _split_captions(captions) -> list[list[str]]:
    """Each caption as the tokenizer's words: NFKC-normalised, lower-cased, split on whitespace and punctuation (each
    run of punctuation is a word of its own)."""
    normalizer, pre_tokenizer = _normalizer_and_pre_tokenizer()
    return [[word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(caption))]
            for caption in _check_strings(captions, "captions")]


def caption_words(captions) -> list[str]:
    """The sorted unique words of ``captions`` as the tokenizer sees them: NFKC-normalised, lower-cased, split on
    whitespace and punctuation (each run of punctuation is a word of its own)."""
    return sorted({word for words in _split_captions(captions) for word in words})


def caption_length(captions) -> int:
    """The tokens of the longest of ``captions``, BOS and EOS included: the ``model_max_length`` that cuts none of
    them (at most :data:`MAX_MODEL_LENGTH`)."""
    return min(MAX_MODEL_LENGTH, 2 + max(len(words) for words in _split_captions(captions)))


def build_caption_tokenizer(captions, model_max_length: int = DEFAULT_MAX_LENGTH):
    """A ``transformers.PreTrainedTokenizerFast`` whose vocabulary is the words of ``captions``, built offline.

    Ids: the special tokens ``<pad>`` 0, ``<unk>`` 1, ``<|startoftext|>`` 2 (BOS), ``<|endoftext|>`` 3 (EOS), then
    the sorted unique lower-cased words (so the same captions always give the same ids, in any order). Words not in
    the captions become ``<unk>``. Every encoded prompt is ``BOS words EOS``; ``model_max_length`` (BOS and EOS
    included) is what :func:`tokenize_prompts` pads and truncates to, and the text encoder's number of positions.
    """
    import transformers
    from tokenizers import Tokenizer, models, processors

    if isinstance(model_max_length, bool) or not isinstance(model_max_length, int) or not (
        3 <= model_max_length <= MAX_MODEL_LENGTH
    ):
        raise ValueError(
            f"model_max_length must be an int from 3 (BOS, one word, EOS) to {MAX_MODEL_LENGTH}, "
            f"got {model_max_length!r}."
        )
    captions = _check_strings(captions, "captions")
    words = caption_words(captions)
    if not words:
        raise ValueError(
            f"the {len(captions)} captions hold no words (only whitespace), e.g. {captions[0]!r}; a vocabulary needs "
            "at least one word."
        )
    vocab = {token: i for i, token in enumerate(list(SPECIAL_TOKENS) + words)}
    normalizer, pre_tokenizer = _normalizer_and_pre_tokenizer()
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        pair=f"{BOS_TOKEN} $A {EOS_TOKEN} $B {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN]), (EOS_TOKEN, vocab[EOS_TOKEN])],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        model_max_length=model_max_length,
    )


def _max_length(tokenizer) -> int:
    length = getattr(tokenizer, "model_max_length", None)
    if not isinstance(length, int) or not 3 <= length <= MAX_MODEL_LENGTH:
        raise ValueError(
            f"the tokenizer's model_max_length is {length!r}; it must be the text encoder's number of positions, "
            f"an int from 3 to {MAX_MODEL_LENGTH} (build_caption_tokenizer sets it)."
        )
    return length


def build_text_encoder(
    tokenizer,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 128,
):
    """A small ``transformers.CLIPTextModel`` (random weights, from ``torch``'s global generator) for ``tokenizer``:
    one embedding per token id (``vocab_size = len(tokenizer)``), ``tokenizer.model_max_length`` positions, and the
    tokenizer's pad / BOS / EOS ids in its config. ``last_hidden_state`` is (B, model_max_length, hidden_size)."""
    import transformers

    ids = {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("pad", "bos", "eos")}
    missing = [name for name, value in ids.items() if value is None]
    if missing:
        raise ValueError(
            f"the tokenizer has no {', '.join(missing)} token; a CLIP text encoder needs pad, bos and eos tokens "
            "(build_caption_tokenizer sets them)."
        )
    if ids["eos"] == 2:
        logger.warning(
            "the tokenizer's eos_token_id is 2, which CLIPTextModel treats as CLIP's legacy value: its pooler_output "
            "will be taken at the highest token id, not at the EOS token (last_hidden_state is unaffected)."
        )
    for name, value in (
        ("hidden_size", hidden_size), ("num_hidden_layers", num_hidden_layers),
        ("num_attention_heads", num_attention_heads), ("intermediate_size", intermediate_size),
    ):
        check_positive_int(name, value)
    if hidden_size % num_attention_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be a multiple of num_attention_heads ({num_attention_heads})."
        )
    config = transformers.CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=_max_length(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        projection_dim=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        pad_token_id=ids["pad"],
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
    )
    return transformers.CLIPTextModel(config)


def tokenize_prompts(tokenizer, prompts) -> torch.LongTensor:
    """``prompts`` (a list of strings, or one string) as token ids, a ``(B, model_max_length)`` int64 tensor: each
    ``BOS words EOS`` then padding. A prompt longer than that keeps its first ``model_max_length - 2`` tokens (words
    and punctuation) and its EOS, and a warning on the ``genzoo.text`` logger names the prompt and the part that was
    dropped."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = _check_strings(prompts, "prompts")
    max_length = _max_length(tokenizer)
    # untruncated first, to say what truncation drops (verbose=False: no transformers warning about the length)
    full = tokenizer(prompts, add_special_tokens=True, return_offsets_mapping=True, verbose=False)
    for prompt, ids, offsets in zip(prompts, full["input_ids"], full["offset_mapping"]):
        if len(ids) > max_length:
            dropped = prompt[offsets[max_length - 1][0] :]  # from the first word that does not fit
            logger.warning(
                "The following part of your input was truncated because the text encoder can only handle sequences "
                "up to %d tokens: %r (prompt %r)",
                max_length, dropped, prompt,
            )
    encoded = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    return encoded["input_ids"].long()


def _device(module) -> torch.device:
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def encode_prompts(tokenizer, text_encoder, prompts, device=None) -> torch.Tensor:
    """The text encoder's ``last_hidden_state`` for ``prompts`` (a list of strings, or one string): a
    ``(B, model_max_length, hidden_size)`` tensor in the encoder's dtype, what a ``UNet2DConditionModel`` takes as
    ``encoder_hidden_states``. The ids run on the encoder's device; the result is moved to ``device`` when given.

    Gradients flow when the encoder trains (wrap the call in ``torch.no_grad()`` for a frozen one). Padding is not
    masked, as in Stable Diffusion: CLIP's causal attention already keeps it from changing the states before it.
    """
    input_ids = tokenize_prompts(tokenizer, prompts)
    states = text_encoder(input_ids=input_ids.to(_device(text_encoder)))[0]
    return states if device is None else states.to(device)
