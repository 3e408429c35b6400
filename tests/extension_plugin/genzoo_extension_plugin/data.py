"""A new data set: 2-D points on a noisy unit circle, one ``PointDataSet`` line."""

import numpy as np

from genzoo.data.sets import PointDataSet


def ring(n: int, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = 1 + 0.05 * rng.standard_normal(n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


RING = PointDataSet("ring", ring, "points on a noisy unit circle")
