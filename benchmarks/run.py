"""The genzoo benchmark: the four families side by side, quality against model calls, speed ratios, scale.

    python benchmarks/run.py            # the full run; writes benchmarks/RESULTS.md, results.json, quality_vs_nfe.png
    python benchmarks/run.py --quick    # the same sections on tiny budgets (about 2 minutes on a 2-core CPU)

Run it with nothing else running: speeds are measured as ratios of two things timed side by side in this one
process, but a busy machine still adds noise. Every number in RESULTS.md comes from the run that wrote it.

The full run trains every model in a process of its own, so each run's peak memory is its own. ``--quick`` only
checks that every section runs and writes its results: it trains in this process (no child pays the seconds of
importing torch and Diffusers again; the memory figures are then this process's peak), except the two-process run
of section 4, which needs ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL = dict(seeds=(0, 1, 2), image_steps=1000, point_steps=1500, eval_samples=1000,
            nfe=(1, 2, 4, 8, 16, 32, 100, 1000), nfe_samples=500, speed_steps=60, batch_sizes=(8, 16, 32, 64, 128, 256, 512),
            guidance_train_steps=2000, guidance_samples=300, guidance_sampling_steps={"ddpm": 100, "flow-matching": None},
            sampling_steps=None, point_sets=("8gaussians", "moons", "checkerboard"),
            few_step=dict(datasets=("moons", "8gaussians", "digits"), point_steps=2000, image_steps=1000,
                          point_pairs=10000, image_pairs=5000, teacher_steps=32, eval_samples=1000,
                          calls=(1, 2, 4, 8, 16, 32)),
            resolution=dict(resolutions=(8, 16, 32, 64), widths=((16, 32), (32, 64), (64, 128)), batch=32,
                            images=512, steps={8: 120, 16: 60, 32: 24, 64: 8}, latent_resolutions=(16, 32, 64),
                            plain_steps=16, plain_repeats=3, sampling_steps=20, sampling_batch=16),
            latent=dict(resolution=32, budget_seconds=420, batch=32, eval_samples=500, eval_steps=20, probe_steps=15,
                        pixel_widths=(16, 32, 64), latent_widths=(64, 128)))
QUICK = dict(seeds=(0,), image_steps=6, image_batch=32, point_steps=10, eval_samples=100, grid_samples=8,
             nfe=(1, 4), nfe_samples=100, speed_steps=4, batch_sizes=(8, 64),
             guidance_train_steps=4, guidance_samples=30, guidance_sampling_steps={"ddpm": 4, "flow-matching": 4},
             sampling_steps=8, point_sets=("moons",), in_process=True, speed_repeats=1,
             few_step=dict(datasets=("moons", "digits"), point_steps=20, image_steps=10, point_pairs=64,
                           image_pairs=64, teacher_steps=2, eval_samples=100, calls=(1, 4)),
             resolution=dict(resolutions=(8, 16), widths=((8, 16), (16, 32)), batch=8, images=32,
                             steps={8: 2, 16: 2}, latent_resolutions=(16,), plain_steps=2, plain_repeats=1,
                             sampling_steps=2, sampling_batch=2),
             latent=dict(resolution=16, budget_seconds=3, batch=8, eval_samples=50, eval_steps=2, probe_steps=2,
                         pixel_widths=(8, 16), latent_widths=(8, 16), images=32))
SECTIONS = ("quality", "calls", "speed", "scale", "guidance", "few-step", "latent")
IMAGE_SETS = ("digits", "shapes")
GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0, 8.0)
#: (method, conditioning, extra trainer options): the conditional models of section 5, all on digits
GUIDED_RUNS = (
    ("ddpm", "class", ()),
    ("flow-matching", "class", ()),
    ("ddpm", "text", ()),
    ("flow-matching", "text", ()),
    ("flow-matching", "text", ("--train_text_encoder",)),
)


# ------------------------------------------------------------------------------------------------ helpers
def methods_for(dataset: str) -> list[str]:
    """Every registered method (genzoo's and installed plugins') that trains on ``dataset``'s kind of data."""
    from genzoo import registry

    kind = "image" if dataset in IMAGE_SETS else "vector"
    return [name for name in registry.names("method") if kind in registry.get("method", name).data_kinds]


def run_child(command: list[str], in_process: bool = False) -> float:
    """Run a training process and return its wall-clock seconds (its peak memory is in its metrics.json).

    ``in_process`` (quick mode) runs a ``python -m genzoo.training ...`` command in this process instead, its output
    kept for the error message only: no import cost, but the peak memory in its metrics.json is this process's."""
    start = time.perf_counter()
    if in_process and command[1:3] == ["-m", "genzoo.training"]:
        from genzoo.training import parse_args, train

        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                train(parse_args(command[3:], prog="train.py"))
        except Exception as exc:
            message = f"{' '.join(command)} failed (in process): {exc!r}\n{output.getvalue()[-3000:]}"
            raise RuntimeError(message) from exc
        return time.perf_counter() - start
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-6000:]}")
    return time.perf_counter() - start


