"""The compare command: its input checks, its summary arithmetic, and one small run end to end."""

import csv

import mlflow
import pytest

import smac_lightning.compare as compare
from smac_lightning.compare import _config_only, _model_options, method_args, parse, success_column, summarize, Plan
from smac_lightning.errors import ConfigError

from conftest import ROOT, SMOKE_ARGS, run_cli


@pytest.mark.parametrize(
    "args, message",
    [
        ([*SMOKE_ARGS, "--methods", "smac,maml"], r"unknown method\(s\) \['maml'\]"),
        ([*SMOKE_ARGS, "--seeds", "0"], "--seeds and --jobs must be >= 1"),
        ([*SMOKE_ARGS, "--first-seed", "-1"], "--first-seed must be >= 0"),
        ([*SMOKE_ARGS, "--first-seed", "two"], "take whole numbers, got '3', 'two' and '1'"),
        (["--seeds", "2"], "give the task config with --config"),
        (["--config", str(ROOT / "conf/pearl/point_robot.yaml")], "not an offline SMAC config"),
    ],
)
def test_bad_input_is_refused_with_the_fix(args, message):
    with pytest.raises(ConfigError, match=message):
        parse(args)


def test_bad_input_exits_2_with_one_line(tmp_path):
    out = run_cli(tmp_path, "compare", *SMOKE_ARGS, "--methods", "maml")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("smac_lightning: error: compare: unknown method")


def test_offline_baselines_get_the_whole_budget_offline():
    plan = Plan([], 1, ["offline"], ROOT, 1, "", offline_updates=40, self_supervised_updates=60, family="x")
    assert method_args(plan, "offline") == ["--model.offline_updates", "100", "--model.self_supervised.iterations", "0"]
    assert method_args(plan, "meta_bc")[-2:] == ["--model.actor.loss", "bc"]
    assert method_args(plan, "oracle") == ["--model.self_supervised.rewards", "true"]
    assert method_args(plan, "no_online_data") == ["--model.self_supervised.collect", "false"]
    assert method_args(plan, "actor_ablation") == ["--model.actor.loss", "reparam", "--model.actor.alpha", "tuned", "--model.actor.soft_target", "false"]
    assert method_args(plan, "sac_ablation") == ["--model.actor.loss", "reparam", "--model.actor.alpha", "tuned"]
    assert parse(list(SMOKE_ARGS)).methods == ["smac", "oracle", "offline", "meta_bc"]  # the paper's four by default


def test_first_seed_runs_the_next_seeds_only():
    plan = parse([*SMOKE_ARGS, "--seeds", "2", "--first-seed", "3", "--methods", "smac,offline"])
    assert plan.runs() == [("smac", 3), ("offline", 3), ("smac", 4), ("offline", 4)]
    assert parse(list(SMOKE_ARGS)).runs()[0] == ("smac", 0)


def test_only_the_options_that_decide_the_dataset_go_to_data_make():
    args = ["--config", "a.yaml", "--model.lr=1", "--data.rl_size", "10", "--config=b.yaml", "--trainer.devices", "2"]
    assert _config_only(args) == ["--config", "a.yaml", "--data.rl_size", "10", "--config=b.yaml"]


def test_summary_by_hand():
    rows = [
        {"method": "smac", "seed": s, "updates": u, "final_return": r, "offline_context_return": r - 1}
        for s, returns in ((0, [-10.0, -9.0, -8.0, -7.0]), (1, [-12.0, -11.0, -10.0, -9.0]))
        for u, r in zip((10, 20, 30, 40), returns)
    ]
    (entry,) = summarize(rows, switch=10)
    # at the switch: -10 and -12; last three: mean(-9, -8, -7) = -8 and mean(-11, -10, -9) = -10
    assert entry["at_switch_mean"] == -11.0 and entry["at_switch_std"] == 1.0
    assert entry["last3_mean"] == -9.0 and entry["last3_std"] == 1.0
    assert entry["offline_context_last3_mean"] == -10.0 and "success_last3_mean" not in entry
    assert "success" not in compare._table([entry])  # a family without a success reward prints returns only


def test_success_metrics_get_their_columns():
    assert success_column("eval/test/final_success") == "success"
    assert success_column("eval/test/final_success/open_top_drawer") == "success/open_top_drawer"
    assert success_column("eval/train/final_success/move_hand") == "train_success/move_hand"
    assert success_column("eval/test/final_success_offline_context") == "offline_context_success"
    assert success_column("eval/train/final_success_offline_context/move_hand") == "train_offline_context_success/move_hand"
    assert success_column("eval/test/exploration_success/move_hand") == "exploration_success/move_hand"


