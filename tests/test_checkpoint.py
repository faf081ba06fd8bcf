"""Resumable training: a run stopped mid-way and resumed ends where the uninterrupted run ends."""

from __future__ import annotations

import json

import pytest
import torch

from amint import checkpoint
from amint.train import TrainingCancelled, train_pair
from tests.conftest import TINY_TRACE, tiny_config

RUN = dict(epochs=3, head_epochs=2, memory_views=0, optimizer="adamw", lr=2e-3, schedule="onecycle")


def _stop_after(n_epochs: int):
    """should_stop that fires on the first step after ``n_epochs`` epochs have finished."""
    seen = {"epochs": 0}

    def callback(p):
        if p.kind == "epoch":
            seen["epochs"] += 1

    return callback, lambda: seen["epochs"] >= n_epochs


def _weights(pair) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in pair.state_dict().items()}


@pytest.fixture(scope="module")
def uninterrupted(synthetic):
    return train_pair(tiny_config(**RUN), bench=synthetic)


@pytest.mark.parametrize("stop_after", [2, 4], ids=["in-joint-phase", "in-head-phase"])
def test_resumed_run_ends_like_the_uninterrupted_one(synthetic, uninterrupted, tmp_path, stop_after):
    cfg = tiny_config(**RUN, checkpoint=str(tmp_path / "ckpt"))
    callback, should_stop = _stop_after(stop_after)
    with pytest.raises(TrainingCancelled):
        train_pair(cfg, callback=callback, should_stop=should_stop, bench=synthetic)
    meta = json.loads((tmp_path / "ckpt" / checkpoint.META).read_text())
    assert meta["epoch"] == (stop_after if stop_after <= 3 else stop_after - 3)
    assert meta["phase"] == ("joint" if stop_after <= 3 else "head")

    phases = []
    resumed = train_pair(cfg, callback=lambda p: phases.append((p.phase, p.epoch)) if p.kind == "epoch" else None,
                         bench=synthetic)
    # Only the epochs after the checkpoint ran again ...
    assert len(phases) == 5 - stop_after
    # ... and the pair, its history and its verdicts are those of the run that never stopped.
    assert [r["epoch"] for r in resumed.config.training["history"]] == [1, 2, 3, 1, 2]
    a, b = _weights(uninterrupted), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert resumed.config.metrics["auc"] == pytest.approx(uninterrupted.config.metrics["auc"], abs=0.01)


def test_a_checkpoint_of_another_config_is_refused(synthetic, tmp_path):
    folder = str(tmp_path / "ckpt")
    callback, should_stop = _stop_after(1)
    with pytest.raises(TrainingCancelled):
        train_pair(tiny_config(**RUN, checkpoint=folder), callback=callback, should_stop=should_stop, bench=synthetic)
    with pytest.raises(ValueError, match=r"another training config.*lr"):
        train_pair(tiny_config(**RUN | {"lr": 1e-3}, checkpoint=folder), bench=synthetic)


def test_a_checkpoint_written_before_a_head_setting_existed_resumes(synthetic, tmp_path):
    """A checkpoint whose head lacks settings added since (pool, dropout) resumes when they are at their defaults,
    and is refused when the run asks for another value."""
    folder = tmp_path / "ckpt"
    callback, should_stop = _stop_after(1)
    with pytest.raises(TrainingCancelled):
        train_pair(tiny_config(**RUN, checkpoint=str(folder)), callback=callback, should_stop=should_stop, bench=synthetic)
    meta = json.loads((folder / checkpoint.META).read_text())
    for key in ("pool", "dropout"):
        del meta["config"]["head"]["trace"][key]
    (folder / checkpoint.META).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"another training config.*head"):
        max_pooled = {"trace": TINY_TRACE | {"pool": "max"}, "memories": {}}
        train_pair(tiny_config(**RUN, checkpoint=str(folder), head=max_pooled), bench=synthetic)
    seen = []
    train_pair(tiny_config(**RUN, checkpoint=str(folder)), callback=seen.append, bench=synthetic)
    assert any("resumed after epoch 1" in (p.message or "") for p in seen if p.kind == "phase")


