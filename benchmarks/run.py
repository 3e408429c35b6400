"""The genzoo benchmark: the four families side by side, quality against model calls, speed ratios, scale.

    python benchmarks/run.py            # the full run; writes benchmarks/RESULTS.md, results.json, quality_vs_nfe.png
    python benchmarks/run.py --quick    # the same sections on tiny budgets (about 2 minutes on a 2-core CPU)

Run it with nothing else running: speeds are measured as ratios of two things timed side by side in this one
process, but a busy machine still adds noise. Every number in RESULTS.md comes from the run that wrote it.

The full run trains every model in a process of its own, so each run's peak memory is its own. ``--quick`` only
checks that every section runs and writes its results: it trains in this process (no child pays the seconds of
importing torch and Diffusers again; the memory figures are then this process's peak), except the two-process run
of section 4, which needs ``accelerate launch``.

This file is the command line, the budgets of the two modes and the writing of results.json and RESULTS.md; each
section is a module of ``sections/`` (``measure(cfg, work)`` returns its results, ``report(...)`` its part of
RESULTS.md), and ``harness.py`` holds what they share. The methods and data sets come from genzoo's registry, so an
installed plugin method is benchmarked like a built-in one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sections and the harness beside this file, however it is started
    sys.path.insert(0, str(HERE))

from harness import plot_curves  # noqa: E402
from sections import calls, cli_start, few_step, guidance, latent, one_call, quality, scale, speed  # noqa: E402


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
                        pixel_widths=(16, 32, 64), latent_widths=(64, 128)),
            one_call=dict(datasets={"moons": dict(samples=4000, seeds=5, calls=(1, 2, 4), multi_step_calls=(8, 32)),
                                    "digits": dict(samples=500, seeds=5, calls=(1, 2, 4, 8, 16)),
                                    "shapes": dict(samples=500, seeds=3, calls=(1, 2, 4))}))
QUICK = dict(seeds=(0,), image_steps=6, image_batch=32, point_steps=10, eval_samples=100, grid_samples=8,
             nfe=(1, 4), nfe_samples=100, speed_steps=4, batch_sizes=(8, 64),
             guidance_train_steps=4, guidance_samples=30, guidance_sampling_steps={"ddpm": 4, "flow-matching": 4},
             sampling_steps=8, point_sets=("moons",), in_process=True, speed_repeats=1, two_processes=False,
             few_step=dict(datasets=("moons", "digits"), point_steps=20, image_steps=10, point_pairs=64,
                           image_pairs=64, teacher_steps=2, eval_samples=100, calls=(1, 4)),
             resolution=dict(resolutions=(8, 16), widths=((8, 16), (16, 32)), batch=8, images=32,
                             steps={8: 2, 16: 2}, latent_resolutions=(16,), plain_steps=2, plain_repeats=1,
                             sampling_steps=2, sampling_batch=2),
             latent=dict(resolution=16, budget_seconds=3, batch=8, eval_samples=50, eval_steps=2, probe_steps=2,
                         pixel_widths=(8, 16), latent_widths=(8, 16), images=32),
             one_call=dict(datasets={"moons": dict(samples=100, seeds=2, calls=(1, 2))}), cli_repeats=1)
SECTIONS = ("quality", "calls", "speed", "scale", "guidance", "few-step", "latent", "one-call", "cli-start")


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
        lines += quality.report(results)
    if "quality_vs_calls" in results:
        lines += calls.report(results["quality_vs_calls"])
    if "speed" in results:
        lines += speed.report(results["speed"])
    if "scale" in results:
        lines += scale.report(results["scale"])
    if "guidance" in results:
        lines += guidance.report(results["guidance"], {**results["config"], **results.get("guidance_config", {})})
    if "few_step" in results:
        lines += few_step.report(results["few_step"])
    if "latent" in results:
        lines += latent.report(results["latent"])
    if "one_call" in results:
        lines += one_call.report(results["one_call"])
    if "cli_start" in results:
        lines += cli_start.report(results["cli_start"])
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
        results["quality"] = timed_section("quality", lambda: quality.measure(cfg, work))
    if "calls" in sections:
        results["quality_vs_calls"] = timed_section("calls", lambda: calls.measure(cfg, work))
        plot_curves(results["quality_vs_calls"]["curves"], args.out / "quality_vs_nfe.png")
    if "speed" in sections:
        results["speed"] = timed_section("speed", lambda: speed.measure(cfg, work))
    if "scale" in sections:
        results["scale"] = timed_section("scale", lambda: scale.measure(cfg, work))
        scale.plot(results["scale"], args.out / "scale.png")
    if "guidance" in sections:
        results["guidance"] = timed_section("guidance", lambda: guidance.measure(cfg, work))
        results["guidance_config"] = {k: v for k, v in cfg.items() if k.startswith("guidance")}
    if "few-step" in sections:
        results["few_step"] = timed_section("few-step", lambda: few_step.measure(cfg, work))
        plot_curves(results["few_step"]["curves"], args.out / "few_step.png")
    if "latent" in sections:
        results["latent"] = timed_section("latent", lambda: latent.measure(cfg, work))
        latent.side_by_side([results["latent"]["runs"][s]["samples_png"] for s in ("pixel", "latent")],
                     args.out / "latent_vs_pixel.png")
    if "one-call" in sections:
        results["one_call"] = timed_section("one-call", lambda: one_call.measure(cfg, work))
        one_call.plot(results["one_call"], args.out / "one_call.png")
    if "cli-start" in sections:
        results["cli_start"] = timed_section("cli-start", lambda: cli_start.measure(cfg, work))
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
