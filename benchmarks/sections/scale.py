"""Section 4, scale: training throughput as the batch doubles, two CPU processes against one, and the cost of
training and sampling against the resolution and the UNet's width, in pixels and in a VAE's latents."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from harness import ROOT, free_port, run_child, timed, train_command
from sections.speed import trainer_vs_plain_loop


def measure(cfg, work: Path) -> dict:
    """Training throughput (samples/s) as the batch size doubles; two CPU processes against one."""
    rows = []
    for batch in cfg["batch_sizes"]:
        steps = max(10, cfg["speed_steps"] * 128 // batch // 4)
        out = work / f"scale-{batch}"
        run_child(train_command("flow-matching", "digits", 0, steps, out,
                                ["--train_batch_size", str(batch), "--use_ema", "false",
                                 "--num_sample_images", "4", "--num_inference_steps", "2"]),
                  cfg.get("in_process", False))
        train_metrics = json.loads((out / "metrics.json").read_text())
        sps = train_metrics["steps_per_second"]
        rows.append({"batch": batch, "steps": steps, "steps_per_second": sps, "samples_per_second": sps * batch,
                     "peak_memory_mib": train_metrics["peak_rss_mib"]})
        print(f"scale: batch {batch}: {sps * batch:.0f} samples/s", flush=True)
    processes = {}
    # quick mode leaves the two-process run out: its 2 launches cost more than the rest of the section, and the
    # suite trains two processes in tests of their own (tests/training, tests/methods)
    for n in (1, 2) if cfg.get("two_processes", True) else (1,):
        out = work / f"procs-{n}"
        steps = cfg["speed_steps"]
        common = train_command("flow-matching", "digits", 0, steps, out,
                               ["--train_batch_size", str(128 // n), "--use_ema", "false",
                                "--num_sample_images", "4", "--num_inference_steps", "2"])[3:]
        if n == 1:
            command = [sys.executable, "-m", "genzoo.training", *common]
        else:
            command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                       "--num_machines", "1", "--num_cpu_threads_per_process", "1", "--mixed_precision", "no",
                       "--dynamo_backend", "no", "--main_process_port", str(free_port()),  # not a busy 29500
                       "-m", "genzoo.training", *common]
        run_child(command, cfg.get("in_process", False))  # the two-process run is always a child
        sps = json.loads((out / "metrics.json").read_text())["steps_per_second"]
        processes[str(n)] = {"processes": n, "global_batch": 128, "steps_per_second": sps, "samples_per_second": sps * 128}
    return {"batch_sizes": rows, "processes": processes,
            "two_over_one": (processes["2"]["samples_per_second"] / processes["1"]["samples_per_second"]
                             if "2" in processes else None),
            **resolution_costs(cfg, work)}


def shapes_vae(cfg, work: Path) -> Path:
    """The autoencoder of the latent runs: the zoo's ``pipelines/vae-shapes`` (full run), or a tiny VAE trained for
    a few steps (quick mode: only the machinery is checked)."""
    if not cfg.get("in_process") and (ROOT / "pipelines" / "vae-shapes" / "model_index.json").is_file():
        return ROOT / "pipelines" / "vae-shapes"
    out = work / "quick-vae-shapes"
    if not (out / "model_index.json").is_file():
        run_child(train_command("vae", "shapes", 0, 2, out, ["--resolution", "16", "--num_samples", "32",
                                                            "--train_batch_size", "8", "--vae_block_out_channels",
                                                            "8,16,16", "--num_sample_images", "4"]), True)
    return out


def shapes_training_run(cfg, work: Path, resolution: int, widths, steps: int, vae: Path | None = None,
                        batch: int | None = None, extra=(), tag: str = "res") -> dict:
    """One flow-matching run on ``resolution`` x ``resolution`` shapes (in the latent space of ``vae`` if given):
    its steps/s and peak memory from its metrics.json."""
    r = cfg["resolution"]
    batch = batch or r["batch"]
    space = "latent" if vae is not None else "pixel"
    out = work / f"{tag}-{space}-{resolution}-{'x'.join(map(str, widths))}"
    options = ["--resolution", str(resolution), "--block_out_channels", ",".join(map(str, widths)),
               "--train_batch_size", str(batch), "--use_ema", "false", "--num_samples", str(r["images"]),
               "--num_sample_images", "4", "--num_inference_steps", "2", "--lr_warmup_steps", "0", *extra]
    if vae is not None:
        options += ["--vae", str(vae)]
    run_child(train_command("flow-matching", "shapes", 0, steps, out, options), cfg.get("in_process", False))
    m = json.loads((out / "metrics.json").read_text())
    sps = m["steps_per_second"]
    return {"space": space, "resolution": resolution, "widths": list(widths), "batch": batch, "steps": steps,
            "steps_per_second": sps, "samples_per_second": sps * batch, "peak_memory_mib": m["peak_rss_mib"],
            "model_shape": m.get("latent_shape") or [3, resolution, resolution], "parameters": m.get("parameters")}


def power_law(xs, ys) -> dict:
    """Least-squares fit of log y = k log x + c: ``{"exponent": k, "coefficient": e^c}``."""
    k, c = np.polyfit(np.log(np.asarray(xs, dtype=float)), np.log(np.asarray(ys, dtype=float)), 1)
    return {"exponent": float(k), "coefficient": float(math.exp(c))}


@torch.no_grad()
def sampling_seconds(cfg, resolution: int, vae_folder: Path | None) -> float:
    """Median seconds of one sampling call (``sampling_batch`` samples, ``sampling_steps`` Euler steps) of a
    randomly initialised (32, 64) flow-matching UNet at ``resolution``, in pixels or in ``vae_folder``'s latents
    (decoding included)."""
    import diffusers

    import genzoo

    r = cfg["resolution"]
    vae = genzoo.load_pipeline(vae_folder).vae if vae_folder is not None else None
    channels, size = (vae.config.latent_channels, resolution // 4) if vae is not None else (3, resolution)
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                                 block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                                 down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    pipe = genzoo.FlowMatchingPipeline(unet=unet, scheduler=genzoo.FlowMatchEulerScheduler(), vae=vae)
    pipe.set_progress_bar_config(disable=True)
    return timed(lambda: pipe(batch_size=r["sampling_batch"], num_inference_steps=r["sampling_steps"],
                              generator=torch.Generator().manual_seed(0), output_type="np"),
                 cfg.get("speed_repeats", 3))


def resolution_costs(cfg, work: Path) -> dict:
    """How the cost of training and sampling grows with the resolution (8 to 64) and the UNet's width, in pixels and
    in a VAE's latents (4x smaller on each side); the trainer against a plain loop at 32x32; power-law fits."""
    r = cfg["resolution"]
    pixel = [shapes_training_run(cfg, work, res, (32, 64), r["steps"][res]) for res in r["resolutions"]]
    for row in pixel:
        print(f"scale: pixel {row['resolution']}: {row['steps_per_second']:.2f} steps/s, {row['peak_memory_mib']} MiB",
              flush=True)
    middle = 32 if 32 in r["resolutions"] else r["resolutions"][-1]
    widths = [shapes_training_run(cfg, work, middle, w, r["steps"][middle]) for w in r["widths"]]
    vae = shapes_vae(cfg, work)
    latent = [shapes_training_run(cfg, work, res, (32, 64), r["steps"][res], vae=vae)
              for res in r["latent_resolutions"]]
    for row in latent:
        print(f"scale: latent {row['resolution']}: {row['steps_per_second']:.2f} steps/s", flush=True)
    sampling = [{"resolution": res, "pixel_seconds": sampling_seconds(cfg, res, None),
                 "latent_seconds": sampling_seconds(cfg, res, vae) if res in r["latent_resolutions"] else None}
                for res in r["resolutions"]]
    plain = trainer_vs_plain_loop(cfg, work, ("--dataset", "shapes", "--resolution", str(middle), "--num_samples",
                                              str(r["images"])), batch=r["batch"], steps=r["plain_steps"],
                                  repeats=r["plain_repeats"])
    pixels = [row["resolution"] ** 2 for row in pixel]
    fits = {
        "train_seconds_per_step_vs_pixels": power_law(pixels, [1 / row["steps_per_second"] for row in pixel]),
        "sampling_seconds_vs_pixels": power_law(pixels, [row["pixel_seconds"] for row in sampling]),
        "train_seconds_per_step_vs_width": power_law([w["widths"][0] for w in widths],
                                                     [1 / w["steps_per_second"] for w in widths]),
    }
    return {"resolution_pixel": pixel, "resolution_widths": widths, "resolution_latent": latent,
            "resolution_sampling": sampling, "trainer_vs_plain_shapes": plain, "resolution_fits": fits, "vae": str(vae)}


