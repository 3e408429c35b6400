"""Couplings of noise and data for flow matching: which noise sample each data sample is paired with.

The independent coupling (flow matching's default) pairs ``noise[i]`` with ``data[i]`` as drawn. The *minibatch
optimal-transport* coupling (Tong et al. 2023, "Improving and generalizing flow-based generative models with minibatch
optimal transport"; Pooladian et al. 2023) re-pairs each batch by the exact optimal-transport plan for the squared
Euclidean cost between the batch's noise and data. With equal batch sizes and uniform weights that plan is a
permutation (Birkhoff), found with :func:`scipy.optimize.linear_sum_assignment`. Paths that cross less are straighter,
so the learned ODE needs fewer solver steps.

Everything here is deterministic: no randomness is drawn, the cost is computed in float64 on the CPU, and ties are
broken by the assignment solver's fixed order, so a resumed run re-pairs exactly as the uninterrupted one did.

Class-conditional training pairs only within a class (``labels``). The noise carries no label, so it is split among the
classes in a fixed order: the classes present in the batch in ascending label order, class ``c`` (with ``n_c`` data
rows) getting the next ``n_c`` noise rows (:func:`class_blocks`). The noise rows are i.i.d. and independent of the data,
so any fixed split gives each class ``n_c`` fresh Gaussian draws; the plan is then solved within each block, and the
result is still a permutation of the noise rows.
"""

from __future__ import annotations

import numpy as np
import torch

COUPLINGS = ("independent", "ot")
OT_SCOPES = ("process", "global")


def squared_distances(noise: torch.Tensor, data: torch.Tensor) -> np.ndarray:
    """``cost[j, i] = || data[j] - noise[i] ||^2`` over the flattened samples, in float64 on the CPU (rows: data)."""
    a = data.detach().flatten(1).to("cpu", torch.float64)
    b = noise.detach().flatten(1).to("cpu", torch.float64)
    cost = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return cost.clamp_min(0.0).numpy()


def class_blocks(labels: torch.Tensor) -> list[tuple[int, torch.Tensor, slice]]:
    """How the noise rows are split among classes: ``(label, data rows of that label, noise rows of its block)`` per
    class present, in ascending label order; blocks are consecutive and as long as the class's count."""
    labels = labels.detach().to("cpu").reshape(-1)
    blocks, start = [], 0
    for value in torch.unique(labels, sorted=True).tolist():
        rows = torch.nonzero(labels == value).flatten()
        blocks.append((int(value), rows, slice(start, start + len(rows))))
        start += len(rows)
    return blocks


def _assign(cost: np.ndarray) -> np.ndarray:
    """Column index paired with each row by the minimum-cost perfect matching (rows: data, columns: noise)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    assert np.array_equal(rows, np.arange(cost.shape[0]))
    return cols


def ot_pairing(noise: torch.Tensor, data: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """The exact minibatch optimal-transport pairing of ``noise`` and ``data`` (same number of samples, any shape).

    Returns ``perm``, a permutation of ``range(len(noise))`` (int64, on ``noise``'s device) such that
    ``noise[perm][i]`` is paired with ``data[i]`` and ``sum_i || noise[perm[i]] - data[i] ||^2`` is the minimum over
    all permutations. With ``labels`` (one per data row) the minimum is taken within each class: class ``c`` gets the
    block of noise rows :func:`class_blocks` gives it and is paired optimally inside it, never across classes.
    Deterministic: the same inputs give the same permutation.
    """
    n = data.shape[0]
    if noise.shape != data.shape:
        raise ValueError(f"ot_pairing needs noise and data of the same shape, got {tuple(noise.shape)} and "
                         f"{tuple(data.shape)}.")
    cost = squared_distances(noise, data)
    if labels is None:
        perm = _assign(cost)
    else:
        if labels.shape[0] != n:
            raise ValueError(f"ot_pairing got {labels.shape[0]} labels for {n} samples.")
        perm = np.empty(n, dtype=np.int64)
        for _, rows, block in class_blocks(labels):
            rows = rows.numpy()
            perm[rows] = block.start + _assign(cost[np.ix_(rows, np.arange(block.start, block.stop))])
    return torch.as_tensor(perm, dtype=torch.long).to(noise.device)


def transport_cost(noise: torch.Tensor, data: torch.Tensor, perm: torch.Tensor | None = None) -> float:
    """``sum_i || noise[perm[i]] - data[i] ||^2`` in float64 (``perm=None``: the identity pairing)."""
    if perm is not None:
        noise = noise[perm.to(noise.device)]
    diff = noise.detach().flatten(1).to("cpu", torch.float64) - data.detach().flatten(1).to("cpu", torch.float64)
    return float(diff.pow(2).sum())


# ----------------------------------------------------------------------------------------------- several processes
def all_gather_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Every process's ``tensor`` concatenated along the first dimension in process order, and each process's row
    count. Processes may hold different numbers of rows (they are padded for ``all_gather``, then cut back)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:s] for part, s in zip(parts, sizes)]), sizes


def global_ot_pairing(noise: torch.Tensor, data: torch.Tensor, labels: torch.Tensor | None = None):
    """The optimal-transport plan over the batch of *every* process, and this process's share of it.

    Gathers noise, data (and labels) from every process of the default ``torch.distributed`` group, solves one plan
    over the gathered batch (identically on every process: same inputs, deterministic solver) and keeps the pairs of
    this process's own data rows. Returns ``(paired_noise, perm, offset)``: ``paired_noise[i]`` (taken from any
    process's noise) is paired with ``data[i]``; ``perm`` is the whole plan over the gathered batch and ``offset``
    where this process's data rows start in it.
    """
    import torch.distributed as dist

    all_noise, sizes = all_gather_rows(noise.detach())
    all_data, _ = all_gather_rows(data.detach())
    all_labels = None if labels is None else all_gather_rows(labels.to(data.device))[0]
    perm = ot_pairing(all_noise, all_data, all_labels)
    offset = sum(sizes[: dist.get_rank()])
    mine = perm[offset: offset + data.shape[0]].to(all_noise.device)
    return all_noise[mine].to(device=noise.device, dtype=noise.dtype), perm, offset


def couple(noise: torch.Tensor, data: torch.Tensor, labels: torch.Tensor | None = None, *, scope: str = "process",
           num_processes: int = 1) -> torch.Tensor:
    """``noise`` re-ordered by the minibatch OT plan so that the returned ``[i]`` is paired with ``data[i]``.

    ``scope="process"`` solves the plan on this process's own batch; ``"global"`` (with ``num_processes > 1``)
    over the batch gathered from every process (:func:`global_ot_pairing`).
    """
    if scope not in OT_SCOPES:
        raise ValueError(f"ot scope must be one of {', '.join(OT_SCOPES)}, got {scope!r}.")
    if scope == "global" and num_processes > 1:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(f"--ot_scope global with {num_processes} processes needs torch.distributed to be "
                               "initialised (launch with accelerate launch).")
        return global_ot_pairing(noise, data, labels)[0]
    return noise[ot_pairing(noise, data, labels)]
