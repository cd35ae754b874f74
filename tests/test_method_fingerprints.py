"""Every method and every option that changes its step gives the numbers it gave before.

Each case runs three steps of the engine on tiny data (16x16 SynthShapes, a 2-level U-Net,
or 2-D points for the toy GAN), on the CPU, with one thread, a fixed seed and no autocast or
compile. Its fingerprint is the logged value of every loss at every step, the float64 sum of
every state tensor of every network (and four exact values per network), and the sums of
each optimiser's state (Adam's moments, its step counts).
The recorded fingerprints (``tests/data/method_fingerprints.json``) were made with the code
before the training steps were rewritten method by method (those of ``semi``, written after,
when it was added; ``hybrid_patchgan_hinge_binary`` later still, see :data:`CASES`), on one
machine (named in the file). They are compared to a tolerance, never bit for bit: on another
CPU (another vector width, another oneDNN kernel, another thread count) float32 rounds
differently in the last bits, and three training steps carry that on
(:data:`LOSS_RTOL`, :data:`STATE_RTOL` say how much, as measured).

To record on purpose after a change that is meant to move the numbers (all cases, or some)::

    PYTHONPATH=$PWD python tests/test_method_fingerprints.py --record [CASE ...]
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from segan_lib import course
from segan_lib.data.synthetic import SynthShapes
from segan_lib.data.toy2d import GaussianMixture2D
from segan_lib.models import MaskDiscriminator, MaskGenerator, ToyDiscriminator, ToyGenerator, UNet
from segan_lib.train import TrainConfig, Trainer, build_strategy
from segan_lib.train.gan import GANStrategy

RECORDING = Path(__file__).parent / "data" / "method_fingerprints.json"
STEPS = 3
# Tolerances of a fingerprint made on another machine: |recorded - computed| <= rtol * scale + atol.
# Measured on every case against this machine's run: 1 vs 2 threads, PyTorch's own convolution
# instead of oneDNN's, every non-zero weight one float32 step up at the start, and the recording
# machine's numbers. A logged loss differed by at most 2.3e-6 of its value; the state by at most
# 2.1e-4 of its scale (the one-number output bias of hybrid's discriminator, which Adam moves by
# steps of the learning rate whatever the size of its near-zero gradient), most by under 1e-5.
# All of these still pass at a fifth of the tolerances below. A learning rate 1% off, a small
# bug, fails every case even at twice them (all but two at ten times).
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-6  # scale: the logged value itself
# scale: a tensor's sum of |values| for its (signed, possibly near-zero) sum, and the value itself
# for the four exact values of each network.
STATE_RTOL, STATE_ATOL = 1e-3, 1e-8


def _unet(num_classes: int) -> UNet:
    course.seed_everything(0)
    return UNet(3, num_classes, base_channels=4, depth=2, batch_norm=True)


def _adversarial(method: str, *, binary: bool = False, **options: object) -> tuple[object, object]:
    """``build_strategy(method, ...)`` around a seeded tiny U-Net, a small critic, and its data."""
    data = SynthShapes(4 * STEPS, size=16, seed=0, binary=binary)
    if method != "supervised":
        options = {"critic_base_channels": 4, "critic_depth": 2, **options}
    strategy = build_strategy(method, _unet(1 if binary else 4), in_channels=3, num_classes=data.num_classes,
                              **options)
    return strategy, data


def _semi(**options: object) -> tuple[object, object]:
    """Hung et al.'s method on a quarter of tiny SynthShapes labelled, the rest as unlabelled images."""
    from segan_lib.data.split import split_labelled

    labelled, unlabelled = split_labelled(SynthShapes(16 * STEPS, size=16, seed=0), fraction=0.25, seed=0)
    options = {"critic_base_channels": 4, "critic_depth": 2, "semi_start_step": 1, "unlabelled": unlabelled,
               **options}
    return build_strategy("semi", _unet(4), in_channels=3, num_classes=4, **options), labelled


def _gan(real_from: str, **options: object) -> tuple[object, object]:
    torch.manual_seed(0)
    if real_from == "inputs":
        strategy = GANStrategy(ToyGenerator(hidden=8, n_hidden=2), ToyDiscriminator(hidden=8, n_hidden=2),
                               lr=1e-3, **options)
        return strategy, GaussianMixture2D.ring(n=4 * STEPS)
    strategy = GANStrategy(MaskGenerator(z_dim=8, size=16, widths=(8, 4)), MaskDiscriminator(size=16, widths=(4, 8)),
                           real_from="masks", **options)
    return strategy, SynthShapes(4 * STEPS, size=16, seed=0, binary=True)