def test_labelled_variants_are_summarised_after_the_papers_methods():
    rows = [{"method": m, "seed": 0, "updates": u, "final_return": -1.0, "offline_context_return": -1.0}
            for m in ("smac+training_z", "oracle", "smac") for u in (10, 20)]
    assert [e["method"] for e in summarize(rows, switch=10)] == ["smac", "oracle", "smac+training_z"]


def test_success_per_behaviour_by_hand():
    # two seeds, evaluations at 10 (the switch) .. 40; the training draw misses move_hand at 40 in seed 1
    rows = []
    for seed, hand, drawer in ((0, [0.0, 0.5, 1.0, 1.0], [0.0, 0.0, 0.25, 0.5]), (1, [0.5, 0.5, 0.5, 1.0], [0.0, 0.0, 0.0, 0.25])):
        for i, u in enumerate((10, 20, 30, 40)):
            rows.append({"method": "smac", "seed": seed, "updates": u, "final_return": -1.0, "offline_context_return": -1.0,
                         "success": (hand[i] + drawer[i]) / 2, "success/move_hand": hand[i], "success/open_top_drawer": drawer[i],
                         "train_success": 0.5, "train_success/move_hand": "" if (seed, u) == (1, 40) else 1.0})
    (entry,) = summarize(rows, switch=10)
    # move hand at the switch 0.0 and 0.5; last three mean(0.5, 1, 1) = 5/6 and mean(0.5, 0.5, 1) = 2/3
    assert entry["success/move_hand_at_switch_mean"] == 0.25 and entry["success/move_hand_at_switch_std"] == 0.25
    assert entry["success/move_hand_last3_mean"] == round((5 / 6 + 2 / 3) / 2, 3)
    # top drawer: last three mean(0, 0.25, 0.5) = 0.25 and mean(0, 0, 0.25) = 1/12
    assert entry["success/open_top_drawer_last3_mean"] == round((0.25 + 1 / 12) / 2, 3)
    assert entry["success_last3_mean"] == round((0.25 + 1 / 12 + 5 / 6 + 2 / 3) / 4, 3)
    assert entry["train_success/move_hand_last3_mean"] == 1.0  # the missing draw is skipped, not read as 0
    table = compare._table([entry])
    assert "held-out 0.12 -> 0.46 (move_hand 0.25 -> 0.75, open_top_drawer 0.00 -> 0.17)" in table
    assert "training 0.50 -> 0.50 (move_hand 1.00 -> 1.00)" in table


def test_model_options_are_read_from_the_command_line_in_both_spellings():
    args = ["--config", "a.yaml", "--model.lambda_pearl", "0", "--model.self_supervised.rewards=true", "--trainer.devices", "1"]
    assert _model_options(args) == {"lambda_pearl": "0", "self_supervised.rewards": "true"}


def test_fork_is_refused_for_methods_with_their_own_offline_phase_and_for_another_comparison(tmp_path):
    with pytest.raises(ConfigError, match=r"only oracle, no_online_data \(and smac under a --label\) can start from SMAC's switch; not meta_bc"):
        parse([*SMOKE_ARGS, "--fork", str(tmp_path), "--methods", "oracle,meta_bc"])
    with pytest.raises(ConfigError, match="not smac"):  # SMAC's own curve is the comparison's already
        parse([*SMOKE_ARGS, "--fork", str(tmp_path), "--methods", "smac"])
    for bad in (["--methods", "smac,oracle", "--label", "x"], ["--methods", "smac", "--label", "oracle"], ["--methods", "smac", "--label", "a b"]):
        with pytest.raises(ConfigError, match="--label names one method's variant"):
            parse([*SMOKE_ARGS, *bad])
    with pytest.raises(ConfigError, match="compare.json does not exist"):
        parse([*SMOKE_ARGS, "--fork", str(tmp_path), "--methods", "oracle"])
    (tmp_path / "compare.json").write_text('{"parent_run": "x", "family": "PointRobotFamily", "offline_updates": 1000}')
    with pytest.raises(ConfigError, match="switch at 1000 updates; this config is PointRobotFamily with 40"):
        parse([*SMOKE_ARGS, "--fork", str(tmp_path), "--methods", "oracle"])
    (tmp_path / "compare.json").write_text('{"parent_run": "x", "family": "PointRobotFamily", "offline_updates": 40}')
    plan = parse([*SMOKE_ARGS, "--fork", str(tmp_path), "--methods", "oracle"])
    assert plan.out == tmp_path and plan.fork_from["parent_run"] == "x"  # the forks join the comparison's folder
    labelled = parse([*SMOKE_ARGS, "--fork", str(tmp_path), "--methods", "smac", "--label", "smac+training_z"])
    assert labelled.name("smac") == "smac+training_z" and labelled.methods == ["smac"]


