"""What publishing a pair reveals, in plain words, with the figures measured by
``benchmarks/reconstruction_attack.py`` (read from its results file, never typed in). One wording for the
model card, the Publish panel and ``python -m amint push``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pair import PairConfig

# What a copy may leave out -> the words for it.
LEAVE_OUT = {
    "": "nothing: the audited model, the trace head and the memories (member and external tables)",
    "externals": "the external tables: the memories keep the member tables",
    "memories": "every memory: the audited model and the trace head alone",
}
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "reconstruction_attack.json"
COSTS = RESULTS.with_name("publish_copies.json")  # benchmarks/publish_copies.py: what each copy keeps


@functools.lru_cache(maxsize=4)
def _results(path: str, mtime: float) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _read(path: Path) -> dict | None:
    try:
        return _results(str(path), path.stat().st_mtime)
    except OSError:
        return None


def measured_reveal(path: Path | None = None) -> dict[str, Any] | None:
    """The figures of benchmarks/results/reconstruction_attack.json that the warnings quote; None when absent."""
    r = _read(path or RESULTS)
    if not r:
        return None
    exact = r["oracle"]["memories"].get("exact") or next(iter(r["oracle"]["memories"].values()))
    members, externals, a = exact["members_tables"], exact.get("externals_tables"), r["attack"]
    return {
        "pair": r["pair"], "date": r["date"][:10], "command": r["command"],
        "n_members": members["members"]["n"], "members_flagged": members["members"]["share_hitting_half"],
        "n_test": members["test"]["n"], "test_flagged": members["test"]["share_hitting_half"],
        "n_externals": externals["externals"]["n"] if externals else None,
        "externals_flagged": externals["externals"]["share_hitting_half"] if externals else None,
        "test_flagged_external": externals["test"]["share_hitting_half"] if externals else None,
        "seeds": a["settings"]["seeds"], "budget": a["settings"]["budget_lookups_per_seed"],
        "successes": a["successes"], "recovered_median": a["best_ssim_recovered"]["median"],
        "start_median": a["best_ssim_start"]["median"], "pooled_median": a["pooled_members_ssim"]["median"],
    }


def measured_costs(path: Path | None = None) -> dict[str, Any] | None:
    """What each published copy's verdict keeps (benchmarks/results/publish_copies.json): TPR at 1% FPR on exact
    copies and on the edits measured, per copy ("nothing", "externals", "memories"); None when absent."""
    r = _read(path or COSTS)
    if not r:
        return None
    copies = {k: {"exact": v["tpr_at_1pct_fpr"], "auc": v["auc"],
                  **{e: m["tpr_at_1pct_fpr"] for e, m in (v.get("edits") or {}).items()}}
              for k, v in r["left_out"].items()}
    return {"pair": r["pair"], "date": r["date"][:10], "command": r["command"], "copies": copies}


CLI_OPTIONS = ("`--no-externals`", "`--trace-only`")  # push's options: leave the external tables / every memory out


def reveal_words(config: PairConfig | None = None, leave_out: str | None = None,
                 options: tuple[str, str] = CLI_OPTIONS) -> str:
    """In plain words, what publishing this pair (without ``leave_out``; default: what its config left out)
    reveals to anyone who downloads it, with the measured figures, and which push option avoids it.
    No config: a pair with the default memories (the Publish panel, before a pair is read)."""
    if leave_out is None:
        leave_out = config.left_out if config is not None else ""
    memories = {"default": {}} if config is None else config.head.get("memories") or {}
    if leave_out == "memories" or not memories:
        which = ("Its hashed memories were left out of this copy" if leave_out == "memories"
                 else "This pair has no hashed memories")
        return (f"{which}, so it reveals no membership by lookup: it has no fingerprint, only the aMINT verdict of its "
                f"trace head{_trace_auc(config)}.")
    externals = leave_out != "externals" and any(v.get("externals", True) for v in memories.values())
    who = "one of its training members"
    if externals:
        who += ", and whether it was one of its external (non-member) images"
    measured, images = _measured(measured_reveal(), externals)
    costs = measured_costs()
    without_all = (f"{options[1]} leaves every memory out (no lookup and no fingerprint then: only the aMINT verdict of "
                   f"the trace head remains{_trace_auc(config)}).")
    avoid = (f"{options[0]} leaves the external tables out: {_externals_cost(costs)}; {without_all}" if externals
             else f"The external tables are left out of this copy: {_externals_cost(costs)}. {without_all}")
    return (f"Publishing this pair with its hashed memories publishes a membership oracle: anyone who downloads it "
            f"can tell, for any image they hold, whether it was {who}{measured}.{images} {avoid}")


def _measured(m: dict[str, Any] | None, externals: bool) -> tuple[str, str]:
    """The oracle's figures (a parenthesis) and the attack's (a sentence), from the results file."""
    if not m:
        return "", ""
    measured = (f" (measured on {m['pair']}, {m['date']}: the exact memory alone hits at least half its tables for "
                f"{m['members_flagged']:.0%} of that pair's {m['n_members']:,} members and for "
                f"{m['test_flagged']:.2%} of {m['n_test']:,} test images")
    if externals and m["n_externals"]:
        measured += (f"; its external tables do so for {m['externals_flagged']:.0%} of the {m['n_externals']:,} "
                     f"external images and {m['test_flagged_external']:.2%} of test images")
    search = (f"a search of {m['budget']:,} lookups from each of {m['seeds']} test images brought "
              f"{m['successes'] or 'none'} within SSIM 0.9 of a member (median best SSIM to a member "
              f"{m['recovered_median']:.2f} after the search, {m['start_median']:.2f} before)")
    if m["successes"]:
        return measured + ")", f" They handed back some images: {search}."
    return measured + ")", (f" In the same measurement the memories did not hand back images: {search}; they keep "
                            "only sign bits of pooled pixels.")


def _externals_cost(costs: dict[str, Any] | None) -> str:
    """What the member tables alone keep, in words: members found at 1% false alarms, exact and edited copies."""
    if not costs or "externals" not in costs["copies"] or "nothing" not in costs["copies"]:
        return "the member tables still give the fingerprint"
    full, bare = costs["copies"]["nothing"], costs["copies"]["externals"]
    cases = ["exact", *(e for e in bare if e not in ("exact", "auc") and e in full)]
    weaker = any(bare[c] < full[c] - 0.05 for c in cases)
    return (f"the member tables still give the fingerprint{', weaker on edited uploads' if weaker else ''} (members found "
            f"at 1% false alarms on {costs['pair']}, without / with the external tables: "
            + ", ".join(f"{'exact copies' if c == 'exact' else c} {bare[c]:.2f} / {full[c]:.2f}" for c in cases) + ")")


def _trace_auc(config: PairConfig | None) -> str:
    if config is None:
        return ""
    auc = ((config.metrics.get("evidence") or {}).get("trace") or {}).get("auc")
    if auc is None and config.left_out == "memories":
        auc = config.metrics.get("auc")
    return f", AUC {auc:.2f} on this pair" if isinstance(auc, (int, float)) else ""
