"""amint.train: the MINT head learns membership only when trained for it; modes, cancel and progress."""

from __future__ import annotations

import pytest
import torch

from amint import train
from amint.data import MembershipSplit
from amint.evaluate import evaluate_pair
from amint.train import Progress, TrainingCancelled, train_pair
from amint.pair import AuditedPair
from tests.conftest import TINY_MEMORIES, TINY_TRACE, tiny_config

SMALL = dict(n_members=100, n_external=100, n_calibration=50, monitor_samples=50)


@pytest.fixture(scope="module")
def no_mint_pair(synthetic):
    """Same recipe as the tiny pair but with the membership loss switched off."""
    return train_pair(tiny_config(mint_weight=0.0), bench=synthetic)


def test_verdict_flips_with_the_membership_loss(tiny_pair, no_mint_pair, synthetic):
    active = tiny_pair[0].config.metrics
    off = no_mint_pair.config.metrics
    assert active["auc"] > 0.7 and active["mint_accuracy"] > 0.62, active
    assert abs(off["auc"] - 0.5) < 0.1 and abs(off["mint_accuracy"] - 0.5) < 0.1, off
    assert active["auc"] - off["auc"] > 0.12
    # Both classifiers learned the task: the difference is membership, not a broken model.
    assert active["task_accuracy"] > 0.8 and off["task_accuracy"] > 0.8
    # The stored metrics are reproducible from the saved split (to the card's digits: they were scored with the
    # training's channels_last weights, a layout whose float32 convolutions may round differently on some CPUs).
    split = MembershipSplit.from_config(tiny_pair[0].config.split)
    assert evaluate_pair(tiny_pair[0], synthetic, split)["auc"] == pytest.approx(active["auc"], abs=1e-3)


class _Spy:
    """Records train/eval mode of backbone and head at every forward, and backbone gradients, per phase."""

    def __init__(self):
        self.phase = "setup"
        self.calls: list[tuple[str, str, bool, bool]] = []  # phase, module, training, grad enabled
        self.backbone_grads: dict[str, int] = {}
        self.snapshots: dict[str, dict[str, torch.Tensor]] = {}
        self.events: list[Progress] = []
        self.pair = None

    def build_pair(self, *args, **kwargs):
        pair = self.pair = train.__dict__["_real_build_pair"](*args, **kwargs)
        # forward_intermediates is a method, not a module call: its first layer's hook sees every backbone pass.
        for name, module in (("backbone", pair.backbone.conv1), ("head", pair.head.trace)):
            module.register_forward_pre_hook(self._record(name))
        for p in pair.backbone.parameters():
            p.register_hook(self._count_grad)
        return pair

    def _record(self, name: str):
        def hook(module, _inputs):
            self.calls.append((self.phase, name, module.training, torch.is_grad_enabled()))

        return hook

    def _count_grad(self, grad):
        self.backbone_grads[self.phase] = self.backbone_grads.get(self.phase, 0) + 1

    def callback(self, p: Progress) -> None:
        self.events.append(p)
        if p.kind == "phase":
            self.phase = p.phase
            self.snapshots[p.phase] = {k: v.clone() for k, v in self.pair.backbone.state_dict().items()}

    def modes(self, phase: str, grad: bool) -> set[tuple[str, bool]]:
        return {(m, training) for ph, m, training, g in self.calls if ph == phase and g == grad}


@pytest.fixture
def spy(monkeypatch):
    s = _Spy()
    monkeypatch.setitem(train.__dict__, "_real_build_pair", train.build_pair)
    monkeypatch.setattr(train, "build_pair", s.build_pair)
    return s


