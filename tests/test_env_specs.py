import pytest
from torchrl.envs import GymWrapper
from torchrl.envs.utils import check_env_specs

from smac_lightning.envs import ALL_FAMILIES


@pytest.mark.parametrize("family_class", ALL_FAMILIES)
def test_every_family_passes_torchrls_spec_check(family_class):
    family = family_class(num_train_tasks=2, num_test_tasks=1, horizon=20)
    train, _ = family.task_sets()
    check_env_specs(GymWrapper(family.make_env(train[0])), seed=0)
