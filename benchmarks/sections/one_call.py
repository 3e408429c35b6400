"""Section 8, one call against many: every zoo pipeline on the data sets where the zoo holds a distilled student, the
flow-map ones at 1, 2 and 4 model calls per sample, the multi-step ones (the teachers) along their curve, each point a
mean over sampling seeds with its spread and the real-data floor at the same sample size; training wall-clock with
the teachers' (and autoencoders') included.

The zoo decides what is compared: a pipeline whose ``metrics.json`` names a ``teacher`` is a student, the pipelines
it names are teachers, and every other zoo pipeline trained on the same data with the same conditioning (MeanFlow,
the GAN, the VAE) is measured beside them. Nothing is trained here: the zoo's folders are the models its cards
describe, so this section costs sampling only."""

from __future__ import annotations

import json
import math
from pathlib import Path

from harness import fmt, mean_spread

#: The conditional scores shown beside a data set's quality (its first comparison column, lower is better), higher
#: is better: the asked-for class, and a text model's prompt faithfulness on held-out captions and on held-out
#: shape-colour compositions.
EXTRA = {"class": ("class_accuracy",), "text": ("faithfulness_all", "unseen_faithfulness_all")}


def zoo_models(zoo: Path) -> list[dict]:
    """Every built zoo folder (one with ``metrics.json`` and ``eval.json``) with the facts this section uses."""
    models = []
    for folder in sorted(p.parent for p in zoo.glob("*/metrics.json")):
        metrics = json.loads((folder / "metrics.json").read_text())
        card = json.loads((folder / "eval.json").read_text())
        models.append({"name": folder.name, "folder": folder, "method": metrics["method"],
                       "dataset": metrics["dataset"], "conditioning": metrics.get("conditioning", "none"),
                       "teacher": _zoo_name(metrics.get("teacher")), "vae": _zoo_name(metrics.get("vae")),
                       "teacher_guidance": metrics.get("teacher_guidance"),
                       "wall_seconds": metrics["wall_seconds_this_run"], "pipeline": card["pipeline"],
                       "card_steps": card.get("num_inference_steps")})
    return models


def _zoo_name(source) -> str | None:
    """The zoo name of a ``pipelines/<name>`` option value (a teacher or autoencoder), else ``None``."""
    return Path(source).name if source and str(source).startswith("pipelines/") else None


def chain_seconds(model: dict, by_name: dict) -> float:
    """Training wall-clock of ``model`` and of every zoo model it was built from (teacher, autoencoder), each once."""
    seen, todo, total = set(), [model["name"]], 0.0
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        total += by_name[name]["wall_seconds"]
        todo += [by_name[name]["teacher"], by_name[name]["vae"]]
    return total


def groups(models: list[dict], datasets) -> list[dict]:
    """The (data set, conditioning) groups of ``datasets`` that hold a student, each with all its zoo models:
    teachers first, then the students, then the rest."""
    out = []
    for dataset in datasets:
        for conditioning in ("none", "class", "text"):
            members = [m for m in models if (m["dataset"], m["conditioning"]) == (dataset, conditioning)]
            students = [m for m in members if m["teacher"]]
            if not students:
                continue
            teachers = {m["teacher"]: m["teacher_guidance"] for m in students}
            for m in members:
                m["role"] = ("teacher" if m["name"] in teachers else
                             f"student of {m['teacher']}" if m["teacher"] else "from the data")
                # a conditional teacher is sampled at the guidance its student was distilled from
                m["guidance_scale"] = teachers.get(m["name"]) if conditioning != "none" else None
            members.sort(key=lambda m: (m["role"] != "teacher", not m["teacher"], m["name"]))
            out.append({"dataset": dataset, "conditioning": conditioning, "models": members})
    return out


def group_label(group: dict) -> str:
    return group["dataset"] + {"none": "", "class": ", class-conditional", "text": ", text prompts"}[group["conditioning"]]


def budgets_for(pipe, model: dict, budget: dict) -> list:
    """Sampling steps to measure ``pipe`` at: ``[None]`` (its one pass) for a GAN or VAE; the budget's ``calls`` up
    to 4 for a flow-map pipeline (its students are trained for a few calls); for a multi-step pipeline its
    ``multi_step_calls`` (default: ``calls``) and its card's steps."""
    if getattr(pipe, "scheduler", None) is None:
        return [None]
    if model["pipeline"] == "FlowMapPipeline":
        return [c for c in budget["calls"] if c <= 4]
    card = model["card_steps"] or pipe.default_num_inference_steps
    return sorted(set(budget.get("multi_step_calls", budget["calls"])) | {card})


def measure(cfg, work: Path) -> dict:
    """Each group's models at their budgets over ``seeds`` sampling seeds; the real-data floor at the same size."""
    import genzoo
    from genzoo.data import get_dataset
    from genzoo.metrics.evaluate import evaluate_pipeline

    oc = cfg["one_call"]
    zoo = Path(oc.get("zoo", Path(__file__).resolve().parents[2] / "pipelines"))
    models = zoo_models(zoo)
    by_name = {m["name"]: m for m in models}
    out = []
    for group in groups(models, list(oc["datasets"])):
        dataset = group["dataset"]
        budget = oc["datasets"][dataset]
        seeds, n = range(budget["seeds"]), budget["samples"]
        metric = get_dataset(dataset).summary_metrics[0]  # the registered data set's first comparison column
        extras = EXTRA.get(group["conditioning"], ())
        floors = [get_dataset(dataset).real_data_floor(n, seed=s)[metric] for s in seeds]
        rows = []
        for model in group["models"]:
            pipe = genzoo.load_pipeline(model["folder"])
            pipe.set_progress_bar_config(disable=True)
            points = []
            for steps in budgets_for(pipe, model, budget):
                runs = [evaluate_pipeline(pipe, dataset, num_samples=n, steps=steps, seed=s, likelihood=False,
                                          guidance_scale=model["guidance_scale"]) for s in seeds]
                point = {"steps": steps, "calls": runs[0]["model_calls_per_sample"],
                         "guidance_scale": runs[0].get("guidance_scale"),
                         "sampling_seconds": sum(r["sampling_seconds"] for r in runs) / len(runs)}
                for key in (metric, *extras):
                    point[key], point[key + "_sd"] = mean_spread([r[key] for r in runs])
                points.append(point)
                print(f"one-call: {model['name']} at {point['calls']} calls: {fmt(point[metric], point[metric + '_sd'])}",
                      flush=True)
            rows.append({"name": model["name"], "method": model["method"], "role": model["role"],
                         "teacher": model["teacher"], "pipeline": model["pipeline"],
                         "train_seconds": round(chain_seconds(model, by_name), 1), "points": points})
        mean, sd = mean_spread(floors)
        out.append({"dataset": dataset, "conditioning": group["conditioning"], "metric": metric, "extras": list(extras),
                    "num_samples": n, "seeds": len(seeds), "floor": mean, "floor_sd": sd, "rows": rows,
                    "verdicts": verdicts(rows, metric, extras)})
    return {"config": {k: v for k, v in oc.items() if k != "zoo"}, "groups": out}


def best(points, key, lower=True):
    """The point of ``points`` with the best mean ``key``."""
    scored = [p for p in points if p.get(key) is not None]
    return (min if lower else max)(scored, key=lambda p: p[key]) if scored else None


def verdicts(rows, metric, extras) -> list[dict]:
    """Each student's best point at one call against its teacher at the teacher's best number of calls: better or
    worse where the means differ by more than their spreads combined, level otherwise."""
    by_name = {r["name"]: r for r in rows}
    out = []
    for row in rows:
        teacher = by_name.get(row["teacher"])
        if teacher is None:
            continue
        one = [p for p in row["points"] if p["calls"] == 1]
        for key, lower in ((metric, True), *((e, False) for e in extras)):
            mine, theirs = best(one, key, lower), best(teacher["points"], key, lower)
            if mine is None or theirs is None:
                continue
            gap = mine[key] - theirs[key]
            spread = math.hypot(mine[key + "_sd"], theirs[key + "_sd"])
            ahead = -gap if lower else gap
            verdict = "better" if ahead > spread else "worse" if -ahead > spread else "level (within the seed spread)"
            out.append({"student": row["name"], "teacher": teacher["name"], "key": key,
                        "student_value": mine[key], "student_sd": mine[key + "_sd"],
                        "teacher_value": theirs[key], "teacher_sd": theirs[key + "_sd"],
                        "teacher_calls": theirs["calls"], "verdict": verdict})
    return out


def plot(section: dict, path: Path) -> None:
    """One panel per group: quality against model calls (log x), the spread over seeds as error bars, teachers as
    solid lines, the real-data floor at the same sample size as a grey band."""
    import matplotlib as mpl
    from matplotlib.figure import Figure

    groups_ = section["groups"]
    columns = min(2, max(1, len(groups_)))
    rows = math.ceil(len(groups_) / columns)
    fig = Figure(figsize=(6.5 * columns, 4.6 * rows), layout="constrained")
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, group in enumerate(groups_):
        ax = fig.add_subplot(rows, columns, i + 1)
        metric = group["metric"]
        for j, row in enumerate(group["rows"]):
            xs = [p["calls"] for p in row["points"]]
            ax.errorbar(xs, [p[metric] for p in row["points"]], yerr=[p[metric + "_sd"] for p in row["points"]],
                        label=row["name"] + (" (teacher)" if row["role"] == "teacher" else ""),
                        color=colors[j % len(colors)], marker="osD^v<>p"[j % 8], capsize=3,
                        linestyle="-" if row["role"] == "teacher" else "--", markersize=8 if len(xs) == 1 else 5)
        ax.axhspan(group["floor"] - group["floor_sd"], group["floor"] + group["floor_sd"], color="0.85")
        ax.axhline(group["floor"], color="0.5", linewidth=1, label=f"real data, {group['num_samples']} samples")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sorted({p["calls"] for row in group["rows"] for p in row["points"]}))  # the calls measured
        ax.yaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1, 2, 5)))
        for axis in (ax.xaxis, ax.yaxis):  # 0.2, not 2 x 10^-1
            axis.set_major_formatter(mpl.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_formatter(mpl.ticker.NullFormatter())
        ax.set_xlabel("model calls per sample")
        ax.set_ylabel(f"{metric} (mean ± sd over {group['seeds']} seeds)")
        ax.set_title(group_label(group))
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)


def report(section: dict) -> list[str]:
    lines = [
        "## 8. One call against many: the zoo's students against their teachers", "",
        "![one call against many](one_call.png)", "",
        "The zoo's pipelines (`pipelines/`, as their cards describe them; nothing is trained here) on each data set "
        "where the zoo holds a distilled student: the multi-step models (the teachers among them) at several numbers of "
        "calls and at their card's number of steps, the flow-map pipelines (MeanFlow, distilled rectified flow, DMD) "
        "at 1, 2 and 4 calls, the GAN and VAE in their one pass. Each cell is the mean ± standard deviation over sampling seeds 0, 1, ... of the score of "
        "that many samples against held-out data (lower is better), beside the same score of as many real training "
        "samples (the floor). A call is one pass of the denoiser per sample; a guided conditional teacher batches "
        "its conditional and unconditional pass into each, and is sampled at the guidance its student was "
        "distilled from (`teacher_guidance` in the student's `metrics.json`; the guidance column), the students "
        "and the rest at their stored default. Train seconds: wall-clock of the run that built the "
        "folder, with its teacher's and autoencoder's runs added (from their `metrics.json`).", "",
    ]
    for group in section["groups"]:
        metric, calls = group["metric"], sorted({p["calls"] for r in group["rows"] for p in r["points"]})
        lines += [f"**{group_label(group)}** ({metric}, {group['num_samples']} samples, {group['seeds']} seeds; "
                  f"real-data floor {fmt(group['floor'], group['floor_sd'])})", "",
                  "| pipeline | role | guidance | " + " | ".join(f"{c} call{'s' * (c > 1)}" for c in calls)
                  + " | train seconds |", "|---|---|---:|" + "---:|" * (len(calls) + 1)]
        for row in group["rows"]:
            at = {p["calls"]: p for p in row["points"]}
            cells = [fmt(at[c][metric], at[c][metric + "_sd"]) if c in at else "–" for c in calls]
            guidance = row["points"][0]["guidance_scale"]
            lines.append(f"| `{row['name']}` | {row['role']} | {'–' if guidance is None else f'{guidance:g}'} | "
                         + " | ".join(cells) + f" | {row['train_seconds']:.0f} |")
        for extra in group["extras"]:
            lines += ["", f"{extra} (higher is better): " + "; ".join(
                f"`{row['name']}` " + ", ".join(f"{fmt(p[extra], p[extra + '_sd'])} at {p['calls']}"
                                                for p in row["points"]) for row in group["rows"])]
        lines += ["", "Student against teacher (its best point at one call; the teacher at its best number of "
                  "calls):", ""]
        lines += [f"- `{v['student']}` {v['key']} {fmt(v['student_value'], v['student_sd'])} in one call against "
                  f"`{v['teacher']}` {fmt(v['teacher_value'], v['teacher_sd'])} in {v['teacher_calls']}: "
                  f"**{v['verdict']}**" for v in group["verdicts"]]
        lines.append("")
    return lines
