"""Hung et al.'s semi-supervised strategy: one step against its formulas, the arms (labelled
only, adversarial only, softmax self-training), bf16 / channels_last / binary steps, errors, and
the unlabelled stream (a function of the step, sharded by rank, its masks never used).

The engine tests (resume, DDP, NaN stop, CLI) are in ``test_semi_engine.py`` and build their
runs with :func:`semi_trainer` from here."""
import copy

import pytest
import torch

from segan_lib import course
from segan_lib.data import SynthShapes, split_labelled
from segan_lib.losses import cross_entropy, label_maps, segmentation_probs, self_training_loss, softmax_confidence
from segan_lib.losses import PIXEL_LOSSES, spatial_bce_loss
from segan_lib.models import UNet
from segan_lib.train import TrainConfig, Trainer
from segan_lib.train.semi import SemiStrategy, semi_warmup_steps, unlabelled_positions

from builders import assert_same_weights, parameters


class PairTensors(torch.utils.data.Dataset):
    """24 SynthShapes pairs ``(3, 16, 16)`` / ``(16, 16)`` (4 classes) held as tensors, with ``get_batch``."""

    num_classes, in_channels = 4, 3

    def __init__(self) -> None:
        self.images, self.masks = SynthShapes(24, size=16, seed=0).get_batch(torch.arange(24))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.masks[i]

    def get_batch(self, indices: torch.Tensor):
        return self.images[indices], self.masks[indices]


def tiny_semi(unlabelled, *, batch_norm: bool = True, strategy_class: type = SemiStrategy, **options) -> SemiStrategy:
    """A seeded U-Net (base 4, depth 2) and a discriminator of width 4, depth 3 (16x16 -> 1x1)."""
    course.seed_everything(0)  # the same initial weights in every process
    segmentor = UNet(3, 4, base_channels=4, depth=2, batch_norm=batch_norm)
    return strategy_class(segmentor, in_channels=3, num_classes=4, unlabelled=unlabelled,
                        **{"semi_start_step": 2, "critic_base_channels": 4, "critic_depth": 3, **options})


def semi_trainer(checkpoint_dir=None, *, data=None, callbacks=(), **options) -> Trainer:
    """8 labelled and 16 unlabelled of :class:`PairTensors`, batches of 4 (2 steps per epoch, 4 epochs:
    two unlabelled epochs), checkpoints every 2 steps into ``checkpoint_dir``."""
    labelled, unlabelled = split_labelled(PairTensors() if data is None else data, count=8, seed=0)
    strategy = tiny_semi(unlabelled, **options)
    # the fp32 path (amp="off"): one and two processes must agree to 1e-5, which bf16's rounding would not
    config = TrainConfig(epochs=4, batch_size=4, log_every=1, checkpoint_every=2, progress=False, device="cpu",
                         amp="off", checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir))
    return Trainer(strategy, labelled, num_classes=4, config=config, callbacks=callbacks)


def _batch():
    data = PairTensors()
    labelled, unlabelled = split_labelled(data, count=8, seed=0)
    images, masks = labelled.get_batch(torch.arange(4))
    masks = masks.clone()
    masks[0, :3, :5] = 255  # ignored pixels count in no term
    return images, masks, unlabelled


def _assert_close(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    """The same parameters up to float rounding (one batch of 2B + B_u vs separate forward passes)."""
    actual_params = dict(actual.named_parameters())
    for name, p in expected.named_parameters():
        assert torch.allclose(actual_params[name], p, atol=1e-6), name


# --- one step against the formulas of the module docstring -------------------------------------------
@pytest.mark.parametrize("step", [1, 2])  # before and from semi_start_step = 2
def test_one_step_follows_the_formulas(step):
    images, masks, unlabelled = _batch()
    strategy = tiny_semi(unlabelled, batch_norm=False, n_critic=1)
    strategy.configure_optimizers()
    before = copy.deepcopy(strategy)  # nets and optimisers as they were
    u = strategy.unlabelled_images(step, images)
    logs = strategy.train_step(images, masks, step)

    # discriminator: 0.5 [BCE(D(y), 1) + BCE(D([S(x); S(u)]), 0)], ignored pixels out, then one Adam step
    seg, disc = before.nets["segmentor"], before.nets["discriminator"]
    logits = seg(torch.cat([images, u]))
    true_maps, valid = label_maps(masks, 4)
    maps = torch.cat([segmentation_probs(logits[:4]) * valid, segmentation_probs(logits[4:])])
    valid_all = torch.cat([valid, torch.ones(4, 1, 16, 16)])
    loss_d = 0.5 * (spatial_bce_loss(disc(true_maps), 1.0, valid=valid) +
                    spatial_bce_loss(disc(maps.detach()), 0.0, valid=valid_all))
    assert logs["loss_discriminator"].item() == pytest.approx(loss_d.item(), rel=1e-5)
    loss_d.backward()
    before.optimizers["discriminator"].step()
    _assert_close(disc, strategy.nets["discriminator"])

    # segmentor: CE + 0.01 L_adv + 0.001 L_adv(u) [+ 0.1 L_semi from step 2], against the updated D
    scores = disc(maps)
    loss_ce = cross_entropy(logits[:4], masks)
    loss_adv = spatial_bce_loss(scores[:4], 1.0, valid=valid)
    loss_adv_u = spatial_bce_loss(scores[4:], 1.0)
    confidence = torch.sigmoid(scores[4:])[:, 0]
    loss_semi = self_training_loss(logits[4:], confidence, 0.2)
    loss = loss_ce + 0.01 * loss_adv + 0.001 * loss_adv_u + (0.1 * loss_semi if step >= 2 else 0.0)
    for key, value in {"loss_pixel": loss_ce, "loss_adv": loss_adv, "loss_adv_unlabelled": loss_adv_u,
                       "loss_semi": loss_semi, "loss_segmentor": loss, "loss": loss}.items():
        assert logs[key].item() == pytest.approx(value.item(), rel=1e-5), key
    assert logs["semi_pass_fraction"].item() == pytest.approx((confidence > 0.2).float().mean().item())
    before.optimizers["segmentor"].zero_grad()
    loss.backward()
    before.optimizers["segmentor"].step()
    _assert_close(seg, strategy.nets["segmentor"])
    assert all(p.requires_grad for p in strategy.nets["discriminator"].parameters())  # unfrozen again
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())
    assert {"d_acc_real", "d_acc_fake", "grad_norm_segmentor", "grad_norm_discriminator"} <= set(logs)


