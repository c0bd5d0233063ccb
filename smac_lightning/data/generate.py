"""Offline dataset generation with a family's scripted behaviour policy."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict
from tqdm.auto import tqdm

from smac_lightning.data.dataset import FIELDS, OfflineDataset, load_dataset, save_dataset
from smac_lightning.envs.base import TaskFamily
from smac_lightning.errors import ConfigError
from smac_lightning.rollout import run_episodes


PREVIEWS_PER_SPLIT = 4


def generate_dataset(
    family: TaskFamily,
    path: str | Path,
    rl_size: int,
    encoder_size: int,
    seed: int = 0,
    progress: bool = True,
) -> OfflineDataset:
    """Roll out the behaviour policy on every task and write the dataset to ``path``.

    The dataset is written to a temporary sibling folder and renamed into place,
    so an interrupted generation never leaves a half-written dataset behind.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    policy = family.behaviour_policy(rng)
    train, test = family.task_sets()
    if family.one_buffer and encoder_size > rl_size:
        raise ConfigError(
            f"the {family.name} family's encoder buffers are taken from its RL buffers (one buffer, as in the "
            f"paper): data.encoder_size ({encoder_size}) must not exceed data.rl_size ({rl_size})"
        )
    # One-buffer families take their training encoder rows from the RL rows (below).
    plan = [("train/rl", train, rl_size)] + [("train/encoder", train, encoder_size)] * (not family.one_buffer)
    plan.append(("test/encoder", test, encoder_size))
    episodes = sum(-(-size // family.data_horizon) for _, _, size in plan)
    # no bar in a log file (it would fill it with carriage returns): a line before and after instead
    bar = tqdm(total=episodes, desc=f"generating {family.name} dataset", unit="episode", disable=None if progress else True)
    if progress and bar.disable:
        print(f"generating the {family.name} dataset at {path}: {episodes} episodes", flush=True)
    started = time.perf_counter()
    buffers = {name: collect_valid_rows(family, tasks, size, policy, rng, bar) for name, tasks, size in plan}
    bar.close()
    if family.one_buffer:
        buffers["train/encoder"] = buffers["train/rl"][:, :encoder_size]
    manifest = {
        "family": family.config(),
        "tasks": {"train": train.tolist(), "test": test.tolist()},
        "behaviour_policy": {"name": type(policy).__name__, **_public_attrs(policy)},
        "seed": seed,
        "sizes": {"rl": rl_size, "encoder": encoder_size},
        "obs_dim": int(buffers["train/rl"]["observation"].shape[-1]),
        "act_dim": int(buffers["train/rl"]["action"].shape[-1]),
        "generation_seconds": round(time.perf_counter() - started, 2),
        **family.describe_data(buffers),
    }
    return write_dataset(path, manifest, buffers, family)


def write_dataset(path: Path, manifest: dict, buffers: dict[str, TensorDict], family: TaskFamily) -> OfflineDataset:
    """Save into a temporary sibling folder, then rename into place: a crash never leaves half a dataset."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_dataset(tmp, manifest, {name: td.select(*FIELDS) for name, td in buffers.items()})
    preview = getattr(family, "preview", None)  # families that can draw their scenes keep a few pictures
    if preview is not None:
        for split in ("train", "test"):
            preview(np.array(manifest["tasks"][split][:PREVIEWS_PER_SPLIT]), tmp / "previews" / split)
    try:
        os.replace(tmp, path)
    except OSError:  # another process finished the same dataset first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return load_dataset(path, family.config())


def collect_valid_rows(family, tasks: np.ndarray, size: int, policy, rng: np.random.Generator, bar=None) -> TensorDict:
    """``size`` valid transitions per task, from whole episodes run on all tasks in lock-step."""
    envs = [family.make_data_env(task) for task in tasks]
    episodes, valid_rows = [], torch.zeros(len(tasks), dtype=torch.long)
    while valid_rows.min() < size:  # early-terminating envs may need extra episodes
        policy.reset(tasks)
        episodes.append(run_episodes(envs, policy.act, family.data_horizon, seed=int(rng.integers(2**31))))
        valid_rows += episodes[-1]["valid"].sum(-1)
        if bar is not None:
            bar.update(1)
    for env in envs:
        env.close()
    data = torch.cat(episodes, dim=1)
    # A stable sort puts each task's valid rows first, in time order; keep ``size`` of them.
    order = torch.argsort((~data["valid"]).to(torch.int8), dim=1, stable=True)[:, :size]
    data = data[torch.arange(len(tasks))[:, None], order]
    data = data.exclude("valid")
    data["task"] = torch.arange(len(tasks)).view(-1, 1, 1).expand(len(tasks), size, 1).clone()
    return data


def _public_attrs(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and isinstance(v, (int, float, str, bool))}
