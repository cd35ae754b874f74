"""Quick and full mode, the notebooks' device, and seeding everything."""
import random
import re

import numpy as np
import pytest
import torch

from segan_lib import course


@pytest.mark.parametrize("cuda, quick, grading, expected", [
    (True, None, None, "full"),   # a GPU and no request for quick mode
    (True, "", None, "full"),     # an empty value is unset
    (True, "0", None, "full"),
    (True, "1", None, "quick"),
    (True, "yes", None, "quick"),
    (False, None, None, "quick"),  # no GPU: always quick
    (False, "0", None, "quick"),
    (False, "0", "autograde", "quick"),
    (True, None, "autograde", "quick"),  # nbgrader grading on a GPU machine: quick by default
    (True, "", "validate", "quick"),
    (True, None, "", "full"),            # an empty NBGRADER_EXECUTION is unset
    (True, "1", "autograde", "quick"),
    (True, "0", "autograde", "full"),    # SEGAN_QUICK=0 asks for the full experiments while grading
])
def test_mode_is_full_only_on_cuda_without_segan_quick_or_grading(monkeypatch, cuda, quick, grading, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    for name, value in ((course.QUICK_ENV, quick), (course.GRADING_ENV, grading)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert course.mode() == expected
    assert course.device() == torch.device("cuda" if expected == "full" else "cpu")


def test_seed_everything_repeats_python_numpy_and_torch_draws():
    def draws() -> tuple:
        return random.random(), np.random.rand(), torch.rand(3)

    course.seed_everything(7)
    first = draws()
    course.seed_everything(7)
    again = draws()
    course.seed_everything(8)
    other = draws()
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])
    assert first[0] != other[0] and first[1] != other[1] and not torch.equal(first[2], other[2])
    course.seed_everything(2**40)  # NumPy takes seeds below 2**32: reduced, not refused
    assert np.random.get_state()[1][0] == np.random.RandomState(2**40 % 2**32).get_state()[1][0]
    for bad in (1.5, "7", True):
        with pytest.raises(ValueError, match="seed must be an int"):
            course.seed_everything(bad)


@pytest.mark.parametrize("cuda", [False, True])
@pytest.mark.parametrize("threads_env, expected_threads", [(None, 2), ("", 2), ("1", 1), ("3", 3)])
def test_setup_returns_the_mode_pins_threads_only_on_request_and_seeds(monkeypatch, cuda, threads_env,
                                                                       expected_threads):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.delenv(course.QUICK_ENV, raising=False)
    monkeypatch.delenv(course.GRADING_ENV, raising=False)
    if threads_env is None:
        monkeypatch.delenv(course.THREADS_ENV, raising=False)
    else:
        monkeypatch.setenv(course.THREADS_ENV, threads_env)
    # PyTorch's thread count is faked: setting the real one to 3 and back to 1 leaves this process
    # summing floats in another order (an old checkpoint's resumed run then differs in the last bits).
    pool = {"threads": 2}  # "PyTorch's choice" on a 2-core machine
    monkeypatch.setattr(torch, "set_num_threads", lambda n: pool.update(threads=n))
    monkeypatch.setattr(torch, "get_num_threads", lambda: pool["threads"])
    assert course.setup(seed=3) == ("full" if cuda else "quick")
    assert torch.get_num_threads() == expected_threads  # left alone unless SEGAN_THREADS is set
    first = torch.rand(3)
    course.setup(seed=3)
    assert torch.equal(torch.rand(3), first)
    with pytest.raises(ValueError, match="seed must be an int"):
        course.setup(seed="0")


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_a_bad_segan_threads_is_a_value_error_naming_it(monkeypatch, bad):
    monkeypatch.setenv(course.THREADS_ENV, bad)
    with pytest.raises(ValueError, match=f"SEGAN_THREADS must be a positive integer .*got '{re.escape(bad)}'"):
        course.setup(seed=0)


def test_the_cli_takes_its_threads_from_segan_threads_unless_given(monkeypatch, tmp_path):
    """``--threads`` wins over ``SEGAN_THREADS``, which wins over PyTorch's own choice (also in --quick)."""
    from segan_lib import cli

    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    monkeypatch.setattr(cli, "build_data", lambda *args, **kwargs: _stop())  # stop right after the threads
    for env, flags, expected in ((None, [], []), ("3", [], [3]), ("3", ["--threads", "2"], [2]),
                                 (None, ["--quick"], [])):
        chosen.clear()
        if env is None:
            monkeypatch.delenv(course.THREADS_ENV, raising=False)
        else:
            monkeypatch.setenv(course.THREADS_ENV, env)
        with pytest.raises(_Stopped):
            cli.main(["train", *flags, "--out", str(tmp_path)])
        assert chosen == expected, (env, flags)


class _Stopped(Exception):
    pass


def _stop():
    raise _Stopped
