"""Structure metrics: hand-worked masks, HD95 against MONAI, components and holes against scipy,
boundary F1 against a plain NumPy/scipy reference, ignore_index, empty cases, streaming, bad input."""
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from segan_lib.metrics import (
    BOUNDARY_TOLERANCE, STRUCTURE_KEYS, STRUCTURE_MEAN_KEYS, StructureMetrics, count_components, count_holes,
    euler_number, label_components, structure_scores,
)
from segan_lib.metrics.geometry import contour, distances_to_nearest, segment_quantile, surface, within_distance

NAN = float("nan")
EIGHT = np.ones((3, 3), dtype=bool)  # scipy structure for 8-connectivity (its default is the 4-cross)


def masks(rows) -> torch.Tensor:
    """``(1, H, W)`` int64 from a list of strings: a digit per pixel, ``x`` for 255 (ignored)."""
    return torch.tensor([[[255 if c == "x" else int(c) for c in row] for row in rows]])


def smooth_labels(seed: int, shape=(4, 24, 20), num_classes: int = 4, blur: int = 5) -> torch.Tensor:
    """Random label maps made of blobs: the argmax of blurred noise, ``(B, H, W)`` int64."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(shape[0], num_classes, *shape[1:], generator=generator)
    return torch.nn.functional.avg_pool2d(noise, blur, stride=1, padding=blur // 2).argmax(dim=1)


def random_pair(seed: int, num_classes: int = 4, shape=(4, 24, 20), ignored: bool = True):
    """A prediction and a target that share blobs but differ; the target has an ignored patch."""
    target = smooth_labels(seed, shape, num_classes)
    generator = torch.Generator().manual_seed(seed + 100)
    pred = torch.where(torch.rand(shape, generator=generator) < 0.8, smooth_labels(seed + 50, shape, num_classes, 3),
                       target)
    specks = torch.randint(0, num_classes, shape, generator=generator)
    pred = torch.where(torch.rand(shape, generator=generator) < 0.03, specks, pred)
    if ignored:
        target[:, 2:6, 3:9] = 255
    return pred, target


# --- hand-worked examples -------------------------------------------------------------------

def test_shifted_square_boundary_f1_by_hand():
    # 6 x 6, class 1 a 2x2 square; the prediction is shifted one pixel right.
    target = masks(["000000", "000000", "001100", "001100", "000000", "000000"])
    pred = masks(["000000", "000000", "000110", "000110", "000000", "000000"])
    # Class 1: every square pixel touches background, so C_t = {(2,2),(2,3),(3,2),(3,3)} and
    # C_p = {(2,3),(2,4),(3,3),(3,4)}. Tolerance 0: two of four predicted contour pixels lie on
    # C_t, two of four true ones on C_p: P = R = 1/2, BF1 = 1/2. Tolerance 1: every pixel is
    # within 1 of the other contour: BF1 = 1.
    # Class 0: its contour is the ring of 8 background pixels 4-adjacent to the square (the
    # image frame is no contour). True ring: (1,2),(1,3),(4,2),(4,3),(2,1),(3,1),(2,4),(3,4);
    # predicted: (1,3),(1,4),(4,3),(4,4),(2,2),(3,2),(2,5),(3,5); they share (1,3) and (4,3):
    # P = R = 2/8, BF1 = 1/4.
    exact = structure_scores(pred, target, 2, tolerance=0)["boundary_f1"]
    assert exact.tolist() == [[pytest.approx(0.25), pytest.approx(0.5)]]
    assert structure_scores(pred, target, 2, tolerance=1)["boundary_f1"].tolist() == [[1.0, 1.0]]


def test_default_tolerance_forgives_one_pixel_and_not_three_at_32_px():
    # The comment on BOUNDARY_TOLERANCE (2 px): at 32 x 32, class 1 an 8 x 8 square. Grown by one pixel on
    # every side, each contour pixel is 1 px (edges) or sqrt(2) px (corners) from the other contour: BF1 = 1.
    # Grown by three, every contour pixel is 3 px or more away: P = R = 0, BF1 = 0. Tolerance 0 (what 0.75 %
    # of the 45 px diagonal, 0.34 px, amounts to on the pixel grid) misses the one-pixel growth entirely.
    assert BOUNDARY_TOLERANCE == 2.0
    target = torch.zeros(1, 32, 32, dtype=torch.int64)
    target[0, 12:20, 12:20] = 1
    grown_one, grown_three = torch.zeros_like(target), torch.zeros_like(target)
    grown_one[0, 11:21, 11:21] = 1
    grown_three[0, 9:23, 9:23] = 1
    assert structure_scores(grown_one, target, 2)["boundary_f1"][0, 1].item() == 1.0
    assert structure_scores(grown_three, target, 2)["boundary_f1"][0, 1].item() == 0.0
    diagonal_share = structure_scores(grown_one, target, 2, tolerance=0.0075 * 32 * math.sqrt(2))["boundary_f1"]
    assert diagonal_share[0, 1].item() == 0.0


def test_speck_hd95_and_topology_by_hand():
    # 8 x 8, class 1 a 2x2 square at rows/cols 1-2; the prediction adds a one-pixel speck at (6, 6).
    target = masks(["00000000", "01100000", "01100000"] + ["00000000"] * 5)
    pred = target.clone()
    pred[0, 6, 6] = 1
    scores = structure_scores(pred, target, 2)
    # Class 1 surfaces: the 4 square pixels, plus the speck in the prediction. Predicted to true:
    # 0, 0, 0, 0 and |(6,6) - (2,2)| = 4 sqrt(2). 95th percentile of 5 sorted values (linear):
    # rank 0.95 * 4 = 3.8, so 0 + 0.8 * (4 sqrt 2 - 0). True to predicted: all 0. HD95 = 3.2 sqrt(2).
    assert scores["hd95"][0, 1].item() == pytest.approx(0.8 * 4 * math.sqrt(2))
    # Components: 2 predicted, 1 true; holes: none. Background: 1 component each, but the square
    # is a hole of the background (1 true), and the speck a second one (2 predicted).
    assert scores["component_error"].tolist() == [[0.0, 1.0]]
    assert scores["hole_error"].tolist() == [[1.0, 0.0]]
    assert scores["topology_error"].tolist() == [[1.0, 1.0]]


def test_hd95_hand_example_matches_monai():
    monai = pytest.importorskip("monai.metrics")
    target = masks(["00000000", "01100000", "01100000"] + ["00000000"] * 5)
    pred = target.clone()
    pred[0, 6, 6] = 1
    one_hot = lambda x: torch.nn.functional.one_hot(x, 2).permute(0, 3, 1, 2)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a deprecation inside MONAI
        expected = monai.compute_hausdorff_distance(one_hot(pred), one_hot(target), include_background=True,
                                                    percentile=95)
    assert torch.allclose(structure_scores(pred, target, 2)["hd95"], expected.double(), atol=1e-5)  # float32 there


def test_a_ring_of_diagonal_steps_is_one_component_around_one_hole():
    # The diamond |dy| + |dx| = 2 around (3, 3): 8 pixels touching only by corners. Objects are
    # 8-connected, so it is one component; the background is 4-connected, so its 5 inner pixels
    # are cut off from the frame: one hole. Euler number 1 - 1 = 0.
    diamond = torch.tensor([[abs(y - 3) + abs(x - 3) == 2 for x in range(7)] for y in range(7)])[None]
    assert count_components(diamond).tolist() == [1]
    assert count_holes(diamond).tolist() == [1] and euler_number(diamond).tolist() == [0]
    assert ndimage.label(diamond[0].numpy(), EIGHT)[1] == 1
    # A filled disc of the same size: one component, no hole.
    filled = torch.tensor([[abs(y - 3) + abs(x - 3) <= 2 for x in range(7)] for y in range(7)])[None]
    assert count_components(filled).tolist() == [1] and count_holes(filled).tolist() == [0]
    ring, disc = diamond.long(), filled.long()
    assert structure_scores(disc, ring, 2)["hole_error"][0, 1].item() == 1.0


def test_contour_and_surface_by_hand():
    members = masks(["0110", "0110", "0000"]).bool()
    valid = torch.ones_like(members)
    # A pixel of the class with a 4-neighbour outside it; the frame counts for the surface only.
    assert contour(members, valid)[0].long().tolist() == [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    full = torch.ones(1, 3, 4, dtype=torch.bool)
    assert not contour(full, valid).any()  # nothing to cross: no contour
    assert surface(full)[0].long().tolist() == [[1, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1]]  # the frame


# --- against scipy and MONAI on random masks -----------------------------------------------------

@pytest.mark.parametrize("shape", [(20, 13, 17), (12, 16, 16), (6, 1, 9), (6, 9, 1), (3, 1, 1)])
@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
def test_components_and_holes_match_scipy(shape, density):
    generator = torch.Generator().manual_seed(int(density * 10) + shape[1])
    members = torch.rand(shape, generator=generator) < density
    labels = label_components(members)
    expected_components, expected_holes = [], []
    for mask, ours in zip(members.numpy(), labels.numpy()):
        theirs, count = ndimage.label(mask, EIGHT)
        expected_components.append(count)
        # the same partition, each component labelled with its smallest flat index
        flat_index = np.arange(mask.size).reshape(mask.shape)
        for k in range(1, count + 1):
            assert set(ours[theirs == k].tolist()) == {flat_index[theirs == k].min()}
        assert (ours[~mask] == -1).all()
        background, count = ndimage.label(~mask)  # 4-connected complement
        touching = set(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
        expected_holes.append(count - len(touching - {0}))
    assert count_components(members).tolist() == expected_components
    assert count_holes(members).tolist() == expected_holes


def test_hd95_matches_monai_on_random_masks():
    monai = pytest.importorskip("monai.metrics")
    for seed in range(3):
        pred, target = random_pair(seed)
        pred[0][pred[0] == 3] = 0  # class 3 predicted nowhere in image 0, yet true there: MONAI gives NaN
        one_hot = lambda x: torch.nn.functional.one_hot(x.clamp(max=3), 4).permute(0, 3, 1, 2)  # noqa: E731
        valid = (target != 255)[:, None]
        # MONAI's own ignore_index: ignored pixels are all-zero in the one-hot target and zeroed in both
        metric = monai.HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none",
                                               ignore_index=255)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI warns about empty classes
            expected = metric(one_hot(pred), one_hot(target) * valid).double()
        ours = structure_scores(pred, target, 4)
        # NaN in both where a class is in one mask only (MONAI warns and gives NaN) or in neither
        assert torch.allclose(ours["hd95"], expected, atol=1e-5, equal_nan=True)  # MONAI in float32
        pred_has = (one_hot(pred) * valid).flatten(2).any(dim=2)
        true_has = (one_hot(target) * valid).flatten(2).any(dim=2)
        assert torch.equal(~torch.isnan(expected), pred_has & true_has) and (pred_has != true_has).sum() >= 1
        assert (ours["presence_error"][pred_has != true_has] == 1).all()


def reference_boundary_f1(pred: np.ndarray, target: np.ndarray, k: int, tolerance: float) -> float:
    """Boundary F1 of one image and class, written plainly with NumPy and scipy's distance transform."""
    valid = target != 255

    def contour_of(labels):
        members = (labels == k) & valid
        other = valid & ~members
        padded = np.pad(other, 1)
        near_other = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
        return members & near_other, members.any()

    (pred_contour, pred_present), (true_contour, true_present) = contour_of(pred), contour_of(target)
    if not pred_present and not true_present:
        return NAN
    if pred_present != true_present:
        return 0.0
    if not pred_contour.any() and not true_contour.any():
        return NAN
    if not pred_contour.any() or not true_contour.any():
        return 0.0
    precision = (ndimage.distance_transform_edt(~true_contour)[pred_contour] <= tolerance).mean()
    recall = (ndimage.distance_transform_edt(~pred_contour)[true_contour] <= tolerance).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("tolerance", [0, 1, 1.5, 2, 3])
