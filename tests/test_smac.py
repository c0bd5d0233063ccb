import copy

import lightning as L
import pytest
import torch

from smac_lightning.algos import SMAC, Phase, base
from smac_lightning.algos.base import compile_mode
from smac_lightning.callbacks import SelfSupervisedPhase
from smac_lightning.callbacks.self_supervised_phase import switch_to_self_supervised
from smac_lightning.data.episodes import episode_ends, episode_return, until_first_success
from smac_lightning.envs.point_robot import PointRobotEnv
from smac_lightning.errors import ConfigError
from smac_lightning.losses import effective_sample_fraction

from helpers import smoke_cli


def test_critic_and_actor_gradients_do_not_reach_the_encoder(tmp_path):
    made = smoke_cli(tmp_path)
    module, batch = made.model, made.datamodule.sample_meta_batch()
    losses = module.compute_losses(batch["context"], batch["rl"])
    (losses["critic_loss"] + losses["actor_loss"]).backward()
    assert all(p.grad is None for p in module.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.critic.parameters())
    module.zero_grad(set_to_none=True)
    losses = module.compute_losses(batch["context"], batch["rl"])
    losses["encoder_loss"].backward()
    assert all(p.grad is not None for p in module.encoder.parameters())


def test_each_loss_reaches_only_its_own_network(tmp_path):
    """One backward of the summed losses must give each network exactly its own loss's gradient;
    in particular the PEARL actor term, which runs through Q, must not move the critic."""
    made = smoke_cli(tmp_path)
    module, batch = made.model, made.datamodule.sample_meta_batch()
    torch.manual_seed(1)
    losses = module.compute_losses(batch["context"], batch["rl"])
    total = losses["critic_loss"] + losses["actor_loss"] + losses["encoder_loss"]
    for own, net in (("critic_loss", module.critic), ("actor_loss", module.policy), ("encoder_loss", module.encoder)):
        params = list(net.parameters())
        expected = torch.autograd.grad(losses[own], params, retain_graph=True, allow_unused=True)
        got = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
        for e, g in zip(expected, got):
            torch.testing.assert_close(g, e)
    module.phase = Phase.SELF_SUPERVISED
    losses = module.compute_losses(batch["context"], batch["rl"])
    assert "pearl_loss" in losses and "encoder_loss" not in losses
    pearl_to_critic = torch.autograd.grad(losses["pearl_loss"], list(module.critic.parameters()), allow_unused=True)
    assert all(g is None for g in pearl_to_critic)
    pearl_to_policy = torch.autograd.grad(losses["pearl_loss"], list(module.policy.parameters()))
    assert any(g.abs().sum() > 0 for g in pearl_to_policy)


class _Watch(L.Callback):
    """Snapshots at the phase switch, and a tripwire on the env's true reward while self-supervised."""

    def __init__(self):
        self.at_switch = None
        self.training_self_supervised = False

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.phase == Phase.SELF_SUPERVISED and self.at_switch is None:
            self.at_switch = {
                "encoder": copy.deepcopy(module.encoder.state_dict()),
                "decoder": copy.deepcopy(module.decoder.state_dict()),
                "encoder_opt": copy.deepcopy(trainer.optimizers[0].state_dict()),
                "policy": copy.deepcopy(module.policy.state_dict()),
            }

    def on_validation_start(self, trainer, module):
        self.training_self_supervised = False  # meta-test uses true rewards, by design

    def on_validation_end(self, trainer, module):
        self.training_self_supervised = module.updates >= module.hparams.offline_updates


@pytest.fixture(scope="module")
def self_supervised_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ss")
    made = smoke_cli(tmp_path, "--checkpoint.save_top_k", "-1", "--checkpoint.monitor", "null")
    watch = _Watch()
    made.trainer.callbacks.append(watch)
    true_reward = PointRobotEnv.reward

    def tripwire(env, position):
        if watch.training_self_supervised:
            raise AssertionError("the true reward was computed during the self-supervised phase")
        return true_reward(env, position)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PointRobotEnv, "reward", tripwire)
        made.trainer.fit(made.model, made.datamodule)
    return made, watch, tmp_path


