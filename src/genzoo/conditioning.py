"""Class labels and prompts: the conventions every conditional genzoo model, method and pipeline shares.

* A class-conditional model stores its label names in its config under ``_id2label`` (``{"0": "0", ..., "9": "9"}``
  for the digits; JSON keys are strings). Label ids are ``0 .. K - 1`` with ``K = len(id2label)``. The leading
  underscore is what lets Diffusers' own classes (``UNet2DModel``, ``AutoencoderKL``) keep the entry through
  ``save_pretrained`` / ``from_pretrained`` silently: Diffusers warns about, but still keeps, unknown public config
  keys, and keeps private ones without a word. A plain ``id2label`` entry (as transformers configs have) is read too.
* Models trained for classifier-free guidance (the DDPM and flow-matching denoisers) have ``K + 1`` class
  embeddings: id ``K`` is the learned *null* label that stands for "no label" (:func:`null_label_id`).
* Pipelines take ``class_labels`` as ints, names from ``id2label``, or a mix, one per sample or one for all
  (:func:`class_label_ids`); ``None`` asks for every class in turn (0, 1, ..., K - 1, 0, 1, ...).
"""

from __future__ import annotations

import torch

CONDITIONINGS = ("none", "class", "text")
ID2LABEL_KEY = "_id2label"  # the config entry of a class-conditional model
TEXT_COMPONENT = "text_encoder"  # the pipeline component whose presence makes a model text-conditional


def config_id2label(config) -> dict[int, str] | None:
    """The ``id2label`` in a model config (a mapping, or an object with attributes), with int keys in order;
    ``None`` if it has none."""
    id2label = None
    if config is not None:
        for key in (ID2LABEL_KEY, "id2label"):
            id2label = config.get(key) if hasattr(config, "get") else getattr(config, key, None)
            if id2label:
                break
    if not id2label:
        return None
    return {int(key): str(value) for key, value in sorted(id2label.items(), key=lambda kv: int(kv[0]))}


def model_id2label(model) -> dict[int, str] | None:
    """The ``id2label`` a conditional model stores in its config, with int keys in order; ``None`` if it has none."""
    return config_id2label(getattr(model, "config", None))


def conditioning_of(configs, labelled_component: str | None) -> tuple[str, dict[int, str] | None]:
    """What a pipeline's model is conditioned on, from its components' configs: ``("text", None)``, ``("class",
    id2label)`` or ``("none", None)``.

    ``configs`` maps component names to their configs (``None``, or no entry, for an absent component); the same
    answer comes from a saved folder (:func:`genzoo.model_index.component_configs`) and from a loaded pipeline
    (``GenzooPipeline.conditioning``). A pipeline with a ``text_encoder`` is text-conditional; otherwise it is
    class-conditional when the config of its ``labelled_component`` (the pipeline class's attribute of that name;
    ``None`` for pipelines that take no labels) has an ``id2label``.
    """
    if configs.get(TEXT_COMPONENT) is not None:
        return "text", None
    id2label = config_id2label(configs.get(labelled_component)) if labelled_component else None
    return ("class", id2label) if id2label else ("none", None)


def set_id2label(model, id2label: dict[int, str]) -> None:
    """Record ``id2label`` in ``model.config`` as ``_id2label`` (saved to its ``config.json``), keys as strings like JSON's."""
    model.register_to_config(**{ID2LABEL_KEY: {str(int(key)): str(value) for key, value in id2label.items()}})


def null_label_id(id2label: dict[int, str]) -> int:
    """The id of the learned "no label" embedding of a guidance-trained denoiser: one past the last class."""
    return len(id2label)


def expand_to_batch(values, batch_size: int, what: str) -> tuple[list, int]:
    """One value, or a list of them, matched to the batch: ``(list of batch_size values, batch_size)``.

    A single value is repeated. A list of ``n`` values gives ``n`` samples when ``batch_size`` is 1 (the default),
    or ``batch_size / n`` samples each (in order) when ``batch_size`` is a multiple of ``n``.
    """
    if not isinstance(values, (list, tuple)):
        return [values] * batch_size, batch_size
    values = list(values)
    if not values:
        raise ValueError(f"{what} is an empty list; give one value, or one per sample.")
    if batch_size == 1:
        return values, len(values)
    if batch_size % len(values):
        raise ValueError(
            f"Got {len(values)} {what} for batch_size={batch_size}; batch_size must be 1 (one sample per entry) "
            f"or a multiple of {len(values)}."
        )
    repeat = batch_size // len(values)
    return [value for value in values for _ in range(repeat)], batch_size


def label_from_text(text: str, id2label: dict[int, str] | None):
    """A class label typed as text (on the command line, in the demo): the label name when the model has one by that
    name, else an integer id when it reads as one (``"7"`` is digits' name ``"7"``; ``"0"`` is shapes' id 0), else
    the text, which :func:`class_label_ids` then refuses naming the model's labels."""
    text = text.strip()
    if text in set((id2label or {}).values()):
        return text
    return int(text) if text.lstrip("-").isdigit() else text


def class_label_ids(class_labels, batch_size: int, id2label: dict[int, str] | None, owner: str) -> tuple[torch.Tensor | None, int]:
    """``class_labels`` (ints, names, a tensor, or ``None``) as a ``(B,)`` int64 tensor, and the batch size.

    ``id2label`` is the model's (``None`` for an unconditional model, which then refuses labels); ``owner`` names the
    model in error messages. ``None`` gives every class in turn.
    """
    if id2label is None:
        if class_labels is not None:
            raise ValueError(f"{owner} is unconditional (its config has no id2label), so it takes no class_labels.")
        return None, batch_size
    num_classes = len(id2label)
    if class_labels is None:
        return torch.arange(batch_size) % num_classes, batch_size
    if isinstance(class_labels, torch.Tensor):
        class_labels = class_labels.reshape(-1).tolist() if class_labels.ndim else class_labels.item()
    values, batch_size = expand_to_batch(class_labels, batch_size, "class_labels")
    label2id = {name: key for key, name in id2label.items()}
    ids = []
    for value in values:
        if isinstance(value, str):
            if value not in label2id:
                names = list(label2id)
                shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
                raise ValueError(f"Unknown class label {value!r} for {owner}; its labels are {shown}.")
            ids.append(label2id[value])
        elif isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < num_classes:
                raise ValueError(
                    f"Class label {value} is out of range for {owner}: ids are 0 .. {num_classes - 1} "
                    f"(or the names {list(label2id)[:10]}{' ...' if num_classes > 10 else ''})."
                )
            ids.append(value)
        else:
            raise TypeError(f"class_labels must be ints or label names (str), got {value!r} ({type(value).__name__}).")
    return torch.tensor(ids, dtype=torch.long), batch_size


def drop_labels(labels: torch.Tensor, probability: float, null_id: int, generator: torch.Generator) -> torch.Tensor:
    """Replace each label by ``null_id`` with ``probability`` (classifier-free guidance training), drawing from
    ``generator`` so resuming is exact."""
    if probability <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=generator.device) < probability
    return torch.where(drop.to(labels.device), torch.full_like(labels, null_id), labels)
