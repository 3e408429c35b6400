"""More than one machine: Accelerate's multi-node launch, played on this machine by two `accelerate launch` processes
(two "nodes" of one CPU process each, gloo over 127.0.0.1), and the trainer's refusal of FSDP and DeepSpeed.

Each two-node run takes about 12 s on a 2-core CPU; the file runs three of them.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.utils import DistributedType

from genzoo.testing import assert_same_weights, final_weights, run_training, tiny_args
from genzoo.training import RecipeError, list_checkpoints
from genzoo.training import trainer as trainer_module
from helpers import ROOT, free_port, installed, write_distribution

pytestmark = pytest.mark.slow

CONFIGS = ROOT / "train" / "configs"
#: Files every process writes into each checkpoint (its own random states); everything else is the main process's.
PER_PROCESS = ("random_states_{rank}.pkl", "trainer_rng_{rank}.safetensors")

BATCH_ONLY_METHOD = '''
"""Flow matching whose noise and training times are functions of each example: it draws no random numbers, so a
run's updates depend only on which examples each global batch holds -- not on which process drew what."""

import torch

from genzoo.methods.flow_matching import FlowMatchingMethod


class BatchOnlyFlowMatching(FlowMatchingMethod):
    name = "batch-only-flow-matching"

    def denoise(self, models, batch, generator):
        x = batch["sample"]
        noise = torch.sin(7.0 * x + 3.0 * x.flip(-1))
        timesteps = torch.sigmoid(2.0 * x.sum(dim=1)) * self.training_scheduler.time_scale
        noisy = self.training_scheduler.add_noise(x, noise, timesteps)
        return x, noise, timesteps, noisy, models["unet"](noisy, timesteps).sample
