"""What a data set is to genzoo, and where each one is found: the ``genzoo.datasets`` entry-point group.

A data set registers one :class:`DataSet` instance under its ``--dataset`` name, exactly as genzoo registers its own
(``setup.cfg``: digits, shapes and the six 2-D toys). Everything genzoo lists by data set reads it from there: the
trainer's ``--dataset`` (:meth:`DataSet.rows`), ``genzoo eval`` and ``evaluate_pipeline`` (:meth:`DataSet.evaluate`
against :meth:`DataSet.reference`), the model card's metric labels (:attr:`DataSet.card_metrics`), the zoo build
(:attr:`DataSet.eval_samples`), the benchmark, the demo's background (:meth:`DataSet.demo_background`) and the tests.

A 2-D (or any vector) data set drawn by a function is one line, a :class:`PointDataSet`:

    # my_package/data.py, declared as  genzoo.datasets =  ring = my_package.data:RING
    RING = PointDataSet("ring", lambda n, rng: ..., "points on a noisy unit circle")

and is trained on (``--dataset ring``), evaluated (W2, MMD^2, flow and VAE likelihoods) and shown like a built-in.
"""

from __future__ import annotations

import numpy as np

#: The kinds of data a data set can hold: images (C, H, W) or vectors (D,).
DATA_KINDS = ("image", "vector")
#: The reference draw of a point data set uses this seed offset, so it never coincides with a training draw (seed 0,
#: 1, ...).
REFERENCE_SEED_OFFSET = 10_000
#: What a card shows of a point data set's evaluation.
POINT_METRICS = {"w2": "W2 to held-out data (exact OT)", "mmd2_rbf": "MMD^2, RBF kernels"}


