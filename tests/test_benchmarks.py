"""Seconds-long smoke versions of the benchmark scripts (benchmarks/), on the synthetic benchmark."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import inference_bench  # noqa: E402
import paper_ablations  # noqa: E402
import paper_grid  # noqa: E402
import profile_train  # noqa: E402
import published_loop  # noqa: E402
import reconstruction_attack  # noqa: E402

from amint.edits import edit_images  # noqa: E402
from amint.splits import make_split  # noqa: E402
from amint.train import TrainConfig, build_pair  # noqa: E402
from tests.conftest import TINY_BACKBONE, TINY_TRACE  # noqa: E402

TINY = ["--dataset", "synthetic", "--calibration", "40", "--epochs", "1"]


@pytest.fixture(scope="module")
def grid(synthetic, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    train = json.dumps({"backbone_kwargs": TINY_BACKBONE["backbone_kwargs"], "monitor_samples": 40,
                        "head": {"trace": TINY_TRACE, "memories": {}}})
    argv = [*TINY, "--backbones", "resnet18", "--setups", "entry,output", "--members", "100", "--external", "120",
            "--head-epochs", "1", "--test-subset", "150", "--train", train, "--runs", str(tmp / "runs"), "--results", str(tmp / "grid.json")]
    return argv, paper_grid.main(argv, bench=synthetic), tmp


def test_grid_trains_active_and_passive_on_one_split_and_budget(grid):
    _, results, tmp = grid
    assert [(c["backbone"], c["setup"]) for c in results["cells"]] == [("resnet18", "entry"), ("resnet18", "output")]
    for cell in results["cells"]:
        active, passive = cell["active"]["config"], cell["passive"]["config"]
        assert (active["mode"], passive["mode"]) == ("active", "passive")
        same = ("n_members", "n_external", "n_calibration", "seed", "backbone_kwargs", "setup", "head", "batch_size")
        assert all(active[k] == passive[k] for k in same)
        assert active["head"]["memories"] == {}  # the paper's head alone
        # Passive: a task-only backbone shared by the setups, then the head for as many epochs as active's saw.
        assert passive["epochs"] == 0 and passive["init_from"].endswith("resnet18/passive-backbone")
        assert passive["head_epochs"] == active["epochs"] + active["head_epochs"]
        for run in (cell["active"], cell["passive"]):
            assert {"mint_accuracy", "auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "task_accuracy"} <= run["metrics"].keys()
            assert set(run["metrics"]["baselines"]) == {"loss_attack", "confidence_attack", "entropy_attack"}
    assert cell_taps(results, "entry") != cell_taps(results, "output")
    assert json.loads((tmp / "grid.json").read_text())["cells"] == results["cells"]
    assert results["test_subset"] == 150
    table = paper_grid.markdown(results)
    assert table.count("\n") == 3 and "0.51-0.66" in table  # header, rule, two rows; the paper beside


def test_test_subset_keeps_the_first_test_images(synthetic):
    small = paper_grid.with_test_subset(synthetic, 50)
    assert torch.equal(small.test_images, synthetic.test_images[:50]) and len(small.test_labels) == 50
    assert small.train_images is synthetic.train_images and paper_grid.with_test_subset(synthetic, 0) is synthetic


def cell_taps(results: dict, setup: str) -> list[str]:
    return next(c for c in results["cells"] if c["setup"] == setup)["active"]["taps"]


def test_grid_rerun_skips_finished_runs(grid, synthetic, monkeypatch):
    argv, results, _ = grid

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(paper_grid, "train_pair", no_training)
    assert paper_grid.main(argv, bench=synthetic)["cells"] == results["cells"]
    # --only-finished collects what is done and trains nothing: a setup never run is left out.
    collected = paper_grid.main([*argv, "--setups", "entry,middle", "--only-finished"], bench=synthetic)
    assert [c["setup"] for c in collected["cells"]] == ["entry"]


def test_published_loop_runs_separate_member_and_external_passes_of_64(synthetic):
    cfg = TrainConfig(dataset="synthetic", **TINY_BACKBONE, setup="entry", head={"trace": TINY_TRACE, "memories": {}},
                      n_members=100, n_external=100, n_calibration=40)
    split = make_split(len(synthetic.train_images), len(synthetic.test_images), 100, 100, 40)
    pair = build_pair(cfg, synthetic, split)
    batches: list[int] = []
    pair.backbone.conv1.register_forward_pre_hook(lambda m, inp: batches.append(len(inp[0])))
    before = [p.detach().clone() for p in pair.parameters()]
    wall, cpu = published_loop.published_epochs(pair, synthetic, split, epochs=1, seed=0)
    assert wall > 0 and cpu > 0
    assert batches == [64, 64, 36, 36]  # member batch, external batch, each its own forward pass
    assert any(not torch.equal(a, b) for a, b in zip(before, pair.parameters()))


def test_published_loop_reports_both_loops_and_their_ratio(synthetic, tmp_path):
    out = tmp_path / "speed.json"
    result = published_loop.main([*TINY, "--members", "64", "--repeats", "1", "--out", str(out)], bench=synthetic)
    assert json.loads(out.read_text()) == result
    for loop in ("ours", "published"):
        run = result[loop][0]
        assert run["images_per_second"] > 0 and 0 <= run["task_accuracy"] <= 1 and 0 <= run["trace_auc"] <= 1
        assert run["images_per_cpu_second"] > 0
    ours, theirs = result["ours"][0], result["published"][0]
    assert result["ratio_images_per_second"] == pytest.approx(ours["images_per_second"] / theirs["images_per_second"],
                                                              rel=0.02)
    assert ours["finished_pair_seconds"] >= ours["train_seconds"]


def test_profile_buckets_the_loop(synthetic):
    assert profile_train.bucket("aten::convolution_backward") == "arithmetic"
    assert profile_train.bucket("aten::index") == "data movement"
    result = profile_train.main(["--dataset", "synthetic", "--members", "64", "--calibration", "16",
                                 "--batch-size", "32"], bench=synthetic)
    assert result["steps"] == 2
    assert sum(result["share_of_wall"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["share_of_wall"]["arithmetic"] > 0 and result["top_ops"]


def test_inference_bench_reports_latency_throughput_and_memory(tiny_pair, tmp_path):
    _, folder = tiny_pair
    result = inference_bench.main([str(folder), "--n", "4", "--n-explain", "2", "--batch-n", "10", "--batch-size", "4",
                                   "--random-images", "--out", str(tmp_path / "inf.json")])
    for key in ("verdict_ms", "verdict_with_maps_ms", "verdict_maps_saliency_ms"):
        assert 0 < result[key]["p50"] <= result[key]["p95"] and 0 < result[key]["cpu_p50"] <= result[key]["cpu_p95"]
    assert result["verdict_ms"]["n"] == 4 and result["verdict_maps_saliency_ms"]["n"] == 2
    assert result["batch"]["images"] == 10 and result["batch"]["images_per_second"] > 0
    rss = result["rss_mb"]
    assert rss["peak"] >= max(rss["after_imports"], rss["pair_loaded"], rss["after_batch"]) > 0


def test_ablations_change_one_thing_against_the_base(synthetic, tmp_path):
    argv = [*TINY, "--only", "base,passive,loss_fixed", "--members", "100", "--runs", str(tmp_path / "runs"),
            "--results", str(tmp_path / "abl.json")]
    results = paper_ablations.main(argv, bench=synthetic)
    base, passive, fixed = (results["runs"][k]["config"] for k in ("base", "passive", "loss_fixed"))
    assert (base["mode"], base["loss_norm"], fixed["loss_norm"]) == ("active", "initial", "fixed")
    changed = {k for k in base if base[k] != fixed[k]}
    assert changed == {"loss_norm"}
    assert passive["mode"] == "passive" and passive["head_epochs"] == base["epochs"] + base["head_epochs"]
    assert "| loss_fixed |" in paper_ablations.markdown(results)


def test_trace_controls_writes_every_reading_the_issue_names(synthetic, tmp_path):
    import trace_controls

    argv = ["--members", "100", "--epochs", "2", "--max-scored", "150", "--keep-every", "1", "--edits-n", "30",
            "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "controls.json"), "--device", "cpu"]
    result = trace_controls.main(argv, bench=synthetic)
    written = json.loads((tmp_path / "controls.json").read_text())
    for reading in (written["active"], written["passive"], written["untrained"], *written["fresh_head"].values()):
        assert {"mint_accuracy", "auc", "tpr_at_1pct_fpr", "task_accuracy"} <= set(reading)
        assert 0 <= reading["auc"] <= 1
    assert set(written["fresh_head"]) == {"active", "passive"}
    assert set(written["active_edited"]) == {"jpeg75", "resize224", "screenshot"}
    assert set(written["pixel_reference"]) == {"jpeg75", "resize224", "screenshot"}
    assert written["pixel_reference"]["jpeg75"]["auc"] > 0.9  # a JPEG of a member stays next to it in pixels
    assert written["settings"]["control_head_epochs"] == 2  # joint epochs + head epochs (the recipe has none)
    assert written["settings"]["cooldown_epochs"] == 0  # the schedule is part of what a record says it ran
    # The backbones were trained with checkpoints whose kept epochs are the epochs axis.
    assert (tmp_path / "runs" / "trace-100-2" / "active" / "checkpoint" / "joint-epoch-002.safetensors").exists()
    assert (tmp_path / "runs" / "trace-100-2" / "passive" / "checkpoint" / "task-epoch-001.safetensors").exists()
    # The epochs axis read back from the checkpoint, as for a run still going.
    import checkpoint_curve

    curve = checkpoint_curve.read_curve(tmp_path / "runs" / "trace-100-2" / "active" / "checkpoint")
    assert [r["epoch"] for r in curve["history"]] == [1, 2] and curve["settings"]["n_members"] == 100
    assert "| joint 2 |" in checkpoint_curve.table(curve)
    # Without the active pair (another session), the controls part rebuilds the split the active run had.
    from amint.pair import AuditedPair
    from amint.splits import MembershipSplit

    active = AuditedPair.from_pretrained(tmp_path / "runs" / "trace-100-2" / "active" / "pair")
    split, head, epochs = trace_controls.recipe_run(trace_controls.parse_args(argv), synthetic)
    assert torch.equal(split.members, MembershipSplit.from_config(active.config.split).members)
    assert (head, epochs) == trace_controls.pair_run(active)[1:]
    # A controls run killed after the passive readings resumes at the untrained head, keeping what it had.
    partial = {"passive": {**written["passive"], "auc": 0.123}, "fresh_head": {"passive": written["fresh_head"]["passive"]}}
    (tmp_path / "controls.json").write_text(json.dumps(partial))
    resumed = trace_controls.main([*argv, "--part", "controls"], bench=synthetic)
    assert resumed["passive"]["auc"] == 0.123 and "untrained" in resumed


def test_a_lever_changes_one_setting_of_the_recipe_and_names_its_run(synthetic, tmp_path):
    import trace_controls
    import trace_recipe

    base = trace_recipe.settings("trace", 5000)
    for lever, change in trace_recipe.LEVERS.items():
        changed = trace_recipe.settings("trace", 5000, [lever])
        assert {k for k in base.keys() | changed.keys() if base.get(k) != changed.get(k)} == set(change)
    with pytest.raises(ValueError, match="unknown lever"):
        trace_recipe.settings("trace", 5000, ["views", "nope"])
    argv = ["--members", "100", "--epochs", "1", "--max-scored", "100", "--edits", "", "--part", "active",
            "--levers", "views", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "r.json"),
            "--device", "cpu"]
    result = trace_controls.main(argv, bench=synthetic)
    assert result["settings"]["levers"] == ["views"]
    assert [row[0] for row in result["active_curve"]] == [1] and 0 <= result["active_curve"][0][1] <= 1
    pair_config = json.loads((tmp_path / "runs" / "trace+views-100-1" / "active" / "pair" / "config.json").read_text())
    assert pair_config["training"]["config"]["edit_views"] == 4
    # The run folder's name does not carry the cool-down: a run asking another one is refused, not handed this pair.
    with pytest.raises(ValueError, match="trained with a 0-epoch cool-down, this run asks --cooldown 1"):
        trace_controls.main([*argv, "--cooldown", "1"], bench=synthetic)
    # The controls part, run later into the same record, keeps the active part and each part's command.
    trace_controls.main([*argv[:argv.index("--part")], "--part", "controls", *argv[argv.index("--part") + 2:]],
                        bench=synthetic)
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["active"] == json.loads(json.dumps(result["active"])) and "passive" in written
    assert {k: v["command"].split("--part ")[1].split()[0] for k, v in written["commands"].items()} == {
        "active": "active", "controls": "controls"}
    # A run continued from that pair starts from its backbone and trace head, runs in a folder of its own, and its
    # control heads train for all the epochs its model had (1 there + 1 here), not only this run's.
    source = tmp_path / "runs" / "trace+views-100-1" / "active" / "pair"
    continued = trace_controls.main([*argv[:argv.index("--results")], "--results", str(tmp_path / "c.json"),
                                     "--device", "cpu", "--init-from", str(source)], bench=synthetic)
    assert continued["settings"]["control_head_epochs"] == 2 and continued["settings"]["init_from"] == "pair"
    pair_config = json.loads((tmp_path / "runs" / "trace+views+from-pair-100-1" / "active" / "pair" /
                              "config.json").read_text())
    assert pair_config["training"]["init_from"]["trace_head"] is True


def test_new_head_probe_reads_a_new_head_beside_the_pairs_own_on_the_same_split(tiny_pair, synthetic, tmp_path):
    import new_head_probe

    _, folder = tiny_pair
    out = tmp_path / "probe.json"
    result = new_head_probe.main([str(folder), "--edits", "jpeg75", "--edits-n", "50", "--max-scored", "100",
                                  "--out", str(out)], bench=synthetic)
    assert json.loads(out.read_text()) == result
    assert result["new_head"]["head_epochs"] == 20  # the pair's own joint epochs, as a control head gets
    # The tiny pair memorised its members: its own head finds them, and so does a head trained on its frozen maps.
    assert result["own_head"]["auc"] > 0.8 and result["new_head"]["auc"] > 0.6
    assert set(result["own_head"]["edited"]) == set(result["new_head"]["edited"]) == {"jpeg75"}
    assert result["own_head"]["task_accuracy"] == result["new_head"]["task_accuracy"]  # one backbone, read twice
    # The edits are made and mapped once for both heads: the own head reads them as trace_alone_edited does alone.
    from amint.probe import trace_alone_edited
    from amint.splits import MembershipSplit

    pair, _ = tiny_pair
    alone = trace_alone_edited(pair, synthetic, MembershipSplit.from_config(pair.config.split), ["jpeg75"], max_scored=50)
    assert result["own_head"]["edited"]["jpeg75"] == new_head_probe._pick(alone["jpeg75"])


def test_reconstruction_attack_reports_oracle_attack_and_baselines(tiny_memory_pair, synthetic, tmp_path):
    pair, folder = tiny_memory_pair
    out = tmp_path / "attack.json"
    result = reconstruction_attack.main([str(folder), "--smoke", "--out", str(out)], bench=synthetic)
    assert json.loads(out.read_text()) == result
    exact = result["oracle"]["memories"]["exact"]
    # Every member hits all its member tables, every external all its external tables: the oracle.
    assert exact["members_tables"]["members"]["share_hitting_all"] == 1.0
    assert exact["externals_tables"]["externals"]["share_hitting_all"] == 1.0
    assert sum(exact["members_tables"]["test"]["histogram"]) == exact["members_tables"]["test"]["n"] == 100
    a = result["attack"]
    assert len(a["per_seed"]) == 2 and all(0 < r["lookups"] <= 400 for r in a["per_seed"])
    assert all(r["recovered_hits"] >= r["start_hits"] for r in a["per_seed"])
    assert 0 <= a["success_rate"] <= 1 and a["lookups_total"] == sum(r["lookups"] for r in a["per_seed"])
    # Which reading a forged image fools is said per reading (the search climbs tables only the fingerprint reads).
    for flags in (a["pair_flags_start"], a["pair_flags_recovered"]):
        assert set(flags) == set(pair.readings) and all(0 <= n <= 2 for n in flags.values())
    for key in ("best_ssim_recovered", "best_ssim_start", "ceiling_ssim", "pooled_members_ssim"):
        assert -1 <= a[key]["min"] <= a[key]["median"] <= a[key]["max"] <= 1
    assert result["command"].startswith("python benchmarks/reconstruction_attack.py") and result["date"]


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=g)
    assert torch.allclose(reconstruction_attack.ssim(x, x), torch.ones(4, dtype=torch.float64))
    noisy = (x + 0.2 * torch.randn(4, 1, 28, 28, generator=g)).clamp(0, 1)
    assert bool((reconstruction_attack.ssim(x, noisy) < 0.9).all())
    best, which = reconstruction_attack.nearest_member_ssim(noisy[:2], torch.cat([x, noisy[2:]]), top=3)
    assert which.tolist() == [0, 1] and bool((best < 1).all())


def test_the_default_pair_recipe_builds_on_the_trace_run_without_training(tiny_pair, synthetic, tmp_path):
    """`train_default_pair.py --recipe trace` keeps a trace run's model as is: the run's own split, architecture, taps
    and trace head (whatever levers it used), no epoch of its own, both readings' evidence added. A tap or width
    taken from anywhere else would start the trace head fresh and leave it untrained."""
    import train_default_pair

    from amint.pair import AuditedPair
    from amint.train import train_pair
    from tests.conftest import TINY_MEMORIES

    source, folder = tiny_pair
    ran = source.config.training["config"]
    settings = train_default_pair.trace_recipe(str(folder))
    same = ("dataset", "seed", "n_members", "n_external", "n_calibration", "backbone", "backbone_kwargs",
            "stem_stride", "setup", "taps", "batch_size")
    assert {k: settings[k] for k in same} == {k: ran[k] for k in same}
    assert settings["head"]["trace"] == ran["head"]["trace"] and set(settings["head"]["memories"]) == {"exact", "aligned"}
    assert (settings["epochs"], settings["head_epochs"], settings["edit_views"], settings["init_from"]) == (0, 0, 0, str(folder))
    assert settings["target_fpr"] == 0.01 and settings["memory_views"] == 2

    small = settings | {"head": {"trace": settings["head"]["trace"], "memories": TINY_MEMORIES}, "device": "cpu"}
    built = train_pair(TrainConfig(**small, out=str(tmp_path / "built")), bench=synthetic)
    assert built.config.training["init_from"]["trace_head"] is True
    for name, tensor in source.backbone.state_dict().items():
        assert torch.equal(tensor, built.backbone.state_dict()[name]), name
    for name, tensor in source.head.trace.state_dict().items():
        assert torch.equal(tensor, built.head.trace.state_dict()[name]), name
    assert set(AuditedPair.from_pretrained(tmp_path / "built").head.memories) == {"exact", "aligned"}


def test_the_default_pair_recipe_refuses_what_is_not_a_trace_runs_pair(tiny_pair, tmp_path):
    import train_default_pair

    with pytest.raises(SystemExit, match="no config.json"):
        train_default_pair.trace_recipe(str(tmp_path))  # e.g. a run's checkpoint folder instead of its pair
    config = json.loads((tiny_pair[1] / "config.json").read_text())
    config["training"] = {}  # a pair that does not say how it was trained
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="not a trace run's pair"):
        train_default_pair.trace_recipe(str(tmp_path))


def test_the_trace_card_notes_carry_the_records_own_numbers():
    import train_default_pair

    m = lambda acc, auc, task=None: {"mint_accuracy": acc, "auc": auc, "tpr_at_1pct_fpr": 0.1,  # noqa: E731
                                     "task_accuracy": task}
    record = {"settings": {"members": 25000, "joint_epochs": 36, "control_head_epochs": 36, "scored": 10000},
              "active": m(0.88, 0.931, 0.861), "passive": m(0.87, 0.902, 0.889), "untrained": m(0.59, 0.62, 0.1),
              "fresh_head": {"active": m(0.86, 0.917), "passive": m(0.55, 0.574)},
              "active_edited": {"jpeg75": m(0.82, 0.895)}}
    notes = train_default_pair.trace_notes(record)
    assert "| active: its own trace head | 0.880 | 0.931 | 0.100 | 0.861 |" in notes
    assert "at AUC 0.917" in notes and "backbone at 0.574" in notes and "0.861 against the passive model's 0.889" in notes
    assert "trace alone on jpeg75 | 0.820 | 0.895" in notes and "| 0.88 | not reported" in notes  # the paper's row
    # How the model was made, as a reader would rerun it (no local folders), and how its readings were fitted.
    record["commands"] = {"active": {"command": "python benchmarks/trace_controls.py --part active --members 25000 "
                                                "--threads 1 --runs /work/runs/x --results /tmp/r.json --levers mint03"}}
    again = {"command": "python -m amint calibrate P --target-fpr amint=0.01,fingerprint=0.003",
             "targets": {"amint": 0.01, "fingerprint": 0.003}}
    notes = train_default_pair.trace_notes(record, again)
    assert "trained jointly by `python benchmarks/trace_controls.py --part active --members 25000 --levers mint03`" in notes
    assert "/work/runs" not in notes and "--threads" not in notes
    assert "threshold at a 1.0% false-positive rate" in notes and "the fingerprint's at 0.3%" in notes
    summary = train_default_pair.trace_controls_summary(record, ROOT / "benchmarks" / "results" / "x.json")
    assert summary["record"] == "benchmarks/results/x.json"
    assert summary["fresh_head"]["active"]["auc"] == 0.917 and summary["passive"]["task_accuracy"] == 0.889
    assert "at least as audited" not in notes  # the passive head reads below this pair's own
    record["passive"] = m(0.915, 0.933, 0.912)  # the paper's protocol ranks the passive model's head first: said
    assert "AUC 0.933, against 0.931 for this pair's own head" in train_default_pair.trace_notes(record)


def test_a_trace_card_without_its_own_controls_says_whose_controls_it_quotes():
    import train_default_pair

    m = lambda acc, auc, task=None: {"mint_accuracy": acc, "auc": auc, "tpr_at_1pct_fpr": 0.1,  # noqa: E731
                                     "task_accuracy": task}
    settings = {"members": 25000, "control_head_epochs": 100, "scored": 10000, "levers": ["views", "batch64"]}
    record = {"settings": {**settings, "joint_epochs": 100}, "active": m(0.88, 0.94, 0.90),
              "fresh_head": {"active": m(0.8, 0.87)}}  # --part active only: no passive, untrained, passive probe
    earlier = {"settings": {**settings, "joint_epochs": 58, "levers": ["views"]}, "active": m(0.82, 0.89, 0.894),
               "passive": m(0.896, 0.920, 0.908), "untrained": m(0.70, 0.765, 0.1),
               "fresh_head": {"active": m(0.75, 0.832), "passive": m(0.5, 0.505)}}
    notes = train_default_pair.trace_notes(record, None, earlier, ROOT / "benchmarks" / "results" / "e.json")
    assert "| passive: a head on the frozen task-only backbone | not run |" in notes
    assert "This model's own controls (passive, untrained, the passive probe) are not run yet" in notes
    assert "(views, 25,000 members, 58 joint epochs) (`benchmarks/results/e.json`)" in notes and "at AUC 0.505" in notes
    assert "no head saw at AUC 0.870" in notes and "0.900; that recipe's passive model's 0.908" in notes
    summary = train_default_pair.trace_controls_summary(record, ROOT / "r.json", earlier,
                                                        ROOT / "benchmarks" / "results" / "e.json")
    assert summary["active"]["auc"] == 0.94 and summary["fresh_head"]["active"]["auc"] == 0.87  # its own
    assert summary["fresh_head"]["passive"]["auc"] == 0.505 and summary["passive"]["task_accuracy"] == 0.908
    assert summary["controls_from"] == {"record": "benchmarks/results/e.json", "joint_epochs": 58, "levers": ["views"]}
    # A record with its own controls keeps them, whatever earlier record is offered.
    record.update(passive=m(0.9, 0.93, 0.91), untrained=m(0.7, 0.77, 0.1))
    record["fresh_head"]["passive"] = m(0.5, 0.506)
    summary = train_default_pair.trace_controls_summary(record, ROOT / "r.json", earlier)
    assert "controls_from" not in summary and summary["fresh_head"]["passive"]["auc"] == 0.506


def test_a_reused_passive_backbone_is_read_at_the_levers_taps(synthetic, tmp_path, monkeypatch):
    """--passive reuses a task-only backbone across tap levers: its controls must read the lever's taps, not the taps
    of the run that trained it (a taps23 run once got the output-taps passive control, numbers bit-identical)."""
    import trace_controls

    common = ["--members", "100", "--epochs", "1", "--max-scored", "100", "--edits", "", "--part", "controls",
              "--runs", str(tmp_path / "runs"), "--device", "cpu"]
    trace_controls.main([*common, "--results", str(tmp_path / "plain.json")], bench=synthetic)
    passive = tmp_path / "runs" / "trace-100-1" / "passive" / "pair"
    read: list[list[str]] = []
    real = trace_controls.MapCache
    monkeypatch.setattr(trace_controls, "MapCache", lambda pair, bench: read.append(list(pair.config.taps)) or
                        real(pair, bench))
    trace_controls.main([*common, "--levers", "taps23", "--passive", str(passive),
                         "--results", str(tmp_path / "taps23.json")], bench=synthetic)
    assert read == [["layer2", "layer3"]] * 2  # the reused passive backbone, then the untrained one


def test_reading_probes_read_one_plain_trace_and_move_images_by_whole_pixels(tiny_pair, synthetic, tmp_path):
    import reading_probes

    _, folder = tiny_pair
    x, spec = synthetic.train_images[:5], tiny_pair[0].config
    assert torch.equal(reading_probes.moved(x, 0, 0, spec), x)
    # A 1-pixel move right and down keeps the image one pixel over; moving back restores all but the lost edge.
    once = reading_probes.moved(x, 1, 1, spec)
    assert torch.equal(once[..., 1:, 1:], x[..., :-1, :-1])
    assert torch.equal(reading_probes.moved(once, -1, -1, spec)[..., :-1, :-1], x[..., :-1, :-1])
    # The uncovered strip is what the edit suite's shift puts there, so the probe reads the moves users make.
    assert torch.equal(once, edit_images(x, "shift1", spec))
    out = tmp_path / "probes.json"
    record = reading_probes.main([str(folder), "--n", "40", "--edits", "exact,jpeg75", "--out", str(out)],
                                 bench=synthetic)
    readings = json.loads(out.read_text())[folder.name]["readings"]
    assert record[folder.name]["readings"] == readings and set(readings) == {"exact", "jpeg75"}
    for edit in readings.values():
        assert edit["views"]["plain"] == edit["moves"]["plain"]  # one reading, two probes
        assert set(edit["views"]) == {"plain", "views2", "views4", "views8"}
        assert set(edit["moves"]) == {"plain", "max", "mean", "logsumexp"}
    assert all(0 <= r["auc"] <= 1 for e in readings.values() for p in e.values() for r in p.values())


def test_set_audits_audit_a_zip_through_the_cli_and_keep_both_answers(tiny_memory_pair, synthetic, tmp_path):
    import zipfile

    import set_audits

    _, folder = tiny_memory_pair
    path = tmp_path / "set.zip"
    set_audits.write_zip(synthetic.train_images[:12], path)
    assert len(zipfile.ZipFile(path).namelist()) == 12
    answer = set_audits.audit(str(folder), path)
    assert set(answer) == {"amint", "fingerprint"}
    assert all(r["n_images"] == 12 and 0 <= r["p_value"] <= 1 for r in answer.values())


def _fake_lever_run(runs: Path, levers: list[str], part: str, aucs: list[float], epochs: int = 33,
                    cooldown: int | None = None) -> None:
    settings = {"recipe": "trace", "levers": levers, "members": 5000, "joint_epochs": epochs}
    if cooldown is not None:  # records before 2026-12-03 do not say their cool-down
        settings["cooldown_epochs"] = cooldown
    reading = {"mint_accuracy": 0.8, "auc": aucs[-1] if aucs else 0.9, "tpr_at_1pct_fpr": 0.1, "task_accuracy": 0.78}
    name = "_".join(levers) or "base"
    name += f"_cool{cooldown}" if cooldown else ""
    d = {"settings": settings, "command": f"python benchmarks/trace_controls.py --part {part} --levers {','.join(levers)}"}
    if part == "active":
        d |= {"active": reading, "fresh_head": {"active": reading}, "active_edited": {}}
        where = runs / f"c{cooldown}" if cooldown is not None else runs  # as trained: a --runs folder each
        pair = where / f"{'+'.join(['trace', *levers])}-5000-{epochs}" / "active" / "pair"
        pair.mkdir(parents=True)
        history = [{"phase": "joint", "epoch": i + 1, "cal_trace_auc": a, "test_accuracy": 0.7, "seconds": 10.0}
                   for i, a in enumerate(aucs)]
        config = {"cooldown_epochs": 6 if cooldown is None else cooldown}
        (pair / "config.json").write_text(json.dumps({"training": {"history": history, "config": config}}))
    else:
        d |= {"passive": reading | {"auc": 0.6}, "untrained": reading | {"auc": 0.55},
              "fresh_head": {"passive": reading | {"auc": 0.51}}}
    (runs / f"{name}{'_controls' if part == 'controls' else ''}.json").write_text(json.dumps(d))


def test_collect_levers_names_each_run_merges_its_controls_and_times_its_trace(tmp_path):
    import collect_levers

    _fake_lever_run(tmp_path, [], "active", [0.6, 0.79, 0.81, 0.9])
    _fake_lever_run(tmp_path, ["members2"], "active", [0.7, 0.85])
    _fake_lever_run(tmp_path, ["members2"], "controls", [])
    _fake_lever_run(tmp_path, ["views"], "active", [0.5, 0.6], epochs=58)
    out = collect_levers.collect(tmp_path)["runs"]
    assert set(out) == {"base", "members2", "views_58"}
    # Same levers and epochs, another cool-down: a run of its own, not a clash with the base.
    _fake_lever_run(tmp_path / "cool", [], "active", [0.6, 0.95], cooldown=16)
    _fake_lever_run(tmp_path / "cool", [], "active", [0.6, 0.91], cooldown=6)
    cool = collect_levers.collect(tmp_path / "cool")["runs"]
    assert set(cool) == {"base", "base_cool16"}
    assert cool["base_cool16"]["curve"][-1][1] == 0.95 and cool["base"]["curve"][-1][1] == 0.91  # each its own run
    assert out["base"]["first_epoch_cal_auc_0_8"] == 3 and out["views_58"]["first_epoch_cal_auc_0_8"] is None
    assert out["base"]["train_wall_seconds"] == 40 and "passive" not in out["base"]
    m = out["members2"]
    assert m["passive"]["auc"] == 0.6 and m["fresh_head"] == {"active": m["active"], "passive": m["passive"] | {"auc": 0.51}}
    assert set(m["command"]) == {"active", "controls"} and "--part controls" in m["command"]["controls"]
    collect_levers.main([str(tmp_path), str(tmp_path / "all.json"), "--plot", "base,members2", "--png",
                         str(tmp_path / "curves.png")])
    assert json.loads((tmp_path / "all.json").read_text())["runs"] == out and (tmp_path / "curves.png").stat().st_size
    assert out["base"]["curve"] == [[1, 0.6, 0.7], [2, 0.79, 0.7], [3, 0.81, 0.7], [4, 0.9, 0.7]]


def test_collect_levers_reads_both_parts_from_one_merged_results_file(tmp_path):
    """trace_controls.py merges --part controls into the --results file its --part active wrote."""
    import collect_levers

    _fake_lever_run(tmp_path, ["ema3"], "active", [0.7, 0.95])
    (tmp_path / "apart").mkdir()
    _fake_lever_run(tmp_path / "apart", ["ema3"], "controls", [])
    active = json.loads((tmp_path / "ema3.json").read_text())
    controls = json.loads((tmp_path / "apart" / "ema3_controls.json").read_text())
    merged = active | {k: controls[k] for k in ("passive", "untrained")} | {
        "fresh_head": active["fresh_head"] | controls["fresh_head"], "command": controls["command"],
        "commands": {"active": {"command": active["command"]}, "controls": {"command": controls["command"]}}}
    (tmp_path / "ema3.json").write_text(json.dumps(merged))
    run = collect_levers.collect(tmp_path)["runs"]["ema3"]
    assert run["active"] == active["active"] and run["passive"]["auc"] == 0.6 and run["untrained"]["auc"] == 0.55
    assert run["fresh_head"]["passive"]["auc"] == 0.51 and run["curve"][-1][1] == 0.95
    assert "--part active" in run["command"]["active"] and "--part controls" in run["command"]["controls"]


def test_collect_levers_keeps_earlier_runs_whose_folders_are_gone(tmp_path):
    import collect_levers

    earlier_runs, new_runs = tmp_path / "earlier", tmp_path / "new"
    _fake_lever_run(earlier_runs, [], "active", [0.6, 0.9])
    _fake_lever_run(earlier_runs, ["members2"], "active", [0.7, 0.85])
    results = tmp_path / "all.json"
    collect_levers.main([str(earlier_runs), str(results)])
    shutil.rmtree(earlier_runs)  # another machine: only the results file is left
    _fake_lever_run(new_runs, [], "active", [0.5, 0.95])
    _fake_lever_run(new_runs, ["batch64"], "active", [0.8, 0.97])
    collect_levers.main([str(new_runs), str(results), "--keep", "--tag", "m2", "--plot", "base,base_m2,members2",
                         "--png", str(tmp_path / "curves.png")])
    out = json.loads(results.read_text())["runs"]
    assert set(out) == {"base", "members2", "base_m2", "batch64_m2"}
    assert out["base"]["active"]["auc"] == 0.9 and out["base_m2"]["active"]["auc"] == 0.95
    # Without --keep the file holds what RUNS holds, nothing else.
    collect_levers.main([str(new_runs), str(results)])
    assert set(json.loads(results.read_text())["runs"]) == {"base", "batch64"}


def test_the_swap_script_refuses_a_missing_pair_or_record_before_touching_anything(tmp_path):
    """swap_default_pair.sh rewrites the default pair and a dozen results: a wrong path must stop it at once."""
    import subprocess

    script = ROOT / "benchmarks" / "swap_default_pair.sh"
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "ACTIVE_PAIR RECORD [EARLIER_RECORD]" in usage.stdout
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "models" / "fashion-mnist-resnet18").iterdir()}
    kept = set((ROOT / "benchmarks" / "results").glob("default_pair_v*_evaluate.json"))
    record = ROOT / "benchmarks" / "results" / "trace_controls_25k_views_mint1_taps23.json"
    for args, missing in (([str(tmp_path / "no-pair"), str(record)], "no-pair/config.json"),
                          ([str(ROOT / "models" / "fashion-mnist-resnet18"), str(tmp_path / "r.json")], "r.json")):
        run = subprocess.run(["bash", str(script), *args], capture_output=True, text=True)
        assert run.returncode == 2 and missing in run.stderr and "nothing was changed" in run.stderr
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "models" / "fashion-mnist-resnet18").iterdir()} == before
    assert set((ROOT / "benchmarks" / "results").glob("default_pair_v*_evaluate.json")) == kept  # no copy made


def test_plot_trace_curves_reads_records_curve_files_and_running_checkpoints(tmp_path):
    import plot_trace_curves

    record = tmp_path / "record.json"
    record.write_text(json.dumps({"active_curve": [[1, 0.5, 0.8], [2, 0.7, 0.85]]}))
    curve = tmp_path / "curve.json"  # checkpoint_curve.py's: history rows, a head phase after the joint epochs
    rows = [{"phase": "joint", "epoch": 1, "cal_trace_auc": 0.6, "test_accuracy": 0.7},
            {"phase": "head", "epoch": 1, "cal_trace_auc": 0.9, "test_accuracy": 0.7}]
    curve.write_text(json.dumps({"history": rows}))
    running = tmp_path / "checkpoint"
    running.mkdir()
    (running / "state.json").write_text(json.dumps({"history": rows[:1]}))
    assert plot_trace_curves.read_rows(record) == [[1, 0.5, 0.8], [2, 0.7, 0.85]]
    assert plot_trace_curves.read_rows(curve) == [[1, 0.6, 0.7]]  # joint epochs only
    assert plot_trace_curves.read_rows(running) == [[1, 0.6, 0.7]]
    empty = tmp_path / "controls_only.json"
    empty.write_text(json.dumps({"passive": {"auc": 0.9}}))
    with pytest.raises(SystemExit, match="no active_curve"):
        plot_trace_curves.read_rows(empty)
    plot_trace_curves.main([f"{record}=a", str(curve), "--png", str(tmp_path / "c.png")])
    assert (tmp_path / "c.png").stat().st_size > 0


def test_weight_average_probe_reads_kept_epochs_and_their_average(synthetic, tmp_path):
    import weight_average_probe
    from amint.probe import trace_alone
    from amint.splits import MembershipSplit
    from amint.train import train_pair
    from tests.conftest import tiny_config

    ckpt, folder = tmp_path / "ckpt", tmp_path / "pair"
    pair = train_pair(tiny_config(epochs=4, checkpoint=str(ckpt), keep_every=2, out=str(folder)), bench=synthetic)
    out = tmp_path / "probe.json"
    result = weight_average_probe.main([str(ckpt), str(folder), "--read", "4", "--read", "2+4", "--bn-samples", "100",
                                        "--max-scored", "100", "--out", str(out)], bench=synthetic)
    assert json.loads(out.read_text()) == result
    # The last kept epoch, read as trained, is the finished pair: the same reading as the pair's own.
    own = trace_alone(pair, synthetic, MembershipSplit.from_config(pair.config.split), max_scored=100)
    assert result["readings"]["4"]["auc"] == pytest.approx(own["auc"], abs=1e-4)
    assert result["readings"]["4"]["batchnorm"] == "as trained"
    assert result["readings"]["2+4"]["batchnorm"] == "re-estimated"
    halves = weight_average_probe.average([{"w": torch.zeros(2), "n": torch.tensor(1)},
                                           {"w": torch.ones(2), "n": torch.tensor(7)}])
    assert halves["w"].tolist() == [0.5, 0.5] and int(halves["n"]) == 7
    with pytest.raises(SystemExit, match="kept epochs 002, 004"):
        weight_average_probe.main([str(ckpt), str(folder), "--read", "3", "--out", str(out)], bench=synthetic)
