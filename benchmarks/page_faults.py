"""Page faults and time per call of the Fashion-MNIST MLP (784-1024x3-10), g2g-mixer and dense in one
process, under glibc's trim threshold as g2gnet sets it (g2gnet.malloc) and at glibc's initial
128 KiB, which a fixed mmap threshold used to leave it at (or at the thresholds given, MiB): eval()
forward under inference_mode at batch 64 and 256, and a training step (forward, backward, Adam) at
batch 256. Minor faults from getrusage, 20 calls after 3 warm-up calls, then the median ms of 7 rounds.
(The faults depend on the heap's history: run each threshold in a process of its own to compare.)

    python benchmarks/page_faults.py [MiB ...]
"""

import resource
import statistics
import sys
import time

import torch

import g2gnet
from g2gnet import malloc

torch.set_num_threads(2)
models = {"g2g": g2gnet.build_model("g2g-mixer", 784, 10), "dense": g2gnet.build_model("dense", 784, 10)}
optims = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(f, n: int = 20) -> tuple[float, float]:
    for _ in range(3):
        f()
    start = faults()
    for _ in range(n):
        f()
    per_call = (faults() - start) / n
    rounds = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n):
            f()
        rounds.append((time.perf_counter() - t) / n * 1e3)
    return per_call, statistics.median(rounds)


def step(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
    model, opt = models[name], optims[name]
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


thresholds = [float(a) for a in sys.argv[1:]] or [malloc.TRIM_THRESHOLD / 2**20, 0.125]
for label, trim in ((f"trim threshold {t:g} MiB", int(t * 2**20)) for t in thresholds):
    if malloc._mallopt is None:
        raise SystemExit("not glibc: nothing to measure")
    malloc._mallopt(malloc._M_TRIM_THRESHOLD, trim)
    for batch in (64, 256):
        x = torch.randn(batch, 784)
        row = []
        for name, model in models.items():
            model.eval()
            with torch.inference_mode():
                flt, ms = measure(lambda: model(x))
            row.append(f"{name} {flt:.0f} faults {ms:.3f} ms")
        print(f"{label}, inference batch {batch}: " + "; ".join(row), flush=True)
    x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
    row = []
    for name, model in models.items():
        model.train()
        flt, ms = measure(lambda: step(name, x, y))
        row.append(f"{name} {flt:.0f} faults {ms:.3f} ms")
    print(f"{label}, training step batch 256: " + "; ".join(row), flush=True)
