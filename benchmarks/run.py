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
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL = dict(seeds=(0, 1, 2), image_steps=1000, point_steps=1500, eval_samples=1000,
            nfe=(1, 2, 4, 8, 16, 32, 100, 1000), nfe_samples=500, speed_steps=60, batch_sizes=(8, 16, 32, 64, 128, 256, 512),
            guidance_train_steps=2000, guidance_samples=300, guidance_sampling_steps={"ddpm": 100, "flow-matching": None},
            sampling_steps=None, point_sets=("8gaussians", "moons", "checkerboard"))
QUICK = dict(seeds=(0,), image_steps=20, image_batch=32, point_steps=50, eval_samples=200,
             nfe=(1, 4, 16), nfe_samples=200, speed_steps=4, batch_sizes=(8, 64),
             guidance_train_steps=10, guidance_samples=50, guidance_sampling_steps={"ddpm": 4, "flow-matching": 4},
             sampling_steps=8, point_sets=("moons",), in_process=True, speed_repeats=1)
SECTIONS = ("quality", "calls", "speed", "scale", "guidance")
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

    kind = "image" if dataset == "digits" else "vector"
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


def train_command(method, dataset, seed, steps, output_dir, extra=(), sampling_steps=None, image_batch=None):
    """The trainer's command line for one run; ``sampling_steps`` sets the steps of its sample grids (``None``: the
    pipeline's default, as in the full run), ``image_batch`` the batch size on digits (``None``: the trainer's
    default, 128, as in the full run)."""
    args = [sys.executable, "-m", "genzoo.training", "--method", method, "--dataset", dataset, "--seed", str(seed),
            "--max_train_steps", str(steps), "--output_dir", str(output_dir), "--logger", "none",
            "--checkpointing_steps", str(10 * steps), "--save_images_steps", str(10 * steps),
            "--num_sample_images", "64", *extra]
    if sampling_steps is not None:
        args += ["--num_inference_steps", str(sampling_steps)]
    if dataset != "digits":
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
                                        image_batch=cfg.get("image_batch"))
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