def test_phase_switch_freezes_encoder_and_decoder_bit_identically(self_supervised_run):
    made, watch, _ = self_supervised_run
    module = made.model
    assert sum(isinstance(c, SelfSupervisedPhase) for c in made.trainer.callbacks) == 1  # the module's own
    assert module.phase == Phase.SELF_SUPERVISED and module.updates == 80
    for name in ("encoder", "decoder"):
        for key, value in getattr(module, name).state_dict().items():
            assert torch.equal(value, watch.at_switch[name][key]), f"{name}.{key} changed after the switch"
    opt_now = made.trainer.optimizers[0].state_dict()["state"]
    opt_then = watch.at_switch["encoder_opt"]["state"]
    assert [float(s["step"]) for s in opt_now.values()] == [float(s["step"]) for s in opt_then.values()]
    assert float(next(iter(opt_now.values()))["step"]) == 40  # stepped in the offline phase only
    moved = [not torch.equal(v, watch.at_switch["policy"][k]) for k, v in module.policy.state_dict().items()]
    assert all(moved), "the policy must keep training"


def test_the_phase_closes_its_envs_when_a_fit_fails():
    closed = []
    phase = SelfSupervisedPhase()
    phase._envs = type("Envs", (), {"close": lambda self: closed.append(True)})()
    phase.on_exception(None, None, RuntimeError("a crash"))
    assert closed == [True] and phase._envs is None


def test_the_phase_trains_encoder_and_decoder_only_when_asked(tmp_path):
    """``self_supervised.train_encoder``: eq. (3) keeps its gradient after the switch, beside the PEARL term."""
    for asked in (False, True):
        made = smoke_cli(tmp_path / str(asked), "--model.self_supervised.train_encoder", str(asked).lower())
        module, dm = made.model, made.datamodule
        switch_to_self_supervised(module, dm)
        assert module.trains_encoder is asked
        params = [*module.encoder.parameters(), *module.decoder.parameters()]
        assert all(p.requires_grad is asked for p in params)
        batch = dm.sample_meta_batch()
        losses = module.compute_losses(batch["context"], batch["rl"])
        assert "pearl_loss" in losses and ("encoder_loss" in losses) is asked
        if asked:
            grads = torch.autograd.grad(losses["encoder_loss"], params)
            assert all(g.abs().sum() > 0 for g in grads)


def test_the_phase_without_its_data_steps_no_env_and_trains_on_offline_rows(tmp_path):
    """``self_supervised.collect false`` (the ``no_online_data`` ablation): the phase's updates, no env step."""
    made = smoke_cli(tmp_path, "--model.self_supervised.collect", "false")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("smac_lightning.callbacks.self_supervised_phase.collection_envs", lambda *a: pytest.fail("an env was built"))
        made.trainer.fit(made.model, made.datamodule)
    module, dm = made.model, made.datamodule
    assert module.phase == Phase.SELF_SUPERVISED and module.updates == 80 and module.iterations_done == 2
    assert module.online_transitions == 0 and (dm.rl.sizes == dm.rl.offline_size).all()
    assert "train/pearl_loss" in made.trainer.logged_metrics  # the phase's actor loss ran


def test_self_supervised_phase_appends_generated_rows_without_the_true_reward(self_supervised_run):
    made, watch, _ = self_supervised_run
    dm, module = made.datamodule, made.model
    assert watch.training_self_supervised  # the tripwire was armed and nothing tripped it
    # smoke config: 2 iterations of 20 updates, each 2 tasks x (1 prior + 2 posterior 20-step
    # trajectories) = 120 env steps, collected at self-supervised updates 0 and 20
    assert module.iterations_done == 2 and module.online_transitions == 240
    assert dm.encoder is dm.rl  # the default: contexts come from the RL buffer, online rows included
    filled = dm.rl.sizes - dm.rl.offline_size
    assert int(filled.sum()) == 240
    rows = torch.cat([dm.rl.storage[t, dm.rl.offline_size : dm.rl.offline_size + int(n)] for t, n in enumerate(filled)])
    assert rows["generated"].all() and torch.isfinite(rows["reward"]).all()
    owners = torch.nonzero(filled)[:, 0]
    assert (rows["task"].squeeze(-1)[:, None] == owners).any(-1).all()