def free_port() -> int:
    """A TCP port nothing listens on now, for the rendezvous of a two-process run."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_command(method, dataset, seed, steps, output_dir, extra=(), sampling_steps=None, image_batch=None,
                  grid_samples=64):
    """The trainer's command line for one run; ``sampling_steps`` sets the steps of its sample grids (``None``: the
    pipeline's default, as in the full run), ``image_batch`` the batch size on digits (``None``: the trainer's
    default, 128, as in the full run), ``grid_samples`` the samples in its grid (64 in the full run)."""
    args = [sys.executable, "-m", "genzoo.training", "--method", method, "--dataset", dataset, "--seed", str(seed),
            "--max_train_steps", str(steps), "--output_dir", str(output_dir), "--logger", "none",
            "--checkpointing_steps", str(10 * steps), "--save_images_steps", str(10 * steps),
            "--num_sample_images", str(grid_samples), "--overwrite_output_dir", *extra]  # a rerun replaces its own
    if sampling_steps is not None:
        args += ["--num_inference_steps", str(sampling_steps)]
    if dataset not in IMAGE_SETS:
        args += ["--train_batch_size", "256", "--lr_warmup_steps", "50"]
    elif image_batch is not None:
        args += ["--train_batch_size", str(image_batch)]
    return args


def mean_spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values)) if len(values) > 1 else 0.0


def fmt(mean, spread, digits=3):
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {spread:.{digits}f}" if spread else f"{mean:.{digits}f}"


# ------------------------------------------------------------------------------------------------ 1. quality
def quality(cfg, work: Path) -> dict:
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


# ------------------------------------------------------------------------------------------------ 2. model calls
def quality_vs_calls(cfg, work: Path) -> dict:
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


def plot_curves(curves, path: Path, legend_limit: int = 8):
    """One panel per data set, quality against model calls (log-log), every curve a line (a one-point curve a
    single marker). A label keeps its style in every panel; with more than ``legend_limit`` labels one legend
    beside the panels replaces the legend in each."""
    import matplotlib as mpl
    from matplotlib.figure import Figure

    datasets = sorted({c["dataset"] for c in curves})
    labels = list(dict.fromkeys(c["sampler"] for c in curves))
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {label: dict(color=colors[i % len(colors)], marker="osD^v<>p"[i % 7],
                          linestyle=("-", "--", ":")[i // len(colors) % 3]) for i, label in enumerate(labels)}
    shared_legend = len(labels) > legend_limit
    fig = Figure(figsize=(5 * len(datasets) + 3 * shared_legend, 4), layout="constrained")
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(1, len(datasets), i + 1)
        for curve in (c for c in curves if c["dataset"] == dataset):
            xs = [p["calls"] for p in curve["points"]]
            ys = [p[curve["metric"]] for p in curve["points"]]
            ax.plot(xs, ys, label=curve["sampler"], markersize=9 if len(xs) == 1 else 5, **styles[curve["sampler"]])
            ax.set_ylabel(curve["metric"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        if max(p["calls"] for c in curves for p in c["points"]) <= 64:  # few calls: label them 1, 2, 4, ...
            ax.xaxis.set_major_locator(mpl.ticker.LogLocator(base=2))
            ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
        ax.set_xlabel("model calls per sample")
        ax.set_title(dataset)
        if not shared_legend:
            ax.legend(fontsize=8)
    if shared_legend:
        handles = [mpl.lines.Line2D([], [], label=label, **style) for label, style in styles.items()]
        fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fig.savefig(path, dpi=100)


# ------------------------------------------------------------------------------------------------ 3. speed
def timed(fn, repeats=5) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def trainer_vs_plain_loop(cfg, work: Path, data=("--dataset", "digits"), batch: int = 128, steps: int | None = None,
                          repeats: int | None = None) -> dict:
    """Steps/s of genzoo's trainer against the hand-written PyTorch loop, same UNet, batch, data and loss (the
    trainer's default flow-matching UNet on ``data``, 8x8 digits unless told otherwise)."""
    from genzoo.data import digits_dataset  # noqa: F401  (import cost outside the timing)
    from genzoo.training import parse_args
    from genzoo.training.trainer import Trainer, reset_accelerate_state

    steps = cfg["speed_steps"] if steps is None else steps
    args = parse_args([*data, "--output_dir", str(work / "speed"), "--logger", "none", "--train_batch_size", str(batch),
                       "--max_train_steps", str(10**9), "--checkpointing_steps", str(10**9),
                       "--save_images_steps", str(10**9), "--use_ema", "false"])
    trainer = Trainer(args)
    trainer.setup()
    batches = []
    while len(batches) < steps:  # an epoch of digits is only 11 batches of 128
        batches += [b for _, b in zip(range(steps - len(batches)), trainer.dataloader)]
    model = trainer.raw["unet"]
    scheduler = trainer.method.training_scheduler
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def genzoo_steps():
        for batch in batches:
            trainer._update([batch])
            trainer.global_step += 1

    def plain_steps():  # what every tutorial writes
        for batch in batches:
            x = batch["sample"]
            noise = torch.randn_like(x)
            t = torch.rand(x.shape[0]) * 1000
            noisy = scheduler.add_noise(x, noise, t)
            loss = torch.nn.functional.mse_loss(model(noisy, t).sample, x - noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    ratios, pairs = [], []
    for _ in range(repeats or cfg.get("speed_repeats", 3)):  # interleaved, so drift in machine speed hits both
        g, p = timed(genzoo_steps, 1), timed(plain_steps, 1)
        pairs.append((steps / g, steps / p))
        ratios.append(p / g)
    trainer.release_output_dir()  # run() releases it; this loop drove the trainer by hand
    reset_accelerate_state()
    genzoo_sps = statistics.median(a for a, _ in pairs)
    plain_sps = statistics.median(b for _, b in pairs)
    return {"genzoo_steps_per_second": genzoo_sps, "plain_steps_per_second": plain_sps,
            "ratio_genzoo_over_plain": statistics.median(ratios), "steps": steps, "batch": batch,
            "sample_shape": list(trainer.data.sample_shape)}


def scheduler_step_ratios(repeats: int = 5) -> dict:
    """Time per ``step`` with a trivial model, genzoo vs Diffusers (the schedulers' own cost); the median of
    ``repeats`` runs of 1000 steps each."""
    import diffusers

    import genzoo

    x0 = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    results = {}
    for name, ours, theirs in (
        ("DDPMScheduler", genzoo.DDPMScheduler(), diffusers.DDPMScheduler()),
        ("FlowMatchEuler", genzoo.FlowMatchEulerScheduler(), diffusers.FlowMatchEulerDiscreteScheduler()),
    ):
        def loop(s):
            def run():
                s.set_timesteps(1000)
                x = x0
                g = torch.Generator().manual_seed(0)
                for t in s.timesteps:
                    kwargs = {"generator": g}
                    x = s.step(x * 0.1, t, x, **kwargs).prev_sample
            return run
        a, b = timed(loop(ours), repeats), timed(loop(theirs), repeats)
        results[name] = {"genzoo_us_per_step": a / 1000 * 1e6, "diffusers_us_per_step": b / 1000 * 1e6,
                         "ratio_genzoo_over_diffusers": a / b}
    return results


def pipeline_ratio(pairs: int = 7) -> dict:
    """A full DDPM sampling run: genzoo.DDPMPipeline against diffusers.DDPMPipeline, same UNet and step count; the
    median over ``pairs`` runs of each, interleaved."""
    import diffusers

    import genzoo

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64),
                                 norm_num_groups=8, layers_per_block=1,
                                 down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    ours = genzoo.DDPMPipeline(unet=unet, scheduler=genzoo.DDPMScheduler())
    theirs = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler())
    for p in (ours, theirs):
        p.set_progress_bar_config(disable=True)
    steps = 100

    def run(p):
        return lambda: p(batch_size=16, generator=torch.Generator().manual_seed(0), num_inference_steps=steps,
                         output_type="np")

    pairs = [(timed(run(ours), 1), timed(run(theirs), 1)) for _ in range(pairs)]  # interleaved against drift
    a, b = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    return {"steps": steps, "batch": 16, "genzoo_seconds": a, "diffusers_seconds": b,
            "ratio_genzoo_over_diffusers": statistics.median(p[0] / p[1] for p in pairs)}


