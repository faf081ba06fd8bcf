"""amint.launch: the app's several-GPU path (a torchrun subprocess), run here with two gloo CPU ranks."""

from __future__ import annotations

import dataclasses
import time

from amint import cli
from amint.launch import MergedProgress, parse_progress_line, progress_line, train_argv, train_multiprocess
from amint.train import Progress, TrainConfig
from tests.test_streaming import tiny_folder_config, write_tiny_folder

DEADLINE_S = 240


def test_train_argv_rebuilds_the_config():
    cfg = TrainConfig(dataset="imagefolder:/data/x y", image_size=32, taps=["layer1", "layer2"], target_fpr=None,
                      augment=True, backbone_kwargs={"channels": [8, 16]}, head={"trace": None, "memories": {}},
                      n_members=10, lr=0.0125, out="runs/a")
    args = cli.build_parser().parse_args(["train", *train_argv(cfg)])
    rebuilt = TrainConfig.from_dict({f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    assert rebuilt == cfg


def test_progress_lines_round_trip():
    p = Progress("step", "joint", 1, 2, 3, 4, {"task_loss": 0.5}, "m")
    assert parse_progress_line(progress_line(1, p)) == (1, p)
    assert parse_progress_line("some other output") is None


def test_merged_progress_follows_the_slowest_rank_and_rank0_reports():
    seen: list[Progress] = []
    merged = MergedProgress(2, seen.append)
    merged(1, Progress("phase", "joint", 0, 2, message="joint training"))  # a duplicate of rank 0's: dropped
    merged(0, Progress("phase", "joint", 0, 2, message="joint training"))
    merged(0, Progress("step", "joint", 1, 2, 5, 10, {"task_loss": 1.0}))
    merged(1, Progress("step", "joint", 1, 2, 3, 10, {"task_loss": 9.0}))
    assert [p.kind for p in seen] == ["phase", "step", "step"]
    last = seen[-1]
    assert (last.step, last.metrics) == (3, {"task_loss": 1.0})  # the slowest step, rank 0's global losses
    assert last.message == "rank 0 5/10, rank 1 3/10"


def test_two_processes_through_torchrun_save_one_pair(tmp_path):
    out = tmp_path / "pair"
    cfg = tiny_folder_config(write_tiny_folder(tmp_path), epochs=1, head_epochs=0, out=str(out))
    events: list[Progress] = []
    deadline = time.monotonic() + DEADLINE_S
    pair = train_multiprocess(cfg, 2, events.append, should_stop=lambda: time.monotonic() > deadline)
    assert pair.config.training["world_size"] == 2 and pair.config.training["global_batch_size"] == 16
    steps = [e for e in events if e.kind == "step" and e.phase == "joint"]
    assert steps and "rank 0" in steps[-1].message and "rank 1" in steps[-1].message
    assert [e.kind for e in events].count("epoch") == 1 and events[-1].kind == "done"
