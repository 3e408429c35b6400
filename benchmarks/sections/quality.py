"""Section 1, quality: every registered method (genzoo's and installed plugins') on each data set its kind of data
fits, the same budget of optimiser steps, several seeds; the metrics of docs/evaluation.md."""

from __future__ import annotations

import json
from pathlib import Path

from harness import fmt, mean_spread, methods_for, run_child, train_command


def measure(cfg, work: Path) -> dict:
    """Every registered method on the same data and the same budget of optimiser steps, several seeds."""
    import genzoo
    from genzoo.metrics.evaluate import evaluate_pipeline

    runs = []
    for dataset in ("digits", *cfg["point_sets"]):
        steps = cfg["image_steps"] if dataset == "digits" else cfg["point_steps"]
        for method in methods_for(dataset):
            for seed in cfg["seeds"]:
                out = work / f"{method}-{dataset}-{seed}"
                command = train_command(method, dataset, seed, steps, out, sampling_steps=cfg["sampling_steps"],
                                        image_batch=cfg.get("image_batch"), grid_samples=cfg.get("grid_samples", 64))
                seconds = run_child(command, cfg.get("in_process", False))
                pipe = genzoo.load_pipeline(out)
                metrics = evaluate_pipeline(pipe, dataset, num_samples=cfg["eval_samples"], seed=seed, steps=cfg["sampling_steps"],
                                            likelihood_points=200, iwae_k=16)
                train_metrics = json.loads((out / "metrics.json").read_text())
                runs.append({"method": method, "dataset": dataset, "seed": seed, "steps": steps,
                             "train_seconds": round(seconds, 1), "peak_memory_mib": train_metrics["peak_rss_mib"],
                             "steps_per_second": train_metrics["steps_per_second"], **metrics})
                print(f"quality: {method} {dataset} seed {seed}: {seconds:.0f} s", flush=True)
    return {"runs": runs}


def report(results: dict) -> list[str]:
    cfg = results["config"]
    lines = [
        "## 1. Quality: the four families, same data, same budget",
        "",
        f"Budget per run: {cfg['image_steps']} optimiser steps of batch {cfg.get('image_batch', 128)} on digits, "
        f"{cfg['point_steps']} steps of batch 256 on the 2-D sets; each method's default model and "
        f"learning rate (docs/training.md). Seeds {list(cfg['seeds'])}; mean ± standard deviation over "
        f"seeds. Metrics on {cfg['eval_samples']} samples against held-out data (docs/evaluation.md)"
        + (f", sampled with {cfg['sampling_steps']} steps." if cfg.get('sampling_steps')
           else ", sampled with each pipeline's default steps."),
        "",
    ]
    runs = results["quality"]["runs"]
    for dataset in ("digits", *cfg.get("point_sets", ("8gaussians", "moons", "checkerboard"))):
        keys = (["digits_fd", "precision", "recall", "coverage"] if dataset == "digits" else ["w2", "mmd2_rbf"])
        keys += ["train_seconds", "peak_memory_mib"]
        lines += [f"**{dataset}**", "", "| method | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for method in sorted({r["method"] for r in runs if r["dataset"] == dataset}):
            row = [r for r in runs if r["method"] == method and r["dataset"] == dataset]
            cells = [fmt(*mean_spread([r.get(k) for r in row]), digits=1 if k in ("train_seconds", "peak_memory_mib") else 3)
                     for k in keys]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines
