import copy

import lightning as L
import pytest
import torch

from smac_lightning.algos import Phase
from smac_lightning.envs.point_robot import PointRobotEnv

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


def test_self_supervised_phase_appends_generated_rows_without_the_true_reward(self_supervised_run):
    made, watch, _ = self_supervised_run
    dm, module = made.datamodule, made.model
    assert watch.training_self_supervised  # the tripwire was armed and nothing tripped it
    # smoke config: rounds of 1 exploration + 1 adapted 20-step trajectory, 0.5 updates per
    # transition: rounds at self-supervised updates 0 and 20, none at 40 (the end)
    assert module.online_transitions == 80
    for buffer in (dm.rl, dm.encoder):
        filled = buffer.sizes - buffer.offline_size
        rows = torch.cat([buffer.storage[t, buffer.offline_size : buffer.offline_size + int(n)] for t, n in enumerate(filled)])
        assert rows["generated"].all() and torch.isfinite(rows["reward"]).all()
        owners = torch.nonzero(filled)[:, 0]
        assert (rows["task"].squeeze(-1)[:, None] == owners).any(-1).all()
    assert int((dm.rl.sizes - dm.rl.offline_size).sum()) == 80
    # encoder_buffer=replace: a task's contexts are its latest exploration trajectory only
    explored = dm.encoder.start > 0
    assert explored.any()
    assert ((dm.encoder.sizes - dm.encoder.start)[explored] == 20).all()
    assert (dm.encoder.start[~explored] == 0).all()


def test_checkpoint_in_the_self_supervised_phase_resumes_it(self_supervised_run):
    made, _, tmp_path = self_supervised_run
    checkpoints = sorted((tmp_path / "runs").rglob("*step=200.ckpt"))  # 40*3 + 40*2 optimizer steps: the end
    assert checkpoints, list((tmp_path / "runs").rglob("*.ckpt"))
    # Continue the finished run for 40 more self-supervised updates from its checkpoint.
    resumed = smoke_cli(tmp_path / "resumed", "--data.dataset_dir", str(tmp_path / "data"),
                        "--model.self_supervised_updates", "80")
    resumed.trainer.fit(resumed.model, resumed.datamodule, ckpt_path=str(checkpoints[0]))
    module, dm = resumed.model, resumed.datamodule
    assert module.phase == Phase.SELF_SUPERVISED and module.updates == 120
    # the 80 transitions from before were restored, not re-collected: rounds fall due again at
    # self-supervised updates 40 (40 >= 80 * 0.5) and 60 (60 >= 120 * 0.5), 40 transitions each
    assert module.online_transitions == 160
    assert int((dm.rl.sizes - dm.rl.offline_size).sum()) == 160
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


def test_compiled_losses_match_eager_ones(tmp_path, monkeypatch):
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)  # the eager RNG stream, for comparison
    made = smoke_cli(tmp_path, "--model.compile_losses", "true")
    module, batch = made.model, made.datamodule.sample_meta_batch()
    torch.manual_seed(3)
    eager = module.compute_losses(batch["context"], batch["rl"])
    module.setup("fit")
    assert module.compute_losses is not type(module).compute_losses.__get__(module)
    torch.manual_seed(3)
    compiled = module.compute_losses(batch["context"], batch["rl"])
    for key, value in eager.items():
        torch.testing.assert_close(compiled[key], value, rtol=1e-4, atol=1e-5, msg=key)
