"""GANStrategy on the shared engine, snapshots, and the snapshot scrubber's update callback."""
import math

import pytest
import torch
from torch import nn

from segan_lib.data.synthetic import SynthShapes
from segan_lib.data.toy2d import GaussianMixture2D
from segan_lib.gan_widgets import SnapshotScrubber, check_snapshots, snapshot_scrubber, update_snapshot_view
from segan_lib.models import MaskDiscriminator, MaskGenerator, ToyDiscriminator, ToyGenerator
from segan_lib.train import TrainConfig, Trainer
from segan_lib.train.gan import GANSnapshots, GANStrategy, masks_as_samples
from segan_lib.viz.gan import plot_snapshot


def toy_run(*, seed=0, epochs=2, callbacks=(), checkpoint_dir=None, resume_from=None, **strategy_kwargs):
    torch.manual_seed(seed)
    strategy = GANStrategy(ToyGenerator(hidden=16, n_hidden=2), ToyDiscriminator(hidden=16, n_hidden=2),
                           lr=1e-3, **strategy_kwargs)
    config = TrainConfig(epochs=epochs, batch_size=32, log_every=4, progress=False, device="cpu", seed=seed,
                         checkpoint_dir=checkpoint_dir)
    trainer = Trainer(strategy, GaussianMixture2D.ring(n=256), config=config, callbacks=list(callbacks))
    return strategy, trainer.fit(resume_from=resume_from)


def mask_strategy(seed=0):
    torch.manual_seed(seed)
    return GANStrategy(MaskGenerator(z_dim=8, size=16, widths=(8, 4)), MaskDiscriminator(size=16, widths=(4, 8)),
                       real_from="masks")


def test_toy_gan_trains_on_the_engine_and_logs_both_players():
    snaps = GANSnapshots(torch.randn(50, 2), grid_extent=3.0, grid_size=8)
    strategy, history = toy_run(callbacks=[snaps])
    assert history["step"] == [4, 8, 12, 16]
    for key in ("loss_discriminator", "loss_generator", "d_acc_real", "d_acc_fake", "grad_norm_discriminator",
                "grad_norm_generator"):
        assert len(history[key]) == 4 and all(math.isfinite(v) for v in history[key])
    assert [s["step"] for s in snaps.snapshots] == [4, 8, 12, 16]
    last = snaps.snapshots[-1]
    assert last["samples"].shape == (50, 2) and last["d_grid"].shape == (8, 8)
    assert bool(((last["d_grid"] >= 0) & (last["d_grid"] <= 1)).all())
    assert last["logs"]["loss_discriminator"] == history["loss_discriminator"][-1]
    with torch.no_grad():
        assert torch.allclose(last["samples"], strategy.unwrapped("generator")(snaps.noise))


def test_same_seed_same_run():
    _, first = toy_run(seed=3)
    _, second = toy_run(seed=3)
    assert first["loss_discriminator"] == second["loss_discriminator"]
    assert first["loss_generator"] == second["loss_generator"]


def test_resumed_gan_run_matches_an_unbroken_one(tmp_path):
    _, unbroken = toy_run(epochs=2)
    toy_run(epochs=1, checkpoint_dir=str(tmp_path))
    _, resumed = toy_run(epochs=2, checkpoint_dir=str(tmp_path), resume_from=tmp_path / "last.pt")
    assert resumed["loss_generator"] == unbroken["loss_generator"]


def test_mask_gan_takes_binary_masks_and_snapshots_change_nothing():
    data = SynthShapes(64, size=16, binary=True)
    config = TrainConfig(epochs=1, batch_size=16, log_every=2, progress=False, device="cpu")
    plain = mask_strategy()
    Trainer(plain, data, config=config).fit()
    watched = mask_strategy()
    snaps = GANSnapshots(torch.randn(6, 8), every=2)
    history = Trainer(watched, data, config=config, callbacks=[snaps]).fit()
    assert [s["step"] for s in snaps.snapshots] == [2]  # calls at steps 2 and 4; every=2 keeps the first
    assert snaps.snapshots[0]["samples"].shape == (6, 1, 16, 16)
    assert len(history["loss_generator"]) == 2
    for a, b in zip(plain.nets.state_dict().values(), watched.nets.state_dict().values()):
        assert torch.equal(a, b)  # eval-mode snapshots touch no batch-norm statistics


def test_masks_become_float_samples_and_bad_masks_are_refused():
    masks = torch.tensor([[[0, 1], [1, 0]]])
    assert torch.equal(masks_as_samples(masks), torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]]))
    with pytest.raises(ValueError, match="outside 0..1"):
        masks_as_samples(torch.tensor([[[0, 2]]]))
    with pytest.raises(ValueError, match="targets=None"):  # checked once, on the first batch
        mask_strategy().check_batch(torch.zeros(2, 3, 16, 16), None)
    with pytest.raises(ValueError, match="outside 0..1"):
        mask_strategy().check_batch(torch.zeros(2, 3, 16, 16), torch.full((2, 16, 16), 3))
    config = TrainConfig(epochs=1, batch_size=4, progress=False, device="cpu")
    with pytest.raises(ValueError, match="outside 0..1"):  # a 4-class dataset is no binary mask source
        Trainer(mask_strategy(), SynthShapes(8, size=16), config=config).fit()


