"""Section 9, command-line start: how long the `genzoo` command takes to answer when it needs no model, as a ratio
to ``python -c "import torch"`` timed side by side (alternating, the median of several runs), so a machine's speed
cancels out. ``genzoo --help``, ``genzoo list`` and a mistyped argument import neither torch nor Diffusers;
``genzoo train --help`` does (the trainer's options are declared by the training methods, which are torch code), and
is listed so the report shows both sides."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def genzoo_command() -> list[str]:
    """The installed ``genzoo`` console script beside this interpreter, else ``python -m genzoo.cli``."""
    script = Path(sys.executable).with_name("genzoo")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "genzoo.cli"]


def commands() -> dict[str, list[str]]:
    """What is timed: the baseline first, then the genzoo commands, by the line a user types."""
    genzoo = genzoo_command()
    return {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "genzoo --help": [*genzoo, "--help"],
        "genzoo list": [*genzoo, "list"],
        "genzoo sample (no model: an argument error)": [*genzoo, "sample"],
        'python -c "import genzoo"': [sys.executable, "-c", "import genzoo"],
        "genzoo train --help": [*genzoo, "train", "--help"],
    }


def _seconds(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=600)
    return time.perf_counter() - start


def measure(cfg, work: Path) -> dict:
    """Median seconds of each command over ``cfg["cli_repeats"]`` rounds (one warm-up round first, not counted, so
    every command finds its files in the page cache), and each one's ratio to the ``import torch`` baseline."""
    repeats = cfg.get("cli_repeats", 7)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    timed = commands()
    times = {name: [] for name in timed}
    for round_ in range(repeats + 1):
        for name, command in timed.items():  # alternating, so a slow moment falls on every command alike
            seconds = _seconds(command, env)
            if round_:
                times[name].append(seconds)
    baseline = next(iter(timed))
    base = statistics.median(times[baseline])
    return {"repeats": repeats, "baseline": baseline,
            "commands": {name: {"median_seconds": statistics.median(t), "ratio_to_import_torch":
                                statistics.median(t) / base} for name, t in times.items()}}


def report(result: dict) -> list[str]:
    lines = ["## 9. Command-line start (ratios to `import torch`, timed side by side)", "",
             f"Median of {result['repeats']} alternating runs of each command, one thread; the ratio divides by "
             f"`{result['baseline']}` timed in the same rounds.", "",
             "| command | median seconds | ratio to import torch |", "|---|---|---|"]
    for name, r in result["commands"].items():
        lines.append(f"| `{name}` | {r['median_seconds']:.2f} | {r['ratio_to_import_torch']:.2f} |")
    return lines + [""]
