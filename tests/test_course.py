"""Quick and full mode, the notebooks' device, and seeding everything."""
import random

import numpy as np
import pytest
import torch

from segan_lib import course


@pytest.mark.parametrize("cuda, quick, expected", [
    (True, None, "full"),   # a GPU and no request for quick mode
    (True, "", "full"),     # an empty value is unset
    (True, "0", "full"),
    (True, "1", "quick"),
    (True, "yes", "quick"),
    (False, None, "quick"),  # no GPU: always quick
    (False, "0", "quick"),
])
def test_mode_is_full_only_on_cuda_without_segan_quick(monkeypatch, cuda, quick, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if quick is None:
        monkeypatch.delenv(course.QUICK_ENV, raising=False)
    else:
        monkeypatch.setenv(course.QUICK_ENV, quick)
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


@pytest.mark.parametrize("cuda, expected_threads", [(False, course.QUICK_THREADS), (True, None)])
def test_setup_returns_the_mode_sets_quick_threads_and_seeds(monkeypatch, cuda, expected_threads):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.delenv(course.QUICK_ENV, raising=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert course.setup(seed=3) == ("full" if cuda else "quick")
        assert torch.get_num_threads() == (expected_threads or 2)  # full mode leaves threads alone
        first = torch.rand(3)
        course.setup(seed=3)
        assert torch.equal(torch.rand(3), first)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="seed must be an int"):
        course.setup(seed="0")
