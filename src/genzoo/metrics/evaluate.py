"""Evaluate a pipeline offline: draw seeded samples and compare them with reference data that no model trained on.

- 2-D toy data: exact W2 and RBF-kernel MMD^2 against a fresh draw from the true distribution (a different seed from
  any training draw); for flow matching also the exact log-likelihood of held-out points; for VAEs the
  importance-weighted bound on the negative log-likelihood.
- digits: digits-FD, precision, recall, class coverage and entropy from a small classifier's features, against the
  held-out test split (never used for training the classifier or, through ``--dataset digits``, any model); for VAEs
  also the importance-weighted NLL bound of the held-out digits.
- shapes: shapes-FD, precision, recall and attribute statistics from a small classifier that reads every quadrant,
  against the held-out "test" split rendered at the samples' resolution; for conditional models whether the samples
  hold what was asked (class accuracy; for text, prompt faithfulness on "test" prompts and on "unseen" ones: held-out
  compositions); for VAEs the importance-weighted NLL bound of held-out images.

Everything is seeded and deterministic on CPU. See docs/evaluation.md for each metric's definition and limits.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..data import TOY_DATASETS, toy_points
from ..pipelines import FlowMatchingPipeline, VAEPipeline
from ..pipelines.base import VectorPipelineOutput

#: The reference draw of a toy set uses this seed offset, so it never coincides with a training draw (seed 0, 1, ...).
REFERENCE_SEED_OFFSET = 10_000
DIGITS = "digits"
SHAPES = "shapes"
#: The image data sets with a shipped classifier (the data sets ``evaluate_pipeline`` takes for image pipelines).
IMAGE_DATASETS = (DIGITS, SHAPES)
#: Text-conditional models on shapes are also asked for held-out compositions: this many samples per 4 samples of the
#: main draw (at least 2), from the seed ``seed + UNSEEN_SEED_OFFSET``.
UNSEEN_SHARE = 0.25
UNSEEN_SEED_OFFSET = 10_000


def sampling_steps(pipe, steps: int | None) -> int | None:
    """The ``num_inference_steps`` a sampling run of ``pipe`` uses: ``steps``, else the pipeline's default, for
    pipelines with a scheduler; ``None`` for those that sample in one pass (GAN, VAE), which ignore it."""
    if getattr(pipe, "scheduler", None) is None:
        return None
    return steps if steps is not None else getattr(pipe, "default_num_inference_steps", None)


def model_calls_per_sample(pipe, steps: int | None) -> int:
    """Network evaluations one sample costs: the scheduler's timesteps for diffusion-type pipelines, else 1."""
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is None:
        return 1
    scheduler.set_timesteps(steps if steps is not None else pipe.default_num_inference_steps)
    return len(scheduler.timesteps)


def asked_labels(num_samples: int, num_classes: int) -> np.ndarray:
    """The class asked of sample ``i`` by :func:`draw_samples`: every class in turn, ``i % num_classes``."""
    return np.arange(num_samples) % num_classes


def digit_prompts(labels) -> list[str]:
    """One caption per asked digit, going through each digit's phrasings in turn (``genzoo.data.digit_captions``)."""
    from ..data import digit_captions

    prompts, seen = [], {}
    for label in labels:
        phrasings = digit_captions(int(label))
        prompts.append(phrasings[seen.get(label, 0) % len(phrasings)])
        seen[label] = seen.get(label, 0) + 1
    return prompts


def draw_samples(pipe, num_samples: int, steps: int | None, seed: int, chunk: int = 500,
                 guidance_scale: float | None = None, prompts: list[str] | None = None) -> np.ndarray:
    """``num_samples`` samples as numpy, in chunks with one generator per chunk derived from ``seed``.

    Conditional pipelines are asked for every class in turn (:func:`asked_labels`): class-conditional ones by label,
    text-conditional ones by ``prompts`` (one per sample) or, by default, by a caption of the digit
    (:func:`digit_prompts`), with ``guidance_scale`` (default: the pipeline's).
    """
    if prompts is not None and len(prompts) != num_samples:
        raise ValueError(f"{len(prompts)} prompts for {num_samples} samples")
    pipe.set_progress_bar_config(disable=True)
    conditioning = pipe.conditioning
    parts = []
    for start in range(0, num_samples, chunk):
        n = min(chunk, num_samples - start)
        extra = {}
        if conditioning != "none":
            extra["guidance_scale"] = guidance_scale
        if conditioning == "class":
            extra["class_labels"] = asked_labels(start + n, len(pipe.id2label))[start:].tolist()
        elif conditioning == "text":
            extra["prompt"] = (digit_prompts(asked_labels(start + n, 10))[start:] if prompts is None
                               else list(prompts[start : start + n]))
        out = pipe(batch_size=n, generator=torch.Generator().manual_seed(seed * 1_000_003 + start),
                   num_inference_steps=steps, output_type="np", **extra)
        parts.append(out.samples if isinstance(out, VectorPipelineOutput) else out.images)
    return np.concatenate(parts)


