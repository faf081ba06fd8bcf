"""Training under torchrun: two gloo processes on the CPU train the pair one process trains.

The ranks are started with torch.multiprocessing (spawn) and the environment torchrun would give them;
each writes what it saw to a JSON file. A free port, a deadline and a kill keep a hang from stalling CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from amint import distributed
from amint.pair import AuditedPair
from amint.train import TrainConfig, train_pair
from tests.conftest import TINY_MEMORIES, TINY_TRACE, synthetic_benchmark, tiny_config

DEADLINE_S = 240
FIRST_STEPS = 3

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _config(**overrides) -> TrainConfig:
    # Both kinds of evidence and the head phase: every part the ranks must agree on is exercised
    # (the augmentation's per-rank draws are checked exactly below; 8 epochs learn the task without it).
    base = dict(head={"trace": TINY_TRACE, "memories": TINY_MEMORIES}, epochs=8, head_epochs=1)
    return tiny_config(**(base | overrides))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].contiguous().numpy().tobytes())
    return h.hexdigest()


def _summary(pair: AuditedPair, losses: list[dict]) -> dict:
    memories = {k: v for k, v in pair.state_dict().items() if k.startswith("head.memories.")}
    # The fingerprint (the memories, identical bits on every rank) and the aMINT verdict (the trace head) apart.
    metrics = {k: pair.config.metrics["fingerprint"][k] for k in ("auc", "mint_accuracy")}
    metrics["task_accuracy"] = pair.config.metrics["task_accuracy"]
    metrics["trace_auc"] = pair.config.metrics["auc"]
    return {"losses": losses, "metrics": metrics,
            "digest": _digest(pair.state_dict()), "memories": _digest(memories),
            "config": json.dumps(pair.config.to_dict(), sort_keys=True)}


def _torchrun_env(rank: int, world: int, port: int) -> None:
    """The variables torchrun sets."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), AMINT_DIST_TIMEOUT_MIN="3")
    torch.set_num_threads(1)


def _rank_main(rank: int, world: int, port: int, folder: str, cfg: dict) -> None:
    """One rank of a training run."""
    _torchrun_env(rank, world, port)
    losses: list[dict] = []
    record = lambda p: losses.append(p.metrics) if p.kind == "step" and p.phase == "joint" else None  # noqa: E731
    pair = train_pair(TrainConfig(**cfg), callback=record, bench=synthetic_benchmark())
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(_summary(pair, losses)))


def _spawn(world: int, folder: Path, main, *args) -> list[dict]:
    """Run ``main(rank, world, port, folder, *args)`` on ``world`` ranks; each rank's rank{r}.json."""
    ctx = mp.start_processes(main, args=(world, _free_port(), str(folder), *args), nprocs=world,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not ctx.join(timeout=1):  # raises if a rank failed (and ends the others)
            if time.monotonic() > deadline:
                pytest.fail(f"{world} ranks did not finish within {DEADLINE_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranks")
    out = folder / "pair"
    return _spawn(2, folder, _rank_main, asdict(_config(out=str(out)))), out


@pytest.fixture(scope="module")
def one_process():
    losses: list[dict] = []
    record = lambda p: losses.append(p.metrics) if p.kind == "step" and p.phase == "joint" else None  # noqa: E731
    return _summary(train_pair(_config(), callback=record, bench=synthetic_benchmark()), losses)


def test_two_gloo_ranks_match_one_process(two_ranks, one_process):
    ranks, _ = two_ranks
    # The first steps: same initial weights, same global batch, same augmentation. BatchNorm normalises
    # each rank's half of the batch by its own statistics, so the losses agree closely, not exactly.
    for step, (two, one) in enumerate(zip(ranks[0]["losses"][:FIRST_STEPS], one_process["losses"][:FIRST_STEPS])):
        for key in ("task_loss", "mint_loss"):
            assert two[key] == pytest.approx(one[key], rel=0.03), (step, key, two, one)
    # The memories read the images, not the backbone: the ranks' shared-out writing gives the same bits.
    assert ranks[0]["memories"] == one_process["memories"]
    # The finished pairs agree within the noise of 100 + 100 evaluation images.
    assert one_process["metrics"]["task_accuracy"] > 0.8  # a learned task, not two runs at chance
    for key, tol in (("auc", 0.05), ("mint_accuracy", 0.05), ("task_accuracy", 0.1), ("trace_auc", 0.15)):
        assert abs(ranks[0]["metrics"][key] - one_process["metrics"][key]) <= tol, (key, ranks[0], one_process)


def test_every_rank_holds_the_pair_rank0_saved(two_ranks):
    ranks, out = two_ranks
    assert ranks[0]["digest"] == ranks[1]["digest"] and ranks[0]["config"] == ranks[1]["config"]
    saved = AuditedPair.from_pretrained(out)
    assert _digest(saved.state_dict()) == ranks[0]["digest"]
    assert saved.config.training["world_size"] == 2 and saved.config.training["global_batch_size"] == 50
    # Only the finished folder is left: no partial or second copy beside it.
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".") or p.name == "pair") == ["pair"]