def test_boundary_f1_matches_a_plain_reference(tolerance):
    pred, target = random_pair(7)
    ours = structure_scores(pred, target, 4, tolerance=tolerance)["boundary_f1"]
    expected = torch.tensor([[reference_boundary_f1(p, t, k, tolerance) for k in range(4)]
                             for p, t in zip(pred.numpy(), target.numpy())], dtype=torch.float64)
    assert torch.allclose(ours, expected, equal_nan=True)


def test_geometry_helpers_match_scipy():
    generator = torch.Generator().manual_seed(3)
    sources = torch.rand(10, 15, 18, generator=generator) < 0.2
    targets = torch.rand(10, 15, 18, generator=generator) < 0.05
    targets[:, 0, 0] = True
    distances, which = distances_to_nearest(sources, targets)
    edt = [ndimage.distance_transform_edt(~t) for t in targets.numpy()]
    expected = np.concatenate([d[s] for d, s in zip(edt, sources.numpy())])
    assert np.allclose(distances.numpy(), expected) and which.tolist() == np.nonzero(sources.numpy())[0].tolist()
    for tolerance in (0, 1, 1.5, 2.5):
        assert (within_distance(targets, tolerance).numpy() == (np.stack(edt) <= tolerance)).all()
    quantiles = segment_quantile(distances, which, 11, 0.95)  # map 10 has no source: NaN
    expected_q = [torch.quantile(distances[which == i].double(), 0.95) for i in range(10)]
    assert torch.allclose(quantiles[:10], torch.stack(expected_q)) and math.isnan(quantiles[10])