@pytest.mark.parametrize("player", ["discriminator", "segmentor"])
def test_each_update_moves_only_its_own_player(player):
    images, masks, unlabelled = _batch()
    strategy = tiny_semi(unlabelled)
    strategy.configure_optimizers()
    logits, logits_u, true_maps, maps, valid = strategy.forward_pass(images, masks, 3)
    assert logits.shape == (4, 4, 16, 16) and logits_u.shape == (4, 4, 16, 16)
    assert maps.shape == (8, 4, 16, 16) and valid.shape == (8, 1, 16, 16) and true_maps.shape == (4, 4, 16, 16)
    before = {name: copy.deepcopy(net.state_dict()) for name, net in strategy.nets.items()}
    if player == "discriminator":
        logs = strategy.critic_step(true_maps, maps, valid)
    else:
        logs = strategy.segmentor_step(logits, logits_u, masks, maps, valid, 3)
    other = "segmentor" if player == "discriminator" else "discriminator"
    changed = {name: any(not torch.equal(v, before[name][k]) for k, v in net.state_dict().items())
               for name, net in strategy.nets.items()}
    assert changed == {player: True, other: False}
    assert all(p.grad is None for p in strategy.nets[other].parameters())
    assert all(p.requires_grad for p in strategy.nets["discriminator"].parameters())  # unfrozen again
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())