def test_a_failed_run_is_named_and_the_finished_ones_are_still_summarised(tmp_path, monkeypatch):
    plan = Plan([], 1, ["smac", "offline"], tmp_path / "cmp", 2, f"sqlite:///{tmp_path / 'mlflow.db'}",
                offline_updates=40, self_supervised_updates=40, family="PointRobotFamily")
    rows = [{"method": m, "seed": 0, "updates": u, "final_return": -float(u), "offline_context_return": -1.0}
            for m in ("smac", "offline") for u in (40, 80)]
    monkeypatch.setattr(compare, "parse", lambda args: plan)
    monkeypatch.setattr(compare.subprocess, "run", lambda *a, **k: type("Done", (), {"returncode": 0})())
    monkeypatch.setattr(compare, "_run_all", lambda plan, jobs, parent_id: [("offline", 0)])
    monkeypatch.setattr(compare, "_results", lambda plan, parent_id: rows)
    with pytest.raises(ConfigError, match=r"1 run\(s\) failed .*: offline seed 0 .*--methods offline --first-seed 0 --seeds 1"):
        compare.run([])
    with open(tmp_path / "cmp/summary.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["smac"]  # the failed run's partial curve is left out


@pytest.mark.slow
def test_compare_runs_each_method_as_an_mlflow_child_and_writes_its_results(tmp_path):
    out = run_cli(tmp_path, "compare", *SMOKE_ARGS, "--seeds", "1", "--methods", "smac,offline", "--out", "cmp")
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / "cmp/results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["updates"]) for r in rows] == [("smac", "40"), ("smac", "80"), ("offline", "40"), ("offline", "80")]
    assert all(float(r["final_return"]) < 0 for r in rows)
    assert (tmp_path / "cmp/compare.png").stat().st_size > 10_000 and (tmp_path / "cmp/summary.csv").is_file()
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smac_lightning")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.mlflow.runName LIKE 'compare%'")
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["compare.method"] for c in children) == ["offline", "smac"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"results.csv", "summary.csv", "compare.png"}


@pytest.mark.slow
def test_forked_methods_start_from_smacs_switch_and_join_its_comparison(tmp_path):
    import torch

    keep = ("--checkpoint.save_top_k", "-1")
    first = run_cli(tmp_path, "compare", *SMOKE_ARGS, *keep, "--seeds", "1", "--methods", "smac", "--out", "cmp")
    assert first.returncode == 0, first.stderr[-3000:]
    refused = run_cli(tmp_path, "compare", *SMOKE_ARGS, "--seeds", "2", "--methods", "oracle", "--fork", "cmp")
    assert refused.returncode == 2 and "no SMAC run of seed 1" in refused.stderr
    out = run_cli(tmp_path, "compare", *SMOKE_ARGS, *keep, "--seeds", "1", "--methods", "oracle", "--fork", "cmp")
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / "cmp/results.csv") as f:
        rows = list(csv.DictReader(f))
    # SMAC evaluated at the switch (40) and the end (80); the Oracle, started from SMAC's switch, at the end only
    assert [(r["method"], r["updates"]) for r in rows] == [("smac", "40"), ("smac", "80"), ("oracle", "80")]
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smac_lightning")
    assert len(client.search_runs([experiment.experiment_id], "tags.mlflow.runName LIKE 'compare%'")) == 1  # one parent
    forked = torch.load(tmp_path / "cmp/forks/oracle-seed0.ckpt", weights_only=False)
    assert forked["smac"]["updates"] == 40 and forked["hyper_parameters"]["self_supervised"]["rewards"] == "true"
    (smac_run,) = [c for c in client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'smac seed 0'")]
    (switch,) = (tmp_path / "runs" / experiment.experiment_id / smac_run.info.run_id / "checkpoints").glob("*step=40.ckpt")
    switch = torch.load(switch, weights_only=False)
    for key, value in switch["state_dict"].items():  # the very state SMAC switched from
        assert torch.equal(forked["state_dict"][key], value), key

    def generated(run):  # the flags of the online rows a run's last checkpoint holds (a filled prefix of each ring)
        (last,) = (tmp_path / "runs" / experiment.experiment_id / run.info.run_id / "checkpoints").glob("last.ckpt")
        rl = torch.load(last, weights_only=False)["OfflineMetaDataModule"]["rl"]
        flags = rl["online"]["generated"].squeeze(-1)
        return flags[torch.arange(flags.shape[1]) < rl["written"].clamp(max=flags.shape[1]).view(-1, 1)]

    (oracle_run,) = client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'oracle seed 0 (forked)'")
    assert generated(smac_run).all() and not generated(oracle_run).any()  # the decoder's labels, then the env's rewards
    assert generated(oracle_run).numel() == generated(smac_run).numel() > 0
