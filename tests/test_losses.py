import math

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution, kl_divergence
from torch.distributions.transforms import TanhTransform

from smac_lightning.algos import SMAC
from smac_lightning.errors import ConfigError
from smac_lightning.losses import (
    awac_actor_loss,
    behaviour_cloning_loss,
    effective_sample_fraction,
    awac_weights,
    critic_loss,
    kl_to_standard_normal,
    pearl_actor_loss,
    per_task_weights,
    reward_loss,
    soft_td_target,
    td_target,
    temperature_loss,
)
from smac_lightning.nn.encoder import product_of_gaussians
from smac_lightning.nn.policy import TanhGaussian, TanhGaussianPolicy


def test_kl_to_standard_normal_matches_torch():
    mean, var = torch.tensor([[0.5, -1.0], [0.0, 2.0]]), torch.tensor([[0.25, 2.0], [1.0, 0.5]])
    expected = kl_divergence(Normal(mean, var.sqrt()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_to_standard_normal(mean, var), expected)


def test_kl_of_the_prior_itself_is_zero():
    assert kl_to_standard_normal(torch.zeros(3), torch.ones(3)).item() == 0.0


def test_td_target_by_hand():
    reward = torch.tensor([[1.0], [2.0]])
    terminated = torch.tensor([[False], [True]])
    next_q = torch.tensor([[10.0], [10.0]])
    target = td_target(reward, terminated, next_q, gamma=0.9, reward_scale=5.0)
    # 5 * 1 + 0.9 * 10 = 14; a terminal transition does not bootstrap: 5 * 2 = 10
    torch.testing.assert_close(target, torch.tensor([[14.0], [10.0]]))


def test_soft_td_target_by_hand():
    reward, terminated = torch.tensor([[1.0], [2.0]]), torch.tensor([[False], [True]])
    next_q, next_log_prob = torch.tensor([[10.0], [10.0]]), torch.tensor([[-2.0], [-2.0]])
    target = soft_td_target(reward, terminated, next_q, next_log_prob, alpha=0.5, gamma=0.9, reward_scale=5.0)
    # 5 * 1 + 0.9 * (10 - 0.5 * -2) = 14.9; terminal: 5 * 2 = 10
    torch.testing.assert_close(target, torch.tensor([[14.9], [10.0]]))


def test_temperature_loss_by_hand_and_its_gradient_direction():
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    log_prob = torch.tensor([[1.0], [3.0]], requires_grad=True)  # entropy -2, below a target of -1
    loss = temperature_loss(log_alpha, log_prob, target_entropy=-1.0)
    # -log(0.5) * mean(1 - 1, 3 - 1) = -log(0.5) * 1
    torch.testing.assert_close(loss, torch.tensor(-math.log(0.5)))
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(-1.0)  # descent raises alpha: more entropy wanted
    assert log_prob.grad is None  # the policy is not trained by the temperature loss


def test_critic_loss_sums_members_of_their_mean_squared_errors():
    q = torch.tensor([[[1.0], [2.0]], [[0.0], [4.0]]])  # [critics=2, batch=2, 1]
    target = torch.tensor([[1.0], [1.0]])
    # member 0: (0 + 1) / 2 = 0.5; member 1: (1 + 9) / 2 = 5
    assert critic_loss(q, target).item() == pytest.approx(5.5)


def test_critic_loss_does_not_train_through_its_target():
    q = torch.ones(2, 3, 1, requires_grad=True)
    target = torch.zeros(3, 1, requires_grad=True)
    critic_loss(q, target).backward()
    assert target.grad is None


def test_awac_weights_are_batch_softmax_times_batch_size():
    q = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[1.0], [1.0], [1.0]])
    e = torch.tensor([math.exp(0.0), math.exp(0.5), math.exp(1.0)])
    expected = (3 * e / e.sum()).view(3, 1)
    torch.testing.assert_close(awac_weights(q, v, beta=2.0), expected)


