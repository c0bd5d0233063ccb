"""``python -m smac_lightning compare --config conf/<family>.yaml --seeds N``: the paper's evidence protocol.

Per seed, on one dataset and one meta-test protocol, it trains:

- ``smac``: offline meta-training, then self-supervision with the decoder's reward labels;
- ``oracle``: the same with the env's true rewards in the self-supervised phase (the Online Oracle);
- ``offline``: offline meta-training only, for as many updates as the other two in all;
- ``meta_bc``: meta behaviour cloning (actor loss -log pi(a | s, z)), offline, as many updates;
- ``no_online_data`` (an ablation, not in the default set): SMAC's self-supervised phase without
  its data (``model.self_supervised.collect false``): what the phase's losses give on the offline
  rows alone, so that SMAC's gain over it is the self-supervised data's;
- ``actor_ablation`` and ``sac_ablation`` (not in the default set): the paper's ablations, eq. (2)
  replaced by PEARL's actor loss (-Q at the policy's action, a tuned entropy term) in both phases,
  the critic's target kept (actor) or made soft (SAC).

``--fork DIR`` runs the self-supervised methods (``oracle``, ``no_online_data``) from the switch
checkpoints of an earlier comparison's SMAC runs instead (kept with ``--checkpoint.save_top_k -1``):
each starts its phase from the very state SMAC started from, so the comparison is paired and costs
no offline phase; the runs join that comparison's parent run and summary. Their ``--model.*`` options
are written into the checkpoints (``fit --ckpt_path`` takes a checkpoint's over the command line's),
so ``--fork DIR --methods smac --label NAME --model.X Y`` runs SMAC's phase under another setting.

Each run is a ``fit`` in its own process, logged to MLflow as a child of one parent run. The held-out
numbers of every evaluation (on families with a success reward also success, overall and per
behaviour, held-out, training and from offline histories) go to ``results.csv``, the per-method
summary (at the switch and over the last evaluations) to ``summary.csv``, and
``compare.png`` plots mean and spread across seeds with the phase switch marked, like the paper's
Fig. 5; all three are logged to the parent run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from smac_lightning.errors import ConfigError
from smac_lightning.plots import comparison
from smac_lightning.tracking import DEFAULT_TRACKING_URI

PAPER_METHODS = ("smac", "oracle", "offline", "meta_bc")  # the default: the paper's comparison
METHODS = (*PAPER_METHODS, "no_online_data", "actor_ablation", "sac_ablation")
LAST_EVALUATIONS = 3  # the end of a run is the mean of its last evaluations (one scatters by about +-1.5)
FORKABLE = ("oracle", "no_online_data")  # what differs from SMAC only after the switch
PLAN_FILE = "compare.json"  # in the output folder: what ``--fork`` needs of a comparison
USAGE = (
    "usage: python -m smac_lightning compare --config CONFIG [--config OVERLAY ...] [--seeds N] [--first-seed K] "
    f"[--methods {','.join(METHODS)}] [--out DIR] [--jobs J] [--fork DIR] [--label NAME] [fit options ...]"
)


@dataclass
class Plan:
    config_args: list[str]  # --config files and fit overrides, passed to every run
    seeds: int
    methods: list[str]
    out: Path
    jobs: int
    tracking_uri: str
    offline_updates: int
    self_supervised_updates: int
    family: str
    first_seed: int = 0  # seeds first_seed .. first_seed + seeds - 1: more seeds for an earlier comparison
    fork_from: dict | None = None  # ``--fork``: the earlier comparison's compare.json
    runs_root: str = "runs"  # trainer.default_root_dir, where the runs' checkpoints are
    label: str = ""  # ``--label``: the one method's name in results (a variant under other options)
    model_options: dict | None = None  # the resolved config's model options: what a fork may set

    def name(self, method: str) -> str:
        return self.label or method

    def runs(self) -> list[tuple[str, int]]:
        """(method, seed) in the order they run: every method of a seed before the next seed."""
        return [(m, s) for s in range(self.first_seed, self.first_seed + self.seeds) for m in self.methods]


def parse(args: list[str]) -> Plan:
    """Our own options, then the resolved config (which validates it) for the budgets and the family."""
    own = {"--seeds": "3", "--first-seed": "0", "--methods": ",".join(PAPER_METHODS), "--out": "", "--jobs": "1", "--fork": "", "--label": ""}
    rest, i = [], 0
    while i < len(args):
        name, _, value = args[i].partition("=")
        if name in own:
            if not value:
                i += 1
                if i >= len(args):
                    raise ConfigError(f"compare: {name} needs a value\n{USAGE}")
                value = args[i]
            own[name] = value
        else:
            rest.append(args[i])
        i += 1
    if "--config" not in [a.partition("=")[0] for a in rest]:
        raise ConfigError(f"compare: give the task config with --config conf/<family>.yaml\n{USAGE}")
    try:
        seeds, jobs, first_seed = int(own["--seeds"]), int(own["--jobs"]), int(own["--first-seed"])
    except ValueError:
        raise ConfigError(
            f"compare: --seeds, --first-seed and --jobs take whole numbers, got {own['--seeds']!r}, "
            f"{own['--first-seed']!r} and {own['--jobs']!r}"
        ) from None
    if seeds < 1 or jobs < 1:
        raise ConfigError(f"compare: --seeds and --jobs must be >= 1, got {seeds} and {jobs}")
    if first_seed < 0:
        raise ConfigError(f"compare: --first-seed must be >= 0, got {first_seed}")
    methods = [m.strip() for m in own["--methods"].split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ConfigError(f"compare: unknown method(s) {unknown or methods}; choose from {','.join(METHODS)}")

    printed = subprocess.run(
        [sys.executable, "-m", "smac_lightning", "fit", *rest, "--print_config"], capture_output=True, text=True
    )
    if printed.returncode != 0:
        raise ConfigError(f"compare: the config does not resolve:\n{printed.stderr.strip().splitlines()[-1]}")
    config = yaml.safe_load(printed.stdout)
    if not config["model"]["class_path"].endswith(".SMAC") or not config["data"]["class_path"].endswith(".OfflineMetaDataModule"):
        raise ConfigError(
            "compare: the config is not an offline SMAC config with a dataset recipe (a PEARL config trains "
            "online); give conf/<family>.yaml"
        )
    model, family = config["model"]["init_args"], config["data"]["init_args"]["family"]["class_path"].rsplit(".", 1)[-1]
    ss = model["self_supervised"]
    logger = (config.get("trainer") or {}).get("logger") or {}
    uri = (logger.get("init_args") or {}).get("tracking_uri") or DEFAULT_TRACKING_URI
    label = own["--label"]
    if label and (len(methods) != 1 or label in METHODS or not re.fullmatch(r"[\w.+-]+", label)):
        raise ConfigError(f"compare --label names one method's variant (--methods with one method), not a method's own "
                          f"name, in letters, digits and _.+-; got --label {label!r} for {','.join(methods)}")
    fork_from = _fork_source(own["--fork"], methods, family, model["offline_updates"], bool(label)) if own["--fork"] else None
    out = Path(own["--out"] or own["--fork"] or f"compare/{family}-{time.strftime('%Y%m%d-%H%M%S')}")
    root = (config.get("trainer") or {}).get("default_root_dir") or "runs"
    return Plan(rest, seeds, methods, out, jobs, uri, model["offline_updates"], ss["iterations"] * ss["updates_per_iteration"],
                family, first_seed, fork_from, root, label, model)


def _fork_source(folder: str, methods: list[str], family: str, offline_updates: int, labelled: bool = False) -> dict:
    """The earlier comparison's ``compare.json``, checked against what this one forks."""
    others = sorted(set(methods) - set(FORKABLE) - ({"smac"} if labelled else set()))
    if others:
        raise ConfigError(f"compare --fork: only {', '.join(FORKABLE)} (and smac under a --label) can start from SMAC's "
                          f"switch; not {', '.join(others)}")
    path = Path(folder) / PLAN_FILE
    if not path.is_file():
        raise ConfigError(
            f"compare --fork: {path} does not exist: give the output folder of a comparison (compare writes {PLAN_FILE} "
            f"since 2026-12-05; for an older one write it by hand: parent_run, family, offline_updates, tracking_uri)"
        )
    source = json.loads(path.read_text())
    if (source["family"], source["offline_updates"]) != (family, offline_updates):
        raise ConfigError(
            f"compare --fork: {folder} compared {source['family']} with a switch at {source['offline_updates']} updates; "
            f"this config is {family} with {offline_updates}: give the same config and budget"
        )
    return source