def _one_iteration(tmp_path, *overrides):
    """One self-supervised iteration's collection, run directly on a fresh smoke module at the switch."""
    from smac_lightning.rollout import collection_envs, self_supervised_iteration

    made = smoke_cli(tmp_path, *overrides)
    module, dm = made.model, made.datamodule
    switch_to_self_supervised(module, dm)
    lanes = collection_envs(dm.family, module.self_supervised)
    module.online_transitions += self_supervised_iteration(module, dm, lanes, torch.Generator().manual_seed(0), seed=0)
    return module, dm


@pytest.mark.parametrize("mode", ["append", "freeze"])
def test_a_separate_encoder_buffer_gets_the_prior_rows_unless_frozen(tmp_path, mode):
    module, dm = _one_iteration(
        tmp_path, "--data.encoder_buffer", "separate", "--model.self_supervised.encoder_buffer", mode,
        "--model.self_supervised.prior_steps", "30",  # rounds up to 2 whole 20-step trajectories per task
        "--model.z.resample", "trajectory" if mode == "freeze" else "step",
    )
    # 2 tasks (drawn with replacement) x (2 prior + 2 posterior trajectories) x 20 steps
    assert module.online_transitions == 160 and int((dm.rl.sizes - dm.rl.offline_size).sum()) == 160
    to_encoder = int((dm.encoder.sizes - dm.encoder.offline_size).sum())
    assert to_encoder == (80 if mode == "append" else 0)  # prior rows only, never the posterior ones


def test_posterior_trajectories_infer_z_from_the_tasks_encoder_buffer_after_a_prior_one(tmp_path, monkeypatch):
    from smac_lightning.rollout import CollectorEnvs, LatentPolicy

    seen, lanes_run = [], []
    original_init, original_run = LatentPolicy.__init__, CollectorEnvs.run

    def spy_policy(self, policy, mean, var=None, per_step=False, deterministic=False):
        seen.append((mean.clone(), var.clone(), per_step))
        original_init(self, policy, mean, var, per_step, deterministic)

    def spy_run(self, tasks, act, seed=None):
        lanes_run.append(tasks.copy())
        return original_run(self, tasks, act, seed)

    monkeypatch.setattr(LatentPolicy, "__init__", spy_policy)
    monkeypatch.setattr(CollectorEnvs, "run", spy_run)
    module, _ = _one_iteration(tmp_path)
    (prior_mean, prior_var, prior_per_step), (post_mean, post_var, post_per_step) = seen
    assert prior_per_step == post_per_step == (module.z.resample == "step")  # z drawn as meta-test does
    prior_tasks, post_tasks = lanes_run
    assert len(prior_tasks) == 2 and len(post_tasks) == 4  # 2 tasks x 1 prior; 2 tasks x 2 posterior
    assert (prior_mean == 0).all() and (prior_var == 1).all()
    assert (post_tasks == prior_tasks.repeat(2, axis=0)).all()
    first = torch.tensor([True, False, True, False])  # each task's first posterior trajectory: p(z)
    assert (post_mean[first] == 0).all() and (post_var[first] == 1).all()
    assert (post_var[~first] < 1).all()  # a posterior from 32 rows is narrower than the prior


def test_exploration_from_training_posteriors_replaces_the_prior_in_collection(tmp_path, monkeypatch):
    from smac_lightning.rollout import LatentPolicy

    seen = []
    original_init = LatentPolicy.__init__

    def spy_policy(self, policy, mean, var=None, per_step=False, deterministic=False):
        seen.append((mean.clone(), var.clone()))
        original_init(self, policy, mean, var, per_step, deterministic)

    monkeypatch.setattr(LatentPolicy, "__init__", spy_policy)
    module, dm = _one_iteration(tmp_path, "--model.z.exploration", "training")
    offline = dm.encoder.sample(torch.arange(dm.num_train_tasks), 256, torch.Generator().manual_seed(0), offline_only=True)
    bank_mean, _ = module.encoder.posterior(offline)
    (prior_mean, prior_var), (post_mean, post_var) = seen
    first = torch.tensor([True, False, True, False])  # each task's first posterior trajectory explores too
    for mean, var in ((prior_mean, prior_var), (post_mean[first], post_var[first])):
        assert (var < 1).all()  # a training task's posterior, not p(z)
        # each lane's mean is some training task's posterior mean (its 256 rows drawn afresh: close, not equal)
        assert (torch.cdist(mean, bank_mean).min(1).values < 0.5 * torch.cdist(mean, torch.zeros(1, mean.shape[1])).squeeze(1)).all()