def test_awac_clip_score_caps_the_advantage_before_the_softmax():
    q, v = torch.tensor([[0.0], [1.0], [5.0]]), torch.zeros(3, 1)
    # advantages [0, 1, 5] capped at 1 -> [0, 1, 1]; beta 1: weights 3 * [1, e, e] / (1 + 2e)
    e = math.exp(1.0)
    expected = torch.tensor([[3 / (1 + 2 * e)], [3 * e / (1 + 2 * e)], [3 * e / (1 + 2 * e)]])
    torch.testing.assert_close(awac_weights(q, v, beta=1.0, clip_score=1.0), expected)


def test_awac_whitened_weights_ignore_the_advantage_scale():
    q, v = torch.tensor([[1.0], [2.0], [3.0]]), torch.zeros(3, 1)
    # advantages [1, 2, 3]: mean 2, std 1 -> [-1, 0, 1] (up to the 1e-5 guard); beta 2 -> softmax([-0.5, 0, 0.5])
    e = torch.tensor([math.exp(-0.5), 1.0, math.exp(0.5)])
    torch.testing.assert_close(awac_weights(q, v, beta=2.0, whiten=True), (3 * e / e.sum()).view(3, 1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(awac_weights(10 * q, v, beta=2.0, whiten=True), awac_weights(q, v, beta=2.0, whiten=True))


def test_awac_weights_give_masked_rows_nothing_and_share_the_softmax_among_the_rest():
    q, v = torch.tensor([[1.0], [2.0], [3.0]]), torch.zeros(3, 1)
    mask = torch.tensor([[True], [False], [True]])
    # softmax over [1, 3] alone, times the batch size 3; the masked row 0
    e1, e3 = math.exp(1.0), math.exp(3.0)
    expected = torch.tensor([[3 * e1 / (e1 + e3)], [0.0], [3 * e3 / (e1 + e3)]])
    torch.testing.assert_close(awac_weights(q, v, beta=1.0, mask=mask), expected)


def test_per_task_weights_by_hand():
    advantage = torch.tensor([[[0.0], [1.0]], [[5.0], [5.0]], [[2.0], [3.0]]])
    mask = torch.tensor([[[True], [True]], [[False], [False]], [[False], [True]]])
    e = math.exp(1.0)
    # task 0: 2 softmax([0, 1]); task 1: nothing left, 0; task 2: its one row takes the task's 2
    expected = torch.tensor([[[2 / (1 + e)], [2 * e / (1 + e)]], [[0.0], [0.0]], [[0.0], [2.0]]])
    torch.testing.assert_close(per_task_weights(advantage, 1.0, mask), expected)


def test_awac_actor_loss_by_hand():
    log_prob = torch.tensor([[-1.0], [-2.0]], requires_grad=True)
    q, v = torch.tensor([[0.0], [math.log(3.0)]]), torch.zeros(2, 1)
    # weights: softmax([0, log 3]) * 2 = [0.5, 1.5]; loss = -(0.5 * -1 + 1.5 * -2) / 2 = 1.75
    loss = awac_actor_loss(log_prob, awac_weights(q, v, beta=1.0))
    assert loss.item() == pytest.approx(1.75)
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([[-0.25], [-0.75]]))
    with pytest.raises(ValueError, match="one shape"):  # per-row weights [B] against log-likelihoods [B, 1]
        awac_actor_loss(log_prob, torch.ones(2))


def test_pearl_actor_loss_by_hand():
    q_new, log_prob = torch.tensor([[2.0], [4.0]]), torch.tensor([[-1.0], [-3.0]])
    assert pearl_actor_loss(q_new, log_prob).item() == pytest.approx(-3.0)
    assert pearl_actor_loss(q_new, log_prob, entropy_weight=0.5).item() == pytest.approx(-4.0)


def test_reward_loss_averages_over_every_row():
    predicted = torch.tensor([[[1.0], [3.0]], [[0.0], [0.0]]])  # [tasks=2, n=2, 1]
    reward = torch.tensor([[[0.0], [1.0]], [[2.0], [0.0]]])
    # squared errors 1, 4, 4, 0: mean 2.25 (the authors' MSE over the RL rows)
    assert reward_loss(predicted, reward).item() == pytest.approx(2.25)


def test_behaviour_cloning_loss_is_the_negative_mean_log_likelihood():
    log_prob = torch.tensor([[-1.0], [-3.0]], requires_grad=True)
    loss = behaviour_cloning_loss(log_prob)
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([[-0.5], [-0.5]]))


