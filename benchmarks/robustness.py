"""How well does a pair recognise edited copies of its members? (the honest-limits numbers)

    python benchmarks/robustness.py models/fashion-mnist-resnet18 [--n 1000]

Scores n held-out members and n test-split non-members after the same edit (JPEG, shifts, noise,
resizing) and prints one JSON line per edit: AUC, TPR and FPR at the pair's calibrated threshold.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amint.data import MembershipSplit, load_benchmark  # noqa: E402
from amint.evaluate import balanced_eval_indices, roc_auc, score_images  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402


def encode(x: torch.Tensor, **save_kwargs) -> torch.Tensor:
    """Save each (grayscale) image to a file format in memory and read it back."""
    out = []
    for img in x:
        buf = io.BytesIO()
        Image.fromarray(img[0].numpy()).save(buf, **save_kwargs)
        out.append(torch.from_numpy(np.array(Image.open(buf))).unsqueeze(0))
    return torch.stack(out)


def noise(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def shift(x: torch.Tensor, dx: int) -> torch.Tensor:
    return torch.roll(x, shifts=dx, dims=3)


def resize_roundtrip(x: torch.Tensor, size: int) -> torch.Tensor:
    small = torch.nn.functional.interpolate(x.float(), size=size, mode="bilinear", antialias=True)
    return torch.nn.functional.interpolate(small, size=x.shape[-1], mode="bilinear").round().clamp(0, 255).to(torch.uint8)


EDITS = {
    "original": lambda x: x,
    "png round trip": lambda x: encode(x, format="PNG"),  # lossless: must equal the original
    "jpeg q95": lambda x: encode(x, format="JPEG", quality=95),
    "jpeg q75": lambda x: encode(x, format="JPEG", quality=75),
    "noise sigma 1/255": lambda x: noise(x, 1.0),
    "noise sigma 4/255": lambda x: noise(x, 4.0),
    "shift 1 px": lambda x: shift(x, 1),
    "resize 24 px and back": lambda x: resize_roundtrip(x, 24),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pair")
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    pair = AuditedPair.from_pretrained(args.pair)
    bench = load_benchmark(pair.config.dataset)
    split = MembershipSplit.from_config(pair.config.split)
    members, nonmembers = balanced_eval_indices(split)
    xm, xn = bench.train_images[members[: args.n]], bench.test_images[nonmembers[: args.n]]
    t = pair.config.threshold
    for name, edit in EDITS.items():
        sm = score_images(pair, edit(xm)).member_probability
        sn = score_images(pair, edit(xn)).member_probability
        print(json.dumps({"edit": name, "auc": round(roc_auc(sm, sn), 4),
                          "tpr_at_threshold": round(float((sm >= t).float().mean()), 4),
                          "fpr_at_threshold": round(float((sn >= t).float().mean()), 4), "n": args.n}), flush=True)


if __name__ == "__main__":
    main()
