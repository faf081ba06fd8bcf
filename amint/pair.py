"""The AuditedPair: audited backbone + MINT head in one module, and its Hugging Face layout.

A pair folder holds ``config.json`` (the single record of everything about the pair),
``model.safetensors`` and ``README.md`` (the model card). It loads from a local folder or from a
Hub repo id with an optional ``@revision``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from .backbones import TapRecorder, create_backbone, setup_taps
from .head import HeadConfig, MintHead

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"


@dataclass
class PairConfig:
    backbone: str  # timm model name
    num_classes: int
    in_chans: int
    image_size: int  # square input side in pixels
    mean: list[float]  # per-channel normalisation, pixel values in [0, 1]
    std: list[float]
    class_names: list[str]
    setup: str = "middle"  # entry / middle / output, or "custom" when taps are given explicitly
    taps: list[str] = field(default_factory=list)  # module names; filled from setup when empty
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to timm.create_model
    head: dict[str, Any] = field(default_factory=lambda: HeadConfig().to_dict())
    threshold: float = 0.5  # member probability at or above which the verdict is "member"
    threshold_fpr: float | None = None  # its false-positive rate on the calibration non-members
    calibration: dict[str, Any] = field(default_factory=dict)  # score histograms of calibration members / non-members
    dataset: str = ""
    split: dict[str, Any] = field(default_factory=dict)  # MembershipSplit.to_config(): regenerates the members
    metrics: dict[str, Any] = field(default_factory=dict)  # evaluate_pair() output
    training: dict[str, Any] = field(default_factory=dict)  # the TrainConfig it was trained with, and its history
    amint_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PairConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown key(s) in pair config: {unknown}. Is this pair from a newer amint?")
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(_finite(self.to_dict()), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "PairConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf; store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class AuditedPair(nn.Module):
    """Audited classifier plus MINT head. ``forward(x)`` returns (class logits, membership logit)."""

    def __init__(self, config: PairConfig):
        super().__init__()
        self.config = config
        self.backbone = create_backbone(
            config.backbone, config.num_classes, config.in_chans, config.image_size, config.backbone_kwargs
        )
        if not config.taps:
            config.taps = setup_taps(self.backbone, config.setup)
        self._recorder = TapRecorder(self.backbone, config.taps)
        self._prefix_tokens = getattr(self.backbone, "num_prefix_tokens", 0)
        head_cfg = HeadConfig(**config.head)
        self.head = MintHead(self._tap_shapes(), head_cfg)
        checksum = self.head.check_features(head_cfg)
        if checksum is not None:
            config.head["feature_checksum"] = checksum
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)

    @torch.no_grad()
    def _tap_shapes(self) -> list[tuple[int, int, int]]:
        was_training = self.backbone.training
        self.backbone.eval()
        x = torch.zeros(1, self.config.in_chans, self.config.image_size, self.config.image_size)
        self.backbone(x)
        self.backbone.train(was_training)
        return [tuple(m.shape[1:]) for m in self._taken_maps()]

    def _taken_maps(self) -> list[torch.Tensor]:
        return [self._as_map(m) for m in self._recorder.take()]

    def _as_map(self, t: torch.Tensor) -> torch.Tensor:
        """Token sequences (B, N, C) from a ViT become (B, C, h, w) maps without the prefix tokens."""
        if t.ndim == 4:
            return t
        tokens = t[:, self._prefix_tokens :]
        side = math.isqrt(tokens.shape[1])
        assert side * side == tokens.shape[1], "patch tokens do not form a square grid"
        return tokens.transpose(1, 2).reshape(t.shape[0], t.shape[2], side, side)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0,1] float) NCHW images to the backbone's normalised float input."""
        x = images.float()
        if images.dtype == torch.uint8:
            x = x / 255.0
        return (x - self.mean) / self.std

    def forward_maps(self, x: torch.Tensor, detach_taps: bool = False):
        """Class logits, membership logit and the tapped maps; detach_taps gives the passive baseline."""
        logits = self.backbone(x)
        maps = self._taken_maps()
        head_in = [m.detach() for m in maps] if detach_taps else maps
        return logits, self.head(head_in), maps

    def forward(self, x: torch.Tensor, detach_taps: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        logits, mint_logit, _ = self.forward_maps(x, detach_taps)
        return logits, mint_logit

    # --- persistence -------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, card: str | None = None) -> Path:
        """Write config.json, model.safetensors and README.md (the model card) into ``folder``."""
        from .card import render_model_card

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder / CONFIG_NAME)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "amint_version": __version__})
        (folder / CARD_NAME).write_text(card if card is not None else render_model_card(self.config))
        return folder

    @classmethod
    def from_pretrained(cls, source: str | Path, revision: str | None = None, token: str | None = None) -> "AuditedPair":
        """Load from a local folder, or a Hub repo id ``owner/name`` (optionally ``owner/name@revision``)."""
        folder = resolve_pair_folder(source, revision, token)
        config = PairConfig.load(folder / CONFIG_NAME)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{folder} has a config.json but no {WEIGHTS_NAME}")
        pair = cls(config)
        state = load_file(str(weights))
        missing, unexpected = pair.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"Weights in {weights} do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return pair.eval()

    def push_to_hub(self, repo_id: str, token: str | None = None, private: bool = False) -> str:
        """Create (if needed) the Hub repo and upload the pair folder; returns the repo URL."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        url = api.create_repo(repo_id, exist_ok=True, private=private)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message="Upload aMINT pair")
        return str(url)


def split_revision(source: str) -> tuple[str, str | None]:
    """``owner/name@rev`` -> (``owner/name``, ``rev``)."""
    if "@" in source:
        repo_id, revision = source.rsplit("@", 1)
        return repo_id, revision or None
    return source, None


def resolve_pair_folder(source: str | Path, revision: str | None = None, token: str | None = None) -> Path:
    """A local folder as is; otherwise download the pair's files from the Hub (cached)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path} is not a pair folder: it has no {CONFIG_NAME}")
        return path
    repo_id, rev = split_revision(str(source))
    revision = revision or rev
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")) or path.suffix:
        raise FileNotFoundError(f"{source!r} is neither a pair folder nor a Hub repo id of the form owner/name")
    return _download(repo_id, revision, token)


def _download(repo_id: str, revision: str | None, token: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = Path(
            snapshot_download(repo_id, revision=revision, token=token, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
        )
    except GatedRepoError as e:
        raise PermissionError(f"Hub repo {repo_id!r} is gated: accept its terms and pass a token") from e
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(f"No Hub repo {repo_id!r} (or it is private and no valid token was given)") from e
    except RevisionNotFoundError as e:
        raise FileNotFoundError(f"Hub repo {repo_id!r} has no revision {revision!r}") from e
    except (EntryNotFoundError, LocalEntryNotFoundError) as e:
        raise ConnectionError(f"Could not download {where} from the Hub (offline or unreachable): {e}") from e
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"Hub repo {where} holds no aMINT pair: {CONFIG_NAME} is missing")
    return folder