def method_args(plan: Plan, method: str) -> list[str]:
    """The fit options that make ``method`` out of the config."""
    all_offline = ["--model.offline_updates", str(plan.offline_updates + plan.self_supervised_updates),
                   "--model.self_supervised.iterations", "0"]
    return {
        "smac": [],
        "oracle": ["--model.self_supervised.rewards", "true"],
        "offline": all_offline,
        "meta_bc": [*all_offline, "--model.actor.loss", "bc"],
        "actor_ablation": ["--model.actor.loss", "reparam", "--model.actor.alpha", "tuned", "--model.actor.soft_target", "false"],
        "sac_ablation": ["--model.actor.loss", "reparam", "--model.actor.alpha", "tuned"],
        "no_online_data": ["--model.self_supervised.collect", "false"],
    }[method]


def run(args: list[str]) -> None:
    import mlflow

    plan = parse(args)
    plan.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # the dataset first, once: runs in parallel must not all generate it
    made = subprocess.run([sys.executable, "-m", "smac_lightning", "data", "make", *_config_only(plan.config_args)])
    if made.returncode != 0:
        raise ConfigError("compare: making the dataset failed (see above)")
    mlflow.set_tracking_uri(plan.tracking_uri)
    mlflow.set_experiment("smac_lightning")
    jobs = plan.runs()
    if plan.fork_from:  # every fork is written before anything runs: a missing checkpoint stops it at once
        for method, seed in jobs:
            write_fork(plan, method, seed)
    parent_run = {"run_id": plan.fork_from["parent_run"]} if plan.fork_from else {"run_name": f"compare {plan.family} x{plan.seeds}"}
    with mlflow.start_run(**parent_run) as parent:
        parent_id = parent.info.run_id
        if not plan.fork_from:
            mlflow.log_params({"config_args": " ".join(plan.config_args)[:6000], "seeds": plan.seeds,
                               "first_seed": plan.first_seed, "methods": ",".join(plan.methods)})
            source = {"parent_run": parent_id, "family": plan.family, "offline_updates": plan.offline_updates, "tracking_uri": plan.tracking_uri}
            (plan.out / PLAN_FILE).write_text(json.dumps(source, indent=1) + "\n")
        seeds = f"{plan.first_seed}-{plan.first_seed + plan.seeds - 1}"
        print(f"compare: {len(jobs)} runs ({', '.join(plan.methods)} x seeds {seeds}) into {plan.out}, "
              f"MLflow parent run {parent_id} in {plan.tracking_uri}", flush=True)
        failed = _run_all(plan, jobs, parent_id)
        # a failed run's partial curve would pass for a finished one in the summary: only finished runs go in
        # (with --fork the summary is the whole comparison's: its SMAC runs and every fork so far)
        rows = [r for r in _results(plan, parent_id) if (r["method"], r["seed"]) not in failed]
        summary = summarize(rows, plan.offline_updates)
        if rows:
            _write_csv(plan.out / "results.csv", rows)
            _write_csv(plan.out / "summary.csv", summary)
            plot(rows, plan.offline_updates, plan.out / "compare.png", plan.family)
            for name in ("results.csv", "summary.csv", "compare.png"):
                mlflow.log_artifact(str(plan.out / name))
        mlflow.log_metric("fork_wall_time_s" if plan.fork_from else "wall_time_s", time.perf_counter() - started)
    if summary:
        print(_table(summary))
    minutes = (time.perf_counter() - started) / 60
    if failed:
        names = ", ".join(f"{method} seed {seed}" for method, seed in failed)
        kept = f"the {len(jobs) - len(failed)} finished run(s) are summarised in {plan.out}/summary.csv" if rows else "nothing to summarise"
        raise ConfigError(
            f"compare: {len(failed)} run(s) failed after {minutes:.1f} min: {names} (logs in {plan.out}); {kept}; "
            f"run one again with --methods {plan.methods[0] if plan.label else failed[0][0]}{f' --label {plan.label}' * bool(plan.label)} "
            f"--first-seed {failed[0][1]} --seeds 1"
        )
    print(f"compare: done in {minutes:.1f} min; {plan.out}/results.csv, summary.csv, compare.png")


