"""What pinned runs found, written from ``results.json`` alone, so the README cannot say more.

:func:`findings_markdown` turns one experiment's results into a Markdown block: the scale (image
size, steps, classes, training images, seeds, how many runs exist), the baselines' plateau check,
the labelled-only curve where there is one, **every** verdict that excludes zero ("better" or
"worse", primary and secondary, with its interval, no selection), how many arm-metric pairs
showed no evidence of a difference, and the validity of the adversarial runs. The README holds
one such block per experiment between ``<!-- findings:NAME -->`` and ``<!-- /findings:NAME -->``;
``python -m segan_lib.experiments.findings README.md notebooks/results`` rewrites the blocks,
and a test checks that each block equals what the pinned ``results.json`` gives.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from segan_lib.experiments.results import read_json
from segan_lib.experiments.verdicts import NO_EVIDENCE, Verdict, verdicts


def _signed(x: float) -> str:
    return f"{x:+.3f}"


def _seeds(n: int) -> str:
    return f"{n} seed{'' if n == 1 else 's'}"


def _interval(interval: tuple[float, float] | list, confidence: float | None = None) -> str:
    low, high = interval
    if low is None:
        return "[no interval]"
    level = "" if confidence is None else f"{100 * confidence:.4g} % "
    return f"{level}[{_signed(low)}, {_signed(high)}]"


def scale_sentence(results: Mapping[str, object]) -> str:
    """``experiment`` / preset, image size, steps, classes, training images, seeds and runs so far."""
    settings = results["settings"]
    steps = settings["epochs"] * (settings["n_train"] // settings["batch_size"])
    runs = sum(len(per_seed) for per_seed in results["runs"].values())
    expected = len(results["arms"]) * len(results["seeds"])
    state = "complete" if results["complete"] else f"**unfinished: {runs} of {expected} runs**, every line provisional"
    schedule = ", rates annealed by a cosine" if settings.get("cosine") else ""
    return (f"`{results['experiment']}`, preset `{results['preset']}` ({state}): synthetic "
            f"{settings['size']}x{settings['size']} images, {settings['num_classes']} classes, "
            f"{settings['n_train']:,} training images, {steps:,} steps of {settings['batch_size']} a run{schedule}, "
            f"{len(results['seeds'])} paired seeds, scored on {settings['n_eval']} held-out images; "
            f"`{results['command']}` ({results['environment']['date'][:10]}, torch {results['environment']['torch']}).")


def plateau_lines(results: Mapping[str, object]) -> list[str]:
    """One line per baseline: how far its seed-mean held-out Dice moved over the last quarter."""
    lines = []
    for arm, summary in (results.get("plateau") or {}).items():
        direction = "rising" if summary["change"] > 0 else "falling"
        state = "on its plateau" if summary["plateaued"] else f"**still moving** ({direction})"
        lines.append(f"baseline `{arm}`: held-out Dice moved {_signed(summary['change'])} from step "
                     f"{summary['from_step']:,} to {summary['to_step']:,} ({_seeds(summary['seeds'])}): {state}")
    return lines


def label_curve_lines(results: Mapping[str, object]) -> list[str]:
    """The labelled-only curve: each fraction's mean Dice, each step with its paired interval, the rise."""
    curve = results.get("label_curve")
    if not curve:
        return []

    def share(fraction: float) -> str:
        return "all labels" if fraction == 1 else f"1/{round(1 / fraction)}"

    points = ", ".join(f"{share(f)} {m:.3f}" for f, m in zip(curve["fractions"], curve["mean"]))
    steps = "; ".join(
        f"{share(a)} to {share(b)} {_signed(s['mean'])} {_interval(s['interval'])}"
        f"{'' if s['clear'] else ' (**not clear**)'}"
        for s, a, b in zip(curve["steps"], curve["fractions"], curve["fractions"][1:]) if s["mean"] is not None)
    rise = ("" if curve["rise"] is None else
            f"; rise from {share(curve['fractions'][0])} to {share(curve['fractions'][-1])} "
            f"{_signed(curve['rise'])} {_interval(curve['rise_interval'])}")
    return [f"labelled-only mean Dice: {points}{rise}", f"each step, paired over seeds (95 %): {steps or 'none yet'}"]


