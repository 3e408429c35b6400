"""The GPU check: what genzoo's trainer does on a GPU, in one prepared run of a few minutes.

    python benchmarks/gpu_check.py                          # on a GPU machine (sized for under 5 minutes)
    python benchmarks/gpu_check.py --vae runs/vae-shapes    # also latent against pixel training
    python benchmarks/gpu_check.py --quick --device cpu     # the same parts on tiny budgets: a smoke test (seconds)

It trains a UNet2DModel denoiser (flow matching, ``--block_out_channels 64,128,256 --layers_per_block 2
--attention``) on 32x32 RGB images (``--dataset shapes --resolution 32``) through genzoo's trainer and measures:

- ``precision``: training steps per second and peak GPU memory (``torch.cuda.max_memory_allocated``) in fp32 and in
  bf16 and fp16 mixed precision (the trainer's ``--mixed_precision``), one process;
- ``ddp``: the same fp32 run on two GPUs with ``accelerate launch --config_file train/configs/multi_gpu.yaml`` (the
  same batch per process, so twice the global batch), when ``torch.cuda.device_count() >= 2``;
- ``latent``: with ``--vae PATH_OR_REPO_ID`` (a trained genzoo VAE), the fp32 run in the VAE's latent space against
  the fp32 pixel run.

Steps per second are steady-state figures: each measurement trains twice, a short and a long run, and divides the
extra steps by the extra seconds of the training loop (the trainer's ``train_seconds_this_run``), so start-up,
warm-up and the final checkpoint and sample grid cancel out. Peak memory is that of the long run.

Without CUDA every part that needs it reports ``skipped: no CUDA`` (fp16 autocast and DDP); the others run on the
CPU at the ``--quick`` sizes, which check the machinery, not the numbers. The results go to ``--out`` (JSON) and are
printed as a table; the exit status is 1 if a part failed (its entry then holds the error), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PRECISIONS = ("no", "bf16", "fp16")
NO_CUDA = "no CUDA"

#: (short, long) steps, batch per process, training images and the UNet's options.
FULL = dict(steps=(20, 220), batch_size=128, num_samples=4096,
            model=("--block_out_channels", "64,128,256", "--layers_per_block", "2", "--attention"))
QUICK = dict(steps=(1, 3), batch_size=4, num_samples=64, model=("--block_out_channels", "8,16", "--layers_per_block", "1"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="gpu_check.py")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto: the GPU if torch sees one, else the CPU (which implies --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny model, batch and step counts: a smoke test")
    parser.add_argument("--dataset", default="shapes", help="a genzoo data set of images (default shapes)")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--vae", default=None, help="a trained genzoo VAE pipeline (folder or Hub id): also measure "
                        "latent training against pixel training")
    parser.add_argument("--steps", type=int, nargs=2, metavar=("SHORT", "LONG"), default=None,
                        help="the two run lengths of each measurement (default 20 220; quick 1 3)")
    parser.add_argument("--batch_size", type=int, default=None, help="per process (default 128; quick 4)")
    parser.add_argument("--budget_s", type=float, default=280.0,
                        help="parts not started within this many seconds are skipped (default 280)")
    parser.add_argument("--work_dir", default=str(HERE / "work" / "gpu-check"), help="where the runs train")
    parser.add_argument("--out", default=str(HERE / "work" / "gpu_check.json"), help="the JSON results")
    return parser.parse_args(argv)


def settings_of(opts, cuda: bool) -> dict:
    sizes = QUICK if opts.quick or not cuda else FULL
    return {
        "device": "cuda" if cuda else "cpu", "quick": sizes is QUICK, "dataset": opts.dataset,
        "resolution": opts.resolution, "method": "flow-matching", "model": list(sizes["model"]),
        "steps": list(opts.steps or sizes["steps"]), "batch_size": opts.batch_size or sizes["batch_size"],
        "num_samples": sizes["num_samples"], "vae": opts.vae,
    }


def trainer_argv(settings: dict, output_dir: Path, steps: int, precision: str, *extra) -> list[str]:
    """The trainer's command line for one run: a final checkpoint and a small sample grid only, no logger."""
    count = ("--num_samples" if settings["dataset"] == "shapes" else "--max_train_samples", str(settings["num_samples"]))
    return [
        "--method", "flow-matching", "--dataset", settings["dataset"], "--resolution", str(settings["resolution"]),
        *count, "--output_dir", str(output_dir), "--overwrite_output_dir", "--seed", "0",
        "--train_batch_size", str(settings["batch_size"]), "--max_train_steps", str(steps),
        "--checkpointing_steps", str(steps), "--save_images_steps", str(steps), "--num_sample_images", "4",
        "--num_inference_steps", "2", "--logger", "none", "--lr_warmup_steps", "0", "--mixed_precision", precision,
        *settings["model"], *(["--cpu"] if settings["device"] == "cpu" else []), *extra,
    ]


