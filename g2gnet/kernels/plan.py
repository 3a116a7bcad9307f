"""Execution plan of a G2G layer: the mask split into a block-diagonal part and a sparse rest.

Sort inputs and outputs by group (stable argsort, so contiguous groups keep the identity): the
intra-group connections become G diagonal blocks [og, ig], one batched matmul. Everything
else (inter-group connections) is kept as index lists in the sorted coordinates: CSR by output
row for the forward and the weight gradient, CSC (by input) for the input gradient, and, when
the inter-group part is made of dense T x T tiles (``modular_mask(..., inter_tile=T)``), a
block-sparse (BSR) copy so that rows of a tile share every loaded activation.

A plan depends only on the mask and the group ids, never on weight values, so it is built once
and reused until the mask changes (``SparseLinear._mask_changed`` drops it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TILE_SIZES = (32, 16, 8, 4)  # largest first; the BSR kernel needs T % 4 == 0


@dataclass
class Tiles:
    """Inter-group part as T x T dense tiles (BSR) of the sorted matrix, and its transpose."""

    size: int
    rowptr: torch.Tensor  # int64 [out/T + 1]
    cols: torch.Tensor  # int32 [ntiles], tile column (in tile units)
    from_csr: torch.Tensor  # int64 [ntiles*T*T]: CSR position of each tile entry (row-major tile)
    t_rowptr: torch.Tensor  # same for the transposed matrix (input gradient)
    t_cols: torch.Tensor
    t_from_csr: torch.Tensor


@dataclass
class Plan:
    groups: int
    og: int  # outputs per group
    ig: int  # inputs per group
    out_perm: torch.Tensor  # int64 [out]: sorted position -> original output index
    in_perm: torch.Tensor  # int64 [in]
    identity: bool  # both permutations are the identity (contiguous groups)
    block_mask: torch.Tensor | None  # uint8 [out, ig] (sorted rows) when intra blocks are not full
    rowptr: torch.Tensor  # int64 [out+1]: inter CSR in sorted coordinates
    cols: torch.Tensor  # int32 [nnz]: sorted input index
    ocols: torch.Tensor  # int32 [nnz]: original input index (to read/write the dense weight)
    colptr: torch.Tensor  # int64 [in+1]: inter CSC
    crows: torch.Tensor  # int32 [nnz]: sorted output index
    csc_from_csr: torch.Tensor  # int64 [nnz]: CSR position of each CSC entry
    seg: torch.Tensor  # int32 [out, ncb+1]: CSR row segments per column block (see _segments)
    cseg: torch.Tensor  # int32 [in, ncb_t+1]: same for the CSC
    ncb: int
    ncb_t: int
    tiles: Tiles | None
    nnz_inter: int
    in_features: int
    out_features: int

    # Flat indices into the dense weight, built on demand for the pure-PyTorch path.
    _flat_intra: torch.Tensor | None = None
    _flat_inter: torch.Tensor | None = None

    @property
    def inter_density(self) -> float:
        return self.nnz_inter / (self.out_features * self.in_features)

    def flat_intra(self) -> torch.Tensor:
        """int64 [out, ig]: weight.view(-1) positions of the sorted intra blocks."""
        if self._flat_intra is None:
            blocks = self.in_perm.view(self.groups, 1, self.ig).expand(self.groups, self.og, self.ig)
            self._flat_intra = self.out_perm[:, None] * self.in_features + blocks.reshape(-1, self.ig)
        return self._flat_intra

    def flat_inter(self) -> torch.Tensor:
        """int64 [nnz]: weight.view(-1) positions of the inter entries in CSR order."""
        if self._flat_inter is None:
            rows = torch.repeat_interleave(self.out_perm, self.rowptr.diff())
            self._flat_inter = rows * self.in_features + self.ocols.long()
        return self._flat_inter

    def to(self, device: torch.device) -> "Plan":
        """Copy of the plan with every tensor on ``device`` (for CUDA layers)."""
        kw = {}
        for name, value in self.__dict__.items():
            if isinstance(value, torch.Tensor):
                value = value.to(device)
            elif isinstance(value, Tiles):
                value = Tiles(**{k: v.to(device) if isinstance(v, torch.Tensor) else v
                                 for k, v in value.__dict__.items()})
            kw[name] = value
        return Plan(**kw)


def _perm(groups_ids: torch.Tensor, n_groups: int) -> torch.Tensor | None:
    counts = torch.bincount(groups_ids, minlength=n_groups)
    if counts.numel() != n_groups or not bool((counts == counts[0]).all()):
        return None  # unequal groups: not block-diagonal with equal blocks
    return torch.argsort(groups_ids, stable=True)


# Column-block width of the kernels' segments. Measured on a 2-core Zen 4 at 2048 wide: blocks
# of 128-512 columns (so the dense operand's block stays in L1/L2) did not beat one block per
# row, because a row then has only ~5-20 nonzeros per block and the per-segment reload of the
# output chunk eats the gain. Kept as a parameter for other cache sizes.
COLUMN_BLOCK = 1 << 30


def _segments(rowptr: torch.Tensor, cols: torch.Tensor, n_cols: int, block: int) -> tuple[torch.Tensor, int]:
    """int32 [rows, ncb+1]: start of each column block's nonzeros inside every CSR row."""
    n_rows = rowptr.numel() - 1
    ncb = max(1, -(-n_cols // block))
    rows = torch.repeat_interleave(torch.arange(n_rows), rowptr.diff())
    cnt = torch.bincount(rows * ncb + cols.long() // block, minlength=n_rows * ncb).view(n_rows, ncb)
    seg = torch.empty(n_rows, ncb + 1, dtype=torch.long)
    seg[:, 0] = rowptr[:-1]
    seg[:, 1:] = rowptr[:-1, None] + cnt.cumsum(1)
    return seg.to(torch.int32).contiguous(), ncb


def _csr_positions(keys_csr: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return torch.searchsorted(keys_csr, keys)


def _is_tiled(inter: torch.Tensor, t: int) -> bool:
    # Every T x T tile is all-on or all-off iff the rows inside each tile row are equal and the
    # columns inside each tile column are equal; two broadcast compares, no slow strided reduce.
    n_out, n_in = inter.shape
    rows = inter.view(n_out // t, t, n_in)
    if not bool((rows == rows[:, :1]).all()):
        return False
    cols = inter.view(n_out, n_in // t, t)
    return bool((cols == cols[:, :, :1]).all())


def _detect_tiles(inter: torch.Tensor, og: int, ig: int, rowptr_keys: torch.Tensor) -> Tiles | None:
    n_out, n_in = inter.shape
    # Element-wise masks fail already on neighbouring rows: reject them in one cheap compare.
    if not torch.equal(inter[0::2], inter[1::2]):
        return None
    for t in TILE_SIZES:
        if og % t or ig % t or not _is_tiled(inter, t):
            continue
        anyb = inter[::t, ::t]
        tr, tc = anyb.nonzero(as_tuple=True)  # row-major: tile rows ascending, cols ascending
        q = torch.arange(t)
        # Element (tr*t+q, tc*t+c) of every tile, row-major inside the tile.
        rows = (tr[:, None, None] * t + q[None, :, None]).expand(-1, t, t)
        cols = (tc[:, None, None] * t + q[None, None, :]).expand(-1, t, t)
        from_csr = _csr_positions(rowptr_keys, (rows * n_in + cols).reshape(-1))
        # Transposed tiles: tile (tc, tr) of the transpose, element [c, q] = original [q, c].
        order = torch.argsort(tc * (n_out // t) + tr)
        ttr, ttc = tc[order], tr[order]
        t_rows = (ttc[:, None, None] * t + q[None, None, :]).expand(-1, t, t)  # original row
        t_cols = (ttr[:, None, None] * t + q[None, :, None]).expand(-1, t, t)  # original col
        t_from_csr = _csr_positions(rowptr_keys, (t_rows * n_in + t_cols).reshape(-1))
        rowptr = torch.zeros(n_out // t + 1, dtype=torch.long)
        rowptr[1:] = torch.bincount(tr, minlength=n_out // t).cumsum(0)
        t_rowptr = torch.zeros(n_in // t + 1, dtype=torch.long)
        t_rowptr[1:] = torch.bincount(ttr, minlength=n_in // t).cumsum(0)
        return Tiles(t, rowptr, tc.int(), from_csr, t_rowptr, ttc.int(), t_from_csr)
    return None


@torch.no_grad()
def build_plan(mask: torch.Tensor, out_groups: torch.Tensor, in_groups: torch.Tensor) -> Plan | None:
    """Plan for ``mask`` [out, in] with the given group ids, or None if the groups do not form
    equal blocks (then the layer uses the masked reference path). Built on the CPU."""
    mask = mask.detach().cpu()
    out_groups, in_groups = out_groups.detach().cpu().long(), in_groups.detach().cpu().long()
    n_out, n_in = mask.shape
    g = int(max(out_groups.max(), in_groups.max())) + 1
    if g < 1 or n_out % g or n_in % g:
        return None
    out_perm, in_perm = _perm(out_groups, g), _perm(in_groups, g)
    if out_perm is None or in_perm is None:
        return None
    og, ig = n_out // g, n_in // g
    identity = bool((out_perm == torch.arange(n_out)).all() and (in_perm == torch.arange(n_in)).all())
    ms = mask if identity else mask[out_perm][:, in_perm]
    diag = (torch.arange(n_out) // og)[:, None] == (torch.arange(n_in) // ig)[None, :]
    # Intra blocks in sorted coordinates, [g, og, ig]; full blocks need no mask in the bmm.
    inter = ms & ~diag
    block_mask = None
    if int(ms.sum()) - int(inter.sum()) != n_out * ig:  # some intra connection is off
        blocks = torch.stack([ms[k * og:(k + 1) * og, k * ig:(k + 1) * ig] for k in range(g)])
        block_mask = blocks.reshape(n_out, ig).to(torch.uint8).contiguous()
    rows, cols = inter.nonzero(as_tuple=True)  # row-major = CSR order
    rowptr = torch.zeros(n_out + 1, dtype=torch.long)
    rowptr[1:] = torch.bincount(rows, minlength=n_out).cumsum(0)
    keys = rows * n_in + cols
    # CSC: the same entries ordered by (col, row); a stable sort by column keeps rows ascending.
    csc_from_csr = torch.argsort(cols, stable=True)
    t_cols, t_rows = cols[csc_from_csr], rows[csc_from_csr]
    colptr = torch.zeros(n_in + 1, dtype=torch.long)
    colptr[1:] = torch.bincount(t_cols, minlength=n_in).cumsum(0)
    tiles = _detect_tiles(inter, og, ig, keys) if rows.numel() else None
    if rows.numel() >= 2**31:
        return None  # the kernels index nonzeros with int32
    seg, ncb = _segments(rowptr, cols, n_in, COLUMN_BLOCK)
    cseg, ncb_t = _segments(colptr, t_rows, n_out, COLUMN_BLOCK)
    return Plan(
        groups=g, og=og, ig=ig, out_perm=out_perm, in_perm=in_perm, identity=identity,
        block_mask=block_mask, rowptr=rowptr, cols=cols.int(), ocols=in_perm[cols].int(),
        colptr=colptr, crows=t_rows.int(), csc_from_csr=csc_from_csr, seg=seg, cseg=cseg, ncb=ncb,
        ncb_t=ncb_t, tiles=tiles,
        nnz_inter=int(rows.numel()), in_features=n_in, out_features=n_out,
    )
