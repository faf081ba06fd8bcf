"""``python -m amint {train,evaluate,verify,audit,push,bench}``: the only layer that parses argv and prints.

Each command is a thin wrapper over library functions; ``run_evaluate`` and ``run_bench`` are the
testable cores of ``evaluate`` and ``bench``. User mistakes end in one ``amint: error: ...`` line and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TextIO

if TYPE_CHECKING:
    from .pair import AuditedPair, PairConfig

PROG = "amint"
EXIT_ERROR, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


# --- errors -------------------------------------------------------------------------------------


def _error(message: Any) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _is_user_error(err: BaseException) -> bool:
    """Mistakes a user can fix (bad path, unknown repo, bad option); anything else is a bug: traceback."""
    from .train import TrainingCancelled

    user = (FileNotFoundError, NotADirectoryError, PermissionError, ConnectionError, ValueError, TrainingCancelled)
    return isinstance(err, user) or type(err).__module__.startswith("huggingface_hub")


# --- train: flags generated from TrainConfig ----------------------------------------------------


def _optional_inner(tp: Any) -> Any | None:
    """``X | None`` -> X; anything else -> None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1 and len(typing.get_args(tp)) == 2:
            return rest[0]
    return None


def _value_parser(tp: Any, name: str) -> Callable[[str], Any]:
    inner = _optional_inner(tp)
    if inner is not None:
        parse = _value_parser(inner, name)
        return lambda s: None if s.strip().lower() in ("none", "null", "") else parse(s)
    origin = typing.get_origin(tp) or tp
    if origin is list:
        return lambda s: [item.strip() for item in s.split(",") if item.strip()]
    if origin is dict:
        return lambda s: _json_object(s, name)
    if tp in (int, float, str):
        return tp
    raise TypeError(f"no command-line parser for field {name}: {tp}")


def _json_object(text: str, name: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} takes a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} takes a JSON object, e.g. '{{\"key\": 1}}'")
    return value


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field, with its type, default and source comment: one source of truth for options."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        tp = hints[f.name]
        shown = ",".join(default) if isinstance(default, list) else default
        shown = json.dumps(shown) if isinstance(shown, dict) else shown
        help_text = f"{f.metadata.get('help', '')} (default: {shown})".strip()
        flag = "--" + f.name.replace("_", "-")
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
            continue
        metavar = "JSON" if typing.get_origin(tp) is dict else "A,B" if typing.get_origin(tp) is list else None
        parser.add_argument(flag, dest=f.name, type=_value_parser(tp, f.name), default=default, metavar=metavar,
                            help=help_text)


