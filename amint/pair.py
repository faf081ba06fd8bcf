"""The AuditedPair: audited backbone + MINT head in one module, and its Hugging Face layout.

A pair folder holds ``config.json`` (the single record of everything about the pair),
``model.safetensors`` and ``README.md`` (the model card). It loads from a local folder or from a
Hub repo id with an optional ``@revision``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from .backbones import create_backbone, setup_taps, tap_indices
from .card import notes_of, render_model_card
from .catalog import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME  # noqa: F401  (also imported from here)
from .fingerprint import Lookup
from .head import HeadConfig, MintHead
from .readings import Reading, headline, legacy_reading

PRECISIONS = ("float32", "bfloat16")
# A pair saved before readings (amint 0.1 before issue 17) kept its one readout in the config's top level ...
LEGACY_KEYS = ("threshold", "threshold_fpr", "fpr_record", "calibration")
# ... and its readout's weights and isotonic knots in model.safetensors: read into the legacy "combined"
# reading, kept in the file when the pair is saved again (so its weights file need not change).
LEGACY_TENSORS = ("head.readout.weight", "head.readout.bias", "head.calibration_knots")
COMBINED = "combined"

# A pair's config.json comes from strangers (any Hub repo): these bounds are checked before anything
# is built, so an absurd value fails in words instead of in a multi-GB allocation.
MAX_IMAGE_SIZE = 1024  # pixels a side; the paper's inputs are 28-224
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
# Bytes of the weights and buffers the pair allocates (float64 memory buffers count 8 each, uint8 bit tables 1):
# 500M float32 parameters; the default pair takes 47 MB, mostly its memories' bit tables.
MAX_WEIGHT_BYTES = 2_000_000_000
# Weights in these formats are unpickled by torch.load: loading them can run any code the file holds.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass
class PairConfig:
    backbone: str  # timm model name
    num_classes: int
    in_chans: int
    image_size: int  # square input side in pixels
    mean: list[float]  # per-channel normalisation, pixel values in [0, 1]
    std: list[float]
    class_names: list[str]
    setup: str = "entry"  # entry / middle / output, or "custom" when taps are given explicitly
    taps: list[str] = field(default_factory=list)  # stage names (timm feature_info); filled from setup when empty
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to timm.create_model
    stem_stride: int = 1  # small inputs: the first convolution's stride (1 keeps every pixel; 2: 4x fewer operations)
    head: dict[str, Any] = field(default_factory=lambda: HeadConfig().to_dict())  # HeadConfig as a dict
    precision: str = "float32"  # what scoring runs in on every device: the precision the thresholds were fitted in
    # name -> amint.readings.Reading.to_config(): "amint" (the trace) and "fingerprint" (the memories), each with its
    # threshold, false-positive record and calibration; a pair saved before readings loads as one legacy "combined".
    readings: dict[str, Any] = field(default_factory=dict)
    dataset: str = ""
    split: dict[str, Any] = field(default_factory=dict)  # MembershipSplit.to_config(): regenerates the members
    metrics: dict[str, Any] = field(default_factory=dict)  # evaluate_pair() output
    training: dict[str, Any] = field(default_factory=dict)  # the TrainConfig it was trained with, and its history
    left_out: str = ""  # what this published copy left out: "externals" or "memories" (amint.publish); "" = nothing
    amint_version: str = __version__

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")

    def check_sizes(self) -> None:
        """Refuse sizes no real pair has, before a model is built from them (ValueError names the field)."""
        import timm

        if not isinstance(self.backbone, str) or not timm.is_model(self.backbone):
            raise ValueError(f"Unknown backbone {self.backbone!r}: not a timm model name")
        for name, value, low, high in (("image_size", self.image_size, 8, MAX_IMAGE_SIZE),
                                       ("num_classes", self.num_classes, 1, MAX_CLASSES),
                                       ("in_chans", self.in_chans, 1, 3),
                                       ("stem_stride", self.stem_stride, 1, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} is {value!r}; a pair's must be a whole number from {low} to {high:,}")
        if self.in_chans not in (1, 3):
            raise ValueError(f"in_chans is {self.in_chans}; a pair reads gray (1) or RGB (3) images")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean and std need {self.in_chans} value(s) each, one per channel")
        if len(self.class_names) not in (0, self.num_classes):
            raise ValueError(f"class_names has {len(self.class_names)} names for {self.num_classes} classes")

    # The headline reading's facts (the aMINT verdict's; a legacy pair's combined reading's), read from ``readings``.

    @property
    def threshold(self) -> float | None:
        name = headline(self.readings)
        return self.readings[name]["threshold"] if name else None

    @property
    def threshold_fpr(self) -> float | None:
        name = headline(self.readings)
        return self.readings[name].get("threshold_fpr") if name else None

    @property
    def calibration(self) -> dict[str, Any]:
        name = headline(self.readings)
        return self.readings[name].get("calibration", {}) if name else {}

    @property
    def fpr_record(self) -> dict[str, Any]:
        name = headline(self.readings)
        return self.readings[name].get("fpr_record", {}) if name else {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PairConfig":
        data = dict(data)
        legacy = {k: data.pop(k) for k in LEGACY_KEYS if k in data}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown key(s) in pair config: {unknown}. Is this pair from a newer amint?")
        if legacy:
            if data.get("readings"):
                raise ValueError(f"The pair config has readings and also top-level {sorted(legacy)}: a pair states "
                                 "its thresholds per reading only (readings.<name>.threshold)")
            names = HeadConfig.from_dict(data.get("head", HeadConfig().to_dict())).evidence_names
            data["readings"] = {COMBINED: legacy_reading(legacy, names)}
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


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode for the block, then back in the mode it was in."""
    was_training = module.training
    if not any(m.training for m in module.modules()):  # already eval throughout (serving): nothing to switch
        yield module
        return
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class PairOutput(NamedTuple):
    class_logits: torch.Tensor  # (N, num_classes)
    evidence: torch.Tensor  # (N, E) the trace logit and each memory's score, named by HeadConfig.evidence_names
    maps: list[torch.Tensor]  # the tapped activation maps, (N, C, h, w) each
    lookups: dict[str, Lookup]  # per memory: its table counts per query variant (amint.fingerprint)


