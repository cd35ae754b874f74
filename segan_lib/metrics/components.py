"""Connected components and holes of binary maps, on the maps' device.

Objects are **8-connected** (pixels touching by an edge or a corner belong together) and holes
are **4-connected** components of the complement that do not touch the image frame: the
complementary pair of digital topology, under which a closed ring of diagonal steps encloses
its inside, and the count of holes follows from the Euler number. These are
``scipy.ndimage.label`` with ``structure=np.ones((3, 3))`` for objects and its default cross
for the complement.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from segan_lib._checks import check_tensor

JUMPS_PER_ROUND = 4  # more jumps, fewer rounds: 4 roughly halves the rounds of 1 on 64 x 64 masks


def _check_maps(members: object) -> Tensor:
    members = check_tensor("members", members)
    if members.dim() != 3 or members.dtype != torch.bool:
        raise ValueError(f"members must be a bool tensor (N, H, W), got {members.dtype} of shape "
                         f"{tuple(members.shape)}")
    return members


def _block_links(members: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """The 2x2 blocks of ``(N, H, W)`` bool maps and which neighbouring blocks are 8-connected.

    Any two pixels of a 2x2 block touch (by an edge or a corner), so a block's member pixels
    lie in one component and components can be found on the quarter-size grid of blocks.

    Returns:
        ``occupied`` ``(N, Hb, Wb)``: blocks holding a member pixel; and the links of block
        ``(y, x)`` to ``(y, x+1)``, ``(y+1, x)``, ``(y+1, x+1)``, and of ``(y, x+1)`` to ``(y+1, x)``.
    """
    h, w = members.shape[1:]
    m = F.pad(members.to(torch.uint8), (0, w % 2, 0, h % 2)).bool()  # even sides
    top_left, top_right = m[:, 0::2, 0::2], m[:, 0::2, 1::2]  # each (N, Hb, Wb)
    bottom_left, bottom_right = m[:, 1::2, 0::2], m[:, 1::2, 1::2]
    left, right = top_left | bottom_left, top_right | bottom_right  # block columns holding a member
    top, bottom = top_left | top_right, bottom_left | bottom_right
    links = (
        right[:, :, :-1] & left[:, :, 1:],  # side by side: every pixel pair across the seam touches
        bottom[:, :-1] & top[:, 1:],  # one above the other
        bottom_right[:, :-1, :-1] & top_left[:, 1:, 1:],  # corner to corner, down-right
        bottom_left[:, :-1, 1:] & top_right[:, 1:, :-1],  # corner to corner, down-left
    )
    return left | right, links


def _linked_min(labels: Tensor, links: tuple[Tensor, Tensor, Tensor, Tensor], off_member: int) -> Tensor:
    """``(N, Hb, Wb)``: the minimum of each block's label and its linked neighbours' labels."""
    out = labels.clone()
    pairs = (
        (slice(None), slice(None, -1)), (slice(None), slice(1, None)),  # across, left / right
        (slice(None, -1), slice(None)), (slice(1, None), slice(None)),  # down, upper / lower
        (slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None)),  # down-right
        (slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1)),  # down-left
    )
    for k, link in enumerate(links):
        first, second = pairs[2 * k], pairs[2 * k + 1]
        a, b = labels[:, first[0], first[1]], labels[:, second[0], second[1]]
        both = torch.where(link, torch.minimum(a, b), off_member)  # what a linked pair shares
        out[:, first[0], first[1]] = torch.minimum(out[:, first[0], first[1]], both)
        out[:, second[0], second[1]] = torch.minimum(out[:, second[0], second[1]], both)
    return out


def _block_labels(members: Tensor) -> Tensor:
    """``(N, Hb * Wb)`` int64: per 2x2 block, the smallest block index of its 8-connected
    component (raster order on the block grid); ``Hb * Wb`` for blocks without a member.

    Every occupied block starts with its own index, and labels only go down while always
    naming a block of the same component whose label is no larger. Each round (1) takes the
    minimum over linked neighbours, (2) hands it to the block that the block's label names (a
    scatter-min, which links roots), (3) jumps: a block takes the label of the block its label
    names. A map is done when a round changes nothing, which happens only when every block of
    a component holds the component's smallest index; only unfinished maps go on (one host
    read per round). The root links keep rounds few (a handful on 64 x 64 masks, even on noise).
    """
    occupied, links = _block_links(members)
    n, hb, wb = occupied.shape
    off_member = hb * wb  # the index of a sink column, the label of every empty block
    index = torch.arange(hb * wb, device=members.device).view(1, hb, wb)
    labels = torch.where(occupied, index, off_member).view(n, hb * wb)
    labels = torch.cat([labels, labels.new_full((n, 1), off_member)], dim=1)  # (N, Hb*Wb + 1)
    has_label = torch.cat([occupied.view(n, hb * wb), occupied.new_zeros(n, 1)], dim=1)
    active = torch.arange(n, device=members.device)
    while active.numel():
        before = labels[active]
        k = before.shape[0]
        part_links = tuple(link[active] for link in links)
        nearby = _linked_min(before[:, :-1].view(k, hb, wb), part_links, off_member).view(k, hb * wb)
        after = before.clone()
        after.scatter_reduce_(1, before[:, :-1], nearby, reduce="amin")  # empty blocks write the sink
        for _ in range(JUMPS_PER_ROUND):
            after = after.gather(1, after)
        after = torch.where(has_label[active], after, off_member)  # the sink and empty blocks back
        labels[active] = after
        active = active[(after != before).any(dim=1)]
    return labels[:, :-1]


def label_components(members: Tensor) -> Tensor:
    """Label the 8-connected components of each map.

    Args:
        members: ``(N, H, W)`` bool.

    Returns:
        ``(N, H, W)`` int64: for a pixel of ``members``, the smallest flat index ``h * W + w``
        of its component (so a component's root is the pixel whose label is its own index);
        ``-1`` elsewhere. Equal labels <=> same component, like ``scipy.ndimage.label`` with
        ``structure=np.ones((3, 3))`` up to the numbering.

    The components are found on the grid of 2x2 blocks (:func:`_block_labels`), then each
    component's smallest pixel index is gathered with one scatter-min.
    """
    members = _check_maps(members)
    n, h, w = members.shape
    block_labels = _block_labels(members)  # (N, Hb*Wb)
    wb = (w + 1) // 2
    rows, cols = torch.arange(h, device=members.device), torch.arange(w, device=members.device)
    block_of_pixel = ((rows[:, None] // 2) * wb + cols[None, :] // 2).view(1, h * w).expand(n, -1)
    component = torch.where(members.reshape(n, h * w), block_labels.gather(1, block_of_pixel), block_labels.shape[1])
    pixel = torch.arange(h * w, device=members.device).expand(n, -1)
    smallest = torch.full((n, block_labels.shape[1] + 1), h * w, device=members.device, dtype=torch.int64)
    smallest.scatter_reduce_(1, component, pixel, reduce="amin")  # per root block, its smallest pixel
    return torch.where(members, smallest.gather(1, component).view(n, h, w), -1)


def count_components(members: Tensor) -> Tensor:
    """``(N,)`` int64: 8-connected components of each ``(N, H, W)`` bool map (blocks that are their own root)."""
    members = _check_maps(members)
    n = members.shape[0]
    labels = _block_labels(members)  # (N, Hb*Wb)
    index = torch.arange(labels.shape[1], device=members.device)
    return (labels == index).view(n, -1).sum(dim=1)


def euler_number(members: Tensor) -> Tensor:
    """``(N,)`` int64 Euler number (objects minus holes) of each ``(N, H, W)`` bool map, 8-connected objects.

    From the 2x2 windows of the map padded with a frame of zeros (Gray's bit quads)::

        E = (n1 - n3 - 2 nd) / 4

    ``n1``: windows with exactly one pixel set, ``n3``: with three, ``nd``: with the two
    diagonal pixels only. A table look-up per window, no labelling.
    """
    members = _check_maps(members)
    padded = F.pad(members.to(torch.uint8), (1, 1, 1, 1))  # (N, H+2, W+2)
    code = padded[:, :-1, :-1] + 2 * padded[:, :-1, 1:] + 4 * padded[:, 1:, :-1] + 8 * padded[:, 1:, 1:]  # 0..15
    # 4 E per window: +1 for one pixel set, -1 for three, -2 for the diagonal pairs (codes 6 and 9)
    weight = torch.tensor([0, 1, 1, 0, 1, 0, -2, -1, 1, -2, 0, -1, 0, -1, -1, 0], device=members.device)
    return torch.div(weight[code.long()].flatten(1).sum(dim=1), 4, rounding_mode="floor")


def count_holes(members: Tensor, components: Tensor | None = None) -> Tensor:
    """``(N,)`` int64: holes of each ``(N, H, W)`` bool map, the 4-connected components of ``~members``
    that do not touch the image frame; ``components - euler_number(members)``.

    ``components``: :func:`count_components` of ``members`` if already known.
    """
    members = _check_maps(members)
    if components is None:
        components = count_components(members)
    return components - euler_number(members)
