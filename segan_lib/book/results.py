"""Pages of the pinned reference results: one page per experiment folder.

``notebooks/results/<experiment>/`` holds what ``segan experiment`` wrote on a reference run
(``results.json`` and PNG figures, maybe a ``README.md``). Each folder becomes the page
``results/<experiment>.md``: its README, the tables of ``results.json``, every figure, and the
raw file as a download. The page is made from whatever the JSON holds (scalars as a table of
facts, lists and mappings of records as tables), so it keeps working as the schema grows.
The results are shown as committed; building the site never reruns an experiment.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

RESULTS_FILE = "results.json"
MAX_TABLE_ROWS = 200  # beyond this a table points at the downloadable results.json
MAX_DEPTH = 4  # deeper nesting is shown as JSON text in a cell
MAX_TABLE_COLUMNS = 16  # a mapping of records with more columns is split into sections


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


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def format_value(value: object) -> str:
    """A table cell: floats to 4 significant digits, other values as text, ``|`` escaped."""
    if isinstance(value, float):
        text = "nan" if math.isnan(value) else f"{value:.4g}"
    elif value is None:
        text = "-"
    elif _is_scalar(value):
        text = str(value)
    else:
        text = json.dumps(value)
        text = text if len(text) <= 80 else text[:77] + "..."
    return text.replace("|", "\\|").replace("\n", " ")


def flatten(record: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}, "c": 2}`` -> ``{"a.b": 1, "c": 2}``; lists stay values."""
    flat: dict[str, object] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A pipe table; more than ``MAX_TABLE_ROWS`` rows are cut with a note."""
    lines = ["| " + " | ".join(format_value(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_value(cell) for cell in row) + " |" for row in rows[:MAX_TABLE_ROWS]]
    if len(rows) > MAX_TABLE_ROWS:
        lines.append(f"\n({len(rows) - MAX_TABLE_ROWS} more rows in `{RESULTS_FILE}`.)")
    return "\n".join(lines)


def _records_table(records: list[tuple[str | None, dict]], key_name: str) -> str:
    flat = [(key, flatten(record)) for key, record in records]
    columns = list(dict.fromkeys(column for _, record in flat for column in record))
    header = ([key_name] if records[0][0] is not None else []) + columns
    rows = [([key] if key is not None else []) + [record.get(column) for column in columns] for key, record in flat]
    return markdown_table(header, rows)


def _is_record_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _is_record_mapping(value: object) -> bool:
    """A mapping of records small enough for one table: ``{"arm": {"dice": 0.8, ...}, ...}``."""
    if not (isinstance(value, dict) and value and all(isinstance(item, dict) for item in value.values())):
        return False
    columns = {column for item in value.values() for column in flatten(item)}
    return len(columns) <= MAX_TABLE_COLUMNS


def json_markdown(data: object, level: int = 2, depth: int = 0) -> str:
    """Markdown of a ``results.json`` value: scalars of a mapping as a table of facts, a list or a
    small mapping of records as one table, other nested mappings as sections of heading ``level``."""
    if _is_record_list(data):
        return _records_table([(None, item) for item in data], "")
    if not isinstance(data, dict) or depth >= MAX_DEPTH:
        return format_value(data)
    facts = [[key, value] for key, value in data.items() if not isinstance(value, dict) and not _is_record_list(value)]
    parts = [markdown_table(["field", "value"], facts)] if facts else []
    for key, value in data.items():
        heading = "#" * min(level, 6) + f" {key}"
        if _is_record_mapping(value):
            parts.append(f"{heading}\n\n" + _records_table(list(value.items()), "name"))
        elif isinstance(value, dict) or _is_record_list(value):
            parts.append(f"{heading}\n\n" + json_markdown(value, level + 1, depth + 1))
    return "\n\n".join(parts)


def _caption(figure: Path) -> str:
    return figure.stem.replace("_", " ").replace("-", " ")


def experiment_page(experiment: Experiment, target_dir: Path) -> str:
    """Copy the experiment's files under ``target_dir/<name>/``; return the page's MyST Markdown.

    Raises ``ValueError`` naming the file if ``results.json`` is not valid JSON.
    """
    source = experiment.folder / RESULTS_FILE
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"results: expected valid JSON in {source}, got: {error}") from error
    files = target_dir / experiment.name
    files.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, files / RESULTS_FILE)
    parts = [f"# Reference results: {experiment.name}",
             f"Results of the experiment `{experiment.name}` as committed with the course in "
             f"`notebooks/results/{experiment.name}/`: a reference run, shown as it was recorded "
             f"(building this site does not rerun it). The raw file: "
             f"{{download}}`{RESULTS_FILE} <{experiment.name}/{RESULTS_FILE}>`."]
    readme = experiment.folder / "README.md"
    if readme.is_file():
        parts.append(readme.read_text(encoding="utf-8"))
    parts.append("## Tables\n\n" + json_markdown(data, level=3))
    if experiment.figures:
        parts.append("## Figures")
        for figure in experiment.figures:
            shutil.copyfile(figure, files / figure.name)
            parts.append(f"```{{figure}} {experiment.name}/{figure.name}\n:alt: {_caption(figure)}\n\n"
                         f"{_caption(figure)}\n```")
    return "\n\n".join(parts) + "\n"
