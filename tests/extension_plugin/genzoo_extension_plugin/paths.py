"""A new probability path: variance preserving, alpha^2 + sigma^2 = 1, with alpha = t / sqrt(t^2 + (1 - t)^2).

Its signal-to-noise ratio alpha / sigma = t / (1 - t) is the straight path's, so it is the straight path rescaled to
unit variance at every time -- a different path with the same marginals up to scale.
"""

from genzoo.schedulers.paths import ProbabilityPath, math_of


class VPPath(ProbabilityPath):
    def _norm(self, t):
        return math_of(t).sqrt(t * t + (1 - t) * (1 - t))

    def alpha(self, t):
        return t / self._norm(t)

    def sigma(self, t):
        return (1 - t) / self._norm(t)

    def d_alpha(self, t):  # d/dt [t / n(t)] with n' = (2t - 1) / n
        return (1 - t) / self._norm(t) ** 3

    def d_sigma(self, t):
        return -t / self._norm(t) ** 3
