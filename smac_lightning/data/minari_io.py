"""Datasets the field can exchange: this project's format to Minari datasets and back.

A dataset becomes three Minari datasets, ``<namespace>/<name>/{train-rl,train-encoder,test-encoder}-v0``
(``name`` is the dataset folder's). Each task's rows are cut into episodes where a row is
``terminated`` or ``truncated`` (rows after the last end form one more episode); every step's
``infos`` carry ``task_index`` and ``task`` (the task's parameters), and each dataset's
``description`` is the manifest as JSON (family, train/test tasks, sizes, behaviour policy).
Minari needs ``minari[hdf5]`` (an optional dependency: ``pip install 'minari[hdf5]'``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict

from smac_lightning.data.dataset import BUFFERS, OfflineDataset, load_dataset, save_dataset
from smac_lightning.errors import DatasetError

KEEP = ("family", "tasks", "behaviour_policy", "seed", "sizes", "obs_dim", "act_dim")


def _minari():
    try:
        import minari
    except ImportError:
        raise DatasetError("Minari is not installed: pip install 'minari[hdf5]'") from None
    return minari


def minari_ids(namespace: str, name: str) -> dict[str, str]:
    return {buffer: f"{namespace}/{name}/{buffer.replace('/', '-')}-v0" for buffer in BUFFERS}


def export_minari(dataset: OfflineDataset, name: str, namespace: str = "smac_lightning") -> list[str]:
    """Write ``dataset`` as Minari datasets (into ``MINARI_DATASETS_PATH``); their ids."""
    import gymnasium as gym

    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    manifest = {k: dataset.manifest[k] for k in KEEP if k in dataset.manifest}
    spaces = {
        "observation_space": gym.spaces.Box(-np.inf, np.inf, (manifest["obs_dim"],), np.float32),
        "action_space": gym.spaces.Box(-1.0, 1.0, (manifest["act_dim"],), np.float32),
    }
    ids = minari_ids(namespace, name)
    for buffer, td in zip(BUFFERS, (dataset.train_rl, dataset.train_encoder, dataset.test_encoder)):
        tasks = dataset.manifest["tasks"][buffer.split("/")[0]]
        episodes = []
        for index, rows in enumerate(td):
            for segment in _episodes(rows):
                n = segment.batch_size[0]
                episodes.append(EpisodeBuffer(
                    id=len(episodes),
                    observations=torch.cat([segment["observation"], segment["next", "observation"][-1:]]).numpy(),
                    actions=segment["action"].numpy(),
                    rewards=segment["reward"].squeeze(-1).tolist(),
                    terminations=segment["terminated"].squeeze(-1).tolist(),
                    truncations=segment["truncated"].squeeze(-1).tolist(),
                    infos={"task_index": np.full(n + 1, index), "task": np.tile(np.asarray(tasks[index], np.float64), (n + 1, 1))},
                ))
        with warnings.catch_warnings():  # author, e-mail, code link, eval env: not ours to give
            warnings.simplefilter("ignore", UserWarning)
            minari.create_dataset_from_buffers(
                ids[buffer], episodes, algorithm_name=str(manifest.get("behaviour_policy", {}).get("name", "unknown")),
                description=json.dumps({**manifest, "buffer": buffer}), **spaces,
            )
    return list(ids.values())


def _episodes(rows: TensorDict) -> list[TensorDict]:
    """One task's rows cut after every ``terminated`` or ``truncated`` row."""
    ends = (rows["terminated"] | rows["truncated"]).squeeze(-1).nonzero().flatten().tolist()
    bounds = [0] + [e + 1 for e in ends]
    if bounds[-1] < rows.batch_size[0]:
        bounds.append(rows.batch_size[0])
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def import_minari(namespace: str, name: str, path: Path) -> OfflineDataset:
    """The three Minari datasets of ``<namespace>/<name>`` back into this project's format at ``path``."""
    minari = _minari()
    buffers, manifest = {}, None
    for buffer, dataset_id in minari_ids(namespace, name).items():
        try:
            data = minari.load_dataset(dataset_id)
        except Exception as err:
            raise DatasetError(f"Minari dataset {dataset_id}: cannot be loaded ({type(err).__name__}: {err})") from None
        try:
            described = json.loads(data.storage.metadata.get("description") or "")
            assert isinstance(described, dict) and {"tasks", "sizes", "obs_dim", "act_dim", "family"} <= described.keys()
        except (json.JSONDecodeError, AssertionError):
            raise DatasetError(
                f"Minari dataset {dataset_id}: no task information (its description is not a smac_lightning "
                f"manifest): export it with `python -m smac_lightning data export`"
            ) from None
        manifest = manifest or {k: described[k] for k in KEEP if k in described}
        buffers[buffer] = _rows(data, dataset_id, described, buffer)
    path = Path(path)
    if path.exists():
        raise DatasetError(f"{path}: exists already; import into a new folder")
    save_dataset(path, manifest, buffers)
    return load_dataset(path)


def _rows(data, dataset_id: str, manifest: dict, buffer: str) -> TensorDict:
    obs_dim, act_dim = manifest["obs_dim"], manifest["act_dim"]
    observation, action = data.spec.observation_space, data.spec.action_space
    if getattr(observation, "shape", None) != (obs_dim,) or getattr(action, "shape", None) != (act_dim,):
        raise DatasetError(
            f"Minari dataset {dataset_id}: spaces {observation} / {action} do not match the manifest's "
            f"obs_dim {obs_dim} and act_dim {act_dim}"
        )
    split, kind = buffer.split("/")
    per_task: list[list[TensorDict]] = [[] for _ in manifest["tasks"][split]]
    for episode in data.iterate_episodes():
        if "task_index" not in episode.infos:
            raise DatasetError(f"Minari dataset {dataset_id}: episode {episode.id} has no task_index in its infos")
        n = len(episode.rewards)
        obs = torch.as_tensor(episode.observations, dtype=torch.float32)
        per_task[int(episode.infos["task_index"][0])].append(TensorDict({
            "observation": obs[:-1],
            "action": torch.as_tensor(episode.actions, dtype=torch.float32),
            "reward": torch.as_tensor(episode.rewards, dtype=torch.float32).view(n, 1),
            "terminated": torch.as_tensor(episode.terminations, dtype=torch.bool).view(n, 1),
            "truncated": torch.as_tensor(episode.truncations, dtype=torch.bool).view(n, 1),
            "next": {"observation": obs[1:]},
        }, batch_size=[n]))
    rows = []
    for index, parts in enumerate(per_task):
        task = torch.cat(parts) if parts else None
        if task is None or task.batch_size[0] != manifest["sizes"][kind]:
            have = 0 if task is None else task.batch_size[0]
            raise DatasetError(f"Minari dataset {dataset_id}: task {index} has {have} rows, the manifest says {manifest['sizes'][kind]}")
        task["task"] = torch.full((task.batch_size[0], 1), index, dtype=torch.long)
        rows.append(task)
    return torch.stack(rows)
