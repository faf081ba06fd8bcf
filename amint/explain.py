"""What the MINT head looks at: activation maps and membership saliency as arrays.

The app draws them (amint/ui/plots.py); the CLI and tests use the arrays directly. No matplotlib here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .evaluate import scoring_precision
from .pair import eval_mode

if TYPE_CHECKING:
    from .pair import AuditedPair



# --- arrays -----------------------------------------------------------------------------------


def _model_batch(pair: AuditedPair, x: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W) -> normalised (1, C, H, W) on the pair's device."""
    c = pair.config.in_chans
    assert x.ndim == 3 and x.shape[0] == c, f"expected a ({c}, H, W) image, got {tuple(x.shape)}"
    return pair.normalize(x.unsqueeze(0).to(next(pair.parameters()).device))


def _unit(a: torch.Tensor) -> np.ndarray:
    """Scale to [0, 1]; a constant map becomes zeros rather than NaN."""
    a = a.float()
    lo, hi = a.min(), a.max()
    out = (a - lo) / (hi - lo) if hi > lo else torch.zeros_like(a)
    return out.cpu().numpy().astype(np.float32)


@torch.no_grad()
def forward_one(pair: AuditedPair, x: torch.Tensor):
    """The pair's one forward (PairOutput) for a uint8 (C, H, W) image, in eval mode and its scoring precision."""
    inp = _model_batch(pair, x)
    with eval_mode(pair), scoring_precision(pair, inp.device):
        return pair(inp)


def heat_maps(taps: list[str], maps: list[torch.Tensor], size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """Per tap: mean |activation| over channels, upsampled to ``size``, scaled to [0, 1]."""
    out = []
    for name, m in zip(taps, maps):
        energy = m.float().abs().mean(dim=1, keepdim=True)
        up = F.interpolate(energy, size=size, mode="bilinear", align_corners=False)
        out.append((name, _unit(up[0, 0])))
    return out


def activation_maps(pair: AuditedPair, x: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """Per tap: mean |activation| over channels, upsampled to the input size, scaled to [0, 1]."""
    return heat_maps(pair.config.taps, forward_one(pair, x).maps, tuple(x.shape[1:]))


def membership_saliency(pair: AuditedPair, x: torch.Tensor, base_logit: torch.Tensor | None = None) -> np.ndarray:
    """Which pixels move the membership score, HxW in [0, 1].

    |d membership logit / d input| (max over channels, 3x3 mean) where the head is only a trace head;
    where it has hashed memories, whose scores depend on the input through sign bits only, the drop
    in score when each 4x4 patch is replaced by the dataset mean (occlusion: one batched forward,
    beside ``base_logit``, the image's own logit when the caller already has it).
    """
    if pair.head.memories:
        with eval_mode(pair):
            inp = _model_batch(pair, x)
            base = base_logit if base_logit is not None else forward_one(pair, x).membership_logit[0]
            return _unit(_occlusion(pair, inp, base)[0, 0])
    with eval_mode(pair), torch.enable_grad():
        inp = _model_batch(pair, x).detach().requires_grad_(True)
        mint = pair(inp).membership_logit
        # autograd.grad only touches the input: no parameter .grad is written.
        (grad,) = torch.autograd.grad(mint.sum(), inp, allow_unused=True)
        if grad is None:
            heat = torch.zeros_like(inp[:, :1])
        else:
            heat = grad.abs().amax(dim=1, keepdim=True)
            # Raw gradients are speckled pixel by pixel; a 3x3 mean shows the regions that matter.
            heat = F.avg_pool2d(heat, 3, stride=1, padding=1, count_include_pad=False)
    return _unit(heat[0, 0])


@torch.no_grad()
def _occlusion(pair: AuditedPair, inp: torch.Tensor, base: torch.Tensor, patch: int = 4, stride: int = 2) -> torch.Tensor:
    """Score drop per pixel, averaged over the patches covering it; one batched forward pass."""
    _, _, h, w = inp.shape
    corners = [(i, j) for i in range(0, h - patch + 1, stride) for j in range(0, w - patch + 1, stride)]
    batch = inp.repeat(len(corners), 1, 1, 1)
    for k, (i, j) in enumerate(corners):
        batch[k, :, i : i + patch, j : j + patch] = 0.0  # normalised input: 0 is the dataset mean
    with scoring_precision(pair, inp.device):
        drops = (base - pair(batch).membership_logit).clamp(min=0).cpu()
    heat, count = torch.zeros(1, 1, h, w), torch.zeros(1, 1, h, w)
    for k, (i, j) in enumerate(corners):
        heat[..., i : i + patch, j : j + patch] += drops[k].item()
        count[..., i : i + patch, j : j + patch] += 1
    return heat / count.clamp(min=1)