# ------------------------------------------------------------------------------------------------ 4. scale
def scale(cfg, work: Path) -> dict:
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
    for n in (1, 2):
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
            "two_over_one": processes["2"]["samples_per_second"] / processes["1"]["samples_per_second"],
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


# ------------------------------------------------------------------------------------------------ 7. latent
def latent_vs_pixel(cfg, work: Path) -> dict:
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


def latent_report(section: dict) -> list[str]:
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


def plot_scale(sc: dict, path: Path) -> None:
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


# ------------------------------------------------------------------------------------------------ report
# ------------------------------------------------------------------------------------------------ 5. guidance
def guidance(cfg, work: Path) -> dict:
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


def guidance_report(section: dict, cfg: dict) -> list[str]:
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


# ------------------------------------------------------------------------------------------------ 6. few-step
#: The peer's two flow matchers (torchcfm, Tong et al. 2023), trained and sampled outside genzoo.
PEER_MATCHERS = (("torchcfm CFM (Euler)", "ConditionalFlowMatcher"),
                 ("torchcfm OT-CFM (Euler)", "ExactOptimalTransportConditionalFlowMatcher"))
#: Width of torchcfm's ``MLP``: its default (64, as its 2-D examples) on the 2-D sets; 256 on the 64-d digits, where
#: torchcfm has no MLP example and a 64-wide network would be narrower than its input.
PEER_WIDTH = {"vector": 64, "image": 256}
PEER_LEARNING_RATE = 1e-3  # torchcfm's examples: torch.optim.Adam(model.parameters()), Adam's default rate


