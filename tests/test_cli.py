"""The command line as users run it: smoke fit, MLflow contents, print_config, test, data, errors."""

import mlflow
import torch
import pytest
import yaml

from conftest import ROOT, SMOKE_ARGS, run_cli

from smac_lightning.algos import SMAC
from smac_lightning.options_help import options_of

pytestmark = pytest.mark.slow


def _client(cwd):
    return mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")


def _runs(cwd):
    client = _client(cwd)
    experiment = client.get_experiment_by_name("smac_lightning")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_envs_stepped_in_worker_processes_give_the_same_run(smoke_run, tmp_path):
    """``data.env_processes 2``: collection and meta-test through a ParallelEnv of two workers, the
    same rows, so the same run; and the process ends (its workers are closed)."""
    cwd, _, _ = smoke_run
    out = run_cli(tmp_path, "fit", *SMOKE_ARGS, "--data.env_processes", "2", timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,), reference = _runs(tmp_path), _runs(cwd)[0]
    for key in ("eval/test/final_return", "eval/test/final_return_offline_context", "train/online_transitions", "train/critic_loss"):
        assert run.data.metrics[key] == reference.data.metrics[key], key
    assert (cwd / "data/point_robot-rl200-enc100-seed0-goal0/manifest.json").is_file()  # generated on first use
    last = torch.load(next(cwd.glob("runs/*/*/checkpoints/last.ckpt")), weights_only=False)
    assert last["smac"] == {"phase": 1, "updates": 80, "online_transitions": 240, "iterations_done": 2}  # the newest state


def test_smoke_run_is_logged_to_the_local_sqlite_store(smoke_run):
    cwd, _, _ = smoke_run
    run = _runs(cwd)[0]
    client = _client(cwd)
    assert run.info.status == "FINISHED"
    updates = [m.value for m in client.get_metric_history(run.info.run_id, "progress/updates")]
    assert updates == [40.0, 80.0]  # at the phase switch and at the end
    phase = [m.value for m in client.get_metric_history(run.info.run_id, "progress/phase")]
    assert phase == [0.0, 1.0]
    metrics = run.data.metrics
    for key in ["eval/test/final_return", "eval/train/final_return", "eval/test/return_by_trajectory_0",
                "eval/test/return_by_trajectory_2", "diag/kl_offline_paper", "diag/kl_online_paper", "diag/kl_offline_matched", "diag/kl_online_matched", "train/awac_ess",
                "eval/test/final_return_offline_context", "train/critic_loss", "train/actor_loss",
                "train/reward_loss", "train/kl", "train/pearl_loss", "diag/reward_error_online",
                "eval/env_steps_per_second"]:
        assert key in metrics, key
    # the full resolved config: as params and as an artifact that parses back
    assert run.data.params["config.model.offline_updates"] == "40"
    assert run.data.params["config.data.family.class_path"] == "smac_lightning.envs.PointRobotFamily"
    # the precision chosen for this CPU, and why
    assert run.data.params["precision_choice"].startswith(run.data.params["config.trainer.precision"] + ": ")
    config = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config.yaml", str(cwd))))
    assert config["model"]["class_path"] == "smac_lightning.algos.SMAC"
    assert config["model"]["init_args"]["policy_hidden"] == [32, 32]


def test_print_config_reproduces_the_run(tmp_path):
    first = run_cli(tmp_path, "fit", *SMOKE_ARGS, "--print_config")
    assert first.returncode == 0, first.stderr[-2000:]
    (tmp_path / "printed.yaml").write_text(first.stdout)
    again = run_cli(tmp_path, "fit", "--config", "printed.yaml", "--print_config")
    assert again.returncode == 0, again.stderr[-2000:]
    assert yaml.safe_load(again.stdout) == yaml.safe_load(first.stdout)
    printed = yaml.safe_load(first.stdout)
    assert printed["model"]["init_args"]["offline_updates"] == 40 and printed["data"]["init_args"]["batch_size"] == 32


def test_help_lists_documented_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    out = run_cli(tmp_path, "fit", "--model.help", "SMAC")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert len(lines) <= 100, "two screens of 100 columns"  # jsonargparse's own help of SMAC: 221 lines
    actor = lines.index(next(line for line in lines if line.startswith("--model.actor.<name>")))
    beta = next(line for line in lines[actor:] if line.split()[:1] == ["beta"])
    assert beta.split()[1] == "100.0" and "eq. (2)'s temperature" in beta
    assert any(line.split()[:2] == ["lr", "0.0003"] for line in lines[:actor])  # a shared option, from MetaLearner
    assert len(options_of(SMAC)) <= 20  # at the top level; the rest grouped in sections (actor, decoder, z, ...)
    out = run_cli(tmp_path, "fit", "--data.help", "OfflineMetaDataModule")
    assert out.returncode == 0 and "--data.dataset_dir" in out.stdout


def test_a_checkpoint_with_the_old_option_names_is_read_under_the_new_ones(smoke_run, tmp_path):
    cwd, _, _ = smoke_run
    checkpoint = torch.load(next(cwd.glob("runs/*/*/checkpoints/last.ckpt")), weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    actor = hparams.pop("actor")  # as a checkpoint written before 2026-12-08 holds them
    hparams.update(awac_beta=actor["beta"], lambda_pearl=0.5, actor_rows=actor["rows"], value="policy", use_next_obs_in_context=False)
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    out = run_cli(cwd, "validate", *SMOKE_ARGS, "--ckpt_path", str(old))
    assert out.returncode == 0, out.stderr[-3000:]
    assert _runs(cwd)[-1].data.params["config.model.actor.lambda_pearl"] == "0.5"


@pytest.mark.parametrize("subcommand", ["test", "validate"])
def test_meta_test_of_a_checkpoint(smoke_run, subcommand):
    cwd, _, _ = smoke_run
    ckpt = next(cwd.glob("runs/*/*/checkpoints/last.ckpt"))
    out = run_cli(cwd, subcommand, *SMOKE_ARGS, "--ckpt_path", str(ckpt))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "eval/test/final_return" in out.stdout
    tested = _runs(cwd)[-1]
    assert "eval/test/final_return" in tested.data.metrics
    assert tested.info.run_name.startswith(f"point_robot-smac-{subcommand}-")
    assert tested.data.tags["smac_lightning.checkpoint"] == str(ckpt)  # which run's checkpoint it evaluated
    assert tested.data.tags["mlflow.parentRunId"] == _runs(cwd)[0].info.run_id  # and hangs under that run
    assert f"smac_lightning {subcommand} done" in out.stdout and "held-out " in out.stdout


def test_a_run_ends_on_a_screen_that_says_where_it_went_and_what_it_scored(smoke_run):
    import re

    cwd, proc, _ = smoke_run
    (run,) = _runs(cwd)[:1]
    assert re.fullmatch(r"point_robot-smac-fit-\d{8}-\d{6}", run.info.run_name)  # not MLflow's seeded random name
    screen = proc.stdout[proc.stdout.index("smac_lightning fit done"):]
    assert f"{run.info.run_name} ({run.info.run_id}) in sqlite:///mlflow.db" in screen
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in screen
    assert f"runs/1/{run.info.run_id}/checkpoints/last.ckpt" in screen
    client = _client(cwd)
    switch, end = (m.value for m in client.get_metric_history(run.info.run_id, "eval/test/final_return"))
    assert f"held-out, at the switch  final_return {switch:.2f}" in screen
    assert f"held-out, at the end     final_return {end:.2f}" in screen
    for noise in ("litlogger", "LeafSpec", "pybullet build time"):
        assert noise not in proc.stderr, noise
    assert f"update 40/80 (offline): held-out return {switch:.2f}" in proc.stdout  # one line per evaluation
    assert f"update 80/80 (self-supervised): held-out return {end:.2f}" in proc.stdout
    artifacts = [artifact.path for artifact in client.list_artifacts(run.info.run_id)]
    assert "curves.png" in artifacts and "trajectories.png" in artifacts  # Point Robot: the Fig. 6-7 view


def test_output_to_a_file_gets_evaluation_lines_not_bars(tmp_path):
    out = run_cli(tmp_path, "fit", *SMOKE_ARGS, "--trainer.enable_progress_bar", "true")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "it/s" not in out.stderr and "episode/s" not in out.stderr  # no bars (text mode turns their \r into lines)
    assert "generating the point_robot dataset at data/point_robot-rl200-enc100-seed0-goal0: 20 episodes" in out.stdout
    assert "update 80/80 (self-supervised): held-out return" in out.stdout


def test_importing_the_package_registers_every_env_without_loading_pybullet(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, gymnasium, smac_lightning\n"
        "ids = sorted(i for i in gymnasium.registry if i.startswith('smac_lightning/'))\n"
        "gymnasium.make('smac_lightning/PointRobot-v0').reset(seed=0)\n"
        "print(len(ids), 'pybullet' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["7", "False"] and "pybullet build time" not in out.stderr


def test_a_checkpoint_loads_without_a_trainer(smoke_run):
    from smac_lightning.algos import SMAC

    cwd, _, _ = smoke_run
    ckpt = next(cwd.glob("runs/*/*/checkpoints/last.ckpt"))
    module = SMAC.load_from_checkpoint(ckpt, map_location="cpu")
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert torch.equal(module.policy.state_dict()["trunk.0.weight"], saved["state_dict"]["policy.trunk.0.weight"])
    assert module.updates == saved["smac"]["updates"] == 80
    assert not torch.equal(torch.get_rng_state(), saved["rng"]["torch"])  # only a resumed fit takes the saved stream


def _main(capsys, *args):
    """``python -m smac_lightning ARGS`` in this process (a subprocess costs seconds of imports): exit code, out, err."""
    from smac_lightning.__main__ import main

    code = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("typo, fix", [
    ("--model.kl_weigth", "--model.kl_weight"), ("--data.rl_sise", "--data.rl_size"), ("--trainer.max_epohcs", "--trainer.max_epochs"),
])
def test_a_config_typo_gets_one_line_with_the_nearest_option(capsys, typo, fix):
    code, _, err = _main(capsys, "fit", *SMOKE_ARGS, typo, "3")
    assert code == 2
    assert err.strip().splitlines()[-1] == f"smac_lightning: error: {typo} is not an option; did you mean {fix}? (--help lists them)"
    assert "usage:" not in err


@pytest.mark.parametrize("old, new, value", [("awac_beta", "actor.beta", "3"), ("lambda_pearl", "actor.lambda_pearl", "3"),
                                            ("decoder_rows", "decoder.rows", "rl"), ("evaluation.exploration_z", "z.exploration", "training")])
def test_an_option_that_moved_gets_one_line_naming_its_new_place(capsys, tmp_path, old, new, value):
    code, _, err = _main(capsys, "fit", *SMOKE_ARGS, f"--model.{old}", value)
    assert code == 2 and err.strip().splitlines()[-1] == f"smac_lightning: error: model.{old} is now model.{new}"
    section, _, key = old.rpartition(".")  # a config file nests it
    (tmp_path / "old.yaml").write_text(f"model:\n  {section}:\n    {key}: {value}\n" if section else f"model:\n  {old}: {value}\n")
    code, _, err = _main(capsys, "fit", *SMOKE_ARGS, "--config", str(tmp_path / "old.yaml"))
    assert code == 2 and err.strip().splitlines()[-1] == f"smac_lightning: error: model.{old} is now model.{new}"


@pytest.mark.parametrize("option, value, message", [
    ("--model.decoder.rows", "both", "--model.decoder.rows: expected one of 'rl', 'context', got both"),
    ("--model.lr", "fast", "--model.lr: Expected a <class 'float'>. Got value: fast"),
])
def test_a_bad_value_gets_one_line_naming_the_option_and_what_it_takes(capsys, option, value, message):
    code, _, err = _main(capsys, "fit", *SMOKE_ARGS, option, value)
    assert code == 2
    assert err.strip().splitlines()[-1] == f"smac_lightning: error: {message}"


def test_a_missing_config_file_and_an_unknown_command_get_one_line(capsys):
    code, _, err = _main(capsys, "fit", "--config", "nowhere.yaml")
    assert code == 2 and "usage:" not in err
    assert 'smac_lightning: error: Parser key "config": File does not exist:' in err and "nowhere.yaml'" in err
    code, _, err = _main(capsys, "fitt")
    assert code == 2 and "invalid choice: 'fitt'" in err and "data {make,info}" in err
    code, out, _ = _main(capsys, "--help")
    assert code == 0 and "data {make,info}" in out and "{fit,validate,test,predict}" in out


def test_misaligned_budget_is_refused_with_the_fix(tmp_path):
    out = run_cli(tmp_path, "fit", *SMOKE_ARGS, "--model.offline_updates", "30")
    assert out.returncode != 0
    assert "model.offline_updates=30 is not a multiple of trainer.val_check_interval=40" in out.stderr


def test_data_make_builds_the_dataset_and_refuses_a_foreign_one(tmp_path):
    out = run_cli(tmp_path, "data", "make", *SMOKE_ARGS)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dataset ready at data/point_robot-rl200-enc100-seed0-goal0" in out.stdout
    assert (tmp_path / "data/point_robot-rl200-enc100-seed0-goal0/train/rl/meta.json").is_file()
    sparse = run_cli(tmp_path, "data", "make", *SMOKE_ARGS, "--data.family.init_args.sparse", "true")
    assert sparse.returncode != 0
    assert "made for task family" in sparse.stderr and "Traceback" not in sparse.stderr.split("DatasetError")[0][-200:]
    rebuilt = run_cli(tmp_path, "data", "make", *SMOKE_ARGS, "--data.family.init_args.sparse", "true", "--overwrite")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert "args parameter" not in rebuilt.stderr  # no LightningCLI warning about its own arguments
    online = run_cli(tmp_path, "data", "make", "--config", str(ROOT / "conf/pearl/point_robot.yaml"))
    assert online.returncode == 2 and "an online learner makes no dataset" in online.stderr


def test_data_info_has_help_and_shows_the_stored_success_rate(tmp_path, dataset_dir):
    import json
    import shutil

    from smac_lightning.data.dataset import write_manifest

    assert "usage: python -m smac_lightning data make" in run_cli(tmp_path, "data", "info", "--help").stdout
    copy = tmp_path / "copy"
    shutil.copytree(dataset_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    write_manifest(copy, {**manifest, "success_rate": {"train": 0.46}})
    out = run_cli(tmp_path, "data", "info", str(copy))
    assert out.returncode == 0 and "achieving the rewarded behaviour: {'train': 0.46}" in out.stdout


# Humanoid, Walker and Hopper share the MuJoCo path of Cheetah and Ant here (their envs have their own
# tests, their configs parse below); a smoke fit of each would add about a minute to the suite
@pytest.mark.parametrize("config", ["cheetah_vel.yaml", "ant_dir.yaml", "sawyer.yaml"])
def test_smoke_overlay_runs_with_other_task_configs(tmp_path, config):
    # a MuJoCo family's own size and horizon cost a minute here and test nothing more
    small = () if config == "sawyer.yaml" else ("--data.family.init_args.num_train_tasks", "10",
                                                 "--data.family.init_args.num_test_tasks", "4", "--data.family.init_args.horizon", "50")
    out = run_cli(tmp_path, "fit", "--config", str(ROOT / "conf" / config), "--config", str(ROOT / "conf/smoke.yaml"), *small)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()  # MuJoCo's warnings go to Python's, not to a file here
    (run,) = _runs(tmp_path)
    assert "eval/test/final_return" in run.data.metrics and run.data.metrics["progress/phase"] == 1.0
    if config == "sawyer.yaml":  # sparse rewards: success rates, and the generated scenes' pictures with the run
        assert "eval/test/final_success" in run.data.metrics and "eval/test/exploration_success" in run.data.metrics
        behaviours = [k for k in run.data.metrics if k.startswith("eval/test/final_success/")]
        assert behaviours and all(k.rsplit("/", 1)[1] in ("move_hand", "open_top_drawer", "open_bottom_drawer") for k in behaviours)
        pictures = _client(tmp_path).list_artifacts(run.info.run_id, "dataset_previews/train")
        assert len(pictures) == 4 and all(p.path.endswith(".png") for p in pictures)


@pytest.mark.parametrize("config", ["cheetah_vel.yaml"])
def test_pearl_smoke_overlay_runs_with_mujoco_configs(tmp_path, config):
    pearl = ROOT / "conf/pearl"
    out = run_cli(tmp_path, "fit", "--config", str(pearl / config), "--config", str(pearl / "smoke.yaml"))
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = _runs(tmp_path)
    assert "eval/test/final_return" in run.data.metrics and run.data.metrics["progress/iteration"] == 3.0


def test_conf_files_parse(capsys):
    for config in sorted((ROOT / "conf").glob("**/*.yaml")):
        if config.name in ("smoke.yaml", "paper_budget.yaml", "sawyer_paper_budget.yaml") or config.parent.name == "families":
            continue  # overlays, and the family blocks the task configs name
        code, out, err = _main(capsys, "fit", "--config", str(config), "--print_config")
        assert code == 0 and yaml.safe_load(out)["model"]["class_path"].startswith("smac_lightning.algos."), (config, err[-2000:])


def test_sawyers_paper_budget_overlay_sets_the_papers_offline_budget_with_evaluations_at_the_switch_and_end(capsys):
    code, out, err = _main(capsys, "fit", "--config", str(ROOT / "conf/sawyer.yaml"), "--config",
                           str(ROOT / "conf/sawyer_paper_budget.yaml"), "--print_config")
    assert code == 0, err[-2000:]
    config = yaml.safe_load(out)
    model, interval = config["model"]["init_args"], config["trainer"]["val_check_interval"]
    phase = model["self_supervised"]["iterations"] * model["self_supervised"]["updates_per_iteration"]
    assert (model["offline_updates"], phase) == (50_000, 20_000)
    assert model["offline_updates"] % interval == 0 and (model["offline_updates"] + phase) % interval == 0
    assert model["kl_weight"] == 0.0 and model["self_supervised"]["contexts"] == "online"  # the family's settings stay


def test_ckpt_path_last_continues_the_same_run(tmp_path):
    first = run_cli(tmp_path, "fit", *SMOKE_ARGS)
    assert first.returncode == 0, first.stderr[-2000:]
    longer = ("--model.self_supervised.iterations", "4")
    resumed = run_cli(tmp_path, "fit", *SMOKE_ARGS, *longer, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from runs/" in resumed.stderr
    first_name = _runs(tmp_path)[0].info.run_name
    assert f"MLflow run               {first_name} (" in resumed.stdout  # the resumed run's screen names it
    (last,) = tmp_path.glob("runs/*/*/checkpoints/last.ckpt")  # the same folder, not a new run's
    assert torch.load(last, weights_only=False)["smac"]["updates"] == 120
    (run,) = _runs(tmp_path)  # and the same MLflow run
    updates = [m.value for m in _client(tmp_path).get_metric_history(run.info.run_id, "progress/updates")]
    assert updates == [40.0, 80.0, 120.0]


def test_ckpt_path_last_without_a_checkpoint_is_explained(tmp_path):
    out = run_cli(tmp_path, "fit", *SMOKE_ARGS, "--ckpt_path", "last")
    assert out.returncode == 2
    assert "--ckpt_path last: no last.ckpt under runs" in out.stderr


def test_the_terminal_bar_counts_updates_against_the_budget_with_phase_and_held_out_return(tmp_path):
    from helpers import smoke_cli
    from smac_lightning.callbacks import UpdatesBar

    made = smoke_cli(tmp_path, "--trainer.enable_progress_bar", "true")
    trainer = made.trainer
    default = trainer.progress_bar_callback  # TQDM's, or Rich's where rich is installed
    bar = trainer.callbacks[trainer.callbacks.index(default)] = UpdatesBar(interval=3600)
    draws = []

    def on_train_batch_end(*args):
        before = bar._drawn
        UpdatesBar.on_train_batch_end(bar, *args)
        if bar._drawn != before:
            draws.append(made.model.updates)

    bar.on_train_batch_end = on_train_batch_end
    trainer.fit(made.model, made.datamodule)
    assert bar.train_progress_bar.total == made.model.total_updates == 80 and bar.train_progress_bar.n == 80
    assert draws == [10, 80]  # redrawn after the first batch (10 updates), at most every interval, and at the end
    last = made.model.evaluations[-1]["eval/test/final_return"]
    assert bar.get_metrics(trainer, made.model) == {"held-out return": f"{last:.2f}", "phase": "self-supervised"}