def _losses_and_the_z_they_drew(tmp_path, *overrides, rows_of: str = "rl"):
    """The losses of one smoke meta-batch, its ``rows_of`` rows (``rl`` or ``context``) and the z drawn
    for them, ``[T, B, d]`` (same seed)."""
    made = smoke_cli(tmp_path, *overrides)
    module, batch = made.model, made.datamodule.sample_meta_batch()
    torch.manual_seed(0)
    losses = module.compute_losses(batch["context"], batch["rl"])
    torch.manual_seed(0)
    mean, var = module.encoder.posterior(batch["context"])
    z = mean + var.sqrt() * torch.randn_like(mean)
    chosen = batch[rows_of]
    return module, chosen, losses, z.unsqueeze(1).expand(*chosen.batch_size, z.shape[-1]), (mean, var)


def test_meta_behaviour_cloning_is_the_dataset_actions_negative_log_likelihood(tmp_path):
    module, rl, losses, z_rows, _ = _losses_and_the_z_they_drew(tmp_path, "--model.actor.loss", "bc")
    expected = -module.policy(rl["observation"], z_rows).log_prob(rl["action"]).mean()
    torch.testing.assert_close(losses["actor_loss"], expected)


def test_eq3_reconstructs_the_rl_rows_from_z_inferred_on_the_context(tmp_path):
    module, rl, losses, z_rows, (mean, var) = _losses_and_the_z_they_drew(tmp_path)
    error = (module.decoder(rl["observation"], rl["action"], z_rows) - rl["reward"]).pow(2).mean()  # every RL row
    kl = (0.5 * (var + mean.pow(2) - 1 - var.log()).sum(-1)).mean()  # summed over dims, mean over tasks
    torch.testing.assert_close(losses["reward_loss"], error)
    torch.testing.assert_close(losses["encoder_loss"], error + 0.1 * kl)


def test_eq3_as_the_paper_writes_it_reconstructs_the_context_z_was_inferred_from(tmp_path):
    module, context, losses, z_rows, _ = _losses_and_the_z_they_drew(tmp_path, "--model.decoder.rows", "context", rows_of="context")
    error = (module.decoder(context["observation"], context["action"], z_rows) - context["reward"]).pow(2).mean()
    torch.testing.assert_close(losses["reward_loss"], error)
    with pytest.raises(ConfigError, match="decoder.rows"):
        SMAC(obs_dim=2, act_dim=2, decoder={"rows": "both"})


def test_until_success_imitates_only_the_marked_rows(tmp_path):
    """``actor_rows: until_success``: eq. (2) ignores the actions of rows after an episode's first
    success; the critic still trains on them. A family without a success reward is refused."""
    made = smoke_cli(tmp_path, "--model.actor.rows", "until_success")
    with pytest.raises(ConfigError, match="needs a family with a success reward"):
        made.trainer.fit(made.model, made.datamodule)
    module, batch = made.model, made.datamodule.sample_meta_batch()
    rl = batch["rl"]
    rl["before_success"] = torch.rand(*rl.batch_size, 1, generator=torch.Generator().manual_seed(0)) < 0.5

    def losses_with_actions(marked: bool):
        moved = batch.clone()
        where = rl["before_success"] if marked else ~rl["before_success"]
        moved["rl", "action"] = torch.where(where, -moved["rl", "action"], moved["rl", "action"])
        torch.manual_seed(0)
        return module.compute_losses(moved["context"], moved["rl"])

    torch.manual_seed(0)
    reference = module.compute_losses(batch["context"], rl)
    after_success, before_success = losses_with_actions(False), losses_with_actions(True)
    assert after_success["actor_loss"] == reference["actor_loss"]
    assert after_success["critic_loss"] != reference["critic_loss"]
    assert before_success["actor_loss"] != reference["actor_loss"]
    with pytest.raises(ConfigError, match="model.actor.rows"):
        SMAC(obs_dim=2, act_dim=2, actor={"rows": "first"})


