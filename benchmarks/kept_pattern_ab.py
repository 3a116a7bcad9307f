"""Element-wise layouts: the backward's one-pass gradients on the transposed pattern that the layout
keeps (rows and places within their CSR rows, built once per mask; each backward gathers the values
in its order, ``g2g_csr_gather``), against the code before, which rebuilt the transposed pattern with
its values and 4-byte CSR places at every backward (``g2g_csr_transpose`` and ``g2g_csr_grads`` of an older
source, loaded beside this checkout's). The rest of the step runs this checkout's kernels on both
sides. In one process, interleaved (``g2gnet.timing``; "rebuilt / kept" > 1: keeping is faster).

Per width: the two gradients' products alone at batch 256, then a layer's forward + backward, then
(``--model``) an Adam step of the whole ``g2g-mixer`` 784-W x 3-10. ``--pieces``: instead, each
kernel of both sides alone (the transposition every backward and the old one-pass kernel; the
gather through the kept pattern, the new one-pass kernel and the once-per-mask transposition), as
fractions of a dense [W, W] @ [W, batch] matmul timed in the same rounds (medians).

    git show 0fffe53:g2gnet/csrc/g2g_kernels.cpp > /tmp/old.cpp
    python benchmarks/kept_pattern_ab.py /tmp/old.cpp [--widths 1024,2048,4096] [--repeats 21] [--model | --pieces]
"""

import argparse
import ctypes
import statistics
import subprocess

import torch

from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.kernels import native, ops
from g2gnet.timing import time_interleaved
from grads_ways import compare_ways

parser = argparse.ArgumentParser()
parser.add_argument("old_source", help="the C++ source of the code before (its g2g_csr_transpose and g2g_csr_grads)")
parser.add_argument("--widths", default="1024,2048,4096", help="layer widths, comma-separated")
parser.add_argument("--batch", type=int, default=256, help="batch size")
parser.add_argument("--repeats", type=int, default=21, help="interleaved repeats")
parser.add_argument("--model", action="store_true", help="also time the whole model's training step")
parser.add_argument("--pieces", action="store_true", help="time each kernel of both sides alone instead")
args = parser.parse_args()
malloc.keep_defaults()
torch.set_num_threads(2)

native.get()
subprocess.run(["g++", *native._flags(), args.old_source, "-o", "/tmp/g2g_kept_ab_old.so"], check=True)
old = ctypes.CDLL("/tmp/g2g_kept_ab_old.so")
for fn, proto in native.prototypes(open(args.old_source).read()).items():
    f = getattr(old, fn)
    f.argtypes, f.restype = [native._CTYPES[c] for c, _ in proto], None
kept = ops._grads_into


def rebuilt(lay, intra, values, gys, xs, dst, gxs, gi, gv, nt, scratch="blocks"):
    """The code before: the both-gradients branch of ``_grads_into`` with the pattern, its values and
    int32 places rebuilt now (rows and values in workspaces, places in a tensor of their own)."""
    if gi is None or gxs is None or lay.tile or not lay.n_values:
        return kept(lay, intra, values, gys, xs, dst, gxs, gi, gv, nt, scratch)
    ops._block_grads_into(lay, gys, xs, gi, gv)
    ys = ops._block_product(lay, ops._seen_blocks(lay, intra, True), gys, scratch)
    rows = ops._workspace("t_cols", lay.n_values, lay.cols.dtype)
    vals = ops._workspace("t_vals", lay.n_values)
    pos = malloc.huge(torch.empty(lay.n_values, dtype=torch.int32))
    old.g2g_csr_transpose(lay.n_out, lay.n_in, lay.rowptr.data_ptr(), lay.cols.data_ptr(), lay.index_bytes,
                          values.data_ptr(), lay.t_rowptr.data_ptr(), rows.data_ptr(), vals.data_ptr(), pos.data_ptr(), nt)
    old.g2g_csr_grads(lay.n_in, gys.shape[1], lay.t_rowptr.data_ptr(), rows.data_ptr(), lay.index_bytes,
                      vals.data_ptr(), pos.data_ptr(), gys.data_ptr(), gys.stride(0), xs.data_ptr(), xs.stride(0),
                      None if ys is None else ys.data_ptr(), 0 if ys is None else ys.stride(0),
                      None if dst is None else dst.data_ptr(), gxs.data_ptr(), gxs.stride(0), gv.data_ptr(), nt)


WAYS = {"rebuilt": rebuilt, "kept": kept}



def pieces(width: int) -> None:
    layer = sparse_layer(width)
    lay, values, n, nt = layer.layout, layer.values.detach(), layer.layout.n_values, torch.get_num_threads()
    bp = ops.padded(args.batch)
    xs = ops.gather_t(torch.randn(args.batch, width), lay.in_perm, bp)
    gys = ops.gather_t(torch.randn(args.batch, width), lay.out_perm, bp)
    rows, offs = torch.empty(n, dtype=lay.cols.dtype), torch.empty(n, dtype=lay.cols.dtype)
    vals, pos, gv = torch.empty(n), torch.empty(n, dtype=torch.int32), torch.empty(n)
    gxs = torch.empty(width, ops.row_stride(bp))[:, :bp]
    a, b = torch.randn(width, width), torch.randn(width, args.batch)
    p = lambda t: None if t is None else t.data_ptr()  # noqa: E731
    calls = {
        "dense matmul": lambda: torch.mm(a, b),
        "old: transposition with values and int32 places": lambda: old.g2g_csr_transpose(
            lay.n_out, lay.n_in, p(lay.rowptr), p(lay.cols), lay.index_bytes, p(values), p(lay.t_rowptr), p(rows),
            p(vals), p(pos), nt),
        "old: g2g_csr_grads": lambda: old.g2g_csr_grads(
            lay.n_in, bp, p(lay.t_rowptr), p(rows), lay.index_bytes, p(vals), p(pos), p(gys), gys.stride(0), p(xs),
            xs.stride(0), None, 0, None, p(gxs), gxs.stride(0), p(gv), nt),
        "new: transposition, rows and offsets (once per mask)": lambda: native.csr_transpose(
            lay.n_out, lay.n_in, lay.rowptr, lay.cols, lay.index_bytes, values, lay.t_rowptr, rows, None, offs, nt),
        "new: gather of the values (every backward)": lambda: native.csr_gather(
            n, rows, offs, lay.index_bytes, lay.rowptr, values, vals, nt),
        "new: g2g_csr_grads": lambda: native.csr_grads(
            lay.n_in, bp, lay.t_rowptr, rows, offs, lay.index_bytes, lay.rowptr, vals, gys, gys.stride(0), xs,
            xs.stride(0), None, 0, None, gxs, gxs.stride(0), gv, nt),
    }
    for f in calls.values():  # in this order: each side's arrays hold what its next call reads
        f()
    times = time_interleaved(calls, args.repeats, warmup=1)
    mm = statistics.median(times["dense matmul"])
    print(f"{width} wide, batch {args.batch}, {nt} threads; one dense matmul {mm:.2f} ms", flush=True)
    for name, t in times.items():
        print(f"  {name:55s} {statistics.median(t) / mm:.3f}", flush=True)


for width in (int(w) for w in args.widths.split(",")):
    if args.pieces:
        torch.manual_seed(0)
        pieces(width)
    else:
        compare_ways(WAYS, width, args.batch, args.repeats, args.model, "the two gradients' products")
