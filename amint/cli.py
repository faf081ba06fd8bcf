"""``python -m amint {train,evaluate,calibrate,verify,audit,push,bench}``: the only layer that parses argv and prints.

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
    """The metrics without ROC curves (the top level's and each reading's)."""
    return {k: _without_roc(v) if isinstance(v, dict) else v for k, v in metrics.items() if k != "roc"}


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


# --- calibrate ----------------------------------------------------------------------------------


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .data import load_benchmark
    from .pair import AuditedPair
    from .readings import stored_targets
    from .robustness import recalibrate
    from .train import resolve_device

    folder = Path(args.pair)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{args.pair} is not a pair folder (calibrate rewrites its config.json in place)")
    pair = AuditedPair.from_pretrained(folder).to(resolve_device(args.device))
    if not pair.config.split:
        raise ValueError(f"{args.pair} records no membership split: it cannot be calibrated")
    trained = pair.config.training.get("config", {}).get("target_fpr")
    target = (trained if args.target_fpr == "trained" else stored_targets(pair.readings, trained)
              if args.target_fpr == "stored" else args.target_fpr)
    bench = load_benchmark(pair.config.dataset, args.data_root, image_size=pair.config.image_size)
    edits = _edit_names(args.edits) if args.edits is not None else ()
    bar = _tqdm(total=2 * len(edits), desc="edits", disable=not edits)
    result = recalibrate(pair, bench, target_fpr=target, edits=edits, edits_n=args.edits_n,
                         progress=lambda name, i, n: bar.update(1) or bar.set_postfix_str(name))
    bar.close()
    pair.cpu().save_config(folder)
    print(f"readings written to {folder / 'config.json'} (weights unchanged)", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else _metrics_table(args.pair, pair.config, result))
    return 0


def _target_fpr(text: str) -> float | None | str | dict:
    """A rate in (0, 1), 'none', 'trained', 'stored', or one rate per reading: amint=0.01,fingerprint=0.002."""
    if text in ("trained", "stored", "none"):
        return None if text == "none" else text
    if "=" in text:
        from .readings import AMINT, FINGERPRINT

        targets = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            name = name.strip()
            if name not in (AMINT, FINGERPRINT):
                raise argparse.ArgumentTypeError(f"--target-fpr: a pair's readings are {AMINT} and {FINGERPRINT}, "
                                                 f"not {name!r}")
            targets[name] = _target_fpr(value.strip())
            if isinstance(targets[name], str):
                raise argparse.ArgumentTypeError(f"--target-fpr {name}= takes a rate in (0, 1) or 'none'")
        if set(targets) != {AMINT, FINGERPRINT}:
            raise argparse.ArgumentTypeError(f"--target-fpr: give both readings, e.g. {AMINT}=0.01,{FINGERPRINT}=0.002")
        return targets
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--target-fpr takes a rate in (0, 1), 'none', 'trained', 'stored' or "
                                         f"amint=RATE,fingerprint=RATE, not {text!r}")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"--target-fpr takes a rate in (0, 1), not {value}")
    return value


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
    from .card import METRIC_COLUMNS, READING_TITLES, metrics_reading, method_rows

    keys = [k for k, _ in METRIC_COLUMNS]
    heads = [label.replace(" @ ", "@").replace(" FPR", "FPR") for _, label in METRIC_COLUMNS]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
    top = metrics_reading(m)
    readings = {name: r for name, r in ((top, m), ("fingerprint", m.get("fingerprint"))) if name and r}
    lines = [f"pair {source}: {config.backbone} on {config.dataset}"]
    first = next(iter(readings.values()), {})
    if first:
        lines.append(f"scored members {first['n_members']} (held out from calibration only), never-seen non-members "
                     f"{first['n_nonmembers']}")
    for name, r in readings.items():
        lines.append(f"{READING_TITLES[name]}: threshold {r['threshold']:.4f} (FPR there "
                     f"{fmt(r.get('fpr_at_threshold'))}; stated bound {fmt(r.get('threshold_fpr'))}; calibration AUC "
                     f"{fmt(r.get('cal_auc'))})")
    lines += [f"task accuracy (test split): {fmt(m.get('task_accuracy'))}", "",
              f"{'method':<32}" + "".join(f"{h:>12}" for h in heads)]
    lines += [f"{name:<32}" + "".join(f"{fmt(r.get(k)):>12}" for k in keys) for name, r in method_rows(m)]
    ref = m.get("references", {}).get("pixel_nearest_member", {})
    for name, r in readings.items():
        if "edits" not in r:
            continue
        lines += ["", f"{READING_TITLES[name]}: edited copies (members and non-members alike), at its threshold; "
                      "pixel reference = nearest member in raw pixels (needs the member images)",
                  f"{'edit':<12}{'accuracy':>10}{'AUC':>8}{'TPR@1%':>8}{'TPR@0.1%':>10}{'FPR':>7}{'bound':>8}"
                  f"{'pixel ref AUC':>15}"]
        lines += [f"{edit:<12}{e['mint_accuracy']:>10.4f}{e['auc']:>8.4f}{e['tpr_at_1pct_fpr']:>8.4f}"
                  f"{e['tpr_at_0_1pct_fpr']:>10.4f}{e['fpr_at_threshold']:>7.4f}{fmt(e.get('fpr_bound')):>8}"
                  f"{fmt(ref.get(edit, {}).get('auc')):>15}" for edit, e in r["edits"].items()]
    return "\n".join(lines)


# --- verify -------------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import ImageError, readings_words, verify_images

    pair = _load_pair(args.pair, args.device)
    names = [str(p) for p in args.images]
    results = verify_images(pair, list(args.images), batch_size=args.batch_size, names=names)
    good = [(n, r) for n, r in zip(names, results) if not isinstance(r, ImageError)]
    if args.json:
        print(json.dumps([v.to_dict(file=n) for n, v in good], indent=2))
    else:
        for n, v in good:
            print(f"{n}: {' '.join(readings_words(v))} Predicted class: {v.predicted_class} "
                  f"({v.class_probability:.0%}).")
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
        result = audit_images(pair, items, batch_size=args.batch_size, family=args.family,
                              progress=lambda done, _: bar.update(done - bar.n))
    if args.json:
        out = {"pair": args.pair, **(result.dataset.to_dict() if result.dataset else {}),
               "reading_name": result.reading}
        if result.fingerprint is not None:
            out["fingerprint"] = result.fingerprint.to_dict()
        print(json.dumps(out | {"n_unreadable": sum(1 for r in result.rows if r.error),
                                "images": result.records()}, indent=2))
    else:
        for title, v in (("aMINT verdict" if result.reading == "amint" else "combined verdict (legacy)",
                          result.dataset), ("fingerprint", result.fingerprint)):
            if v is None:
                continue
            dup = f" ({v.n_duplicates} identical copies counted once)" if v.n_duplicates else ""
            print(f"{title}: {v.n_flagged} of {v.n_images} distinct images flagged{dup}; up to "
                  f"{v.expected_by_chance:.1f} expected by chance; p-value {v.p_value:.3g}.\n{v.reading}\n"
                  f"False-positive rate: {v.null.words()}")
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
        print(f"leaving out {LEAVE_OUT[leave_out]}; refitting the readings and thresholds on the calibration split "
              "and measuring the copy on the scored images (the local pair is not changed)", file=sys.stderr, flush=True)
        pair = publishable(pair, leave_out, data_root=args.data_root, device=resolve_device(args.device))
        m = pair.config.metrics
        for title, r, reading in (("aMINT verdict", m, pair.readings.get("amint")),
                                  ("fingerprint", m.get("fingerprint"), pair.readings.get("fingerprint"))):
            if r and reading is not None:
                print(f"the copy: {title} AUC {r['auc']:.4f}, TPR at 1% FPR {r['tpr_at_1pct_fpr']:.4f}, threshold "
                      f"{reading.threshold:.4f} (FPR bound {reading.threshold_fpr:.4f} on never-seen calibration "
                      "images)", file=sys.stderr)
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
    from .edits import EDIT_DESCRIPTIONS, EDIT_FAMILIES, FAMILY_DESCRIPTIONS
    from .train import TrainConfig

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Active Membership Inference Test: train an audited classifier with a MINT head, "
                    "evaluate it, and ask whether images were in its training set.",
        epilog=f"Run '{PROG} COMMAND --help' for the options and examples of each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _subparser(sub, "train", "train a pair (audited model + MINT head) and save it",
                   "Train an audited classifier jointly with its MINT head, calibrate its readings (the aMINT "
                   "verdict on the trace head, the fingerprint on the memories, each with its own threshold) on a "
                   "separate split, evaluate them on the scored members (held out from calibration only) and save "
                   "the pair (config.json, model.safetensors, README.md) to --out. Every option below is a "
                   "TrainConfig field.",
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
                   "Regenerate the pair's membership split from its config, load its benchmark and report, for each "
                   "reading (the aMINT verdict at the top level of --json, the fingerprint under 'fingerprint'), "
                   "accuracy, AUC and TPR at low FPR on the scored members (held out from calibration only) vs the "
                   "test split, with baseline attacks.",
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
                   help="with --edits: the first N scored members and N non-members only (default: all)")
    p.set_defaults(func=cmd_evaluate)

    p = _subparser(sub, "calibrate", "fit a pair's readings again, without training",
                   "Fit the pair's readings on its own calibration split (the aMINT verdict on the trace head, the "
                   "fingerprint on the memories: each its threshold, and its false-positive bound per edit family on "
                   "calibration half B), evaluate them as 'evaluate' does, and write config.json and the model card "
                   "in the pair folder. model.safetensors is not rewritten. A pair saved before the readings were "
                   "separated (one combined reading) gets the two readings this way.",
                   f"  {PROG} calibrate models/my-pair\n  {PROG} calibrate models/my-pair --edits --json\n"
                   f"  {PROG} calibrate models/my-pair --target-fpr amint=0.01,fingerprint=0.002")
    p.add_argument("pair", metavar="PAIR", help="pair folder (its config.json and card are rewritten in place)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda (default: auto)")
    p.add_argument("--target-fpr", type=_target_fpr, default="stored", metavar="RATE",
                   help="fit each threshold to this FPR on the calibration split (calibration half A), or one per "
                        "reading: amint=RATE,fingerprint=RATE; 'none' = maximise balanced accuracy; 'stored' = each "
                        "reading's target from its last calibration (default; what the pair was trained with where "
                        "none is recorded); 'trained' = what the pair was trained with")
    p.add_argument("--json", action="store_true", help="print the new metrics as one JSON object")
    p.add_argument("--data-root", metavar="DIR",
                   help="directory holding the dataset files (default: $AMINT_DATA_DIR)")
    p.add_argument("--edits", nargs="?", const="all", metavar="NAMES",
                   help="also evaluate edited copies (as 'evaluate --edits') and store them in the card")
    p.add_argument("--edits-n", type=int, metavar="N", help="with --edits: the first N members and N non-members only")
    p.set_defaults(func=cmd_calibrate)

    p = _subparser(sub, "verify", "say whether images were in a pair's training set",
                   "For each image, two readings, each with its probability, calibrated decision and threshold: the "
                   "aMINT verdict (the trace head on the model's activations: does the model carry a trace of the "
                   "image?) and the fingerprint (the hashed memories: is the image, or a re-encoding of it, in the "
                   "training index shipped with the pair? It does not read the model), with what the fingerprint "
                   "matched; and the audited model's predicted class. Unreadable files are reported on stderr (exit "
                   "status 2) after the results for the others.",
                   f"  {PROG} verify runs/fmnist shoe.png bag.jpg\n"
                   f"  {PROG} verify owner/amint-fmnist photos/*.png --json")
    _add_pair_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per readable image")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: 256)")
    p.set_defaults(func=cmd_verify)

    p = _subparser(sub, "audit", "test whether a set of images was used to train a pair",
                   "Score every image (files, or the images inside .zip archives), then test the whole set for each "
                   "reading: are more images flagged than that reading's false-positive bound explains? Prints the "
                   "aMINT verdict (does the model carry a trace of this set?) and the fingerprint (is this set in the "
                   "pair's training index?), each with its p-value; --report writes a self-contained HTML or PDF report to keep. Unreadable files are "
                   "reported on stderr (exit status 2); a zip that breaks a safety limit is refused with one line.",
                   f"  {PROG} audit runs/fmnist photos/*.png\n  {PROG} audit owner/amint-fmnist@v1 set.zip --report audit.html\n"
                   f"  {PROG} audit runs/fmnist set.zip --report audit.pdf --csv audit.csv")
    _add_pair_args(p)
    p.add_argument("files", nargs="+", metavar="FILE_OR_ZIP", help="image files and/or .zip archives of images")
    p.add_argument("--report", metavar="FILE", help="write the audit report here: FILE.html or FILE.pdf")
    p.add_argument("--csv", metavar="FILE", help="write the per-image table here as CSV")
    p.add_argument("--json", action="store_true", help="print one JSON object (both set-level answers and per-image rows)")
    p.add_argument("--family", choices=EDIT_FAMILIES, metavar="FAMILY",
                   help="only when every image of the set is known to be made this way: test against this edit "
                        "family's false-positive bound instead of the worst family's (default). One of: "
                        + "; ".join(f"{k} ({v})" for k, v in FAMILY_DESCRIPTIONS.items()).replace("%", "%%"))
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
