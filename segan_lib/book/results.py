"""Pages of the pinned reference results: one short page per experiment folder.

``notebooks/results/<experiment>/`` holds what ``segan experiment`` wrote on a reference run
(``results.json`` and PNG figures, maybe a ``README.md``). Each folder becomes the page
``results/<experiment>.md``, made to be read top to bottom:

1. the title, the question the experiment asks and a link to the raw ``results.json``;
2. *What was compared and why*: the experiment's description (Markdown), its arms and regimes;
3. *Settings*: the preset's settings, the seeds, and where and when it ran, in one table;
4. *Verdicts*: per arm, baseline and metric, the mean paired difference (with its interval
   where the results have one), the permutation p-value, the verdict and the validity checks;
5. *Runs*: the primary metrics of every arm on every seed, in one table;
6. *Figures*: each PNG with a caption, a click away from its full size (the site's ``segan.js``);
7. *How these results were made*: the command, and the raw file again.

The tables come from :mod:`segan_lib.book.result_tables`, which reads both schemas of
``results.json`` (missing fields are shown as ``-``). Top-level entries the page does not know
stay out of it: they are in the raw file. Building the site never reruns an experiment.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from segan_lib.book.result_tables import (arms_rows, docstring_markdown, format_value, pipe_table, primary_metrics,
                                          run_metric_names, run_validity_rows, seed_rows, settings_rows, split_title, verdict_rows)

RESULTS_FILE = "results.json"
# Captions of the figures segan experiment draws; any other PNG is captioned with its name.
CAPTIONS = {
    "paired_differences": "Paired differences: for each arm against its baseline and each metric, the "
                          "difference arm - baseline on every seed (the numbers behind the verdicts).",
    "curves": "Training curves: the losses of each player (segmentor and discriminator) over the steps, "
              "per arm.",
    "predictions": "Predictions on held-out images",
    "plateau": "Did the baselines finish learning? Held-out mean Dice of each baseline over the steps (each seed "
               "thin, their mean thick); the shaded last quarter is where the mean must move by less than 0.01.",
    "dose_response": "Dose-response: the paired difference arm - baseline (mean over seeds, 95 % interval) "
                     "against the adversarial weight, one line per encoding and regime, for each metric.",
    "label_curve": "Held-out mean Dice (mean over seeds, 95 % interval) against the labelled fraction, one line "
                   "per arm, the all-label ceiling dashed.",
}
VERDICT_NOTE = (
    "Each row compares an arm with its matched baseline on one metric: the mean over the paired seeds of "
    "*arm - baseline* (↑: higher is better, ↓: lower is better) with its interval (or, where the results have "
    "none, the range of the differences over the seeds), the permutation p-value (in brackets, Holm-corrected "
    "over the metrics of its family), the verdict computed from them, and for adversarial arms how many runs had "
    "an unhealthy discriminator or one that judged a shortcut. `-`: not recorded in this results file.")


@dataclass(frozen=True)
class Experiment:
    """One folder of pinned results: ``name`` (the folder name), the folder, its PNG figures."""

    name: str
    folder: Path
    figures: tuple[Path, ...]


def find_experiments(results_dir: str | Path | None) -> list[Experiment]:
    """Every sub-folder of ``results_dir`` that holds a ``results.json``, by name; [] if the folder is absent."""
    if results_dir is None or not Path(results_dir).is_dir():
        return []
    return [Experiment(folder.name, folder, tuple(sorted(folder.glob("*.png"))))
            for folder in sorted(Path(results_dir).iterdir()) if (folder / RESULTS_FILE).is_file()]


def caption(figure: Path) -> str:
    """The caption of a figure file: :data:`CAPTIONS` by name (``predictions_<regime>`` names its
    regime), else the file name in words."""
    stem = figure.stem
    if stem in CAPTIONS:
        return CAPTIONS[stem]
    if stem.startswith("predictions_"):
        return f"{CAPTIONS['predictions']}, regime `{stem[len('predictions_'):]}`: image, truth and each arm's prediction."
    return stem.replace("_", " ").replace("-", " ").capitalize() + "."


def _ordered_figures(experiment: Experiment, listed: object) -> list[Path]:
    """The experiment's PNGs in the order ``results.json`` lists them, then any others by name."""
    names = [name for name in listed if isinstance(name, str)] if isinstance(listed, list) else []
    by_name = {figure.name: figure for figure in experiment.figures}
    return [by_name[name] for name in names if name in by_name] + [f for f in experiment.figures if f.name not in names]


