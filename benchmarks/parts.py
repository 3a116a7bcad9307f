"""Per-part costs of a G2G layer's fast path: python benchmarks/parts.py [WIDTH [TILE [SCHEME]]]

Each part of the forward and backward (transposes, packing, batched matmuls, the inter-group
kernels, unpacking) timed alone (best of 25) and as a fraction of one dense [B, N] x [N, N]
matmul; batch 256, G = 8, p_inter = 0.15, NT threads (default 2). ``sddmm_used`` is the
weight-gradient kernel the layer uses.
"""
import sys, os, time, statistics as st, torch, warnings
warnings.filterwarnings("ignore")
from g2gnet.topology import group_ids, modular_mask
from g2gnet.kernels.plan import build_plan
from g2gnet.kernels import native, native_ops as no
torch.manual_seed(0); torch.set_num_threads(int(os.environ.get("NT", "2")))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
tile = int(sys.argv[2]) if len(sys.argv) > 2 else 1
scheme = sys.argv[3] if len(sys.argv) > 3 else "random"
B = 256
og = group_ids(N, 8, scheme); ig = group_ids(N, 8, scheme)
m = modular_mask(og, ig, 1.0, 0.15, inter_tile=tile)
plan = build_plan(m, og, ig); lib = native.get()
W = (torch.randn(N, N) * m); b = torch.randn(N); x = torch.randn(B, N); gy = torch.randn(B, N)
xs = no.gather_t(lib, x, plan.in_perm, B); wb, vals = no.pack(lib, plan, W)
ys = torch.bmm(wb, xs.unflatten(0, (8, -1))).view(N, B); out = torch.empty_like(ys)
nt = torch.get_num_threads()
def spmm(): no._sparse_rows(lib, plan, False, vals, xs, ys, b, plan.out_perm, out)
def spmmT(): no._sparse_rows(lib, plan, True, vals, xs, ys, None, plan.in_perm, out)
dv = torch.empty(plan.nnz_inter)
gw = torch.empty(N, N)
dwb = torch.randn(8, N // 8, N // 8)
def unpack(): lib.g2g_unpack(gw.data_ptr(), N, N, plan.out_perm.data_ptr(), plan.og, plan.ig, plan.in_perm.data_ptr(), dwb.data_ptr(), None, plan.rowptr.data_ptr(), plan.ocols.data_ptr(), dv.data_ptr(), nt)
sddmm_row = lambda: lib.g2g_sddmm(N, B, plan.rowptr.data_ptr(), plan.cols.data_ptr(), xs.data_ptr(), xs.stride(0), xs.data_ptr(), xs.stride(0), dv.data_ptr(), nt)
fns = dict(dense_mm=lambda: x @ W.t(), sddmm_used=sddmm_row, gather_t=lambda: no.gather_t(lib, x, plan.in_perm, B), gather_rows=lambda: no.gather_t(lib, xs.t(), plan.in_perm, B),
  pack=lambda: no.pack(lib, plan, W), bmm=lambda: torch.bmm(wb, xs.unflatten(0, (8, -1))), spmm=spmm, spmmT=spmmT, take=lambda: no.take(lib, vals, plan.csc_from_csr),
  bmm_dw=lambda: torch.bmm(xs.unflatten(0, (8, -1)), xs.unflatten(0, (8, -1)).transpose(1, 2)), unpack=unpack, sum=lambda: gy.sum(0))
if plan.tiles is not None:
    tl = plan.tiles
    fns["bsr_sddmm"] = lambda: lib.g2g_bsr_sddmm(tl.rowptr.numel() - 1, B, tl.size, tl.rowptr.data_ptr(), tl.cols.data_ptr(), tl.from_csr.data_ptr(), xs.data_ptr(), xs.stride(0), xs.data_ptr(), xs.stride(0), dv.data_ptr(), nt)
ts = {k: [] for k in fns}
for f in fns.values(): f()
for _ in range(25):
    for k, f in fns.items():
        t0 = time.perf_counter(); f(); ts[k].append(time.perf_counter() - t0)
med = {k: min(v) * 1e3 for k, v in ts.items()}
print(f"N={N} tile={tile} nnz_inter={plan.nnz_inter} ideal inter frac={plan.nnz_inter/N/N:.3f}")
for k, v in med.items(): print(f"  {k:12s} {v:7.3f} ms  {v/med['dense_mm']:.3f} of dense mm")