def test_checkpoint_holds_no_pickle(synthetic, tmp_path):
    folder = tmp_path / "ckpt"
    train_pair(tiny_config(**RUN | {"head_epochs": 0, "epochs": 2}, checkpoint=str(folder), keep_every=1),
               bench=synthetic)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["joint-epoch-001.safetensors", "joint-epoch-002.safetensors", checkpoint.TENSORS,
                            checkpoint.META, "trained"])
    for p in [*folder.iterdir(), *(folder / "trained").iterdir()]:
        if p.is_dir():
            continue
        assert not p.read_bytes().startswith(b"\x80"), f"{p.name} looks like a pickle"


def test_early_stop_keeps_the_best_epoch(synthetic):
    pair = train_pair(tiny_config(epochs=8, early_stop=1, lr=0.5), bench=synthetic)  # a learning rate that overshoots
    history = pair.config.training["history"]
    aucs = [r["cal_trace_auc"] for r in history]
    best = max(range(len(aucs)), key=aucs.__getitem__)
    assert len(history) == best + 2  # stopped one epoch after the best


def test_edit_views_show_members_and_externals_edited_alike(synthetic, monkeypatch):
    from amint import train

    seen = []
    real = train._pick_views

    def spy(raw, views, step, gen):
        out = real(raw, views, step, gen)
        changed = (out != raw).flatten(1).any(1)
        seen.append((changed[: len(step.members)].float().mean().item(), changed[len(step.members):].float().mean().item()))
        return out

    monkeypatch.setattr(train, "_pick_views", spy)
    train_pair(tiny_config(epochs=2, edit_views=2), bench=synthetic)
    members, externals = (sum(s[i] for s in seen) / len(seen) for i in (0, 1))
    # Two views out of three choices: about two thirds of the rows of each side are shown edited.
    assert 0.5 < members < 0.8 and 0.5 < externals < 0.8, (members, externals)


def test_a_constant_schedule_run_can_be_extended_or_cut_where_it_stands(synthetic, tmp_path):
    folder = str(tmp_path / "ckpt")
    settings = RUN | {"schedule": "constant", "head_epochs": 0}
    callback, should_stop = _stop_after(2)
    with pytest.raises(TrainingCancelled):
        train_pair(tiny_config(**settings | {"epochs": 5}, checkpoint=folder), callback=callback,
                   should_stop=should_stop, bench=synthetic)
    # Finish at the epoch the checkpoint holds: no epoch runs again, the pair is calibrated and saved.
    epochs = []
    pair = train_pair(tiny_config(**settings | {"epochs": 2}, checkpoint=folder, out=str(tmp_path / "pair")),
                      callback=lambda p: p.kind == "epoch" and epochs.append(p.epoch), bench=synthetic)
    assert epochs == [] and (tmp_path / "pair" / "config.json").exists()
    assert [r["epoch"] for r in pair.config.training["history"]] == [1, 2]
    with pytest.raises(ValueError, match="past the 1 asked for"):
        train_pair(tiny_config(**settings | {"epochs": 1}, checkpoint=folder), bench=synthetic)


def test_a_constant_run_resumes_into_a_cool_down_like_one_planned_from_the_start(synthetic, tmp_path):
    settings = RUN | {"schedule": "constant", "head_epochs": 0}
    planned = train_pair(tiny_config(**settings | {"epochs": 4, "cooldown_epochs": 2}), bench=synthetic)
    constant = train_pair(tiny_config(**settings | {"epochs": 4}), bench=synthetic)
    # A run of 5 constant epochs stopped after 2, resumed as 4 epochs of which the last 2 cool down.
    folder = str(tmp_path / "ckpt")
    callback, should_stop = _stop_after(2)
    with pytest.raises(TrainingCancelled):
        train_pair(tiny_config(**settings | {"epochs": 5}, checkpoint=folder), callback=callback,
                   should_stop=should_stop, bench=synthetic)
    resumed = train_pair(tiny_config(**settings | {"epochs": 4, "cooldown_epochs": 2}, checkpoint=folder),
                         bench=synthetic)
    a, b, c = _weights(planned), _weights(resumed), _weights(constant)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    # ... and the cool-down changed the training: the constant run ends elsewhere.
    assert max((a[k] - c[k]).abs().max().item() for k in a if a[k].is_floating_point()) > 1e-3


