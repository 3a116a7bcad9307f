"""Connectivity patterns of sparse layers (SPEC §2): group assignments and boolean masks.

A mask is a ``torch.bool`` tensor of shape ``(out_features, in_features)``, the layout of
``nn.Linear.weight``. This module knows nothing of ``nn.Module``; it only builds tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import ModelConfig, coerce
from .errors import G2GError

SCHEMES = ("contiguous", "interleaved", "random")
# Rows of an [out, in] mask drawn or scanned at once: bounds the temporary memory (the two float32
# draws of a 4096 x 4096 mask would take 128 MiB at once; in blocks of 256 rows, 8 MiB).
ROW_BLOCK = 256


def check_groups_count(groups: int) -> None:
    """A number of ensembles, checked as ``ModelConfig.groups`` is."""
    ModelConfig.checked("groups", groups)


def _check_groups(n: int, groups: int, what: str = "width") -> None:
    n = coerce(n, int, what)
    check_groups_count(groups)
    if n < 1:
        raise G2GError(f"{what} must be positive, got {n}")
    if n % groups:
        raise G2GError(f"groups={groups} does not divide the {what} {n}")


def group_ids(
    n: int, groups: int, scheme: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Group of each of ``n`` units as a LongTensor[n]; every group has exactly n/groups units.

    ``contiguous``: k // (n/G); ``interleaved``: k mod G; ``random``: π(k) // (n/G) for a
    permutation π drawn from ``generator``.
    """
    _check_groups(n, groups)
    _check_generator(generator)
    size = n // groups
    k = torch.arange(n)
    if scheme == "contiguous":
        return k // size
    if scheme == "interleaved":
        return k % groups
    if scheme == "random":
        return torch.randperm(n, generator=generator) // size
    raise G2GError(f"unknown group scheme {scheme!r}; valid: {', '.join(SCHEMES)}")


def expected_density(groups: int, p_intra: float, p_inter: float) -> float:
    """Expected fraction of active connections: p_intra/G + p_inter (G-1)/G."""
    return p_intra / groups + p_inter * (groups - 1) / groups


def modular_mask(
    out_groups: torch.Tensor,
    in_groups: torch.Tensor,
    p_intra: float = ModelConfig.p_intra,
    p_inter: float = ModelConfig.p_inter,
    generator: torch.Generator | None = None,
    inter_tile: int | tuple[int, int] = ModelConfig.inter_tile,
) -> torch.Tensor:
    """Bernoulli mask: p_intra inside a group (same id on both sides), p_inter between groups.

    With ``inter_tile=T > 1`` the inter-group connections are drawn per T×T tile of the
    group-sorted layout (one Bernoulli(p_inter) per tile), so the expected density is unchanged
    but the off-diagonal part is block-sparse, which hardware can exploit. Tiles are taken in
    group-sorted coordinates, so they are contiguous blocks after the layer's fixed permutation.
    ``inter_tile=(R, C)`` draws rectangular R×C tiles (R output rows, C input columns), e.g. for
    an input layer whose group size T does not divide (see ``fit_tile``).
    """
    p_intra, p_inter = ModelConfig.checked("p_intra", p_intra), ModelConfig.checked("p_inter", p_inter)
    out_groups, in_groups = _check_ids(out_groups, "out_groups"), _check_ids(in_groups, "in_groups")
    _check_generator(generator)
    n_out, n_in = out_groups.numel(), in_groups.numel()
    # Drawn in row blocks (the same numbers as one [out, in] draw), keeping only what is used.
    intra_on = []  # per row block: the intra-group draws, in row-major order
    for r0 in range(0, n_out, ROW_BLOCK):
        same = out_groups[r0:r0 + ROW_BLOCK, None] == in_groups[None, :]
        u = torch.rand(same.shape, generator=generator)
        intra_on.append(u[same] < p_intra)
    rows, cols = _tile_shape(inter_tile)
    if rows == cols == 1:
        mask = torch.empty(n_out, n_in, dtype=torch.bool)
        for r0 in range(0, n_out, ROW_BLOCK):
            mask[r0:r0 + ROW_BLOCK] = torch.rand(min(ROW_BLOCK, n_out - r0), n_in, generator=generator) < p_inter
    else:
        mask = _tiled_uniform(out_groups, in_groups, (rows, cols), generator) < p_inter
    for i, r0 in enumerate(range(0, n_out, ROW_BLOCK)):
        same = out_groups[r0:r0 + ROW_BLOCK, None] == in_groups[None, :]
        mask[r0:r0 + ROW_BLOCK][same] = intra_on[i]
    return mask


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise G2GError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_ids(ids, what: str) -> torch.Tensor:
    """Group ids as ``modular_mask`` takes them: a non-empty 1-D integer tensor (on the CPU, where
    the mask is drawn), or a G2GError."""
    if not isinstance(ids, torch.Tensor):
        raise G2GError(f"{what} must be a 1-D integer tensor of group ids (e.g. from group_ids), "
                       f"got {type(ids).__name__}")
    if ids.dim() != 1 or ids.numel() == 0 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise G2GError(f"{what} must be a non-empty 1-D integer tensor of group ids, "
                       f"got {tuple(ids.shape)} {ids.dtype}")
    if ids.device.type == "meta":
        raise G2GError(f"{what} is on the meta device; a mask needs the group ids' values")
    return ids.detach().cpu()