def reference_points(dataset: str, num_samples: int, seed: int) -> np.ndarray:
    if dataset not in TOY_DATASETS:
        raise ValueError(f"No reference distribution for vector data set {dataset!r}; built-in: {', '.join(TOY_DATASETS)}.")
    return toy_points(dataset, num_samples, np.random.default_rng(seed + REFERENCE_SEED_OFFSET)).astype(np.float64)


def evaluate_pipeline(
    pipe,
    dataset: str,
    num_samples: int = 1000,
    steps: int | None = None,
    seed: int = 0,
    likelihood_points: int = 500,
    likelihood_steps: int = 100,
    iwae_k: int = 64,
    recon_loss: str = "mse",
    likelihood: bool = True,
    guidance_scale: float | None = None,
) -> dict:
    """All the metrics that apply to ``pipe`` on ``dataset``; returns a JSON-ready dict. Its ``num_inference_steps``
    is the number of sampling steps used (``steps`` or the pipeline's default), ``None`` for pipelines that sample in
    one pass (GAN, VAE: ``steps`` is ignored for them). ``likelihood=False`` skips
    the (slower) flow log-likelihood and VAE bound, keeping the sample-based metrics. Conditional pipelines sample
    every class in turn with ``guidance_scale`` (default: the pipeline's); on the digits their ``class_accuracy`` is
    the fraction of samples the classifier assigns to the asked-for digit.

    2-D data sets get ``w2`` and ``mmd2_rbf`` against held-out points (and ``nll_nats`` for flow matching, the IWAE
    bound for a VAE); ``digits`` gets digits-FD, precision, recall, class coverage and entropy from the shipped
    digits classifier; ``shapes`` the same from the shapes classifier.

    On the shapes (``.shapes``) class-conditional pipelines are asked for the four shapes in turn and
    ``class_accuracy`` is the fraction of samples in which some detected object has the asked shape; text-conditional
    ones are prompted with captions (every attribute named, ``FULL_TEMPLATE``) of the "test" split's images in
    order, scored by prompt faithfulness (``faithfulness_*``), and, in a second, smaller draw (``UNSEEN_SHARE`` of
    ``num_samples``, seed ``seed + UNSEEN_SEED_OFFSET``), with captions of the "unseen" split's images, which hold
    held-out (shape, colour) pairs: the same faithfulness keys, prefixed ``unseen_``.

    Args:
        pipe (GenzooPipeline): the pipeline to evaluate.
        dataset: the reference data: ``digits``, ``shapes`` or a built-in 2-D set (``moons``, ...).
        num_samples: samples to draw (at least 2).
        steps: sampling steps (default: the pipeline's).
        seed: seeds the samples and the reference draw.
        likelihood_points: held-out points whose flow log-likelihood is computed (2-D data).
        likelihood_steps: RK4 steps of the flow log-likelihood.
        iwae_k: importance samples of the VAE bound.
        recon_loss: the VAE's reconstruction loss (``mse`` or ``bce``), as trained.
        likelihood: compute the flow log-likelihood and the VAE bound (slower).
        guidance_scale: classifier-free guidance of conditional pipelines (default: the pipeline's).

    Returns:
        The metrics and what they were measured with (``pipeline``, ``dataset``, ``num_samples``,
        ``num_inference_steps``, ``model_calls_per_sample``, ``seed``, ``sampling_seconds``, ...), JSON-ready.

    Raises:
        ValueError: fewer than 2 samples, or a data set the pipeline's samples cannot be compared with.
    """
    from .point_clouds import MMD_BANDWIDTHS, mmd_rbf, wasserstein2

    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}.")
    conditioning = pipe.conditioning
    prompts = asked = None
    if dataset == SHAPES and conditioning == "class":
        from ..data.shapes import SHAPES as SHAPE_NAMES

        if [str(name) for name in pipe.id2label.values()] != list(SHAPE_NAMES):
            raise ValueError(f"{type(pipe).__name__} is conditioned on the classes {list(pipe.id2label.values())}, not "
                             f"on the shapes ({', '.join(SHAPE_NAMES)}): was it trained with --dataset shapes?")
    if dataset == SHAPES and conditioning == "text":
        from .shapes import shapes_prompts

        prompts, asked = shapes_prompts(num_samples, "test")
    start = time.perf_counter()
    samples = draw_samples(pipe, num_samples, steps, seed, guidance_scale=guidance_scale, prompts=prompts)
    sampling_seconds = time.perf_counter() - start
    result = {
        "pipeline": type(pipe).__name__,
        "dataset": dataset,
        "num_samples": num_samples,
        "num_inference_steps": sampling_steps(pipe, steps),  # None for GANs and VAEs: they take no steps
        "model_calls_per_sample": model_calls_per_sample(pipe, steps),
        "seed": seed,
        "sampling_seconds": round(sampling_seconds, 3),
    }
    if conditioning != "none":
        result["conditioning"] = conditioning
        if guidance_scale is None:
            guidance_scale = getattr(pipe, "default_guidance_scale", None)  # GANs and VAEs have no guidance
        result["guidance_scale"] = guidance_scale
    if samples.ndim == 2:  # vectors
        reference = reference_points(dataset, num_samples, seed)
        result["w2"] = wasserstein2(samples.astype(np.float64), reference)
        result["mmd2_rbf"] = mmd_rbf(samples, reference)
        result["mmd_bandwidths"] = list(MMD_BANDWIDTHS)
        held_out = torch.from_numpy(reference[:likelihood_points]).float()
        if likelihood and isinstance(pipe, FlowMatchingPipeline):
            from .likelihood import flow_log_likelihood

            log_p = flow_log_likelihood(pipe.unet, pipe.scheduler, held_out.to(pipe.device, pipe.dtype),
                                        num_steps=likelihood_steps)
            result["nll_nats"] = float(-log_p.double().mean())
            result["nll_method"] = f"exact divergence, RK4 with {likelihood_steps} steps, {len(held_out)} points"
        if likelihood and isinstance(pipe, VAEPipeline) and conditioning == "none":  # toys have no labels
            result.update(_iwae(pipe, held_out, iwae_k, seed, recon_loss))
        return result

    if dataset not in IMAGE_DATASETS or (dataset == SHAPES and samples.shape[-1] != 3):
        grey = samples.shape[-1] != 3
        allowed = "'digits'" if grey else " or ".join(repr(d) for d in IMAGE_DATASETS)
        raise ValueError(
            f"Image metrics need a classifier of the data set, so --dataset must be {allowed} for image pipelines; "
            f"got {dataset!r}" + (f" ({type(pipe).__name__} makes grayscale images, and the shapes classifier reads "
                                  "colour: 'shapes' needs RGB samples)." if grey else ".")
        )
    if dataset == SHAPES:
        result.update(_evaluate_shapes(pipe, samples, asked, num_samples, steps, seed, guidance_scale, likelihood,
                                       likelihood_points, iwae_k, recon_loss))
        return result
    from .digits import digits_reference_images, evaluate_digits

    asked = None
    if conditioning != "none":
        asked = asked_labels(num_samples, len(pipe.id2label) if conditioning == "class" else 10)
    result.update(evaluate_digits(samples, reference="test", seed=seed, asked_labels=asked))
    if likelihood and isinstance(pipe, VAEPipeline):
        held_out = digits_reference_images(resolution=pipe.vae.config.get("sample_size", 8))
        labels = None
        if conditioning == "class":  # a conditional VAE bounds -log p(x | y) with the held-out digits' own labels
            from ..data.builtin import digits_arrays

            labels = torch.from_numpy(digits_arrays("test")[1])
        result.update(_iwae(pipe, held_out, iwae_k, seed, recon_loss, labels))
    return result


