"""TrainConfig.to_dict and check_resumable: which changes a resumed run may make."""
import json

import pytest

from segan_lib.train.config import TrainConfig, check_resumable


def stored_of(config: TrainConfig, steps_per_epoch: int) -> dict:
    """What a checkpoint keeps under "train" (through JSON: plain values only)."""
    return json.loads(json.dumps({**config.to_dict(), "steps_per_epoch": steps_per_epoch}))


def test_more_epochs_and_other_logging_may_resume():
    stored = stored_of(TrainConfig(epochs=2, batch_size=8, seed=3, checkpoint_dir=None), 5)
    check_resumable(stored, TrainConfig(epochs=9, batch_size=8, seed=3, log_every=1, progress=False), 5, "last.pt")


@pytest.mark.parametrize("change, steps, message", [
    ({"batch_size": 16}, 5, r"written with batch_size=8, this run has batch_size=16; resume with the same batch_size"),
    ({"seed": 4}, 5, r"written with seed=3, this run has seed=4; resume with the same seed"),
    ({}, 6, r"written with 5 steps per epoch, this run has 6; resume with the same dataset size"),
])
def test_a_change_of_data_order_is_refused_naming_the_field(change, steps, message):
    stored = stored_of(TrainConfig(batch_size=8, seed=3), 5)
    config = TrainConfig(**{"batch_size": 8, "seed": 3, **change})
    with pytest.raises(ValueError, match=r"checkpoint runs/last\.pt was " + message):
        check_resumable(stored, config, steps, "runs/last.pt")
