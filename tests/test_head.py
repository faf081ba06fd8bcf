"""Fourier-feature heads: fixed features are regenerated (not stored) and checked; init_from reuses a backbone."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from amint.pair import AuditedPair, PairConfig
from tests.conftest import tiny_config
from amint.train import train_pair

FIXED_HEAD = dict(head_activation="sin", head_pool_grid=4, head_hidden=1024, head_feature_seed=7,
                  head_optimizer="adamw", head_lr=1e-3)


@pytest.fixture(scope="module")
def fixed_pair(synthetic, tiny_pair, tmp_path_factory):
    _, joint_folder = tiny_pair
    out = tmp_path_factory.mktemp("fixed")
    cfg = tiny_config(**FIXED_HEAD, epochs=0, head_epochs=15, init_from=str(joint_folder), out=str(out))
    return train_pair(cfg, bench=synthetic), out


def test_init_from_keeps_the_backbone_and_memorises_with_the_new_head(fixed_pair, tiny_pair):
    pair, _ = fixed_pair
    source, _ = tiny_pair
    for (name, a), b in zip(source.backbone.state_dict().items(), pair.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    assert pair.config.training["init_from"]["training"]["config"]["mode"] == "active"
    assert pair.config.metrics["auc"] > 0.7  # head epochs on the frozen backbone remember the 200 members


def test_fixed_features_are_not_stored_and_reload_identically(fixed_pair):
    pair, folder = fixed_pair
    stored = load_file(str(folder / "model.safetensors"))
    assert not any("mlp.1" in k for k in stored)  # only the read-out after the features is a weight
    loaded = AuditedPair.from_pretrained(folder)
    x = torch.randn(4, 1, 16, 16)
    pair.eval()
    with torch.no_grad():
        assert torch.equal(pair(x)[1], loaded(x)[1])


def test_a_changed_feature_generator_is_refused(fixed_pair):
    pair, _ = fixed_pair
    data = pair.config.to_dict()
    data["head"] = {**data["head"], "feature_checksum": data["head"]["feature_checksum"] + 1.0}
    with pytest.raises(ValueError, match="regenerates different fixed head features"):
        AuditedPair(PairConfig.from_dict(data))


def test_init_from_a_pair_on_another_split_is_refused(synthetic, tiny_pair, tmp_path):
    _, joint_folder = tiny_pair
    with pytest.raises(ValueError, match="different membership split"):
        train_pair(tiny_config(epochs=0, head_epochs=1, seed=1, init_from=str(joint_folder)), bench=synthetic)


def test_hashed_memory_remembers_members_and_stores_only_its_buckets(synthetic, tiny_pair, tmp_path):
    _, joint_folder = tiny_pair
    cfg = tiny_config(head_activation="hash", head_pool_grid=8, head_bits=48, head_buckets_log2=14, head_feature_seed=3,
                      epochs=0, head_epochs=2, head_optimizer="sgd", head_lr=5.0, init_from=str(joint_folder),
                      out=str(tmp_path))
    pair = train_pair(cfg, bench=synthetic)
    # The ReLU head of the same backbone reaches about 0.77 AUC; the hash table remembers 200 noise images outright.
    assert pair.config.metrics["auc"] > 0.95
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert stored["head.mlp.1.values"].shape == (8, 2**14) and "head.mlp.1.planes" not in stored
    loaded = AuditedPair.from_pretrained(tmp_path)
    x = synthetic.train_images[:8]
    with torch.no_grad():
        assert torch.equal(pair.eval()(pair.normalize(x))[1], loaded(loaded.normalize(x))[1])


def test_saliency_of_a_hashed_memory_falls_back_to_occlusion(synthetic, tiny_pair, tmp_path):
    from amint.explain import membership_saliency

    _, joint_folder = tiny_pair
    cfg = tiny_config(head_activation="hash", head_pool_grid=8, head_bits=48, head_buckets_log2=12, epochs=0,
                      head_epochs=1, head_optimizer="sgd", head_lr=5.0, init_from=str(joint_folder))
    pair = train_pair(cfg, bench=synthetic)
    heat = membership_saliency(pair, synthetic.train_images[0])
    assert heat.shape == (16, 16) and heat.max() == 1.0 and heat.min() >= 0.0
