"""benchmarks/run.py --quick: every section runs end to end and writes the report (structure, not timings)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import PIL.Image

from genzoo import registry

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_every_section(tmp_path):
    # One thread by default: on a shared or busy machine, torch's threads fighting over the cores slow it many-fold.
    # --quick takes about 2 minutes on 2 cores, 3 minutes sharing them with a busy process; the timeout is a hang guard.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["quick"] is True
    assert "section guidance:" in result.stdout  # each section prints its time
    runs = results["quality"]["runs"]
    kinds = {"digits": "image", "moons": "vector"}  # quick mode: one 2-D set
    assert {(r["method"], r["dataset"]) for r in runs} == {  # every registered method on every data set it takes
        (m, d) for m in registry.names("method") for d, kind in kinds.items()
        if kind in registry.get("method", m).data_kinds
    }
    for run in runs:
        assert run["peak_memory_mib"] > 0 and run["train_seconds"] > 0
        assert ("digits_fd" in run) == (run["dataset"] == "digits") and ("w2" in run) == (run["dataset"] != "digits")
    samplers = {(c["sampler"], c["dataset"]) for c in results["quality_vs_calls"]["curves"]}
    assert len(samplers) == 8 and all(c["points"] for c in results["quality_vs_calls"]["curves"])
    speed = results["speed"]
    assert speed["trainer"]["ratio_genzoo_over_plain"] > 0
    assert set(speed["schedulers"]) == {"DDPMScheduler", "FlowMatchEuler"} and speed["pipeline"]["steps"] == 100
    assert [r["batch"] for r in results["scale"]["batch_sizes"]] == [8, 64] and results["scale"]["two_over_one"] > 0
    guided = results["guidance"]["runs"]
    assert [(r["method"], r["conditioning"], r["text_encoder"]) for r in guided] == [
        ("ddpm", "class", None), ("flow-matching", "class", None), ("ddpm", "text", "frozen"),
        ("flow-matching", "text", "frozen"), ("flow-matching", "text", "trained"),
    ]
    for run in guided:
        assert [p["guidance_scale"] for p in run["points"]] == [1.0, 2.0, 3.0, 5.0, 8.0]
        assert all(0 <= p["class_accuracy"] <= 1 for p in run["points"])
    report = (tmp_path / "RESULTS.md").read_text()
    for heading in ("## 1. Quality", "## 2. Quality against model calls", "## 3. Speed", "## 4. Scale",
                    "## 5. Conditional digits: accuracy against guidance"):
        assert heading in report
    assert "python benchmarks/run.py --quick" in report and "quick mode" in report
    assert PIL.Image.open(tmp_path / "quality_vs_nfe.png").size[0] > 100