@contextlib.contextmanager
def environment(**values):
    """Set environment variables for the ``with`` block (children and in-process runs see them), then restore."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def peer_status() -> dict:
    try:
        import ot  # noqa: F401  (POT: torchcfm's exact OT plan)
        import torchcfm
    except ImportError as exc:
        return {"installed": False, "reason": f"not installed ({exc}); pip install torchcfm pot --no-deps"}
    return {"installed": True, "version": torchcfm.__version__}


class EulerFlowSampler:
    """A torchcfm velocity model (input ``[x, t]``, as its ``MLP(dim, time_varying=True)``) behind the call that
    :func:`genzoo.metrics.evaluate.draw_samples` makes, so it is scored by exactly genzoo's evaluation: a plain Euler
    loop from noise (t = 0) to data (t = 1), ``num_inference_steps`` model calls, samples returned as genzoo's
    pipelines return them (vectors as they are, images in [0, 1], channels last)."""

    conditioning = "none"

    def __init__(self, model, sample_shape):
        self.model, self.sample_shape = model.eval(), tuple(sample_shape)

    def set_progress_bar_config(self, **kwargs):
        pass

    @torch.no_grad()
    def __call__(self, batch_size, generator, num_inference_steps, output_type="np"):
        from genzoo.pipelines.base import VectorPipelineOutput

        x = torch.randn(batch_size, math.prod(self.sample_shape), generator=generator)
        for i in range(num_inference_steps):
            t = torch.full((batch_size, 1), i / num_inference_steps)
            x = x + self.model(torch.cat([x, t], dim=-1)) / num_inference_steps
        if len(self.sample_shape) == 1:
            return VectorPipelineOutput(samples=x.numpy())
        images = ((x.reshape(batch_size, *self.sample_shape) + 1) / 2).clamp(0, 1)
        return SimpleNamespace(images=images.permute(0, 2, 3, 1).numpy())


def train_peer(matcher: str, dataset: str, steps: int, batch: int, seed: int = 0) -> tuple[EulerFlowSampler, float]:
    """torchcfm's ``matcher`` (sigma = 0) with its ``MLP``, trained by the plain loop of its examples (Adam) on the
    data genzoo's trainer trains on (``--dataset`` with ``--seed``: images flattened, in [-1, 1]), in shuffled
    epochs of ``batch``; returns the sampler and the training seconds (data loading included)."""
    import torchcfm.conditional_flow_matching as cfm
    from torchcfm.models import MLP

    from genzoo.data import load_training_data

    start = time.perf_counter()
    data = load_training_data(argparse.Namespace(dataset=dataset, seed=seed))
    x = torch.stack([data.dataset[i]["sample"] for i in range(len(data))])
    shape, x = x.shape[1:], x.flatten(1)
    torch.manual_seed(seed)
    np.random.seed(seed)  # torchcfm draws from the OT plan with numpy's global generator
    model = MLP(dim=x.shape[1], time_varying=True, w=PEER_WIDTH[data.kind])
    optimizer = torch.optim.Adam(model.parameters(), lr=PEER_LEARNING_RATE)
    flow_matcher = getattr(cfm, matcher)(sigma=0.0)
    order = torch.Generator().manual_seed(seed)
    batches = (x[rows] for _ in itertools.count() for rows in torch.randperm(len(x), generator=order).split(batch)
               if len(rows) == batch)
    for x1 in itertools.islice(batches, steps):
        t, xt, ut = flow_matcher.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
        loss = torch.mean((model(torch.cat([xt, t[:, None]], dim=-1)) - ut) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return EulerFlowSampler(model, shape), time.perf_counter() - start


def curve_points(pipe, dataset: str, metric: str, budgets, steps_for, num_samples: int) -> list[dict]:
    """Quality of ``pipe`` at each budget of model calls per sample: sampled with ``steps_for(budget)`` steps
    (``None``: a one-pass pipeline; a budget whose steps repeat the previous one's is skipped)."""
    from genzoo.metrics.evaluate import evaluate_pipeline

    points = []
    for budget in budgets:
        steps = steps_for(budget)
        if points and steps == points[-1]["steps"]:
            continue
        result = evaluate_pipeline(pipe, dataset, num_samples=num_samples, steps=steps, seed=0, likelihood=False)
        calls = steps if isinstance(pipe, EulerFlowSampler) else result["model_calls_per_sample"]
        points.append({"budget": budget, "calls": calls, "steps": steps, metric: result[metric],
                       "sampling_seconds": result["sampling_seconds"]})
    return points


def few_step(cfg, work: Path) -> dict:
    """Every method, trained here on the same budget and seed, at 1-32 model calls per sample on each data set;
    the peer (torchcfm) trained and scored the same way."""
    import diffusers

    import genzoo
    from genzoo.schedulers import diffusers_scheduler

    fs = cfg["few_step"]
    budget = {**fs, "image_batch": cfg.get("image_batch", 128), "point_batch": 256, "seed": 0,
              "in_process": cfg.get("in_process", False)}
    peer = peer_status()
    cache = work / "few-step-cache"  # GENZOO_CACHE of the reflow runs: each benchmark run makes (and times) its pairs
    shutil.rmtree(cache, ignore_errors=True)
    euler, heun = (lambda calls: calls), (lambda calls: (calls + 1) // 2)  # Heun: 2 * steps - 1 calls
    curves, ot_cost = [], {}
    for dataset in fs["datasets"]:
        image = dataset == "digits"
        metric = "digits_fd" if image else "w2"
        steps = fs["image_steps" if image else "point_steps"]
        teacher = ["--num_pairs", str(fs["image_pairs" if image else "point_pairs"]),
                   "--teacher_steps", str(fs["teacher_steps"])]

        def train(name, method, extra=(), sampling_steps=cfg["sampling_steps"], dataset=dataset, steps=steps):
            """Train ``method`` (seed 0) into work/few-step-NAME-DATASET; its folder and wall-clock seconds."""
            out = work / f"few-step-{name}-{dataset}"
            command = train_command(method, dataset, 0, steps, out, extra, sampling_steps=sampling_steps,
                                    image_batch=cfg.get("image_batch"), grid_samples=cfg.get("grid_samples", 64))
            with environment(GENZOO_CACHE=str(cache)):
                seconds = run_child(command, cfg.get("in_process", False))
            print(f"few-step: trained {name} on {dataset}: {seconds:.0f} s", flush=True)
            return out, seconds

        fm, fm_seconds = train("fm", "flow-matching")
        ot, ot_seconds = train("ot-fm", "flow-matching", ["--coupling", "ot"])
        reflow, reflow_seconds = train("reflow", "rectified-flow", ["--teacher", str(ot), *teacher])
        distilled, distill_seconds = train("distill", "rectified-flow",
                                           ["--teacher", str(reflow), "--distill_steps", "1", *teacher],
                                           sampling_steps=None)  # trained for one step: its default
        meanflow, meanflow_seconds = train("meanflow", "meanflow", ["--coupling", "ot"])  # as the zoo's
        ddpm, ddpm_seconds = train("ddpm", "ddpm")
        gan, gan_seconds = train("gan", "gan")
        vae, vae_seconds = train("vae", "vae")
        sps = [json.loads((out / "metrics.json").read_text())["steps_per_second"] for out in (fm, ot)]
        ot_cost[dataset] = {"fm_steps_per_second": sps[0], "ot_steps_per_second": sps[1],
                            "ot_over_fm": sps[1] / sps[0]}

        # (label, method, model folder, training seconds (with the teacher chain), scheduler from the saved one, steps)
        lines = [
            ("flow matching (Euler)", "flow-matching", fm, fm_seconds, None, euler),
            ("flow matching (Heun)", "flow-matching", fm, fm_seconds,
             lambda s: genzoo.FlowMatchHeunScheduler.from_config(s.config), heun),
            ("OT flow matching (Euler)", "flow-matching --coupling ot", ot, ot_seconds, None, euler),
            ("reflow of OT-FM (Euler)", "rectified-flow", reflow, ot_seconds + reflow_seconds, None, euler),
            ("distilled reflow (1 step)", "rectified-flow --distill_steps 1", distilled,
             ot_seconds + reflow_seconds + distill_seconds, None, lambda calls: 1 if calls == 1 else None),
            ("MeanFlow + OT", "meanflow --coupling ot", meanflow, meanflow_seconds, None, euler),
            ("DDPM (DDPMScheduler)", "ddpm", ddpm, ddpm_seconds, None, euler),
            ("DDPM (Diffusers DDIMScheduler)", "ddpm", ddpm, ddpm_seconds,
             lambda s: diffusers.DDIMScheduler.from_config(s.config), euler),
            ("DDPM (Diffusers DPMSolverMultistep)", "ddpm", ddpm, ddpm_seconds,
             lambda s: diffusers_scheduler(diffusers.DPMSolverMultistepScheduler, s), euler),
            ("DDPM (Diffusers UniPCMultistep)", "ddpm", ddpm, ddpm_seconds,
             lambda s: diffusers_scheduler(diffusers.UniPCMultistepScheduler, s), euler),
            ("GAN", "gan", gan, gan_seconds, None, lambda calls: None),
            ("VAE", "vae", vae, vae_seconds, None, lambda calls: None),
        ]
        for label, method, out, seconds, scheduler, steps_for in lines:
            pipe = genzoo.load_pipeline(out)
            if scheduler is not None:
                pipe.scheduler = scheduler(pipe.scheduler)
            one_call = steps_for(2) is None  # GAN, VAE and the distilled model: a single point at 1 call
            points = curve_points(pipe, dataset, metric, fs["calls"][:1] if one_call else fs["calls"], steps_for,
                                  fs["eval_samples"])
            curves.append({"sampler": label, "method": method, "dataset": dataset, "metric": metric,
                           "train_seconds": round(seconds, 1), "points": points})
            print(f"few-step: {label} on {dataset}: {[round(p[metric], 3) for p in points]}", flush=True)
        if peer["installed"]:
            batch = budget["image_batch"] if image else budget["point_batch"]
            for label, matcher in PEER_MATCHERS:
                sampler, seconds = train_peer(matcher, dataset, steps, batch)
                points = curve_points(sampler, dataset, metric, fs["calls"], euler, fs["eval_samples"])
                curves.append({"sampler": label, "method": f"torchcfm {matcher}", "dataset": dataset,
                               "metric": metric, "train_seconds": round(seconds, 1), "points": points})
                print(f"few-step: {label} on {dataset}: {[round(p[metric], 3) for p in points]}", flush=True)
    return {"budget": budget, "peer": peer, "curves": curves, "ot_cost": ot_cost,
            "peer_ratios": peer_ratios(curves, fs["datasets"]) if peer["installed"] else {}}


def peer_ratios(curves, datasets) -> dict:
    """genzoo over torchcfm, per data set, from this one run (below 1: genzoo's samples are closer to the data)."""
    ratios = {}
    for dataset in datasets:
        at = {c["sampler"]: {p["budget"]: p[c["metric"]] for p in c["points"]} for c in curves if c["dataset"] == dataset}
        most = max(at["torchcfm CFM (Euler)"])

        def best_one_step(peer, at=at):
            name = min((s for s in at if s.startswith("torchcfm") == peer), key=lambda s: at[s][1])
            return name, at[name][1]

        pairs = [("OT-FM / OT-CFM at 1 call", ("OT flow matching (Euler)", 1), ("torchcfm OT-CFM (Euler)", 1)),
                 (f"OT-FM / OT-CFM at {most} calls", ("OT flow matching (Euler)", most), ("torchcfm OT-CFM (Euler)", most)),
                 ("FM / CFM at 1 call", ("flow matching (Euler)", 1), ("torchcfm CFM (Euler)", 1)),
                 (f"FM / CFM at {most} calls", ("flow matching (Euler)", most), ("torchcfm CFM (Euler)", most))]
        rows = [{"comparison": name, "genzoo": at[ours][b1], "torchcfm": at[theirs][b2],
                 "ratio": at[ours][b1] / at[theirs][b2]} for name, (ours, b1), (theirs, b2) in pairs]
        (ours, mine), (theirs, peer) = best_one_step(False), best_one_step(True)
        rows.append({"comparison": f"best one-step: {ours} / {theirs}", "genzoo": mine, "torchcfm": peer,
                     "ratio": mine / peer})
        ratios[dataset] = rows
    return ratios


def few_step_report(section: dict) -> list[str]:
    b, peer = section["budget"], section["peer"]
    calls = b["calls"]
    lines = [
        "## 6. Few-step and one-step: quality against calls, all methods", "",
        "![few-step](few_step.png)", "",
        f"Every model trained in this section, seed {b['seed']}, the same budget for all: {b['point_steps']} optimiser "
        f"steps of batch {b['point_batch']} on the 2-D sets, {b['image_steps']} steps of batch {b['image_batch']} on "
        f"digits; each method's default model and learning rate. Reflow (`--method rectified-flow --teacher <OT-FM>`) "
        f"and its one-step distillation (`--teacher <reflow> --distill_steps 1`) each train on "
        f"{b['point_pairs']} (2-D) / {b['image_pairs']} (digits) noise-sample pairs of their teacher, drawn with "
        f"{b['teacher_steps']} Euler steps (`--teacher_steps`). Quality: W2 (2-D) or digits-FD on {b['eval_samples']} "
        "seeded samples against held-out data, lower is better, at each budget of model calls per sample. Heun "
        "makes 2 x steps - 1 calls: it is listed under the largest budget its calls fit, its calls in brackets. "
        "GAN, VAE and the distilled model sample in one call (the distilled model is trained for one step only). "
        "Train seconds: wall-clock of training, from the start of the run to the saved model"
        + (" (each run in a process of its own, import of torch and Diffusers included)" if not b.get("in_process")
           else "") + "; the reflow model's includes its OT-FM teacher's, the distilled model's the whole chain "
        "(OT-FM + reflow pair generation and training + distillation pair generation and training). Heun and the "
        "Diffusers solvers sample the FM and DDPM models above, so they share their training time.", "",
    ]
    for dataset in b["datasets"]:
        rows = [c for c in section["curves"] if c["dataset"] == dataset]
        lines += [f"**{dataset}** ({rows[0]['metric']})", "",
                  "| method | " + " | ".join(f"{n} call{'s' * (n > 1)}" for n in calls) + " | train seconds |",
                  "|---|" + "---:|" * (len(calls) + 1)]
        for curve in rows:
            by_budget = {p["budget"]: p for p in curve["points"]}
            cells = []
            for n in calls:
                p = by_budget.get(n)
                cells.append("–" if p is None else f"{p[curve['metric']]:.3f}"
                             + (f" ({p['calls']})" if p["calls"] != n else ""))
            lines.append(f"| {curve['sampler']} | " + " | ".join(cells) + f" | {curve['train_seconds']:.1f} |")
        cost = section["ot_cost"][dataset]
        lines += ["", f"OT coupling's cost per training step on {dataset}: {cost['ot_over_fm']:.2f} x FM's steps/s "
                  f"({cost['ot_steps_per_second']:.1f} against {cost['fm_steps_per_second']:.1f}).", ""]
    if not peer["installed"]:
        lines += [f"The peer, torchcfm, was {peer['reason']}: no peer comparison in this run.", ""]
        return lines
    lines += [f"**Peer: torchcfm {peer['version']}**, `ConditionalFlowMatcher(sigma=0.0)` and "
              "`ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)` with its `MLP(dim, time_varying=True, "
              f"w={PEER_WIDTH['vector']})` on the 2-D sets (w={PEER_WIDTH['image']} on the 64-d flattened digits), "
              f"trained by a plain loop with Adam at {PEER_LEARNING_RATE:g} (its examples' rate) on the same training "
              "data, steps, batch and seed, in this process (no import cost), without EMA; sampled with a plain Euler "
              "loop and scored by the same evaluation on the same reference. Ratios from this one run "
              "(genzoo / torchcfm; below 1: genzoo is closer to the data):", "",
              "| data set | comparison | genzoo | torchcfm | ratio |", "|---|---|---:|---:|---:|"]
    for dataset, rows in section["peer_ratios"].items():
        lines += [f"| {dataset} | {r['comparison']} | {r['genzoo']:.3f} | {r['torchcfm']:.3f} | {r['ratio']:.2f} |"
                  for r in rows]
    return lines + [""]


def quality_report(results: dict) -> list[str]:
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


def calls_report(section: dict) -> list[str]:
    lines = ["## 2. Quality against model calls", "", "![quality vs calls](quality_vs_nfe.png)", ""]
    for curve in section["curves"]:
        pts = ", ".join(f"{p['calls']}: {p[curve['metric']]:.3f}" for p in curve["points"])
        lines.append(f"- {curve['sampler']}, {curve['dataset']} ({curve['metric']} by calls): {pts}")
    return lines + [""]


def speed_report(speed: dict) -> list[str]:
    lines = ["## 3. Speed (ratios measured side by side in one process)", "",
             "| comparison | genzoo | baseline | ratio | target |", "|---|---|---|---|---|",
             f"| trainer vs plain PyTorch loop (steps/s, FM UNet, batch 128) | {speed['trainer']['genzoo_steps_per_second']:.2f} | "
             f"{speed['trainer']['plain_steps_per_second']:.2f} | {speed['trainer']['ratio_genzoo_over_plain']:.3f} x of plain speed | ≥ 0.95 |"]
    for name, r in speed["schedulers"].items():
        lines.append(f"| {name}.step vs Diffusers (µs/step) | {r['genzoo_us_per_step']:.1f} | {r['diffusers_us_per_step']:.1f} | "
                     f"{r['ratio_genzoo_over_diffusers']:.3f} x the time | ≤ 1 |")
    p = speed["pipeline"]
    return lines + [f"| DDPMPipeline vs diffusers.DDPMPipeline ({p['steps']} steps, batch {p['batch']}, s) | {p['genzoo_seconds']:.3f} | "
                    f"{p['diffusers_seconds']:.3f} | {p['ratio_genzoo_over_diffusers']:.3f} x the time | ≤ 1 |", ""]


def scale_report(sc: dict) -> list[str]:
    lines = ["## 4. Scale", "", "![Cost against resolution](scale.png)", "", "| batch | steps/s | samples/s | peak memory (MiB) |", "|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['steps_per_second']:.2f} | {r['samples_per_second']:.0f} | {r['peak_memory_mib']} |"
              for r in sc["batch_sizes"]]
    lines += ["", f"Two CPU processes (global batch 128) against one: {sc['two_over_one']:.2f} x the samples/s "
              f"({sc['processes']['2']['samples_per_second']:.0f} vs {sc['processes']['1']['samples_per_second']:.0f}).", ""]
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


def write_report(results: dict, out: Path, command: str):
    """RESULTS.md from ``results``: every section it holds (a partial run with no earlier results has only its own)."""
    from genzoo.files import atomic_write_text

    lines = [
        "# genzoo benchmark results", "",
        f"Command: `{command}`  ",
        f"Machine: {results['machine']}  ",
        f"Versions: {results['versions']}  ",
        f"Total time: {results['total_seconds'] / 60:.1f} minutes" + (
            " (quick mode: tiny budgets, not results; the models trained in the benchmark's own process, so peak "
            "memory is that process's)" if results["quick"] else ""),
        "",
        *[f"Section(s) {', '.join(r['sections'])} rerun afterwards with `--sections` ({r['seconds']:.0f} s)  "
          for r in results.get("reruns", [])],
        "",
    ]
    if "quality" in results:
        lines += quality_report(results)
    if "quality_vs_calls" in results:
        lines += calls_report(results["quality_vs_calls"])
    if "speed" in results:
        lines += speed_report(results["speed"])
    if "scale" in results:
        lines += scale_report(results["scale"])
    if "guidance" in results:
        lines += guidance_report(results["guidance"], {**results["config"], **results.get("guidance_config", {})})
    if "few_step" in results:
        lines += few_step_report(results["few_step"])
    if "latent" in results:
        lines += latent_report(results["latent"])
    atomic_write_text(out / "RESULTS.md", "\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the machinery, not the models")
    parser.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md, results.json and the plot go")
    parser.add_argument("--work", type=Path, default=None, help="where the trained models go (default OUT/work)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="rerun only these sections (comma-separated), keeping the others from OUT/results.json")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    sections = set(args.sections.split(","))
    if not sections <= set(SECTIONS):
        parser.error(f"--sections {args.sections}: unknown {sorted(sections - set(SECTIONS))}; known: {', '.join(SECTIONS)}")
    work = args.work or (args.out / "work")
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    import accelerate
    import diffusers

    import genzoo
    from genzoo.files import atomic_write_text

    results = {
        "quick": args.quick,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "versions": f"genzoo {genzoo.__version__}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
                    f"accelerate {accelerate.__version__}, Python {platform.python_version()}",
    }
    rerun = sections != set(SECTIONS) and (args.out / "results.json").exists()
    if rerun:  # a partial rerun keeps the rest of the last full run (with none, the report has these sections only)
        previous = json.loads((args.out / "results.json").read_text())
        results = {**previous, **{k: results[k] for k in ("machine", "versions", "config")}}
    if cfg.get("in_process"):  # the trainer's INFO lines would flood the output; its warnings still show
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)

    def timed_section(name, fn):
        section_start = time.perf_counter()
        value = fn()
        print(f"section {name}: {time.perf_counter() - section_start:.0f} s", flush=True)
        return value

    if "quality" in sections:
        results["quality"] = timed_section("quality", lambda: quality(cfg, work))
    if "calls" in sections:
        results["quality_vs_calls"] = timed_section("calls", lambda: quality_vs_calls(cfg, work))
        plot_curves(results["quality_vs_calls"]["curves"], args.out / "quality_vs_nfe.png")
    if "speed" in sections:
        results["speed"] = timed_section("speed", lambda: {  # quick mode: one repeat of each timing
            "trainer": trainer_vs_plain_loop(cfg, work),
            "schedulers": scheduler_step_ratios(cfg.get("speed_repeats", 5)),
            "pipeline": pipeline_ratio(cfg.get("speed_repeats", 7))})
    if "scale" in sections:
        results["scale"] = timed_section("scale", lambda: scale(cfg, work))
        plot_scale(results["scale"], args.out / "scale.png")
    if "guidance" in sections:
        results["guidance"] = timed_section("guidance", lambda: guidance(cfg, work))
        results["guidance_config"] = {k: v for k, v in cfg.items() if k.startswith("guidance")}
    if "few-step" in sections:
        results["few_step"] = timed_section("few-step", lambda: few_step(cfg, work))
        plot_curves(results["few_step"]["curves"], args.out / "few_step.png")
    if "latent" in sections:
        results["latent"] = timed_section("latent", lambda: latent_vs_pixel(cfg, work))
        side_by_side([results["latent"]["runs"][s]["samples_png"] for s in ("pixel", "latent")],
                     args.out / "latent_vs_pixel.png")
    elapsed = time.perf_counter() - start
    results["total_seconds"] = elapsed if "quality" in sections else results.get("total_seconds", elapsed)
    results.setdefault("reruns", [])
    if rerun and "quality" not in sections:
        results["reruns"].append({"sections": sorted(sections), "seconds": round(elapsed, 1)})
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")  # a killed run loses nothing
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    write_report(results, args.out, command)
    print(f"wrote {args.out / 'RESULTS.md'} in {results['total_seconds'] / 60:.1f} minutes")


if __name__ == "__main__":
    main()
