"""Where the trace lives: the trace head alone, and a fresh head trained on a frozen backbone.

The paper's protocol scores the members its head trained on, so a head that memorised its members
looks like a trace in the model. The fresh-head probe separates the two: the members (minus the
calibration members) are split A/B by seed; a new trace head learns A against the externals on the
frozen backbone's tapped maps; its threshold is fitted on the calibration split; it scores B, whose
images no head ever saw, against the test split. Only a trace written into the backbone shows there.

The backbone is frozen, so its maps are computed once and the head trains on them (seconds, not the
backbone's minutes per epoch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import Benchmark
from .edits import edit_images
from .evaluate import fit_threshold, membership_metrics
from .head import TraceConfig, TraceHead
from .pair import AuditedPair, eval_mode
from .splits import MembershipSplit
from .streaming import take
from .train import one_cycle


@torch.no_grad()
def tapped_maps(pair: AuditedPair, images: torch.Tensor, batch_size: int = 512) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(maps per tap as float16, class logits) of uint8 images through the frozen backbone in eval mode."""
    maps: list[list[torch.Tensor]] = []
    logits = []
    with eval_mode(pair):
        for start in range(0, len(images), batch_size):
            out, taps = pair.classify(pair.normalize(images[start : start + batch_size]))
            maps.append([t.half() for t in taps])
            logits.append(out.float())
    return [torch.cat(m) for m in zip(*maps)], torch.cat(logits)


@torch.no_grad()
def trace_logits(head: TraceHead, maps: list[torch.Tensor], batch_size: int = 1024) -> torch.Tensor:
    head.eval()
    return torch.cat([head([m[i : i + batch_size].float() for m in maps]).float()
                      for i in range(0, len(maps[0]), batch_size)])


def train_head_on_maps(members: list[torch.Tensor], externals: list[torch.Tensor], cfg: TraceConfig,
                       epochs: int, seed: int = 0, batch_size: int = 128, lr: float = 2e-3,
                       weight_decay: float = 0.05) -> TraceHead:
    """A new trace head trained on precomputed maps: members (label 1) and externals (label 0) 1:1 per batch."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    head = TraceHead([tuple(m.shape[1:]) for m in members], cfg)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, len(members[0]) // batch_size)
    sched = one_cycle(opt, max(epochs * steps, 1))
    target = torch.cat([torch.ones(batch_size), torch.zeros(batch_size)])
    for _ in range(epochs):
        head.train()
        pm = torch.randperm(len(members[0]), generator=g)
        pe = torch.randperm(len(externals[0]), generator=g).repeat(len(members[0]) // len(externals[0]) + 1)
        for s in range(steps):
            im, ie = pm[s * batch_size : (s + 1) * batch_size], pe[s * batch_size : (s + 1) * batch_size]
            x = [torch.cat([m[im], e[ie]]).float() for m, e in zip(members, externals)]
            loss = F.binary_cross_entropy_with_logits(head(x), target[: len(x[0])] if len(im) == batch_size else
                                                      torch.cat([torch.ones(len(im)), torch.zeros(len(ie))]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return head.eval()


def probe_halves(split: MembershipSplit, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Members minus the calibration members, split in two halves A (to train on) and B (to score) by seed."""
    cal = set(split.calibration_members.tolist())
    rest = torch.tensor([i for i in split.members.tolist() if i not in cal])
    order = torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed))
    half = len(rest) // 2
    return rest[order[:half]], rest[order[half:]]


class MapCache:
    """Tapped maps of a frozen backbone, computed once per pool of images (members, externals, test ...)."""

    def __init__(self, pair: AuditedPair, bench: Benchmark):
        self.pair, self.bench, self._maps = pair, bench, {}
        self.test_logits: torch.Tensor | None = None

    def train(self, name: str, indices: torch.Tensor) -> list[torch.Tensor]:
        if name not in self._maps:
            self._maps[name] = tapped_maps(self.pair, take(self.bench.train_images, indices))[0]
        return self._maps[name]

    def test(self, n: int) -> list[torch.Tensor]:
        if "test" not in self._maps:
            self._maps["test"], self.test_logits = tapped_maps(self.pair, self.bench.test_images[:n])
        return self._maps["test"]

    def task_accuracy(self, n: int) -> float:
        self.test(n)
        return float((self.test_logits.argmax(1) == self.bench.test_labels[: len(self.test_logits)]).double().mean())


