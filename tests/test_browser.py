"""The widgets in a real browser: JupyterLab in headless Chromium, driven by Playwright.

Starts ``jupyter lab`` on 127.0.0.1 with a random token in a temporary folder holding a copy of
the notebooks and a student release made by ``segan assignments``; opens ``03_losses.ipynb``,
runs every cell up to and including the loss explorer from the Run menu (the rest of the
notebook, its training experiment, is executed by nbval), moves the "gamma" slider of the
loss explorer with the keyboard and checks that the plot changed, with no error in any output
or in the browser console. Then opens the student release of the same notebook and checks that its exercises
show no solution. A screenshot of the explorer is saved as a test artifact:
``test-artifacts/loss_explorer.png`` (folder: ``$SEGAN_TEST_ARTIFACTS``).

Needs Debian's Chromium (Playwright's own browser download is not used):
``apt-get install chromium``; without it the test is skipped with that message.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from segan_lib.assignments import make_release

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SEGAN_TEST_ARTIFACTS", REPO / "test-artifacts"))
# Only a guard against a kernel that never finishes, not a speed check: the cells before the
# explorer take seconds.
RUN_TIMEOUT_S = 1200
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Lab settings for a quiet, reproducible session: every cell in the page (no windowing, so
# the whole notebook can be read) and no news or update checks (they would go to the network).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}

pytestmark = [pytest.mark.browser, pytest.mark.slow]
if not Path(CHROMIUM).exists():
    pytest.skip("Chromium not found: install Debian's chromium (apt-get install chromium) to run the "
                "JupyterLab browser test", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab on a temporary copy of the notebooks; yields (base URL, token, root)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    make_release(root / "course", REPO / "notebooks", only=["03_losses"])
    settings = root / ".settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}  # the inline backend
    env.update(SEGAN_QUICK="1", JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={root / '.workspaces'}", "--ServerApp.allow_root=True"]
    log = open(root / "jupyter.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a guard against a server that never starts
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not start:\n{(root / 'jupyter.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token, root
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def page(lab):
    """A headless Chromium page; ``page.problems`` collects console errors and page errors."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(lab[2] / ".chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.problems = []
        page.on("console", lambda message: message.type == "error" and page.problems.append(
            f"console: {message.text} ({message.location.get('url', '')})"))
        page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
        try:
            yield page
        finally:
            context.close()


def open_notebook(page, lab, path: str):
    """Open ``path`` alone in a fresh Lab workspace; return its notebook once the kernel is idle."""
    base, token, _ = lab
    workspace = re.sub(r"\W", "-", path)
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{path}?reset&token={token}", timeout=120_000)
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    notebook.locator(".jp-Cell").first.wait_for(timeout=120_000)
    # The kernel has started when the toolbar's execution indicator says idle.
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"
                 ).wait_for(timeout=120_000)
    return notebook


