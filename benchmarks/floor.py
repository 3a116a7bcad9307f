"""Floor of the element-wise inter-group kernels: python benchmarks/floor.py [WIDTH]

Times the forward sparse-row product (spmm) and the weight-gradient SDDMM of a G2G layer
(batch 256, density 0.256, 2 threads) twice: with the real random column indices, and with every
index pointing at one of 8 activation rows, which then always sit in L1. The second is what these
kernels cost with a perfect cache (their instruction-issue floor); the gap is the memory part.
"""
import time, torch, statistics as st
from g2gnet.kernels import native, native_ops as no
from g2gnet.kernels.plan import build_plan
from g2gnet.topology import group_ids, modular_mask
torch.manual_seed(0); torch.set_num_threads(2)
import sys
N=int(sys.argv[1]) if len(sys.argv)>1 else 2048; B=256; lib=native.get()
og=group_ids(N,8,"random"); ig=group_ids(N,8,"random")
m=modular_mask(og,ig,1.0,0.15); plan=build_plan(m,og,ig)
W=torch.randn(N,N)*m; x=torch.randn(B,N)
xs=no.gather_t(lib,x,plan.in_perm,B); wb,vals=no.pack(lib,plan,W)
ys=torch.bmm(wb,xs.unflatten(0,(8,-1))).view(N,B); out=torch.empty_like(ys); dv=torch.empty(plan.nnz_inter)
hot=(plan.cols % 8).int()  # 8 distinct rows: always in L1
def spmm(cols): lib.g2g_spmm_cb(N,B,64,plan.ncb,plan.seg.data_ptr(),cols.data_ptr(),vals.data_ptr(),xs.data_ptr(),xs.stride(0),ys.data_ptr(),ys.stride(0),None,None,out.data_ptr(),out.stride(0),2)
def sddmm(cols): lib.g2g_sddmm(N,B,plan.rowptr.data_ptr(),cols.data_ptr(),xs.data_ptr(),xs.stride(0),xs.data_ptr(),xs.stride(0),dv.data_ptr(),2)
fs={"dense_mm":lambda: x@W.t(),"spmm random":lambda: spmm(plan.cols),"spmm hot":lambda: spmm(hot),"sddmm random":lambda: sddmm(plan.cols),"sddmm hot":lambda: sddmm(hot)}
T={k:[] for k in fs}
for r in range(30):
    for k,f in fs.items():
        t=time.perf_counter(); f(); T[k].append(time.perf_counter()-t)
d=st.median(T["dense_mm"])
print("inter nnz fraction of dense: %.3f"%(plan.nnz_inter/N/N))
for k,v in T.items(): print("%-14s %.2f ms  %.3f of dense mm"%(k, st.median(v)*1e3, st.median(v)/d))