def _children(client, parent_id: str):
    """The store's experiment and the runs of the comparison whose parent run is ``parent_id``."""
    experiment = client.get_experiment_by_name("smac_lightning")
    return experiment, client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")


def fork_path(plan: Plan, method: str, seed: int) -> Path:
    return plan.out / "forks" / f"{method}-seed{seed}.ckpt"


def write_fork(plan: Plan, method: str, seed: int) -> Path:
    """``method``'s start for ``seed``: the SMAC run's checkpoint at the switch with the method's model
    options and the command line's ``--model.*`` ones written in (a checkpoint's options win over
    the command line's in ``fit --ckpt_path``)."""
    from mlflow.tracking import MlflowClient

    import torch

    from smac_lightning.checkpoints import fork

    client = MlflowClient(plan.tracking_uri)
    experiment, children = _children(client, plan.fork_from["parent_run"])
    smac = [c for c in children if c.data.tags.get("compare.method") == "smac" and c.data.tags.get("compare.seed") == str(seed)]
    if not smac:
        raise ConfigError(f"compare --fork: the comparison has no SMAC run of seed {seed}")
    folder = Path(plan.runs_root) / experiment.experiment_id / smac[0].info.run_id / "checkpoints"
    found = sorted(folder.glob(f"*step={plan.offline_updates}.ckpt"))
    if not found:
        raise ConfigError(
            f"compare --fork: no checkpoint of update {plan.offline_updates} in {folder}: the SMAC runs must keep their "
            f"checkpoints (run that comparison with --checkpoint.save_top_k -1)"
        )
    checkpoint = torch.load(found[0], map_location="cpu", weights_only=False)
    fork(checkpoint, {**_model_options(plan.config_args), **_model_options(method_args(plan, method))}, plan.model_options)
    path = fork_path(plan, plan.name(method), seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def _options(args: list[str]):
    """Each fit option of ``args`` (every one takes a value, ``--name value`` or ``--name=value``) as
    ``(name, value, its tokens)``."""
    i = 0
    while i < len(args):
        tokens = args[i : i + (1 if "=" in args[i] else 2)]
        name, eq, value = args[i].partition("=")
        yield name, value if eq else (tokens[1] if len(tokens) > 1 else ""), tokens
        i += len(tokens)


def _model_options(args: list[str]) -> dict[str, str]:
    """``--model.KEY VALUE`` (or ``=VALUE``) options as ``{KEY: VALUE}``."""
    return {name[len("--model."):]: value for name, value, _ in _options(args) if name.startswith("--model.")}


def _config_only(args: list[str]) -> list[str]:
    """The ``--config`` files and ``--data.*`` options: what decides the dataset."""
    return [token for name, _, tokens in _options(args) if name == "--config" or name.startswith("--data.") for token in tokens]


def _run_all(plan: Plan, jobs: list[tuple[str, int]], parent_id: str) -> list[tuple[str, int]]:
    """Every job's fit, ``plan.jobs`` at a time; the (method or label, seed) of those that failed."""
    pending, running, failed = list(jobs), [], []
    while pending or running:
        while pending and len(running) < plan.jobs:
            method, seed = pending.pop(0)
            name = plan.name(method)
            log = plan.out / f"{name}-seed{seed}.log"
            tags = {"mlflow.parentRunId": parent_id, "compare.method": name, "compare.seed": str(seed)}
            resume = ["--ckpt_path", str(fork_path(plan, name, seed))] if plan.fork_from else []
            command = [
                sys.executable, "-m", "smac_lightning", "fit", *plan.config_args, *method_args(plan, method),
                "--seed_everything", str(seed), "--trainer.enable_progress_bar", "false",
                "--trainer.logger.init_args.run_name", f"{name} seed {seed}" + " (forked)" * bool(resume),
                "--trainer.logger.init_args.tags", json.dumps(tags), *resume,
            ]
            # the cores shared out between the runs: more compute threads than cores make every run slower
            env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // plan.jobs)))}
            process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
            running.append((name, seed, time.perf_counter(), process))
        time.sleep(1.0)
        for entry in list(running):
            name, seed, t0, process = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            status = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode}; see {plan.out}/{name}-seed{seed}.log)"
            if process.returncode:
                failed.append((name, seed))
            print(f"compare: {name} seed {seed} {status} in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return failed


def success_column(metric: str) -> str:
    """The results column of a success metric: ``eval/{test,train}/final_success[_offline_context][/<behaviour>]``
    -> ``[train_]success`` or ``[train_]offline_context_success``, ``eval/{test,train}/exploration_success`` ->
    ``[train_]exploration_success``, with ``/<behaviour>`` where the metric has one."""
    _, tasks, name, *group = metric.split("/")
    kind = "exploration_" if name.startswith("exploration") else "offline_context_" if name.endswith("_offline_context") else ""
    return "/".join([("train_" if tasks == "train" else "") + kind + "success", *group])


def _results(plan: Plan, parent_id: str) -> list[dict]:
    """One row per run and evaluation, read back from MLflow; on families with a success reward also
    success (held-out, training, from an offline history) overall and per behaviour (``success_column``)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(plan.tracking_uri)
    _, children = _children(client, parent_id)
    keys = {"final_return": "eval/test/final_return", "offline_context_return": "eval/test/final_return_offline_context",
            "train_final_return": "eval/train/final_return"}
    rows = []
    for child in children:
        successes = sorted(m for m in child.data.metrics if re.fullmatch(r"eval/(test|train)/(final_success(_offline_context)?|exploration_success)(/\w+)?", m))
        columns = {**keys, **{success_column(m): m for m in successes}}
        histories = {name: {m.step: m.value for m in client.get_metric_history(child.info.run_id, key)} for name, key in columns.items()}
        updates = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "progress/updates")}
        for step in sorted(updates):
            row = {"method": child.data.tags["compare.method"], "seed": int(child.data.tags["compare.seed"]), "updates": int(updates[step])}
            row.update({name: history.get(step, "") for name, history in histories.items() if history})
            rows.append(row)
    return sorted(rows, key=lambda r: (_order(r["method"]), r["seed"], r["updates"]))


def _order(method: str) -> tuple[int, str]:
    """The paper's methods in their order, then labelled variants by name."""
    return (METHODS.index(method) if method in METHODS else len(METHODS), method)


def _methods(rows: list[dict]) -> list[str]:
    return sorted({r["method"] for r in rows}, key=_order)


def is_success(column: str) -> bool:
    return column.split("/")[0].endswith("success")


def summarize(rows: list[dict], switch: int) -> list[dict]:
    """Per method, mean and std across seeds of the held-out final_return and offline-context return,
    and of every success column (``success_column``), at the switch and over the last evaluations."""
    n = LAST_EVALUATIONS
    columns = [c for c in dict.fromkeys(key for r in rows for key in r) if is_success(c)]
    named = {"final_return": ("at_switch", f"last{n}"), "offline_context_return": ("offline_context_at_switch", f"offline_context_last{n}"),
             **{c: (f"{c}_at_switch", f"{c}_last{n}") for c in sorted(columns)}}
    summary = []
    for method in _methods(rows):
        mine = [r for r in rows if r["method"] == method]
        entry = {"method": method, "seeds": len({r["seed"] for r in mine}), "updates": max(r["updates"] for r in mine)}
        for column, (switch_name, last_name) in named.items():
            at_switch, at_end = [], []
            for seed in sorted({r["seed"] for r in mine}):
                runs = [r for r in mine if r["seed"] == seed]
                at_switch += [r[column] for r in runs if r["updates"] == switch and r.get(column, "") != ""][:1]
                last = [r[column] for r in runs[-n:] if r.get(column, "") != ""]  # a behaviour may miss an evaluation's draw
                at_end += [np.mean(last)] if last else []
            for name, values in ((switch_name, at_switch), (last_name, at_end)):
                if values:
                    entry[f"{name}_mean"], entry[f"{name}_std"] = round(float(np.mean(values)), 3), round(float(np.std(values)), 3)
        summary.append(entry)
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)