class AuditedPair(nn.Module):
    """Audited classifier plus MINT head; one forward returns class logits, the head's evidence and the maps.

    What the evidence means is said by the pair's readings (``readings``: amint.readings.Reading per name,
    from ``config.readings``); amint.evaluate.score_images applies them.
    """

    def __init__(self, config: PairConfig):
        super().__init__()
        self.config = config
        self.backbone = create_backbone(
            config.backbone, config.num_classes, config.in_chans, config.image_size, config.backbone_kwargs,
            config.stem_stride,
        )
        if not config.taps:
            config.taps = setup_taps(self.backbone, config.setup)
        self.tap_indices = tap_indices(self.backbone, config.taps)
        self.head_config = HeadConfig.from_dict(config.head)
        self.head = MintHead(self._tap_shapes(), config.in_chans, config.image_size, self.head_config)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)
        self.legacy_tensors: dict[str, torch.Tensor] = {}  # LEGACY_TENSORS found in the weights file, kept as read
        self._readings: tuple[Any, dict[str, Reading]] = (None, {})

    @property
    def readings(self) -> dict[str, Reading]:
        """The pair's readings, parsed from ``config.readings`` (again whenever that dict is replaced, as
        ``set_readings`` does; a change made inside it in place is not seen)."""
        source, parsed = self._readings
        if source is not self.config.readings:
            names = self.head_config.evidence_names
            parsed = {name: Reading.from_config(name, data) for name, data in self.config.readings.items()}
            for r in parsed.values():
                if not set(r.evidence) <= set(names):
                    raise ValueError(f"The {r.name} reading reads {r.evidence}, but this pair's head gives {names}")
            self._readings = (self.config.readings, parsed)
        return parsed

    def set_readings(self, readings: dict[str, dict[str, Any]]) -> None:
        """Replace the pair's readings (Reading.to_config() per name); checked here, stored in the config."""
        self.config.readings = readings
        self.readings  # noqa: B018 - parse now: a bad reading fails here, not at the first verdict

    @torch.no_grad()
    def _tap_shapes(self) -> list[tuple[int, int, int]]:
        x = torch.zeros(1, self.config.in_chans, self.config.image_size, self.config.image_size)
        with eval_mode(self.backbone):
            _, maps = self.classify(x)
        return [tuple(m.shape[1:]) for m in maps]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0,1] float) NCHW images to the backbone's normalised float input."""
        x = images.float()
        if images.dtype == torch.uint8:
            x = x / 255.0
        return (x - self.mean) / self.std

    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Class logits and the tapped maps, in one pass of the backbone (timm's forward_intermediates)."""
        final, maps = self.backbone.forward_intermediates(x, indices=self.tap_indices)
        return self.backbone.forward_head(final), maps

    def forward(self, x: torch.Tensor) -> PairOutput:
        logits, maps = self.classify(x)
        evidence, lookups = self.head(x, maps)
        return PairOutput(logits, evidence, maps, lookups)

    # --- persistence -------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, card: str | None = None) -> Path:
        """Write config.json, model.safetensors and README.md (the model card) into ``folder``, atomically.

        The files are written into a hidden temporary folder beside ``folder``, then moved: a new folder
        appears whole with one rename; in an existing folder each file is replaced by a rename, config.json
        last (its presence is what marks a pair). A crash or a reader never sees half a pair.
        """
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.saving-", dir=folder.parent))
        try:
            state = {k: v.detach().cpu().contiguous() for k, v in (self.state_dict() | self.legacy_tensors).items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "amint_version": __version__})
            (tmp / CARD_NAME).write_text(card if card is not None else render_model_card(self.config))
            self.config.save(tmp / CONFIG_NAME)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; a saved pair is an ordinary folder
            if not folder.exists():
                os.rename(tmp, folder)
                return folder
            for name in (WEIGHTS_NAME, CARD_NAME, CONFIG_NAME):
                os.replace(tmp / name, folder / name)
            tmp.rmdir()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    def save_config(self, folder: str | Path) -> Path:
        """Rewrite config.json and the model card in ``folder`` (a pair folder holding these weights), leaving
        model.safetensors as it is: what recalibrating a pair changes. The card's notes are kept."""
        folder = Path(folder)
        if not (folder / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{folder} holds no {WEIGHTS_NAME}: save the whole pair with save_pretrained")
        card = folder / CARD_NAME
        notes = notes_of(card.read_text()) if card.is_file() else ""
        for name, write in ((CARD_NAME, lambda p: p.write_text(render_model_card(self.config, notes))),
                            (CONFIG_NAME, self.config.save)):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
            os.close(fd)
            try:
                write(Path(tmp))
                os.chmod(tmp, 0o644)
                os.replace(tmp, folder / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return folder

    @classmethod
    def from_pretrained(cls, source: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, token: str | bool | None = None) -> "AuditedPair":
        """Load from a local folder, or a Hub repo id ``owner/name`` (``owner/name@revision`` pins a revision),
        with huggingface_hub's ``from_pretrained`` keywords. Loading reads JSON and safetensors only."""
        folder = resolve_pair_folder(source, revision, token, cache_dir=cache_dir, local_files_only=local_files_only)
        config = PairConfig.load(folder / CONFIG_NAME)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(_no_safetensors_words(str(folder), [p.name for p in folder.iterdir()]))
        config.check_sizes()
        _check_weights_fit(config, weights)  # on the meta device: nothing large is allocated yet
        pair = cls(config)
        state = load_file(str(weights))
        pair.legacy_tensors = {k: state.pop(k) for k in LEGACY_TENSORS if k in state}
        missing, unexpected = pair.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"Weights in {weights} do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        _read_legacy_readout(pair)
        pair.readings  # noqa: B018 - a reading that does not fit this head fails at load
        return pair.eval()

    def push_to_hub(self, repo_id: str, *, commit_message: str = "Upload aMINT pair", private: bool | None = None,
                    branch: str | None = None, token: str | None = None) -> str:
        """Create (if needed) the Hub repo and upload the pair folder (to ``branch``); returns the repo URL."""
        from huggingface_hub import HfApi

        check_repo_id(repo_id)
        api = HfApi(token=token)
        try:
            url = api.create_repo(repo_id, exist_ok=True, private=private)
            if branch:
                api.create_branch(repo_id, branch=branch, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                self.save_pretrained(tmp)
                api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=branch)
        except Exception as e:
            # Error texts travel to logs and pages: one that quotes the token loses it here.
            if token and token in str(e):
                raise type(e)(redact(str(e), token)) if _rebuildable(e) else RuntimeError(redact(str(e), token)) from None
            raise
        return str(url)


def _read_legacy_readout(pair: AuditedPair) -> None:
    """A legacy combined reading scores with the readout and knots its weights file holds (they decided its verdicts)."""
    combined = pair.config.readings.get(COMBINED)
    if not combined or not combined.get("legacy") or "head.readout.weight" not in pair.legacy_tensors:
        return
    t = pair.legacy_tensors
    knots = t.get("head.calibration_knots")
    fitted = knots is not None and bool((knots[0, 1:] > knots[0, :-1]).all())  # all zero: never fitted, a sigmoid
    pair.config.readings = {**pair.config.readings, COMBINED: {
        **combined, "weights": [float(w) for w in t["head.readout.weight"].double().flatten()],
        "bias": float(t["head.readout.bias"].double().flatten()[0]), "knots": knots.double().tolist() if fitted else None}}


def _no_safetensors_words(where: str, files: list[str]) -> str:
    pickled = sorted(f for f in files if f.lower().endswith(PICKLE_SUFFIXES))
    if pickled:
        return (f"{where} holds only pickled weights ({', '.join(pickled[:3])}), which amint refuses to load: "
                f"unpickling can run any code the file contains. Convert them to {WEIGHTS_NAME}.")
    return f"{where} has a config.json but no {WEIGHTS_NAME}"


def _check_weights_fit(config: PairConfig, weights: Path) -> None:
    """Build the pair on the meta device (shapes only, no memory) and compare every tensor's shape with
    the safetensors header (read without the data); ValueError before any real allocation."""
    from safetensors import safe_open

    try:
        with torch.device("meta"):
            skeleton = AuditedPair(config)
    except (TypeError, RuntimeError, AssertionError, KeyError, IndexError) as e:
        raise ValueError(f"config.json describes a model that cannot be built ({type(e).__name__}: {e})") from e
    state = skeleton.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    n_bytes = sum(math.prod(v.shape) * v.element_size() for v in state.values())
    if n_bytes > MAX_WEIGHT_BYTES:
        raise ValueError(f"config.json describes a model whose weights and buffers take {n_bytes / 1e9:.1f} GB "
                         f"({n_bytes:,} bytes); the limit is {MAX_WEIGHT_BYTES / 1e9:.1f} GB")
    try:
        with safe_open(str(weights), "pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise ValueError(f"{weights.name} is not a readable safetensors file ({e})") from e
    n_evidence = len(skeleton.head_config.evidence_names)
    legacy_ok = {"head.readout.weight": lambda s: s == (1, n_evidence), "head.readout.bias": lambda s: s == (1,),
                 "head.calibration_knots": lambda s: len(s) == 2 and s[0] == 2 and 2 <= s[1] <= 4096}
    for k, ok in legacy_ok.items():
        shape = found.pop(k, None)
        if shape is not None and not ok(shape):
            raise ValueError(f"Weights in {weights} do not match the config: the legacy readout's {k} has shape {shape}")
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [f"{k} {found[k]} (config: {expected[k]})" for k in expected if k in found and found[k] != expected[k]]
    if missing or unexpected or wrong:
        raise ValueError(f"Weights in {weights} do not match the config: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}" + (f", wrong shapes {wrong[:3]}" if wrong else ""))


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (a Hub token) replaced by a marker."""
    return text.replace(secret, "[token hidden]") if secret else text


def _rebuildable(e: BaseException) -> bool:
    try:
        type(e)("")
    except Exception:  # noqa: BLE001 - any failure means: fall back to RuntimeError
        return False
    return True


def check_repo_id(repo_id: str) -> str:
    """A Hub model repo id ``owner/name``, checked by huggingface_hub's own rule; ValueError names the problem."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo_id.count("/") != 1:
        raise ValueError(f"{repo_id!r} is not a Hub repo id of the form owner/name")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"{repo_id!r} is not a valid Hub repo id: {e}") from None
    return repo_id


def split_revision(source: str) -> tuple[str, str | None]:
    """``owner/name@rev`` -> (``owner/name``, ``rev``)."""
    if "@" in source:
        repo_id, revision = source.rsplit("@", 1)
        return repo_id, revision or None
    return source, None


def resolve_pair_folder(source: str | Path, revision: str | None = None, token: str | bool | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool = False) -> Path:
    """A local folder as is; otherwise download the pair's files from the Hub (cached)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path} is not a pair folder: it has no {CONFIG_NAME}")
        return path
    repo_id, rev = split_revision(str(source))
    try:
        check_repo_id(repo_id)
    except ValueError as e:
        raise FileNotFoundError(f"{source!r} is neither a pair folder nor a Hub repo id ({e})") from None
    return _download(repo_id, revision or rev, token, cache_dir, local_files_only)


def _download(repo_id: str, revision: str | None, token: str | bool | None, cache_dir: str | Path | None = None,
              local_files_only: bool = False) -> Path:
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
            snapshot_download(repo_id, revision=revision, token=token, cache_dir=cache_dir,
                              local_files_only=local_files_only, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
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
    if not (folder / WEIGHTS_NAME).is_file():  # only the allowed files were fetched: ask what else is there
        from huggingface_hub import HfApi

        files = HfApi().list_repo_files(repo_id, revision=revision, token=token)
        raise FileNotFoundError(_no_safetensors_words(f"Hub repo {where}", files))
    return folder
