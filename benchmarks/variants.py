"""Builds of the C++ kernels side by side, for the in-process A/B scripts (kernel_ab.py, infer_ab.py).

A variant is NAME:[SOURCE][@FLAGS]: SOURCE defaults to this checkout's g2gnet/csrc/g2g_kernels.cpp,
FLAGS are extra g++ flags (e.g. "nv3:@-DBSR_NV=3"). Each is compiled with the package's own flags and
loaded with ctypes under its own name; ``native._lib = lib`` makes the package call it. This
checkout's Python calls every variant, so a variant must have this checkout's C prototypes (an older
source whose kernels take other arguments is refused).
"""

import ctypes
import subprocess
from collections.abc import Callable

import torch

from g2gnet.kernels import native
from g2gnet.timing import compare, time_interleaved


def build(specs: list[str]) -> list[tuple[str, ctypes.CDLL]]:
    native.get()
    out = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        src, _, flags = rest.partition("@")
        src = src or str(native.SOURCE)
        so = f"/tmp/g2g_ab_{name}.so"
        subprocess.run(["g++", *native._flags(), *flags.split(), src, "-o", so], check=True)
        lib = ctypes.CDLL(so)
        protos = native.prototypes(open(src).read())
        changed = [fn for fn, proto in native.prototypes().items() if protos.get(fn) != proto]
        if changed:  # this checkout's Python passes its own argument lists to every variant
            raise SystemExit(f"variant {name}: {', '.join(changed)} take other arguments than this checkout's; "
                             "A/B only builds with the same C prototypes")
        for fn, proto in protos.items():
            f = getattr(lib, fn)
            f.argtypes, f.restype = [native._CTYPES[c] for c, _ in proto], None
        out.append((name, lib))
    return out


def ab(libs: dict[str, ctypes.CDLL], label: str, f: Callable[[], torch.Tensor], reps: int, exact: bool = False,
       **timing) -> None:
    """Runs ``f`` under every build and checks its output (a copy) against the first build's (equal
    with ``exact``, else to 1e-4 relative, 1e-3 absolute), then times ``f`` under each build,
    interleaved (``timing``: time_interleaved's warmup and per_repeat), and prints compare's line."""
    outs = {}
    for name, lib in libs.items():
        native._lib = lib
        outs[name] = f().clone()
    ref = next(iter(outs.values()))
    for name, out in outs.items():
        if exact:
            assert torch.equal(out, ref), f"{label}: {name} differs"
        else:
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-3, msg=f"{label}: {name} differs")
    times = time_interleaved({name: f for name in libs}, reps, before=lambda name: setattr(native, "_lib", libs[name]),
                             **timing)
    print(compare(label, times), flush=True)
