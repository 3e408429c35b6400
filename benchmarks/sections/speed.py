"""Section 3, speed: genzoo against what it replaces, timed side by side in this one process: the trainer against a
plain PyTorch loop, the schedulers' ``step`` and a DDPM sampling run against Diffusers'."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from harness import timed


def measure(cfg, work: Path) -> dict:
    """The three ratios (quick mode: one repeat of each timing)."""
    return {"trainer": trainer_vs_plain_loop(cfg, work),
            "schedulers": scheduler_step_ratios(cfg.get("speed_repeats", 5)),
            "pipeline": pipeline_ratio(cfg.get("speed_repeats", 7))}


def trainer_vs_plain_loop(cfg, work: Path, data=("--dataset", "digits"), batch: int = 128, steps: int | None = None,
                          repeats: int | None = None) -> dict:
    """Steps/s of genzoo's trainer against the hand-written PyTorch loop, same UNet, batch, data and loss (the
    trainer's default flow-matching UNet on ``data``, 8x8 digits unless told otherwise)."""
    from genzoo.data import digits_dataset  # noqa: F401  (import cost outside the timing)
    from genzoo.training import parse_args
    from genzoo.training.trainer import Trainer, reset_accelerate_state

    steps = cfg["speed_steps"] if steps is None else steps
    args = parse_args([*data, "--output_dir", str(work / "speed"), "--logger", "none", "--train_batch_size", str(batch),
                       "--max_train_steps", str(10**9), "--checkpointing_steps", str(10**9),
                       "--save_images_steps", str(10**9), "--use_ema", "false"])
    trainer = Trainer(args)
    trainer.setup()
    batches = []
    while len(batches) < steps:  # an epoch of digits is only 11 batches of 128
        batches += [b for _, b in zip(range(steps - len(batches)), trainer.dataloader)]
    model = trainer.raw["unet"]
    scheduler = trainer.method.training_scheduler
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def genzoo_steps():
        for batch in batches:
            trainer._update([batch])
            trainer.global_step += 1

    def plain_steps():  # what every tutorial writes
        for batch in batches:
            x = batch["sample"]
            noise = torch.randn_like(x)
            t = torch.rand(x.shape[0]) * 1000
            noisy = scheduler.add_noise(x, noise, t)
            loss = torch.nn.functional.mse_loss(model(noisy, t).sample, x - noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    ratios, pairs = [], []
    for _ in range(repeats or cfg.get("speed_repeats", 3)):  # interleaved, so drift in machine speed hits both
        g, p = timed(genzoo_steps, 1), timed(plain_steps, 1)
        pairs.append((steps / g, steps / p))
        ratios.append(p / g)
    trainer.release_output_dir()  # run() releases it; this loop drove the trainer by hand
    reset_accelerate_state()
    genzoo_sps = statistics.median(a for a, _ in pairs)
    plain_sps = statistics.median(b for _, b in pairs)
    return {"genzoo_steps_per_second": genzoo_sps, "plain_steps_per_second": plain_sps,
            "ratio_genzoo_over_plain": statistics.median(ratios), "steps": steps, "batch": batch,
            "sample_shape": list(trainer.data.sample_shape)}


def scheduler_step_ratios(repeats: int = 5) -> dict:
    """Time per ``step`` with a trivial model, genzoo vs Diffusers (the schedulers' own cost); the median of
    ``repeats`` runs of 1000 steps each."""
    import diffusers

    import genzoo

    x0 = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    results = {}
    for name, ours, theirs in (
        ("DDPMScheduler", genzoo.DDPMScheduler(), diffusers.DDPMScheduler()),
        ("FlowMatchEuler", genzoo.FlowMatchEulerScheduler(), diffusers.FlowMatchEulerDiscreteScheduler()),
    ):
        def loop(s):
            def run():
                s.set_timesteps(1000)
                x = x0
                g = torch.Generator().manual_seed(0)
                for t in s.timesteps:
                    kwargs = {"generator": g}
                    x = s.step(x * 0.1, t, x, **kwargs).prev_sample
            return run
        a, b = timed(loop(ours), repeats), timed(loop(theirs), repeats)
        results[name] = {"genzoo_us_per_step": a / 1000 * 1e6, "diffusers_us_per_step": b / 1000 * 1e6,
                         "ratio_genzoo_over_diffusers": a / b}
    return results


def pipeline_ratio(pairs: int = 7) -> dict:
    """A full DDPM sampling run: genzoo.DDPMPipeline against diffusers.DDPMPipeline, same UNet and step count; the
    median over ``pairs`` runs of each, interleaved."""
    import diffusers

    import genzoo

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64),
                                 norm_num_groups=8, layers_per_block=1,
                                 down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    ours = genzoo.DDPMPipeline(unet=unet, scheduler=genzoo.DDPMScheduler())
    theirs = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler())
    for p in (ours, theirs):
        p.set_progress_bar_config(disable=True)
    steps = 100

    def run(p):
        return lambda: p(batch_size=16, generator=torch.Generator().manual_seed(0), num_inference_steps=steps,
                         output_type="np")

    pairs = [(timed(run(ours), 1), timed(run(theirs), 1)) for _ in range(pairs)]  # interleaved against drift
    a, b = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    return {"steps": steps, "batch": 16, "genzoo_seconds": a, "diffusers_seconds": b,
            "ratio_genzoo_over_diffusers": statistics.median(p[0] / p[1] for p in pairs)}


def report(speed: dict) -> list[str]:
    lines = ["## 3. Speed (ratios measured side by side in one process)", "",
             "| comparison | genzoo | baseline | ratio | target |", "|---|---|---|---|---|",
             f"| trainer vs plain PyTorch loop (steps/s, FM UNet, batch 128) | {speed['trainer']['genzoo_steps_per_second']:.2f} | "
             f"{speed['trainer']['plain_steps_per_second']:.2f} | {speed['trainer']['ratio_genzoo_over_plain']:.3f} x of plain speed | ≥ 0.95 |"]
    for name, r in speed["schedulers"].items():
        lines.append(f"| {name}.step vs Diffusers (µs/step) | {r['genzoo_us_per_step']:.1f} | {r['diffusers_us_per_step']:.1f} | "
                     f"{r['ratio_genzoo_over_diffusers']:.3f} x the time | ≤ 1 |")
    p = speed["pipeline"]
    return lines + [f"| DDPMPipeline vs diffusers.DDPMPipeline ({p['steps']} steps, batch {p['batch']}, s) | {p['genzoo_seconds']:.3f} | "
                    f"{p['diffusers_seconds']:.3f} | {p['ratio_genzoo_over_diffusers']:.3f} x the time | ≤ 1 |", ""]