def steady_rate(settings: dict, runs: list[dict], processes: int = 1) -> dict:
    """Steps and samples per second from a short and a long run (their difference), peak memory of the long one."""
    (short, long), (a, b) = settings["steps"], runs
    extra_seconds = b["train_seconds"] - a["train_seconds"]
    if extra_seconds > 0:
        rate, how = (long - short) / extra_seconds, f"({long} - {short} steps) / ({b['train_seconds']} - {a['train_seconds']} s)"
    else:  # timer resolution on tiny runs: the long run alone
        rate, how = long / max(b["train_seconds"], 1e-3), f"{long} steps / {b['train_seconds']} s (long run only)"
    return {
        "steps_per_second": round(rate, 3),
        "samples_per_second": round(rate * settings["batch_size"] * processes, 1),
        "peak_cuda_memory_mib": b["peak_cuda_memory_mib"],
        "final_loss": b["final_loss"],
        "measured_as": how,
        **{k: v for k, v in b.items() if k.startswith("latent")},
    }


def train_here(settings: dict, output_dir: Path, steps: int, precision: str, *extra) -> dict:
    """One run in this process (the data set is drawn once per process and reused)."""
    import torch

    from genzoo.training import parse_args as trainer_args
    from genzoo.training import train

    cuda = settings["device"] == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    metrics = train(trainer_args(trainer_argv(settings, output_dir, steps, precision, *extra))).metrics
    return {
        "train_seconds": metrics["train_seconds_this_run"],
        "peak_cuda_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "final_loss": metrics["final_losses"].get("loss"),
        **{k: metrics[k] for k in ("latent_shape", "latent_encode_seconds") if k in metrics},
    }