def score_trace(head: TraceHead, cache: MapCache, split: MembershipSplit, members: torch.Tensor,
                n_calibration_nonmembers: int | None = None, max_scored: int = 10_000) -> dict:
    """A trace head's metrics, the paper's protocol: threshold at the best balanced accuracy on the calibration
    members vs calibration non-members, then ``members`` vs the test split at that threshold."""
    cal_m = trace_logits(head, cache.train("cal_m", split.calibration_members))
    cal_n = trace_logits(head, cache.train(f"cal_n{n_calibration_nonmembers}",
                                           split.calibration_nonmembers[:n_calibration_nonmembers]))
    threshold = fit_threshold(cal_m, cal_n)
    scored = trace_logits(head, cache.train(f"scored{len(members)}:{int(members.sum())}", members[:max_scored]))
    out = membership_metrics(scored, trace_logits(head, cache.test(max_scored)), threshold, threshold_at_0_5=None)
    out["task_accuracy"] = cache.task_accuracy(max_scored)
    return out


def control_head(cache: MapCache, split: MembershipSplit, cfg: TraceConfig, epochs: int, seed: int = 0) -> TraceHead:
    """A trace head trained on a frozen backbone's maps, all members vs the externals (the passive / untrained controls)."""
    return train_head_on_maps(cache.train("members", split.members), cache.train("externals", split.external),
                              cfg, epochs, seed)


def fresh_head_probe(cache: MapCache, split: MembershipSplit, cfg: TraceConfig, epochs: int, seed: int = 1,
                     n_calibration_nonmembers: int | None = None, max_scored: int = 10_000) -> dict:
    """Train a new trace head on the frozen backbone with members A vs externals; score members B (never seen by
    any head) vs the test split, the threshold fitted on the calibration split."""
    a, b = probe_halves(split, seed)
    head = train_head_on_maps(cache.train("probe_a", a), cache.train("externals", split.external), cfg, epochs, seed)
    out = score_trace(head, cache, split, b, n_calibration_nonmembers, max_scored)
    out |= {"head_epochs": epochs, "n_train_members": len(a), "n_scored_members": min(len(b), max_scored), "seed": seed}
    return out


def trace_alone(pair: AuditedPair, bench: Benchmark, split: MembershipSplit, n_calibration_nonmembers: int | None = None,
                max_scored: int = 10_000, cache: MapCache | None = None) -> dict:
    """The pair's own trace head alone on its scored members (members minus calibration members) vs the test split."""
    if pair.head.trace is None:
        raise ValueError("this pair has no trace head")
    return score_trace(pair.head.trace, cache or MapCache(pair, bench), split, split.eval_members,
                       n_calibration_nonmembers, max_scored)


def trace_alone_edited(pair: AuditedPair, bench: Benchmark, split: MembershipSplit, edits: list[str],
                       n_calibration_nonmembers: int | None = None, max_scored: int = 2_000) -> dict[str, dict]:
    """The trace head alone on edited copies: scored members and test images edited alike (amint.edits), at the
    threshold fitted on the unedited calibration split (what a user's upload meets)."""
    return heads_on_edited({"trace": pair.head.trace}, MapCache(pair, bench), split, edits, n_calibration_nonmembers,
                           max_scored)["trace"]


def heads_on_edited(heads: dict[str, TraceHead], cache: MapCache, split: MembershipSplit, edits: list[str],
                    n_calibration_nonmembers: int | None = None, max_scored: int = 2_000) -> dict[str, dict[str, dict]]:
    """``trace_alone_edited`` for several heads on one frozen backbone: each edit is made and mapped once, each head
    read at its own threshold fitted on the unedited calibration split. {head name: {edit: metrics}}."""
    pair, bench = cache.pair, cache.bench
    cal_m = cache.train("cal_m", split.calibration_members)
    cal_n = cache.train(f"cal_n{n_calibration_nonmembers}", split.calibration_nonmembers[:n_calibration_nonmembers])
    thresholds = {name: fit_threshold(trace_logits(h, cal_m), trace_logits(h, cal_n)) for name, h in heads.items()}
    members = take(bench.train_images, split.eval_members[:max_scored])
    test = bench.test_images[:max_scored]
    out: dict[str, dict[str, dict]] = {name: {} for name in heads}
    for edit in edits:
        maps = [tapped_maps(pair, edit_images(x, edit, pair.config))[0] for x in (members, test)]
        for name, head in heads.items():
            m, n = (trace_logits(head, x) for x in maps)
            out[name][edit] = membership_metrics(m, n, thresholds[name], threshold_at_0_5=None)
    return out
