"""Offline evaluation: nothing is downloaded, everything is seeded. See docs/evaluation.md.

- :mod:`.point_clouds`: exact 2-Wasserstein distance and RBF-kernel MMD^2 between point clouds.
- :func:`flow_log_likelihood` and :func:`iwae_nll`: the exact log-likelihood of a flow (instantaneous change of
  variables) and the importance-weighted bound of a VAE. They live with the pipelines that declare them
  (:mod:`genzoo.pipelines.likelihood`, :mod:`genzoo.pipelines.vae_nll`: ``exact_log_likelihood``, ``nll_bound``).
- :mod:`.features`: metrics of any classifier's features (Fréchet distance, k-NN precision/recall) and the input
  handling the shipped classifiers share.
- :mod:`.digits`: a small digits classifier shipped with genzoo, and digits-FD, precision/recall, class coverage.
- :mod:`.shapes`: a small classifier of the colour shapes shipped with genzoo (shape, colour, size and position
  per quadrant), and shapes-FD, precision/recall, attribute statistics, prompt faithfulness.
- :mod:`.evaluate`: all that applies to a pipeline and a data set (the registered data set's ``evaluate``, the
  likelihoods the pipeline declares), as used by ``genzoo eval`` and the benchmark.
"""

from ..pipelines.likelihood import flow_log_likelihood
from ..pipelines.vae_nll import iwae_nll
from .point_clouds import MMD_BANDWIDTHS, mmd_rbf, wasserstein2

__all__ = ["MMD_BANDWIDTHS", "evaluate_pipeline", "flow_log_likelihood", "iwae_nll", "mmd_rbf", "wasserstein2"]


def evaluate_pipeline(*args, **kwargs):
    """See ``genzoo.metrics.evaluate.evaluate_pipeline`` (imported lazily: it pulls in the data sets)."""
    from .evaluate import evaluate_pipeline as evaluate

    return evaluate(*args, **kwargs)