def test_episode_return_advantage_is_the_return_less_its_task_mean_weighed_per_task(tmp_path):
    """``advantage: episode_return``: eq. (2)'s weights are, per task, softmax((G - the task's mean G) /
    beta) over its rows times their number, whatever the critic says."""
    made = smoke_cli(tmp_path, "--model.actor.advantage", "episode_return", "--model.actor.beta", "2.0")
    module, batch = made.model, made.datamodule.sample_meta_batch()
    rl = batch["rl"]
    tasks, rows = rl.batch_size
    g = torch.randn(tasks, rows, 1, generator=torch.Generator().manual_seed(0)) * 3
    g[1] += 100.0  # a task whose episodes are all better weighs as much as the others, no more
    rl["episode_return"] = g
    expected = torch.stack([torch.softmax((g[t] - g[t].mean()).flatten() / 2.0, 0) * rows for t in range(tasks)])
    losses = module.compute_losses(batch["context"], rl)
    torch.testing.assert_close(losses["awac_ess"], effective_sample_fraction(expected))
    with torch.no_grad():
        for p in module.critic.parameters():
            p.mul_(3.0)
    assert module.compute_losses(batch["context"], rl)["awac_ess"] == losses["awac_ess"]
    with pytest.raises(ConfigError, match="model.actor.advantage"):
        SMAC(obs_dim=2, act_dim=2, actor={"advantage": "returns"})


def test_a_run_annotates_offline_rows_and_each_labelled_online_episode(tmp_path):
    """With both switches, the RL replay carries ``before_success`` and ``episode_return`` for its
    offline rows and for the online episodes the phase appends, computed from the decoder's labels."""
    made = smoke_cli(tmp_path, "--model.actor.rows", "until_success", "--model.actor.advantage", "episode_return")
    made.datamodule.family.success_reward = -0.3  # Point Robot has none; a dense reward crosses it now and then
    made.trainer.fit(made.model, made.datamodule)
    rl, gamma = made.datamodule.rl, made.model.hparams.gamma
    checked = 0
    for task in torch.nonzero(rl.sizes > rl.offline_size).flatten().tolist():
        rows = rl.storage[task : task + 1, : int(rl.sizes[task])]  # ring not wrapped: episodes in order
        assert rows["generated"][0, rl.offline_size :].all()
        torch.testing.assert_close(rows["episode_return"], episode_return(rows["reward"], episode_ends(rows), gamma))
        assert torch.equal(rows["before_success"], until_first_success(rows["reward"], episode_ends(rows), -0.8))
        checked += 1
    assert checked and not rl.storage["before_success"][:, : rl.offline_size].all()  # some rows come after a success


def test_true_task_as_z_needs_the_task_size_and_trains_no_encoder(tmp_path):
    with pytest.raises(ConfigError, match="nothing can label the online data"):
        smoke_cli(tmp_path, "--model.true_task_as_z", "true", "--model.latent_dim", "2")
    made = smoke_cli(tmp_path, "--model.true_task_as_z", "true", "--model.latent_dim", "2", "--model.self_supervised.rewards", "true")
    module, batch = made.model, made.datamodule.sample_meta_batch()
    losses = module.compute_losses(batch["context"], batch["rl"], batch["task_description"])
    assert "encoder_loss" not in losses and "kl" not in losses
    (losses["critic_loss"] + losses["actor_loss"]).backward()
    assert all(p.grad is None for p in module.encoder.parameters())
    wrong = smoke_cli(tmp_path / "wrong", "--model.true_task_as_z", "true", "--model.self_supervised.rewards", "true")  # latent_dim 5
    with pytest.raises(ConfigError, match="set model.latent_dim: 2"):
        wrong.trainer.fit(wrong.model, wrong.datamodule)


