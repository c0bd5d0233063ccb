"""The DataModules: meta-batches from multi-task replays; the offline one loads a dataset (made first if missing)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from tensordict import TensorDict
from torch.utils.data import DataLoader, IterableDataset

from smac_lightning.data.dataset import OfflineDataset, load_dataset
from smac_lightning.data.generate import generate_dataset
from smac_lightning.data.pearl_data import PEARLRecipe
from smac_lightning.data.replay import MultiTaskReplay
from smac_lightning.envs.base import TaskFamily
from smac_lightning.errors import ConfigError, DatasetError


class _MetaBatches(IterableDataset):
    """An endless stream of training batches; the training budget is counted by the module.

    Meta-batch ``k`` (the one update ``k`` trains on) is drawn from a generator seeded by
    ``(seed, rank, k)``, and the stream restarts at the first meta-batch training has not
    consumed. Lightning prefetches a batch ahead, so a generator carried from batch to batch
    would be saved one batch ahead of the checkpoint and a resumed run would see other
    meta-batches than an uninterrupted one. With ``updates_per_batch`` K > 1 a training batch
    stacks K consecutive meta-batches, ``[K, meta_batch]``, drawn from the same seeds as with K = 1.
    """

    def __init__(self, datamodule: "OfflineMetaDataModule"):
        self.datamodule = datamodule

    def __iter__(self):
        dm = self.datamodule
        k = dm.batches_consumed
        while True:
            generators = [torch.Generator().manual_seed(dm.batch_seed(k + j)) for j in range(dm.updates_per_batch)]
            # The phase's RL batch changes only at an update boundary, which is a multiple of K.
            size, online = dm.rl_batch_size(k), dm.contexts_online(k)
            if len(generators) == 1:
                yield dm.sample_meta_batch(generators[0], size, online)
            else:
                yield dm.sample_meta_batches(generators, size, online)
            k += len(generators)


def meta_batches(batch: TensorDict) -> tuple[TensorDict, ...]:
    """The meta-batches of a training batch, one per update: a ``[meta_batch]`` TensorDict is one,
    a ``[K, meta_batch]`` stack is K."""
    return batch.unbind(0) if batch.batch_dims == 2 else (batch,)


EVALUATED_TASKS_SEED = 20_261_207  # the fixed choice of training tasks meta-test evaluates


def run_seed() -> int:
    """The run's ``seed_everything`` (Lightning keeps it in ``PL_GLOBAL_SEED``, which DDP's processes
    inherit), 0 where nothing was seeded: runs of different seeds must also draw different meta-batches."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def default_dataset_dir(family: TaskFamily, rl_size: int, encoder_size: int, dataset_seed: int, pearl: PEARLRecipe | None = None) -> str:
    suffix = pearl.suffix() if pearl is not None else family.data_tag()
    return f"data/{family.name}-rl{rl_size}-enc{encoder_size}-seed{dataset_seed}{suffix}"


def _as_is(batch):
    return batch


