"""Section 5, conditional digits: how often the digits classifier sees the asked-for digit, against the guidance
scale, for class- and text-conditional DDPM and flow matching."""

from __future__ import annotations

from pathlib import Path

from harness import run_child, train_command


GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0, 8.0)
#: (method, conditioning, extra trainer options): the conditional models of section 5, all on digits
GUIDED_RUNS = (
    ("ddpm", "class", ()),
    ("flow-matching", "class", ()),
    ("ddpm", "text", ()),
    ("flow-matching", "text", ()),
    ("flow-matching", "text", ("--train_text_encoder",)),
)


def measure(cfg, work: Path) -> dict:
    """Conditional digits: how often the classifier sees the asked-for digit, against the guidance scale."""
    import genzoo
    from genzoo.metrics.evaluate import evaluate_pipeline

    runs = []
    for method, conditioning, extra in GUIDED_RUNS:
        text_encoder = ("trained" if "--train_text_encoder" in extra else "frozen") if conditioning == "text" else None
        out = work / (f"guided-{method}-{conditioning}" + ("-trained-te" if text_encoder == "trained" else ""))
        seconds = run_child(train_command(method, "digits", 0, cfg["guidance_train_steps"], out,
                                          ["--conditioning", conditioning, *extra],
                                          sampling_steps=cfg["guidance_sampling_steps"][method],
                                          image_batch=cfg.get("image_batch"), grid_samples=cfg.get("grid_samples", 64)),
                            cfg.get("in_process", False))
        pipe = genzoo.load_pipeline(out)
        points = []
        for scale in GUIDANCE_SCALES:
            result = evaluate_pipeline(pipe, "digits", num_samples=cfg["guidance_samples"], seed=0,
                                       steps=cfg["guidance_sampling_steps"][method], guidance_scale=scale,
                                       likelihood=False)
            points.append({"guidance_scale": scale, "class_accuracy": result["class_accuracy"],
                           "digits_fd": result["digits_fd"], "coverage": result["coverage"],
                           "model_calls_per_sample": result["model_calls_per_sample"]})
            print(f"guidance: {method} {conditioning} {scale}: {result['class_accuracy']:.3f}", flush=True)
        runs.append({"method": method, "conditioning": conditioning, "text_encoder": text_encoder,
                     "default_guidance_scale": pipe.default_guidance_scale, "train_seconds": round(seconds, 1),
                     "steps": cfg["guidance_train_steps"], "points": points})
    return {"runs": runs, "scales": list(GUIDANCE_SCALES)}


def report(section: dict, cfg: dict) -> list[str]:
    steps = cfg["guidance_sampling_steps"]
    sampling = ", ".join(f"{method}: {'the pipeline default (50 Euler steps)' if n is None else f'{n} steps'}"
                         for method, n in steps.items())
    lines = [
        "## 5. Conditional digits: accuracy against guidance", "",
        f"Each model: {cfg['guidance_train_steps']} steps on the digits train split with `--conditioning class` or "
        "`text` (label / caption dropout 0.1), then "
        f"{cfg['guidance_samples']} samples per scale, every digit in turn (prompts: each digit's phrasings in turn), "
        f"sampling steps {sampling} (DDPM's ancestral sampler at 100 steps is within noise of 1000, section 2). "
        "Accuracy = the fraction the "
        "digits classifier (99.7 % on real held-out digits) assigns to the asked-for digit; chance is 0.1. "
        "Scale 1 is the conditional model alone (no guidance); every other scale costs two model evaluations per "
        "step, batched in one call.", "",
        "| model | " + " | ".join(f"g = {g:g}" for g in section["scales"]) + " | digits-FD at g = 1 / 3 |",
        "|---|" + "---|" * (len(section["scales"]) + 1),
    ]
    for run in section["runs"]:
        name = f"{run['method']}, {run['conditioning']}" + (f" (text encoder {run['text_encoder']})" if run["text_encoder"] else "")
        by_scale = {p["guidance_scale"]: p for p in run["points"]}
        cells = [f"{by_scale[g]['class_accuracy']:.3f}" for g in section["scales"]]
        fd = f"{by_scale[1.0]['digits_fd']:.1f} / {by_scale[3.0]['digits_fd']:.1f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fd} |")
    return lines + [""]