def test_effective_sample_fraction_of_uniform_and_peaked_weights():
    assert effective_sample_fraction(torch.ones(4, 1)).item() == pytest.approx(1.0)
    assert effective_sample_fraction(torch.tensor([4.0, 0.0, 0.0, 0.0])).item() == pytest.approx(0.25)
    # weights 1, 3: (4)^2 / (2 * 10) = 0.8
    assert effective_sample_fraction(torch.tensor([1.0, 3.0])).item() == pytest.approx(0.8)


def test_product_of_two_gaussians_matches_closed_form():
    mean = torch.tensor([[[1.0], [3.0]]])  # [tasks=1, factors=2, d=1]
    var = torch.tensor([[[1.0], [3.0]]])
    post_mean, post_var = product_of_gaussians(mean, var)
    # precisions 1 and 1/3 add to 4/3; mean = (1*1 + 3/3) / (4/3) = 1.5
    torch.testing.assert_close(post_var, torch.tensor([[0.75]]))
    torch.testing.assert_close(post_mean, torch.tensor([[1.5]]))


def test_product_of_gaussians_is_vectorised_over_tasks_and_masks_factors():
    mean, var = torch.randn(4, 7, 5), torch.rand(4, 7, 5) + 0.1
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[2, 3:] = False
    post_mean, post_var = product_of_gaussians(mean, var, mask)
    for task in range(4):
        keep = mask[task]
        one_mean, one_var = product_of_gaussians(mean[task, keep][None], var[task, keep][None])
        torch.testing.assert_close(post_mean[task], one_mean[0])
        torch.testing.assert_close(post_var[task], one_var[0])


def test_tanh_gaussian_log_prob_matches_torch():
    mean, log_std = torch.tensor([[0.3, -0.2]]), torch.tensor([[-0.5, 0.1]])
    action = torch.tensor([[0.5, -0.9]])
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    expected = reference.log_prob(action).sum(-1, keepdim=True)
    torch.testing.assert_close(TanhGaussian(mean, log_std).log_prob(action), expected, atol=1e-4, rtol=1e-4)


def test_tanh_gaussian_log_prob_is_finite_for_saturated_dataset_actions():
    dist = TanhGaussian(torch.zeros(1, 2), torch.zeros(1, 2))
    assert torch.isfinite(dist.log_prob(torch.tensor([[1.0, -1.0]]))).all()


def test_the_policy_takes_saturated_actions_at_its_action_clamp():
    policy = TanhGaussianPolicy(3, 2, 1, [8], action_clamp=0.99)
    dist = policy(torch.randn(4, 3), torch.randn(4, 1))
    saturated, clamped = torch.tensor([[1.0, -1.0]]).expand(4, 2), torch.tensor([[0.99, -0.99]]).expand(4, 2)
    torch.testing.assert_close(dist.log_prob(saturated), dist.log_prob(clamped))
    inside = torch.tensor([[0.5, -0.3]]).expand(4, 2)  # actions inside the clamp are untouched
    torch.testing.assert_close(dist.log_prob(inside), TanhGaussian(dist.mean, dist.log_std).log_prob(inside))
    assert not torch.allclose(dist.log_prob(saturated), TanhGaussian(dist.mean, dist.log_std).log_prob(saturated))
    with pytest.raises(ConfigError, match="model.actor.action_clamp"):
        SMAC(obs_dim=3, act_dim=2, actor={"action_clamp": 1.0})