def test_checkpoint_in_the_self_supervised_phase_resumes_it(self_supervised_run):
    made, _, tmp_path = self_supervised_run
    checkpoints = sorted((tmp_path / "runs").rglob("*step=80.ckpt"))  # named by update: the end
    assert checkpoints, list((tmp_path / "runs").rglob("*.ckpt"))
    # Continue the finished run for 2 more self-supervised iterations (40 updates) from its checkpoint.
    resumed = smoke_cli(tmp_path / "resumed", "--data.dataset_dir", str(tmp_path / "data"),
                        "--model.self_supervised.iterations", "4")
    resumed.trainer.fit(resumed.model, resumed.datamodule, ckpt_path=str(checkpoints[0]))
    module, dm = resumed.model, resumed.datamodule
    assert module.phase == Phase.SELF_SUPERVISED and module.updates == 120
    # the 240 transitions from before were restored, not re-collected; iterations 3 and 4 add 120 each
    assert module.iterations_done == 4 and module.online_transitions == 480
    assert int((dm.rl.sizes - dm.rl.offline_size).sum()) == 480
    for key, value in module.encoder.state_dict().items():
        assert torch.equal(value, made.model.encoder.state_dict()[key])


def test_bf16_mixed_keeps_outputs_targets_and_losses_in_float32(tmp_path):
    made = smoke_cli(tmp_path)
    module, batch = made.model, made.datamodule.sample_meta_batch()
    torch.manual_seed(3)
    reference = module.compute_losses(batch["context"], batch["rl"])
    torch.manual_seed(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = module.critic(batch["rl"]["observation"], batch["rl"]["action"], torch.zeros(4, 32, 5))
        losses = module.compute_losses(batch["context"], batch["rl"])
    assert q.dtype == torch.float32
    for key, value in losses.items():
        assert value.dtype == torch.float32, key
        # bf16 matmuls, same math: close to the float32 values (bf16 has ~3 significant digits)
        torch.testing.assert_close(value, reference[key], rtol=0.1, atol=0.1)


@pytest.mark.parametrize(
    "setting, device, mode",
    [(None, "cpu", None), (None, "cuda", "reduce-overhead"), (True, "cpu", "default"), (True, "cuda", "reduce-overhead"),
     (False, "cuda", None), (False, "cpu", None)],
)
def test_the_loss_graph_is_captured_by_default_on_gpus_only(setting, device, mode):
    assert compile_mode(setting, device) == mode


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_losses_match_eager_ones(tmp_path, monkeypatch, mode):
    """Also the GPU's path (``reduce-overhead``: CUDA graphs there; on a CPU the same compiled graph, with
    the step marking a GPU needs between updates)."""
    import torch._inductor.config

    monkeypatch.setattr(base, "compile_mode", lambda setting, device: mode)
    made = smoke_cli(tmp_path, "--model.compile_losses", "true")
    module, batch = made.model, made.datamodule.sample_meta_batch()
    torch.manual_seed(3)
    eager = module.compute_losses(batch["context"], batch["rl"])
    module.setup("fit")
    assert module.compute_losses is not type(module).compute_losses.__get__(module)
    with torch._inductor.config.patch(fallback_random=True):  # the eager RNG stream, for comparison
        for _ in range(2):  # a second call runs what the first one compiled
            torch.manual_seed(3)
            compiled = module.compute_losses(batch["context"], batch["rl"])
            for key, value in eager.items():
                torch.testing.assert_close(compiled[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_self_supervision_on_held_out_tasks_gives_them_rows_that_meta_batches_draw(tmp_path):
    module, dm = _one_iteration(tmp_path, "--model.self_supervised.tasks", "test")
    train, held_out = dm.num_train_tasks, len(dm.test_tasks)
    assert dm.rl.num_tasks == train + held_out and dm.held_out_in_replay
    online = dm.rl.sizes - dm.rl.offline_size
    assert int(online[:train].sum()) == 0 and int(online[train:].sum()) == module.online_transitions == 120
    assert (dm.rl.start[train:] == dm.rl.offline_size).all()  # their (empty) offline rows are never sampled
    drawn = torch.cat([dm.sample_meta_batch(torch.Generator().manual_seed(k))["task"] for k in range(50)])
    has_rows = dm.rl.has_rows()
    assert has_rows[drawn].all() and (drawn >= train).any()
    batch = dm.sample_meta_batch(torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch["task_description"], torch.cat([dm.train_tasks, dm.test_tasks])[batch["task"]].float())
    # a resumed data module rebuilds the held-out rows before loading them
    state = dm.state_dict()
    fresh = smoke_cli(tmp_path).datamodule
    fresh.load_state_dict(state)
    assert fresh.rl.num_tasks == train + held_out and torch.equal(fresh.rl.sizes, dm.rl.sizes)


def test_online_contexts_switch_at_the_phase_and_a_frozen_separate_buffer_is_refused(tmp_path):
    """``self_supervised.contexts: online``: from the switch on, meta-batches take a task's context from
    its online rows once it has some (tests/test_replay.py checks the rows); a context buffer that
    never receives online rows is refused."""
    from smac_lightning.rollout.self_supervised import SelfSupervisedConfig

    made = smoke_cli(tmp_path, "--model.self_supervised.contexts", "online")
    made.trainer.fit(made.model, made.datamodule)
    dm, switch = made.datamodule, made.model.hparams.offline_updates
    assert dm.online_contexts and dm.contexts_online(switch) and not dm.contexts_online(switch - 1)
    assert (dm.rl.sizes > dm.rl.offline_size).any()  # the phase collected: there are online rows to read
    frozen = smoke_cli(tmp_path / "frozen", "--model.self_supervised.contexts", "online", "--data.encoder_buffer", "separate",
                       "--model.self_supervised.encoder_buffer", "freeze")
    with pytest.raises(ConfigError, match="contexts: online needs online rows"):
        frozen.trainer.fit(frozen.model, frozen.datamodule)
    with pytest.raises(ConfigError, match="model.self_supervised.contexts"):
        SelfSupervisedConfig(contexts="offline")


def test_learning_diagnostics_leave_the_run_unchanged_and_log_each_evaluation(self_supervised_run, tmp_path):
    """The callback draws and differentiates outside the run's random streams: the same run with it
    ends on bit-identical weights, and every evaluation carries its ``diag/`` measurements."""
    made, _, _ = self_supervised_run
    again = smoke_cli(tmp_path, "--checkpoint.save_top_k", "-1", "--checkpoint.monitor", "null",
                      "--trainer.callbacks+=smac_lightning.callbacks.LearningDiagnostics")
    again.trainer.fit(again.model, again.datamodule)
    for key, value in made.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key
    logged = again.trainer.logged_metrics
    assert float(logged["diag/actor_grad_pearl"]) > 0 and float(logged["diag/policy_std"]) > 0
    assert "diag/online_q_error" in logged and "diag/offline_q_error" in logged


def test_bootstrapped_returns_sum_each_episode_and_take_the_critic_at_a_time_limit():
    from smac_lightning.callbacks.learning_diagnostics import bootstrapped_returns

    reward = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]]).unsqueeze(-1)
    end = torch.tensor([[False, True, False, False, True]]).unsqueeze(-1)  # episodes of 2 and 3 rows
    last = torch.tensor([[0.0, 10.0, 0.0, 0.0, 20.0]]).unsqueeze(-1)  # the critic at each episode's last row
    got = bootstrapped_returns(reward, end, last, 0.5).squeeze()
    expected = [1 + 0.5 * (2 + 0.5 * 10), 2 + 0.5 * 10, 3 + 0.5 * (4 + 0.5 * (5 + 0.5 * 20)), 4 + 0.5 * (5 + 0.5 * 20), 5 + 0.5 * 20]
    torch.testing.assert_close(got, torch.tensor(expected))


