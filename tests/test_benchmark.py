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
                    "### Cost against resolution: pixels and latents", "## 7. Pixels against latents at the same wall-clock",
                    "## 8. One call against many: the zoo's students against their teachers"):
        assert heading in report
    assert "python benchmarks/run.py --quick" in report and "quick mode" in report
    assert "Two CPU processes against one: not measured in this run (quick mode)." in report
    for png in ("quality_vs_nfe.png", "few_step.png", "scale.png", "latent_vs_pixel.png", "one_call.png"):
        assert PIL.Image.open(tmp_path / png).size[0] > 100
    grids = [PIL.Image.open(results["latent"]["runs"][space]["samples_png"]).size for space in ("pixel", "latent")]
    assert PIL.Image.open(tmp_path / "latent_vs_pixel.png").size == (grids[0][0] + grids[1][0] + 8, grids[0][1])
    check_few_step(results["few_step"], report)
    check_one_call(results["one_call"], report)
    check_cli_start(results["cli_start"], report)


def check_cli_start(section, report):
    """Section 9 times every command against the `import torch` baseline, and says so in the report."""
    commands = section["commands"]
    assert next(iter(commands)) == section["baseline"] == 'python -c "import torch"'
    assert commands[section["baseline"]]["ratio_to_import_torch"] == 1
    assert {"genzoo --help", "genzoo list", "genzoo train --help"} <= set(commands)
    assert all(r["median_seconds"] > 0 for r in commands.values())
    assert "## 9. Command-line start" in report and "| `genzoo --help` |" in report


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


def check_one_call(section, report):
    """Section 8 (quick mode: moons): every zoo pipeline on moons measured, teachers named by their students'
    metrics.json, flow-map pipelines at 1 and 2 calls, multi-step ones also at their card's steps, a verdict per
    student."""
    [group] = section["groups"]
    zoo = {p.parent.name: json.loads(p.read_text()) for p in (ROOT / "pipelines").glob("*-moons/metrics.json")}
    rows = {r["name"]: r for r in group["rows"]}
    assert set(rows) == set(zoo) and group["seeds"] == 2 and group["floor"] > 0
    teachers = {Path(m["teacher"]).name for m in zoo.values() if m.get("teacher")}
    assert {n for n, r in rows.items() if r["role"] == "teacher"} == teachers and teachers
    for name, row in rows.items():
        calls = [p["calls"] for p in row["points"]]
        card = json.loads((ROOT / "pipelines" / name / "eval.json").read_text())
        if card["pipeline"] in ("GANPipeline", "VAEPipeline"):
            assert calls == [1]
        elif card["pipeline"] == "FlowMapPipeline":
            assert calls == [1, 2]
        else:
            assert calls[:2] == [1, 2] and len(calls) == 3  # and the card's steps
        assert all(p["w2"] > 0 and p["w2_sd"] >= 0 for p in row["points"])
        assert row["train_seconds"] >= zoo[name]["wall_seconds_this_run"]
    students = {n for n, m in zoo.items() if m.get("teacher")}
    assert {(v["student"], v["key"]) for v in group["verdicts"]} == {(s, "w2") for s in students}
    for student in students:  # its training time includes its teacher's
        teacher = Path(zoo[student]["teacher"]).name
        assert rows[student]["train_seconds"] == pytest.approx(
            zoo[student]["wall_seconds_this_run"] + zoo[teacher]["wall_seconds_this_run"], abs=0.1)
        assert f"`{student}` w2 " in report


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


def test_one_call_verdicts_weigh_the_gap_against_the_seed_spread(monkeypatch):
    """Section 8 calls a student better or worse than its teacher only where the means differ by more than their
    spreads combined; its best one-call point against the teacher's best point at any number of calls; a score
    where higher is better (class accuracy) the other way round."""
    run = load_benchmark(monkeypatch)

    def row(name, teacher, points):
        return {"name": name, "teacher": teacher, "points": [
            {"calls": c, "w2": m, "w2_sd": s, "class_accuracy": a, "class_accuracy_sd": 0.0} for c, m, s, a in points]}

    teacher = row("t", None, [(1, 0.9, 0.0, 0.5), (8, 0.20, 0.03, 0.99), (50, 0.25, 0.01, 0.98)])
    rows = [teacher, row("better", "t", [(1, 0.10, 0.04, 0.995), (2, 0.05, 0.0, 1.0)]),
            row("level", "t", [(1, 0.24, 0.03, 0.99)]), row("worse", "t", [(1, 0.40, 0.05, 0.90)])]
    verdicts = {(v["student"], v["key"]): v for v in run.one_call.verdicts(rows, "w2", ("class_accuracy",))}
    assert {s: verdicts[s, "w2"]["verdict"] for s in ("better", "level", "worse")} == {
        "better": "better", "level": "level (within the seed spread)", "worse": "worse"}
    assert (verdicts["better", "w2"]["student_value"], verdicts["better", "w2"]["teacher_calls"]) == (0.10, 8)
    assert verdicts["better", "class_accuracy"]["verdict"] == "better"  # 0.995 > 0.99, no spread
    assert verdicts["worse", "class_accuracy"]["verdict"] == "worse"
    assert ("t", "w2") not in verdicts  # a teacher is no student
