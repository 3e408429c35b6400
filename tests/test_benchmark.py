"""benchmarks/run.py --quick: every section runs end to end and writes the report (structure, not timings); the
methods it benchmarks are the registry's, a plugin's included."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest

from genzoo import registry

ROOT = Path(__file__).resolve().parents[1]
#: The designed lines of the few-step section (couplings, teachers, samplers of the built-in methods), the one-call
#: ones at 1 call only; any other registered method gets a line of its own name after them.
FEW_STEP_LINES = ("flow matching (Euler)", "flow matching (Heun)", "OT flow matching (Euler)", "reflow of OT-FM (Euler)",
                  "distilled reflow (1 step)", "MeanFlow + OT", "DDPM (DDPMScheduler)", "DDPM (Diffusers DDIMScheduler)",
                  "DDPM (Diffusers DPMSolverMultistep)", "DDPM (Diffusers UniPCMultistep)",
                  "DMD of flow matching (1 step)", "GAN", "VAE")
ONE_CALL_LINES = ("distilled reflow (1 step)", "DMD of flow matching (1 step)", "GAN", "VAE")
PEER_LINES = ("torchcfm CFM (Euler)", "torchcfm OT-CFM (Euler)")
#: The kind of data of the quick run's data sets, as the data sets declare it.
KINDS = {name: registry.get("dataset", name).data_kind for name in ("digits", "moons")}


@pytest.mark.slow
@pytest.mark.subprocess
def test_quick_benchmark_writes_every_section(tmp_path):
    # One thread by default: on a shared or busy machine, torch's threads fighting over the cores slow it many-fold.
    # --quick takes about 2.5 minutes on 2 cores, 3.5 minutes sharing them with a busy process; the timeout is a hang guard.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["quick"] is True
    for section in ("guidance", "few-step", "latent"):
        assert f"section {section}:" in result.stdout  # each prints its time
    runs = results["quality"]["runs"]
    assert {(r["method"], r["dataset"]) for r in runs} == {  # every method that learns from the data alone (those
        (m, d) for m in registry.names("method") for d, kind in KINDS.items()  # distilling a teacher are in section
        if kind in registry.get("method", m).data_kinds and registry.get("method", m).teacher_method is None  # 6)
    }  # on every data set it takes (quick mode: one 2-D set)
    for run in runs:
        assert run["peak_memory_mib"] > 0 and run["train_seconds"] > 0
        assert ("digits_fd" in run) == (run["dataset"] == "digits") and ("w2" in run) == (run["dataset"] != "digits")
    samplers = {(c["sampler"], c["dataset"]) for c in results["quality_vs_calls"]["curves"]}
    assert len(samplers) == 8 and all(c["points"] for c in results["quality_vs_calls"]["curves"])
    speed = results["speed"]
    assert speed["trainer"]["ratio_genzoo_over_plain"] > 0
    assert set(speed["schedulers"]) == {"DDPMScheduler", "FlowMatchEuler"} and speed["pipeline"]["steps"] == 100
    assert [r["batch"] for r in results["scale"]["batch_sizes"]] == [8, 64]
    assert results["scale"]["two_over_one"] is None  # quick mode: the full run measures two processes against one
    check_resolution_and_latent(results["scale"], results["latent"])
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
                    "## 5. Conditional digits: accuracy against guidance",
                    "## 6. Few-step and one-step: quality against calls, all methods",
                    "### Cost against resolution: pixels and latents", "## 7. Pixels against latents at the same wall-clock"):
        assert heading in report
    assert "python benchmarks/run.py --quick" in report and "quick mode" in report
    assert "Two CPU processes against one: not measured in this run (quick mode)." in report
    for png in ("quality_vs_nfe.png", "few_step.png", "scale.png", "latent_vs_pixel.png"):
        assert PIL.Image.open(tmp_path / png).size[0] > 100
    grids = [PIL.Image.open(results["latent"]["runs"][space]["samples_png"]).size for space in ("pixel", "latent")]
    assert PIL.Image.open(tmp_path / "latent_vs_pixel.png").size == (grids[0][0] + grids[1][0] + 8, grids[0][1])
    check_few_step(results["few_step"], report)


def check_resolution_and_latent(scale, latent):
    """Section 4's cost against resolution (quick mode: 8 and 16 px, latents at 16) and section 7's two runs."""
    assert [r["resolution"] for r in scale["resolution_pixel"]] == [8, 16]
    assert [r["model_shape"] for r in scale["resolution_latent"]] == [[4, 4, 4]]  # 16 px, 4 x smaller, 4 channels
    assert [r["widths"] for r in scale["resolution_widths"]] == [[8, 16], [16, 32]]
    params = [sum(r["parameters"].values()) for r in scale["resolution_widths"]]
    assert params[1] > 3 * params[0]  # doubling every width about quadruples the convolutions' weights
    assert all(r["pixel_seconds"] > 0 for r in scale["resolution_sampling"])
    assert [r["latent_seconds"] is not None for r in scale["resolution_sampling"]] == [False, True]
    plain = scale["trainer_vs_plain_shapes"]
    assert plain["sample_shape"] == [3, 16, 16] and plain["ratio_genzoo_over_plain"] > 0
    assert set(scale["resolution_fits"]) == {"train_seconds_per_step_vs_pixels", "sampling_seconds_vs_pixels",
                                             "train_seconds_per_step_vs_width"}
    assert all(math.isfinite(f["exponent"]) for f in scale["resolution_fits"].values())
    runs = latent["runs"]
    assert set(runs) == {"pixel", "latent"} and latent["resolution"] == 16
    for run in runs.values():  # same budget: steps from each one's own probe, at least the probe's
        assert run["steps"] >= 2 and run["shapes_fd"] > 0 and 0 <= run["class_accuracy"] <= 1
    assert runs["latent"]["latent_encode_seconds"] is not None and runs["pixel"]["latent_encode_seconds"] is None
    assert latent["vae_reconstructions"]["shapes_fd"] > 0


def check_few_step(section, report):
    """Section 6: every method a line on every data set, points at the expected calls, the peer measured or not."""
    budget, peer = section["budget"], section["peer"]
    assert budget["datasets"] == ["moons", "digits"] and budget["calls"] == [1, 4]  # quick mode
    for dataset in budget["datasets"]:
        curves = {c["sampler"]: c for c in section["curves"] if c["dataset"] == dataset}
        designed = {curves[label]["method"].split()[0] for label in FEW_STEP_LINES}
        others = tuple(m for m in registry.names("method") if m not in designed
                       and KINDS[dataset] in registry.get("method", m).data_kinds)  # every registered method
        assert tuple(curves) == FEW_STEP_LINES + others + (PEER_LINES if peer["installed"] else ()), dataset
        for label, curve in curves.items():
            metric = "digits_fd" if dataset == "digits" else "w2"
            assert curve["metric"] == metric and curve["train_seconds"] > 0
            assert all(p[metric] > 0 for p in curve["points"])
            calls = [p["calls"] for p in curve["points"]]
            if label in ONE_CALL_LINES:
                assert calls == [1]
            elif label == "flow matching (Heun)":
                assert calls == [1, 3]  # 2 steps = 3 calls, in the 4-call budget
            else:
                assert calls == [1, 4]
        chain = [curves[label]["train_seconds"] for label in
                 ("OT flow matching (Euler)", "reflow of OT-FM (Euler)", "distilled reflow (1 step)")]
        assert chain == sorted(chain)  # the reflow and distilled models' seconds include their teachers'
        assert section["ot_cost"][dataset]["ot_over_fm"] > 0
        assert f"**{dataset}** (" in report
    if peer["installed"]:
        assert set(section["peer_ratios"]) == {"moons", "digits"}
        assert all(r["ratio"] > 0 for rows in section["peer_ratios"].values() for r in rows)
        assert "OT-FM / OT-CFM at 1 call" in report
    else:
        assert peer["reason"].startswith("not installed") and "not installed" in report


def load_benchmark(monkeypatch):
    """benchmarks/run.py as a module, its harness and sections importable for this test only."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmark_run", ROOT / "benchmarks" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    return run