def test_the_ablations_actor_is_minus_q_at_its_own_action_in_both_phases(tmp_path):
    """``actor.loss: reparam``: no eq. (2) term (the data's actions do not enter the actor's loss), the
    actor's loss is the PEARL term already offline, and it never moves the critic."""
    made = smoke_cli(tmp_path, "--model.actor.loss", "reparam")
    module, batch = made.model, made.datamodule.sample_meta_batch()
    torch.manual_seed(0)
    losses = module.compute_losses(batch["context"], batch["rl"])
    assert losses["actor_loss"] is losses["pearl_loss"] and module.phase == Phase.OFFLINE
    moved = batch["rl"].clone()
    moved["action"] = -moved["action"]
    torch.manual_seed(0)
    actor_loss = module.compute_losses(batch["context"], moved)["actor_loss"]
    assert actor_loss == losses["actor_loss"]
    critic = list(module.critic.parameters())
    assert all(g is None for g in torch.autograd.grad(actor_loss, critic, allow_unused=True, retain_graph=True))
    assert all(g is not None for g in torch.autograd.grad(actor_loss, list(module.policy.mean.parameters())))


def test_the_actor_ablation_keeps_the_critics_target_hard(tmp_path):
    made = smoke_cli(tmp_path)
    module, batch = made.model, made.datamodule.sample_meta_batch()

    def critic_loss(alpha, soft_target):
        module.actor.alpha, module.actor.soft_target = alpha, soft_target
        torch.manual_seed(0)
        return module.compute_losses(batch["context"], batch["rl"])["critic_loss"]

    hard = critic_loss(0.0, True)
    assert critic_loss(5.0, False) == hard and critic_loss(5.0, True) != hard


