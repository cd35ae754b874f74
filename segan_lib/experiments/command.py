"""``segan experiment NAME --preset quick|reference|full --seeds N --out DIR``.

Runs every arm of the experiment on N paired seeds (resuming whatever DIR already
holds), writes DIR/results.json and the figures, then prints each arm's mean scores and the
computed verdicts.

Examples::

    segan experiment adversarial --preset quick --seeds 2 --out runs/adv-quick
    segan experiment adversarial --preset reference --jobs 2 --out notebooks/results/adversarial
    segan experiment losses --preset full --seeds 0,2,3 --device cuda
"""
from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
from collections.abc import Mapping

from segan_lib._files import check_writable_dir
from segan_lib.experiments.registry import EXPERIMENTS, run_experiment
from segan_lib.experiments.results import as_float
from segan_lib.experiments.runner import experiment_command
from segan_lib.experiments.spec import PRESET_NAMES
from segan_lib.experiments.verdicts import format_verdicts, verdict_metrics, verdicts
from segan_lib.cli_types import device, positive_int


def parse_seeds(text: str) -> int | list[int]:
    """``"3"`` -> 3 (seeds 0, 1, 2); ``"0,2,3"`` -> ``[0, 2, 3]``."""
    try:
        if "," not in text:
            count = int(text)
            if count >= 1:
                return count
        else:
            seeds = [int(part) for part in text.split(",") if part.strip()]
            if seeds and all(s >= 0 for s in seeds) and len(set(seeds)) == len(seeds):
                return seeds
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"must be a count >= 1 or a comma-separated list of distinct seeds >= 0, "
                                     f"got {text!r}")


def add_experiment_command(commands: argparse._SubParsersAction) -> None:
    """Add ``segan experiment`` to the ``segan`` sub-commands."""
    summary, examples = __doc__.split("\n\nExamples::\n\n")  # the help shows both, as written here
    parser = commands.add_parser(
        "experiment", help="run an experiment's arms on paired seeds and print the computed verdicts",
        description=summary.split("\n\n", 1)[1], epilog="examples:\n" + examples.rstrip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("name", choices=tuple(EXPERIMENTS), help="the experiment")
    add("--preset", choices=PRESET_NAMES, default="quick",
        help="quick (a CPU, minutes: shows the pipeline, proves nothing), reference (5 paired seeds, hours on a "
             "2-core CPU with --jobs 2, resumable), full (a GPU)")
    add("--seeds", type=parse_seeds, default=None,
        help="paired seeds: a count N (seeds 0..N-1) or a list 0,2,3 (default: the preset's)")
    add("--out", help="folder of results.json, runs/ and the figures (default runs/NAME-PRESET)")
    add("--device", type=device, default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N, mps")
    add("--jobs", type=positive_int, default=1,
        help="runs trained at a time, each in its own process with the preset's threads (CPU only; the results "
             "are the same as one at a time). The reference presets train each run on one thread: --jobs 2 keeps two "
             "cores busy")
    add("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_experiment_command)


def format_arm_table(results: Mapping[str, object]) -> str:
    """Each arm's foreground-mean scores, averaged over its seeds, and its training speed."""
    metrics = verdict_metrics(results)
    headers = ["arm", *metrics, "images/s", "seeds"]
    lines = []
    for arm, runs in results["runs"].items():
        cells = [arm]
        for metric in metrics:
            values = [as_float(run["scores"]["mean"].get(metric)) for run in runs.values()]
            cells.append("nan" if any(math.isnan(v) for v in values) else f"{statistics.fmean(values):.3f}")
        speeds = [run["images_per_second"] for run in runs.values() if run["images_per_second"]]
        cells += [f"{statistics.fmean(speeds):.0f}" if speeds else "-", str(len(runs))]
        lines.append(cells)
    widths = [max(len(line[j]) for line in [headers] + lines) for j in range(len(headers))]

    def render(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([render(headers), render(["-" * w for w in widths])] + [render(line) for line in lines])


def run_experiment_command(args: argparse.Namespace) -> int:
    """``segan experiment``: run (or resume) the experiment, print scores and verdicts."""
    out = check_writable_dir(args.out or f"runs/{args.name}-{args.preset}", "--out")  # before any arm runs
    seeds = EXPERIMENTS[args.name].preset(args.preset).seeds if args.seeds is None else args.seeds
    seeds = list(range(seeds)) if isinstance(seeds, int) else seeds
    argv = sys.argv[1:]
    if argv[:1] == ["experiment"]:  # started from a shell: record exactly what was typed
        command = shlex.join(["segan", *argv])
    else:  # called as a function (e.g. main([...])): the equivalent command line
        command = experiment_command(args.name, args.preset, seeds, out, args.device)
    results = run_experiment(args.name, args.preset, seeds=seeds, out=out, device=args.device,
                             progress=not args.no_progress, command=command, jobs=args.jobs)
    print(f"experiment {args.name}, preset {args.preset}, seeds {results['seeds']}, "
          f"device {results['environment']['device']}")
    print("foreground means on held-out images, averaged over seeds:\n")
    print(format_arm_table(results))
    print("\npaired differences (arm - its matched baseline) and computed verdicts:\n")
    print(format_verdicts(verdicts(results)))
    print(f"\nresults in {out / 'results.json'}; figures: {', '.join(results['figures'])}")
    return 0