class DataSet:
    """A data set genzoo trains on and evaluates against, registered as an instance in ``genzoo.datasets``.

    Subclasses set the attributes and implement :meth:`rows`, :meth:`reference` and :meth:`evaluate` (and
    :meth:`real_data_floor`, :meth:`demo_background` where they apply).

    Attributes:
        name: the ``--dataset`` name (the entry point's name).
        data_kind: ``"image"`` (samples (C, H, W)) or ``"vector"`` (samples (D,)): which methods train on it
            (``Method.data_kinds``) and which pipelines its metrics can score.
        sample_shape: the shape of one training sample at the default options, (C, H, W) or (D,).
        description: one line: what the data are.
        card_metrics: metric key of :meth:`evaluate`'s result -> its label in a model card (the pipeline-level ones,
            likelihoods, are :data:`genzoo.hub.PIPELINE_METRICS`).
        summary_metrics: the columns of a comparison table (the zoo's docs table, the benchmark), in order.
        headline_metrics: metric -> ``"lower"`` or ``"higher"`` (is better): what a card must state and what the
            zoo's tests re-measure against it.
        eval_samples: samples of a zoo card's evaluation.
        check_samples: where the card's evaluation is too slow for the test suite to repeat, the samples of the
            smaller one it repeats instead (``None``: it repeats the card's), with its figures ``check_metrics``.
        min_samples: the fewest samples :meth:`evaluate` can score (an evaluation of fewer is refused up front,
            naming it).
    """

    name: str = ""
    data_kind: str = "image"
    sample_shape: tuple[int, ...] = ()
    description: str = ""
    card_metrics: dict[str, str] = {}
    summary_metrics: tuple[str, ...] = ()
    headline_metrics: dict[str, str] = {}
    eval_samples: int = 1000
    check_samples: int | None = None
    check_metrics: tuple[str, ...] = ()
    min_samples: int = 2

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.data_kind} {self.sample_shape}>"

    # ------------------------------------------------------------------------------------------------ training
    def rows(self, opts, seed: int):
        """The training rows as a ``datasets.Dataset``, for the data options ``opts`` (the trainer's argparse
        namespace of ``add_data_arguments``: ``num_samples``, ``resolution``, ...) and the data ``seed``. An image
        column (``image``) or a vector column (``x``), and optionally ``label`` and ``caption``; the trainer checks
        and converts them as it does any user data."""
        raise NotImplementedError(f"{type(self).__name__} does not define rows(opts, seed)")

    def load(self, **options):
        """The :class:`~genzoo.data.TrainingData` the trainer uses for ``--dataset <name>`` with ``options`` (data
        options by their argparse names, e.g. ``num_samples=500``, ``seed=1``)."""
        import argparse

        from .loading import load_training_data

        return load_training_data(argparse.Namespace(**{**options, "dataset": self.name}))

    # ---------------------------------------------------------------------------------------------- evaluation
    def reference(self, num_samples: int, seed: int = 0):
        """Held-out real data, never trained on: what :meth:`evaluate` compares samples with."""
        raise NotImplementedError(f"{type(self).__name__} does not define reference(num_samples, seed)")

    def check_pipeline(self, pipe) -> None:
        """Refuse, before sampling, a pipeline whose conditioning this data set cannot score (``ValueError``)."""

    def refuses(self, pipe, samples: np.ndarray) -> str | None:
        """Why ``samples`` of ``pipe`` cannot be scored here (shown in the error), or ``None`` when they can."""
        kind = "vector" if samples.ndim == 2 else "image"
        if kind != self.data_kind:
            return f"{type(pipe).__name__} makes {kind} samples and {self.name!r} holds {self.data_kind}s"
        return None

    def prompts(self, pipe, num_samples: int) -> list[str] | None:
        """The prompts a text-conditional ``pipe`` is sampled with for this data set's evaluation (``None``:
        ``draw_samples``'s default, captions of each digit in turn)."""
        return None

    def evaluate(self, pipe, samples: np.ndarray, options) -> dict:
        """The data set's metrics of ``samples`` (drawn from ``pipe`` as ``genzoo.metrics.evaluate.draw_samples``
        draws them) with ``options`` (a ``genzoo.metrics.evaluate.EvalOptions``), likelihoods included where the
        pipeline declares them; JSON-ready."""
        raise NotImplementedError(f"{type(self).__name__} does not define evaluate(pipe, samples, options)")

    def real_data_floor(self, num_samples: int, seed: int = 0) -> dict:
        """The metrics of :meth:`evaluate` for ``num_samples`` real training samples against the reference: about
        what a perfect model scores at that size (the estimators are biased at small sizes). Report it beside them."""
        raise NotImplementedError(f"{type(self).__name__} does not define real_data_floor(num_samples, seed)")

    def demo_background(self, n: int = 20000) -> np.ndarray | None:
        """Points drawn behind 2-D samples in the demo (the data's density), or ``None`` (images: nothing)."""
        return None

    def example_prompts(self, num: int) -> list[str] | None:
        """A few captions of the training data's kind, offered as clickable prompts by the demo for a text-conditional
        model of this data set; ``None``: none."""
        return None