def test_critic_step_leaves_g_alone_and_generator_step_leaves_d_alone():
    strategy = GANStrategy(ToyGenerator(hidden=8), ToyDiscriminator(hidden=8))
    strategy.configure_optimizers()
    g, d = strategy.unwrapped("generator"), strategy.unwrapped("discriminator")
    g_before = [p.clone() for p in g.parameters()]
    d_before = [p.clone() for p in d.parameters()]
    fake = strategy.sample(16)
    strategy.critic_step(torch.randn(16, 2), fake)
    assert all(torch.equal(a, b) for a, b in zip(g_before, g.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(d_before, d.parameters()))
    d_mid = [p.clone() for p in d.parameters()]
    strategy.generator_step(fake)
    assert all(torch.equal(a, b) for a, b in zip(d_mid, d.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g_before, g.parameters()))
    assert all(p.requires_grad for p in d.parameters())


def test_n_critic_discriminator_updates_per_generator_update():
    strategy, _ = toy_run(epochs=1, n_critic=3)  # 8 engine steps
    assert int(strategy.optimizers["discriminator"].state_dict()["state"][0]["step"]) == 24
    assert int(strategy.optimizers["generator"].state_dict()["state"][0]["step"]) == 8


def test_saturating_generator_gradient_is_exp_d_times_the_non_saturating_one():
    """With D(G(z)) = sigmoid(d): d/dd log(1 - sigmoid(d)) = -sigmoid(d) and d/dd -log sigmoid(d)
    = -(1 - sigmoid(d)); their ratio is sigmoid(d) / (1 - sigmoid(d)) = exp(d)."""
    d_logit = math.log(1e-3 / (1 - 1e-3))  # D(G(z)) = 0.001: D rejects the fakes confidently
    grads = {}
    for mode in ("vanilla", "nonsaturating"):
        torch.manual_seed(0)
        disc = nn.Linear(2, 1)
        with torch.no_grad():
            disc.weight.copy_(torch.tensor([[1e-4, 0.0]]))  # almost constant: d ~ d_logit everywhere
            disc.bias.fill_(d_logit)
        strategy = GANStrategy(ToyGenerator(hidden=8), disc, loss=mode)
        strategy.configure_optimizers()
        strategy.generator_step(strategy.sample(64))
        grads[mode] = torch.cat([p.grad.flatten() for p in strategy.unwrapped("generator").parameters()])
    ratio = grads["vanilla"].norm() / grads["nonsaturating"].norm()
    assert abs(ratio.item() / math.exp(d_logit) - 1) < 1e-3
    assert torch.allclose(grads["vanilla"], -math.exp(d_logit) * -grads["nonsaturating"], rtol=1e-2, atol=1e-12)


def test_gan_strategy_rejects_bad_arguments_and_has_no_segmentor():
    g, d = ToyGenerator(), ToyDiscriminator()
    for kwargs, word in [({"loss": "wgan"}, "loss"), ({"real_from": "images"}, "real_from"),
                         ({"n_critic": 0}, "n_critic"), ({"critic_lr": 0.0}, "critic_lr"), ({"lr": -1.0}, "lr")]:
        with pytest.raises(ValueError, match=word):
            GANStrategy(g, d, **kwargs)
    with pytest.raises(ValueError, match="z_dim"):
        GANStrategy(nn.Linear(2, 2), d)
    strategy = GANStrategy(g, d)
    with pytest.raises(AttributeError, match="no segmentor"):
        strategy.segmentor
    trainer = Trainer(strategy, GaussianMixture2D.ring(n=64), num_classes=2,
                      config=TrainConfig(epochs=1, batch_size=32, progress=False, device="cpu"))
    with pytest.raises(ValueError, match="no 'segmentor'"):
        trainer.evaluate(SynthShapes(4, size=16, binary=True))


def fake_snapshots(samples, n=3):
    return [{"step": 10 * (i + 1), "samples": samples, "logs": {"loss_discriminator": 1.0 + i, "loss_generator": 0.5 * i}} for i in range(n)]


def test_scrubber_update_draws_the_chosen_snapshot():
    from matplotlib.figure import Figure

    snaps = fake_snapshots(torch.randn(20, 2))
    fig = Figure()
    text, png = update_snapshot_view(fig, snaps, 1, real=torch.randn(30, 2))
    assert text == "step 20: loss of D 2.000, loss of G 0.500"
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    samples_ax, loss_ax = fig.axes
    assert samples_ax.get_title().startswith("step 20")
    assert [len(c.get_offsets()) for c in samples_ax.collections] == [30, 20]
    assert loss_ax.lines[-1].get_xdata()[0] == 20  # the vertical marker at the snapshot's step
    with pytest.raises(ValueError, match=r"index must be in \[0, 2\]"):
        update_snapshot_view(fig, snaps, 3)


def test_scrubber_widget_follows_its_slider_and_shows_masks():
    scrubber = snapshot_scrubber(fake_snapshots(torch.rand(4, 1, 8, 8)))
    assert isinstance(scrubber, SnapshotScrubber)
    assert (scrubber.slider.min, scrubber.slider.max, scrubber.slider.value) == (0, 2, 2)
    assert scrubber.label.value.startswith("step 30")
    scrubber.slider.value = 0
    assert scrubber.label.value.startswith("step 10")
    assert "image/png" in scrubber._repr_mimebundle_()
    fig = plot_snapshot(scrubber.snapshots, 0)
    assert fig.axes[0].images[0].get_array().shape == (19, 19)  # 2x2 grid of 8x8 masks, padded


def test_scrubber_rejects_bad_snapshots():
    with pytest.raises(ValueError, match="non-empty"):
        check_snapshots([])
    with pytest.raises(ValueError, match="lacks"):
        check_snapshots([{"step": 1}])
    snaps = fake_snapshots(torch.randn(3, 2))
    snaps[1]["step"] = 5
    with pytest.raises(ValueError, match="increase"):
        check_snapshots(snaps)