def fail_with_screenshot(page, message: str) -> None:
    """Fail the test, saving what the browser shows as ``browser_failure.png`` next to the artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser_failure.png"))
    pytest.fail(f"{message} (screenshot: {ARTIFACTS / 'browser_failure.png'})")


def run_cells_above(notebook, stop: int, code_above: int) -> None:
    """Select cell ``stop`` (index among all cells, > 0), Run > Run All Above Selected Cell, then
    wait until the ``code_above`` code cells before it (counted in the file, not in a page that
    may still be rendering) show their execution counts."""
    page = notebook.page
    cells = notebook.locator(".jp-Cell")
    prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt")
    started = prompts.filter(has_text=re.compile(r"\[(\*|\d+)\]")).first
    for _ in range(3):  # a click that lands while Lab is still settling is retried
        cells.nth(stop).locator(".jp-InputPrompt").click()
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Above Selected Cell$")).click()
        try:
            started.wait_for(timeout=20_000)
            break
        except sync_api.TimeoutError:
            page.keyboard.press("Escape")
    else:
        fail_with_screenshot(page, "Run > Run All Above Selected Cell did not start the notebook")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        texts = prompts.all_inner_texts()[:code_above]
        pending = [text for text in texts if not re.fullmatch(r"\[\d+\]:", text.strip())]
        if len(texts) == code_above and not pending:
            return
        if time.monotonic() > deadline:
            missing = code_above - len(texts) + len(pending)
            fail_with_screenshot(page, f"{missing} cells had not run after {RUN_TIMEOUT_S} s")
        time.sleep(1)


def output_problems(notebook) -> list[str]:
    """Texts of the stderr outputs (tracebacks are rendered as stderr too) that mention an error."""
    stderr = notebook.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    return [text for text in stderr.all_inner_texts() if "Error" in text or "Traceback" in text]


def test_loss_explorer_slider_updates_the_plot(page, lab):
    cells = nbformat.read(REPO / "notebooks" / "03_losses.ipynb", as_version=4).cells
    explorer_cell = next(index for index, cell in enumerate(cells)
                         if cell.cell_type == "code" and "loss_explorer()" in cell.source)
    start = time.monotonic()
    notebook = open_notebook(page, lab, "notebooks/03_losses.ipynb")
    run_cells_above(notebook, explorer_cell + 1, sum(cell.cell_type == "code" for cell in cells[:explorer_cell + 1]))
    ran_s = time.monotonic() - start
    prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    ran = sum(bool(re.fullmatch(r"\[\d+\]:", text.strip())) for text in prompts)
    assert ran == sum(cell.cell_type == "code" for cell in cells[:explorer_cell + 1])  # the explorer and above only
    assert output_problems(notebook) == []

    gamma = notebook.locator(".widget-slider", has=page.locator(".widget-label", has_text=re.compile(r"^gamma$")))
    sync_api.expect(gamma).to_have_count(1, timeout=60_000)  # one slider labelled gamma, once the widget shows
    explorer = gamma.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")
    image = explorer.locator("img").first
    readout = gamma.locator(".widget-readout")
    image.scroll_into_view_if_needed()
    image.wait_for(state="visible")
    before_src, before_pixels, before_value = image.get_attribute("src"), image.screenshot(), readout.inner_text()

    handle = gamma.locator(".noUi-handle")
    handle.focus()
    page.keyboard.press("ArrowRight")  # one step of 0.25; the explorer redraws on release
    try:
        page.wait_for_function("([img, src]) => img.getAttribute('src') !== src",
                               arg=[image.element_handle(), before_src], timeout=60_000)
    except sync_api.TimeoutError:
        fail_with_screenshot(page, "the explorer's image did not change within 60 s of moving gamma")
    page.wait_for_timeout(500)  # let the new image paint
    after_pixels = image.screenshot()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "loss_explorer.png"))
    assert float(readout.inner_text()) == pytest.approx(float(before_value) + 0.25)
    assert after_pixels != before_pixels, "the plot did not change"
    assert output_problems(notebook) == []
    assert page.problems == []
    print(f"03_losses up to the explorer ran in the browser in {ran_s:.0f} s")


def test_student_release_shows_exercises_without_solutions(page, lab):
    source = nbformat.read(REPO / "notebooks" / "03_losses.ipynb", as_version=4)
    exercises = [index for index, cell in enumerate(source.cells)
                 if cell.metadata.get("nbgrader", {}).get("solution")]
    problems_before = len(page.problems)
    notebook = open_notebook(page, lab, "course/release/03_losses/03_losses.ipynb")
    cells = notebook.locator(".jp-Cell")
    # Lab adds the cells while it renders: wait (retrying) until all of them are on the page.
    sync_api.expect(cells).to_have_count(len(source.cells), timeout=60_000)
    text = notebook.inner_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    for index in exercises:
        shown = cells.nth(index).inner_text()
        assert "# YOUR CODE HERE" in shown and "raise NotImplementedError()" in shown
        solution = source.cells[index].source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
        for line in filter(None, (line.strip() for line in solution.splitlines())):
            assert line not in shown, f"cell {index} shows solution line {line!r}"
    assert page.problems[problems_before:] == []
