"""Membership splits: index tensors into a benchmark, regenerated exactly from a seed and sizes.

Members (pool D) train the audited model; externals (pool E) train the MINT head as non-members;
calibration members and half of the calibration non-members fit the readout and the threshold, the
other half only measures the threshold's false-positive rate (``calibration_halves``); held-out
members and the official test split are what the pair is scored on.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass

import torch


@dataclass
class MembershipSplit:
    """Index tensors (int64) for one membership experiment. Regenerated exactly from seed and sizes."""

    seed: int
    members: torch.Tensor  # into the train split: pool D, the audited model's training members
    external: torch.Tensor  # into the train split: pool E, non-members that train the MINT head (label 0)
    calibration_nonmembers: torch.Tensor  # into the train split, disjoint from D and E, never trained on
    calibration_members: torch.Tensor  # a subset of members, same size as calibration_nonmembers
    eval_members: torch.Tensor  # members minus calibration_members
    eval_nonmembers: torch.Tensor  # into the TEST split: all of it
    n_train: int  # size of the train split the indices point into (needed to regenerate)

    @property
    def n_test(self) -> int:
        return len(self.eval_nonmembers)

    def to_config(self) -> dict:
        """JSON-able record; from_config regenerates the split from it and checks the members digest."""
        return {
            "seed": self.seed,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_members": len(self.members),
            "n_external": len(self.external),
            "n_calibration": len(self.calibration_nonmembers),
            "n_eval_members": len(self.eval_members),
            "n_eval_nonmembers": len(self.eval_nonmembers),
            "members_sha256": _digest(self.members),
        }

    @classmethod
    def from_config(cls, cfg: dict) -> "MembershipSplit":
        keys = set(cls._config_keys())
        if set(cfg) != keys:
            raise ValueError(f"split config keys differ: missing {sorted(keys - set(cfg))}, "
                             f"unknown {sorted(set(cfg) - keys)}")
        split = make_split(cfg["n_train"], cfg["n_test"], cfg["n_members"], cfg["n_external"],
                           cfg["n_calibration"], seed=cfg["seed"])
        regenerated = split.to_config()
        if regenerated["members_sha256"] != cfg["members_sha256"]:
            raise ValueError(
                "regenerated members differ from the saved split (sha256 mismatch): the config was edited "
                "or written by a different split procedure; retrain or restore the original config"
            )
        if regenerated != cfg:
            raise ValueError(f"split config is inconsistent: saved {cfg}, regenerated {regenerated}")
        return split

    @staticmethod
    def _config_keys() -> list[str]:
        return ["seed", "n_train", "n_test", "n_members", "n_external", "n_calibration",
                "n_eval_members", "n_eval_nonmembers", "members_sha256"]


def calibration_halves(split: MembershipSplit) -> tuple[torch.Tensor, torch.Tensor]:
    """The calibration non-members in two disjoint halves, (fit, measure), drawn from the split's seed.

    Half A (the first, ceil(n/2) images) fits the readout and the threshold beside the calibration
    members; half B (floor(n/2)) is never fitted on and only measures the false-positive rate at that
    threshold. The permutation has its own generator, derived from the seed, so it is the same
    wherever the split is regenerated and does not disturb the split's own draws.
    """
    seed = int.from_bytes(hashlib.sha256(f"amint calibration halves {split.seed}".encode()).digest()[:8], "little")
    g = torch.Generator().manual_seed(seed >> 1)  # manual_seed takes a non-negative int64
    order = torch.randperm(len(split.calibration_nonmembers), generator=g)
    n_fit = len(order) - len(order) // 2
    return split.calibration_nonmembers[order[:n_fit]], split.calibration_nonmembers[order[n_fit:]]


def _digest(indices: torch.Tensor) -> str:
    # Fixed byte order and width so the digest is the same on every platform.
    return hashlib.sha256(indices.numpy().astype("<i8").tobytes()).hexdigest()


def make_split(n_train: int, n_test: int, n_members: int, n_external: int, n_calibration: int,
               seed: int = 0) -> MembershipSplit:
    """Draw members, external and calibration pools from one seeded permutation of the train split."""
    n_train, n_test, n_members, n_external, n_calibration, seed = (
        _as_int(v, k) for k, v in (("n_train", n_train), ("n_test", n_test), ("n_members", n_members),
                                   ("n_external", n_external), ("n_calibration", n_calibration),
                                   ("seed", seed)))
    _check_sizes(n_train, n_test, n_members, n_external, n_calibration)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_train, generator=g)
    members = perm[:n_members]
    external = perm[n_members:n_members + n_external]
    calibration_nonmembers = perm[n_members + n_external:n_members + n_external + n_calibration]
    pick = torch.randperm(n_members, generator=g)
    return MembershipSplit(
        seed=seed,
        members=members,
        external=external,
        calibration_nonmembers=calibration_nonmembers,
        calibration_members=members[pick[:n_calibration]],
        eval_members=members[pick[n_calibration:]],
        eval_nonmembers=torch.arange(n_test),
        n_train=n_train,
    )


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def _check_sizes(n_train: int, n_test: int, n_members: int, n_external: int, n_calibration: int) -> None:
    if min(n_train, n_test, n_external, n_calibration) < 0 or n_members < 1:
        raise ValueError(f"split sizes must be non-negative and n_members >= 1 (got n_train={n_train}, "
                         f"n_test={n_test}, n_members={n_members}, n_external={n_external}, "
                         f"n_calibration={n_calibration})")
    total = n_members + n_external + n_calibration
    if total > n_train:
        raise ValueError(f"n_members + n_external + n_calibration = {total} exceeds the {n_train} training "
                         f"images; reduce them by {total - n_train} (see default_split_sizes)")
    if n_calibration >= n_members:
        raise ValueError(f"n_calibration ({n_calibration}) must be smaller than n_members ({n_members}): "
                         f"calibration members are drawn from the members; lower n_calibration")
