"""``segan_lib.train.history`` beyond the engine tests (``test_engine.py`` covers NaN padding and
the basic averaging): copies made by ``to_dict``/``from_dict``, a JSON round trip, the two
families padded independently, reserved loss names, and what ``LogAccumulator`` accepts, hands
to ``reduce`` and reports when a loss stops being finite."""
from __future__ import annotations

import json
import math

import pytest
import torch

from segan_lib.train.history import History, LogAccumulator, TrainingDiverged


def small_history() -> History:
    """Three logging intervals (``loss_discriminator`` missing from the first) and two evaluations."""
    history = History()
    history.append_train(2, 0.5, {"loss": 1.5})
    history.append_val(2, 0, {"mean_dice": 0.25, "dice": torch.tensor([1.0, 0.25])})
    history.append_train(4, 1.0, {"loss": 1.0, "loss_discriminator": 0.75})
    history.append_train(6, 1.5, {"loss": 0.5, "loss_discriminator": 0.5})
    history.append_val(6, 1, {"mean_dice": 0.5, "dice": torch.tensor([1.0, 0.5])})
    return history


def same_lists(a: dict, b: dict) -> bool:
    """Equal keys and values, a NaN equal to any NaN (a JSON round trip makes new NaN objects)."""
    def same(x: object, y: object) -> bool:
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x):
            return math.isnan(y)
        return x == y
    return a.keys() == b.keys() and all(len(a[k]) == len(b[k]) and all(map(same, a[k], b[k])) for k in a)


def test_train_and_validation_families_are_padded_independently():
    history = small_history()
    assert history["step"] == [2, 4, 6] and history["epoch"] == [0.5, 1.0, 1.5]
    assert history["loss"] == [1.5, 1.0, 0.5]
    assert math.isnan(history["loss_discriminator"][0]) and history["loss_discriminator"][1:] == [0.75, 0.5]
    assert history["val_step"] == [2, 6] and history["val_epoch"] == [0, 1]  # not padded by the train rows
    assert history["val_mean_dice"] == [0.25, 0.5] and history["val_dice"] == [[1.0, 0.25], [1.0, 0.5]]
    assert history.last("loss") == 0.5 and history.last("val_dice") == [1.0, 0.5]


def test_a_metric_missing_from_a_later_evaluation_is_padded_with_nan():
    history = small_history()
    history.append_val(8, 2, {"mean_dice": 0.75})
    assert history["val_mean_dice"][-1] == 0.75 and math.isnan(history["val_dice"][-1])
    assert len(history["step"]) == 3  # the training lists are left alone


def test_to_dict_and_from_dict_copy_the_lists():
    history = small_history()
    plain = history.to_dict()
    assert type(plain) is dict and plain == history
    plain["loss"].append(99.0)
    assert history["loss"] == [1.5, 1.0, 0.5]  # the history is not changed through the copy
    restored = History.from_dict(plain)
    plain["loss"].clear()
    assert isinstance(restored, History) and restored["loss"] == [1.5, 1.0, 0.5, 99.0]


def test_json_round_trip_and_a_resumed_history_keeps_padding():
    history = small_history()
    restored = History.from_dict(json.loads(json.dumps(history.to_dict())))
    assert same_lists(restored, history)
    restored.append_train(8, 2.0, {"loss_generator": 0.25})  # a new loss after resuming
    assert restored["step"] == [2, 4, 6, 8] and math.isnan(restored["loss"][-1])
    assert all(math.isnan(v) for v in restored["loss_generator"][:3]) and restored["loss_generator"][3] == 0.25


@pytest.mark.parametrize("name", ["step", "epoch", "val_loss"])
def test_reserved_loss_names_are_refused_and_nothing_is_appended(name):
    history = small_history()
    with pytest.raises(ValueError, match=f"loss names must not be .* got '{name}'"):
        history.append_train(8, 2.0, {"loss": 0.1, name: 1.0})
    assert history["step"] == [2, 4, 6] and history["loss"] == [1.5, 1.0, 0.5]


def test_last_of_a_key_logged_nowhere_names_the_known_keys():
    with pytest.raises(KeyError, match=r"history has no values for 'loss_generator'; keys: \['epoch', 'loss', 'step'\]"):
        History({"step": [1], "epoch": [0.5], "loss": [1.0]}).last("loss_generator")


def test_log_accumulator_accepts_numbers_and_integer_tensors_and_detaches():
    logs = LogAccumulator()
    loss = torch.tensor(4.0, requires_grad=True) * 1.0
    logs.add(0, {"loss": loss, "correct": torch.tensor(3)})
    logs.add(1, {"loss": 2, "correct": torch.tensor(4)})
    assert len(logs) == 2
    assert logs.read() == {"loss": 3.0, "correct": 3.5}  # float means, not integer division


def test_reduce_gets_the_steps_by_losses_table_in_first_seen_order():
    logs, tables = LogAccumulator(), []

    def reduce(table: torch.Tensor) -> torch.Tensor:
        tables.append(table.clone())
        return table * 2.0

    logs.add(5, {"loss_discriminator": torch.tensor(1.0)})
    logs.add(6, {"loss": torch.tensor(3.0), "loss_discriminator": torch.tensor(5.0)})
    logs.add(7, {"loss": torch.tensor(7.0)})
    means = logs.read(reduce=reduce)
    # (3 steps, 2 losses), columns loss_discriminator then loss; a loss a step did not log is 0 there.
    assert torch.equal(tables[0], torch.tensor([[1.0, 0.0], [5.0, 3.0], [0.0, 7.0]]))
    assert tables[0].dtype == torch.float32
    assert means == {"loss_discriminator": 6.0, "loss": 10.0}  # means over the steps that logged each loss
    assert list(means) == ["loss_discriminator", "loss"]


def test_steps_without_logs_read_as_nothing_and_are_cleared():
    logs = LogAccumulator()
    logs.add(0, {})
    assert len(logs) == 1 and logs.read() == {} and len(logs) == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_raises_training_diverged_with_its_step_name_and_value(bad):
    logs = LogAccumulator()
    logs.add(10, {"loss": torch.tensor(1.0)})
    logs.add(11, {"loss": torch.tensor(2.0), "loss_critic": torch.tensor(bad)})
    with pytest.raises(TrainingDiverged, match=f"loss 'loss_critic' is {bad} at step 11") as info:
        logs.read()
    assert isinstance(info.value, RuntimeError)
    assert info.value.step == 11 and info.value.loss_name == "loss_critic"
    assert repr(info.value.value) == repr(bad)  # nan, inf or -inf, as read back


def test_a_non_finite_value_made_by_reduce_is_caught_too():
    logs = LogAccumulator()
    logs.add(3, {"loss": torch.tensor(1.0)})
    with pytest.raises(TrainingDiverged, match="at step 3"):  # e.g. another process diverged
        logs.read(reduce=lambda table: table * math.inf)


def test_add_refuses_what_is_not_a_dict_of_scalars():
    logs = LogAccumulator()
    with pytest.raises(ValueError, match="train_step must return a dict of loss name -> 0-d tensor, got list"):
        logs.add(0, [torch.tensor(1.0)])
    with pytest.raises(ValueError, match=r"train_step log 'loss' must be a 0-d tensor, got shape \(1,\)"):
        logs.add(0, {"loss": torch.tensor([1.0])})
    assert len(logs) == 0  # nothing half-recorded