def test_defaults_are_the_published_ones_and_the_warmup_is_a_quarter():
    _, _, unlabelled = _batch()
    strategy = SemiStrategy(UNet(3, 4, base_channels=4, depth=2), in_channels=3, num_classes=4, unlabelled=unlabelled,
                            semi_start_step=semi_warmup_steps(20_000))
    assert (strategy.lambda_adv, strategy.lambda_adv_unlabelled, strategy.lambda_semi, strategy.t_semi) == (
        0.01, 0.001, 0.1, 0.2)
    assert strategy.semi_start_step == 5_000 and strategy.pixel_loss.func is PIXEL_LOSSES["ce"]
    strategy.configure_optimizers()
    adam = strategy.optimizers["discriminator"].param_groups[0]
    assert adam["lr"] == 1e-4 and adam["betas"] == (0.9, 0.99)
    widths = [m.out_channels for m in strategy.nets["discriminator"].modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [64, 128, 256, 512, 1]


def test_the_arms_labelled_only_adversarial_only_and_softmax_self_training():
    images, masks, unlabelled = _batch()
    baseline = tiny_semi(None, lambda_adv=0.0, lambda_adv_unlabelled=0.0, lambda_semi=0.0)
    assert set(baseline.nets) == {"segmentor"} and not baseline.uses_unlabelled
    baseline.configure_optimizers()
    reference = copy.deepcopy(baseline)
    logs = baseline.train_step(images, masks, 5)
    assert set(logs) == {"loss", "loss_segmentor", "loss_pixel", "grad_norm_segmentor"}
    cross_entropy(reference.nets["segmentor"](images), masks).backward()  # plain CE, plain Adam
    reference.optimizers["segmentor"].step()
    assert_same_weights(dict(reference.nets["segmentor"].named_parameters()),
                        dict(baseline.nets["segmentor"].named_parameters()))

    adversarial = tiny_semi(unlabelled, lambda_semi=0.0)
    adversarial.configure_optimizers()
    logs = adversarial.train_step(images, masks, 5)
    expected = logs["loss_pixel"] + 0.01 * logs["loss_adv"] + 0.001 * logs["loss_adv_unlabelled"]
    assert logs["loss_segmentor"].item() == pytest.approx(expected.item(), rel=1e-6)  # no L_semi after the warm-up

    self_training = tiny_semi(unlabelled, batch_norm=False, confidence="softmax", t_semi=0.3)
    assert set(self_training.nets) == {"segmentor"} and self_training.lambda_adv == 0.0
    self_training.configure_optimizers()
    seg = copy.deepcopy(self_training.nets["segmentor"])
    u = self_training.unlabelled_images(5, images)
    logs = self_training.train_step(images, masks, 5)
    assert "loss_discriminator" not in logs and "loss_adv" not in logs
    logits_u = seg(torch.cat([images, u]))[4:]
    confidence = softmax_confidence(logits_u)
    assert logs["loss_semi"].item() == pytest.approx(self_training_loss(logits_u, confidence, 0.3).item(), rel=1e-5)
    assert logs["semi_pass_fraction"].item() == pytest.approx((confidence > 0.3).float().mean().item())


def test_bf16_autocast_and_channels_last_step_runs_on_cpu():
    images, masks, unlabelled = _batch()
    strategy = tiny_semi(unlabelled)
    strategy.nets.to(memory_format=torch.channels_last)
    strategy.configure_optimizers()
    strategy.amp_dtype = torch.bfloat16  # as the engine sets it on CUDA
    u = strategy.unlabelled_images(3, images.contiguous(memory_format=torch.channels_last))
    assert u.is_contiguous(memory_format=torch.channels_last)  # the labelled images' layout
    logs = strategy.train_step(images.contiguous(memory_format=torch.channels_last), masks, 3)
    assert all(bool(torch.isfinite(v)) and v.dtype == torch.float32 for v in logs.values())


def test_binary_segmentor_with_one_sigmoid_output():
    images, masks, unlabelled = _batch()
    course.seed_everything(0)
    strategy = SemiStrategy(UNet(3, 1, base_channels=4, depth=2), in_channels=3, num_classes=2, unlabelled=unlabelled,
                            semi_start_step=0, critic_base_channels=4, critic_depth=3)
    assert strategy.nets["discriminator"].in_channels == 1  # the foreground map alone
    strategy.configure_optimizers()
    logs = strategy.train_step(images, (masks > 0).long().masked_fill(masks == 255, 255), 0)
    assert all(bool(torch.isfinite(v)) for v in logs.values()) and 0.0 <= logs["semi_pass_fraction"].item() <= 1.0


def test_bad_options_are_clear_errors():
    _, _, unlabelled = _batch()
    with pytest.raises(ValueError, match="unlabelled"):
        tiny_semi(None)
    with pytest.raises(ValueError, match="confidence"):
        tiny_semi(unlabelled, confidence="entropy")
    with pytest.raises(ValueError, match="lambda_semi"):
        tiny_semi(unlabelled, lambda_semi=-1.0)
    with pytest.raises(ValueError, match="semi_start_step"):
        tiny_semi(unlabelled, semi_start_step=-1)
    with pytest.raises(ValueError, match="t_semi"):
        tiny_semi(unlabelled, t_semi="high")
    images, masks, _ = _batch()
    with pytest.raises(ValueError, match=r"unlabelled images must have the labelled images' shape"):
        tiny_semi(unlabelled).check_batch(images[:, :, :8, :8], masks[:, :8, :8])
    with pytest.raises(ValueError, match="fewer than one unlabelled batch"):
        unlabelled_positions(3, 4, seed=0, step=0)


# --- the unlabelled stream --------------------------------------------------------------------------
def test_unlabelled_batches_are_a_function_of_the_step_and_ranks_take_their_columns():
    epoch = torch.cat([unlabelled_positions(16, 4, seed=1, step=t) for t in range(4)])
    assert sorted(epoch.tolist()) == list(range(16))  # one unlabelled epoch visits every image once
    assert not torch.equal(epoch, torch.cat([unlabelled_positions(16, 4, seed=1, step=t) for t in range(4, 8)]))
    assert torch.equal(unlabelled_positions(16, 4, seed=1, step=6), unlabelled_positions(16, 4, seed=1, step=6))
    shards = [unlabelled_positions(16, 4, seed=1, step=6, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat(shards), unlabelled_positions(16, 4, seed=1, step=6))


def test_unlabelled_masks_never_reach_a_loss():
    data = PairTensors()
    _, unlabelled = split_labelled(data, count=8, seed=0)
    scrambled = PairTensors()
    scrambled.masks[unlabelled.indices] = torch.randint(0, 4, (len(unlabelled), 16, 16),
                                                        generator=torch.Generator().manual_seed(5))
    scrambled.masks[unlabelled.indices[:3], :4] = 255
    assert not torch.equal(scrambled.masks, data.masks)
    other_images = PairTensors()  # while the unlabelled images themselves do count
    other_images.images[unlabelled.indices] = other_images.images[unlabelled.indices].flip(-1)
    runs = []
    for dataset in (data, scrambled, other_images):
        trainer = semi_trainer(data=dataset, semi_start_step=0)
        runs.append((trainer.fit(), parameters(trainer)))
    assert_same_weights(runs[0][1], runs[1][1])
    assert runs[0][0] == runs[1][0]
    assert not torch.equal(runs[0][1]["segmentor.head.weight"], runs[2][1]["segmentor.head.weight"])
