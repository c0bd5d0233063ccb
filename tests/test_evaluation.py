import numpy as np
import pytest
import torch
from tensordict import TensorDict

from smac_lightning.errors import ConfigError
from smac_lightning.rollout import LatentPolicy, MetaTester, MetaTestProtocol, ZSampling, draw_training_z, reward_error
from smac_lightning.nn import ContextEncoder, RewardDecoder, TanhGaussian, TanhGaussianPolicy


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
    decoder = RewardDecoder(2, 2, 3, (8,))
    metrics = MetaTester(family, MetaTestProtocol(num_exploration=2, runs_per_task=4)).run(encoder, policy, tasks, offline, decoder=decoder)
    # one posterior per meta-episode (3 tasks x 4 runs) from exactly the 2 exploration episodes; the
    # paper's online KL from the whole history (adapted episode too); then one from each task's
    # offline history, repeated per run, and the paper's offline KL from the offline rows given
    assert seen == [(12, 2 * family.horizon), (12, 3 * family.horizon), (12, 7), (3, 7)]
    assert metrics["final_return"] == metrics["return_by_trajectory_2"]
    assert {"return_by_trajectory_0", "return_by_trajectory_1", "kl_online_paper", "kl_online_matched",
            "kl_offline_paper", "kl_offline_matched", "final_return_offline_context", "reward_error_online",
            "reward_error_offline", "label_error_online"} <= metrics.keys()
    assert -2.0 * family.horizon < metrics["final_return"] <= 0.0  # dense rewards are minus distances
    assert set(metrics) == set(MetaTester(family, MetaTestProtocol(num_exploration=2)).metric_names(True, True))