def train_ddp(settings: dict, output_dir: Path, steps: int) -> dict:
    """One fp32 run on two GPUs through ``accelerate launch`` with train/configs/multi_gpu.yaml."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "train" / "configs" / "multi_gpu.yaml"), "--num_processes", "2", "--main_process_port", "0",
               str(ROOT / "train" / "train.py"), *trainer_argv(settings, output_dir, steps, "no")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"accelerate launch exited with {result.returncode}: {result.stderr[-2000:]}")
    metrics = json.loads((output_dir / "metrics.json").read_text())
    return {"train_seconds": metrics["train_seconds_this_run"], "peak_cuda_memory_mib": metrics.get("peak_cuda_memory_mib"),
            "final_loss": metrics["final_losses"].get("loss")}


def machine(cuda: bool) -> dict:
    import accelerate
    import torch

    import genzoo

    facts = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
             "accelerate": accelerate.__version__, "genzoo": getattr(genzoo, "__version__", None),
             "cuda_available": torch.cuda.is_available(), "gpu_count": torch.cuda.device_count()}
    if cuda:
        facts.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                     gpu_memory_mib=round(torch.cuda.get_device_properties(0).total_memory / 2**20))
    return facts


def run(opts) -> dict:
    import torch

    start = time.perf_counter()
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: error: --device cuda, but torch sees no CUDA device")
    cuda = opts.device != "cpu" and torch.cuda.is_available()
    settings = settings_of(opts, cuda)
    work = Path(opts.work_dir)
    results = {"settings": settings, "machine": machine(cuda), "precision": {}, "ddp": None, "latent": None}

    def part(measure):
        """``measure()``, or why it did not run: over the time budget, or the error it raised."""
        if time.perf_counter() - start > opts.budget_s:
            return {"skipped": f"over the time budget of {opts.budget_s:g} s"}
        try:
            return measure()
        except Exception as exc:  # one failing part must not hide the others
            return {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:1500]}"}

    def single(tag, precision, *extra):
        return lambda: steady_rate(settings, [train_here(settings, work / f"{tag}-{steps}", steps, precision, *extra)
                                              for steps in settings["steps"]])

    for precision in PRECISIONS:
        if precision == "fp16" and not cuda:
            results["precision"][precision] = {"skipped": NO_CUDA}
        elif precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            results["precision"][precision] = {"skipped": "this GPU has no bf16"}
        else:
            results["precision"][precision] = part(single(f"pixel-{precision}", precision))

    if not cuda:
        results["ddp"] = {"skipped": NO_CUDA}
    elif torch.cuda.device_count() < 2:
        results["ddp"] = {"skipped": f"{torch.cuda.device_count()} GPU; DDP needs 2"}
    else:
        def ddp():
            measured = steady_rate(settings, [train_ddp(settings, work / f"ddp-{s}", s) for s in settings["steps"]],
                                   processes=2)
            one = results["precision"]["no"]
            if "samples_per_second" in one:
                measured["speed_up_over_one_gpu"] = round(measured["samples_per_second"] / one["samples_per_second"], 2)
            return {"processes": 2, "global_batch": 2 * settings["batch_size"], **measured}

        results["ddp"] = part(ddp)

    if opts.vae is None:
        results["latent"] = {"skipped": "no --vae given"}
    else:
        def latent():
            measured = single("latent-no", "no", "--vae", opts.vae)()
            pixel = results["precision"]["no"]
            comparison = {"pixel": pixel, "latent": measured}
            if "steps_per_second" in pixel:
                comparison["latent_speed_over_pixel"] = round(measured["steps_per_second"] / pixel["steps_per_second"], 2)
            if pixel.get("peak_cuda_memory_mib") and measured.get("peak_cuda_memory_mib"):
                comparison["latent_memory_over_pixel"] = round(
                    measured["peak_cuda_memory_mib"] / pixel["peak_cuda_memory_mib"], 2)
            return comparison

        results["latent"] = part(latent)
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


def table(results: dict) -> str:
    rows = [("part", "steps/s", "samples/s", "peak CUDA MiB", "note")]

    def row(name, entry):
        if entry is None:
            return
        if "steps_per_second" not in entry:
            why = f"skipped: {entry['skipped']}" if "skipped" in entry else f"failed: {entry.get('error')}"
            rows.append((name, "", "", "", why))
            return
        memory = entry.get("peak_cuda_memory_mib")
        rows.append((name, f"{entry['steps_per_second']:.2f}", f"{entry['samples_per_second']:.0f}",
                     "" if memory is None else f"{memory:.0f}", entry.get("measured_as", "")))

    for precision, entry in results["precision"].items():
        row(f"{'fp32' if precision == 'no' else precision}, 1 process", entry)
    row("fp32, DDP 2 GPUs", results["ddp"])
    latent = results["latent"] or {}
    row("fp32, latent (--vae)", latent.get("latent", latent))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4] for r in rows)


def failed(results: dict) -> bool:
    entries = [*results["precision"].values(), results["ddp"], results["latent"]]
    return any(isinstance(e, dict) and "error" in e for e in entries)


def main(argv=None) -> int:
    opts = parse_args(argv)
    results = run(opts)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    s = results["settings"]
    print(f"genzoo GPU check on {results['machine'].get('gpu', 'the CPU')}: flow-matching UNet, {s['dataset']} "
          f"{s['resolution']}x{s['resolution']}, batch {s['batch_size']} per process, {s['steps'][0]} and {s['steps'][1]} "
          f"steps{' (quick)' if s['quick'] else ''}; {results['seconds']} s")
    print(table(results))
    print(f"wrote {out}")
    return 1 if failed(results) else 0


if __name__ == "__main__":
    sys.exit(main())
