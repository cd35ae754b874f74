"""The project's set-up files agree with each other (one list of dependencies)."""
import pathlib
import re
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_through_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    # conda provides only the interpreter and pip; everything else comes from pyproject.toml
    assert sorted(re.split(r"[=<> ]", d)[0] for d in conda_deps) == ["pip", "python"]
    assert pip_sections == [["-e .[dev,docs]"]]
    assert "dev" in _pyproject()["project"]["optional-dependencies"]


def test_pyproject_lists_runtime_and_dev_dependencies():
    project = _pyproject()["project"]
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["dependencies"]}
    assert {"torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "pillow"} <= names
    assert "torchvision" not in names  # no CPU build of it where the course runs CI
    dev = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["optional-dependencies"]["dev"]}
    assert {"jupyterlab", "nbval", "pytest", "ipykernel"} <= dev
    assert project["scripts"]["segan"] == "segan_lib.cli:main"


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    install, test = blocks[0].strip(), blocks[1].strip()
    assert "pip install torch==2.13.0" in install and '-e ".[dev,docs]"' in install
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci, "CI must run exactly the README's test command"