class PointDataSet(DataSet):
    """A vector data set drawn by ``sampler(n, rng) -> array (n, D)``, every draw from ``rng`` (a
    ``numpy.random.Generator``): trained on as ``--num_samples`` points (10,000 by default) of seed ``--data_seed``
    (else ``--seed``), evaluated by exact W2 and RBF-kernel MMD^2 against a fresh draw of seed
    ``seed + REFERENCE_SEED_OFFSET`` (and by the exact flow likelihood and the VAE bound of held-out points, for
    pipelines that declare them).

    Args:
        name: the ``--dataset`` name.
        sampler (Callable[[int, numpy.random.Generator], numpy.ndarray]): ``(n, rng) -> array (n, D)``; the points
            are shuffled after it.
        description: one line.
        dim: D (default 2).
    """

    data_kind = "vector"
    card_metrics = POINT_METRICS
    summary_metrics = ("w2", "mmd2_rbf")
    headline_metrics = {"w2": "lower"}
    eval_samples = 1000
    #: The test suite repeats a zoo card's evaluation of a point set (DDPM's 1000 steps included) with 300 points.
    check_samples = 300
    check_metrics = ("w2", "mmd2_rbf")

    def __init__(self, name: str, sampler, description: str = "", dim: int = 2):
        self.name, self.sampler, self.description, self.sample_shape = name, sampler, description, (int(dim),)

    def points(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points as a float32 array of shape (n, D), shuffled, every random draw taken from ``rng``."""
        from ..checks import check_positive_int
        from .training_data import DataError

        check_positive_int("the number of toy points", n, error=DataError)
        points = self.sampler(int(n), rng)
        return np.asarray(points[rng.permutation(len(points))[:n]], dtype=np.float32)

    def rows(self, opts, seed: int):
        from .loading import DEFAULT_NUM_SAMPLES

        num_samples = DEFAULT_NUM_SAMPLES if opts.num_samples is None else opts.num_samples
        return point_rows(self.points(num_samples, np.random.default_rng(seed)))

    def reference(self, num_samples: int, seed: int = 0) -> np.ndarray:
        return self.points(num_samples, np.random.default_rng(seed + REFERENCE_SEED_OFFSET)).astype(np.float64)

    def evaluate(self, pipe, samples: np.ndarray, options) -> dict:
        """W2 and MMD^2 against :meth:`reference`; the exact flow NLL (``nll_nats``) and, for an unconditional VAE,
        the IWAE bound of its first ``options.likelihood_points`` points."""
        import torch

        from ..metrics.evaluate import flow_nll, iwae_bound
        from ..metrics.point_clouds import compare_point_clouds

        reference = self.reference(options.num_samples, options.seed)
        result = compare_point_clouds(samples, reference)
        if options.likelihood:
            held_out = torch.from_numpy(reference[: options.likelihood_points]).float()
            result.update(flow_nll(pipe, held_out, options.likelihood_steps))
            if pipe.conditioning == "none":  # the points have no labels
                result.update(iwae_bound(pipe, held_out, options.iwae_k, options.seed, options.recon_loss))
        return result

    def real_data_floor(self, num_samples: int, seed: int = 0) -> dict:
        """W2 and MMD^2 of ``num_samples`` real points (a training draw of ``seed``) against the reference of the
        same size and seed (moons, 1000 points: W2 about 0.11)."""
        from ..metrics.point_clouds import compare_point_clouds

        real = self.points(num_samples, np.random.default_rng(seed)).astype(np.float64)
        return {**compare_point_clouds(real, self.reference(num_samples, seed)), "num_samples": int(num_samples),
                "seed": seed}

    def demo_background(self, n: int = 20000) -> np.ndarray:
        return self.points(n, np.random.default_rng(0))


def point_rows(points: np.ndarray):
    """Points (n, D) as a ``datasets.Dataset`` with one column ``x`` of float32 lists of length D."""
    import datasets

    features = datasets.Features({"x": datasets.List(datasets.Value("float32"), length=points.shape[1])})
    return datasets.Dataset.from_dict({"x": points}, features=features)


# ---------------------------------------------------------------------------------------------------- lookup
def dataset_names(kind: str | None = None) -> list[str]:
    """The registered data sets' names (genzoo's and installed plugins'), sorted; with ``kind`` ("image" or
    "vector"), those of that kind only (data sets that fail to load are left out)."""
    from .. import registry

    if kind is None:
        return registry.names("dataset")
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; the kinds are {', '.join(DATA_KINDS)}")
    return [name for name, data in registered_datasets().items() if data.data_kind == kind]


def registered_datasets() -> dict[str, DataSet]:
    """Every registered data set that loads: name -> :class:`DataSet`, sorted by name."""
    from .. import registry

    found = {}
    for entry in registry.entries("dataset"):
        try:
            found[entry.name] = entry.load()
        except ImportError:
            continue
    return found


def get_dataset(name: str) -> DataSet | None:
    """The registered data set ``name``, or ``None`` when no package registers it (a local folder or a Hub id).

    Raises:
        KeyError: two packages register the name.
        ImportError: the plugin that registers it fails to import.
    """
    from .. import registry

    if name not in registry.names("dataset"):
        return None
    return registry.get("dataset", name)