def test_modes_in_every_phase_of_passive_training(spy, synthetic):
    train_pair(tiny_config(mode="passive", epochs=1, head_epochs=1, **SMALL), callback=spy.callback, bench=synthetic)
    assert spy.modes("task", grad=True) == {("backbone", True)}  # task-only: the head is not even run
    # The frozen backbone runs without a graph at all in the head phase.
    assert spy.modes("head", grad=True) == {("head", True)}
    # Monitoring, calibration and evaluation run without gradients and in eval mode only.
    for phase in ("task", "head", "calibrate"):
        assert spy.modes(phase, grad=False) == {("backbone", False), ("head", False)}
    # The head phase trains on a frozen backbone: no gradient reaches it, no weight or BN statistic moves.
    assert spy.backbone_grads.get("task", 0) > 0 and spy.backbone_grads.get("head", 0) == 0
    before, after = spy.snapshots["head"], spy.snapshots["calibrate"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_modes_and_progress_of_active_training(spy, synthetic):
    train_pair(tiny_config(epochs=2, **SMALL), callback=spy.callback, bench=synthetic)
    assert spy.modes("joint", grad=True) == {("backbone", True), ("head", True)}
    for phase in ("joint", "calibrate"):
        assert spy.modes(phase, grad=False) == {("backbone", False), ("head", False)}
    kinds = [e.kind for e in spy.events]
    assert {"phase", "step", "epoch", "done"} <= set(kinds) and kinds[-1] == "done"
    assert kinds.count("epoch") == 2 and kinds.count("step") == 2 * 2  # 100 members / batch 50
    fractions = [e.fraction for e in spy.events if e.kind in ("step", "epoch", "done")]
    assert fractions == sorted(fractions) and fractions[0] <= 0.25 and fractions[-1] == 1.0
    epoch_metrics = [e.metrics for e in spy.events if e.kind == "epoch"]
    assert all({"task_loss", "mint_loss", "cal_trace_auc", "test_accuracy"} <= m.keys() for m in epoch_metrics)


def test_should_stop_cancels_without_saving(synthetic, tmp_path):
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) >= 3  # in the second epoch (two steps per epoch)

    with pytest.raises(TrainingCancelled):
        train_pair(tiny_config(epochs=2, out=str(tmp_path), **SMALL), should_stop=should_stop, bench=synthetic)
    assert len(asked) == 3
    assert not (tmp_path / "config.json").exists()  # no finished pair from a cancelled run


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_schedules_survive_very_short_runs(schedule):
    # A 2-epoch demo on a few images has only a handful of steps; OneCycleLR used to divide by zero at 4.
    for total in range(1, 13):
        opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
        sched = train._scheduler(tiny_config(schedule=schedule), opt, total)
        for _ in range(total):
            opt.step()
            sched.step()
            assert 0 <= opt.param_groups[0]["lr"] <= 0.1 + 1e-12


@pytest.mark.parametrize("mode, phase", [("active", "joint"), ("passive", "task")])
def test_task_augment_moves_the_task_rows_only(monkeypatch, synthetic, mode, phase):
    spy = _Spy()
    spy.inputs = []
    monkeypatch.setitem(train.__dict__, "_real_build_pair", train.build_pair)

    def build_pair(*args, **kwargs):
        pair = spy.build_pair(*args, **kwargs)
        pair.backbone.conv1.register_forward_pre_hook(
            lambda m, inp: spy.inputs.append((spy.phase, inp[0].detach().clone())) if m.training else None)
        return pair

    monkeypatch.setattr(train, "build_pair", build_pair)
    train_pair(tiny_config(mode=mode, epochs=1, head_epochs=0, task_augment=True, **SMALL), callback=spy.callback,
               bench=synthetic)
    # Back to uint8 pixels (rounding absorbs float32's last bits), to compare with the images as they are.
    pixels = lambda x: (x * spy.pair.std + spy.pair.mean).mul(255).round().to(torch.uint8)  # noqa: E731
    as_is = {bytes(row.contiguous().numpy()) for row in synthetic.train_images}
    batches = [x for ph, x in spy.inputs if ph == phase]
    assert batches
    for x in batches:
        nm = 50  # members per step (batch_size); active steps also take 50 externals, each read once as it is
        rows = [bytes(r.contiguous().numpy()) in as_is for r in pixels(x)]
        assert len(rows) == (3 * nm if mode == "active" else nm)
        assert sum(rows[:nm]) <= nm // 5  # the task's members are moved (a few draws move nothing)
        assert all(rows[nm:])  # the membership loss reads every member and external as it is