def test_alpha_adds_entropy_to_actor_and_target_and_a_tuned_one_learns(tmp_path):
    with pytest.raises(ConfigError, match="model.actor.alpha"):
        SMAC(obs_dim=2, act_dim=2, actor={"alpha": -1.0})
    with pytest.raises(ConfigError, match="model.actor.alpha"):
        SMAC(obs_dim=2, act_dim=2, actor={"alpha": "auto"})
    made = smoke_cli(tmp_path)
    module, batch = made.model, made.datamodule.sample_meta_batch()

    def log_std_gradient(alpha: float) -> torch.Tensor:
        module.actor.alpha = alpha
        module.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        module.compute_losses(batch["context"], batch["rl"])["actor_loss"].backward()
        return module.policy.log_std.bias.grad.clone()

    with torch.no_grad():  # a narrow policy (std 0.05), where widening it raises the tanh-Gaussian's entropy
        module.policy.log_std.weight.zero_()
        module.policy.log_std.bias.fill_(-3.0)
    # a large temperature makes the actor's loss fall as the policy widens, on every action dim
    assert (log_std_gradient(100.0) < log_std_gradient(0.0)).all() and (log_std_gradient(100.0) < 0).all()
    tuned = smoke_cli(tmp_path / "tuned", "--model.actor.alpha", "tuned")
    tuned.trainer.fit(tuned.model, tuned.datamodule)
    assert float(tuned.model.log_alpha) != 0.0  # stepped with the actor from alpha = 1
    assert "train/alpha" in tuned.trainer.logged_metrics


def test_nearest_neighbour_r2_is_one_for_features_that_tell_the_tasks_and_near_zero_for_noise():
    from smac_lightning.callbacks.learning_diagnostics import nearest_neighbour_r2

    tasks = torch.linspace(0, 3, 50).unsqueeze(1)
    assert nearest_neighbour_r2(torch.cat([tasks, torch.zeros(50, 2)], 1), tasks) > 0.99
    noise = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    assert nearest_neighbour_r2(noise, tasks) < 0.3


def test_the_bellman_target_values_the_next_state_at_the_q_s_own_z(tmp_path):
    """As the authors': a' comes from a second posterior draw, but the target critic is read at the z
    the regressed Q(s, a, z) was given, so the target does not move with the posterior's spread."""
    made = smoke_cli(tmp_path)
    module, batch = made.model, made.datamodule.sample_meta_batch()
    seen = {}

    def recording(name, net):
        forward = net.forward

        def wrapped(observation, action, z):
            seen.setdefault(name, []).append(z.detach().clone())
            return forward(observation, action, z)
        return wrapped

    module.critic.forward = recording("critic", module.critic)
    module.target_critic.forward = recording("target", module.target_critic)
    module.compute_losses(batch["context"], batch["rl"])
    (target_z,) = seen["target"]
    assert torch.equal(target_z, seen["critic"][-1])  # the regressed Q(s, a, z), the data's actions
    assert target_z.std(0).max() > 0  # the tasks' z differ: a real posterior draw, not a constant
