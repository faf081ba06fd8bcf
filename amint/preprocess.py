"""What the model sees: an upright image in the pair's mode, short side resized, centre-cropped."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageOps


class InputSpec(Protocol):
    in_chans: int
    image_size: int


def preprocess(image: Image.Image, config: InputSpec) -> torch.Tensor:
    """uint8 (C, H, W) as the model sees it: upright, gray or RGB, short side resized, centre-cropped."""
    im = ImageOps.exif_transpose(image)
    im = _to_mode(im, "L" if config.in_chans == 1 else "RGB")
    im = _resize_crop(im, config.image_size)
    a = np.asarray(im, dtype=np.uint8)
    x = torch.from_numpy(a.copy())
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        im = _to_8bit(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels would otherwise turn black; a white page is what a person sees.
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return im.convert(mode) if im.mode != mode else im


def _to_8bit(im: Image.Image) -> Image.Image:
    # NaN and inf (float TIFFs) carry no brightness: they read as black instead of poisoning the max.
    a = np.nan_to_num(np.asarray(im).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = a.max() if a.size else 0
    scale = 255.0 if top <= 1.0 and im.mode == "F" else (255.0 / 65535.0 if top > 255 else 1.0)
    return Image.fromarray(np.clip(a * scale, 0, 255).round().astype(np.uint8))


def _resize_crop(im: Image.Image, size: int) -> Image.Image:
    """Short side to ``size``, centre square kept: the same pixels as resize-then-crop, computed
    for the kept square only (PIL's ``box``), so a 40,000 x 1 strip never becomes a huge image."""
    w, h = im.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        left, top = (nw - size) // 2, (nh - size) // 2
        sx, sy = w / nw, h / nh
        # PIL's bilinear resize widens its filter when shrinking, i.e. it is antialiased; with a box it
        # still reads source pixels outside the box, so the edges match a full resize exactly.
        im = im.resize((size, size), Image.BILINEAR, box=(left * sx, top * sy, (left + size) * sx, (top + size) * sy))
    return im