def test_a_checkpoint_inside_a_cool_down_resumes_only_with_that_cool_down(synthetic, tmp_path):
    settings = RUN | {"schedule": "constant", "head_epochs": 0}
    folder = str(tmp_path / "ckpt")
    callback, should_stop = _stop_after(3)
    with pytest.raises(TrainingCancelled):  # epochs 1-2 at the full rate, 3-5 cooling down; stopped after 3
        train_pair(tiny_config(**settings | {"epochs": 5, "cooldown_epochs": 3}, checkpoint=folder),
                   callback=callback, should_stop=should_stop, bench=synthetic)
    for other in ({"epochs": 5, "cooldown_epochs": 1}, {"epochs": 6, "cooldown_epochs": 3}, {"epochs": 8}):
        with pytest.raises(ValueError, match="inside a cool-down"):
            train_pair(tiny_config(**settings | other, checkpoint=folder), bench=synthetic)
    with pytest.raises(ValueError, match="ends a constant schedule"):
        tiny_config(**RUN | {"cooldown_epochs": 1}).validate()


def test_a_failed_calibration_keeps_the_trained_pair_and_the_rerun_only_calibrates(synthetic, tmp_path, monkeypatch):
    from amint import train

    out = tmp_path / "pair"
    cfg = tiny_config(**RUN | {"head_epochs": 0, "epochs": 2}, out=str(out))
    real = train._calibrate_and_record

    def broken(*args, **kwargs):
        raise RuntimeError("calibration died (a collective timed out)")

    monkeypatch.setattr(train, "_calibrate_and_record", broken)
    with pytest.raises(RuntimeError, match="calibration died"):
        train_pair(cfg, bench=synthetic)
    assert not out.exists() and (tmp_path / ".pair.trained" / checkpoint.META).exists()

    monkeypatch.setattr(train, "_calibrate_and_record", real)
    epochs = []
    pair = train_pair(cfg, callback=lambda p: p.kind == "epoch" and epochs.append(p.epoch), bench=synthetic)
    assert epochs == []  # no epoch ran again
    assert (out / "config.json").exists() and not (tmp_path / ".pair.trained").exists()
    assert [r["epoch"] for r in pair.config.training["history"]] == [1, 2]


def test_the_weight_average_follows_its_formula_and_leaves_the_trained_weights_alone():
    from amint.train import _WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False), torch.nn.BatchNorm1d(1))
    average = _WeightAverage(model, ["0", "1"], epochs=1.0, steps=2)  # decay 1 - 1/2, warm-up (1+t)/(10+t) below it
    w0 = model[0].weight.detach().clone()
    expected = w0.clone()
    for t in (1, 2, 3):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        keep = min(0.5, (1 + t) / (10 + t))
        expected = keep * expected + (1 - keep) * model[0].weight.detach()
        average.update()
    trained = model[0].weight.detach().clone()
    assert not torch.allclose(expected, trained)  # the average lags the trained weights
    with average.applied():
        torch.testing.assert_close(model[0].weight.detach(), expected)
    torch.testing.assert_close(model[0].weight.detach(), trained)  # back to what training goes on from
    average.finish()
    torch.testing.assert_close(model[0].weight.detach(), expected)


def test_a_run_with_a_weight_average_resumes_like_the_uninterrupted_one(synthetic, tmp_path):
    run = RUN | {"ema_epochs": 1.0}
    whole = train_pair(tiny_config(**run), bench=synthetic)
    plain = train_pair(tiny_config(**RUN), bench=synthetic)
    assert any(not torch.allclose(a, b) for a, b in zip(_weights(whole).values(), _weights(plain).values()))

    cfg = tiny_config(**run, checkpoint=str(tmp_path / "ckpt"))
    callback, should_stop = _stop_after(2)
    with pytest.raises(TrainingCancelled):
        train_pair(cfg, callback=callback, should_stop=should_stop, bench=synthetic)
    resumed = train_pair(cfg, bench=synthetic)
    a, b = _weights(whole), _weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
