"""Section 6, few-step and one-step: every method trained on one budget and seed, its quality at 1 to 32 model calls
per sample on each data set, and the peer (torchcfm) trained and scored the same way."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from harness import environment, methods_for, run_child, train_command


#: The peer's two flow matchers (torchcfm, Tong et al. 2023), trained and sampled outside genzoo.
PEER_MATCHERS = (("torchcfm CFM (Euler)", "ConditionalFlowMatcher"),
                 ("torchcfm OT-CFM (Euler)", "ExactOptimalTransportConditionalFlowMatcher"))
#: Width of torchcfm's ``MLP``: its default (64, as its 2-D examples) on the 2-D sets; 256 on the 64-d digits, where
#: torchcfm has no MLP example and a 64-wide network would be narrower than its input.
PEER_WIDTH = {"vector": 64, "image": 256}
PEER_LEARNING_RATE = 1e-3  # torchcfm's examples: torch.optim.Adam(model.parameters()), Adam's default rate


def peer_status() -> dict:
    try:
        import ot  # noqa: F401  (POT: torchcfm's exact OT plan)
        import torchcfm
    except ImportError as exc:
        return {"installed": False, "reason": f"not installed ({exc}); pip install torchcfm pot --no-deps"}
    return {"installed": True, "version": torchcfm.__version__}


class EulerFlowSampler:
    """A torchcfm velocity model (input ``[x, t]``, as its ``MLP(dim, time_varying=True)``) behind the call that
    :func:`genzoo.metrics.evaluate.draw_samples` makes, so it is scored by exactly genzoo's evaluation: a plain Euler
    loop from noise (t = 0) to data (t = 1), ``num_inference_steps`` model calls, samples returned as genzoo's
    pipelines return them (vectors as they are, images in [0, 1], channels last)."""

    conditioning = "none"

    def __init__(self, model, sample_shape):
        self.model, self.sample_shape = model.eval(), tuple(sample_shape)

    def set_progress_bar_config(self, **kwargs):
        pass

    @torch.no_grad()
    def __call__(self, batch_size, generator, num_inference_steps, output_type="np"):
        from genzoo.pipelines.base import VectorPipelineOutput

        x = torch.randn(batch_size, math.prod(self.sample_shape), generator=generator)
        for i in range(num_inference_steps):
            t = torch.full((batch_size, 1), i / num_inference_steps)
            x = x + self.model(torch.cat([x, t], dim=-1)) / num_inference_steps
        if len(self.sample_shape) == 1:
            return VectorPipelineOutput(samples=x.numpy())
        images = ((x.reshape(batch_size, *self.sample_shape) + 1) / 2).clamp(0, 1)
        return SimpleNamespace(images=images.permute(0, 2, 3, 1).numpy())


def train_peer(matcher: str, dataset: str, steps: int, batch: int, seed: int = 0) -> tuple[EulerFlowSampler, float]:
    """torchcfm's ``matcher`` (sigma = 0) with its ``MLP``, trained by the plain loop of its examples (Adam) on the
    data genzoo's trainer trains on (``--dataset`` with ``--seed``: images flattened, in [-1, 1]), in shuffled
    epochs of ``batch``; returns the sampler and the training seconds (data loading included)."""
    import torchcfm.conditional_flow_matching as cfm
    from torchcfm.models import MLP

    from genzoo.data import load_training_data

    start = time.perf_counter()
    data = load_training_data(argparse.Namespace(dataset=dataset, seed=seed))
    x = torch.stack([data.dataset[i]["sample"] for i in range(len(data))])
    shape, x = x.shape[1:], x.flatten(1)
    torch.manual_seed(seed)
    np.random.seed(seed)  # torchcfm draws from the OT plan with numpy's global generator
    model = MLP(dim=x.shape[1], time_varying=True, w=PEER_WIDTH[data.kind])
    optimizer = torch.optim.Adam(model.parameters(), lr=PEER_LEARNING_RATE)
    flow_matcher = getattr(cfm, matcher)(sigma=0.0)
    order = torch.Generator().manual_seed(seed)
    batches = (x[rows] for _ in itertools.count() for rows in torch.randperm(len(x), generator=order).split(batch)
               if len(rows) == batch)
    for x1 in itertools.islice(batches, steps):
        t, xt, ut = flow_matcher.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
        loss = torch.mean((model(torch.cat([xt, t[:, None]], dim=-1)) - ut) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return EulerFlowSampler(model, shape), time.perf_counter() - start


def curve_points(pipe, dataset: str, metric: str, budgets, steps_for, num_samples: int) -> list[dict]:
    """Quality of ``pipe`` at each budget of model calls per sample: sampled with ``steps_for(budget)`` steps
    (``None``: a one-pass pipeline; a budget whose steps repeat the previous one's is skipped)."""
    from genzoo.metrics.evaluate import evaluate_pipeline

    points = []
    for budget in budgets:
        steps = steps_for(budget)
        if points and steps == points[-1]["steps"]:
            continue
        result = evaluate_pipeline(pipe, dataset, num_samples=num_samples, steps=steps, seed=0, likelihood=False)
        calls = steps if isinstance(pipe, EulerFlowSampler) else result["model_calls_per_sample"]
        points.append({"budget": budget, "calls": calls, "steps": steps, metric: result[metric],
                       "sampling_seconds": result["sampling_seconds"]})
    return points


def measure(cfg, work: Path) -> dict:
    """Every method, trained here on the same budget and seed, at 1-32 model calls per sample on each data set;
    the peer (torchcfm) trained and scored the same way. The built-in methods have the lines below (couplings,
    teachers, samplers); any other registered method that trains on the data set's kind (a plugin's) is trained
    with its defaults and sampled with its own sampler, as a line of its own name."""
    import diffusers

    import genzoo
    from genzoo import registry
    from genzoo.data import get_dataset
    from genzoo.schedulers import diffusers_scheduler

    fs = cfg["few_step"]
    budget = {**fs, "image_batch": cfg.get("image_batch", 128), "point_batch": 256, "seed": 0,
              "in_process": cfg.get("in_process", False)}
    peer = peer_status()
    cache = work / "few-step-cache"  # GENZOO_CACHE of the reflow runs: each benchmark run makes (and times) its pairs
    shutil.rmtree(cache, ignore_errors=True)
    euler, heun = (lambda calls: calls), (lambda calls: (calls + 1) // 2)  # Heun: 2 * steps - 1 calls
    curves, ot_cost = [], {}
    for dataset in fs["datasets"]:
        image = dataset == "digits"
        metric = get_dataset(dataset).summary_metrics[0]  # its first comparison column: digits_fd, w2
        steps = fs["image_steps" if image else "point_steps"]
        teacher = ["--num_pairs", str(fs["image_pairs" if image else "point_pairs"]),
                   "--teacher_steps", str(fs["teacher_steps"])]

        def train(name, method, extra=(), sampling_steps=cfg["sampling_steps"], dataset=dataset, steps=steps):
            """Train ``method`` (seed 0) into work/few-step-NAME-DATASET; its folder and wall-clock seconds."""
            out = work / f"few-step-{name}-{dataset}"
            command = train_command(method, dataset, 0, steps, out, extra, sampling_steps=sampling_steps,
                                    image_batch=cfg.get("image_batch"), grid_samples=cfg.get("grid_samples", 64))
            with environment(GENZOO_CACHE=str(cache)):
                seconds = run_child(command, cfg.get("in_process", False))
            print(f"few-step: trained {name} on {dataset}: {seconds:.0f} s", flush=True)
            return out, seconds

        fm, fm_seconds = train("fm", "flow-matching")
        ot, ot_seconds = train("ot-fm", "flow-matching", ["--coupling", "ot"])
        reflow, reflow_seconds = train("reflow", "rectified-flow", ["--teacher", str(ot), *teacher])
        distilled, distill_seconds = train("distill", "rectified-flow",
                                           ["--teacher", str(reflow), "--distill_steps", "1", *teacher],
                                           sampling_steps=None)  # trained for one step: its default
        meanflow, meanflow_seconds = train("meanflow", "meanflow", ["--coupling", "ot"])  # as the zoo's
        ddpm, ddpm_seconds = train("ddpm", "ddpm")
        gan, gan_seconds = train("gan", "gan")
        vae, vae_seconds = train("vae", "vae")
        dmd, dmd_seconds = train("dmd", "dmd", ["--teacher", str(fm)], sampling_steps=None)  # distils plain FM
        sps = [json.loads((out / "metrics.json").read_text())["steps_per_second"] for out in (fm, ot)]
        ot_cost[dataset] = {"fm_steps_per_second": sps[0], "ot_steps_per_second": sps[1],
                            "ot_over_fm": sps[1] / sps[0]}

        # (label, method, model folder, training seconds (with the teacher chain), scheduler from the saved one, steps)
        lines = [
            ("flow matching (Euler)", "flow-matching", fm, fm_seconds, None, euler),
            ("flow matching (Heun)", "flow-matching", fm, fm_seconds,
             lambda s: genzoo.FlowMatchHeunScheduler.from_config(s.config), heun),
            ("OT flow matching (Euler)", "flow-matching --coupling ot", ot, ot_seconds, None, euler),
            ("reflow of OT-FM (Euler)", "rectified-flow", reflow, ot_seconds + reflow_seconds, None, euler),
            ("distilled reflow (1 step)", "rectified-flow --distill_steps 1", distilled,
             ot_seconds + reflow_seconds + distill_seconds, None, lambda calls: 1 if calls == 1 else None),
            ("MeanFlow + OT", "meanflow --coupling ot", meanflow, meanflow_seconds, None, euler),
            ("DDPM (DDPMScheduler)", "ddpm", ddpm, ddpm_seconds, None, euler),
            ("DDPM (Diffusers DDIMScheduler)", "ddpm", ddpm, ddpm_seconds,
             lambda s: diffusers.DDIMScheduler.from_config(s.config), euler),
            ("DDPM (Diffusers DPMSolverMultistep)", "ddpm", ddpm, ddpm_seconds,
             lambda s: diffusers_scheduler(diffusers.DPMSolverMultistepScheduler, s), euler),
            ("DDPM (Diffusers UniPCMultistep)", "ddpm", ddpm, ddpm_seconds,
             lambda s: diffusers_scheduler(diffusers.UniPCMultistepScheduler, s), euler),
            ("DMD of flow matching (1 step)", "dmd", dmd, fm_seconds + dmd_seconds, None,
             lambda calls: 1 if calls == 1 else None),
            ("GAN", "gan", gan, gan_seconds, None, lambda calls: None),
            ("VAE", "vae", vae, vae_seconds, None, lambda calls: None),
        ]
        designed = {method.split()[0] for _, method, *_ in lines}
        teachers = {"flow-matching": (fm, fm_seconds), "ddpm": (ddpm, ddpm_seconds)}
        for method in methods_for(dataset, teachers=True):  # a registered method without a line above (a plugin's):
            if method in designed:  # its defaults, and a teacher of its teacher_method trained above
                continue
            wanted = registry.get("method", method).teacher_method
            if wanted is not None and wanted not in teachers:
                print(f"few-step: {method} skipped: no {wanted} teacher is trained here", flush=True)
                continue
            teacher, teacher_seconds = teachers.get(wanted, (None, 0.0))
            out, seconds = train(f"method-{method}", method, ["--teacher", str(teacher)] if teacher else [])
            lines.append((method, method, out, teacher_seconds + seconds, None, None))
        for label, method, out, seconds, scheduler, steps_for in lines:
            pipe = genzoo.load_pipeline(out)
            if scheduler is not None:
                pipe.scheduler = scheduler(pipe.scheduler)
            if steps_for is None:  # its own sampler: a step per call, or one pass
                steps_for = euler if getattr(pipe, "scheduler", None) is not None else (lambda calls: None)
            one_call = steps_for(2) is None  # GAN, VAE and the distilled model: a single point at 1 call
            points = curve_points(pipe, dataset, metric, fs["calls"][:1] if one_call else fs["calls"], steps_for,
                                  fs["eval_samples"])
            curves.append({"sampler": label, "method": method, "dataset": dataset, "metric": metric,
                           "train_seconds": round(seconds, 1), "points": points})
            print(f"few-step: {label} on {dataset}: {[round(p[metric], 3) for p in points]}", flush=True)
        if peer["installed"]:
            batch = budget["image_batch"] if image else budget["point_batch"]
            for label, matcher in PEER_MATCHERS:
                sampler, seconds = train_peer(matcher, dataset, steps, batch)
                points = curve_points(sampler, dataset, metric, fs["calls"], euler, fs["eval_samples"])
                curves.append({"sampler": label, "method": f"torchcfm {matcher}", "dataset": dataset,
                               "metric": metric, "train_seconds": round(seconds, 1), "points": points})
                print(f"few-step: {label} on {dataset}: {[round(p[metric], 3) for p in points]}", flush=True)
    return {"budget": budget, "peer": peer, "curves": curves, "ot_cost": ot_cost,
            "peer_ratios": peer_ratios(curves, fs["datasets"]) if peer["installed"] else {}}


def peer_ratios(curves, datasets) -> dict:
    """genzoo over torchcfm, per data set, from this one run (below 1: genzoo's samples are closer to the data)."""
    ratios = {}
    for dataset in datasets:
        at = {c["sampler"]: {p["budget"]: p[c["metric"]] for p in c["points"]} for c in curves if c["dataset"] == dataset}
        most = max(at["torchcfm CFM (Euler)"])

        def best_one_step(peer, at=at):
            name = min((s for s in at if s.startswith("torchcfm") == peer), key=lambda s: at[s][1])
            return name, at[name][1]

        pairs = [("OT-FM / OT-CFM at 1 call", ("OT flow matching (Euler)", 1), ("torchcfm OT-CFM (Euler)", 1)),
                 (f"OT-FM / OT-CFM at {most} calls", ("OT flow matching (Euler)", most), ("torchcfm OT-CFM (Euler)", most)),
                 ("FM / CFM at 1 call", ("flow matching (Euler)", 1), ("torchcfm CFM (Euler)", 1)),
                 (f"FM / CFM at {most} calls", ("flow matching (Euler)", most), ("torchcfm CFM (Euler)", most))]
        rows = [{"comparison": name, "genzoo": at[ours][b1], "torchcfm": at[theirs][b2],
                 "ratio": at[ours][b1] / at[theirs][b2]} for name, (ours, b1), (theirs, b2) in pairs]
        (ours, mine), (theirs, peer) = best_one_step(False), best_one_step(True)
        rows.append({"comparison": f"best one-step: {ours} / {theirs}", "genzoo": mine, "torchcfm": peer,
                     "ratio": mine / peer})
        ratios[dataset] = rows
    return ratios


def report(section: dict) -> list[str]:
    b, peer = section["budget"], section["peer"]
    calls = b["calls"]
    lines = [
        "## 6. Few-step and one-step: quality against calls, all methods", "",
        "![few-step](few_step.png)", "",
        f"Every model trained in this section, seed {b['seed']}, the same budget for all: {b['point_steps']} optimiser "
        f"steps of batch {b['point_batch']} on the 2-D sets, {b['image_steps']} steps of batch {b['image_batch']} on "
        f"digits; each method's default model and learning rate. Reflow (`--method rectified-flow --teacher <OT-FM>`) "
        f"and its one-step distillation (`--teacher <reflow> --distill_steps 1`) each train on "
        f"{b['point_pairs']} (2-D) / {b['image_pairs']} (digits) noise-sample pairs of their teacher, drawn with "
        f"{b['teacher_steps']} Euler steps (`--teacher_steps`). Quality: W2 (2-D) or digits-FD on {b['eval_samples']} "
        "seeded samples against held-out data, lower is better, at each budget of model calls per sample. Heun "
        "makes 2 x steps - 1 calls: it is listed under the largest budget its calls fit, its calls in brackets. "
        "GAN, VAE and the distilled model sample in one call (the distilled model is trained for one step only). "
        "Train seconds: wall-clock of training, from the start of the run to the saved model"
        + (" (each run in a process of its own, import of torch and Diffusers included)" if not b.get("in_process")
           else "") + "; the reflow model's includes its OT-FM teacher's, the distilled model's the whole chain "
        "(OT-FM + reflow pair generation and training + distillation pair generation and training). Heun and the "
        "Diffusers solvers sample the FM and DDPM models above, so they share their training time.", "",
    ]
    others = sorted({c["method"] for c in section["curves"] if c["sampler"] == c["method"]})
    if others:  # registered methods without lines of their own (plugins')
        lines += [f"Also registered, trained with their defaults and sampled with their own sampler: "
                  f"{', '.join(f'`{m}`' for m in others)}.", ""]
    for dataset in b["datasets"]:
        rows = [c for c in section["curves"] if c["dataset"] == dataset]
        lines += [f"**{dataset}** ({rows[0]['metric']})", "",
                  "| method | " + " | ".join(f"{n} call{'s' * (n > 1)}" for n in calls) + " | train seconds |",
                  "|---|" + "---:|" * (len(calls) + 1)]
        for curve in rows:
            by_budget = {p["budget"]: p for p in curve["points"]}
            cells = []
            for n in calls:
                p = by_budget.get(n)
                cells.append("–" if p is None else f"{p[curve['metric']]:.3f}"
                             + (f" ({p['calls']})" if p["calls"] != n else ""))
            lines.append(f"| {curve['sampler']} | " + " | ".join(cells) + f" | {curve['train_seconds']:.1f} |")
        cost = section["ot_cost"][dataset]
        lines += ["", f"OT coupling's cost per training step on {dataset}: {cost['ot_over_fm']:.2f} x FM's steps/s "
                  f"({cost['ot_steps_per_second']:.1f} against {cost['fm_steps_per_second']:.1f}).", ""]
    if not peer["installed"]:
        lines += [f"The peer, torchcfm, was {peer['reason']}: no peer comparison in this run.", ""]
        return lines
    lines += [f"**Peer: torchcfm {peer['version']}**, `ConditionalFlowMatcher(sigma=0.0)` and "
              "`ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)` with its `MLP(dim, time_varying=True, "
              f"w={PEER_WIDTH['vector']})` on the 2-D sets (w={PEER_WIDTH['image']} on the 64-d flattened digits), "
              f"trained by a plain loop with Adam at {PEER_LEARNING_RATE:g} (its examples' rate) on the same training "
              "data, steps, batch and seed, in this process (no import cost), without EMA; sampled with a plain Euler "
              "loop and scored by the same evaluation on the same reference. Ratios from this one run "
              "(genzoo / torchcfm; below 1: genzoo is closer to the data):", "",
              "| data set | comparison | genzoo | torchcfm | ratio |", "|---|---|---:|---:|---:|"]
    for dataset, rows in section["peer_ratios"].items():
        lines += [f"| {dataset} | {r['comparison']} | {r['genzoo']:.3f} | {r['torchcfm']:.3f} | {r['ratio']:.2f} |"
                  for r in rows]
    return lines + [""]
