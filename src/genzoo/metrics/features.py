"""Metrics of feature sets, whatever the classifier that gave the features, and the input handling both shipped
classifiers share (:mod:`.digits`, :mod:`.shapes`).

- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets (FID's formula; with a
  small classifier's features it is *not* FID);
- :func:`precision_recall`: improved precision and recall with k-NN manifolds (Kynkäänniemi et al. 2019), and
  :func:`precision_recall_at_equal_size`, which first brings both sets to the same size;
- :func:`image_batch`: images in any accepted layout -> a float64 batch in [0, 1]; :func:`load_weights`: a shipped
  classifier's safetensors weights.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: Added to both covariances' diagonals when sqrt(S_a S_b) is singular (sqrtm warns or gives non-finite values).
FD_EPS = 1e-6

__all__ = [
    "FD_EPS",
    "frechet_distance",
    "image_batch",
    "load_weights",
    "precision_recall",
    "precision_recall_at_equal_size",
]


def load_weights(model: nn.Module, path: Path, what: str) -> nn.Module:
    """``model`` with the safetensors weights at ``path``, in eval mode, without gradients; a missing file names the
    command that trains ``what`` (``"digits"`` or ``"shapes"``)."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(
            f"no {what} classifier weights at {path}; train them with "
            f"`python -m genzoo.metrics.train_{what}_classifier`"
        )
    model.load_state_dict(load_file(str(path)))
    return model.eval().requires_grad_(False)