# --- conventions: ignore_index, empty cases, streaming ----------------------------------------

def test_the_prediction_inside_ignored_pixels_changes_nothing():
    pred, target = random_pair(4)
    other = torch.where(target == 255, (pred + 1) % 4, pred)  # a different guess wherever ignored
    a, b = structure_scores(pred, target, 4), structure_scores(other, target, 4)
    for key in STRUCTURE_KEYS:
        assert torch.equal(a[key].isnan(), b[key].isnan()) and torch.allclose(a[key], b[key], equal_nan=True), key


def test_ignored_pixels_are_no_contour_but_surface_and_cut_components():
    # Class 1 on both sides of an ignored column; the prediction equals the truth where it counts.
    target = masks(["11x11", "11x11", "00000"])
    pred = masks(["11011", "11011", "00000"])
    scores = structure_scores(pred, target, 2)
    # Contours cross only into valid background (row 2): BF1 1. The ignored column is a surface in
    # both masks alike: HD95 0. Two components in both (the column cuts them): error 0.
    assert scores["boundary_f1"][0].tolist() == [1.0, 1.0] and scores["hd95"][0].tolist() == [0.0, 0.0]
    assert scores["topology_error"][0].tolist() == [0.0, 0.0]
    assert count_components(((target == 1))).tolist() == [2]
    with pytest.raises(ValueError, match="target holds label values"):
        structure_scores(pred, target, 2, ignore_index=None)


