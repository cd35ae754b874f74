"""Structure metrics: boundary F1, HD95, topology and presence errors, per image and class, streamed.

Dice and IoU count pixels; these look at shape. Each is computed per image and class (Csurka
et al. argue for per-image scores), then averaged over the images in which it is defined; the
means run over the foreground classes ``1..K-1``, like ``mean_dice``.

* **Boundary F1** (Csurka, Larlus, Perronnin, BMVC 2013): with ``C_p``, ``C_t`` the contour
  pixels of prediction and truth (a pixel of the class with a valid 4-neighbour of another
  class, :func:`geometry.contour`) and ``d`` the **Euclidean** distance in pixels,
  ``P = |{p in C_p : d(p, C_t) <= tolerance}| / |C_p|``, ``R = |{t in C_t : d(t, C_p) <= tolerance}| / |C_t|``,
  ``BF1 = 2 P R / (P + R)`` (0 when ``P + R = 0``).
* **HD95**, matching MONAI's ``compute_hausdorff_distance(..., percentile=95)``: surfaces
  ``S_p``, ``S_t`` as MONAI's edges (:func:`geometry.surface`, the image frame counts),
  directed distances ``D_pt = {d(p, S_t) : p in S_p}`` and ``D_tp`` likewise (Euclidean),
  ``HD95 = max(q95(D_pt), q95(D_tp))``: the larger of the two *directed* 95th percentiles
  (``torch.quantile``, linear interpolation), not a percentile of their union.
* **Topology error**: ``|c_p - c_t| + |h_p - h_t|`` with ``c`` the 8-connected components of
  the class and ``h`` its holes (4-connected components of the rest that do not touch the
  frame), :mod:`.components`; reported also as ``component_error`` and ``hole_error``.
* **Presence error**: 1 if the class is in exactly one of prediction and truth (a missed
  object or a false alarm, often a whole object given the wrong class), 0 if in both; its
  mean is the share of images where that happened. HD95 leaves these images out (below), so
  read the two together.

Ignored pixels (``target == ignore_index``) are removed from the class in both prediction and
truth. So they never hold a boundary pixel; they are no contour for boundary F1 (like the image
frame), while for HD95 a class pixel next to one is a surface pixel (as in MONAI's metric,
which zeroes ignored pixels in both masks); for topology they count as "not the class", so an
ignored band cuts a component in two in both masks alike.

Empty cases, per image and class (present = has a valid pixel of the class):

* absent from both prediction and truth: NaN for every metric, left out of the means;
* present in exactly one: boundary F1 = 0, presence error = 1, topology error as counted (e.g.
  3 predicted specks, none true: 3), HD95 NaN, as in MONAI (one surface is empty: no distance
  to measure). A fixed penalty such as the image diagonal would instead let a few class
  confusions dominate the mean HD95 and hide the boundary quality it is meant to show;
* present in both but neither has a contour (the class fills every valid pixel of both):
  boundary F1 NaN (no boundary to score); if only one has a contour, 0.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from segan_lib._checks import check_mask, check_positive
from segan_lib.metrics.components import count_components, count_holes
from segan_lib.metrics.geometry import contour, distances_to_nearest, segment_quantile, surface, within_distance
from segan_lib.metrics.overlap import check_num_classes, prediction_from

STRUCTURE_KEYS = ("boundary_f1", "hd95", "topology_error", "component_error", "hole_error", "presence_error")
STRUCTURE_MEAN_KEYS = ("boundary_f1", "hd95", "topology_error", "presence_error")  # with a foreground mean too
HD_PERCENTILE = 95
# Boundary F1's match distance in pixels, for the course's sizes. Csurka et al. (BMVC 2013) state the tolerance
# as a fraction of the image diagonal; the common choice, 0.75 % (MATLAB's bfscore default), is 1.4 px at
# 128 x 128 but 0.34 px at the 32 x 32 of quick mode and of both pre-registered reference experiments: less
# than one pixel step, so a contour one pixel off would count as missed (shifting SynthShapes masks by one
# pixel scores about 0.35) and the score would measure rasterisation, not shape. 2 px forgives a one-pixel
# error in any direction (a diagonal step is 1.41 px), part of a two-pixel one and none of three: at 32 x 32
# (6 classes, 256 held-out images) growing every shape by one pixel scores 0.99, by two 0.59 (1.5 px would give
# 0.98 and 0.31). A median shape there is about 8 px across, so boundary F1 sees contour errors from about a
# quarter of a shape's width on. 2 px is 4.4 % of the diagonal at 32 px, 1.1 % at 128 px; images of 256 px and
# more want a larger ``tolerance`` (0.0075 x diagonal). The reference runs' boundary F1, a primary metric, was
# computed with this value: changing it means rerunning them.
BOUNDARY_TOLERANCE = 2.0


def _check_tolerance(tolerance: float) -> float:
    check_positive("tolerance", tolerance, allow_zero=True)
    if not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number of pixels, got {tolerance!r}")
    return float(tolerance)


def _boundary_f1(pred_members: Tensor, true_members: Tensor, valid: Tensor, tolerance: float) -> Tensor:
    """``(N,)`` float64 boundary F1 of ``N`` pairs of maps ``(N, H, W)``, all present in both."""
    pred_contour, true_contour = contour(pred_members, valid), contour(true_members, valid)
    pred_count = pred_contour.flatten(1).sum(dim=1).double()
    true_count = true_contour.flatten(1).sum(dim=1).double()
    pred_matched = (pred_contour & within_distance(true_contour, tolerance)).flatten(1).sum(dim=1)
    true_matched = (true_contour & within_distance(pred_contour, tolerance)).flatten(1).sum(dim=1)
    precision = pred_matched / pred_count  # NaN when there is no predicted contour
    recall = true_matched / true_count
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    one_contour = (pred_count > 0) != (true_count > 0)
    f1 = torch.where(one_contour, 0.0, f1)
    return torch.where((pred_count == 0) & (true_count == 0), math.nan, f1)


def _hd95(pred_members: Tensor, true_members: Tensor) -> Tensor:
    """``(N,)`` float64 HD95 of ``N`` pairs of maps ``(N, H, W)``, all present in both."""
    pred_surface, true_surface = surface(pred_members), surface(true_members)
    n, q = pred_members.shape[0], HD_PERCENTILE / 100
    pred_to_true = segment_quantile(*distances_to_nearest(pred_surface, true_surface), n, q)  # q95(D_pt)
    true_to_pred = segment_quantile(*distances_to_nearest(true_surface, pred_surface), n, q)  # q95(D_tp)
    return torch.maximum(pred_to_true, true_to_pred)


def _topology(pred_members: Tensor, true_members: Tensor) -> tuple[Tensor, Tensor]:
    """``(N,)`` int64 component and hole errors of ``N`` pairs of maps ``(N, H, W)``."""
    both = torch.cat([pred_members, true_members])  # one labelling loop for the two
    components = count_components(both)
    holes = count_holes(both, components)
    n = pred_members.shape[0]
    return (components[:n] - components[n:]).abs(), (holes[:n] - holes[n:]).abs()


def structure_scores(
    pred: Tensor, target: Tensor, num_classes: int, *, tolerance: float = BOUNDARY_TOLERANCE,
    ignore_index: int | None = 255,
) -> dict[str, Tensor]:
    """Boundary F1, HD95, topology and presence errors of each image and class.

    Args:
        pred: ``(B, H, W)`` int64 predicted classes in ``0..K-1``.
        target: ``(B, H, W)`` int64 true classes in ``0..K-1`` or ``ignore_index``.
        num_classes: ``K >= 2``.
        tolerance: boundary F1's match distance in pixels (Euclidean, ``<=``), default
            :data:`BOUNDARY_TOLERANCE`.
        ignore_index: target value of pixels that count nowhere (see the module docstring).

    Returns:
        ``{key: (B, K) float64}`` for each of :data:`STRUCTURE_KEYS`, on ``pred``'s device;
        NaN where the metric is undefined (see the module docstring for the empty cases).
        Formulas in the module docstring. Classes absent from both masks cost nothing: only
        the present (image, class) pairs are measured, which reads their list back to the host.
    """
    check_num_classes(num_classes)
    tolerance = _check_tolerance(tolerance)
    pred = check_mask("pred", pred, num_classes, ignore_index=None)
    target = check_mask("target", target, num_classes, ignore_index)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    batch = target.shape[0]
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    classes = torch.arange(num_classes, device=target.device).view(1, num_classes, 1, 1)
    pred_members = ((pred[:, None] == classes) & valid[:, None]).flatten(0, 1)  # (B*K, H, W)
    true_members = ((target[:, None] == classes) & valid[:, None]).flatten(0, 1)
    pred_present, true_present = pred_members.any(dim=(1, 2)), true_members.any(dim=(1, 2))  # (B*K,)
    nan = torch.full((batch * num_classes,), math.nan, dtype=torch.float64, device=target.device)
    one_present = pred_present != true_present
    scores = {
        "boundary_f1": torch.where(one_present, 0.0, nan),
        "hd95": nan.clone(),
        "presence_error": torch.where(one_present, 1.0, torch.where(pred_present, 0.0, nan)),
    }
    both = (pred_present & true_present).nonzero()[:, 0]  # pairs to measure
    if both.numel():
        image = torch.div(both, num_classes, rounding_mode="floor")
        scores["boundary_f1"][both] = _boundary_f1(pred_members[both], true_members[both], valid[image], tolerance)
        scores["hd95"][both] = _hd95(pred_members[both], true_members[both])
    present = (pred_present | true_present).nonzero()[:, 0]
    component_error, hole_error = nan.clone(), nan.clone()
    if present.numel():
        components, holes = _topology(pred_members[present], true_members[present])
        component_error[present], hole_error[present] = components.double(), holes.double()
    scores.update(topology_error=component_error + hole_error, component_error=component_error, hole_error=hole_error)
    return {key: scores[key].view(batch, num_classes) for key in STRUCTURE_KEYS}


class StructureMetrics:
    """Boundary F1, HD95, topology and presence errors accumulated over batches: per class, the mean over
    every image in which the metric is defined (see :func:`structure_scores`).

    Streaming gives the numbers of one big batch: it keeps, per metric and class, the sum of
    the per-image values and how many there were. Unlike :class:`SegmentationMetrics`, ``update``
    reads back to the host (the list of present classes, each labelling round).

    Example::

        structure = StructureMetrics(num_classes=4)
        for images, masks in loader:
            structure.update(model(images), masks)
        scores = structure.compute()  # {"boundary_f1": (4,), "hd95": (4,), ..., "mean_hd95": float}
    """

    def __init__(
        self, num_classes: int, *, ignore_index: int | None = 255, tolerance: float = BOUNDARY_TOLERANCE,
        device: str | torch.device = "cpu",
    ) -> None:
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.tolerance = _check_tolerance(tolerance)
        self.device = torch.device(device)
        self.sums = torch.zeros(len(STRUCTURE_KEYS), num_classes, dtype=torch.float64, device=self.device)
        self.counts = torch.zeros(len(STRUCTURE_KEYS), num_classes, dtype=torch.int64, device=self.device)

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self.sums.zero_()
        self.counts.zero_()

    def update(self, logits_or_pred: Tensor, target: Tensor) -> None:
        """Add one batch: logits ``(B, K, H, W)`` (or ``(B, 1, H, W)`` when ``num_classes == 2``)
        or a prediction ``(B, H, W)`` int64, and ``target`` ``(B, H, W)`` int64 labels or ``ignore_index``."""
        pred = prediction_from(logits_or_pred, self.num_classes)
        scores = structure_scores(pred, target, self.num_classes, tolerance=self.tolerance,
                                  ignore_index=self.ignore_index)
        stacked = torch.stack([scores[key] for key in STRUCTURE_KEYS])  # (metrics, B, K)
        self.sums += stacked.nan_to_num(nan=0.0).sum(dim=1).to(self.device)
        self.counts += (~stacked.isnan()).sum(dim=1).to(self.device)

    def compute(self) -> dict[str, Tensor | float]:
        """Scores over every batch since the last ``reset``.

        Returns:
            For each of :data:`STRUCTURE_KEYS`: ``(K,)`` float64 CPU tensor, the mean over the
            images where it is defined (NaN where none is); ``"mean_" + key`` for each of
            :data:`STRUCTURE_MEAN_KEYS`: floats, nanmean over the foreground classes ``1..K-1``
            (NaN if all are NaN).
        """
        sums, counts = self.sums.cpu(), self.counts.cpu()  # the one host read, at the end
        per_class = torch.where(counts > 0, sums / counts.clamp(min=1), math.nan)  # (metrics, K)
        scores: dict[str, Tensor | float] = {key: per_class[i] for i, key in enumerate(STRUCTURE_KEYS)}
        for key in STRUCTURE_MEAN_KEYS:
            scores["mean_" + key] = torch.nanmean(per_class[STRUCTURE_KEYS.index(key), 1:]).item()
        return scores
