"""What every section of the benchmark shares: the registry's methods and data kinds, the trainer's command line
and how a training run is timed (a child process, or in this process in quick mode), timings, number formatting and
the quality-against-calls plot."""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def data_kind(dataset: str) -> str:
    """``"image"`` or ``"vector"``: the kind of data the registered data set ``dataset`` holds, as it declares."""
    from genzoo import registry

    return registry.get("dataset", dataset).data_kind


def methods_for(dataset: str, teachers: bool = False) -> list[str]:
    """Every registered method (genzoo's and installed plugins') that trains on ``dataset``'s kind of data: those that
    learn from the data alone, and with ``teachers`` also those that distil a teacher (``Method.teacher_method``)."""
    from genzoo import registry

    kind = data_kind(dataset)
    return [name for name in registry.names("method") if kind in registry.get("method", name).data_kinds
            and (teachers or registry.get("method", name).teacher_method is None)]


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
    if data_kind(dataset) != "image":
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


def timed(fn, repeats=5) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
