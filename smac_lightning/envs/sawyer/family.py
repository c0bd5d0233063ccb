"""The Sawyer Manipulation task family (paper section 6, appendix C.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smac_lightning.envs.base import TaskFamily
from smac_lightning.envs.sawyer import scene as S
from smac_lightning.envs.sawyer.env import SawyerEnv
from smac_lightning.envs.sawyer.scripted import ScriptedSawyer
from smac_lightning.errors import ConfigError


class SawyerFamily(TaskFamily):
    """Scenes at a table with up to five objects and a desired behaviour; 50 train, 10 held out.

    Episodes last ``horizon`` steps at evaluation (the paper's 50); the scripted offline data
    runs ``data_horizon`` steps per trajectory (the paper's 75). The RL and encoder buffers of
    the offline data are one buffer, as in the paper (``one_buffer``).
    """

    name = "sawyer"
    # Raised whenever scenes, rewards or the scripted data change, so that a dataset made by an
    # earlier version is refused rather than trained on (2: one move-hand goal, held to the end;
    # 3: the hand starts on the side away from the drawers; 4: with a drawer in the scene the object,
    # and with the button drawer the tray, stand on that side too).
    version = 4
    one_buffer = True
    success_reward = 0.0

    def __init__(
        self,
        num_train_tasks: int = 50,
        num_test_tasks: int = 10,
        horizon: int = 50,
        data_horizon: int = 75,
        behaviours: int = 3,
        object_probability: float = S.OBJECT_PROBABILITY,
        seed: int = 1337,
    ):
        """
        Args:
            num_train_tasks: scenes used for (meta-)training.
            num_test_tasks: held-out scenes for meta-test evaluation.
            horizon: steps per evaluation and self-supervised episode.
            data_horizon: steps per trajectory of the scripted offline data.
            behaviours: 3 (move the hand, open the top drawer by its handle, open the bottom
                drawer by its button) or 8 (also push the button, grasp and lift the object,
                put it in the tray, open both drawers). The scripted data performs all eight
                kinds, wherever the scene allows them.
            object_probability: probability that each of the five objects stands in a scene (the
                authors' 0.75).
            seed: seed of the fixed train/test scene draw.
        """
        super().__init__(num_train_tasks, num_test_tasks, horizon, seed)
        if behaviours not in (3, 8):
            raise ConfigError(f"SawyerFamily: behaviours must be 3 or 8, got {behaviours}")
        if data_horizon < 1:
            raise ConfigError(f"SawyerFamily: data_horizon must be >= 1, got {data_horizon}")
        if not 0.0 <= object_probability <= 1.0:
            raise ConfigError(f"SawyerFamily: object_probability must be in [0, 1], got {object_probability}")
        self._data_horizon = data_horizon
        self.behaviours = behaviours
        self.object_probability = object_probability

    @property
    def data_horizon(self) -> int:
        return self._data_horizon

    def sample_tasks(self, n: int, seed: int) -> np.ndarray:
        return S.sample_scenes(n, seed, self.behaviours, self.object_probability)

    def make_env(self, task: np.ndarray, reward_free: bool = False) -> SawyerEnv:
        return SawyerEnv(task, self.horizon, reward_free)

    def make_data_env(self, task: np.ndarray) -> SawyerEnv:
        return SawyerEnv(task, self.data_horizon)

    def behaviour_policy(self, rng: np.random.Generator) -> ScriptedSawyer:
        return ScriptedSawyer(rng)

    @property
    def task_group_names(self) -> tuple[str, ...]:
        return S.BEHAVIOURS[: self.behaviours]

    def task_groups(self, tasks: np.ndarray) -> dict[str, np.ndarray]:
        """The scenes of each desired behaviour."""
        behaviour = S.behaviour_index(tasks)
        return {name: behaviour == i for i, name in enumerate(self.task_group_names)}

    def describe_data(self, buffers: dict) -> dict:
        """Per buffer, the fraction of scripted trajectories that achieve the rewarded behaviour at some step."""
        out = {}
        for name, td in buffers.items():
            reward = td["reward"].squeeze(-1)
            n, rows = reward.shape
            episodes = reward[:, : rows - rows % self.data_horizon].reshape(n, -1, self.data_horizon)
            out[name] = round(float((episodes == 0).any(-1).float().mean()), 4)
        return {"success_rate": out}

    def preview(self, tasks: np.ndarray, folder: Path) -> list[Path]:
        """One PNG per scene (PyBullet's headless TinyRenderer), named by split index and behaviour."""
        import matplotlib.image

        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, task in enumerate(tasks):
            env = SawyerEnv(task, self.horizon)
            env.reset()
            path = folder / f"scene{i:02d}-{S.BEHAVIOURS[env.scene.behaviour]}.png"
            matplotlib.image.imsave(path, env.render())
            env.close()
            paths.append(path)
        return paths

    def config(self) -> dict:
        return {
            **super().config(), "version": self.version, "data_horizon": self.data_horizon, "behaviours": self.behaviours,
            "object_probability": self.object_probability,
        }