def test_few_step_records_a_missing_peer(monkeypatch):
    """Without torchcfm the section goes on: the peer is recorded as not installed and the report says so."""
    run = load_benchmark(monkeypatch)
    monkeypatch.setitem(sys.modules, "torchcfm", None)  # import torchcfm raises ImportError
    peer = run.few_step.peer_status()
    assert peer["installed"] is False and peer["reason"].startswith("not installed")
    budget = {**run.QUICK["few_step"], "datasets": [], "image_batch": 32, "point_batch": 256, "seed": 0}
    report = "\n".join(run.few_step.report({"budget": budget, "peer": peer, "curves": [], "ot_cost": {}}))
    assert "## 6. Few-step" in report and "torchcfm, was not installed" in report
    assert "Also registered" not in report  # only when a method without a designed line was benchmarked


def test_a_plugin_method_is_benchmarked_like_a_built_in(monkeypatch, example_plugins):
    """The benchmark's methods are the registry's: the example plugin's vector-only method is among those trained on
    a 2-D set (sections 1 and 6), not among those trained on digits, and section 6's report names it."""
    run = load_benchmark(monkeypatch)
    from harness import data_kind, methods_for

    assert "moment-matching" in methods_for("moons") and "moment-matching" not in methods_for("digits")
    assert set(methods_for("digits")) | {"moment-matching", "dmd"} == set(registry.names("method"))
    assert "dmd" in methods_for("digits", teachers=True)  # distils a teacher: section 6 only
    assert (data_kind("digits"), data_kind("shapes"), data_kind("moons")) == ("image", "image", "vector")
    budget = {**run.QUICK["few_step"], "datasets": ["moons"], "image_batch": 32, "point_batch": 256, "seed": 0}
    curve = {"sampler": "moment-matching", "method": "moment-matching", "dataset": "moons", "metric": "w2",
             "train_seconds": 1.0, "points": [{"budget": 1, "calls": 1, "steps": 1, "w2": 0.5}]}
    report = "\n".join(run.few_step.report({"budget": budget, "peer": {"installed": False, "reason": "not installed"},
                                             "curves": [curve], "ot_cost": {"moons": {
                                                 "ot_over_fm": 1.0, "ot_steps_per_second": 1.0,
                                                 "fm_steps_per_second": 1.0}}}))
    assert "Also registered, trained with their defaults and sampled with their own sampler: `moment-matching`." in report
    assert "| moment-matching | 0.500 | – | 1.0 |" in report