def report(sc: dict) -> list[str]:
    lines = ["## 4. Scale", "", "![Cost against resolution](scale.png)", "", "| batch | steps/s | samples/s | peak memory (MiB) |", "|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['steps_per_second']:.2f} | {r['samples_per_second']:.0f} | {r['peak_memory_mib']} |"
              for r in sc["batch_sizes"]]
    if sc.get("two_over_one") is None:
        lines += ["", "Two CPU processes against one: not measured in this run (quick mode).", ""]
    else:
        lines += ["", f"Two CPU processes (global batch 128) against one: {sc['two_over_one']:.2f} x the samples/s "
                  f"({sc['processes']['2']['samples_per_second']:.0f} vs "
                  f"{sc['processes']['1']['samples_per_second']:.0f}).", ""]
    return lines + (resolution_report(sc) if "resolution_pixel" in sc else [])


def resolution_report(sc: dict) -> list[str]:
    """Section 4's cost against resolution and width, pixel against latent, and the fits."""
    fits, plain = sc["resolution_fits"], sc["trainer_vs_plain_shapes"]
    latent = {row["resolution"]: row for row in sc["resolution_latent"]}
    batch = sc["resolution_pixel"][0]["batch"]
    lines = ["### Cost against resolution: pixels and latents", "",
             f"Flow matching on `shapes` (RGB), UNet (32, 64), batch {batch}, one process; latent runs in the space of "
             f"`{Path(sc['vae']).name}` (an AutoencoderKL, 4 latent channels, 4 x smaller on each side; its encoding "
             "is cached once before training and not counted in steps/s). Peak memory is the training process's "
             "resident set (data, Python and torch included).", "",
             "| resolution | pixel steps/s | pixel peak MiB | latent shape | latent steps/s | latent peak MiB | "
             "latent / pixel speed |", "|---|---|---|---|---|---|---|"]
    for row in sc["resolution_pixel"]:
        lat = latent.get(row["resolution"])
        cells = (["–"] * 4 if lat is None else
                 ["x".join(map(str, lat["model_shape"])), f"{lat['steps_per_second']:.2f}", f"{lat['peak_memory_mib']}",
                  f"{lat['steps_per_second'] / row['steps_per_second']:.1f} x"])
        lines.append(f"| {row['resolution']} | {row['steps_per_second']:.2f} | {row['peak_memory_mib']} | "
                     + " | ".join(cells) + " |")
    side = sc["resolution_widths"][0]["resolution"]
    lines += ["", f"| UNet widths ({side}x{side} pixels) | parameters | steps/s | peak MiB |", "|---|---|---|---|"]
    lines += [f"| {tuple(w['widths'])} | {sum((w['parameters'] or {}).values()):,} | {w['steps_per_second']:.2f} | "
              f"{w['peak_memory_mib']} |" for w in sc["resolution_widths"]]
    lines += ["", "| resolution | sampling s (pixels) | sampling s (latents, decode included) |", "|---|---|---|"]
    lines += [f"| {row['resolution']} | {row['pixel_seconds']:.3f} | "
              + ("–" if row["latent_seconds"] is None else f"{row['latent_seconds']:.3f}") + " |"
              for row in sc["resolution_sampling"]]
    t, smp, w = (fits["train_seconds_per_step_vs_pixels"], fits["sampling_seconds_vs_pixels"],
                 fits["train_seconds_per_step_vs_width"])
    return lines + [
        "",
        f"Fits (least squares in log-log): a training step costs ∝ pixels^{t['exponent']:.2f}, a sampling call "
        f"∝ pixels^{smp['exponent']:.2f}, and a training step at {side}x{side} ∝ width^{w['exponent']:.2f} (the first "
        "level's width; the others double it). An exponent below 1 in pixels means fixed costs (the time embedding, "
        "the optimiser, Python) still weigh at the small sizes.",
        "",
        f"Trainer against a plain PyTorch loop of the same model at {'x'.join(map(str, plain['sample_shape']))} "
        f"(batch {plain['batch']}): {plain['genzoo_steps_per_second']:.2f} against "
        f"{plain['plain_steps_per_second']:.2f} steps/s, **{plain['ratio_genzoo_over_plain']:.3f} x** of plain speed "
        "(target ≥ 0.95).", ""]


def plot(sc: dict, path: Path) -> None:
    """Training steps/s and sampling seconds against the resolution, pixels and latents (log-log)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    for rows, label in ((sc["resolution_pixel"], "pixels"), (sc["resolution_latent"], "latents (VAE, 4x smaller)")):
        ax.plot([r["resolution"] for r in rows], [r["steps_per_second"] for r in rows], marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="resolution (px)", ylabel="training steps/s",
           title=f"training, batch {sc['resolution_pixel'][0]['batch']}")
    ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    rows = sc["resolution_sampling"]
    ax.plot([r["resolution"] for r in rows], [r["pixel_seconds"] for r in rows], marker="o", label="pixels")
    latent = [r for r in rows if r["latent_seconds"] is not None]
    ax.plot([r["resolution"] for r in latent], [r["latent_seconds"] for r in latent], marker="o",
            label="latents + decode")
    ax.set(xscale="log", yscale="log", xlabel="resolution (px)", ylabel="seconds per sampling call",
           title="sampling")
    ax.legend()
    for axis in fig.axes:
        axis.set_xticks([r["resolution"] for r in rows], [str(r["resolution"]) for r in rows])
        axis.set_xticks([], minor=True)
    fig.savefig(path, dpi=110)
