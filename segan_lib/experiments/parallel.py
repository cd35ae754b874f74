"""Runs of an experiment side by side: ``jobs`` processes at a time, each with its own few threads.

The reference presets train each run on one thread, so on a 2-core machine two runs side by side
keep both cores busy where one at a time leaves one idle. Every run seeds itself and builds its own data,
so a run's result does not depend on which process trains it or in which order: the runner's
``jobs > 1`` gives the same numbers as ``jobs = 1`` (``tests/test_experiments.py`` checks this).

The processes are *spawned* (a fresh interpreter each), not forked: a process forked from one
that has started PyTorch's thread pools can hang. A spawned process imports the script that
started it, so a script that runs an experiment with ``jobs > 1`` keeps its work under
``if __name__ == "__main__":`` (the ``segan`` command and notebooks need nothing).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import torch


def _limit_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def in_processes(function: Callable, tasks: Iterable[tuple], jobs: int, threads: int) -> Iterator[tuple[tuple, object]]:
    """Yield ``(task, function(*task))`` for every task as it finishes, ``jobs`` at a time, each
    process limited to ``threads`` PyTorch threads. ``function`` must be importable (defined at
    the top level of a module). The first error is raised here (a worker that died: a
    ``RuntimeError`` saying what to check), after the tasks not yet started
    are cancelled (those already running finish first)."""
    tasks = list(tasks)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_limit_threads,
                               initargs=(threads,))
    try:
        futures = {pool.submit(function, *task): task for task in tasks}
        for future in as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool as error:
                raise RuntimeError(
                    "a worker process ended before finishing its run (its error is printed above). If you called "
                    "this from a script with jobs > 1, put the script's work under 'if __name__ == \"__main__\":': "
                    "each worker is a new process that imports the script") from error
            yield futures[future], result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