def _table(summary: list[dict]) -> str:
    n = LAST_EVALUATIONS
    lines = ["held-out final_return (mean +- std across seeds):"]
    for s in summary:
        parts = [f"{s['method']:>8}:"]
        if "at_switch_mean" in s:
            parts.append(f"at the switch {s['at_switch_mean']:.2f} +- {s['at_switch_std']:.2f},")
        parts.append(f"last {n} evaluations {s[f'last{n}_mean']:.2f} +- {s[f'last{n}_std']:.2f}")
        if f"success_last{n}_mean" in s:
            parts.append(f"(success {s[f'success_last{n}_mean']:.2f})")
        lines.append(" ".join(parts))
    if any(f"success_last{n}_mean" in s for s in summary):
        lines.append(f"success, at the switch -> last {n} evaluations (mean across seeds; per behaviour in brackets):")
        for s in summary:
            groups = []
            for column, label in (("success", "held-out"), ("train_success", "training"), ("offline_context_success", "held-out from offline histories"),
                                  ("exploration_success", "held-out exploration reaching success")):
                behaviours = [c[: -len(f"_last{n}_mean")] for c in s if c.startswith(f"{column}/") and c.endswith(f"_last{n}_mean")]
                if f"{column}_last{n}_mean" in s:
                    inner = ", ".join(f"{b.split('/')[1]} {_change(s, b)}" for b in behaviours)
                    groups.append(f"{label} {_change(s, column)}" + (f" ({inner})" if inner else ""))
            lines.append(f"{s['method']:>8}: " + "; ".join(groups))
    return "\n".join(lines)


def _change(summary: dict, column: str) -> str:
    """``a -> b``: a column's mean at the switch (``-`` where it has none) and over the last evaluations."""
    n = LAST_EVALUATIONS
    before = summary.get(f"{column}_at_switch_mean")
    return f"{'-' if before is None else f'{before:.2f}'} -> {summary[f'{column}_last{n}_mean']:.2f}"


def plot(rows: list[dict], switch: int, path: Path, family: str) -> None:
    """Mean and std across seeds of the held-out return (and success, where there is one) against updates."""
    panels = {"held-out return after adaptation": "final_return"}
    if any(r.get("success", "") != "" for r in rows):
        panels["held-out success rate"] = "success"
    curves = {}
    for label, key in panels.items():
        curves[label] = {}
        for method in _methods(rows):
            steps = sorted({r["updates"] for r in rows if r["method"] == method})
            values = [[r[key] for r in rows if r["method"] == method and r["updates"] == s and r.get(key, "") != ""] for s in steps]
            curves[label][method] = (steps, np.array([np.mean(v) for v in values]), np.array([np.std(v) for v in values]))
    comparison(curves, switch, path, f"{family}: mean and std across seeds")
