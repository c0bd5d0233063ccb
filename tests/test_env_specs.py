import pytest
from torchrl.envs import GymWrapper
from torchrl.envs.utils import check_env_specs

from smac_lightning.envs import ALL_FAMILIES
from smac_lightning.rollout import LanesEnv


@pytest.mark.parametrize("family_class", ALL_FAMILIES)
def test_every_family_passes_torchrls_spec_check(family_class):
    family = family_class(num_train_tasks=2, num_test_tasks=1, horizon=20)
    train, _ = family.task_sets()
    check_env_specs(GymWrapper(family.make_env(train[0])), seed=0)
    lanes = LanesEnv(family.make_env, train)  # as collection and meta-test step it
    check_env_specs(lanes, seed=0)
    lanes.close()


def _registered():
    import gymnasium as gym

    import smac_lightning  # noqa: F401  importing the package registers the ids

    return sorted(i for i in gym.registry if i.startswith("smac_lightning/"))


@pytest.mark.parametrize("env_id", _registered())
def test_every_registered_id_passes_gymnasiums_checker_and_torchrls(env_id):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env
    from torchrl.envs import GymEnv

    check_env(gym.make(env_id).unwrapped, skip_render_check=True)  # headless envs: nothing to render
    check_env_specs(GymEnv(env_id), seed=0)


def test_seven_families_are_registered():
    assert len(_registered()) == len(ALL_FAMILIES) == 7
