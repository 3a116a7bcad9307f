import os, time, torch, warnings
warnings.filterwarnings("ignore")
from g2gnet.kernels import native
torch.set_num_threads(1)
lib = native.get()
N, B, K = 2048, 256, 269
rowptr = torch.arange(N + 1, dtype=torch.long) * K
vals = torch.randn(N * K)
X = torch.randn(N, B + 16)
init = torch.zeros(N, B); out = torch.empty(N, B)
def run(cols, Bp=B):
    ts = []
    for _ in range(15):
        t0 = time.perf_counter()
        lib.g2g_spmm(N, Bp, rowptr.data_ptr(), cols.data_ptr(), vals.data_ptr(), X.data_ptr(), X.stride(0), init.data_ptr(), B, None, None, out.data_ptr(), B, 1)
        ts.append(time.perf_counter() - t0)
    t = min(ts); fl = N * K * Bp * 2
    return f"{t*1e3:.2f} ms {fl/t/1e9:.1f} GFLOPS"
rnd = torch.sort(torch.randint(0, N, (N, K)), dim=1).values.int().reshape(-1)
print("random sorted cols", run(rnd))
print("cols in 64 rows", run((rnd % 64).int()))
print("cols in 8 rows", run((rnd % 8).int()))
print("random, Bp=64", run(rnd, 64))
a = torch.randn(256, 2048); bb = torch.randn(2048, 2048)
ts = []
for _ in range(10):
    t0 = time.perf_counter(); a @ bb; ts.append(time.perf_counter() - t0)
print("dense GEMM GFLOPS", 2 * 256 * 2048 * 2048 / min(ts) / 1e9)
for r in [128, 256, 512, 1024, 2048]:
    print("cols in", r, "rows", run((rnd % r).int()))
for r in [512, 2048]:
    print("Bp=128 cols in", r, "rows", run((rnd % r).int(), 128))
