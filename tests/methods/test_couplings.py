"""Minibatch optimal-transport coupling (``genzoo.couplings``, flow matching's ``--coupling ot``): the plan is the
brute-force optimum, class-aware plans stay within each class's noise block, plans are deterministic, the loss uses
the re-paired noise, training resumes exactly, and with two processes ``--ot_scope global`` solves one plan over the
gathered batch that every process agrees on."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import default_collate

import genzoo
from genzoo.config import RecipeError
from genzoo.couplings import class_blocks, ot_pairing, transport_cost
from genzoo.methods.flow_matching import FlowMatchingConfig
from genzoo.testing import assert_resumes_exactly
from helpers import ROOT, assert_same_state, build, clone, data_for, free_port, per_example, seeded


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cost_matrix(noise, data) -> np.ndarray:
    """``C[j, i] = || data[j] - noise[i] ||^2``, by the definition (no expansion of the square)."""
    diff = data.double().flatten(1)[:, None, :] - noise.double().flatten(1)[None, :, :]
    return diff.pow(2).sum(-1).numpy()


def brute_force_min(cost: np.ndarray) -> float:
    """The minimum of ``sum_j cost[j, perm[j]]`` over every permutation (n <= 8)."""
    n = cost.shape[0]
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64).reshape(-1, n)
    return float(cost[np.arange(n), perms].sum(1).min())


def brute_force_perm(cost: np.ndarray) -> np.ndarray:
    n = cost.shape[0]
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64).reshape(-1, n)
    return perms[cost[np.arange(n), perms].sum(1).argmin()]


def draw(n, shape, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randn(n, *shape, generator=g) * 0.7 + shift


def assert_permutation(perm, n):
    assert perm.dtype == torch.long and perm.shape == (n,)
    assert sorted(perm.tolist()) == list(range(n))


# ------------------------------------------------------------------------------------------------ the plan itself
@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(2,), (1, 3, 3)], ids=["vectors", "images"])
def test_ot_pairing_is_the_brute_force_optimum(n, seed, shape):
    noise, data = draw(n, shape, seed, shift=1.5)
    perm = ot_pairing(noise, data)
    assert_permutation(perm, n)
    cost = cost_matrix(noise, data)
    achieved = float(cost[np.arange(n), perm.numpy()].sum())
    assert achieved == pytest.approx(brute_force_min(cost), rel=1e-10, abs=1e-10)
    assert achieved == pytest.approx(transport_cost(noise, data, perm), rel=1e-12)
    assert achieved <= transport_cost(noise, data) + 1e-9  # never worse than pairing as drawn


def test_ot_pairing_pairs_noise_perm_i_with_data_i():
    """The orientation of the result: ``noise[perm][i]`` goes with ``data[i]`` (not the inverse permutation)."""
    noise = torch.tensor([[10.0], [0.0], [20.0]])
    data = torch.tensor([[0.1], [20.1], [9.9]])
    perm = ot_pairing(noise, data)
    assert perm.tolist() == [1, 2, 0]
    torch.testing.assert_close(noise[perm], torch.tensor([[0.0], [20.0], [10.0]]))


def test_ot_pairing_is_deterministic():
    noise, data = draw(64, (2,), 7)
    first = ot_pairing(noise, data)
    assert torch.equal(first, ot_pairing(noise.clone(), data.clone()))
    assert not torch.equal(first, torch.arange(64))
    tied = torch.zeros(5, 2)  # every pairing costs the same: still one fixed answer
    assert torch.equal(ot_pairing(tied, tied), ot_pairing(tied.clone(), tied.clone()))
    labels = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(ot_pairing(noise, data, labels), ot_pairing(noise, data, labels.clone()))


def test_ot_pairing_refuses_mismatched_batches():
    with pytest.raises(ValueError, match="same shape"):
        ot_pairing(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="labels"):
        ot_pairing(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


def test_class_blocks_split_the_noise_by_class_counts_in_label_order():
    blocks = class_blocks(torch.tensor([2, 0, 2, 5, 0, 2]))
    assert [(c, rows.tolist(), (s.start, s.stop)) for c, rows, s in blocks] == [
        (0, [1, 4], (0, 2)), (2, [0, 2, 5], (2, 5)), (5, [3], (5, 6))]


@pytest.mark.parametrize("seed", range(8))
def test_class_aware_pairing_stays_in_each_class_block_and_is_optimal_within_it(seed):
    n = 4 + seed % 4  # 4..7
    noise, data = draw(n, (2,), seed)
    labels = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(100 + seed))
    perm = ot_pairing(noise, data, labels)
    assert_permutation(perm, n)
    cost = cost_matrix(noise, data)
    for _, rows, block in class_blocks(labels):
        paired = perm[rows]
        assert ((paired >= block.start) & (paired < block.stop)).all(), "paired across classes"
        sub = cost[np.ix_(rows.numpy(), np.arange(block.start, block.stop))]
        achieved = float(cost[rows.numpy(), paired.numpy()].sum())
        assert achieved == pytest.approx(brute_force_min(sub), rel=1e-10, abs=1e-10)


def test_class_aware_pairing_gives_up_a_cheaper_cross_class_pairing():
    """The constraint is real: data of class 1 sits on noise row 0, which belongs to class 0's block."""
    noise = torch.tensor([[0.0], [5.0]])
    data = torch.tensor([[5.0], [0.0]])
    assert ot_pairing(noise, data).tolist() == [1, 0]
    assert ot_pairing(noise, data, torch.tensor([0, 1])).tolist() == [0, 1]


