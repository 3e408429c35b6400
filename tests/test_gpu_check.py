"""benchmarks/gpu_check.py on the CPU (``--quick --device cpu``): every part runs or says why not, and the JSON has
the structure a GPU run fills in. The numbers themselves come from a GPU machine."""

import importlib.util
import json

import pytest

from genzoo.testing import run_training
from helpers import ROOT

pytestmark = pytest.mark.slow


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_cpu_run_measures_what_runs_on_a_cpu_and_skips_the_rest(tmp_path, capsys):
    vae = tmp_path / "vae"  # a tiny trained VAE for the latent part
    run_training("vae", "shapes", vae, "--resolution", "32", "--num_samples", "64", "--train_batch_size", "8",
                 "--max_train_steps", "2", "--checkpointing_steps", "100", "--save_images_steps", "100")
    out = tmp_path / "gpu_check.json"
    status = load_gpu_check().main(["--quick", "--device", "cpu", "--vae", str(vae), "--out", str(out),
                                    "--work_dir", str(tmp_path / "work")])
    assert status == 0
    results = json.loads(out.read_text())
    assert set(results) == {"settings", "machine", "precision", "ddp", "latent", "seconds"}
    assert results["settings"]["device"] == "cpu" and results["settings"]["quick"] is True
    assert results["settings"]["dataset"] == "shapes" and results["settings"]["resolution"] == 32
    precision = results["precision"]
    assert list(precision) == ["no", "bf16", "fp16"]
    for measured in (precision["no"], precision["bf16"], results["latent"]["latent"]):
        assert measured["steps_per_second"] > 0 and measured["samples_per_second"] > 0
        assert measured["peak_cuda_memory_mib"] is None and measured["final_loss"] > 0
    assert precision["fp16"] == {"skipped": "no CUDA"} and results["ddp"] == {"skipped": "no CUDA"}
    assert results["latent"]["pixel"] == precision["no"] and results["latent"]["latent"]["latent_shape"] == [2, 16, 16]
    assert results["latent"]["latent_speed_over_pixel"] > 0
    printed = capsys.readouterr().out
    assert "skipped: no CUDA" in printed and "fp32, latent (--vae)" in printed and f"wrote {out}" in printed
