import torch

from smac_lightning.nn import ContextEncoder, CriticEnsemble


def test_critic_ensemble_member_equals_a_plain_mlp_with_its_weights():
    critic = CriticEnsemble(obs_dim=3, act_dim=2, latent_dim=4, hidden=(8, 8), num_critics=2)
    obs, act, z = torch.randn(5, 7, 3), torch.randn(5, 7, 2), torch.randn(5, 7, 4)
    q = critic(obs, act, z)
    assert q.shape == (2, 5, 7, 1)
    x = torch.cat([obs, act, z], -1)
    for member in range(2):
        h = x
        for i, layer in enumerate(critic.net.layers):
            h = h @ layer.weight[member] + layer.bias[member, 0]
            h = torch.relu(h) if i < len(critic.net.layers) - 1 else h
        torch.testing.assert_close(q[member], h)


def test_critic_members_start_different():
    critic = CriticEnsemble(3, 2, 4, (8,), num_critics=2)
    q = critic(torch.randn(6, 3), torch.randn(6, 2), torch.randn(6, 4))
    assert not torch.allclose(q[0], q[1])


def test_encoder_posterior_ignores_the_order_of_the_history():
    encoder = ContextEncoder(obs_dim=2, act_dim=2, latent_dim=3, hidden=(16,))
    obs, act, rew = torch.randn(4, 9, 2), torch.randn(4, 9, 2), torch.randn(4, 9, 1)
    perm = torch.randperm(9)
    mean, var = encoder(obs, act, rew)
    mean_p, var_p = encoder(obs[:, perm], act[:, perm], rew[:, perm])
    assert mean.shape == var.shape == (4, 3)
    torch.testing.assert_close(mean, mean_p)
    torch.testing.assert_close(var, var_p)


def test_more_history_narrows_the_posterior():
    encoder = ContextEncoder(2, 2, 3, (16,))
    obs, act, rew = torch.randn(1, 20, 2), torch.randn(1, 20, 2), torch.randn(1, 20, 1)
    _, var_short = encoder(obs[:, :5], act[:, :5], rew[:, :5])
    _, var_long = encoder(obs, act, rew)
    assert (var_long < var_short).all()
