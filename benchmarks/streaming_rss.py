"""Peak memory of a training run: the training process and its DataLoader workers, sampled from /proc.

    python benchmarks/streaming_rss.py --json results/streaming_rss.json -- \
        python -m amint train --dataset imagefolder:/tmp/amint-stream --image-size 128 --stream on ...

Runs the command after ``--``, samples every ``--every`` seconds the resident set size (VmRSS) of the
command's process and the sum over it and all its descendants (workers share pages with their parent,
so the sum over-counts: an upper bound), and reads the kernel's exact peak of the largest process
(getrusage's ru_maxrss of the children) when it ends. Linux only.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            out += kids
            todo += kids
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=float, default=0.2, help="sampling period in seconds")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--note", default="", help="recorded with the result")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    t0 = time.time()
    proc = subprocess.Popen(command)
    peak_main = peak_tree = 0
    while proc.poll() is None:
        main_kib = rss_kib(proc.pid)
        tree_kib = main_kib + sum(rss_kib(p) for p in descendants(proc.pid))
        peak_main, peak_tree = max(peak_main, main_kib), max(peak_tree, tree_kib)
        time.sleep(args.every)
    result = {
        "command": command,
        "returncode": proc.returncode,
        "seconds": round(time.time() - t0, 1),
        "peak_rss_mib_sampled_main": round(peak_main / 1024, 1),
        "peak_rss_mib_sampled_main_plus_workers": round(peak_tree / 1024, 1),
        "peak_rss_mib_largest_process_kernel": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "note": args.note,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps(result) + "\n")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
