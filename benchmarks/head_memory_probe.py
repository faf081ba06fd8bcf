"""How fast can a head memorise members? A probe on raw Fashion-MNIST pixels (fixed keys).

    python benchmarks/head_memory_probe.py --activation relu --hidden 4096 --lr 1e-3 --epochs 15
    python benchmarks/head_memory_probe.py --activation sin --hidden 16384 --lr 2e-4 --epochs 4

10k members vs 10k externals from the training split, 1:1 batches of 128+128, AdamW; after each
epoch: AUC and TPR at 1% FPR of 5k held-out members vs 5k test images, and the AUC when the members
get Gaussian noise (sigma 0.1 in normalised units, about 9/255). This isolates the head's memory
from the backbone: with a ReLU MLP it is the bottleneck, with Fourier features it is not.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amint.data import load_benchmark, make_split  # noqa: E402
from amint.evaluate import roc_auc, tpr_at_fpr  # noqa: E402


class FourierFeatures(torch.nn.Module):
    """cos(Wx + b), W ~ N(0, frequency^2 / in_features): the probe's sharp random features (not in the library)."""

    def __init__(self, in_features: int, out_features: int, frequency: float):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)
        torch.nn.init.normal_(self.linear.weight, std=frequency / in_features**0.5)
        torch.nn.init.uniform_(self.linear.bias, 0, 2 * math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cos(self.linear(x))



def head(activation: str, hidden: int, frequency: float) -> torch.nn.Module:
    if activation == "relu":
        return torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
                                   torch.nn.Linear(hidden, 1))
    return torch.nn.Sequential(FourierFeatures(784, hidden, frequency), torch.nn.Linear(hidden, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", choices=["relu", "sin"], default="sin")
    ap.add_argument("--hidden", type=int, default=16384)
    ap.add_argument("--frequency", type=float, default=18.7)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    torch.manual_seed(0)
    b = load_benchmark("fashion-mnist")
    s = make_split(60000, 10000, 10000, 10000, 2000, seed=0)
    x = ((b.train_images.float() / 255 - 0.286) / 0.353).view(60000, -1)
    xt = ((b.test_images.float() / 255 - 0.286) / 0.353).view(10000, -1)
    model = head(args.activation, args.hidden, args.frequency)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0)
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        pm, pe = s.members[torch.randperm(len(s.members))], s.external[torch.randperm(len(s.external))]
        for i in range(0, len(pm), 128):
            batch = torch.cat([x[pm[i:i + 128]], x[pe[i:i + 128]]])
            target = torch.cat([torch.ones(len(pm[i:i + 128])), torch.zeros(len(pe[i:i + 128]))])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch).squeeze(1), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            sm, sn = model(x[s.eval_members[:5000]]).squeeze(1), model(xt[:5000]).squeeze(1)
            noisy = model(x[s.eval_members[:5000]] + 0.1 * torch.randn(5000, 784)).squeeze(1)
        print(f"epoch {epoch}: auc {roc_auc(sm, sn):.3f} tpr@1%fpr {tpr_at_fpr(sm, sn, 0.01):.3f} "
              f"noisy-member auc {roc_auc(noisy, sn):.3f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