def test_empty_cases():
    target = masks(["0000", "0110", "0110", "0000"])
    # class 2 absent from both: NaN everywhere; class 1 predicted nowhere: BF1 0, presence error 1,
    # HD95 NaN (no predicted surface to measure from), topology = the true count (1 component, no hole)
    missed = structure_scores(torch.zeros_like(target), target, 3)
    assert missed["boundary_f1"][0, 1].item() == 0 and missed["presence_error"][0, 1].item() == 1
    assert math.isnan(missed["hd95"][0, 1].item()) and missed["topology_error"][0, 1].item() == 1
    assert all(math.isnan(missed[key][0, 2].item()) for key in STRUCTURE_KEYS)
    assert missed["presence_error"][0, 0].item() == 0  # background in both
    # predicted where absent: 2 specks of class 2 -> BF1 0, presence error 1, topology error 2
    specks = target.clone()
    specks[0, 0, 0], specks[0, 3, 3] = 2, 2
    false_alarm = structure_scores(specks, target, 3)
    assert false_alarm["boundary_f1"][0, 2].item() == 0 and false_alarm["presence_error"][0, 2].item() == 1
    assert false_alarm["topology_error"][0, 2].item() == 2 and math.isnan(false_alarm["hd95"][0, 2].item())
    # a class filling the whole image in both: no contour (BF1 NaN), identical surfaces (HD95 0)
    full = torch.ones(1, 4, 4, dtype=torch.int64)
    scores = structure_scores(full, full, 2)
    assert math.isnan(scores["boundary_f1"][0, 1].item()) and scores["hd95"][0, 1].item() == 0
    # the accumulator leaves NaN out of its means: a second image where class 1 is found, shifted
    found = masks(["0000", "0011", "0011", "0000"])
    metrics = StructureMetrics(3)
    metrics.update(torch.cat([torch.zeros_like(target), found]), torch.cat([target, target]))
    result = metrics.compute()
    # HD95 from the second image only: the square is one pixel off, every surface distance 0 or 1
    assert result["hd95"][1].item() == pytest.approx(1.0) and math.isnan(result["hd95"][2].item())
    assert result["presence_error"][1].item() == 0.5 and result["mean_presence_error"] == 0.5  # class 2: NaN
    assert result["boundary_f1"][1].item() == pytest.approx(0.5)  # 0 (missed), then 1 (within 2 px)
    nothing = StructureMetrics(2).compute()
    assert math.isnan(nothing["mean_boundary_f1"]) and nothing["boundary_f1"].shape == (2,)