def _tile_shape(inter_tile: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(inter_tile, int):
        shape = (inter_tile, inter_tile)
    elif isinstance(inter_tile, (tuple, list)):
        shape = tuple(inter_tile)
    else:
        shape = ()
    if len(shape) != 2 or any(not isinstance(t, int) or isinstance(t, bool) or t < 1 for t in shape):
        raise G2GError(f"inter_tile must be an integer >= 1 or a pair of them, got {inter_tile!r}")
    return shape


def fit_tile(group_size: int, tile: int) -> int:
    """The largest divisor of ``group_size`` that is at most ``tile`` (the tile side used on a
    side of a layer whose group size ``tile`` does not divide, e.g. 784 inputs in 8 groups of 98:
    16 -> 14)."""
    if tile < 1 or group_size < 1:
        raise G2GError(f"tile and group size must be >= 1, got {tile} and {group_size}")
    return max(d for d in range(1, min(tile, group_size) + 1) if group_size % d == 0)


def _tiled_uniform(
    out_groups: torch.Tensor, in_groups: torch.Tensor, tile: tuple[int, int],
    generator: torch.Generator | None
) -> torch.Tensor:
    """One uniform number per rows×cols block of the group-sorted matrix, mapped back."""
    n_out, n_in = out_groups.numel(), in_groups.numel()
    groups = int(out_groups.max()) + 1
    t_out, t_in = tile
    for n, t, what in ((n_out, t_out, "output width"), (n_in, t_in, "input width")):
        if (n // groups) % t:
            raise G2GError(
                f"inter_tile={t} does not divide the group size {n // groups} of the {what} {n}"
                f" (use a divisor, e.g. {fit_tile(n // groups, t)})"
            )
    # Rank of every unit in the group-sorted order (stable, so contiguous stays identity).
    out_rank = inverse_permutation(torch.argsort(out_groups, stable=True))
    in_rank = inverse_permutation(torch.argsort(in_groups, stable=True))
    tiles = torch.rand(n_out // t_out, n_in // t_in, generator=generator)
    return tiles[out_rank // t_out][:, in_rank // t_in]


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """``inv`` with ``inv[perm[k]] = k``: for the order ``perm`` lists units in (e.g. a sort by
    group), the position of every unit in that order."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device, dtype=perm.dtype)
    return inv


def er_mask(
    out_features: int, in_features: int, density: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Erdős–Rényi mask with exactly round(density · out · in) active entries, uniformly placed."""
    density = ModelConfig.checked("p_inter", density, "density")  # a connection probability too
    out_features, in_features = coerce(out_features, int, "out_features"), coerce(in_features, int, "in_features")
    if out_features < 1 or in_features < 1:
        raise G2GError(f"mask shape must be positive, got {out_features}x{in_features}")
    _check_generator(generator)
    total = out_features * in_features
    k = int(round(density * total))
    flat = torch.zeros(total, dtype=torch.bool)
    flat[torch.randperm(total, generator=generator)[:k]] = True
    return flat.view(out_features, in_features)


# --- network groupings (SPEC §2): which scheme each side of layer l uses -------------------

@dataclass(frozen=True)
class LayerGroups:
    """Group ids of one layer's outputs and inputs."""

    out_groups: torch.Tensor
    in_groups: torch.Tensor


def _index_schemes(layer: int) -> tuple[str, str]:
    return "contiguous", "contiguous"


def _random_schemes(layer: int) -> tuple[str, str]:
    return "random", "random"


def _mixer_schemes(layer: int) -> tuple[str, str]:
    # Layer 1 contiguous, layer 2 interleaved, layer 3 contiguous, ... so each ensemble of one
    # layer reaches every ensemble two layers on (a channel shuffle between ensembles).
    s = "contiguous" if layer % 2 == 0 else "interleaved"
    return s, s


GROUPINGS = {
    "index": _index_schemes,
    "random": _random_schemes,
    "mixer": _mixer_schemes,
}


def network_groups(
    widths: list[int], groups: int, grouping: str, generator: torch.Generator | None = None
) -> list[LayerGroups]:
    """Group ids for each of the len(widths)-1 sparse layers mapping widths[l] -> widths[l+1]."""
    if grouping not in GROUPINGS:
        raise G2GError(f"unknown grouping {grouping!r}; valid: {', '.join(GROUPINGS)}")
    layers = []
    for layer, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        _check_groups(n_in, groups, f"input width of sparse layer {layer + 1}")
        _check_groups(n_out, groups, f"output width of sparse layer {layer + 1}")
        out_scheme, in_scheme = GROUPINGS[grouping](layer)
        # Outputs first, then inputs: the documented draw order of random permutations.
        out_g = group_ids(n_out, groups, out_scheme, generator)
        in_g = group_ids(n_in, groups, in_scheme, generator)
        layers.append(LayerGroups(out_groups=out_g, in_groups=in_g))
    return layers