def test_augment_and_task_augment_are_exclusive():
    with pytest.raises(ValueError, match="augment or task_augment"):
        tiny_config(augment=True, task_augment=True).validate()


@pytest.mark.parametrize("members, epochs", [(256, 1), (256, 2), (300, 2), (640, 1)])
def test_a_control_head_trains_on_a_few_members(members, epochs):
    # A control head on a tiny run has a handful of steps (300 members, 2 epochs: 4); OneCycleLR divided by zero.
    from amint.head_config import TraceConfig
    from amint.probe import train_head_on_maps

    maps = lambda n, seed: [torch.randn(n, 4, 4, 4, generator=torch.Generator().manual_seed(seed))]  # noqa: E731
    head = train_head_on_maps(maps(members, 0), maps(members, 1), TraceConfig(width=4, hidden=8), epochs)
    assert torch.isfinite(head(maps(8, 2))).all()


def test_init_from_keeps_the_jointly_trained_model_and_adds_memories(synthetic, tiny_pair, tmp_path):
    """The default pair is built this way: a long trace run's backbone and trace head kept as they are (no epochs),
    hashed memories written and the readings calibrated on top."""
    source, folder = tiny_pair
    cfg = tiny_config(init_from=str(folder), epochs=0, head_epochs=0,
                      head={"trace": TINY_TRACE, "memories": TINY_MEMORIES}, out=str(tmp_path / "built"))
    train_pair(cfg, bench=synthetic)
    built = AuditedPair.from_pretrained(tmp_path / "built")
    for mine, theirs in ((built.backbone, source.backbone), (built.head.trace, source.head.trace)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert set(built.head.memories) == set(TINY_MEMORIES) and built.config.readings
    assert built.config.training["init_from"]["training"] == source.config.training
    # Its card tells the model's training as the source's run (its epochs), not as a run of 0 epochs.
    card = (tmp_path / "built" / "README.md").read_text()
    epochs = source.config.training["config"]["epochs"]
    assert f"- model and trace head from `{folder.name}`, kept bit for bit as trained: active, {epochs} epochs" in card
    assert "- mode: active, 0 epochs" not in card and "no training step of its own" in card


def test_a_checkpointed_run_and_a_pair_built_on_it_record_no_local_path(synthetic, tmp_path):
    """A published pair names no folder of the machine it was trained on: not its checkpoint, not its source's."""
    first = tmp_path / "runs" / "first"
    train_pair(tiny_config(epochs=1, checkpoint=str(first / "checkpoint"), out=str(first / "pair")), bench=synthetic)
    train_pair(tiny_config(init_from=str(first / "pair"), epochs=0, out=str(tmp_path / "built")), bench=synthetic)
    for folder in (first / "pair", tmp_path / "built"):
        assert str(tmp_path) not in (folder / "config.json").read_text()
    # A source saved before checkpoints were recorded by name: the built pair still names no local folder.
    source = AuditedPair.from_pretrained(first / "pair")
    source.config.training["config"]["checkpoint"] = str(first / "checkpoint")
    source.save_pretrained(first / "old")
    train_pair(tiny_config(init_from=str(first / "old"), epochs=0, out=str(tmp_path / "built2")), bench=synthetic)
    assert str(tmp_path) not in (tmp_path / "built2" / "config.json").read_text()


def test_a_run_continued_from_a_pair_weighs_its_losses_as_the_source_did(synthetic, tmp_path):
    """Each loss is divided by its first-step value. A continued run that measured its own would divide by a trained
    model's near-zero losses and re-weigh the task against the membership loss (the default pair so lost its trace):
    it divides by its source's, or by an untrained model's (chance) when the source did not record them."""
    import math

    train_pair(tiny_config(epochs=2, out=str(tmp_path / "first")), bench=synthetic)
    source = AuditedPair.from_pretrained(tmp_path / "first")
    norms = source.config.training["loss_norms"]["joint"]
    assert norms["task"] > 0.5 and norms["mint"] > 0.3  # an untrained model's first step: near chance
    train_pair(tiny_config(init_from=str(tmp_path / "first"), epochs=1, out=str(tmp_path / "next")), bench=synthetic)
    continued = AuditedPair.from_pretrained(tmp_path / "next")
    assert continued.config.training["loss_norms"]["joint"] == norms
    del source.config.training["loss_norms"]  # as the pairs saved before the norms were recorded
    source.save_pretrained(tmp_path / "old")
    train_pair(tiny_config(init_from=str(tmp_path / "old"), epochs=1, out=str(tmp_path / "next2")), bench=synthetic)
    chance = AuditedPair.from_pretrained(tmp_path / "next2").config.training["loss_norms"]["joint"]
    assert chance == pytest.approx({"task": math.log(4), "mint": math.log(2)})


def test_init_from_refuses_a_backbone_with_another_stem_stride(synthetic, tiny_pair, tmp_path):
    _, folder = tiny_pair
    cfg = tiny_config(init_from=str(folder), epochs=0, stem_stride=2, out=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="stem stride"):
        train_pair(cfg, bench=synthetic)


def test_external_ratio_shows_members_more_often_and_still_writes_the_trace(monkeypatch, synthetic):
    """external_ratio=0.5: each step holds half as many externals as members, both classes weigh alike in the loss,
    and the jointly trained trace still tells members from non-members."""
    counts = []
    real = train._membership_loss

    def spy(trace, target, ratio):
        counts.append((int((target > 0).sum()), int((target == 0).sum())))
        return real(trace, target, ratio)

    monkeypatch.setattr(train, "_membership_loss", spy)
    pair = train_pair(tiny_config(external_ratio=0.5, epochs=12), bench=synthetic)
    assert counts and all(e == round(m * 0.5) for m, e in counts), counts[:5]
    assert pair.config.metrics["auc"] > 0.7, pair.config.metrics


def test_the_membership_loss_weighs_both_classes_alike():
    logits, target = torch.randn(12), torch.tensor([1.0] * 8 + [0.0] * 4)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    balanced = 0.5 * (bce(logits[:8], target[:8]) + bce(logits[8:], target[8:]))
    assert train._membership_loss(logits, target, 0.5) == pytest.approx(balanced.item(), rel=1e-6)
    assert train._membership_loss(logits, target, 1.0) == pytest.approx(bce(logits, target).item(), rel=1e-6)
    # A process's shard with members only stays finite.
    assert torch.isfinite(train._membership_loss(logits[:8], target[:8], 0.5))


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5])
def test_external_ratio_out_of_range_is_refused(ratio):
    with pytest.raises(ValueError, match="external_ratio"):
        tiny_config(external_ratio=ratio).validate()


