"""The pieces of a results page, as MyST Markdown: values, tables, and an experiment's description.

Every function reads what ``results.json`` holds and shows ``-`` for what it lacks, so a page
can be made from the first schema (verdicts with ``mean``, ``min``, ``max``, ``outcome``,
``verdict``) and from the later one (``family``, ``interval``, ``confidence``,
``permutation_p``, ``permutation_p_holm``, ``validity``, ...) alike.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

MISSING = "-"
DEFAULT_PRIMARY = ("dice", "iou")  # the per-seed table's metrics when results.json names none


def format_value(value: object, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant digits, lists as ``a, b``, mappings as
    ``key=value`` pairs, None as ``-``; ``|`` escaped and line breaks removed."""
    if value is None:
        text = MISSING
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = "nan" if math.isnan(value) else f"{value:.{digits}g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(format_value(item, digits) for item in value) if value else MISSING
    elif isinstance(value, Mapping):
        text = ", ".join(f"{key}={format_value(item, digits)}" for key, item in value.items()) or MISSING
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def signed(value: object, digits: int = 3) -> str:
    """``+0.0136`` / ``-0.37``: a difference with its sign, or ``-`` if it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return MISSING
    return f"{value:+.{digits}g}"


def pipe_table(header: Sequence[str], rows: Sequence[Sequence[str]], css_class: str = "") -> str:
    """A Markdown pipe table of already formatted cells, inside a ``{container}`` of ``css_class``
    (the site's CSS keeps such cells on one line; the theme scrolls a wide table sideways)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    table = "\n".join(lines)
    return f"```{{container}} results-table {css_class}".rstrip() + f"\n{table}\n```" if css_class else table


# ---------------------------------------------------------------- the experiment's description

ROLE = re.compile(r":[a-z:]+:`(~?)([^`<]*?)\s*(?:<[^>]*>)?`")  # :class:`~a.B`, :mod:`text <a.b>`


def docstring_markdown(text: str) -> str:
    """An experiment's description (a Python docstring in reStructuredText style) as Markdown:
    ````code```` becomes ```code```, a role such as ``:mod:`~a.b.c``` becomes ```c```, and ``$``
    and ``<`` outside code are escaped (MyST would read math and HTML). Paragraphs and ``*``
    bullets are Markdown already, once each list follows a blank line."""
    text = ROLE.sub(lambda m: f"``{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}``", text)
    parts = re.split(r"(``.+?``)", text, flags=re.DOTALL)
    for index, part in enumerate(parts):
        if index % 2:  # a code span
            parts[index] = f"`{part[2:-2]}`"
        else:
            parts[index] = part.replace("$", "\\$").replace("<", "\\<")
    lines: list[str] = []
    for line in "".join(parts).splitlines():
        if line.startswith("* ") and lines and lines[-1].strip() and not lines[-1].startswith(("* ", "  ")):
            lines.append("")  # a list needs a blank line before it
        lines.append(line)
    return "\n".join(lines)


def split_title(description: str) -> tuple[str, str]:
    """``("does an adversarial term help ...?", rest)`` from ``"Experiment ``x``: does ...?\\n\\nrest"``:
    the question the experiment asks (its first line, after the colon) and the other paragraphs."""
    first, _, rest = description.strip().partition("\n\n")
    question = " ".join((first.split(":", 1)[1] if ":" in first else first).split())
    return question[:1].upper() + question[1:], rest.strip()


# ---------------------------------------------------------------- tables

def settings_rows(results: Mapping[str, object]) -> list[list[str]]:
    """(setting, value) rows: preset, seeds, the preset's settings, then where and when it ran."""
    rows = [["preset", format_value(results.get("preset"))], ["seeds", format_value(results.get("seeds"))]]
    if "held_out_seed" in results:
        rows.append(["held-out seed (evaluation images)", format_value(results["held_out_seed"])])
    settings = results.get("settings")
    for key, value in (settings.items() if isinstance(settings, Mapping) else []):
        if key != "seeds":
            rows.append([f"`{key}`", format_value(value)])
    environment = results.get("environment")
    environment = environment if isinstance(environment, Mapping) else {}
    machine = [environment.get("platform"), environment.get("device_name"), environment.get("device")]
    cores = environment.get("cpu_count")
    rows += [["PyTorch", format_value(environment.get("torch"))], ["Python", format_value(environment.get("python"))],
             ["machine", ", ".join(str(part) for part in machine if part) + (f", {cores} CPU cores" if cores else "")
              or MISSING],
             ["PyTorch threads", format_value(environment.get("torch_threads"))],
             ["date", format_value(environment.get("date"))]]
    if "complete" in results:
        rows.append(["every run finished", format_value(results["complete"])])
    return rows


def arms_rows(arms: Mapping[str, Mapping]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the arms table: one row per arm, a column per field some arm fills."""
    columns = list(dict.fromkeys(key for arm in arms.values() if isinstance(arm, Mapping) for key, value in arm.items()
                                 if value not in (None, {}, [], "")))
    rows = [[f"`{name}`"] + [format_value(arm.get(column)) if isinstance(arm, Mapping) else MISSING
                             for column in columns] for name, arm in arms.items()]
    return ["arm", *[column.replace("_", " ") for column in columns]], rows


def _validity(value: object) -> str:
    if not isinstance(value, Mapping):
        return MISSING
    runs, unhealthy, shortcut = (value.get(key) for key in ("runs", "unhealthy", "shortcut"))
    text = f"{format_value(runs)} runs: {format_value(unhealthy)} unhealthy, {format_value(shortcut)} shortcut"
    return ("⚠ " + text) if (unhealthy or shortcut) else text


def verdict_rows(verdicts: Sequence[Mapping]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the verdict table, the primary family first (a stable sort)."""
    confidence = next((v.get("confidence") for v in verdicts if isinstance(v.get("confidence"), (int, float))), None)
    has_interval = any(isinstance(v.get("interval"), Sequence) for v in verdicts)
    label = (f"[{confidence:.1%} interval]".replace(".0%", "%") if confidence else "[interval]") if has_interval else (
        "(range over the seeds)")
    header = ["arm", "baseline", "metric", "family", f"mean difference {label}", "permutation p", "verdict", "validity"]
    rows = []
    for verdict in sorted(verdicts, key=lambda v: v.get("family") != "primary"):
        better = verdict.get("higher_is_better")
        metric = f"{verdict.get('metric', MISSING)} {'↑' if better else '↓' if better is not None else ''}".strip()
        low_high = verdict.get("interval")
        if isinstance(low_high, Sequence) and len(low_high) == 2:
            span = f" [{signed(low_high[0])}, {signed(low_high[1])}]"
        elif not has_interval and "min" in verdict and "max" in verdict:
            span = f" ({signed(verdict['min'])} .. {signed(verdict['max'])})"
        else:
            span = ""
        p_value = format_value(verdict.get("permutation_p"), 3)
        if verdict.get("permutation_p_holm") is not None:
            p_value += f" (Holm {format_value(verdict['permutation_p_holm'], 3)})"
        rows.append([f"`{verdict.get('arm', MISSING)}`", f"`{verdict.get('baseline', MISSING)}`", metric,
                     format_value(verdict.get("family")), signed(verdict.get("mean")) + span, p_value,
                     format_value(verdict.get("verdict")), _validity(verdict.get("validity"))])
    return header, rows


def primary_metrics(results: Mapping[str, object], available: Sequence[str]) -> list[str]:
    """The metrics of the per-seed table: ``primary_metrics``, else the metrics of the primary
    verdicts, else Dice and IoU (or the first metric the runs have)."""
    named = results.get("primary_metrics")
    if not (isinstance(named, list) and named):
        verdicts = results.get("verdicts") if isinstance(results.get("verdicts"), list) else []
        named = list(dict.fromkeys(v.get("metric") for v in verdicts
                                   if isinstance(v, Mapping) and v.get("family") == "primary"))
    chosen = [metric for metric in named if metric in available] if named else []
    return chosen or [m for m in DEFAULT_PRIMARY if m in available] or list(available[:1])


def _score_tables(run: object) -> list[Mapping]:
    """The tables of one run that hold metrics by name: ``scores.mean``, ``scores.overall``, ``metrics``."""
    if not isinstance(run, Mapping):
        return []
    scores = run.get("scores") if isinstance(run.get("scores"), Mapping) else {}
    return [table for table in (scores.get("mean"), scores.get("overall"), run.get("metrics"))
            if isinstance(table, Mapping)]


def run_metric_names(runs: Mapping[str, Mapping]) -> list[str]:
    """Every metric name the runs record, in the order first met."""
    return list(dict.fromkeys(metric for arm in runs.values() if isinstance(arm, Mapping)
                              for run in arm.values() for table in _score_tables(run) for metric in table))


def run_metric(run: object, metric: str) -> object:
    """``metric`` of one run of ``results["runs"]``: its foreground mean (``scores.mean``), an
    overall score, or a flat ``metrics`` entry; None if the run has none of these."""
    return next((table[metric] for table in _score_tables(run) if metric in table), None)


def seed_rows(runs: Mapping[str, Mapping], metrics: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-seed table: a row per (arm, metric), a column per seed, and the mean."""
    seeds = sorted({seed for arm in runs.values() if isinstance(arm, Mapping) for seed in arm},
                   key=lambda seed: (len(str(seed)), str(seed)))
    rows = []
    for name, arm in runs.items():
        arm = arm if isinstance(arm, Mapping) else {}
        for metric in metrics:
            values = [run_metric(arm.get(seed), metric) for seed in seeds]
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            mean = sum(numbers) / len(numbers) if numbers else None
            rows.append([f"`{name}`", metric, *[format_value(v) for v in values], format_value(mean)])
    return ["arm", "metric", *[f"seed {seed}" for seed in seeds], "mean"], rows


def run_validity_rows(runs: Mapping[str, Mapping]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the runs' own ``validity`` records (adversarial runs only), if any."""
    records = [(name, seed, run["validity"]) for name, arm in runs.items() if isinstance(arm, Mapping)
               for seed, run in arm.items() if isinstance(run, Mapping) and isinstance(run.get("validity"), Mapping)]
    columns = list(dict.fromkeys(key for *_, validity in records for key in validity))
    rows = [[f"`{name}`", str(seed), *[format_value(validity.get(c)) for c in columns]] for name, seed, validity in records]
    return ["arm", "seed", *[c.replace("_", " ") for c in columns]], rows
