"""A third-party package that adds to genzoo one of each of the kinds of addition the core does not own:

- a new pipeline family: Gaussian mixtures (``GaussianMixture`` model, ``MixturePipeline``, ``gaussian-mixture``
  training method by maximum likelihood) -- a density model with an exact likelihood, which it declares, so
  ``genzoo eval`` reports its NLL like flow matching's;
- a new data set: ``ring``, 2-D points on a noisy circle;
- a new probability path: ``vp``, variance preserving with a linear log-SNR schedule (see ``paths.py``), on which
  every genzoo flow solver runs.

Nothing here is edited into genzoo: ``entry_points.txt`` in the ``.dist-info`` folder next to this package is the
whole registration.
"""
