"""Where a G2G layer's active connections live in its packed parameters (SPEC §7).

Sort inputs and outputs by ensemble (a stable sort, so contiguous groups keep the identity): the
intra-ensemble connections become G diagonal blocks [og, ig], stored dense as ``intra`` [G, og, ig]
and run as one batched matmul (entries inside a block that the mask turns off are held at 0).
Every other active connection is one entry of ``values``: in CSR order of the sorted matrix for
element-wise masks, or tile by tile (T x T, row-major inside a tile) when the inter-ensemble part
is made of whole tiles (``modular_mask(..., inter_tile=T)``), so that rows of a tile share every
loaded activation. A layer without ensembles (an ER mask, or no usable blocks) keeps everything
in ``values``.

A layout is a function of the mask, the group ids and whether the blocks are stored dense
(``blocks``): the owner of a weight (``g2gnet.packed``) saves the last two with the mask, so a
checkpoint's optimizer state (in layout order) matches the layout rebuilt on load. It is plain
data: the owner registers its tensors as buffers, the custom ops take them as arguments
(``op_args``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import G2GError

TILE_SIZES = (32, 16, 8, 4)  # largest first; the BSR kernels need T % 4 == 0
_ROW_CHUNK = 256  # rows of the mask handled at once while building (bounds the temporary memory)


@dataclass
class Layout:
    n_out: int
    n_in: int
    n_groups: int  # ensembles with dense intra blocks; 0 = no blocks (all connections in ``values``)
    og: int  # outputs per ensemble (0 without blocks)
    ig: int  # inputs per ensemble
    tile: int  # T of the BSR inter part; 0 = CSR
    n_values: int
    out_perm: Tensor | None  # int64 [out]: sorted position -> original output (None = identity)
    in_perm: Tensor | None  # int64 [in]
    block_mask: Tensor | None  # bool [G, og, ig] where some intra connection is off, else None
    rowptr: Tensor  # int64 [rows + 1]: CSR by sorted output row (BSR: by tile row)
    cols: Tensor  # int16 or int32 [n]: sorted input index (BSR: tile column, int32)
    t_rowptr: Tensor  # int64 [cols + 1]: entries per column of the transposed pattern (input gradient)
    # BSR only (tiles are few): the transposed tile pattern, tile row and stored index of each.
    # CSR: the first backward that needs it builds it (``transposed`` below).
    t_rows: Tensor  # int32 [n tiles], empty for CSR
    t_index: Tensor  # int32 [n tiles], empty for CSR
    # The element-wise inter part's transposed pattern as the backward reads it (each entry's row, and its
    # place within its CSR row, both in the index dtype), built by the first backward that asks
    # (``kernels.ops._transposed``) and, with ``keep_transposed``, kept for the next: a PackedWeight's
    # layout, rebuilt whenever the mask changes (4 bytes per entry with int16 indices).
    keep_transposed: bool = field(default=False, repr=False, compare=False)
    transposed: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)
    # The op boundary's checks of these tensors passed (kernels.ops._check_layout). A PackedWeight's
    # Layout is built once per layout version from its buffers, so its eager calls check it once;
    # a custom op call unpacks a new Layout, checked at every call.
    checked: bool = field(default=False, repr=False, compare=False)

    TENSORS = ("out_perm", "in_perm", "block_mask", "rowptr", "cols", "t_rowptr", "t_rows", "t_index")
    INTS = ("n_out", "n_in", "n_groups", "og", "ig", "tile", "n_values")

    @property
    def intra_shape(self) -> tuple[int, int, int]:
        return (self.n_groups, self.og, self.ig) if self.n_groups else (0, 0, 0)

    def op_args(self) -> tuple[list[Tensor], list[int]]:
        """The layout as the custom ops take it: its tensors in ``TENSORS`` order (an empty one
        for a missing optional tensor) and its ints in ``INTS`` order."""
        dev = self.rowptr.device
        tensors = [getattr(self, n) if getattr(self, n) is not None else torch.empty(0, dtype=_OPTIONAL[n], device=dev)
                   for n in self.TENSORS]
        return tensors, [int(getattr(self, n)) for n in self.INTS]

    @classmethod
    def from_op_args(cls, tensors, ints) -> Layout:
        """The inverse of ``op_args``."""
        if len(tensors) != len(cls.TENSORS) or len(ints) != len(cls.INTS):
            raise G2GError(f"a layout needs {len(cls.TENSORS)} tensors and {len(cls.INTS)} ints, "
                           f"got {len(tensors)} and {len(ints)}")
        kw = dict(zip(cls.INTS, (int(m) for m in ints)))
        for name, t in zip(cls.TENSORS, tensors):
            kw[name] = None if (name in _OPTIONAL and t.numel() == 0) else t
        return cls(**kw)

    # -- positions in the dense [out, in] matrix, row-major (built on demand: O(nnz) memory) ------
    def flat_intra(self) -> Tensor:
        """int64 [G*og*ig]: dense flat position of every entry of ``intra``."""
        dev = self.rowptr.device
        rows = _maybe(self.out_perm, self.n_out, dev).view(self.n_groups, self.og, 1)
        cols = _maybe(self.in_perm, self.n_in, dev).view(self.n_groups, 1, self.ig)
        return (rows * self.n_in + cols).reshape(-1)

    def value_rows(self) -> Tensor:
        """int64 [n_values]: the sorted output row of every entry of ``values``."""
        dev = self.rowptr.device
        row_of = torch.repeat_interleave(torch.arange(self.rowptr.numel() - 1, device=dev), self.rowptr.diff())
        if not self.tile:
            return row_of
        t = self.tile
        q = torch.arange(t, device=dev)
        return (row_of[:, None, None] * t + q[None, :, None]).expand(-1, t, t).reshape(-1)

    @property
    def index_bytes(self) -> int:
        return self.cols.element_size()

    def value_cols(self) -> Tensor:
        """int64 [n_values]: the sorted input column of every entry of ``values``."""
        if not self.tile:
            return self.cols.long()
        t = self.tile
        q = torch.arange(t, device=self.cols.device)
        return (self.cols.long()[:, None, None] * t + q[None, None, :]).expand(-1, t, t).reshape(-1)

    def flat_values(self) -> Tensor:
        """int64 [n_values]: dense flat position of every entry of ``values``."""
        dev = self.rowptr.device
        out_perm, in_perm = _maybe(self.out_perm, self.n_out, dev), _maybe(self.in_perm, self.n_in, dev)
        return out_perm[self.value_rows()] * self.n_in + in_perm[self.value_cols()]


# The optional tensors of a layout (None = identity permutation / every block entry active), and
# the dtype of the empty tensor that stands for None in ``op_args``.
_OPTIONAL = {"out_perm": torch.int64, "in_perm": torch.int64, "block_mask": torch.bool}


def _maybe(perm: Tensor | None, n: int, device) -> Tensor:
    return torch.arange(n, device=device) if perm is None else perm


def _sort_perm(ids: Tensor) -> Tensor | None:
    perm = torch.argsort(ids, stable=True)
    return None if bool((perm == torch.arange(ids.numel())).all()) else perm


def _csc(rowptr: Tensor, cols: Tensor, n_cols: int) -> tuple[Tensor, Tensor, Tensor]:
    """The transposed pattern of a CSR: (colptr, rows, index of each entry in CSR order), built
    column block by column block (for the tiles of a BSR layout)."""
    rows = torch.repeat_interleave(torch.arange(rowptr.numel() - 1, dtype=torch.int32), rowptr.diff())
    colptr = torch.zeros(n_cols + 1, dtype=torch.long)
    colptr[1:] = torch.bincount(cols, minlength=n_cols).cumsum(0)
    t_rows = torch.empty_like(cols)
    t_index = torch.empty(cols.numel(), dtype=torch.int32)
    step = max(1, n_cols // 8)
    for c0 in range(0, n_cols, step):
        idx = ((cols >= c0) & (cols < c0 + step)).nonzero().squeeze(1)
        idx = idx[torch.argsort(cols[idx], stable=True)]  # by column, rows ascending inside one
        lo = int(colptr[c0])
        t_rows[lo:lo + idx.numel()] = rows[idx]
        t_index[lo:lo + idx.numel()] = idx.to(torch.int32)
    return colptr, t_rows, t_index


def _tiles(rowptr: Tensor, cols: Tensor, og: int, ig: int) -> int:
    """The largest T with every inter entry inside a whole T x T tile of whole tiles, else 0."""
    if cols.numel() == 0:
        return 0
    counts = rowptr.diff()
    for t in TILE_SIZES:
        if og % t or ig % t or bool((counts % t).any()):
            continue
        runs = cols.view(-1, t).long()
        if not bool((runs[:, 0] % t == 0).all()) or not bool((runs - runs[:, :1] == torch.arange(t)).all()):
            continue
        # Every row of a tile row holds the same columns.
        tr_counts = counts.view(-1, t)
        if not bool((tr_counts == tr_counts[:, :1]).all()):
            continue
        starts = rowptr[:-1].view(-1, t)
        same = True
        for r in range(starts.shape[0]):
            n = int(tr_counts[r, 0])
            if n and not bool((torch.stack([cols[s:s + n] for s in starts[r].tolist()]) == cols[starts[r, 0]:
                                                                                              starts[r, 0] + n]).all()):
                same = False
                break
        if same:
            return t
    return 0


def block_groups_error(out_groups: Tensor | None, in_groups: Tensor | None, n_out: int, n_in: int) -> str | None:
    """Why these group ids cannot give dense diagonal blocks, or None when they can: both sides
    must split into the same G >= 2 equal groups."""
    if out_groups is None or in_groups is None:
        return "dense blocks need the group ids of both sides"
    g = int(max(out_groups.max(), in_groups.max())) + 1
    if g < 2 or n_out % g or n_in % g:
        return f"{g} group(s) cannot split {n_out} outputs and {n_in} inputs into G >= 2 equal groups"
    for ids, n, side in ((out_groups, n_out, "outputs"), (in_groups, n_in, "inputs")):
        if bool((torch.bincount(ids, minlength=g) != n // g).any()):
            return f"the {side} are not split into {g} groups of {n // g}"
    return None


def check_block_groups(out_groups: Tensor | None, in_groups: Tensor | None, n_out: int, n_in: int) -> None:
    err = block_groups_error(out_groups, in_groups, n_out, n_in)
    if err is not None:
        raise G2GError(err)


def blocks_pay(mask: Tensor, out_groups: Tensor | None, in_groups: Tensor | None) -> bool:
    """Whether to store the ensembles' diagonal blocks dense: the group ids split both sides into
    G >= 2 equal groups and the blocks hold at least half of their entries (else storing them
    dense would waste more than it saves)."""
    n_out, n_in = mask.shape
    if block_groups_error(out_groups, in_groups, n_out, n_in) is not None:
        return False
    g = int(max(out_groups.max(), in_groups.max())) + 1
    same = sum(int(torch.count_nonzero(mask[r0:r0 + _ROW_CHUNK] & (out_groups[r0:r0 + _ROW_CHUNK, None] == in_groups[None, :])))
               for r0 in range(0, n_out, _ROW_CHUNK))
    return same >= 0.5 * n_out * n_in / g


@torch.no_grad()
def build_layout(mask: Tensor, out_groups: Tensor | None, in_groups: Tensor | None, blocks: bool) -> Layout:
    """The layout of ``mask`` [out, in] (bool, CPU): with dense diagonal blocks of the given
    ensembles when ``blocks`` (see ``blocks_pay``; equal groups required), else without."""
    n_out, n_in = mask.shape
    groups, og, ig = 0, 0, 0
    out_perm = in_perm = None
    if blocks:
        groups = int(max(out_groups.max(), in_groups.max())) + 1
        og, ig = n_out // groups, n_in // groups
        out_perm, in_perm = _sort_perm(out_groups), _sort_perm(in_groups)
    inv_in = None
    if in_perm is not None:
        inv_in = torch.empty_like(in_perm)
        inv_in[in_perm] = torch.arange(n_in)
    # Row chunks of the sorted mask: intra part -> block mask, the rest -> CSR (sorted columns).
    counts, col_parts, full = [], [], True
    block_mask = torch.ones(groups, og, ig, dtype=torch.bool) if groups else None
    for r0 in range(0, n_out, _ROW_CHUNK):
        rows = torch.arange(r0, min(r0 + _ROW_CHUNK, n_out))
        m = mask[rows if out_perm is None else out_perm[rows]]
        if in_perm is not None:
            m = m[:, in_perm]
        if groups:
            block = rows // og
            diag = (torch.arange(n_in)[None, :] // ig) == block[:, None]
            intra = m[diag].view(-1, ig)
            if not bool(intra.all()):
                full = False
                block_mask.view(n_out, ig)[rows] = intra
            m = m & ~diag
        rr, cc = m.nonzero(as_tuple=True)
        counts.append(torch.bincount(rr, minlength=rows.numel()))
        col_parts.append(cc.to(torch.int32))
    rowptr = torch.zeros(n_out + 1, dtype=torch.long)
    rowptr[1:] = torch.cat(counts).cumsum(0)
    cols = torch.cat(col_parts) if col_parts else torch.zeros(0, dtype=torch.int32)
    n_values = cols.numel()
    tile = _tiles(rowptr, cols, og, ig) if groups else 0
    if tile:
        first = rowptr[:-1].view(-1, tile)[:, 0]  # first row of every tile row
        per = rowptr.diff().view(-1, tile)[:, 0] // tile  # tiles per tile row
        t_cols = torch.cat([cols[int(s):int(s) + int(n) * tile:tile] // tile for s, n in zip(first, per)]) \
            if int(per.sum()) else torch.zeros(0, dtype=torch.int32)
        rowptr = torch.zeros(n_out // tile + 1, dtype=torch.long)
        rowptr[1:] = per.cumsum(0)
        cols = t_cols.to(torch.int32)
        t_rowptr, t_rows, t_index = _csc(rowptr, cols, n_in // tile)
    else:
        t_rowptr = torch.zeros(n_in + 1, dtype=torch.long)
        t_rowptr[1:] = torch.bincount(cols, minlength=n_in).cumsum(0)
        t_rows = t_index = torch.zeros(0, dtype=torch.int32)
        if max(n_out, n_in) <= torch.iinfo(torch.int16).max:  # half the index memory and traffic
            cols = cols.to(torch.int16)
    return Layout(n_out=n_out, n_in=n_in, n_groups=groups, og=og, ig=ig, tile=tile, n_values=n_values,
                  out_perm=out_perm, in_perm=in_perm, block_mask=None if full else block_mask, rowptr=rowptr,
                  cols=cols, t_rowptr=t_rowptr, t_rows=t_rows, t_index=t_index)


def pack_bits(mask: Tensor) -> Tensor:
    """bool [out, in] -> uint8 [out, ceil(in / 8)], little-endian bits (1/8 of the bytes)."""
    n_out, n_in = mask.shape
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=mask.device)
    out = torch.empty(n_out, (n_in + 7) // 8, dtype=torch.uint8, device=mask.device)
    for r0 in range(0, n_out, _ROW_CHUNK):  # row blocks: no uint8 copy of the whole mask
        m = torch.nn.functional.pad(mask[r0:r0 + _ROW_CHUNK].to(torch.uint8), (0, (-n_in) % 8))
        out[r0:r0 + _ROW_CHUNK] = (m.view(m.shape[0], -1, 8) * weights).sum(-1, dtype=torch.uint8)
    return out


def unpack_bits(bits: Tensor, n_in: int) -> Tensor:
    """The inverse of ``pack_bits``."""
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    out = torch.empty(bits.shape[0], n_in, dtype=torch.bool, device=bits.device)
    for r0 in range(0, bits.shape[0], _ROW_CHUNK):
        b = bits[r0:r0 + _ROW_CHUNK]
        out[r0:r0 + _ROW_CHUNK] = ((b[..., None] >> shifts) & 1).bool().view(b.shape[0], -1)[:, :n_in]
    return out