# name -> builder of (strategy, training data). Every option that changes what a step computes.
CASES: dict[str, Callable[[], tuple[object, object]]] = {
    "supervised": lambda: _adversarial("supervised", loss="dice_ce", lr=1e-2),
    "supervised_cosine_weight_decay": lambda: _adversarial("supervised", loss="focal", lr=1e-2, cosine_steps=2,
                                                           weight_decay=1e-3),
    "segan": lambda: _adversarial("segan"),
    "segan_dice_pixel": lambda: _adversarial("segan", loss="ce", dice_weight=1.0),
    "segan_n_critic": lambda: _adversarial("segan", n_critic=2, critic_lr=5e-3),
    "segan_spectral_norm": lambda: _adversarial("segan", spectral_norm=True),
    "segan_no_clip": lambda: _adversarial("segan", clip_value=None),
    "segan_binary": lambda: _adversarial("segan", binary=True, dice_weight=1.0),
    "hybrid": lambda: _adversarial("hybrid", loss="ce", lambda_adv=0.5),
    "hybrid_patchgan_product_n_critic": lambda: _adversarial(
        "hybrid", loss="ce", lambda_adv=0.5, discriminator="patchgan", encoding="product", n_critic=2,
        critic_lr=5e-3),
    "hybrid_spectral_norm": lambda: _adversarial("hybrid", loss="ce", lambda_adv=0.5, spectral_norm=True),
    "hybrid_patchgan_spectral_lsgan": lambda: _adversarial(
        "hybrid", loss="dice_ce", lambda_adv=0.5, discriminator="patchgan", spectral_norm=True, gan_mode="lsgan"),
    # Hinge on binary masks with PatchGAN: with the default Luc discriminator this case's scores were
    # ~1e-5, rounding noise, so its hinge game (d_acc, loss_adv, the weights after) changed
    # entirely when one weight's last bit did; no tolerance could compare it across CPUs.
    "hybrid_patchgan_hinge_binary": lambda: _adversarial("hybrid", binary=True, loss="ce", lambda_adv=0.5,
                                                         gan_mode="hinge", discriminator="patchgan"),
    "hybrid_vanilla": lambda: _adversarial("hybrid", loss="ce", lambda_adv=0.5, gan_mode="vanilla"),
    "semi": lambda: _semi(),
    "semi_n_critic_lambdas": lambda: _semi(n_critic=2, critic_lr=5e-3, lambda_adv=0.1, lambda_semi=1.0, t_semi=0.5),
    "semi_softmax_confidence": lambda: _semi(confidence="softmax", t_semi=0.3),
    "gan_points": lambda: _gan("inputs"),
    "gan_points_n_critic": lambda: _gan("inputs", n_critic=3, critic_lr=5e-4, loss="vanilla"),
    "gan_masks": lambda: _gan("masks", loss="lsgan"),
}


