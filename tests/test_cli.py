"""amint.cli: the commands end to end, their help, exit codes and one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amint import cli, data, train
from amint.pair import AuditedPair
from amint.robustness import evaluate_split
from amint.train import TrainConfig
from tests.hubserver import fake_hub  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"mint_accuracy", "auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "n_members", "n_nonmembers"}


def _png(tmp_path: Path, name: str, array: np.ndarray) -> Path:
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return path


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "error" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def test_verify_subprocess_json_and_bad_file(tiny_pair, synthetic, tmp_path):
    pair, folder = tiny_pair
    good = _png(tmp_path, "test0.png", synthetic.test_images[0, 0].numpy())
    bad = tmp_path / "photo.txt"
    bad.write_text("not an image")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run([sys.executable, "-m", "amint", "verify", str(folder), str(good), str(bad), "--json"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    [result] = json.loads(run.stdout)
    assert result["file"] == str(good) and isinstance(result["is_member"], bool)
    assert result["threshold"] == pair.config.threshold
    line = _one_error_line(run.stderr)
    assert line.startswith(f"amint: error: {bad} is not a readable image (")


def test_verify_plain_words_and_ok_exit(tiny_pair, synthetic, tmp_path, capsys):
    _, folder = tiny_pair
    good = _png(tmp_path, "a.png", synthetic.test_images[0, 0].numpy())
    assert cli.main(["verify", str(folder), str(good), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{good}: ") and ("Member" in out or "Not a member" in out)


@pytest.mark.parametrize("command", ["train", "evaluate", "calibrate", "verify", "push", "bench"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: amint {command}" in out and "examples:" in out and f"amint {command} " in out


def test_train_flags_map_one_to_one_onto_train_config():
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--out", "o", "--backbone-kwargs", '{"channels": [8, 16]}', "--taps",
                              "layer1, layer2", "--n-members", "10", "--target-fpr", "none", "--augment",
                              "--lr", "0.1", "--data-root", "null"])
    cfg = TrainConfig.from_dict({f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    assert cfg.backbone_kwargs == {"channels": [8, 16]} and cfg.taps == ["layer1", "layer2"]
    assert (cfg.n_members, cfg.target_fpr, cfg.augment, cfg.lr, cfg.data_root) == (10, None, True, 0.1, None)
    assert cfg.out == "o"
    defaults = parser.parse_args(["train", "--out", "o"])
    assert {f.name: getattr(defaults, f.name) for f in dataclasses.fields(TrainConfig)} == {
        **dataclasses.asdict(TrainConfig()), "out": "o"}
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--out", "o", "--backbone-kwargs", "[1, 2]"])  # not a JSON object
    with pytest.raises(SystemExit):
        parser.parse_args(["train"])  # --out is required


def test_train_command_end_to_end(synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "load_benchmark", lambda name, root=None: synthetic)
    args = ["train", "--out", str(tmp_path / "run"), "--dataset", "synthetic", "--backbone-kwargs",
            '{"channels": [8, 16, 16, 16]}', "--setup", "entry", "--head",
            '{"trace": {"width": 8, "hidden": 16}, "memories": {"exact": {"dims": 16, "tables": 4, "bits": 12, '
            '"buckets_log2": 10}}}', "--memory-views", "1",
            "--n-members", "100", "--n-external", "100", "--n-calibration", "50", "--epochs", "1",
            "--batch-size", "50", "--monitor-samples", "50", "--device", "cpu"]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert METRIC_KEYS <= json.loads(captured.out).keys()
    assert "joint epoch 1/1:" in captured.err and "cal_trace_auc" in captured.err
    loaded = AuditedPair.from_pretrained(tmp_path / "run")
    assert loaded.config.training["config"]["n_members"] == 100 and loaded.config.head["trace"]["width"] == 8
    assert list(loaded.config.head["memories"]) == ["exact"] and loaded.config.head["memories"]["exact"]["tables"] == 4


def test_evaluate_split_metrics(tiny_pair, synthetic):
    pair, _ = tiny_pair
    result = evaluate_split(pair, synthetic)
    assert METRIC_KEYS | {"task_accuracy", "mint_accuracy_at_0_5", "baselines"} <= result.keys()
    assert "roc" not in result and "roc" in evaluate_split(pair, synthetic, roc=True)
    assert result["baselines"] and all(METRIC_KEYS <= b.keys() for b in result["baselines"].values())
    assert result["auc"] == pytest.approx(pair.config.metrics["auc"], abs=1e-3)  # stored from channels_last weights
    smaller = data.Benchmark("synthetic", synthetic.train_images[:500], synthetic.train_labels[:500],
                             synthetic.test_images, synthetic.test_labels, synthetic.class_names,
                             synthetic.mean, synthetic.std)
    with pytest.raises(ValueError, match="wrong dataset or data root"):
        evaluate_split(pair, smaller)


def test_evaluate_command_json_and_table(tiny_pair, synthetic, monkeypatch, capsys):
    _, folder = tiny_pair
    monkeypatch.setattr(data, "load_benchmark", lambda name, root=None, image_size=None: synthetic)
    assert cli.main(["evaluate", str(folder), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert METRIC_KEYS <= result.keys() and "roc" not in result
    # The stated bound printed beside the rate measured on the test split.
    keys = list(result)
    assert keys.index("threshold_fpr") == keys.index("fpr_at_threshold") + 1
    assert result["threshold_fpr"] == AuditedPair.from_pretrained(folder).config.threshold_fpr
    assert cli.main(["evaluate", str(folder), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "aMINT verdict (trace head)" in table and "loss attack" in table and "task accuracy" in table
    assert f"stated bound {result['threshold_fpr']:.4f}" in table


def test_unknown_benchmark_is_a_one_line_error(tiny_pair, capsys):
    _, folder = tiny_pair  # its dataset "synthetic" is not in the registry
    assert cli.main(["evaluate", str(folder), "--device", "cpu"]) == 1
    assert _one_error_line(capsys.readouterr().err).startswith("amint: error: unknown benchmark 'synthetic'")


def test_missing_pair_and_unknown_repo_are_one_line_errors(fake_hub, tmp_path, capsys):  # noqa: F811
    image = _png(tmp_path, "x.png", np.zeros((16, 16), np.uint8))
    assert cli.main(["verify", str(tmp_path / "nowhere"), str(image)]) == 1
    assert "nowhere" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["verify", "acme/no-such-pair", str(image)]) == 1
    assert "acme/no-such-pair" in _one_error_line(capsys.readouterr().err)


def test_push_command(fake_hub, tiny_pair, synthetic, capsys):  # noqa: F811
    pair, folder = tiny_pair
    assert cli.main(["push", str(folder), "acme/cli-pushed"]) == 0
    assert "acme/cli-pushed" in capsys.readouterr().out
    pushed = AuditedPair.from_pretrained("acme/cli-pushed")
    assert pushed.config.to_dict() == pair.config.to_dict()


def test_bench_command(tiny_pair, capsys):
    _, folder = tiny_pair
    assert cli.main(["bench", str(folder), "--n", "4", "--batch-size", "2", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 4 and report["machine"]["device"] == "cpu"
    for key in ("single_verify_ms", "single_verify_with_explain_ms"):
        assert report[key]["median"] > 0
    assert report["batch"]["images_per_second"] > 0