def test_the_membership_loss_ramp_starts_at_zero_and_reaches_its_weight(monkeypatch, synthetic):
    """mint_ramp_epochs=2: the joint loss carries a membership term that grows step by step to mint_weight, after
    which it stays; the head phase is never ramped."""
    cfg = tiny_config(mint_weight=2.0, mint_ramp_epochs=2, epochs=3)
    steps = 4
    weights = [train.mint_weight(cfg, "joint", e, s, steps) for e in (1, 2, 3) for s in range(steps)]
    assert weights[0] == pytest.approx(0.25) and weights[steps * 2 - 1] == pytest.approx(2.0)
    assert all(b > a for a, b in zip(weights[:8], weights[1:8])) and weights[8:] == [2.0] * steps
    assert train.mint_weight(cfg, "head", 1, 0, steps) == 2.0
    seen = []
    real = train.mint_weight
    monkeypatch.setattr(train, "mint_weight", lambda *a: seen.append(real(*a)) or seen[-1])
    train_pair(cfg, bench=synthetic)
    assert seen[0] < seen[-1] == 2.0 and len(set(seen)) > 2


def test_a_ramp_longer_than_the_run_is_refused():
    with pytest.raises(ValueError, match="mint_ramp_epochs"):
        tiny_config(mint_ramp_epochs=9, epochs=8).validate()
