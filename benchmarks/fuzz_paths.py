"""A randomized differential fuzzer of SparseLinear's paths and the MLP stacks against known answers.

Every layer's weights are set with ``load_dense_(W)`` from a random W, so the truth is computed in
float64 as ``x @ (W * mask).T + b`` however the layout packs W; each fast-path result (output, input
and weight gradients, bias gradient) is held to it at rtol 1e-4, atol 1e-5, and told apart from
float32 rounding by the library's own float32 reference (``reference_mode``). Cases draw widths
1-300, groups 1-8, element-wise or tiled masks (square and rectangular tiles), ER, random and full or
empty masks, batches 1-300, 1-D / 3-D inputs and strided ones, 1 or 2 threads, training (x with and
without a gradient, partly frozen), no_grad, inference_mode, eval(), after set_mask_,
load_state_dict from another mask, deepcopy, .double().float(), in-place changes, ``p.data`` swaps,
reserve_. Models (g2g-mixer/-index/-random, er; 1-4 hidden layers) are also held to the modules
called one by one (bit for bit where they stack). A case over 10 s is reported as a hang; a clear
G2GError for an invalid configuration is expected and counted apart. Each case is fixed by its seed.

    python benchmarks/fuzz_paths.py --kind layer|model|seq|nan [--seed S] [--n N] [--time SECONDS]
    python benchmarks/fuzz_paths.py --kind layer --case SEED   # one case, verbose

Found the exact full-block search of ``find_groups`` running for minutes on dense masks of few
input classes (fixed: fda06be); results/fuzz/ holds the runs.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import signal
import tempfile
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

from g2gnet import SparseLinear, build_model, sparse_layers
from g2gnet.errors import G2GError
from g2gnet.kernels import reference_mode
from g2gnet.topology import er_mask, group_ids, modular_mask

RTOL, ATOL = 1e-4, 1e-5
LOG = os.path.join(tempfile.gettempdir(), "g2gnet-fuzz-case.json")  # the case last started (a crash's)


class Mismatch(Exception):
    pass


# ------------------------------------------------------------------------------------------------
def viol(got: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """(max over elements of |got-truth| - (atol + rtol |truth|), max abs err), in float64."""
    g, t = got.detach().double(), truth.detach().double()
    err = (g - t).abs()
    fin = torch.isfinite(t) & torch.isfinite(g)
    err = torch.where(fin, err, torch.zeros_like(err))
    if err.numel() == 0:
        return 0.0, 0.0
    return float((err - (ATOL + RTOL * t.abs())).max()), float(err.max())


def compare(name: str, got, truth, ref32=None, problems=None):
    """Mismatch if got is outside the tolerance of truth (float64) and clearly worse than the
    float32 reference (if given)."""
    if got is None or truth is None:
        if (got is None) != (truth is None):
            problems.append(f"{name}: got {'None' if got is None else 'tensor'}, expected "
                            f"{'None' if truth is None else 'tensor'}")
        return
    if tuple(got.shape) != tuple(truth.shape):
        problems.append(f"{name}: shape {tuple(got.shape)} != {tuple(truth.shape)}")
        return
    gn, tn = ~torch.isfinite(got.detach()), ~torch.isfinite(truth.detach())
    if not torch.equal(gn, tn):
        problems.append(f"{name}: non-finite pattern differs ({int(gn.sum())} vs {int(tn.sum())})")
        return
    v, e = viol(got, truth)
    if v > 0:
        tmax = float(truth.detach().abs().max())
        if e <= 2e-6 * max(1.0, tmax):  # float32 rounding at this magnitude (summed cancelling terms)
            STATS["scaled_noise"] += 1
            return
        if ref32 is not None:
            rv, re = viol(ref32, truth)
            if rv > 0 and re >= 0.25 * e:  # the float32 reference is as far off: rounding noise
                STATS["noise"] += 1
                return
        rtxt = ""
        if ref32 is not None:
            rtxt = f", float32 reference's err {viol(ref32, truth)[1]:.3g}, fast vs reference {viol(got, ref32)[1]:.3g}"
        problems.append(f"{name}: max abs err {e:.3g} (viol {v:.3g}, |truth|max "
                        f"{float(truth.detach().abs().max()):.3g}{rtxt})")


STATS = {"noise": 0, "scaled_noise": 0}


def start(desc: dict, verbose: bool = False) -> None:
    """A case begins: its description goes to LOG (what a crash leaves behind), and to the terminal
    when the case runs alone."""
    with open(LOG, "w") as f:
        json.dump(desc, f, default=str)
    if verbose:
        print(json.dumps(desc, default=str))


# ------------------------------------------------------------------------------------------------
def draw_layer_cfg(rng: random.Random) -> dict:
    kind = rng.choices(["modular", "er", "rand_ids", "full", "empty"], [70, 10, 8, 6, 6])[0]
    G = rng.randint(1, 8)
    if kind == "modular" and rng.random() < 0.9:
        n_in = G * rng.randint(1, 300 // G)
        n_out = G * rng.randint(1, 300 // G)
        if rng.random() < 0.3:  # bias toward interesting sizes
            n_in = G * rng.choice([k for k in (1, 2, 3, 4, 5, 8, 16, 32) if k * G <= 300])
    else:
        n_in, n_out = rng.randint(1, 300), rng.randint(1, 300)
    if rng.random() < 0.15:
        n_out = n_in
    tile = 1
    if kind == "modular" and n_in % G == 0 and n_out % G == 0:
        opts = [1]
        for t in (4, 8, 16, 32):
            if (n_in // G) % t == 0 and (n_out // G) % t == 0:
                opts += [t, t]
        rect = [(r, c) for r in (2, 4, 8, 16) for c in (2, 4, 8, 16)
                if r != c and (n_out // G) % r == 0 and (n_in // G) % c == 0]
        if rect and rng.random() < 0.15:
            opts.append(rng.choice(rect))
        tile = rng.choice(opts)
    p_intra = rng.choice([1.0, 1.0, 1.0, 0.7, 0.0, rng.random()])
    p_inter = rng.choice([0.0, 1.0, 0.15, 0.05, rng.random(), rng.random()])
    return dict(kind=kind, n_in=n_in, n_out=n_out, G=G, tile=tile, p_intra=p_intra, p_inter=p_inter,
                schemes=(rng.choice(["random", "contiguous", "interleaved"]),
                         rng.choice(["random", "contiguous", "interleaved"])),
                with_ids=rng.random() < 0.75, bias=rng.random() < 0.75)


def build_mask(cfg: dict, g: torch.Generator):
    n_in, n_out = cfg["n_in"], cfg["n_out"]
    ids = {}
    if cfg["kind"] == "modular":
        og = group_ids(n_out, cfg["G"], cfg["schemes"][0], g)
        ig = group_ids(n_in, cfg["G"], cfg["schemes"][1], g)
        mask = modular_mask(og, ig, cfg["p_intra"], cfg["p_inter"], g, inter_tile=cfg["tile"])
        if cfg["with_ids"]:
            ids = dict(out_groups=og, in_groups=ig)
    elif cfg["kind"] == "er":
        mask = er_mask(n_out, n_in, cfg["p_inter"], g)
    elif cfg["kind"] == "rand_ids":
        mask = torch.rand(n_out, n_in, generator=g) < cfg["p_inter"]
        ids = dict(out_groups=torch.randint(0, cfg["G"], (n_out,), generator=g),
                   in_groups=torch.randint(0, cfg["G"], (n_in,), generator=g))
    elif cfg["kind"] == "full":
        mask = None
    else:
        mask = torch.zeros(n_out, n_in, dtype=torch.bool)
    return mask, ids


class Tracked:
    """A layer and the truth we know about it (W float32 dense with zeros off the mask, b)."""

    def __init__(self, layer, W, b):
        self.layer, self.W, self.b = layer, W, b

    def truth(self, x):
        W64 = self.W.double()
        y = x.double() @ W64.T
        if self.b is not None:
            y = y + self.b.double()
        return y


def make_layer(cfg: dict, g: torch.Generator) -> Tracked:
    mask, ids = build_mask(cfg, g)
    layer = SparseLinear(cfg["n_in"], cfg["n_out"], mask, bias=cfg["bias"], generator=g, **ids)
    m = layer.mask
    if mask is not None:
        assert torch.equal(m, mask), "layer.mask != the mask given"
    W = torch.randn(cfg["n_out"], cfg["n_in"], generator=g) / max(1, cfg["n_in"]) ** 0.5
    layer.load_dense_(W)
    b = None
    if cfg["bias"]:
        with torch.no_grad():
            layer.bias.uniform_(-1, 1, generator=g)
        b = layer.bias.detach().clone()
    return Tracked(layer, (W * m).clone(), b)


def make_x(rng: random.Random, g: torch.Generator, batch: int, n_in: int, layout: str, shape: str):
    if shape == "1d":
        x = torch.randn(n_in, generator=g)
        return x
    if shape == "3d":
        a = max(1, batch // 3)
        return torch.randn(a, 3, n_in, generator=g)
    if layout == "contig":
        return torch.randn(batch, n_in, generator=g)
    if layout == "colslice":
        off = rng.randint(1, 7)
        return torch.randn(batch, n_in + off + rng.randint(0, 9), generator=g)[:, off:off + n_in]
    if layout == "transposed":
        return torch.randn(n_in, batch, generator=g).T
    if layout == "rowstride":
        return torch.randn(2 * batch, n_in, generator=g)[::2]
    raise ValueError(layout)


def layer_grads(layer):
    gi = layer.intra.grad
    gv = layer.values.grad
    if gi is None and gv is None:
        return None
    gi = torch.zeros_like(layer.intra) if gi is None else gi
    gv = torch.zeros_like(layer.values) if gv is None else gv
    return layer.packed.dense(gi, gv).detach()


def check_layer_call(tr: Tracked, x: torch.Tensor, mode: str, g: torch.Generator, problems: list,
                     tag: str = "", expect_path=None):
    """One call in ``mode``; output (and gradients in training modes) against the truth."""
    layer = tr.layer
    n_out = layer.out_features
    truth_y = tr.truth(x)
    if mode.startswith("train"):
        frozen = []
        if mode == "train_frozen":
            frozen = [p for p in (layer.intra, layer.values, layer.bias) if p is not None and random.random() < 0.5]
            for p in frozen:
                p.requires_grad_(False)
        try:
            gy = torch.randn(truth_y.shape, generator=g)

            def run(ref: bool):
                xx = x.detach().clone().requires_grad_(mode != "train_xnograd")
                if mode != "train_xnograd" and not x.is_contiguous():  # keep the strides of x
                    xx = torch.empty_strided(x.shape, x.stride()).copy_(x).requires_grad_(True)
                layer.zero_grad(set_to_none=True)
                with reference_mode() if ref else torch.enable_grad():
                    path = layer.execution_path(xx)
                    y = layer(xx)
                if y.requires_grad:
                    y.backward(gy)
                return (path, y.detach().clone(), None if xx.grad is None else xx.grad.clone(),
                        layer_grads(layer), None if layer.bias is None or layer.bias.grad is None
                        else layer.bias.grad.clone(), layer.intra.grad, layer.values.grad)

            fast = run(False)
            ref = run(True)
            PATHS[fast[0]] = PATHS.get(fast[0], 0) + 1
            mask = layer.mask
            # truths
            gy64 = gy.double().reshape(-1, n_out)
            x64 = x.double().reshape(-1, layer.in_features)
            tx = (gy.double() @ tr.W.double()) if mode != "train_xnograd" else None
            tw = (gy64.T @ x64) * mask if (layer.intra.requires_grad or layer.values.requires_grad) else None
            tb = gy64.sum(0) if layer.bias is not None and layer.bias.requires_grad else None
            compare(f"{tag}y[{fast[0]}]", fast[1], truth_y, ref[1], problems)
            compare(f"{tag}x.grad", fast[2], tx, ref[2], problems)
            if tw is not None:
                gw = fast[3]
                if gw is None:
                    problems.append(f"{tag}weight grad missing")
                else:
                    # only the parts whose parameter requires grad
                    if not layer.intra.requires_grad or not layer.values.requires_grad:
                        ref_w = ref[3]
                        compare(f"{tag}w.grad(partial vs ref)", gw, ref_w.double() if ref_w is not None else None,
                                None, problems)
                    else:
                        compare(f"{tag}w.grad", gw, tw, ref[3], problems)
                        if bool(gw[~mask].abs().sum() != 0):
                            problems.append(f"{tag}weight grad nonzero off the mask")
                gi, gv = fast[5], fast[6]
                if gv is not None and gv.numel() > layer.packed.n_values and bool(gv[layer.packed.n_values:].ne(0).any()):
                    problems.append(f"{tag}values.grad reserved tail nonzero")
                bm = layer.layout.block_mask
                if gi is not None and bm is not None and bool(gi[~bm].ne(0).any()):
                    problems.append(f"{tag}intra.grad nonzero off the block mask")
            compare(f"{tag}b.grad", fast[4], tb, ref[4], problems)
            if expect_path and fast[0] != expect_path:
                problems.append(f"{tag}path {fast[0]} != expected {expect_path}")
        finally:
            for p in frozen:
                p.requires_grad_(True)
            layer.zero_grad(set_to_none=True)
        return
    ctx = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
           "eval_nograd": torch.no_grad, "grad_x_nograd": torch.enable_grad}[mode]
    if mode == "eval_nograd":
        layer.eval()
    try:
        with ctx():
            path = layer.execution_path(x)
            y = layer(x)
            with reference_mode():
                yr = layer(x)
    finally:
        layer.train()
    PATHS[path] = PATHS.get(path, 0) + 1
    compare(f"{tag}y[{path}]", y, truth_y, yr, problems)


PATHS: dict = {}
MODES = ["train", "train", "train_xnograd", "train_frozen", "no_grad", "inference_mode", "eval_nograd",
         "inference_mode"]


def draw_batch(rng):
    r = rng.random()
    if r < 0.45:
        return rng.randint(1, 16)
    if r < 0.9:
        return rng.randint(17, 40)
    return rng.randint(64, 300)


def mutate(rng, tr: Tracked, cfg, g, what: str) -> Tracked:
    """Change the layer (after a warm-up call built its caches); returns the (possibly new) Tracked."""
    layer = tr.layer
    if what == "set_mask":
        cfg2 = dict(cfg, p_inter=rng.choice([0.0, 1.0, rng.random()]), p_intra=rng.choice([1.0, 0.6]))
        if cfg["kind"] in ("modular",) and cfg["n_in"] % cfg["G"] == 0 and cfg["n_out"] % cfg["G"] == 0:
            og = layer.out_groups if layer.out_groups is not None else group_ids(cfg["n_out"], cfg["G"], "contiguous")
            ig = layer.in_groups if layer.in_groups is not None else group_ids(cfg["n_in"], cfg["G"], "contiguous")
            m2 = modular_mask(og, ig, cfg2["p_intra"], cfg2["p_inter"], g)
        else:
            m2 = torch.rand(cfg["n_out"], cfg["n_in"], generator=g) < rng.random()
        Wold = tr.W
        layer.set_mask_(m2)
        if not torch.equal(layer.mask, m2):
            raise Mismatch("set_mask_: layer.mask != new mask")
        kept = layer.weight.detach()
        if not torch.equal(kept, Wold * m2):
            e = float((kept - Wold * m2).abs().max())
            raise Mismatch(f"set_mask_: kept weights differ from old*new_mask, max abs err {e:.3g}")
        if rng.random() < 0.7:
            W2 = torch.randn(cfg["n_out"], cfg["n_in"], generator=g) * 0.1
            layer.load_dense_(W2)
            return Tracked(layer, W2 * m2, tr.b)
        return Tracked(layer, Wold * m2, tr.b)
    if what == "load_state_dict":
        cfg2 = draw_layer_cfg(rng)
        cfg2.update(n_in=cfg["n_in"], n_out=cfg["n_out"], bias=cfg["bias"])
        if cfg2["kind"] == "modular" and (cfg2["n_in"] % cfg2["G"] or cfg2["n_out"] % cfg2["G"]):
            cfg2["kind"] = "er"
        if cfg2["tile"] != 1 and cfg2["kind"] == "modular":
            t = cfg2["tile"]
            r, c = (t, t) if isinstance(t, int) else t
            if (cfg2["n_out"] // cfg2["G"]) % r or (cfg2["n_in"] // cfg2["G"]) % c:
                cfg2["tile"] = 1
        other = make_layer(cfg2, g)
        layer.load_state_dict(other.layer.state_dict())
        if not torch.equal(layer.mask, other.layer.mask):
            raise Mismatch("load_state_dict: mask differs")
        return Tracked(layer, other.W.clone(), other.b)
    if what == "deepcopy":
        twin = copy.deepcopy(layer)
        return Tracked(twin, tr.W, tr.b)
    if what == "double_float":
        layer.double()
        layer.float()
        return tr
    if what == "inplace":
        c1, c2, c3 = rng.choice([2.0, -0.5, 0.0]), rng.choice([3.0, -1.0, 0.0]), rng.choice([1.0, -2.0])
        with torch.no_grad():
            layer.intra.mul_(c1)
            layer.values.mul_(c2)
            if layer.bias is not None:
                layer.bias.mul_(c3)
        lay = layer.layout
        if lay.n_groups:
            blk = layer.out_groups[:, None] == layer.in_groups[None, :]
        else:
            blk = torch.zeros_like(tr.W, dtype=torch.bool)
        W = torch.where(blk, tr.W * c1, tr.W * c2)
        return Tracked(layer, W, None if tr.b is None else tr.b * c3)
    if what == "data_swap":
        layer.values.data = layer.values.data.clone() * -1.0
        layer.intra.data = layer.intra.data.clone() * -1.0
        return Tracked(layer, -tr.W, tr.b)
    if what == "load_dense":  # in place, no version bump
        W2 = torch.randn(cfg["n_out"], cfg["n_in"], generator=g)
        layer.load_dense_(W2)
        return Tracked(layer, W2 * layer.mask, tr.b)
    if what == "reserve":
        layer.packed.reserve_(layer.packed.values.numel() + rng.randint(1, 50))
        return tr
    if what == "none":
        return tr
    raise ValueError(what)


MUTATIONS = ["none", "none", "none", "set_mask", "load_state_dict", "deepcopy", "double_float", "inplace",
             "data_swap", "load_dense", "reserve"]


def layer_case(seed: int, verbose=False) -> list:
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = draw_layer_cfg(rng)
    threads = rng.choice([1, 2])
    fast = rng.choice([True, True, True, None])
    mut = rng.choice(MUTATIONS)
    calls = []
    for _ in range(rng.randint(1, 3)):
        calls.append(dict(mode=rng.choice(MODES), batch=draw_batch(rng),
                          layout=rng.choice(["contig", "contig", "colslice", "transposed", "rowstride"]),
                          shape=rng.choices(["2d", "3d", "1d"], [88, 8, 4])[0]))
    desc = dict(seed=seed, cfg=cfg, threads=threads, fast=fast, mutation=mut, calls=calls)
    start(desc, verbose)
    torch.set_num_threads(threads)
    problems = []
    try:
        tr = make_layer(cfg, g)
    except G2GError as e:
        return [("expected_error", str(e), desc)]
    tr.layer.fast = fast
    # warm-up: build caches (plans, layouts, workspaces) before a mutation
    x0 = make_x(rng, g, calls[0]["batch"], cfg["n_in"], "contig", "2d")
    check_layer_call(tr, x0, calls[0]["mode"], g, problems, "warm:")
    if mut != "none":
        tr = mutate(rng, tr, cfg, g, mut)
        tr.layer.fast = fast
    for i, c in enumerate(calls):
        x = make_x(rng, g, c["batch"], cfg["n_in"], c["layout"], c["shape"])
        check_layer_call(tr, x, c["mode"], g, problems, f"call{i}:")
    return [("mismatch", p, desc) for p in problems]


# ------------------------------------------------------------------------------------------------
def draw_model_cfg(rng):
    name = rng.choice(["g2g-mixer", "g2g-index", "g2g-random", "er"])
    G = rng.randint(1, 8)
    depth = rng.randint(1, 4)
    n_in = G * rng.randint(1, 200 // G)
    hidden = [G * rng.randint(1, 300 // G) for _ in range(depth)]
    if rng.random() < 0.3:
        hidden = [hidden[0]] * depth
    smallest = min([n_in, *hidden]) // G
    tiles = [1] + [t for t in (2, 4, 8, 16, 32) if t <= smallest]
    tile = rng.choice(tiles) if rng.random() < 0.5 else 1
    return dict(name=name, n_in=n_in, n_classes=rng.randint(2, 20), hidden=hidden, groups=G, inter_tile=tile,
                p_inter=rng.choice([0.0, 1.0, 0.15, rng.random()]), p_intra=rng.choice([1.0, 1.0, 0.7]),
                seed=rng.randint(0, 1000))


def build(mcfg):
    return build_model(mcfg["name"], mcfg["n_in"], mcfg["n_classes"], hidden=mcfg["hidden"], groups=mcfg["groups"],
                       inter_tile=mcfg["inter_tile"], p_inter=mcfg["p_inter"], p_intra=mcfg["p_intra"],
                       seed=mcfg["seed"])


def randomize_model(model, g):
    """Known weights on every sparse layer (load_dense_) and nonzero biases; returns the dense truths."""
    Ws = []
    for _, layer in sparse_layers(model):
        W = torch.randn(layer.out_features, layer.in_features, generator=g) * (2.0 / max(1, layer.in_features)) ** 0.5
        layer.load_dense_(W)
        with torch.no_grad():
            layer.bias.uniform_(-0.3, 0.3, generator=g)
        Ws.append((W * layer.mask).clone())
    return Ws


def model_truth(model, Ws, x, gy):
    """float64 dense model from the tracked weights: (y, x.grad, [W grads], [b grads], head grads)."""
    x64 = x.detach().double().reshape(x.shape[0], -1).requires_grad_(True)
    h = x64
    params = []
    KINK[0] = float("inf")
    for (_, layer), W in zip(sparse_layers(model), Ws):
        W64 = W.double().requires_grad_(True)
        b64 = layer.bias.detach().double().requires_grad_(True)
        params.append((W64, b64))
        z = F.linear(h, W64, b64)
        KINK[0] = min(KINK[0], float(z.detach().abs().min()) if z.numel() else KINK[0])
        h = torch.relu(z)
    hw = model.head.weight.detach().double().requires_grad_(True)
    hb = model.head.bias.detach().double().requires_grad_(True)
    y = F.linear(h, hw, hb)
    if gy is not None:
        y.backward(gy.double())
    return y, x64.grad, params, (hw, hb)


def one_by_one(model, x):
    return model.head(model.blocks(model.frontend(x).flatten(1)))


VERBOSE = [False]


def model_case(seed: int, verbose=False) -> list:
    VERBOSE[0] = verbose
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    mcfg = draw_model_cfg(rng)
    threads = rng.choice([1, 2])
    fast = rng.choice([True, True, True, None])
    mut = rng.choice(["none", "none", "set_mask", "deepcopy", "load_state_dict", "double_float", "inplace",
                      "hook", "dropout_eval", "frozen_layer", "reserve"])
    calls = [dict(mode=rng.choice(["train", "train", "train_xnograd", "no_grad", "inference_mode"]),
                  batch=draw_batch(rng), layout=rng.choice(["contig", "contig", "colslice", "transposed"]))
             for _ in range(rng.randint(1, 3))]
    desc = dict(seed=seed, model=mcfg, threads=threads, fast=fast, mutation=mut, calls=calls)
    start(desc, verbose)
    torch.set_num_threads(threads)
    try:
        model = build(mcfg)
    except G2GError as e:
        return [("expected_error", str(e), desc)]
    for _, layer in sparse_layers(model):
        layer.fast = fast
    Ws = randomize_model(model, g)
    problems = []

    def run_call(model, Ws, c, tag):
        nonlocal problems
        x = make_x(rng, g, c["batch"], mcfg["n_in"], c["layout"], "2d")
        mode = c["mode"]
        if mode.startswith("train"):
            gy = torch.randn(x.shape[0], mcfg["n_classes"], generator=g)
            ty, tx, tparams, thead = model_truth(model, Ws, x, gy)
            res = {}
            for which in ("fast", "obo", "ref"):
                xx = x.detach().clone().requires_grad_(mode == "train")
                model.zero_grad(set_to_none=True)
                with reference_mode() if which == "ref" else torch.enable_grad():
                    if which == "fast":
                        res["stacked"] = model.stacked(xx)
                    y = model(xx) if which != "obo" else one_by_one(model, xx)
                y.backward(gy)
                res[which] = (y.detach(), None if xx.grad is None else xx.grad.clone(),
                              [(layer_grads(l), None if l.bias.grad is None else l.bias.grad.clone())
                               for _, l in sparse_layers(model)],
                              (model.head.weight.grad.clone(), model.head.bias.grad.clone()))
            STACK[res["stacked"]] = STACK.get(res["stacked"], 0) + 1
            f, o, r = res["fast"], res["obo"], res["ref"]
            outer, problems_here = problems, []
            problems = problems_here
            compare(f"{tag}y", f[0], ty, r[0], problems)
            compare(f"{tag}y one-by-one", o[0], ty, r[0], problems)
            compare(f"{tag}x.grad", f[1], tx.reshape(x.shape) if mode == "train" else None,
                    r[1], problems)
            for i, ((gw, gb), (rw, rb), (W64, b64), (l_name, l)) in enumerate(zip(f[2], r[2], tparams, sparse_layers(model))):
                if l.intra.requires_grad or l.values.requires_grad:
                    compare(f"{tag}layer{i} w.grad", gw, W64.grad * l.mask, rw, problems)
                else:
                    if gw is not None:
                        problems.append(f"{tag}layer{i} frozen but has w.grad")
                if l.bias.requires_grad:
                    compare(f"{tag}layer{i} b.grad", gb, b64.grad, rb, problems)
            compare(f"{tag}head w.grad", f[3][0], thead[0].grad, r[3][0], problems)
            compare(f"{tag}head b.grad", f[3][1], thead[1].grad, r[3][1], problems)
            # the stack vs the modules one by one: documented bit-equal (bias grad to rounding)
            if res["stacked"]:
                if not torch.equal(f[0], o[0]):
                    problems.append(f"{tag}stack y != one-by-one y (max {float((f[0]-o[0]).abs().max()):.3g})")
            if problems_here and KINK[0] < 1e-6 and all("grad" in p for p in problems_here):
                STATS["relu_kink"] = STATS.get("relu_kink", 0) + 1  # a pre-activation within rounding of 0
                problems_here = [] if not VERBOSE[0] else [f"(relu kink {KINK[0]:.2g}) " + p for p in problems_here]
            outer.extend(problems_here)
            problems = outer
            model.zero_grad(set_to_none=True)
        else:
            ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
            ty = model_truth(model, Ws, x, None)[0]
            with ctx():
                st = model.stacked(x)
                y = model(x)
                yo = one_by_one(model, x)
                with reference_mode():
                    yr = model(x)
            STACK[st] = STACK.get(st, 0) + 1
            compare(f"{tag}y[stacked={st}]", y, ty, yr, problems)
            compare(f"{tag}y one-by-one", yo, ty, yr, problems)
            if st and not torch.equal(y, yo):
                problems.append(f"{tag}stack y != one-by-one y (max {float((y-yo).abs().max()):.3g})")

    run_call(model, Ws, calls[0], "warm:")
    layers = [l for _, l in sparse_layers(model)]
    if mut == "set_mask":
        i = rng.randrange(len(layers))
        l = layers[i]
        m2 = torch.rand(l.out_features, l.in_features, generator=g) < rng.random()
        if l.out_groups is not None and rng.random() < 0.7:
            m2 = modular_mask(l.out_groups, l.in_groups, 1.0, rng.random(), g)
        l.set_mask_(m2)
        W2 = torch.randn(l.out_features, l.in_features, generator=g) * 0.1
        l.load_dense_(W2)
        Ws[i] = W2 * m2
    elif mut == "deepcopy":
        model = copy.deepcopy(model)
    elif mut == "load_state_dict":
        other = build(dict(mcfg, seed=mcfg["seed"] + 1))
        Ws = randomize_model(other, g)
        with torch.no_grad():
            other.head.weight.normal_(generator=g)
        model.load_state_dict(other.state_dict())
    elif mut == "double_float":
        model.double()
        model.float()
    elif mut == "inplace":
        with torch.no_grad():
            for i, l in enumerate(layers):
                l.values.mul_(-1.0)
                l.intra.mul_(-1.0)
                Ws[i] = -Ws[i]
                l.bias.add_(0.1)
    elif mut == "hook":
        seen = []
        layers[0].register_forward_hook(lambda m, i, o: seen.append(1))
    elif mut == "dropout_eval":
        for b in model.blocks:
            b.drop = nn.Dropout(0.5)
        model.eval()
    elif mut == "frozen_layer":
        i = rng.randrange(len(layers))
        for p in layers[i].parameters():
            p.requires_grad_(False)
    elif mut == "reserve":
        i = rng.randrange(len(layers))
        layers[i].packed.reserve_(layers[i].values.numel() + 7)
    for i, c in enumerate(calls):
        run_call(model, Ws, c, f"call{i}:")
    return [("mismatch", p, desc) for p in problems]


STACK: dict = {}
KINK = [float("inf")]  # the smallest |pre-activation| of the last truth: float32 rounding can flip a ReLU


# ------------------------------------------------------------------------------------------------
def nan_case(seed: int, verbose=False) -> list:
    """Non-finite inputs: the rows that are non-finite must be the reference's, the others equal."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = draw_layer_cfg(rng)
    cfg["kind"] = "modular" if cfg["n_in"] % cfg["G"] == 0 and cfg["n_out"] % cfg["G"] == 0 else "er"
    if cfg["kind"] == "er":
        cfg["tile"] = 1
    batch = draw_batch(rng)
    mode = rng.choice(["train", "no_grad", "inference_mode"])
    threads = rng.choice([1, 2])
    desc = dict(seed=seed, cfg=cfg, batch=batch, mode=mode, threads=threads)
    start(desc)
    torch.set_num_threads(threads)
    try:
        tr = make_layer(cfg, g)
    except G2GError as e:
        return [("expected_error", str(e), desc)]
    layer = tr.layer
    layer.fast = True
    x = torch.randn(batch, cfg["n_in"], generator=g)
    for _ in range(rng.randint(1, 3)):
        x[rng.randrange(batch), rng.randrange(cfg["n_in"])] = rng.choice([float("nan"), float("inf"), -float("inf")])
    problems = []
    outs = []
    for ref in (False, True):
        xx = x.clone().requires_grad_(mode == "train")
        layer.zero_grad(set_to_none=True)
        ctx = {"train": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[mode]
        with ctx():
            with reference_mode() if ref else torch.enable_grad() if mode == "train" else ctx():
                y = layer(xx)
        gx = None
        if mode == "train":
            y.backward(torch.ones_like(y))
            gx = xx.grad
        outs.append((y.detach(), gx))
    (y, gx), (yr, gxr) = outs
    got_rows = (~torch.isfinite(y)).any(1)
    # sparse semantics: a non-finite input reaches only connected outputs; the reference's
    # 0*inf makes the whole row NaN. Rows with only finite inputs must agree exactly.
    xbad = (~torch.isfinite(x)).any(1)
    if not torch.equal(got_rows & ~xbad, torch.zeros_like(got_rows)):
        problems.append(f"non-finite leaked into rows with finite inputs: {got_rows.nonzero().flatten().tolist()}"
                        f" vs input rows {xbad.nonzero().flatten().tolist()}")
    fine = ~xbad
    compare("y finite rows", y[fine], tr.truth(x[fine]), yr[fine], problems)
    if gx is not None:
        # x.grad = ones @ W: finite regardless of x unless a weight is non-finite
        compare("x.grad", gx, torch.ones(batch, cfg["n_out"]).double() @ tr.W.double(), gxr, problems)
    return [("mismatch", p, desc) for p in problems]


# ------------------------------------------------------------------------------------------------
def seq_case(seed: int, verbose=False) -> list:
    """Many calls on one layer with varying batch, mode, threads (stale workspaces, plans)."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = draw_layer_cfg(rng)
    desc = dict(seed=seed, cfg=cfg)
    start(desc)
    try:
        tr = make_layer(cfg, g)
    except G2GError as e:
        return [("expected_error", str(e), desc)]
    tr.layer.fast = True
    tr2 = None
    problems = []
    for i in range(8):
        torch.set_num_threads(rng.choice([1, 2]))
        mode = rng.choice(MODES)
        b = draw_batch(rng)
        lay = rng.choice(["contig", "colslice", "transposed"])
        x = make_x(rng, g, b, cfg["n_in"], lay, "2d")
        use = tr
        if tr2 is not None and rng.random() < 0.5:
            use = tr2
        check_layer_call(use, x, mode, g, problems, f"step{i}({mode},b={b},{lay}):")
        if i == 3:
            tr2 = Tracked(copy.deepcopy(tr.layer), tr.W, tr.b)
            tr = mutate(rng, tr, cfg, g, rng.choice(["load_dense", "inplace", "set_mask"]))
    return [("mismatch", p, desc) for p in problems]


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    _alarm.frame = frame
    raise CaseTimeout()


KINDS = {"layer": layer_case, "model": model_case, "nan": nan_case, "seq": seq_case}


def main():
    ap = argparse.ArgumentParser(description="Differential fuzzing of SparseLinear's paths and the MLP stacks")
    ap.add_argument("--kind", default="layer", choices=list(KINDS),
                    help="layer: one layer, a change, 1-3 calls; model: whole MLPs; seq: 8 calls on one "
                         "layer with a change and a copy; nan: non-finite inputs")
    ap.add_argument("--n", type=int, default=200, help="cases to run (seeds SEED .. SEED + N - 1)")
    ap.add_argument("--seed", type=int, default=0, help="the first case's seed")
    ap.add_argument("--time", type=float, default=240.0, help="stop starting cases after this many seconds")
    ap.add_argument("--case", type=int, default=None, help="run this one case, verbosely")
    a = ap.parse_args()
    fn = KINDS[a.kind]
    seeds = [a.case] if a.case is not None else range(a.seed, a.seed + a.n)
    t0 = time.time()
    ran = errs = crashes = mism = 0
    reports = []
    for s in seeds:
        if time.time() - t0 > a.time:
            break
        ran += 1
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(10)
        try:
            out = fn(s, verbose=a.case is not None)
        except CaseTimeout:
            out = [("hang", "case took > 10 s: " + "".join(traceback.format_stack(_alarm.frame, 4)), json.load(open(LOG)))]
        except Mismatch as e:
            out = [("mismatch", str(e), json.load(open(LOG)))]
        except G2GError as e:
            out = [("g2gerror_late", str(e), json.load(open(LOG)))]
        except Exception as e:  # noqa: BLE001
            out = [("crash", "".join(traceback.format_exception(e))[-1500:], json.load(open(LOG)))]
        finally:
            signal.alarm(0)
        for kind, msg, desc in out:
            if kind == "expected_error":
                errs += 1
                if a.case is not None:
                    print("expected G2GError:", msg)
                continue
            if kind in ("crash", "hang"):
                crashes += 1
            else:
                mism += 1
            reports.append((kind, msg, desc))
            print(f"[{kind}] seed={desc['seed']}: {msg}\n   {json.dumps(desc, default=str)}", flush=True)
    print(f"kind={a.kind} ran={ran} expected_G2GError={errs} mismatches={mism} crashes_or_hangs={crashes} "
          f"noise_skips={STATS} paths={PATHS} stacked={STACK} time={time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
