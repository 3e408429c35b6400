"""Evaluate a pipeline offline: draw seeded samples and compare them with reference data that no model trained on.

The data set decides what is measured: ``evaluate_pipeline(pipe, name)`` draws the samples and hands them to the
registered data set ``name`` (:class:`genzoo.data.DataSet`, ``genzoo.datasets`` entry points), whose ``evaluate``
scores them. The built-ins:

- 2-D toy data: exact W2 and RBF-kernel MMD^2 against a fresh draw from the true distribution (a different seed from
  any training draw); for pipelines with an exact likelihood (flow matching) also the log-likelihood of held-out
  points; for those with a likelihood bound (VAEs) the importance-weighted bound on the negative log-likelihood.
- digits: digits-FD, precision, recall, class coverage and entropy from a small classifier's features, against the
  held-out test split (never used for training the classifier or, through ``--dataset digits``, any model); for VAEs
  also the importance-weighted NLL bound of the held-out digits.
- shapes: shapes-FD, precision, recall and attribute statistics from a small classifier that reads every quadrant,
  against the held-out "test" split rendered at the samples' resolution; for conditional models whether the samples
  hold what was asked (class accuracy; for text, prompt faithfulness on "test" prompts and on "unseen" ones: held-out
  compositions); for VAEs the importance-weighted NLL bound of held-out images.

What a pipeline can be scored on beyond its samples, it declares (a plugin pipeline family gets the same metrics by
declaring the same): ``exact_log_likelihood(x, num_steps)`` (:func:`flow_nll`, ``nll_nats``) and
``nll_bound(x, k, generator, recon_loss, class_labels)`` (:func:`iwae_bound`, ``iwae_nll_nats``).

Everything is seeded and deterministic on CPU. See docs/evaluation.md for each metric's definition and limits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_positive_int
from ..pipelines.base import VectorPipelineOutput


@dataclass(frozen=True)
class EvalOptions:
    """The settings of one evaluation, as a data set's ``evaluate`` receives them (see :func:`evaluate_pipeline`;
    ``guidance_scale`` is the one sampled with: the pipeline's default when none was given)."""

    num_samples: int
    steps: int | None
    seed: int
    guidance_scale: float | None
    likelihood: bool
    likelihood_points: int
    likelihood_steps: int
    iwae_k: int
    recon_loss: str


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

    The registered data set ``dataset`` scores the samples (its ``evaluate``): 2-D data sets give ``w2`` and
    ``mmd2_rbf`` against held-out points (and ``nll_nats`` for pipelines with an exact likelihood, the IWAE bound for
    those with a bound); ``digits`` gives digits-FD, precision, recall, class coverage and entropy from the shipped
    digits classifier; ``shapes`` the same from the shapes classifier.

    On the shapes (``.shapes``) class-conditional pipelines are asked for the four shapes in turn and
    ``class_accuracy`` is the fraction of samples in which some detected object has the asked shape; text-conditional
    ones are prompted with captions (every attribute named, ``FULL_TEMPLATE``) of the "test" split's images in
    order, scored by prompt faithfulness (``faithfulness_*``), and, in a second, smaller draw (``unseen_share`` of
    ``num_samples``, seed ``seed + unseen_seed_offset``), with captions of the "unseen" split's images, which hold
    held-out (shape, colour) pairs: the same faithfulness keys, prefixed ``unseen_``.

    Args:
        pipe (GenzooPipeline): the pipeline to evaluate.
        dataset: the reference data: a registered data set (``genzoo.data.dataset_names()``: ``digits``, ``shapes``,
            a 2-D set such as ``moons``, or a plugin's).
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
        ValueError: fewer than 2 samples, a count that is not a positive integer (``likelihood_points``,
            ``likelihood_steps``, ``iwae_k``), or a data set the pipeline's samples cannot be compared with.
    """
    from ..data.sets import get_dataset

    check_positive_int("num_samples", num_samples, minimum=2)
    for name, value in (("likelihood_points", likelihood_points), ("likelihood_steps", likelihood_steps),
                        ("iwae_k", iwae_k)):
        check_positive_int(name, value)
    conditioning = pipe.conditioning
    data = get_dataset(dataset)
    prompts = None
    if data is not None:
        if num_samples < data.min_samples:
            raise ValueError(f"num_samples={num_samples} is too few for the {dataset!r} metrics: they need at least "
                             f"{data.min_samples} samples (`genzoo eval --num-samples {data.min_samples}` or more).")
        data.check_pipeline(pipe)
        if conditioning == "text":
            prompts = data.prompts(pipe, num_samples)
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
    _check_comparable(pipe, samples, dataset, data)
    options = EvalOptions(num_samples=num_samples, steps=steps, seed=seed, guidance_scale=guidance_scale,
                          likelihood=likelihood, likelihood_points=likelihood_points,
                          likelihood_steps=likelihood_steps, iwae_k=iwae_k, recon_loss=recon_loss)
    result.update(data.evaluate(pipe, samples, options))
    return result


def _check_comparable(pipe, samples: np.ndarray, dataset: str, data) -> None:
    """Refuse (``ValueError``, naming the data sets that would do) samples that ``data`` cannot score."""
    from ..data.sets import registered_datasets

    if data is not None and data.refuses(pipe, samples) is None:
        return
    if samples.ndim == 2:
        vector = [name for name, d in registered_datasets().items() if d.data_kind == "vector"]
        raise ValueError(f"No reference distribution for vector data set {dataset!r}; registered: {', '.join(vector)}.")
    images = [d for d in registered_datasets().values() if d.data_kind == "image"]
    allowed = " or ".join(repr(d.name) for d in images if d.refuses(pipe, samples) is None) or "an image data set"
    reasons = [reason for d in images if (reason := d.refuses(pipe, samples)) is not None]
    raise ValueError(
        f"Image metrics need a classifier of the data set, so --dataset must be {allowed} for image pipelines; "
        f"got {dataset!r}" + (f" ({'; '.join(reasons)})." if reasons else ".")
    )


# --------------------------------------------------------------------------------- what pipelines declare
def declares(pipe, capability: str) -> bool:
    """Whether ``pipe``'s class declares ``capability``, a method: ``"exact_log_likelihood"`` or ``"nll_bound"``."""
    return callable(getattr(type(pipe), capability, None))


def flow_nll(pipe, x: torch.Tensor, num_steps: int) -> dict:
    """``nll_nats`` (and how it was computed) of the held-out points ``x`` for a pipeline that declares
    ``exact_log_likelihood``; ``{}`` for others."""
    if not declares(pipe, "exact_log_likelihood"):
        return {}
    log_p = pipe.exact_log_likelihood(x, num_steps=num_steps)
    return {"nll_nats": float(-log_p.double().mean()),
            "nll_method": f"exact divergence, RK4 with {num_steps} steps, {len(x)} points"}


def iwae_bound(pipe, x: torch.Tensor, k: int, seed: int, recon_loss: str, labels=None) -> dict:
    """``iwae_nll_nats`` (and its settings) of the held-out data ``x`` (with their ``labels``, for a conditional
    model) for a pipeline that declares ``nll_bound``; ``{}`` for others."""
    if not declares(pipe, "nll_bound"):
        return {}
    nll = pipe.nll_bound(x, k=k, generator=torch.Generator().manual_seed(seed), recon_loss=recon_loss,
                         class_labels=labels)
    return {"iwae_nll_nats": float(nll.double().mean()), "iwae_k": k, "iwae_points": int(x.shape[0]),
            "iwae_decoder": "gaussian, variance 1/2" if recon_loss == "mse" else "bernoulli",
            **({"iwae_conditional_on_label": True} if labels is not None else {})}