def test_exploration_takes_the_z_it_is_given_in_place_of_the_prior(family):
    """A policy that heads where z's first two entries point: explored with z fixed at (1, 0) and then
    (0, 1), the two exploration trajectories move along +x and then +y, while p(z) draws scatter."""

    class HeadWhereZPoints(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Linear(1, 1)  # the tester reads the device off a parameter

        def forward(self, observation, z):
            mean = torch.atanh(z[..., :2].clamp(-0.999, 0.999))
            return TanhGaussian(mean, torch.full_like(mean, -20.0))

    tasks = family.task_sets()[1]
    lanes = len(tasks) * 2
    fixed = [(torch.tensor([[1.0, 0.0, 0.0]]).expand(lanes, -1), torch.zeros(lanes, 3)),
             (torch.tensor([[0.0, 1.0, 0.0]]).expand(lanes, -1), torch.zeros(lanes, 3))]
    tester = MetaTester(family, MetaTestProtocol(num_exploration=2, runs_per_task=2))
    encoder = ContextEncoder(2, 2, 3, (8,))
    tester.run(encoder, HeadWhereZPoints(), tasks, None, exploring=fixed)
    horizon = family.horizon
    first, second = tester.episodes["exploration"][:, :horizon], tester.episodes["exploration"][:, horizon:]
    moved_first = first["next", "observation"][:, -1] - first["observation"][:, 0]
    moved_second = second["next", "observation"][:, -1] - second["observation"][:, 0]
    assert (moved_first[:, 0] > 0.5).all() and (moved_first[:, 1].abs() < 1e-4).all()
    assert (moved_second[:, 1] > 0.5).all() and (moved_second[:, 0].abs() < 1e-4).all()


def test_the_true_task_bound_reports_no_kl(family):
    """A point mass in z's place has an infinite KL to the prior: the bound's meta-test leaves the KLs out."""
    tasks = family.task_sets()[1]
    policy = TanhGaussianPolicy(2, 2, 2, (8,))  # z is the 2-d goal
    offline = TensorDict(
        {"observation": torch.zeros(3, 7, 2), "action": torch.zeros(3, 7, 2), "reward": torch.zeros(3, 7, 1),
         "next": {"observation": torch.zeros(3, 7, 2)}},
        batch_size=[3, 7],
    )
    tester = MetaTester(family, MetaTestProtocol(num_exploration=2, runs_per_task=2))
    metrics = tester.run(None, policy, tasks, offline, true_task_as_z=True)
    assert set(metrics) == set(tester.metric_names(True, False, posterior=False))
    assert not any(key.startswith("kl_") for key in metrics) and all(np.isfinite(v) for v in metrics.values())


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


class _ActsItsZ(torch.nn.Module):
    """A policy whose action is tanh of z's first two entries: what z each step got is visible."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, observation, z):
        return TanhGaussian(z[..., :2], torch.full_like(z[..., :2], -20.0))


@pytest.mark.parametrize("resample", ["step", "trajectory"])
def test_meta_test_draws_z_per_step_or_per_trajectory(family, resample):
    tester = MetaTester(family, MetaTestProtocol(runs_per_task=1), ZSampling(resample=resample))
    mean, var = torch.zeros(2, 3), torch.ones(2, 3)
    actions = tester._episode(family.task_sets()[1][:2], _ActsItsZ(), mean, var, seed=0)["action"]  # [2, horizon, 2]
    changes = (actions[:, 1:] != actions[:, :1]).any(-1)
    assert changes.all() if resample == "step" else not changes.any()


@pytest.mark.parametrize("per_step", [True, False])
def test_the_latent_policy_draws_z_per_step_or_per_trajectory(per_step):
    actor = LatentPolicy(_ActsItsZ(), torch.zeros(4, 3), torch.ones(4, 3), per_step=per_step)
    obs = np.zeros((4, 2), np.float32)
    first, second = actor.act(obs), actor.act(obs)
    assert (not np.allclose(first, second)) if per_step else np.array_equal(first, second)


def test_the_tester_keeps_the_lanes_of_two_task_sets_and_closes_older_ones(family):
    """Training tasks are drawn afresh at every evaluation: without a bound every draw's lanes stayed
    open (on Sawyer about a GB each, until the run was killed for memory)."""
    policy = TanhGaussianPolicy(2, 2, 3, (8,))
    encoder = ContextEncoder(2, 2, 3, (8,))
    tester = MetaTester(family, MetaTestProtocol(num_exploration=1, runs_per_task=1))
    train, held_out = family.task_sets()
    sets = [held_out, train[:2], held_out, train[2:4], held_out, train[:2]]
    built = []
    for tasks in sets:
        tester.run(encoder, policy, tasks, None)
        built.append({key: lanes for key, lanes in tester._lanes.items()})
    assert len(tester._lanes) == 2
    assert list(tester._lanes) == [held_out.tobytes(), train[:2].tobytes()]
    first_train = built[1][train[:2].tobytes()]
    assert first_train.closed and tester._lanes[train[:2].tobytes()] is not first_train  # closed, then rebuilt
    assert tester._lanes[held_out.tobytes()] is built[0][held_out.tobytes()]  # the held-out lanes were kept


def test_training_z_draws_whole_posteriors_of_the_bank():
    bank = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), torch.tensor([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])
    mean, var = draw_training_z(bank, 50, torch.Generator().manual_seed(0))
    assert mean.shape == var.shape == (50, 2)
    assert torch.equal(mean[:, 0], mean[:, 1]) and set(mean[:, 0].tolist()) == {0.0, 1.0, 2.0}
    assert torch.allclose(var[:, 0], (mean[:, 0] + 1) / 10)  # each row's variance is its own task's
    with pytest.raises(ConfigError, match="z.exploration must be one of prior, training, got 'posterior'"):
        ZSampling(exploration="posterior")


@pytest.mark.slow
def test_a_run_explores_from_training_posteriors_in_collection_and_meta_test(tmp_path, smoke_run):
    """The smoke run with ``z.exploration: training``: the self-supervised phase collects and meta-test
    adapts from exploration that follows training tasks' posteriors; its exploration returns differ
    from the default smoke run's with p(z) (the same seed, the same offline phase)."""
    import mlflow

    from conftest import SMOKE_ARGS, run_cli

    out = run_cli(tmp_path, "fit", *SMOKE_ARGS, "--model.z.exploration", "training")
    assert out.returncode == 0, out.stderr[-3000:]

    def exploration_returns(folder):
        client = mlflow.tracking.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        # the folder's first fit run (other tests may add runs to the shared smoke folder)
        run = client.search_runs([client.get_experiment_by_name("smac_lightning").experiment_id], order_by=["attributes.start_time ASC"])[0]
        return [m.value for m in client.get_metric_history(run.info.run_id, "eval/test/return_by_trajectory_0")]

    prior_returns, training_returns = exploration_returns(smoke_run[0]), exploration_returns(tmp_path)
    assert len(prior_returns) == len(training_returns) == 2 and prior_returns != training_returns


def test_meta_test_evaluates_the_same_training_tasks_at_every_evaluation(tmp_path):
    """The training-task curve must follow the policy, not which tasks an evaluation drew."""
    from helpers import smoke_cli

    dm = smoke_cli(tmp_path).datamodule
    chosen = dm.evaluated_train_tasks(3)
    assert len(chosen) == 3 and len(set(chosen.tolist())) == 3
    assert torch.equal(chosen, dm.evaluated_train_tasks(3))
    splits = dm.evaluation_splits(3)
    assert torch.equal(splits["train"][0], dm.train_tasks[chosen])
    assert torch.equal(splits["train"][1]["observation"], dm.dataset.train_encoder[chosen]["observation"])
