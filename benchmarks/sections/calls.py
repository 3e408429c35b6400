"""Section 2, quality against model calls: DDPM (its own sampler and Diffusers' DDIM) and flow matching (Euler and
Heun) at several numbers of calls per sample, on the seed-0 models of section 1."""

from __future__ import annotations

from pathlib import Path


def measure(cfg, work: Path) -> dict:
    """DDPM (its own sampler and Diffusers' DDIM) and flow matching (Euler and Heun) at several numbers of calls,
    using the seed-0 models of the quality section."""
    import diffusers

    import genzoo
    from genzoo.metrics.evaluate import evaluate_pipeline

    curves = []
    for dataset, metric in (("digits", "digits_fd"), ("moons", "w2")):
        for label, method, scheduler in (
            ("DDPM (DDPMScheduler)", "ddpm", None),
            ("DDPM (Diffusers DDIMScheduler)", "ddpm", diffusers.DDIMScheduler),
            ("flow matching (Euler)", "flow-matching", None),
            ("flow matching (Heun)", "flow-matching", genzoo.FlowMatchHeunScheduler),
        ):
            pipe = genzoo.load_pipeline(work / f"{method}-{dataset}-0")
            if scheduler is not None:
                pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
            points = []
            for calls in cfg["nfe"]:
                steps = calls if scheduler is not genzoo.FlowMatchHeunScheduler else max(1, (calls + 1) // 2)
                if steps > 1000:
                    continue
                result = evaluate_pipeline(pipe, dataset, num_samples=cfg["nfe_samples"], steps=steps, seed=0,
                                           likelihood=False)
                points.append({"calls": result["model_calls_per_sample"], "steps": steps, metric: result[metric],
                               "sampling_seconds": result["sampling_seconds"]})
                print(f"calls: {label} {dataset} {result['model_calls_per_sample']}", flush=True)
            curves.append({"sampler": label, "dataset": dataset, "metric": metric, "points": points})
    return {"curves": curves}


def report(section: dict) -> list[str]:
    lines = ["## 2. Quality against model calls", "", "![quality vs calls](quality_vs_nfe.png)", ""]
    for curve in section["curves"]:
        pts = ", ".join(f"{p['calls']}: {p[curve['metric']]:.3f}" for p in curve["points"])
        lines.append(f"- {curve['sampler']}, {curve['dataset']} ({curve['metric']} by calls): {pts}")
    return lines + [""]
