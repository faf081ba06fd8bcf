"""What publishing a pair reveals, and the copies that leave part of it out.

A pair's hashed memories answer, for any image, whether it landed in its members' buckets and whether it
landed in its externals' buckets: whoever downloads a pair with memories can tell, for images they hold,
who was in its training set (pool D) and who was in its external set (pool E).
``benchmarks/reconstruction_attack.py`` measures that on the default pair, and how far the memories let
someone rebuild a member image; ``amint.reveal`` puts its figures into words.

Two copies leave part out: without the external tables (the member tables still give the verdict) or
without any memory (the audited model and the trace head alone: the aMINT verdict stays, the fingerprint
index stays with the owner). What the fingerprint reads changes, so the copy's readings (their Platt
weights, probability maps, thresholds and false-positive records) and metrics are refitted on the pair's
own calibration split and scored images, as training fitted them: the copy needs the benchmark. The pair
it is made from is not changed.
"""

from __future__ import annotations

import copy

import torch

from .data import Benchmark, load_benchmark
from .evaluate import calibrate, evaluate_pair
from .pair import AuditedPair, PairConfig
from .readings import stored_targets
from .reveal import LEAVE_OUT
from .splits import MembershipSplit


def publishable(pair: AuditedPair, leave_out: str, bench: Benchmark | None = None, data_root: str | None = None,
                device: str | torch.device | None = None) -> AuditedPair:
    """A copy of ``pair`` without ``leave_out`` ("externals" or "memories"; "" = the pair itself), its readings and
    metrics refitted on the pair's split of ``bench`` (default: loaded from the config)."""
    if leave_out not in LEAVE_OUT:
        raise ValueError(f"leave_out must be one of {sorted(LEAVE_OUT)}, not {leave_out!r}")
    if not leave_out:
        return pair
    if not pair.head.memories:
        raise ValueError("this pair has no hashed memories: there is nothing to leave out")
    if leave_out == "externals" and all(m.externals is None for m in pair.head.memories.values()):
        raise ValueError("this pair's memories have no external tables: there is nothing to leave out")
    if leave_out == "memories" and pair.head.trace is None:
        raise ValueError("this pair has no trace head: without its memories nothing would detect members")
    if not pair.config.split:
        raise ValueError("this pair records no membership split: its threshold cannot be refitted")
    if bench is None:
        try:
            bench = load_benchmark(pair.config.dataset, data_root, image_size=pair.config.image_size)
        except (OSError, ValueError) as e:
            raise ValueError(f"leaving out {leave_out} refits the pair's threshold on its own calibration split, which "
                             f"needs its dataset {pair.config.dataset!r} here (give its data root): {e}") from e
    split = MembershipSplit.from_config(pair.config.split)
    if (len(bench.train_images), len(bench.test_images)) != (split.n_train, split.n_test):
        raise ValueError(f"benchmark {bench.name!r} is not the one this pair's split was drawn from: wrong data root")

    data = copy.deepcopy(pair.config.to_dict())
    if leave_out == "externals":
        for memory in data["head"]["memories"].values():
            memory["externals"] = False
    else:
        data["head"]["memories"] = {}
    data["left_out"] = leave_out
    data["readings"] = {}  # fitted below on what the copy reads
    config = PairConfig.from_dict(data)
    out = AuditedPair(config)
    # Everything the copy has: its weights and what is left of its memories.
    wanted = out.state_dict()
    missing, unexpected = out.load_state_dict({k: v for k, v in pair.state_dict().items() if k in wanted}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    out = out.to(device or next(pair.parameters()).device).eval()

    # each reading refitted at its own target (a legacy combined reading's target serves both new ones)
    legacy = next((r.calibration.get("target_fpr") for r in pair.readings.values()), None)
    target = stored_targets(pair.readings, default=legacy)
    out.set_readings(calibrate(out, bench, split, target, device=device))
    config.metrics = evaluate_pair(out, bench, split, device=device)
    return out