def plot_curves(curves, path: Path):
    from matplotlib.figure import Figure

    datasets = sorted({c["dataset"] for c in curves})
    fig = Figure(figsize=(5 * len(datasets), 4), layout="constrained")
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(1, len(datasets), i + 1)
        for curve in (c for c in curves if c["dataset"] == dataset):
            xs = [p["calls"] for p in curve["points"]]
            ys = [p[curve["metric"]] for p in curve["points"]]
            ax.plot(xs, ys, marker="o", label=curve["sampler"])
            ax.set_ylabel(curve["metric"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("model calls per sample")
        ax.set_title(dataset)
        ax.legend(fontsize=8)
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


def trainer_vs_plain_loop(cfg, work: Path) -> dict:
    """Steps/s of genzoo's trainer against the hand-written PyTorch loop, same UNet, batch, data and loss."""
    from genzoo.data import digits_dataset  # noqa: F401  (import cost outside the timing)
    from genzoo.training import parse_args
    from genzoo.training.trainer import Trainer, reset_accelerate_state

    steps = cfg["speed_steps"]
    args = parse_args(["--dataset", "digits", "--output_dir", str(work / "speed"), "--logger", "none",
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
    for _ in range(cfg.get("speed_repeats", 3)):  # interleaved, so drift in machine speed hits both
        g, p = timed(genzoo_steps, 1), timed(plain_steps, 1)
        pairs.append((steps / g, steps / p))
        ratios.append(p / g)
    reset_accelerate_state()
    genzoo_sps = statistics.median(a for a, _ in pairs)
    plain_sps = statistics.median(b for _, b in pairs)
    return {"genzoo_steps_per_second": genzoo_sps, "plain_steps_per_second": plain_sps,
            "ratio_genzoo_over_plain": statistics.median(ratios), "steps": steps, "batch": 128}


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
            "two_over_one": processes["2"]["samples_per_second"] / processes["1"]["samples_per_second"]}


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
                                          image_batch=cfg.get("image_batch")),
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


def write_report(results: dict, out: Path, command: str):
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
        "## 1. Quality: the four families, same data, same budget",
        "",
        f"Budget per run: {results['config']['image_steps']} optimiser steps of batch "
        f"{results['config'].get('image_batch', 128)} on digits, "
        f"{results['config']['point_steps']} steps of batch 256 on the 2-D sets; each method's default model and "
        f"learning rate (docs/training.md). Seeds {list(results['config']['seeds'])}; mean ± standard deviation over "
        f"seeds. Metrics on {results['config']['eval_samples']} samples against held-out data (docs/evaluation.md)"
        + (f", sampled with {results['config']['sampling_steps']} steps." if results['config'].get('sampling_steps')
           else ", sampled with each pipeline's default steps."),
        "",
    ]
    runs = results["quality"]["runs"]
    for dataset in ("digits", *results["config"].get("point_sets", ("8gaussians", "moons", "checkerboard"))):
        keys = (["digits_fd", "precision", "recall", "coverage"] if dataset == "digits" else ["w2", "mmd2_rbf"])
        keys += ["train_seconds", "peak_memory_mib"]
        lines += [f"**{dataset}**", "", "| method | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for method in sorted({r["method"] for r in runs if r["dataset"] == dataset}):
            row = [r for r in runs if r["method"] == method and r["dataset"] == dataset]
            cells = [fmt(*mean_spread([r.get(k) for r in row]), digits=1 if k in ("train_seconds", "peak_memory_mib") else 3)
                     for k in keys]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## 2. Quality against model calls", "", "![quality vs calls](quality_vs_nfe.png)", ""]
    for curve in results["quality_vs_calls"]["curves"]:
        pts = ", ".join(f"{p['calls']}: {p[curve['metric']]:.3f}" for p in curve["points"])
        lines.append(f"- {curve['sampler']}, {curve['dataset']} ({curve['metric']} by calls): {pts}")
    speed = results["speed"]
    lines += ["", "## 3. Speed (ratios measured side by side in one process)", "",
              "| comparison | genzoo | baseline | ratio | target |", "|---|---|---|---|---|",
              f"| trainer vs plain PyTorch loop (steps/s, FM UNet, batch 128) | {speed['trainer']['genzoo_steps_per_second']:.2f} | "
              f"{speed['trainer']['plain_steps_per_second']:.2f} | {speed['trainer']['ratio_genzoo_over_plain']:.3f} x of plain speed | ≥ 0.95 |"]
    for name, r in speed["schedulers"].items():
        lines.append(f"| {name}.step vs Diffusers (µs/step) | {r['genzoo_us_per_step']:.1f} | {r['diffusers_us_per_step']:.1f} | "
                     f"{r['ratio_genzoo_over_diffusers']:.3f} x the time | ≤ 1 |")
    p = speed["pipeline"]
    lines += [f"| DDPMPipeline vs diffusers.DDPMPipeline ({p['steps']} steps, batch {p['batch']}, s) | {p['genzoo_seconds']:.3f} | "
              f"{p['diffusers_seconds']:.3f} | {p['ratio_genzoo_over_diffusers']:.3f} x the time | ≤ 1 |", ""]
    sc = results["scale"]
    lines += ["## 4. Scale", "", "| batch | steps/s | samples/s | peak memory (MiB) |", "|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['steps_per_second']:.2f} | {r['samples_per_second']:.0f} | {r['peak_memory_mib']} |"
              for r in sc["batch_sizes"]]
    lines += ["", f"Two CPU processes (global batch 128) against one: {sc['two_over_one']:.2f} x the samples/s "
              f"({sc['processes']['2']['samples_per_second']:.0f} vs {sc['processes']['1']['samples_per_second']:.0f}).", ""]
    if "guidance" in results:
        lines += guidance_report(results["guidance"], {**results["config"], **results.get("guidance_config", {})})
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
    if sections != set(SECTIONS):  # a partial rerun keeps the rest of the last full run
        previous = json.loads((args.out / "results.json").read_text())
        results = {**previous, **{k: results[k] for k in ("machine", "versions")}}
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
    if "guidance" in sections:
        results["guidance"] = timed_section("guidance", lambda: guidance(cfg, work))
        results["guidance_config"] = {k: v for k, v in cfg.items() if k.startswith("guidance")}
    elapsed = time.perf_counter() - start
    results["total_seconds"] = elapsed if "quality" in sections else results.get("total_seconds", elapsed)
    results.setdefault("reruns", [])
    if "quality" not in sections:
        results["reruns"].append({"sections": sorted(sections), "seconds": round(elapsed, 1)})
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")  # a killed run loses nothing
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    write_report(results, args.out, command)
    print(f"wrote {args.out / 'RESULTS.md'} in {results['total_seconds'] / 60:.1f} minutes")


if __name__ == "__main__":
    main()
