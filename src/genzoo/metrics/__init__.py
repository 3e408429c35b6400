"""Offline evaluation: nothing is downloaded, everything is seeded. See docs/evaluation.md.

- :mod:`.point_clouds`: exact 2-Wasserstein distance and RBF-kernel MMD^2 between point clouds.
- :mod:`.likelihood`: exact log-likelihood of a flow-matching model (instantaneous change of variables).
- :mod:`.vae_nll`: importance-weighted bound on a VAE's negative log-likelihood.
- :mod:`.digits`: a small digits classifier shipped with genzoo, and digits-FD, precision/recall, class coverage.
- :mod:`.shapes`: a small classifier of the colour shapes shipped with genzoo (shape, colour, size and position
  per quadrant), and shapes-FD, precision/recall, attribute statistics, prompt faithfulness.
- :mod:`.evaluate`: all that applies to a pipeline and a data set, as used by ``genzoo eval`` and the benchmark.
"""

from .likelihood import flow_log_likelihood
from .point_clouds import MMD_BANDWIDTHS, mmd_rbf, wasserstein2
from .vae_nll import iwae_nll

__all__ = ["MMD_BANDWIDTHS", "evaluate_pipeline", "flow_log_likelihood", "iwae_nll", "mmd_rbf", "wasserstein2"]


def evaluate_pipeline(*args, **kwargs):
    """See ``genzoo.metrics.evaluate.evaluate_pipeline`` (imported lazily: it pulls in the data sets)."""
    from .evaluate import evaluate_pipeline as evaluate

    return evaluate(*args, **kwargs)
