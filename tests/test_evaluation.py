import torch
from tensordict import TensorDict

from smac_lightning.evaluation import MetaTester, MetaTestProtocol, reward_error
from smac_lightning.nn import ContextEncoder, TanhGaussianPolicy


def test_meta_test_protocol_adapts_from_the_exploration_only(family):
    encoder = ContextEncoder(2, 2, 3, (8,))
    policy = TanhGaussianPolicy(2, 2, 3, (8,))
    seen = []
    posterior = encoder.posterior
    encoder.posterior = lambda h: seen.append(tuple(h.batch_size)) or posterior(h)
    tasks = family.task_sets()[1]
    offline = TensorDict(
        {"observation": torch.zeros(3, 7, 2), "action": torch.zeros(3, 7, 2), "reward": torch.zeros(3, 7, 1),
         "next": {"observation": torch.zeros(3, 7, 2)}},
        batch_size=[3, 7],
    )
    metrics = MetaTester(family, MetaTestProtocol(num_exploration=2, runs_per_task=4)).run(encoder, policy, tasks, offline)
    # one posterior per meta-episode (3 tasks x 4 runs) from exactly the 2 exploration episodes,
    # then one from each task's offline history, repeated per run
    assert seen == [(12, 2 * family.horizon), (12, 7)]
    assert metrics["final_return"] == metrics["return_by_trajectory_2"]
    assert {"return_by_trajectory_0", "return_by_trajectory_1", "kl_online", "kl_offline",
            "final_return_offline_context"} <= metrics.keys()
    assert -2.0 * family.horizon < metrics["final_return"] <= 0.0  # dense rewards are minus distances


def test_reward_error_ignores_padding():
    class Zero(torch.nn.Module):
        def forward(self, observation, action, z):
            return torch.zeros(*observation.shape[:-1], 1)

    history = TensorDict(
        {"observation": torch.zeros(1, 3, 2), "action": torch.zeros(1, 3, 2),
         "reward": torch.tensor([[[1.0], [3.0], [100.0]]]), "valid": torch.tensor([[True, True, False]])},
        batch_size=[1, 3],
    )
    assert reward_error(Zero(), history, torch.zeros(1, 5)) == 5.0  # (1 + 9) / 2