def image_batch(images, value_range=(0.0, 1.0), color: bool = False, stacklevel: int = 2) -> torch.Tensor:
    """Images in any of the accepted layouts (below) -> float64 (B, C, H, W) in [0, 1] on CPU, the input checks
    shared by the shipped classifiers (:mod:`.digits`, :mod:`.shapes`). ``color=False``: C = 1 (three channels
    averaged, PIL images converted to "L"); ``color=True``: C = 3 (PIL images converted to "RGB"; one-channel
    images raise, since colour cannot be read from them).

    numpy / torch: (B, H, W), (B, H, W, C) or (B, C, H, W) with C 1 or 3 (a 4-D array whose last axis is 1 or 3 is
    read as channels-last, else as channels-first); a list of PIL images; uint8 data is 0..255. ``value_range``
    (low, high) is the range of float data: (0, 1) for pipeline outputs (default), (-1, 1) for model-space samples.
    Values are clipped to it; values far outside it (by more than 5 % of its width) raise, and so do NaNs.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given")
        mode = "RGB" if color else "L"
        images = np.stack([np.asarray(image.convert(mode) if hasattr(image, "convert") else image) for image in images])
    if isinstance(images, np.ndarray):
        array = np.ascontiguousarray(images)
        x = torch.from_numpy(array if array.flags.writeable else array.copy())  # read-only arrays: torch warns
        channels_last_first = True
    elif isinstance(images, torch.Tensor):
        x = images.detach().cpu()
        channels_last_first = False
    else:
        raise TypeError(f"images must be a numpy array, a torch tensor or a list of PIL images, got {type(images)}")
    if x.dtype == torch.uint8:
        x, value_range = x.float(), (0.0, 255.0)
    if not x.is_floating_point():
        raise TypeError(f"images must be float or uint8, got {x.dtype}")
    x = x.double()
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        last, second = x.shape[-1] in (1, 3), x.shape[1] in (1, 3)
        if last and (channels_last_first or not second):
            x = x.permute(0, 3, 1, 2)
        elif not second:
            raise ValueError(f"images of shape {tuple(images.shape)}: need 1 or 3 channels, first or last")
    else:
        raise ValueError(f"images must be a batch (B, H, W), (B, H, W, C) or (B, C, H, W); got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("no images given")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    if color and x.shape[1] != 3:
        raise ValueError(f"images of shape {tuple(images.shape)} have one channel: need 3 (RGB) to read colours")
    if not color and x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    x = (x - low) / (high - low)  # [0, 1]
    if x.min() < -0.05 or x.max() > 1.05:
        hint = " (negative values: pass value_range=(-1, 1) for images in [-1, 1])" if x.min() < -0.05 else ""
        raise ValueError(
            f"images range over [{x.min() * (high - low) + low:.3g}, {x.max() * (high - low) + low:.3g}], "
            f"far outside value_range={(low, high)}{hint}"
        )
    if low < 0 and x.shape[0] >= 8 and x.min() >= 0.5:
        warnings.warn(
            f"value_range={(low, high)} but no value is below 0: images in [0, 1] (pipeline outputs) need the "
            "default value_range=(0, 1)",
            stacklevel=stacklevel + 1,
        )
    return x.clamp(0, 1)


def _as_2d(x, name) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} must be a 2-D array (N >= 2, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def frechet_distance(feat_a, feat_b, eps: float = FD_EPS) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples):
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrt(S_a S_b)), with unbiased covariances (N - 1).

    sqrt is ``scipy.linalg.sqrtm``, of which the real part is kept (rounding makes tiny imaginary parts). When the
    product is singular (sqrtm warns or returns non-finite values), ``eps * I`` (1e-6) is added to both covariances
    and it is computed again, as pytorch-fid does. (The shipped classifier's features have full-rank covariances on
    digits, so this only happens for degenerate inputs, e.g. fewer samples than 64 or identical images.) The result
    is clipped at 0 (rounding can make FD(x, x) -1e-12)."""
    from scipy import linalg

    a, b = _as_2d(feat_a, "feat_a"), _as_2d(feat_b, "feat_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} and {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all() or any(issubclass(w.category, linalg.LinAlgWarning) for w in caught):
        offset = np.eye(len(s_a)) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    diff = mu_a - mu_b
    fd = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(np.real(covmean))
    return float(max(fd, 0.0))


def _pairwise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return cdist(x, y)


def _knn_radii(x: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Distance from each row of x to its k-th nearest neighbour in x, itself not counted."""
    radii = np.empty(len(x))
    for start in range(0, len(x), chunk):
        d = _pairwise(x[start : start + chunk], x)
        radii[start : start + chunk] = np.partition(d, k, axis=1)[:, k]  # column 0 of the sorted row is itself
    return radii


def _inside(queries: np.ndarray, points: np.ndarray, radii: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For each query: is it within radii[j] of some points[j]?"""
    inside = np.empty(len(queries), dtype=bool)
    for start in range(0, len(queries), chunk):
        inside[start : start + chunk] = (_pairwise(queries[start : start + chunk], points) <= radii[None]).any(1)
    return inside


def precision_recall(real_feats, fake_feats, k: int = 5) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    The real manifold is the union of balls around each real feature with radius the distance to its k-th nearest
    real neighbour (itself excluded); likewise the fake manifold. precision = fraction of fake samples inside the real
    manifold; recall = fraction of real samples inside the fake manifold. Both depend on the two set sizes (a larger
    set has smaller radii), so compare at equal sizes: :func:`precision_recall_at_equal_size`."""
    real, fake = _as_2d(real_feats, "real_feats"), _as_2d(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} and {fake.shape[1]}")
    if not 1 <= k < min(len(real), len(fake)):
        raise ValueError(f"k must be in 1..{min(len(real), len(fake)) - 1} for these set sizes, got {k}")
    precision = _inside(fake, real, _knn_radii(real, k)).mean()
    recall = _inside(real, fake, _knn_radii(fake, k)).mean()
    return float(precision), float(recall)


def precision_recall_at_equal_size(real_feats, fake_feats, k: int = 5, seed: int = 0) -> tuple[float, float, int]:
    """:func:`precision_recall` with the larger of the two sets subsampled (without replacement,
    ``numpy.random.default_rng(seed)``; the real set first) to the smaller one's size n: (precision, recall, n)."""
    n = min(len(real_feats), len(fake_feats))
    rng = np.random.default_rng(seed)

    def subsample(x):
        return x if len(x) == n else x[np.sort(rng.choice(len(x), n, replace=False))]

    precision, recall = precision_recall(subsample(real_feats), subsample(fake_feats), k=k)
    return precision, recall, n