UNEVEN_ROWS = 5  # over 2 ranks: 3 and 2 rows


def _regression(rows: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A linear model (no BatchNorm: a rank's rows do not affect another's) and a batch, float64, seeded."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(4, 2, dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(rows, 4, generator=g, dtype=torch.float64)
    return model, x, torch.randn(rows, 2, generator=g, dtype=torch.float64)


def _grad(model: torch.nn.Module) -> list[float]:
    return torch.cat([p.grad.flatten() for p in model.parameters()]).tolist()


def _gradient_rank_main(rank: int, world: int, port: int, folder: str, rows: int) -> None:
    """One rank: its shard's mean loss, weighted as _run_epochs weights it, backward through DDP."""
    _torchrun_env(rank, world, port)
    ranks, device, created = distributed.setup(torch.device("cpu"))
    try:
        # In a function of its own, as in _run_epochs: the DDP wrapper is gone before the group is torn down.
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(_gradient_step(rows, ranks, device)))
    finally:
        distributed.teardown(created)


def _gradient_step(rows: int, ranks: distributed.Ranks, device: torch.device) -> dict:
    model, x, y = _regression(rows)
    ddp = distributed.wrap(model, ranks, device)
    xs, ys = distributed.shard(x, ranks), distributed.shard(y, ranks)
    n_global = distributed.all_sum([len(xs)], ranks, device)[0]
    loss = torch.nn.functional.mse_loss(ddp(xs), ys) * distributed.rank_weight(len(xs), n_global, ranks)
    loss.backward()
    return {"rows": len(xs), "grad": _grad(model)}


def test_uneven_shards_step_on_the_global_batch_mean_gradient(tmp_path):
    """A global batch that does not divide by the ranks: DDP's average of the ranks' weighted gradients is
    the gradient of the mean loss over the whole batch, as one process computes it."""
    model, x, y = _regression(UNEVEN_ROWS)
    torch.nn.functional.mse_loss(model(x), y).backward()
    single = torch.tensor(_grad(model))
    # Plain per-rank means, averaged, weight rank 1's two rows more than rank 0's three: not this gradient.
    halves = []
    for xs, ys in zip(torch.tensor_split(x, 2), torch.tensor_split(y, 2)):
        model.zero_grad()
        torch.nn.functional.mse_loss(model(xs), ys).backward()
        halves.append(torch.tensor(_grad(model)))
    assert not torch.allclose((halves[0] + halves[1]) / 2, single, rtol=1e-3)

    ranks = _spawn(2, tmp_path, _gradient_rank_main, UNEVEN_ROWS)
    assert [r["rows"] for r in ranks] == [3, 2]
    for r in ranks:  # DDP leaves the averaged gradient on every rank
        assert torch.allclose(torch.tensor(r["grad"]), single, rtol=1e-12, atol=1e-12)


def test_rank_weight_is_one_for_a_single_process_and_for_even_shards():
    assert distributed.rank_weight(7, 7, distributed.SINGLE) == 1.0
    assert distributed.rank_weight(4, 8, distributed.Ranks(1, 2)) == 1.0


def test_shard_splits_a_global_batch_without_loss():
    batch = torch.arange(7)
    parts = [distributed.shard(batch, distributed.Ranks(r, 3)) for r in range(3)]
    assert torch.equal(torch.cat(parts), batch) and [len(p) for p in parts] == [3, 2, 2]
    assert torch.equal(distributed.shard(batch, distributed.SINGLE), batch)


def test_each_rank_takes_its_own_rows_of_every_global_batch():
    from amint.train import _plan_step

    perm_m, perm_e = torch.arange(100, 110), torch.arange(200, 210)
    steps = [_plan_step(0, perm_m, perm_e, 8, True, distributed.Ranks(r, 2)) for r in range(2)]
    assert torch.equal(torch.cat([s.members for s in steps]), perm_m[:8])
    assert torch.equal(torch.cat([s.externals for s in steps]), perm_e[:8])
    # Positions in the global batch [8 members, 8 externals]: disjoint, together all 16.
    assert sorted(torch.cat([s.rows for s in steps]).tolist()) == list(range(16))
    assert steps[0].rows.tolist() == [0, 1, 2, 3, 8, 9, 10, 11] and all(s.n_global == 16 for s in steps)


def test_each_rank_augments_its_rows_as_one_process_would():
    from amint.train import _augment

    x = torch.randn(12, 1, 8, 8)
    whole = _augment(x, True, torch.Generator().manual_seed(3))
    for rows in (torch.tensor([0, 1, 2, 6, 7, 8]), torch.tensor([3, 4, 5, 9, 10, 11])):
        part = _augment(x[rows], True, torch.Generator().manual_seed(3), rows, n_global=12)
        assert torch.equal(part, whole[rows])