def _flags(v: Verdict) -> str:
    validity = v.validity or {}
    flags = []
    if validity.get("shortcut"):
        flags.append(f"shortcut in {validity['shortcut']} of {validity['runs']} runs")
    if validity.get("unhealthy"):
        flags.append(f"discriminator overpowered in {validity['unhealthy']} of {validity['runs']} runs")
    return f" ({'; '.join(flags)})" if flags else ""


def verdict_lines(rows: list[Verdict]) -> list[str]:
    """Every verdict that excludes zero, then a count of the rest (none is left out)."""
    judged = [v for v in rows if v.n >= 2]
    decided = [v for v in judged if v.outcome != NO_EVIDENCE]
    lines = [f"`{v.arm}` vs `{v.baseline}`, {v.metric} ({v.family}, {'higher' if v.higher_is_better else 'lower'} "
             f"is better): {_signed(v.mean)} {_interval(v.interval, v.confidence)} over {_seeds(v.n)}: "
             f"**{v.outcome}**{_flags(v)}" for v in decided]
    primary = [v for v in judged if v.family == "primary"]
    quiet_primary = sum(v.outcome == NO_EVIDENCE for v in primary)
    lines.append(f"{NO_EVIDENCE} in {len(judged) - len(decided)} of the {len(judged)} arm-metric pairs judged "
                 f"({quiet_primary} of the {len(primary)} primary ones)"
                 + (f"; {len(rows) - len(judged)} pairs have fewer than 2 paired seeds yet" if len(rows) > len(judged)
                    else ""))
    return lines


def validity_line(results: Mapping[str, object]) -> str | None:
    """How many adversarial runs had a healthy discriminator, and how many took the shortcut."""
    records = [record["validity"] for per_seed in results["runs"].values() for record in per_seed.values()
               if record.get("validity")]
    if not records:
        return None
    healthy = [(r.get("health") or {}).get("healthy") for r in records]
    unknown = sum(h is None for h in healthy)  # a critic without accuracy (SegAN), or nothing logged after warm-up
    shortcut = sum(bool((r.get("probe") or {}).get("shortcut")) for r in records)
    return (f"adversarial runs: {len(records)}; discriminator overpowered in {sum(h is False for h in healthy)}"
            + (f" (health not measured in {unknown}: a critic without an accuracy, or nothing logged after warm-up)"
               if unknown else "")
            + f"; shortcut probe positive (it preferred hard predictions to soft truth) in {shortcut}")


def findings_markdown(results: Mapping[str, object]) -> str:
    """The README block of one experiment's results (see the module docstring)."""
    lines = [scale_sentence(results), ""]
    items = plateau_lines(results) + label_curve_lines(results)
    items += verdict_lines(verdicts(results))
    validity = validity_line(results)
    if validity:
        items.append(validity)
    lines += [f"- {item}" for item in items]
    return "\n".join(lines)


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- findings:{re.escape(name)} -->)\n?(.*?)\n?(<!-- /findings:{re.escape(name)} -->)", re.S)


def readme_block(readme: str, name: str) -> str | None:
    """The text between the findings markers of experiment ``name`` in ``readme``, or None."""
    match = _block(name).search(readme)
    return None if match is None else match.group(2)


def update_readme(readme_path: Path, results_root: Path) -> list[str]:
    """Rewrite every findings block of ``readme_path`` from ``results_root/<name>/results.json``;
    returns the names rewritten (``ValueError`` if a block names results that do not exist)."""
    text = readme_path.read_text()
    names = re.findall(r"<!-- findings:([\w.+=-]+) -->", text)
    for name in names:
        path = results_root / name / "results.json"
        if not path.is_file():
            raise ValueError(f"README block findings:{name} names {path}, which does not exist")
        block = findings_markdown(read_json(path))
        text = _block(name).sub(lambda m: f"{m.group(1)}\n{block}\n{m.group(3)}", text)
    readme_path.write_text(text)
    return names


if __name__ == "__main__":  # python -m segan_lib.experiments.findings README.md notebooks/results
    if len(sys.argv) != 3:
        sys.exit("usage: python -m segan_lib.experiments.findings README.md RESULTS_ROOT")
    print("rewrote", ", ".join(update_readme(Path(sys.argv[1]), Path(sys.argv[2]))) or "no block")
