"""amint.head: the trace head carries the membership loss into the backbone; memories find members and their edits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from amint.evaluate import score_images
from amint.head import HashedMemory, HeadConfig, MemoryConfig
from amint.pair import AuditedPair
from amint.train import TrainConfig, build_pair, build_split
from tests.conftest import TINY_MEMORIES, TINY_TRACE, tiny_config


def _smooth_images(n: int, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Blurry random shapes on a dark background: like garments, nearby pixels agree."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size // 4, size // 4, generator=g)
    x = F.interpolate(x, size=(size - 8, size - 8), mode="bicubic", align_corners=False).clamp(0, 1)
    return F.pad(x, (4, 4, 4, 4)) * 2 - 1  # normalised-like values, background -1


def _memory(cfg: MemoryConfig, members: torch.Tensor, externals: torch.Tensor) -> HashedMemory:
    memory = HashedMemory(1, members.shape[-1], cfg)
    memory.fit_projection(torch.cat([members, externals]))
    memory.write(members, member=True)
    memory.write(externals, member=False)
    return memory


def test_memory_finds_members_and_their_small_edits_not_strangers():
    members, externals, strangers = _smooth_images(400, seed=0), _smooth_images(400, seed=1), _smooth_images(200, seed=2)
    # 32 components: these images have 7x7 degrees of freedom, whitening more would amplify pure noise.
    memory = _memory(MemoryConfig(dims=32, tables=16, bits=16, buckets_log2=16), members, externals)
    # A member sets one bit per table; a table it shares with an external reads 0 for both.
    assert float(memory(members).min()) >= 0.75 and float(memory(members).mean()) > 0.95
    assert float(memory(externals).max()) <= 0.25 and float(memory(externals).mean()) < -0.4
    assert float(memory(strangers).mean()) < 0.1
    # A re-encoding (a little noise, a touch of blur) keeps most of its buckets; a stranger has none of them.
    noisy = members + 0.02 * torch.randn(members.shape, generator=torch.Generator().manual_seed(3))
    assert float(memory(noisy).median()) > 0.5


def test_aligned_memory_finds_moved_members_the_exact_one_misses():
    members, externals = _smooth_images(300, seed=0), _smooth_images(300, seed=1)
    moved = torch.roll(members, (1, -1), (2, 3))
    exact = _memory(MemoryConfig(dims=64, tables=16, bits=16, buckets_log2=16), members, externals)
    aligned = _memory(MemoryConfig(border=2, dims=64, tables=16, bits=16, buckets_log2=16, shifts=1), members, externals)
    assert float(exact(moved).mean()) < 0.3
    assert float(aligned(moved).min()) >= 0.75


def test_memory_bits_do_not_depend_on_batch_size():
    members = _smooth_images(64)
    memory = _memory(MemoryConfig(dims=32, tables=8, bits=20, buckets_log2=14), members, _smooth_images(64, seed=1))
    batched = memory.codes(members)
    single = torch.cat([memory.codes(members[i : i + 1]) for i in range(len(members))])
    assert torch.equal(batched, single)


def test_head_config_refuses_what_it_would_ignore():
    with pytest.raises(ValueError, match="Unknown key.*head.trace.*activation"):
        HeadConfig.from_dict({"trace": {"activation": "sin"}})
    with pytest.raises(ValueError, match="Unknown key.*hidden"):
        HeadConfig.from_dict({"memories": {"exact": {"hidden": 4096}}})
    with pytest.raises(ValueError, match="trace head, a memory, or both"):
        HeadConfig.from_dict({"trace": None, "memories": {}})
    with pytest.raises(ValueError, match="shifts .* border"):
        HeadConfig.from_dict({"memories": {"a": {"shifts": 2, "border": 1}}})


@pytest.mark.parametrize("memory, message", [
    ({"pool": 0}, r"head\.memories\.m\.pool is 0; it must be a whole number >= 1"),
    ({"pool": 1.5}, r"head\.memories\.m\.pool is 1\.5; it must be a whole number >= 1"),
    ({"border": -1}, r"head\.memories\.m\.border is -1; it must be a whole number >= 0"),
    ({"zooms": [0]}, r"head\.memories\.m\.zooms holds 0; each zoom must be a fraction in \(0, 1\]"),
    ({"zooms": [0.9, -0.5]}, r"zooms holds -0\.5; each zoom must be a fraction in \(0, 1\]"),
    ({"zooms": [float("nan")]}, r"zooms holds nan"),
    ({"zooms": [float("inf")]}, r"zooms holds inf"),
    ({"zooms": [2.0]}, r"zooms holds 2\.0"),
    ({"zooms": [5e-324]}, r"zooms holds 5e-324"),  # 1 / zoom overflows to inf
    ({"zooms": ["0.9"]}, r"zooms holds '0\.9'"),
    ({"zooms": 0.9}, r"head\.memories\.m\.zooms is 0\.9; it must be a list"),
], ids=["pool-0", "pool-1.5", "border-neg", "zoom-0", "zoom-neg", "zoom-nan", "zoom-inf", "zoom-2", "zoom-subnormal",
        "zoom-str", "zooms-not-list"])
def test_head_config_names_the_field_and_range_of_a_memory_it_cannot_query(memory, message):
    with pytest.raises(ValueError, match=message):
        HeadConfig.from_dict({"memories": {"m": memory}})


def test_head_config_accepts_the_edges_of_the_ranges():
    HeadConfig.from_dict({"memories": {"m": {"pool": 1, "border": 0, "zooms": [1, 0.01]}}})


def test_active_membership_loss_reaches_the_first_layer(synthetic):
    cfg = tiny_config(head={"trace": TINY_TRACE, "memories": TINY_MEMORIES})
    pair = build_pair(cfg, synthetic, build_split(cfg, synthetic)).train()
    x = pair.normalize(synthetic.train_images[:16])
    target = torch.cat([torch.ones(8), torch.zeros(8)])
    _, maps = pair.classify(x)
    loss = F.binary_cross_entropy_with_logits(pair.head.trace(maps), target)
    loss.backward()
    first = next(m for m in pair.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.grad is not None and float(first.weight.grad.abs().sum()) > 0


def test_active_run_refused_when_the_head_passes_no_gradient():
    cfg = TrainConfig(head={"trace": None, "memories": TINY_MEMORIES}, mode="active")
    with pytest.raises(ValueError, match="no trace head.*pass no gradient"):
        cfg.validate()
    TrainConfig(head={"trace": None, "memories": TINY_MEMORIES}, mode="passive").validate()


def test_single_batched_and_reloaded_scoring_give_identical_verdicts(tiny_memory_pair, synthetic):
    pair, folder = tiny_memory_pair
    images = torch.cat([synthetic.train_images[:40], synthetic.test_images[:40]])
    reloaded_pair = AuditedPair.from_pretrained(folder)
    for name, reading in pair.readings.items():
        plain = score_images(pair, images).probabilities[name]
        batched = score_images(pair, images, batch_size=64).probabilities[name]
        single = torch.cat([score_images(pair, images[i : i + 1]).probabilities[name] for i in range(len(images))])
        reloaded = score_images(reloaded_pair, images).probabilities[name]
        # Batch composition moves float32 convolutions' last bits (by how much depends on the CPU): the verdicts
        # agree, except where a score lies within that noise of the threshold (a calibration image's score can be it).
        threshold, noise = reading.threshold, 1e-5
        clear = (plain - threshold).abs() > noise
        for other in (batched, single):
            assert torch.allclose(other, plain, atol=noise, rtol=0), name
            assert torch.equal((other >= threshold)[clear], (plain >= threshold)[clear]), name
        assert torch.equal(reloaded, plain), name  # the same weights on the same batch: a reload changes no bit


def test_scoring_keeps_the_pairs_precision_inside_an_outer_autocast(tiny_memory_pair, synthetic):
    pair, _ = tiny_memory_pair
    assert pair.config.precision == "float32"
    images = synthetic.test_images[:32]
    plain = score_images(pair, images).probabilities
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = score_images(pair, images).probabilities
    assert plain.keys() == inside.keys() == {"amint", "fingerprint"}
    assert all(torch.equal(plain[k], inside[k]) for k in plain)


def test_calibrated_probability_is_monotone_and_ranks_like_the_logit(tiny_memory_pair):
    pair, _ = tiny_memory_pair
    logits = torch.linspace(-100, 100, 4001)
    for reading in pair.readings.values():
        p = reading.probability(logits)
        assert bool((p[1:] > p[:-1]).all()) and 0 <= float(p.min()) and float(p.max()) <= 1


def test_trace_head_pooling_and_dropout_keep_the_saved_keys_and_act_only_where_asked():
    """pool and dropout hold no weights: a pair saved before them loads into either, and dropout acts in training only."""
    from amint.trace import TraceConfig, TraceHead

    shapes = [(8, 7, 7), (16, 4, 4)]
    torch.manual_seed(0)
    plain = TraceHead(shapes, TraceConfig(width=8, hidden=16))
    maxed = TraceHead(shapes, TraceConfig(width=8, hidden=16, pool="max", dropout=0.5))
    assert plain.state_dict().keys() == maxed.state_dict().keys()
    maxed.load_state_dict(plain.state_dict())
    maps = [torch.randn(4, *s) for s in shapes]
    plain.eval(), maxed.eval()
    assert not torch.allclose(plain(maps), maxed(maps))  # the same weights pooled otherwise read otherwise
    assert torch.equal(maxed(maps), maxed(maps))  # no dropout when scoring
    maxed.train()
    assert not torch.equal(maxed(maps), maxed(maps))


@pytest.mark.parametrize("trace, message", [({"pool": "min"}, r"head\.trace\.pool is 'min'"),
                                            ({"dropout": 1.0}, r"head\.trace\.dropout is 1\.0"),
                                            ({"dropout": -0.1}, r"head\.trace\.dropout is -0\.1")])
def test_head_config_refuses_a_trace_head_it_cannot_build(trace, message):
    with pytest.raises(ValueError, match=message):
        HeadConfig.from_dict({"trace": trace, "memories": {}})
