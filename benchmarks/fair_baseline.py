"""Dense as plain PyTorch runs it, against dense in a process where g2gnet changed glibc's allocator;
and G2G with and without that change.

g2gnet fixes glibc's mmap threshold when the first sparse layer of a process is built (g2gnet.malloc:
the memory goal), and that is process-wide: a dense layer timed in the same process then maps its
large buffers (weight gradients of 4 MiB or more) afresh at every step and faults every page in.
This times the same workloads in worker processes, interleaved call by call (each worker times its
own calls; the parent alternates them, and each waits 50 ms first so that the other's OpenMP
threads sleep): "dense-plain" never builds a sparse layer (glibc's defaults), "dense-in-g2g" builds
one first; "g2g" as g2gnet sets the allocator, "g2g-plain" with G2G_MALLOC=0. Ratios of the first
worker's time over each other's, per repeat: median (min-max).

    python benchmarks/fair_baseline.py dense-plain dense-in-g2g [--repeats 15]
    python benchmarks/fair_baseline.py g2g g2g-plain
"""

import argparse
import multiprocessing as mp
import resource
import statistics
import time

WORKLOADS = ["layer 2048 fwd+bwd", "layer 2048 tiles32 fwd+bwd", "layer 4096 fwd+bwd", "layer 4096 tiles32 fwd+bwd",
             "mlp 784-1024x3 train step b256", "layer 2048 infer b256", "mlp 784-1024x3 infer b256"]


def _worker(kind: str, conn) -> None:
    import os

    if kind.endswith("plain"):
        os.environ["G2G_MALLOC"] = "0"
    import torch

    import g2gnet
    from g2gnet.bench import sparse_layer

    torch.set_num_threads(2)
    if kind == "dense-in-g2g":
        g2gnet.SparseLinear(8, 8)  # the allocator setting, as in any process that builds a sparse layer
    sparse = kind.startswith("g2g")
    calls = {}
    for name in WORKLOADS:
        if name.startswith("layer"):
            w = int(name.split()[1])
            m = sparse_layer(w, 32 if "tiles" in name else 1) if sparse else torch.nn.Linear(w, w)
            if "infer" in name:
                m.eval()
                x = torch.randn(256, w)

                def call(m=m, x=x):
                    with torch.inference_mode():
                        m(x)
            else:
                x, gy = torch.randn(256, w, requires_grad=True), torch.randn(256, w)

                def call(m=m, x=x, gy=gy):
                    x.grad = None
                    m.zero_grad(set_to_none=True)
                    m(x).backward(gy)
        else:
            m = g2gnet.build_model("g2g-mixer" if sparse else "dense", 784, 10)
            x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
            if "infer" in name:
                m.eval()

                def call(m=m, x=x):
                    with torch.inference_mode():
                        m(x)
            else:
                opt = torch.optim.Adam(m.parameters(), lr=1e-3)

                def call(m=m, x=x, y=y, opt=opt):
                    opt.zero_grad(set_to_none=True)
                    torch.nn.functional.cross_entropy(m(x), y).backward()
                    opt.step()
        calls[name] = call
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        name, n = msg
        time.sleep(0.05)  # the other workers' OpenMP threads stop spinning and sleep
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        for _ in range(n):
            calls[name]()
        conn.send(((time.perf_counter() - t) / n, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workers", nargs="+", choices=["dense-plain", "dense-in-g2g", "g2g", "g2g-plain"],
                        help="the workers to compare, the first is the reference")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats per workload")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    workers = {}
    for kind in args.workers:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(kind, child), daemon=True)
        proc.start()
        workers[kind] = (proc, parent)
    for _, conn in workers.values():
        assert conn.recv() == "ready"
    first = args.workers[0]
    print(f"median ms per call [page faults per call]; {first}'s time over each other's per repeat: median (min-max)")
    for name in WORKLOADS:
        n = 4 if "infer" in name else 1
        times = {k: [] for k in workers}
        faults = {k: [] for k in workers}
        for r in range(args.repeats + 2):
            for kind, (_, conn) in workers.items():
                conn.send((name, n))
                t, f = conn.recv()
                if r >= 2:  # two warm-up repeats
                    times[kind].append(t)
                    faults[kind].append(f)
        parts = []
        for kind in workers:
            part = f"{kind} {statistics.median(times[kind]) * 1e3:.2f} [{statistics.median(faults[kind]):.0f}]"
            if kind != first:
                rs = [a / b for a, b in zip(times[first], times[kind])]
                part += f" {statistics.median(rs):.3f} ({min(rs):.2f}-{max(rs):.2f})"
            parts.append(part)
        print(f"{name}: " + ", ".join(parts), flush=True)
    for proc, conn in workers.values():
        conn.send(None)
        proc.join()


if __name__ == "__main__":
    main()