def test_streaming_equals_one_big_batch_and_the_means_are_over_images():
    pred, target = random_pair(5, shape=(6, 16, 16))
    streamed, whole = StructureMetrics(4), StructureMetrics(4)
    for start in range(0, 6, 2):
        streamed.update(pred[start:start + 2], target[start:start + 2])
    whole.update(pred, target)
    a, b = streamed.compute(), whole.compute()
    per_image = structure_scores(pred, target, 4)
    for key in STRUCTURE_KEYS:
        assert torch.allclose(a[key], b[key], equal_nan=True)
        assert torch.allclose(a[key], torch.nanmean(per_image[key], dim=0), equal_nan=True)
        assert a[key].dtype == torch.float64 and a[key].shape == (4,)
    for key in STRUCTURE_MEAN_KEYS:
        assert a["mean_" + key] == pytest.approx(torch.nanmean(a[key][1:]).item())  # foreground classes
    streamed.reset()
    assert streamed.counts.sum() == 0 and math.isnan(streamed.compute()["mean_hd95"])
    streamed.update(pred[:2], target[:2])
    assert torch.allclose(streamed.compute()["hd95"], torch.nanmean(per_image["hd95"][:2], dim=0), equal_nan=True)


def test_logits_are_turned_into_classes():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator)
    target = torch.randint(0, 3, (2, 8, 8), generator=generator)
    from_logits, from_pred = StructureMetrics(3), StructureMetrics(3)
    from_logits.update(logits, target)
    from_pred.update(logits.argmax(dim=1), target)
    a, b = from_logits.compute(), from_pred.compute()
    assert all(torch.allclose(a[key], b[key], equal_nan=True) for key in STRUCTURE_KEYS)
    assert not a["hd95"].isnan().all()
    binary = StructureMetrics(2)
    binary.update(logits[:, :1], (target > 0).long())  # one sigmoid channel
    expected = structure_scores((logits[:, 0] > 0).long(), (target > 0).long(), 2)["hd95"].nanmean(dim=0)
    assert torch.allclose(binary.compute()["hd95"], expected)


