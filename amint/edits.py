"""The edit suite: what people do to an image before they upload it.

Each named edit is a deterministic PIL operation on the image as a person holds it (before the
pair's own preprocessing): real JPEG encoding, resampling up and back, moves with the background
filled in, crops, sensor-like noise, brightness. The evaluation applies the same named edit to
members and non-members alike; training draws random edits from ranges (``random_edit``) so that
the detector does not learn the evaluation settings themselves.

The edits themselves are PIL and numpy: the app lists them before torch has loaded. torch is
imported by the batch functions at the end (``edit_images``, ``random_edits``).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

    from .preprocess import InputSpec

Edit = Callable[[Image.Image], Image.Image]


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Encode as JPEG at ``quality`` (PIL's default 4:2:0 subsampling for colour) and decode."""
    buf = io.BytesIO()
    image.convert("L" if image.mode in ("L", "1", "I", "F") else "RGB").save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert(image.mode) if image.mode in ("L", "RGB") else out.copy()


def png(image: Image.Image) -> Image.Image:
    """Lossless round trip: the exact pixels, as a control."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    buf.seek(0)
    with Image.open(buf) as out:
        return out.copy()


def enlarge(image: Image.Image, side: int, resample: int = Image.BICUBIC) -> Image.Image:
    """Scale so the short side is ``side`` px, as a person zooming in before saving."""
    w, h = image.size
    s = side / min(w, h)
    return image.resize((max(1, round(w * s)), max(1, round(h * s))), resample)


def background(image: Image.Image) -> int | tuple[int, ...]:
    """The most common value on the border: what a move or a zoom-out fills the new area with."""
    a = np.asarray(image)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).reshape(-1, 1 if a.ndim == 2 else a.shape[2])
    values, counts = np.unique(border, axis=0, return_counts=True)
    best = values[counts.argmax()]
    return int(best[0]) if len(best) == 1 else tuple(int(v) for v in best)


def shift(image: Image.Image, dx: int, dy: int) -> Image.Image:
    """Move the content right by dx and down by dy px; the uncovered strip gets the background."""
    out = Image.new(image.mode, image.size, background(image))
    out.paste(image, (dx, dy))
    return out


def crop_center(image: Image.Image, fraction: float, resample: int = Image.BICUBIC) -> Image.Image:
    """Keep the centre ``fraction`` of each side and resize back to the original size (a zoom in)."""
    w, h = image.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch)).resize((w, h), resample)


def add_noise(image: Image.Image, sigma: float, seed: int | None = None) -> Image.Image:
    """Gaussian noise of ``sigma`` (in 0..255 units); seeded from the pixels unless a seed is given."""
    a = np.asarray(image).astype(np.float64)
    seed = zlib.crc32(a.astype(np.uint8).tobytes()) if seed is None else seed
    noisy = a + np.random.default_rng(seed).normal(0.0, sigma, a.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8), image.mode)


def brightness(image: Image.Image, factor: float) -> Image.Image:
    a = np.asarray(image).astype(np.float64) * factor
    return Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8), image.mode)


EDITS: dict[str, Edit] = {
    "png": png,
    "jpeg90": lambda im: jpeg(im, 90),
    "jpeg75": lambda im: jpeg(im, 75),
    "jpeg50": lambda im: jpeg(im, 50),
    "resize224": lambda im: enlarge(im, 224),
    "resize56": lambda im: enlarge(im, 56),
    "shift1": lambda im: shift(im, 1, 1),
    "shift2": lambda im: shift(im, 2, 2),
    "crop92": lambda im: crop_center(im, 0.92),
    "noise4": lambda im: add_noise(im, 4.0),
    "bright90": lambda im: brightness(im, 0.9),
    "screenshot": lambda im: jpeg(enlarge(im, 224), 80),
}
EDIT_NAMES = tuple(EDITS)

# One-line descriptions for the CLI, the app and reports.
EDIT_DESCRIPTIONS = {
    "png": "saved as PNG: the exact pixels",
    "jpeg90": "saved as JPEG, quality 90",
    "jpeg75": "saved as JPEG, quality 75",
    "jpeg50": "saved as JPEG, quality 50",
    "resize224": "enlarged to 224 px, bicubic",
    "resize56": "enlarged to 56 px, bicubic",
    "shift1": "moved by 1 px right and down",
    "shift2": "moved by 2 px right and down",
    "crop92": "centre 92% cropped, resized back",
    "noise4": "Gaussian noise, sigma 4/255",
    "bright90": "brightness x0.9",
    "screenshot": "enlarged to 224 px, then JPEG 80",
}


@dataclass(frozen=True)
class Adjustable:
    """An edit with a strength a person sets (the app's "edit and watch" slider)."""

    apply: Callable[[Image.Image, float], Image.Image]
    low: float
    high: float
    default: float
    step: float
    label: str  # what the strength is, in the slider's words


ADJUSTABLE: dict[str, Adjustable] = {
    "jpeg": Adjustable(lambda im, q: jpeg(im, round(q)), 5, 100, 50, 1, "JPEG quality (lower = more artefacts)"),
    "enlarge": Adjustable(lambda im, s: enlarge(im, round(s)), 32, 448, 224, 4, "short side after enlarging (px)"),
    "shift": Adjustable(lambda im, d: shift(im, round(d), round(d)), 0, 4, 2, 1, "pixels moved right and down"),
    "crop": Adjustable(lambda im, f: crop_center(im, f / 100), 70, 100, 92, 1, "% of each side kept, resized back"),
    "noise": Adjustable(lambda im, s: add_noise(im, s), 0, 32, 8, 1, "noise sigma (0..255 units)"),
    "brightness": Adjustable(lambda im, f: brightness(im, f / 100), 50, 150, 80, 5, "brightness (%)"),
    "screenshot": Adjustable(lambda im, q: jpeg(enlarge(im, 224), round(q)), 5, 100, 80, 1,
                             "enlarged to 224 px, then JPEG at this quality"),
}


def apply_edit(image: Image.Image, name: str, strength: float | None = None) -> Image.Image:
    """The edit ``name`` of ``image``: an adjustable edit at ``strength`` (its default when None), or a suite edit
    (at its own strength). ValueError names the choices for an unknown name, and the range for a strength outside it
    (a typo is not silently clipped)."""
    if name in ADJUSTABLE:
        edit = ADJUSTABLE[name]
        value = edit.default if strength is None else float(strength)
        if not edit.low <= value <= edit.high:
            raise ValueError(f"Strength {value:g} is outside {edit.low:g}..{edit.high:g} for {name} ({edit.label})")
        return edit.apply(image, value)
    if name in EDITS:  # a suite edit has one strength of its own: a strength given is not used
        return EDITS[name](image)
    raise ValueError(f"Unknown edit {name!r}: choose one of {', '.join((*ADJUSTABLE, *EDIT_NAMES))}")


# --- edits drawn from ranges, for training -------------------------------------------------------

_RESAMPLE = (Image.BICUBIC, Image.BILINEAR, Image.LANCZOS, Image.NEAREST)


def random_edit(image: Image.Image, rng: np.random.Generator, moves: bool = False) -> Image.Image:
    """A random chain of re-encodings a person's tools make, drawn from ranges wider than the suite's.

    Re-encodings keep the pixels where they were: enlarging by 1.5-10x with one of four filters, then
    back to the original size as a pair's preprocessing does (antialiased bilinear); JPEG quality
    30-95; noise sigma 0-8; brightness 0.8-1.2. With ``moves``, also a shift of up to 2 px or a
    centre crop of 90-100% (the accidental moves of a screenshot or a sloppy crop).
    """
    w, h = image.size
    out = image
    if rng.random() < 0.6:
        side = int(min(w, h) * rng.uniform(1.5, 10.0))
        out = enlarge(out, side, _RESAMPLE[rng.integers(len(_RESAMPLE))]).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.3:
        out = brightness(out, rng.uniform(0.8, 1.2))
    if rng.random() < 0.3:
        out = add_noise(out, rng.uniform(0.0, 8.0), seed=int(rng.integers(2**31)))
    if moves and rng.random() < 0.5:
        if rng.random() < 0.5:
            out = shift(out, int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
        else:
            out = crop_center(out, rng.uniform(0.90, 1.0))
    if rng.random() < 0.7:
        out = jpeg(out, int(rng.integers(30, 96)))
    return out


def to_pil(a: np.ndarray) -> Image.Image:
    """An image array as a PIL image: uint8 HxW, HxWx1, HxWx3 or HxWx4 as it is (datasets hold images so); float
    arrays in [0, 1] (matplotlib, skimage) scaled to 0..255, anything else clipped there. ValueError for other shapes."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise ValueError(f"array of shape {a.shape}; expected HxW, HxWx3 or HxWx4")
    if a.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(a.dtype, np.floating) and np.nanmax(a) <= 1.0 else 1.0
        a = np.clip(np.nan_to_num(a.astype(np.float64) * scale), 0, 255).round().astype(np.uint8)
    return Image.fromarray(a)


def edit_images(images: torch.Tensor, edit: str | Edit, spec: InputSpec) -> torch.Tensor:
    """Edit each uint8 (N, C, H, W) image as a PIL image, then preprocess it as the pair would an upload."""
    import torch

    from .preprocess import preprocess

    fn = EDITS[edit] if isinstance(edit, str) and edit in EDITS else edit
    if isinstance(fn, str):
        raise ValueError(f"Unknown edit {fn!r}: choose one of {', '.join(EDIT_NAMES)}")
    if len(images) == 0:
        return images.clone()
    return torch.stack([preprocess(fn(to_pil(a.permute(1, 2, 0).numpy())), spec) for a in images])


def random_edits(images: torch.Tensor, spec: InputSpec, seed: int, moves: bool = False) -> torch.Tensor:
    """One ``random_edit`` view of each image, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return edit_images(images, lambda im: random_edit(im, rng, moves), spec)


# --- edit families: what a pair's false-positive rate is measured on ----------------------------------

# The images as they are, each suite edit, and the random chains calibration draws (``random_edit``
# with moves): a pair states its false-positive bound for each (amint.pvalue.FprRecord).
EDIT_FAMILIES = ("exact", *EDIT_NAMES, "random")
FAMILY_DESCRIPTIONS = {"exact": "the images as they are", **EDIT_DESCRIPTIONS,
                       "random": "a random chain of re-encodings and small moves (random_edit)"}


def family_images(images: torch.Tensor, family: str, spec: InputSpec, seed: int = 0) -> torch.Tensor:
    """uint8 (N, C, H, W) images at the model's size, as the edit family makes them (``random``: from ``seed``)."""
    if family == "exact":
        return images
    if family == "random":
        return random_edits(images, spec, seed, moves=True)
    if family not in EDITS:
        raise ValueError(f"Unknown edit family {family!r}: choose one of {', '.join(EDIT_FAMILIES)}")
    return edit_images(images, family, spec)