class MetaDataModule(L.LightningDataModule):
    """Meta-batches from a task family's RL and encoder replays, and its meta-test task splits.

    Subclasses fill ``self.rl`` and ``self.encoder`` (``MultiTaskReplay``) and say where the
    tasks come from: an offline dataset (SMAC) or the family's own seeded draw (online PEARL).
    """

    def __init__(self, family: TaskFamily, meta_batch: int, batch_size: int, context_size: int, seed: int | None,
                 env_processes: int = 1):
        super().__init__()
        self.family = family
        self.env_processes = env_processes
        self.meta_batch = meta_batch
        self.batch_size = batch_size
        self.context_size = context_size
        self.seed = run_seed() if seed is None else seed
        self.generator = torch.Generator().manual_seed(self.seed)
        self.rank = 0
        self.batches_consumed = 0  # meta-batches training has taken (one per update)
        self.updates_per_batch = 1  # meta-batches per training batch: set by a learner that takes several
        self.online_batch_size = batch_size
        self.online_from_batch: int | None = None  # set by a learner whose RL batch changes with its phase
        self.online_contexts = False  # from online_from_batch on, contexts from a task's online rows once it has some
        self.held_out_in_replay = False  # held-out tasks' own rows join the replays (self-supervision on them)
        self.rl: MultiTaskReplay
        self.encoder: MultiTaskReplay
        if env_processes < 1:
            raise ConfigError(f"data.env_processes must be >= 1, got {env_processes}")
        if min(meta_batch, batch_size, context_size) < 1:
            raise ConfigError(
                f"data.meta_batch, data.batch_size and data.context_size must be >= 1, got {meta_batch}, {batch_size}, {context_size}"
            )

    def rl_batch_size(self, k: int) -> int:
        """RL rows per task in meta-batch ``k``: ``batch_size``, then ``online_batch_size`` from ``online_from_batch`` on."""
        return self.online_batch_size if self._online_phase(k) else self.batch_size

    def contexts_online(self, k: int) -> bool:
        """Whether meta-batch ``k`` draws its contexts from the tasks' online rows (``online_contexts``)."""
        return self.online_contexts and self._online_phase(k)

    def _online_phase(self, k: int) -> bool:
        return self.online_from_batch is not None and k >= self.online_from_batch

    @property
    def train_tasks(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def test_tasks(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def num_train_tasks(self) -> int:
        return len(self.train_tasks)

    @property
    def task_dim(self) -> int:
        return self.train_tasks.shape[-1]

    @property
    def task_descriptions(self) -> torch.Tensor:
        """Every task a replay row can belong to, by its index there: training tasks, then held-out ones."""
        return torch.cat([self.train_tasks, self.test_tasks]) if self.held_out_in_replay else self.train_tasks

    def add_held_out_tasks(self) -> None:
        """Give the held-out tasks rows of their own in the replays, after the training tasks (appendix B)."""
        for replay in {id(self.rl): self.rl, id(self.encoder): self.encoder}.values():
            replay.add_tasks(len(self.test_tasks))
        self.held_out_in_replay = True

    def evaluation_splits(self, max_train_tasks: int) -> dict[str, tuple[torch.Tensor, TensorDict | None]]:
        """Meta-test splits: held-out tasks and ``max_train_tasks`` training tasks (``evaluated_train_tasks``),
        each with its offline context buffer (None where there is no offline data)."""
        splits = {"test": (self.test_tasks, None)}
        chosen = self.evaluated_train_tasks(max_train_tasks)
        if len(chosen):
            splits["train"] = (self.train_tasks[chosen], None)
        return splits

    def evaluated_train_tasks(self, max_train_tasks: int) -> torch.Tensor:
        """The training tasks meta-test evaluates: one fixed random choice, the same at every evaluation and
        in every run, so that the training-task curve follows the policy, not the draw (returns range
        from 0 to -600 by target on Cheetah Velocity)."""
        return torch.randperm(self.num_train_tasks, generator=torch.Generator().manual_seed(EVALUATED_TASKS_SEED))[:max_train_tasks].sort().values

    def setup(self, stage: str) -> None:
        if self.trainer is not None:
            self.rank = self.trainer.global_rank  # each DDP rank draws its own meta-batches

    def batch_seed(self, k: int) -> int:
        return (self.seed * 1_000_003 + self.rank) * 1_000_000_007 + k

    def sample_meta_batch(self, generator: torch.Generator | None = None, batch_size: int | None = None,
                          online_contexts: bool = False) -> TensorDict:
        """``meta_batch`` training tasks drawn with replacement (as the authors did), each with its context and RL rows."""
        generator = self.generator if generator is None else generator
        return self._gather(*self._draw(generator, batch_size or self.batch_size, online_contexts))

    def sample_meta_batches(self, generators: list[torch.Generator], batch_size: int | None = None,
                            online_contexts: bool = False) -> TensorDict:
        """One meta-batch per generator, each the one ``sample_meta_batch`` draws from it, stacked
        ``[len(generators), meta_batch]``: one gather per replay for all of them."""
        drawn = [self._draw(generator, batch_size or self.batch_size, online_contexts) for generator in generators]
        return self._gather(*(torch.cat(parts) for parts in zip(*drawn))).reshape(len(generators), self.meta_batch)

    def _draw(self, generator: torch.Generator, batch_size: int, online_contexts: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pool = self.rl.has_rows().nonzero().flatten()  # the training tasks, and held-out ones once they have rows
        tasks = pool[torch.randint(len(pool), (self.meta_batch,), generator=generator)]
        context = self.encoder.draw(tasks, self.context_size, generator, online_only=online_contexts)
        return tasks, context, self.rl.draw(tasks, batch_size, generator)

    def _gather(self, tasks: torch.Tensor, context_rows: torch.Tensor, rl_rows: torch.Tensor) -> TensorDict:
        return TensorDict(
            {
                "task": tasks,
                "task_description": self.task_descriptions[tasks].float(),  # only the true-task diagnostic reads it
                "context": self.encoder.rows(tasks, context_rows),
                "rl": self.rl.rows(tasks, rl_rows),
            },
            batch_size=[len(tasks)],
        )

    # Each DataLoader gets its own generator: creating an iterator draws a seed from it, and from
    # the global generator otherwise, which would shift every later random draw after a resume.
    def train_dataloader(self) -> DataLoader:
        return DataLoader(_MetaBatches(self), batch_size=None, collate_fn=_as_is, generator=torch.Generator())

    def val_dataloader(self) -> DataLoader:
        # One item per evaluation: the module's validation_step runs the whole meta-test.
        return DataLoader([0], batch_size=None, generator=torch.Generator())

    test_dataloader = val_dataloader

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch.to(device) if isinstance(batch, TensorDict) else batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer is not None and self.trainer.training:
            self.batches_consumed += self.updates_per_batch  # called for the batch training_step is about to get
        return batch

    def state_dict(self) -> dict:
        return {
            "rl": self.rl.state_dict(),
            "encoder": self.encoder.state_dict(),
            "batches_consumed": self.batches_consumed,
            "held_out_in_replay": self.held_out_in_replay,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("held_out_in_replay") and not self.held_out_in_replay:
            self.add_held_out_tasks()
        self.rl.load_state_dict(state["rl"])
        self.encoder.load_state_dict(state["encoder"])
        self.batches_consumed = state["batches_consumed"]


class OfflineMetaDataModule(MetaDataModule):
    def __init__(
        self,
        family: TaskFamily,
        dataset_dir: str | None = None,
        rl_size: int = 1200,
        encoder_size: int = 400,
        dataset_seed: int = 0,
        meta_batch: int = 4,
        batch_size: int = 128,
        online_batch_size: int = 256,
        context_size: int = 64,
        encoder_buffer: Literal["rl", "separate"] = "rl",
        online_capacity: int = 4000,
        seed: int | None = None,
        pearl: PEARLRecipe | None = None,
        env_processes: int = 1,
    ):
        """
        Args:
            family: the task family (its train/test tasks are stored with the dataset).
            dataset_dir: where the offline dataset lives; made there first (``prepare_data``) if missing. Default:
                ``data/<family>-rl<rl_size>-enc<encoder_size>-seed<dataset_seed><tag>`` (the tag names the
                family's data options, e.g. Point Robot's ``-goal0``), so datasets of other sizes, seeds or
                options never meet.
            rl_size: transitions per training task in each RL buffer (used when generating).
            encoder_size: transitions per task in each encoder (context) buffer (used when generating).
            dataset_seed: seed of the behaviour policy when generating.
            meta_batch: tasks per meta-batch (drawn with replacement).
            batch_size: RL transitions per task in an offline-phase meta-batch (the authors: 128).
            online_batch_size: RL transitions per task in a self-supervised meta-batch (the authors: 256).
            context_size: encoder (context) transitions per task in a meta-batch.
            encoder_buffer: where contexts come from: ``rl``, the RL buffer itself in both phases (the
                authors' default), or ``separate``, the dataset's encoder rows plus what collection
                appends there (the authors' Cheetah Velocity).
            online_capacity: online rows kept per task and buffer in the self-supervised phase.
            seed: seed of meta-batch sampling (offset by the process rank under DDP); by default the
                run's ``seed_everything``.
            pearl: make the dataset with an early-stopped PEARL run (the paper's way) instead of the
                family's scripted behaviour policy. Default folder name then ends in ``-pearl-it<N>-<window>``.
            env_processes: worker processes that step the envs of collection and meta-test (a TorchRL
                ``ParallelEnv``, each stepping an equal share of the lanes); 1 steps them in this process.
        """
        super().__init__(family, meta_batch, batch_size, context_size, seed, env_processes)
        self.pearl = PEARLRecipe(**pearl) if isinstance(pearl, dict) else pearl
        self.dataset_dir = Path(dataset_dir or default_dataset_dir(family, rl_size, encoder_size, dataset_seed, self.pearl))
        self.sizes = {"rl": rl_size, "encoder": encoder_size}
        self.dataset_seed = dataset_seed
        self.online_batch_size = online_batch_size
        self.online_capacity = online_capacity
        self.encoder_buffer = encoder_buffer
        env = family.make_env(family.task_sets()[0][0])  # the dims models are built with; setup checks the dataset's
        self.obs_dim, self.act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        env.close()
        self.dataset: OfflineDataset | None = None

    def prepare_data(self) -> None:
        """Make the dataset if its folder is missing (Lightning runs this once per node, before ``setup``)."""
        if self.dataset_dir.exists():
            return
        if self.pearl is not None:
            self.pearl.generate(self.family, self.dataset_dir, self.sizes["rl"], self.sizes["encoder"], self.dataset_seed)
        else:
            generate_dataset(self.family, self.dataset_dir, self.sizes["rl"], self.sizes["encoder"], self.dataset_seed)

    def setup(self, stage: str) -> None:
        """Load and check the dataset and build the replays from it, once: later stages keep them."""
        super().setup(stage)
        if self.dataset is not None:
            return
        self.dataset = self._load()
        self._check_against_env()
        self.rl = MultiTaskReplay(self.dataset.train_rl, self.online_capacity)
        self.encoder = self.rl if self.encoder_buffer == "rl" else MultiTaskReplay(self.dataset.train_encoder, self.online_capacity)

    def _load(self) -> OfflineDataset:
        if not self.dataset_dir.exists():
            raise DatasetError(
                f"no dataset at {self.dataset_dir}: make it first (`python -m smac_lightning data make --config ...`, "
                f"or the DataModule's prepare_data(), which Trainer.fit runs)"
            )
        dataset = load_dataset(self.dataset_dir, self.family.config())
        asked = self.sizes
        if dataset.manifest["sizes"] != asked:
            raise DatasetError(
                f"{self.dataset_dir / 'manifest.json'}: the dataset has {dataset.manifest['sizes']} transitions per task "
                f"but the config asks for {asked}. Point data.dataset_dir elsewhere (or leave it unset) or "
                f"regenerate it with `python -m smac_lightning data make --config ... --overwrite`."
            )
        return dataset

    def _check_against_env(self) -> None:
        """The dataset must fit the env the config builds (the family's code may have changed since)."""
        env_dims = {"obs_dim": self.obs_dim, "act_dim": self.act_dim}
        for key, value in env_dims.items():
            if self.dataset.manifest[key] != value:
                raise DatasetError(
                    f"{self.dataset_dir / 'manifest.json'}: the dataset has {key}={self.dataset.manifest[key]} but the "
                    f"{self.family.name} env gives {value}. Regenerate it (python -m smac_lightning data make "
                    f"--config ... --overwrite) or point data.dataset_dir elsewhere."
                )

    @property
    def train_tasks(self) -> torch.Tensor:
        return self.dataset.train_tasks

    @property
    def test_tasks(self) -> torch.Tensor:
        return self.dataset.test_tasks

    def evaluation_splits(self, max_train_tasks: int) -> dict[str, tuple[torch.Tensor, TensorDict | None]]:
        splits = {"test": (self.test_tasks, self.dataset.test_encoder)}
        chosen = self.evaluated_train_tasks(max_train_tasks)
        if len(chosen):
            splits["train"] = (self.train_tasks[chosen], self.dataset.train_encoder[chosen])
        return splits