# ------------------------------------------------------------------------------------------------ the method
def ot_reference(method, models, batch, replay):
    """Flow matching with the noise re-paired by the brute-force optimum (within classes for class conditioning):
    the dropped labels, the noise, the timesteps drawn in that order; x_t = (1 - t) noise + t x."""
    config, scheduler = method.config, method.training_scheduler
    x = batch["sample"]
    cond = {}
    if config.conditioning == "class":
        labels = batch["label"]
        drop = torch.rand(labels.shape, generator=replay) < config.cond_dropout
        cond = {"class_labels": torch.where(drop, torch.full_like(labels, method.data.num_classes), labels)}
    drawn = torch.randn(x.shape, generator=replay)
    cost = cost_matrix(drawn, x)
    if config.conditioning == "class":
        perm = np.empty(len(x), dtype=np.int64)
        for _, rows, block in class_blocks(batch["label"]):
            perm[rows.numpy()] = block.start + brute_force_perm(cost[np.ix_(rows.numpy(), np.arange(block.start,
                                                                                                  block.stop))])
    else:
        perm = brute_force_perm(cost)
    assert not np.array_equal(perm, np.arange(len(x))), "pick a case where the plan re-pairs"
    noise = drawn[torch.as_tensor(perm)]
    if config.time_sampling == "uniform":
        t = torch.rand(len(x), generator=replay)
    else:
        t = torch.sigmoid(config.logit_mean + config.logit_std * torch.randn(len(x), generator=replay))
    shift = scheduler.config.shift if config.shift is None else config.shift
    if shift != 1:
        t = t / (t + shift * (1 - t))
    scale = scheduler.config.num_train_timesteps if scheduler.config.scale_timesteps else 1
    tb = per_example(t, x)
    prediction = models["unet"]((1 - tb) * noise + tb * x, t * scale, **cond).sample
    target = x if config.prediction_type == "sample" else x - noise
    return (prediction - target).pow(2).mean()


OT_CASES = [
    ("moons", {}),
    ("moons", {"time_sampling": "logit_normal", "prediction_type": "sample", "shift": 3.0}),
    ("digits", {"conditioning": "class", "cond_dropout": 0.5}),
]


@pytest.mark.parametrize("dataset,options", OT_CASES, ids=[f"{d}-{o}" for d, o in OT_CASES])
def test_flow_matching_ot_loss_matches_the_hand_computed_value(dataset, options):
    method, models, batch = build("flow-matching", dataset, coupling="ot", **options)
    if "conditioning" in options:  # two classes, three examples each, interleaved: the plan has choices to make
        examples = [data_for(dataset).dataset[i] for i in range(64)]
        first, second = ([e for e in examples if int(e["label"]) == c][:3] for c in (3, 1))
        batch = default_collate([e for pair in zip(first, second) for e in pair])
    generator = seeded(3)
    replay = clone(generator)
    loss, _ = method.loss("model", models, batch, 0, generator)
    expected = ot_reference(method, models, batch, replay)
    assert_same_state(generator, replay)  # the plan draws no randomness
    torch.testing.assert_close(loss, expected)
    independent, _ = build("flow-matching", dataset, **options)[0].loss("model", models, batch, 0, seeded(3))
    assert not torch.allclose(loss, independent)


