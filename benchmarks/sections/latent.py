"""Section 7, pixels against latents at the same wall-clock: class-conditional flow matching on shapes in pixels and
in the VAE's latents, each given the steps that fill one budget of seconds, evaluated alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from harness import run_child, train_command
from sections.scale import shapes_training_run, shapes_vae


def measure(cfg, work: Path) -> dict:
    """Class-conditional flow matching on shapes in pixels and in the VAE's latents, each trained for the same
    wall-clock budget of training steps (from a short probe of its steps/s), then evaluated alike; and the VAE's
    own ceiling: the shapes metrics of its reconstructions of the held-out test split."""
    import genzoo
    from genzoo.data.shapes import shapes_split
    from genzoo.metrics.evaluate import evaluate_pipeline
    from genzoo.metrics.shapes import evaluate_shapes

    c = cfg["latent"]
    vae = shapes_vae(cfg, work)
    images = ["--num_samples", str(c["images"])] if "images" in c else []
    runs = {}
    for space, widths in (("pixel", c["pixel_widths"]), ("latent", c["latent_widths"])):
        latent = vae if space == "latent" else None
        options = ["--conditioning", "class", "--num_inference_steps", str(c["eval_steps"])]
        probe = shapes_training_run(cfg, work, c["resolution"], widths, c["probe_steps"], vae=latent,
                                    batch=c["batch"], extra=options, tag="probe")
        steps = max(c["probe_steps"], int(c["budget_seconds"] * probe["steps_per_second"]))
        out = work / f"latent-vs-pixel-{space}"
        extra = ["--resolution", str(c["resolution"]), "--block_out_channels", ",".join(map(str, widths)),
                 "--train_batch_size", str(c["batch"]), *options, *images,
                 *(["--vae", str(latent)] if latent is not None else [])]
        wall = run_child(train_command("flow-matching", "shapes", 0, steps, out, extra), cfg.get("in_process", False))
        m = json.loads((out / "metrics.json").read_text())
        pipe = genzoo.load_pipeline(out)
        result = evaluate_pipeline(pipe, "shapes", num_samples=c["eval_samples"], steps=c["eval_steps"], seed=0)
        runs[space] = {"widths": list(widths), "steps": steps, "train_seconds": m["train_seconds_this_run"],
                       "wall_seconds": round(wall, 1), "steps_per_second": m["steps_per_second"],
                       "peak_memory_mib": m["peak_rss_mib"], "parameters": sum(m["parameters"].values()),
                       "latent_encode_seconds": m.get("latent_encode_seconds"),
                       "samples_per_second": c["eval_samples"] / result["sampling_seconds"],
                       **{k: result.get(k) for k in ("shapes_fd", "shapes_fd_floor", "precision", "recall",
                                                     "class_accuracy")},
                       "samples_png": str(out / "samples.png")}
        print(f"latent: {space}: {steps} steps, shapes_fd {result.get('shapes_fd'):.1f}", flush=True)
    test = shapes_split("test", c["resolution"], c["eval_samples"])
    x = torch.from_numpy(test.pixels.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
    recon = genzoo.load_pipeline(vae).reconstruct(x, output_type="np").images
    ceiling = evaluate_shapes(recon, seed=0)
    return {"runs": runs, "vae": str(vae), "budget_seconds": c["budget_seconds"], "resolution": c["resolution"],
            "eval_samples": c["eval_samples"], "eval_steps": c["eval_steps"],
            "vae_reconstructions": {k: ceiling.get(k) for k in ("shapes_fd", "precision", "recall")}}


def report(section: dict) -> list[str]:
    runs, ceiling = section["runs"], section["vae_reconstructions"]
    lines = ["## 7. Pixels against latents at the same wall-clock", "",
             f"Class-conditional flow matching on `shapes` at {section['resolution']}x{section['resolution']}, each "
             f"given the training steps that a short probe of its speed says fill {section['budget_seconds']:.0f} "
             "seconds (the probe counts its own start-up, so both fall short alike: `train s` is what each took), "
             f"evaluated alike: {section['eval_samples']} samples, "
             f"{section['eval_steps']} Euler steps, seed 0. The latent model works in `{Path(section['vae']).name}`'s "
             "space; the VAE's own training is not in its budget (it is trained once and shared, like Stable "
             "Diffusion's), and its encoding of the data, cached before the first step, is shown apart.", "",
             "| | UNet | parameters | steps | train s | steps/s | peak MiB | samples/s | shapes_fd | precision | "
             "recall | class accuracy |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for space, r in runs.items():
        encode = f" (+ {r['latent_encode_seconds']:.0f} s encoding)" if r.get("latent_encode_seconds") else ""
        lines.append(
            f"| {space} | {tuple(r['widths'])} | {r['parameters']:,} | {r['steps']} | {r['train_seconds']:.0f}{encode} | "
            f"{r['steps_per_second']:.2f} | {r['peak_memory_mib']} | {r['samples_per_second']:.1f} | "
            f"{r['shapes_fd']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['class_accuracy']:.3f} |")
    return lines + [
        "",
        f"The VAE's reconstructions of the held-out test split score shapes_fd {ceiling['shapes_fd']:.1f} (precision "
        f"{ceiling['precision']:.3f}, recall {ceiling['recall']:.3f}): a latent model cannot do better than its "
        f"decoder. The floor (real train against real test images) is {runs['pixel']['shapes_fd_floor']:.1f}.",
        "", "![Samples: pixels (left) and latents (right)](latent_vs_pixel.png)", ""]


def side_by_side(paths, out: Path) -> None:
    """The sample grids at ``paths`` next to each other, 8 px apart, in one PNG."""
    import PIL.Image

    grids = [PIL.Image.open(p).convert("RGB") for p in paths]
    width = sum(g.width for g in grids) + 8 * (len(grids) - 1)
    canvas = PIL.Image.new("RGB", (width, max(g.height for g in grids)), "white")
    x = 0
    for grid in grids:
        canvas.paste(grid, (x, 0))
        x += grid.width + 8
    canvas.save(out)