def run_case(name: str) -> dict:
    """Three engine steps of case ``name`` on one CPU thread; its fingerprint (see the module
    docstring) and, not recorded, the scale of each sum (its tensor's sum of |values|)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        strategy, data = CASES[name]()
        config = TrainConfig(epochs=1, batch_size=4, log_every=1, progress=False, device="cpu", amp="off",
                             compile=False, seed=0)
        history = Trainer(strategy, data, config=config).fit()
    finally:
        torch.set_num_threads(threads)
    losses = {key: list(values) for key, values in history.to_dict().items() if key not in ("step", "epoch")}
    weights: dict[str, float] = {}
    scales: dict[str, float] = {}
    for net_name in strategy.nets:
        state = strategy.unwrapped(net_name).state_dict()
        for key, value in state.items():
            weights[f"nets.{net_name}.{key}"] = float(value.double().sum())
            scales[f"nets.{net_name}.{key}"] = float(value.double().abs().sum())
        first, last = next(iter(state.values())).reshape(-1), list(state.values())[-1].reshape(-1)
        weights[f"nets.{net_name}:exact"] = [float(first[0]), float(first[-1]), float(last[0]), float(last[-1])]
    for opt_name, optimizer in strategy.optimizers.items():
        for state in optimizer.state_dict()["state"].values():
            for key, value in state.items():
                total = weights.setdefault(f"optimizers.{opt_name}.{key}", [0.0, 0.0])
                total[0] += float(value.double().sum())
                total[1] += float(value.double().abs().sum())
    return {"losses": losses, "weights": weights, "scales": scales}


def _machine() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _recording() -> dict:
    return json.loads(RECORDING.read_text(encoding="utf-8"))


def _close(want: float, have: float, rtol: float, atol: float, scale: float) -> bool:
    return abs(want - have) <= rtol * scale + atol or (math.isnan(want) and math.isnan(have))


def fingerprint_problems(expected: dict, got: dict) -> list[str]:
    """What differs between a recorded fingerprint and a computed one (:func:`run_case`) beyond the tolerances."""
    problems = [f"no longer logged: {key}" for key in sorted(set(expected["losses"]) - set(got["losses"]))]
    for key, values in expected["losses"].items():
        if key in got["losses"] and len(got["losses"][key]) != len(values):
            problems.append(f"{key}: {len(got['losses'][key])} values, recorded {len(values)}")
            continue
        for step, (want, have) in enumerate(zip(values, got["losses"].get(key, ()))):
            if not _close(want, have, LOSS_RTOL, LOSS_ATOL, max(abs(want), abs(have))):
                problems.append(f"{key} at step {step + 1} was {want!r}, is {have!r}")
    if sorted(got["weights"]) != sorted(expected["weights"]):
        return problems + ["other state tensors"]
    for key, want in expected["weights"].items():
        have = got["weights"][key]
        if key.endswith(":exact"):
            pairs = [(a, b, max(abs(a), abs(b))) for a, b in zip(want, have)]
        elif key.startswith("optimizers."):  # [sum, sum of |values|]: both on the scale of the second
            pairs = [(a, b, max(abs(want[1]), abs(have[1]))) for a, b in zip(want, have)]
        else:
            pairs = [(want, have, got["scales"][key])]
        if not all(_close(a, b, STATE_RTOL, STATE_ATOL, scale) for a, b, scale in pairs):
            problems.append(f"{key} was {want}, is {have}")
    return problems


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_fingerprint_of_each_method_and_option_is_unchanged(name):
    problems = fingerprint_problems(_recording()["cases"][name], run_case(name))
    assert not problems, f"{name}: " + "; ".join(problems[:5])


def _scaled(value: object, factor: float) -> object:
    """``value`` (a number or a list of them) times ``factor``."""
    return [v * factor for v in value] if isinstance(value, list) else value * factor


def test_the_tolerance_absorbs_last_bit_differences_and_still_catches_a_wrong_value():
    """A fingerprint whose every number is one float32 rounding step off still matches; one loss
    or one state sum 1% off (of its value, of its scale) does not."""
    got = run_case("segan")
    step = 1 + 2.0**-23  # float32's relative rounding step
    nudged = {"losses": {key: _scaled(values, step) for key, values in got["losses"].items()},
              "weights": {key: _scaled(value, step) for key, value in got["weights"].items()}}
    assert nudged["losses"] != got["losses"] and not fingerprint_problems(nudged, got)
    wrong_loss = {**nudged, "losses": {**nudged["losses"], "loss_critic": list(nudged["losses"]["loss_critic"])}}
    wrong_loss["losses"]["loss_critic"][2] *= 1 + 1e-2
    assert fingerprint_problems(wrong_loss, got) == [
        f"loss_critic at step 3 was {wrong_loss['losses']['loss_critic'][2]!r}, is {got['losses']['loss_critic'][2]!r}"]
    key = next(k for k in sorted(got["weights"]) if k.startswith("nets.critic.") and k.endswith(".weight"))
    wrong_state = {**nudged, "weights": {**nudged["weights"], key: got["weights"][key] + 1e-2 * got["scales"][key]}}
    assert fingerprint_problems(wrong_state, got) == [f"{key} was {wrong_state['weights'][key]}, is {got['weights'][key]}"]


def test_every_method_has_a_fingerprint():
    from segan_lib.train import METHODS

    assert set(_recording()["cases"]) == set(CASES)
    covered = {name.split("_")[0] for name in CASES}
    assert set(METHODS) | {"gan"} <= covered


if __name__ == "__main__" and "--record" in sys.argv:
    # --record: every case, on this machine. --record NAME ...: only those cases; the others keep
    # their numbers, and "machines" names where a case was recorded if not on "machine".
    names = sys.argv[sys.argv.index("--record") + 1:] or sorted(CASES)
    recording = _recording() if names != sorted(CASES) else {"machine": _machine(), "cases": {}}
    machines = recording.get("machines", {})
    for name in names:
        recording["cases"][name] = run_case(name)
        machines.pop(name, None)
        if _machine() != recording["machine"]:
            machines[name] = _machine()
    cases = {name: recording["cases"][name] for name in sorted(CASES)}
    RECORDING.parent.mkdir(parents=True, exist_ok=True)
    lines = ['{"machine": ' + json.dumps(recording["machine"]) + ',']
    if machines:
        lines.append(' "machines": ' + json.dumps(dict(sorted(machines.items()))) + ',')
    lines.append(' "cases": {')
    for i, (name, case) in enumerate(cases.items()):
        lines.append(f'  "{name}": {{')
        for j, part in enumerate(("losses", "weights")):
            entries = [f'   {json.dumps(key)}: {json.dumps(value)}' for key, value in sorted(case[part].items())]
            lines.append(f'  "{part}": {{\n' + ",\n".join(entries) + ("\n  }," if j == 0 else "\n  }"))
        lines.append("  }" + ("," if i < len(cases) - 1 else ""))
    lines.append(" }\n}")
    RECORDING.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"recorded {len(names)} case(s) in {RECORDING}")