def test_evaluation_returns_the_structure_metrics():
    from segan_lib.train.evaluation import evaluate_segmentation

    pred, target = random_pair(6, shape=(5, 12, 12))
    data = torch.utils.data.TensorDataset(pred.float()[:, None], target)  # the image holds the prediction

    def predict(images):
        return 5.0 * torch.nn.functional.one_hot(images[:, 0].long(), 4).permute(0, 3, 1, 2).float()

    scores = evaluate_segmentation(predict, data, num_classes=4, batch_size=2)
    expected = StructureMetrics(4)
    expected.update(pred, target)
    for key, value in expected.compute().items():
        assert torch.allclose(torch.as_tensor(scores[key]), torch.as_tensor(value), equal_nan=True), key
    assert {"dice", "mean_dice", "pixel_accuracy"} <= scores.keys()


def test_format_scores_adds_the_structure_columns():
    from segan_lib.cli import format_scores

    text = format_scores({"dice": [1.0, 0.5], "iou": [1.0, 1 / 3], "mean_dice": 0.5, "mean_iou": 1 / 3,
                          "pixel_accuracy": 0.9, "boundary_f1": [0.9, 0.75], "hd95": [1.0, 12.5],
                          "topology_error": [0.0, 1.5], "presence_error": [0.0, 0.25], "mean_boundary_f1": 0.75,
                          "mean_hd95": 12.5, "mean_topology_error": 1.5, "mean_presence_error": 0.25},
                         ["background", "disc"])
    lines = text.splitlines()
    assert lines[0].split() == ["class", "Dice", "IoU", "BF1", "HD95", "Topo", "Pres"]
    assert lines[2] == "disc         0.500   0.333   0.750   12.50    1.50   0.250"
    assert "validation mean Dice (foreground): 0.500" in text
    assert "validation mean boundary F1 (foreground): 0.750" in text
    assert "validation mean HD95 (foreground): 12.50 px" in text
    assert "validation mean presence error (foreground): 0.250" in text


@pytest.mark.parametrize("call,message", [
    (lambda: structure_scores(torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 2, dtype=torch.int64), 1),
     "num_classes"),
    (lambda: structure_scores(torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 3, dtype=torch.int64), 2),
     "same shape"),
    (lambda: structure_scores(torch.full((1, 2, 2), 3), torch.zeros(1, 2, 2, dtype=torch.int64), 3), "pred"),
    (lambda: structure_scores(torch.zeros(1, 2, 2, dtype=torch.int64), torch.full((1, 2, 2), 7), 3), "target"),
    (lambda: structure_scores(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64), 3), "int64"),
    (lambda: structure_scores(torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 2, dtype=torch.int64), 2,
                              tolerance=-1), "tolerance"),
    (lambda: StructureMetrics(2, tolerance=math.inf), "tolerance"),
    (lambda: StructureMetrics(2, tolerance=True), "tolerance"),
    (lambda: StructureMetrics(True), "num_classes"),
    (lambda: StructureMetrics(3).update(torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64)),
     "channels"),
    (lambda: StructureMetrics(3).update(torch.zeros(4, 4, dtype=torch.int64), torch.zeros(1, 4, 4, dtype=torch.int64)),
     "logits_or_pred"),
    (lambda: count_components(torch.zeros(1, 4, 4)), "members must be a bool tensor"),
    (lambda: count_holes(torch.zeros(4, 4, dtype=torch.bool)), "members must be a bool tensor"),
    (lambda: label_components([[True]]), "members must be a torch.Tensor"),
])
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