def _evaluate_shapes(pipe, samples, asked, num_samples, steps, seed, guidance_scale, likelihood, likelihood_points,
                     iwae_k, recon_loss) -> dict:
    from .shapes import evaluate_shapes, predict_slots, prompt_faithfulness, shapes_prompts

    conditioning = pipe.conditioning
    labels = asked_labels(num_samples, len(pipe.id2label)) if conditioning == "class" else None
    result = evaluate_shapes(samples, reference="test", seed=seed, asked_labels=labels, asked_objects=asked)
    if conditioning == "text":  # held-out compositions: prompts of the "unseen" split
        n = max(2, int(round(num_samples * UNSEEN_SHARE)))
        prompts, unseen_asked = shapes_prompts(n, "unseen")
        unseen = draw_samples(pipe, n, steps, seed + UNSEEN_SEED_OFFSET, guidance_scale=guidance_scale,
                              prompts=prompts)
        faithfulness = prompt_faithfulness(predict_slots(unseen), unseen_asked)
        result.update({f"unseen_{key}": value for key, value in faithfulness.items()})
    if likelihood and isinstance(pipe, VAEPipeline):
        from ..data.shapes import shapes_split

        data = shapes_split("test", samples.shape[1], likelihood_points)  # at the samples' resolution
        held_out = torch.from_numpy(data.pixels.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2).contiguous()
        labels = torch.from_numpy(data.labels.copy()) if conditioning == "class" else None
        result.update(_iwae(pipe, held_out, iwae_k, seed, recon_loss, labels))
    return result


def _iwae(pipe, x, k, seed, recon_loss, labels=None) -> dict:
    from .vae_nll import iwae_nll

    nll = iwae_nll(pipe.vae, x.to(pipe.device, pipe.dtype), k=k, generator=torch.Generator().manual_seed(seed),
                   recon_loss=recon_loss, class_labels=None if labels is None else labels.to(pipe.device))
    return {"iwae_nll_nats": float(nll.double().mean()), "iwae_k": k, "iwae_points": int(x.shape[0]),
            "iwae_decoder": "gaussian, variance 1/2" if recon_loss == "mse" else "bernoulli",
            **({"iwae_conditional_on_label": True} if labels is not None else {})}
