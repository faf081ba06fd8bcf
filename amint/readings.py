"""Readings: one calibrated answer per question a pair can answer, each with its own threshold and record.

- ``amint``, the aMINT verdict: the trace head's logit on the audited model's tapped maps. Does this
  model carry a trace of the image? The only reading that reads the model.
- ``fingerprint``: a logistic over the hashed memories' scores. Is this image, or a re-encoding or
  small move of it, in the training index shipped with the pair? It reads the image, not the model.
- ``combined`` (legacy): a pair calibrated before the two were separated carries one logistic readout
  over the trace logit and the memory scores; it loads as this reading, marked ``legacy``.

Every reading is made the same way (amint.evaluate.calibrate): Platt scaling of its evidence, an
isotonic map from that logit to a probability (equal priors) and a threshold, all fitted on the
calibration members and half A of the calibration non-members; its calibration AUC on the same
images; its false-positive record (amint.pvalue.FprRecord) on half B, never fitted on. A pair stores
its readings in config.json (``readings``), so recalibrating never rewrites its weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from .pvalue import FprRecord, NullRate, clopper_pearson_upper

AMINT, FINGERPRINT, COMBINED = "amint", "fingerprint", "combined"
READING_NAMES = (AMINT, FINGERPRINT, COMBINED)
# Below this calibration AUC a trace head separates members from never-seen images barely better than chance.
TRACE_SIGNAL_AUC = 0.6
CALIBRATION_KNOTS = 64  # the isotonic map from logit to probability is stored at this many knots
# A sliver of a gentle sigmoid (of logit / 8) keeps the calibrated probability strictly increasing in
# the logit, so it ranks images as the logit does (no ties from the isotonic steps, none below |logit| 200).
TIEBREAK = 1e-3
ASSUMED_FPR = 0.05  # what an audit assumes for a reading that states no false-positive rate at all


def reading_inputs(evidence_names: list[str]) -> dict[str, list[str]]:
    """What each reading of a head with this evidence reads: amint the trace, fingerprint the memories."""
    out = {AMINT: ["trace"]} if "trace" in evidence_names else {}
    memories = [n for n in evidence_names if n.startswith("memory_")]
    return out | ({FINGERPRINT: memories} if memories else {})


Targets = "float | None | dict[str, float | None]"  # one false-positive target for every reading, or one per reading


def target_for(target_fpr, name: str) -> float | None:
    """The calibration target of reading ``name``: the one rate given for all readings (None = balanced accuracy),
    or its own entry in a per-reading dict, e.g. ``{"amint": 0.01, "fingerprint": 0.002}``."""
    if not isinstance(target_fpr, dict):
        return target_fpr
    if name not in target_fpr:
        raise ValueError(f"No calibration target given for the {name} reading (given: {', '.join(target_fpr) or 'none'})")
    return target_fpr[name]


def stored_targets(readings: dict, default: float | None = None) -> dict[str, float | None]:
    """The target each reading was last calibrated with (``calibration.target_fpr``); ``default`` for a reading
    that records none (a legacy pair's combined reading: then both new readings get ``default``)."""
    out = {name: r.calibration.get("target_fpr", default) for name, r in readings.items() if name != COMBINED}
    return {AMINT: out.get(AMINT, default), FINGERPRINT: out.get(FINGERPRINT, default)}


def headline(readings: dict) -> str | None:
    """The reading a pair's member probability is: the aMINT verdict, or a legacy pair's combined one."""
    return AMINT if AMINT in readings else COMBINED if COMBINED in readings else None


@dataclass
class Reading:
    name: str  # amint / fingerprint / combined
    evidence: list[str]  # the evidence it reads (HeadConfig.evidence_names), in that order
    weights: list[float]  # Platt scaling: logit = weights . evidence + bias
    bias: float
    threshold: float  # calibrated probability at or above which the reading says "member"
    knots: list[list[float]] | None = None  # (2, K): logits and the isotonic member rate there; None: sigmoid
    fpr_record: FprRecord | None = None  # false positives per edit family on calibration half B
    cal_auc: float | None = None  # AUC of the calibrated probability on the images it was fitted on (half A)
    calibration: dict[str, Any] = field(default_factory=dict)  # histograms, counts, how the views were made
    index_sha256: str | None = None  # fingerprint: digest of the memories it was calibrated with
    legacy: bool = False  # combined: calibrated before the readings were separated
    stated_fpr: float | None = None  # legacy without a record: the rate it stated (measured in sample)

    def __post_init__(self) -> None:
        if self.name not in READING_NAMES:
            raise ValueError(f"Unknown reading {self.name!r}: a pair's readings are {', '.join(READING_NAMES)}")
        wants = {AMINT: lambda e: e == ["trace"], FINGERPRINT: lambda e: bool(e) and all(n.startswith("memory_")
                                                                                      for n in e)}
        if self.name in wants and not wants[self.name](self.evidence):
            raise ValueError(f"The {self.name} reading cannot read {self.evidence}: the aMINT verdict reads the trace "
                             "head alone, the fingerprint the memories alone")
        if self.name == COMBINED and not self.legacy:
            raise ValueError("A combined reading is only ever a legacy pair's (calibrated before the readings were "
                             "separated)")
        if len(self.weights) != len(self.evidence):
            raise ValueError(f"reading {self.name}: {len(self.weights)} weights for {len(self.evidence)} evidence parts")
        if self.fpr_record is not None and not math.isclose(self.fpr_record.threshold, self.threshold,
                                                             rel_tol=0, abs_tol=1e-12):
            raise ValueError(f"reading {self.name}: its false-positive record was measured at threshold "
                             f"{self.fpr_record.threshold}, not at its threshold {self.threshold}")
        self._tensors: tuple | None = None

    # --- what it says ----------------------------------------------------------------------------

    @property
    def threshold_fpr(self) -> float | None:
        """The rate behind every decision and audit: the worst edit family's bound (a legacy pair's stated rate)."""
        return self.fpr_record.bound if self.fpr_record is not None else self.stated_fpr

    @property
    def has_trace_signal(self) -> bool:
        """Whether this reading's trace separated members from never-seen images on calibration (AUC >= 0.6).
        False for the fingerprint (it reads no trace) and for a legacy reading (not measured)."""
        return self.name == AMINT and self.cal_auc is not None and self.cal_auc >= TRACE_SIGNAL_AUC

    @property
    def trace_at_chance(self) -> bool:
        """An aMINT reading whose trace was measured on calibration and found at chance (AUC < 0.6): its decisions
        are not evidence either way. False where nothing was measured (a legacy reading) and for the fingerprint."""
        return self.name == AMINT and self.cal_auc is not None and not self.has_trace_signal

    @property
    def source(self) -> str:
        """How the raw score is made, in words."""
        if self.name == AMINT:
            return "the trace head's logit on the model's tapped activation maps"
        if self.name == FINGERPRINT:
            return "a logistic over the hashed memories' scores (" + ", ".join(self.evidence) + ")"
        return "a logistic readout over the trace head's logit and the memories' scores (legacy)"

    # --- applying it -------------------------------------------------------------------------------

    def _params(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._tensors is None or self._tensors[0].device != device:
            w = torch.tensor(self.weights, dtype=torch.float64, device=device)
            k = torch.tensor(self.knots, dtype=torch.float64, device=device) if self.knots is not None else None
            self._tensors = (w, k)
        return self._tensors

    def logit(self, evidence: torch.Tensor, names: list[str]) -> torch.Tensor:
        """(N,) float64 Platt logit of evidence (N, E) whose columns are named ``names``."""
        w, _ = self._params(evidence.device)
        cols = evidence[:, [names.index(n) for n in self.evidence]].double()
        return cols @ w + self.bias

    def probability(self, logit: torch.Tensor) -> torch.Tensor:
        """The calibrated member probability of logits: the isotonic knots, or the plain sigmoid before fitting."""
        _, knots = self._params(logit.device)
        logit = logit.double()
        if knots is None or not bool((knots[0, 1:] > knots[0, :-1]).all()):
            return torch.sigmoid(logit)
        knots_x, knots_y = knots
        z = logit.clamp(float(knots_x[0]), float(knots_x[-1]))
        i = torch.searchsorted(knots_x, z.contiguous()).clamp(1, len(knots_x) - 1)
        x0, x1, y0, y1 = knots_x[i - 1], knots_x[i], knots_y[i - 1], knots_y[i]
        iso = y0 + (y1 - y0) * (z - x0) / (x1 - x0)
        # float64: in float32 every logit above ~17 would read exactly 1.0 and tie.
        return (1 - TIEBREAK) * iso + TIEBREAK * torch.sigmoid(logit / 8)

    def read(self, evidence: torch.Tensor, names: list[str]) -> torch.Tensor:
        """(N,) float64 calibrated member probability of evidence (N, E)."""
        return self.probability(self.logit(evidence, names))

    def decide(self, evidence: torch.Tensor, names: list[str]) -> torch.Tensor:
        return self.read(evidence, names) >= self.threshold

    # --- the rate its audits test against ------------------------------------------------------------

    def null_rate(self, family: str | None = None) -> NullRate:
        """The false-positive rate a set's test with this reading assumes, and where it comes from.

        A reading calibrated by this version states a bound per edit family. A legacy reading from before
        held-out calibration states one rate measured on the images its threshold was fitted on: bounded
        here the same way, on that count, and said to be in sample. One that states nothing is tested
        against 5%."""
        if self.fpr_record is not None:
            return self.fpr_record.null_rate(family)
        if family is not None:
            raise ValueError(f"This pair's {self.name} reading states no false-positive rate per edit family, so "
                             f"{family!r} cannot be chosen; recalibrate it with `python -m amint calibrate`")
        if self.stated_fpr is None:
            return NullRate(ASSUMED_FPR, "assumed: this pair states no false-positive rate", "not measured", 0, 0)
        n = int(self.calibration.get("n_nonmembers") or 0)
        if not n:
            return NullRate(max(self.stated_fpr, ASSUMED_FPR), "as stated by this pair, with no count: at least 5% "
                            "assumed", "not measured here", 0, 0)
        flagged = min(n, math.ceil(self.stated_fpr * n - 1e-9))
        return NullRate(clopper_pearson_upper(flagged, n), "in sample: measured on the images the threshold was "
                        "fitted on, so possibly optimistic; recalibrate this pair", "one-sided 95% Clopper-Pearson "
                        "upper bound", n, flagged)

    # --- config.json ---------------------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        out = {"evidence": list(self.evidence), "weights": list(self.weights), "bias": self.bias,
               "knots": self.knots, "threshold": self.threshold, "threshold_fpr": self.threshold_fpr,
               "fpr_record": self.fpr_record.to_config() if self.fpr_record is not None else {},
               "cal_auc": self.cal_auc, "calibration": self.calibration}
        if self.index_sha256 is not None:
            out["index_sha256"] = self.index_sha256
        if self.legacy:
            out["legacy"] = True
        return out

    @classmethod
    def from_config(cls, name: str, data: dict[str, Any]) -> "Reading":
        """Read a stored reading; its false-positive bounds are recomputed from their counts and must agree."""
        known = {f.name for f in fields(cls)} - {"name", "stated_fpr"} | {"threshold_fpr"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown key(s) in readings.{name}: {unknown}")
        data = dict(data)
        stated = data.pop("threshold_fpr", None)
        record = FprRecord.from_config(data.pop("fpr_record")) if data.get("fpr_record") else None
        data.pop("fpr_record", None)
        reading = cls(name=name, fpr_record=record, **data)
        if record is None:
            reading.stated_fpr = None if stated is None else float(stated)
        elif stated is not None and not math.isclose(float(stated), record.bound, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"readings.{name}.threshold_fpr ({stated}) is not its record's bound ({record.bound}): "
                             "the config was edited")
        return reading

    def with_record(self, record: FprRecord) -> "Reading":
        return replace(self, fpr_record=record)


def legacy_reading(stored: dict[str, Any], evidence_names: list[str]) -> dict[str, Any]:
    """A pre-readings config's threshold, threshold_fpr, fpr_record and calibration as one combined reading.

    Its readout and isotonic knots lived in model.safetensors (``LEGACY_TENSORS``): until the weights are read
    (AuditedPair.from_pretrained) the weights come from the readout the calibration recorded, if any."""
    calibration = dict(stored.get("calibration") or {})
    readout = calibration.get("readout") or {}
    weights = [float(readout.get(n, 1.0 if n == "trace" else 8.0)) for n in evidence_names]
    return {"evidence": list(evidence_names), "weights": weights, "bias": float(readout.get("bias", 0.0)),
            "knots": None, "threshold": float(stored.get("threshold", 0.5)),
            "threshold_fpr": stored.get("threshold_fpr"), "fpr_record": stored.get("fpr_record") or {},
            "cal_auc": None, "calibration": calibration, "legacy": True}