'''


@pytest.fixture
def batch_only_method(tmp_path):
    """Install (on ``sys.path`` here and on ``PYTHONPATH`` for the launched processes) a plugin method that draws no
    random numbers; yields the extra environment of the processes."""
    root = write_distribution(tmp_path / "plugin", "genzoo-batch-only", "0.1.0",
                              "[genzoo.methods]\nbatch-only-flow-matching = genzoo_batch_only:BatchOnlyFlowMatching\n",
                              {"genzoo_batch_only.py": BATCH_ONLY_METHOD})
    with installed(root, "genzoo_batch_only"):
        yield {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def train_on_two_nodes(method, dataset, output_dir, *extra, launch=None, env=None, timeout=150):
    """Two ``accelerate launch`` processes started together, machine ranks 0 and 1 of ``--num_machines 2
    --num_processes 2`` (one process each) meeting at 127.0.0.1 on a free port, each running ``train/train.py`` with
    :func:`tiny_args` plus ``extra``. ``launch`` replaces the launcher's flags that say how to distribute (default:
    ``--multi_gpu --num_machines 2``, which is gloo on the CPU). Both are killed, with their children, if either fails
    or they outlast ``timeout``; returns their stderr."""
    env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": "1"}
    port = str(free_port())
    launch = launch or ["--multi_gpu", "--num_machines", "2"]
    procs = []
    try:
        for rank in (0, 1):
            command = [
                sys.executable, "-m", "accelerate.commands.launch", *launch, "--num_processes", "2",
                "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", port,
                "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1",
                str(ROOT / "train" / "train.py"), *tiny_args(method, dataset, output_dir, *extra),
            ]
            procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True, start_new_session=True))
        deadline = time.monotonic() + timeout
        errors = [proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[1] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the training process it started
                proc.wait()
    for rank, (proc, err) in enumerate(zip(procs, errors)):
        assert proc.returncode == 0, f"node {rank} failed:\n{err[-3000:]}"
    return errors


def listing(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}


@pytest.mark.subprocess
def test_two_nodes_train_like_one_process_with_the_same_global_batch(tmp_path, batch_only_method):
    """Two nodes with 8 examples each end with the weights of one process with batches of 16, and write what that
    one process writes: the checkpoints and the pipeline once, plus each process's own random state.

    The method draws no random numbers (noise and times are functions of each example): genzoo gives every process
    its own generator (seed * 1000 + rank), so with real flow matching the second half of each global batch gets
    other noise on two processes than on one -- another, equally valid run, which ends about 4e-3 away from the
    one-process weights after these 6 steps of learning rate 1e-3, i.e. not comparable at all. Without random draws
    the runs differ only in how the mean gradient is summed (one mean of 16 against gloo's average of two means of
    8), a rounding difference: measured at most 4.5e-8 (278 of 2274 numbers differ in the last bits), hence the
    tolerance 1e-6 of every weight comparison in test_training.py rather than bitwise equality."""
    two, one = tmp_path / "two-nodes", tmp_path / "one-process"
    train_on_two_nodes("batch-only-flow-matching", "moons", two, "--train_batch_size", "8", env=batch_only_method)
    run_training("batch-only-flow-matching", "moons", one, "--train_batch_size", "16")
    assert_same_weights(two, one, atol=1e-6)
    assert final_weights(two).keys() == final_weights(one).keys()

    # Written once, by the main process: the one-process run's files, and in each checkpoint rank 1's random states.
    rank1 = {f"checkpoints/{c.name}/{f.format(rank=1)}" for c in list_checkpoints(one) for f in PER_PROCESS}
    assert listing(two) == listing(one) | rank1
    assert [c.name for c in list_checkpoints(two)] == ["checkpoint-3", "checkpoint-6"]
    assert not list(two.rglob("*.partial")) and not list(two.parent.glob(".*"))  # no staging folder left behind
    assert '"num_processes": 2' in (two / "metrics.json").read_text()


@pytest.mark.subprocess
def test_a_two_node_run_resumes_on_two_nodes_exactly(tmp_path):
    """flow-matching (random noise and times on each process) launched with train/configs/multi_node.yaml: a run
    stopped at checkpoint-3 and resumed on two nodes ends with the weights of the uninterrupted two-node run, bit for
    bit (each process's generator and random states come back from the checkpoint)."""
    launch = ["--config_file", str(CONFIGS / "multi_node.yaml")]
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    train_on_two_nodes("flow-matching", "moons", full, "--train_batch_size", "8", launch=launch)
    (stopped / "checkpoints").mkdir(parents=True)
    os.rename(full / "checkpoints" / "checkpoint-3", stopped / "checkpoints" / "checkpoint-3")
    errors = train_on_two_nodes("flow-matching", "moons", stopped, "--train_batch_size", "8",
                                "--resume_from_checkpoint", "latest", launch=launch)
    assert "resumed from" in errors[0] and "checkpoint-3 at step 3" in errors[0]
    assert_same_weights(full, stopped, atol=0)
    assert [c.name for c in list_checkpoints(stopped)] == ["checkpoint-3", "checkpoint-6"]


# ------------------------------------------------------------------------------------------------ FSDP and DeepSpeed
@pytest.mark.parametrize(
    "distributed_type,method",
    [(DistributedType.DEEPSPEED, "gan"), (DistributedType.DEEPSPEED, "flow-matching"), (DistributedType.FSDP, "gan"),
     (DistributedType.FSDP, "vae")],
)
def test_fsdp_and_deepspeed_are_refused_naming_the_type_the_method_and_ddp(distributed_type, method):
    with pytest.raises(RecipeError) as caught:
        trainer_module.check_distributed_type(distributed_type, method)
    message = str(caught.value)
    assert f"distributed type {distributed_type.value} cannot train method {method!r}" in message
    assert "train/configs/multi_gpu.yaml" in message and "\n" not in message
    assert ("one model and one optimiser" if distributed_type == DistributedType.DEEPSPEED else "shards") in message


@pytest.mark.parametrize("distributed_type", [DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU])
def test_ddp_one_process_and_the_cpu_are_not_refused(distributed_type):
    trainer_module.check_distributed_type(distributed_type, "gan")


def test_the_refusal_comes_before_the_run_touches_its_folder(tmp_path, monkeypatch):
    """The trainer checks the Accelerator it made (here one that reports DeepSpeed) before it reads data or claims
    --output_dir."""

    class ReportsDeepSpeed(trainer_module.Accelerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.pretend = True

        @property
        def distributed_type(self):
            return DistributedType.DEEPSPEED if getattr(self, "pretend", False) else super().distributed_type

    monkeypatch.setattr(trainer_module, "Accelerator", ReportsDeepSpeed)
    with pytest.raises(RecipeError, match=r"distributed type DEEPSPEED cannot train method 'gan'"):
        run_training("gan", "moons", tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ the configs
@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_accelerate_config_loads_and_is_one_the_trainer_runs(path):
    """Accelerate's own loader reads it (unknown keys are an error there); it asks for what the trainer runs (DDP,
    one process or the CPU) and leaves the precision to genzoo's --mixed_precision (which overrides it anyway). The
    launch itself is tested with multi_node.yaml above."""
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type in (DistributedType.MULTI_GPU, DistributedType.MULTI_CPU, DistributedType.NO)
    assert config.mixed_precision == "no"
    trainer_module.check_distributed_type(config.distributed_type, "gan")


def test_the_shipped_configs():
    assert {"multi_gpu.yaml", "multi_node.yaml"} <= {p.name for p in CONFIGS.glob("*.yaml")}
    assert load_config_from_file(str(CONFIGS / "multi_node.yaml")).num_machines == 2
    assert load_config_from_file(str(CONFIGS / "multi_gpu.yaml")).num_machines == 1