class _ProgressPrinter:
    """A tqdm bar per epoch (and for writing the memories) on stderr; epoch summaries always, as log lines."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr  # looked up per instance: sys.stderr may have been replaced
        self.bar = None

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, p) -> None:
        if p.kind == "phase" and p.message:
            self._close()
            print(p.message, file=self.stream, flush=True)
        elif p.kind == "step":
            desc = f"{p.phase} epoch {p.epoch}/{p.epochs}" if p.phase != "memory" else "writing the memories"
            if self.bar is None or self.bar.desc != desc:
                self._close()
                self.bar = _tqdm(total=p.steps, desc=desc, leave=False, file=self.stream)
            self.bar.update(p.step - self.bar.n)
            if p.metrics:
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in p.metrics.items()}, refresh=False)
        elif p.kind == "epoch":
            self._close()
            m = p.metrics
            keys = ("task_loss", "mint_loss", "train_task_accuracy", "test_accuracy", "cal_trace_accuracy", "cal_trace_auc")
            summary = " ".join(f"{k} {m[k]:.4f}" for k in keys if isinstance(m.get(k), (int, float)))
            print(f"{p.phase} epoch {p.epoch}/{p.epochs}: {summary} ({m.get('seconds', 0):.1f}s)",
                  file=self.stream, flush=True)
        elif p.kind == "done":
            self._close()


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train_pair

    cfg = TrainConfig.from_dict({f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    rank = int(os.environ.get("RANK", "0"))  # set by torchrun: one process per rank runs this
    if args.progress_json:
        callback = _JsonProgress(rank)
    else:
        callback = _ProgressPrinter() if rank == 0 else None  # one progress bar, not one per rank
    pair = train_pair(cfg, callback=callback)
    if rank == 0:
        print(f"saved to {cfg.out}", file=sys.stderr)
        print(json.dumps(_without_roc(pair.config.metrics), indent=2))
    return 0


class _JsonProgress:
    """Every report as one JSON line on stdout, with the rank: what amint.launch reads and merges."""

    def __init__(self, rank: int):
        self.rank = rank

    def __call__(self, p) -> None:
        from .launch import progress_line

        # One write per line: the ranks share the pipe, and print() writes the newline separately.
        sys.stdout.write(progress_line(self.rank, p) + "\n")
        sys.stdout.flush()


def _without_roc(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "roc"}


# --- evaluate -----------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_benchmark
    from .robustness import evaluate_split

    pair = _load_pair(args.pair, args.device)
    if not pair.config.split:
        raise ValueError(f"{args.pair} records no membership split: it cannot be evaluated")
    bench = load_benchmark(pair.config.dataset, args.data_root, image_size=pair.config.image_size)
    edits = _edit_names(args.edits) if args.edits is not None else ()
    bar = _tqdm(total=2 * len(edits), desc="edits", disable=not edits)
    result = evaluate_split(pair, bench, roc=args.roc, edits=edits, edits_n=args.edits_n,
                          progress=lambda name, i, n: bar.update(1) or bar.set_postfix_str(name))
    bar.close()
    print(json.dumps(result, indent=2) if args.json else _metrics_table(args.pair, pair.config, result))
    return 0


def _edit_names(text: str) -> tuple[str, ...]:
    from .edits import EDIT_NAMES

    names = EDIT_NAMES if text in ("", "all") else tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in EDIT_NAMES]
    if unknown:
        raise ValueError(f"Unknown edit(s) {unknown}: choose from {', '.join(EDIT_NAMES)}")
    return names


def _tqdm(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(**{"file": sys.stderr, **kwargs})


def _metrics_table(source: str, config: PairConfig, m: dict) -> str:
    from .card import METRIC_COLUMNS, method_rows

    keys = [k for k, _ in METRIC_COLUMNS]
    heads = [label.replace(" @ ", "@").replace(" FPR", "FPR") for _, label in METRIC_COLUMNS]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
    rows = method_rows(m)
    lines = [
        f"pair {source}: {config.backbone} on {config.dataset}",
        f"held-out members {m['n_members']}, never-seen non-members {m['n_nonmembers']}, "
        f"threshold {m['threshold']:.4f} (FPR there {fmt(m.get('fpr_at_threshold'))})",
        f"task accuracy (test split): {fmt(m.get('task_accuracy'))}",
        "",
        f"{'method':<22}" + "".join(f"{h:>12}" for h in heads),
    ]
    lines += [f"{name:<22}" + "".join(f"{fmt(r.get(k)):>12}" for k in keys) for name, r in rows]
    if "edits" in m:
        ref = m["references"]["pixel_nearest_member"]
        lines += ["", "edited copies (members and non-members alike), at this pair's threshold; "
                      "pixel reference = nearest member in raw pixels (needs the member images)",
                  f"{'edit':<12}{'accuracy':>10}{'AUC':>8}{'TPR@1%':>8}{'TPR@0.1%':>10}{'FPR':>7}{'pixel ref AUC':>15}"]
        lines += [f"{name:<12}{r['mint_accuracy']:>10.4f}{r['auc']:>8.4f}{r['tpr_at_1pct_fpr']:>8.4f}"
                  f"{r['tpr_at_0_1pct_fpr']:>10.4f}{r['fpr_at_threshold']:>7.4f}{ref[name]['auc']:>15.4f}"
                  for name, r in m["edits"].items()]
    return "\n".join(lines)


# --- verify -------------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import ImageError, decision_words, verify_images

    pair = _load_pair(args.pair, args.device)
    names = [str(p) for p in args.images]
    results = verify_images(pair, list(args.images), batch_size=args.batch_size, names=names)
    good = [(n, r) for n, r in zip(names, results) if not isinstance(r, ImageError)]
    if args.json:
        print(json.dumps([v.to_dict(file=n) for n, v in good], indent=2))
    else:
        for n, v in good:
            print(f"{n}: {decision_words(v)} Predicted class: {v.predicted_class} ({v.class_probability:.0%}).")
    sys.stdout.flush()  # results first, then the errors
    bad = [r for r in results if isinstance(r, ImageError)]
    for err in bad:
        _error(" ".join(str(err).splitlines()))
    return EXIT_BAD_INPUT if bad else 0


# --- audit --------------------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import audit_images, expand_uploads
    from .pair import AuditedPair, resolve_pair_folder
    from .report import REPORT_SUFFIXES, write_audit_report
    from .train import resolve_device

    if args.report and Path(args.report).suffix.lower() not in REPORT_SUFFIXES:
        raise ValueError(f"--report must end in {' or '.join(REPORT_SUFFIXES)}: {args.report}")
    folder = resolve_pair_folder(args.pair)
    pair = AuditedPair.from_pretrained(folder).to(resolve_device(args.device))
    items = expand_uploads(list(args.files))  # zips checked against amint.uploads' limits
    if not items:
        raise ValueError("no images found in the files given (zips are searched for image files)")
    with _tqdm(total=len(items), desc="auditing", unit="img") as bar:
        result = audit_images(pair, items, batch_size=args.batch_size, progress=lambda done, _: bar.update(done - bar.n))
    v = result.verdict
    if args.json:
        print(json.dumps({"pair": args.pair, "n_images": v.n_images, "n_flagged": v.n_flagged,
                          "expected_by_chance": v.expected_by_chance, "fpr": v.fpr, "p_value": v.p_value,
                          "reading": v.reading, "n_unreadable": sum(1 for r in result.rows if r.error),
                          "images": [dict(zip(("file", "member_probability", "decision", "predicted_class", "error"), row))
                                     for row in result.table()]}, indent=2))
    else:
        print(f"{v.n_flagged} of {v.n_images} images flagged as members; {v.expected_by_chance:.1f} expected by "
              f"chance (FPR {v.fpr:.2%}); p-value {v.p_value:.3g}.\n{v.reading}")
    if args.csv:
        result.to_csv(args.csv)
    if args.report:
        print(f"report: {write_audit_report(pair, result, args.pair, folder, args.report)}", file=sys.stderr)
    sys.stdout.flush()  # the result first, then the files it left out
    for row in result.rows:
        if row.error:
            _error(" ".join(row.error.splitlines()))
    return EXIT_BAD_INPUT if any(r.error for r in result.rows) else 0


# --- push ---------------------------------------------------------------------------------------


def cmd_push(args: argparse.Namespace) -> int:
    from .pair import AuditedPair, check_repo_id
    from .publish import publishable
    from .reveal import LEAVE_OUT, reveal_words
    from .train import resolve_device

    check_repo_id(args.repo_id)  # before minutes of refitting
    pair = AuditedPair.from_pretrained(args.pair)
    leave_out = "memories" if args.trace_only else "externals" if args.no_externals else ""
    if leave_out:
        print(f"leaving out {LEAVE_OUT[leave_out]}; refitting the readout and threshold on the calibration split "
              "and measuring the copy on the held-out data (the local pair is not changed)", file=sys.stderr, flush=True)
        pair = publishable(pair, leave_out, data_root=args.data_root, device=resolve_device(args.device))
        m = pair.config.metrics
        print(f"the copy: AUC {m['auc']:.4f}, TPR at 1% FPR {m['tpr_at_1pct_fpr']:.4f}, threshold "
              f"{pair.config.threshold:.4f} (FPR {pair.config.threshold_fpr:.4f} on calibration non-members)",
              file=sys.stderr)
    print(f"{PROG}: note: {reveal_words(pair.config)}", file=sys.stderr, flush=True)
    url = pair.push_to_hub(args.repo_id, token=args.token or os.environ.get("HF_TOKEN"), private=args.private)
    print(url)
    return 0


# --- bench --------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ValueError("--n must be at least 1")
    pair = _load_pair(args.pair, args.device)
    from .bench import run_bench

    print(json.dumps(run_bench(pair, args.n, args.batch_size, args.seed), indent=2))
    return 0


# --- shared -------------------------------------------------------------------------------------


def _load_pair(source: str, device: str = "auto") -> AuditedPair:
    from .pair import AuditedPair
    from .train import resolve_device

    return AuditedPair.from_pretrained(source).to(resolve_device(device))


def _add_pair_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pair", metavar="PAIR",
                   help="pair folder, or Hub repo id owner/name (optionally owner/name@revision)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda (default: auto)")


def _subparser(sub, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=description, epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    from .edits import EDIT_DESCRIPTIONS
    from .train import TrainConfig

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Active Membership Inference Test: train an audited classifier with a MINT head, "
                    "evaluate it, and ask whether images were in its training set.",
        epilog=f"Run '{PROG} COMMAND --help' for the options and examples of each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _subparser(sub, "train", "train a pair (audited model + MINT head) and save it",
                   "Train an audited classifier jointly with its MINT head, calibrate the decision threshold on "
                   "a separate split, evaluate on held-out data and save the pair (config.json, "
                   "model.safetensors, README.md) to --out. Every option below is a TrainConfig field.",
                   f"  {PROG} train --dataset fashion-mnist --backbone resnet18 --epochs 10 --out runs/fmnist\n"
                   f"  {PROG} train --dataset cifar10 --setup entry --augment --out runs/c10\n"
                   f"  {PROG} train --backbone resnet18 --backbone-kwargs '{{\"channels\": [16, 32, 64, 128]}}' "
                   f"--mode passive --out runs/passive\n"
                   f"  torchrun --nproc_per_node 4 -m {PROG} train --dataset cifar10 --out runs/c10  "
                   f"# one process per GPU")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="save the finished pair here")
    p.add_argument("--progress-json", action="store_true",
                   help="report progress as JSON lines on stdout, one per event and rank (for programs)")
    _add_dataclass_flags(p, TrainConfig, skip=("out",))
    p.set_defaults(func=cmd_train)

    p = _subparser(sub, "evaluate", "measure a pair's membership and task metrics",
                   "Regenerate the pair's membership split from its config, load its benchmark and report MINT "
                   "accuracy, AUC and TPR at low FPR on held-out members vs the test split, with baseline attacks.",
                   f"  {PROG} evaluate runs/fmnist\n  {PROG} evaluate owner/amint-fmnist@v1 --json\n"
                   f"  {PROG} evaluate runs/fmnist --edits --edits-n 2000\n  {PROG} evaluate runs/fmnist --edits jpeg75,shift1 --json")
    _add_pair_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--roc", action="store_true", help="include the ROC curve points in the JSON")
    p.add_argument("--data-root", metavar="DIR",
                   help="directory holding the dataset files (default: $AMINT_DATA_DIR)")
    p.add_argument("--edits", nargs="?", const="all", metavar="NAMES",
                   help="also score edited copies of members and non-members alike, and the model-free pixel "
                        "reference: all edits, or a comma-separated list of: "
                        + "; ".join(f"{k} ({v})" for k, v in EDIT_DESCRIPTIONS.items()).replace("%", "%%"))
    p.add_argument("--edits-n", type=int, metavar="N",
                   help="with --edits: the first N held-out members and N non-members only (default: all)")
    p.set_defaults(func=cmd_evaluate)

    p = _subparser(sub, "verify", "say whether images were in a pair's training set",
                   "For each image: the membership probability, the calibrated member / not-member decision, and "
                   "the audited model's predicted class. Unreadable files are reported on stderr (exit status 2) "
                   "after the results for the others.",
                   f"  {PROG} verify runs/fmnist shoe.png bag.jpg\n"
                   f"  {PROG} verify owner/amint-fmnist photos/*.png --json")
    _add_pair_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per readable image")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: 256)")
    p.set_defaults(func=cmd_verify)

    p = _subparser(sub, "audit", "test whether a set of images was used to train a pair",
                   "Score every image (files, or the images inside .zip archives), then test the whole set: are more "
                   "images flagged as members than the pair's false-positive rate explains? Prints the set's verdict "
                   "with its p-value; --report writes a self-contained HTML or PDF report to keep. Unreadable files are "
                   "reported on stderr (exit status 2); a zip that breaks a safety limit is refused with one line.",
                   f"  {PROG} audit runs/fmnist photos/*.png\n  {PROG} audit owner/amint-fmnist@v1 set.zip --report audit.html\n"
                   f"  {PROG} audit runs/fmnist set.zip --report audit.pdf --csv audit.csv")
    _add_pair_args(p)
    p.add_argument("files", nargs="+", metavar="FILE_OR_ZIP", help="image files and/or .zip archives of images")
    p.add_argument("--report", metavar="FILE", help="write the audit report here: FILE.html or FILE.pdf")
    p.add_argument("--csv", metavar="FILE", help="write the per-image table here as CSV")
    p.add_argument("--json", action="store_true", help="print one JSON object (set verdict and per-image rows)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: 256)")
    p.set_defaults(func=cmd_audit)

    p = _subparser(sub, "push", "upload a pair to the Hugging Face Hub",
                   "Create the Hub model repo if needed and upload the pair (config, weights, model card). A pair "
                   "with hashed memories is a membership oracle for its members and its external images to anyone "
                   "who downloads it (README: What publishing a pair reveals): --no-externals or --trace-only "
                   "upload a copy without them, its threshold refitted on the pair's calibration split (this needs "
                   "the pair's dataset); the local pair is not changed.",
                   f"  {PROG} push runs/fmnist me/amint-fmnist\n  {PROG} push runs/fmnist me/amint-fmnist --private\n"
                   f"  {PROG} push runs/fmnist me/amint-fmnist --no-externals\n"
                   f"  {PROG} push runs/fmnist me/amint-fmnist-model --trace-only")
    p.add_argument("pair", metavar="PAIR", help="pair folder (or Hub repo id to copy)")
    p.add_argument("repo_id", metavar="REPO_ID", help="target Hub repo, owner/name")
    p.add_argument("--token", help="Hub token with write access (default: $HF_TOKEN)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    leave = p.add_mutually_exclusive_group()
    leave.add_argument("--no-externals", action="store_true",
                       help="leave the memories' external tables out: who was in the external set stays private; "
                            "exact copies are still recognised, edited ones less often")
    leave.add_argument("--trace-only", action="store_true",
                       help="leave every memory out: the audited model and the trace head alone (the fingerprint "
                            "index stays private; the verdict then rests on the trace head)")
    p.add_argument("--data-root", metavar="DIR",
                   help="with --no-externals / --trace-only: directory holding the pair's dataset (default: "
                        "$AMINT_DATA_DIR)")
    p.add_argument("--device", default="auto", help="where the copy is refitted: auto, cpu or cuda (default: auto)")
    p.set_defaults(func=cmd_push)

    p = _subparser(sub, "bench", "measure verify latency and throughput on this machine",
                   "Time single-image verification (with and without activation maps and saliency) and batched "
                   "verification on random images of the pair's input size; print JSON with the machine details.",
                   f"  {PROG} bench runs/fmnist\n  {PROG} bench runs/fmnist --n 500 --device cuda")
    _add_pair_args(p)
    p.add_argument("--n", type=int, default=200, help="number of images (default: 200)")
    p.add_argument("--batch-size", type=int, default=256, help="batch size of the throughput run (default: 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random images (default: 0)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:
        if not _is_user_error(err):
            raise
        _error(err)
        return EXIT_ERROR