def _compared(results: Mapping, rest: str) -> list[str]:
    """The section *What was compared and why*: description, arms table, regimes."""
    parts = ["## What was compared and why"]
    if rest:
        parts.append(docstring_markdown(rest))
    arms = results.get("arms")
    if isinstance(arms, Mapping) and arms:
        parts.append("**Arms.** Every arm trained on every seed; an arm with a baseline is compared with it.")
        parts.append(pipe_table(*arms_rows(arms), css_class="arms-table"))
    regimes = results.get("regimes")
    if isinstance(regimes, Mapping) and regimes:
        parts.append("**Regimes.**\n\n" + "\n".join(
            f"* `{name}`: " + format_value(regime.get("description") if isinstance(regime, Mapping) else regime)
            for name, regime in regimes.items()))
    return parts


def _runs(results: Mapping) -> list[str]:
    """The section *Runs*: the primary metrics per arm and seed, and the runs' validity records."""
    runs = results.get("runs")
    if not (isinstance(runs, Mapping) and runs):
        return []
    metrics = primary_metrics(results, run_metric_names(runs))
    parts = ["## Runs", f"The primary metrics ({', '.join(metrics)}: mean over the foreground classes) of every "
             "arm on every seed, on the held-out evaluation images. Per-class scores and the other metrics are in "
             "the raw results file.", pipe_table(*seed_rows(runs, metrics), css_class="seeds-table")]
    header, rows = run_validity_rows(runs)
    if rows:
        parts += ["Validity checks of each adversarial run:", pipe_table(header, rows, css_class="validity-table")]
    return parts


def experiment_page(experiment: Experiment, target_dir: Path) -> str:
    """Copy the experiment's files under ``target_dir/<name>/``; return the page's MyST Markdown.

    Raises ``ValueError`` naming the file if ``results.json`` is not a valid JSON object.
    """
    source = experiment.folder / RESULTS_FILE
    try:
        results = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"results: expected valid JSON in {source}, got: {error}") from error
    if not isinstance(results, dict):
        raise ValueError(f"results: expected a JSON object in {source}, got {type(results).__name__}")
    files = target_dir / experiment.name
    files.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, files / RESULTS_FILE)
    raw = f"{{download}}`{RESULTS_FILE} <{experiment.name}/{RESULTS_FILE}>`"
    question, rest = split_title(results["description"]) if isinstance(results.get("description"), str) else ("", "")
    parts = [f"# Reference results: {experiment.name}"]
    if question:
        parts.append(f"**{docstring_markdown(question)}**")
    parts.append(f"A reference run of the experiment `{experiment.name}`, committed with the course in "
                 f"`notebooks/results/{experiment.name}/` and shown as it was recorded (building this site does "
                 f"not rerun it). Everything it recorded, per class and per metric: {raw}.")
    readme = experiment.folder / "README.md"
    if readme.is_file():
        parts.append(readme.read_text(encoding="utf-8"))
    parts += _compared(results, rest)
    parts += ["## Settings", pipe_table(["setting", "value"], settings_rows(results), css_class="settings-table")]
    verdicts = [v for v in results.get("verdicts", []) if isinstance(v, Mapping)] if isinstance(
        results.get("verdicts"), list) else []
    if verdicts:
        parts += ["## Verdicts", VERDICT_NOTE, pipe_table(*verdict_rows(verdicts), css_class="verdict-table")]
    parts += _runs(results)
    figures = _ordered_figures(experiment, results.get("figures"))
    if figures:
        parts.append("## Figures\n\nClick a figure to open it at full size.")
    for figure in figures:
        shutil.copyfile(figure, files / figure.name)
        parts.append(f"```{{figure}} {experiment.name}/{figure.name}\n:alt: {caption(figure)}\n\n{caption(figure)}\n```")
    parts.append("## How these results were made")
    command = results.get("command")
    if isinstance(command, str) and command:
        parts.append(f"From the repository's root folder:\n\n```bash\n{command}\n```")
    parts.append(f"The raw results: {raw} (the runs' own files are under `notebooks/results/{experiment.name}/runs/` "
                 "in the repository, where there are any).")
    return "\n\n".join(parts) + "\n"