def test_coupling_is_described_and_text_conditioning_is_refused():
    method = build("flow-matching", "moons", coupling="ot")[0]
    assert method.describe()["coupling"] == "ot" and method.describe()["ot_scope"] == "process"
    assert build("flow-matching", "moons")[0].describe()["coupling"] == "independent"
    with pytest.raises(RecipeError, match="captions are not classes"):
        FlowMatchingConfig(coupling="ot", conditioning="text")
    with pytest.raises(RecipeError, match="--coupling"):
        FlowMatchingConfig(coupling="sinkhorn")


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.slow
def test_ot_coupling_trains_saves_loads_samples_and_resumes_exactly(tmp_path):
    full, _ = assert_resumes_exactly("flow-matching", tmp_path, "--coupling", "ot", dataset="moons")
    metrics = json.loads((full / "metrics.json").read_text())
    assert metrics["coupling"] == "ot" and all(np.isfinite(v) for v in metrics["final_losses"].values())
    assert yaml.safe_load((full / "recipe.yaml").read_text())["coupling"] == "ot"
    pipe = genzoo.load_pipeline(full)
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(batch_size=5, generator=torch.Generator().manual_seed(0), num_inference_steps=2,
                   output_type="np").samples
    assert samples.shape == (5, 2) and np.isfinite(samples).all()


# ------------------------------------------------------------------------------------------------ two processes
#: One process of a 2-process gloo group. It loads genzoo/couplings.py by its path (torch, numpy and scipy only), so a
#: process starts in about two seconds instead of importing the whole of genzoo.
WORKER = """
import importlib.util, os, sys
import torch
import torch.distributed as dist

spec = importlib.util.spec_from_file_location("couplings", sys.argv[1])
couplings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(couplings)
rank, port, out_dir = int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
n = (5, 4)[rank]  # unequal batches: the gather pads and cuts back
g = torch.Generator().manual_seed(rank)
noise, data = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g) + 2.0
labels = torch.randint(0, 2, (n,), generator=g)
result = {"noise": noise, "data": data, "labels": labels}
for key, lab in (("plain", None), ("class", labels)):
    paired, perm, offset = couplings.global_ot_pairing(noise, data, lab)
    result.update({f"{key}_paired": paired, f"{key}_perm": perm, f"{key}_offset": offset})
result["global"] = couplings.couple(noise, data, scope="global", num_processes=2)
result["process"] = couplings.couple(noise, data, scope="process", num_processes=2)
torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_global_scope_solves_one_plan_over_both_processes_and_each_keeps_its_own_data_rows(tmp_path):
    port, env = str(free_port()), {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT / "src" / "genzoo" / "couplings.py"), str(rank),
                                 port, str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    noise = torch.cat([r["noise"] for r in ranks])
    data = torch.cat([r["data"] for r in ranks])
    labels = torch.cat([r["labels"] for r in ranks])
    for key, lab in (("plain", None), ("class", labels)):
        assert torch.equal(ranks[0][f"{key}_perm"], ranks[1][f"{key}_perm"])  # the same plan on every process
        assert torch.equal(ranks[0][f"{key}_perm"], ot_pairing(noise, data, lab))  # = the plan of the whole batch
        assert [r[f"{key}_offset"] for r in ranks] == [0, 5]
        torch.testing.assert_close(torch.cat([r[f"{key}_paired"] for r in ranks]), noise[ot_pairing(noise, data, lab)],
                                   rtol=0, atol=0)
    assert not torch.equal(ranks[0]["plain_perm"][:5].sort().values, torch.arange(5)), "no noise crossed processes"
    for r in ranks:
        torch.testing.assert_close(r["global"], r["plain_paired"], rtol=0, atol=0)
        torch.testing.assert_close(r["process"], r["noise"][ot_pairing(r["noise"], r["data"])], rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_processes_train_with_a_global_plan(two_process_runs):
    """accelerate launch, 2 CPU processes (gloo): the all-gather inside the distributed-wrapped loss runs, training
    finishes, saves and loads."""
    out = two_process_runs.check("ot-global")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["global_step"] == 3
    assert (metrics["coupling"], metrics["ot_scope"]) == ("ot", "global")
    assert all(np.isfinite(v) for v in metrics["final_losses"].values())
    assert genzoo.load_pipeline(out)(batch_size=4, output_type="np").samples.shape == (4, 2)
