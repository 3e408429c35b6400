"""The sections of the benchmark, one module each, in the order ``run.py`` runs them: quality, calls, speed, scale,
guidance, few_step, latent, one_call, cli_start. Each has ``measure(cfg, work)``, which returns the section's results (results.json),
and ``report(...)``, which returns its lines of RESULTS.md."""
