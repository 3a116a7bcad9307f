import torch, torch.nn as nn, torch.nn.functional as F, warnings, io, g2gnet
from g2gnet.dst import DynamicSparsity
torch.set_num_threads(1); torch.manual_seed(0)
warnings.simplefilter("always")
def T(name, f):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try: r = f(); print(f"[{name}] OK: {r}")
        except Exception as e: print(f"[{name}] {type(e).__name__}: {str(e)[:300]}")
    for x in w: print(f"    warning: {str(x.message)[:300]}")

class MLP(nn.Module):  # user-study byo_mlp: activations applied in forward()
    def __init__(self, d=512):
        super().__init__(); self.fc1, self.fc2, self.fc3, self.out = nn.Linear(784, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 10)
    def forward(self, x):
        x = x.flatten(1); x = F.gelu(self.fc1(x)); x = F.gelu(self.fc2(x)); x = F.gelu(self.fc3(x)); return self.out(x)

# S2a Hebbian fallback on a functional activation
def heb_default():
    m = g2gnet.sparsify(MLP(), grouping="mixer", seed=0); opt = torch.optim.AdamW(m.parameters())
    DynamicSparsity(m, opt, prune="magnitude", grow="hebbian", interval=200)
    return f"fc1.post_activation={m.fc1.post_activation}"
T("functional GELU, no post_activation", heb_default)
def heb_given():
    m = g2gnet.sparsify(MLP(), grouping="mixer", seed=0, post_activation=F.gelu); opt = torch.optim.AdamW(m.parameters())
    DynamicSparsity(m, opt, prune="magnitude", grow="hebbian", interval=200)
    return f"fc1.post_activation={getattr(m.fc1.post_activation, '__name__', m.fc1.post_activation)}"
T("sparsify(..., post_activation=F.gelu)", heb_given)
# S2b parameter counts with DST attached
def counts():
    m = g2gnet.build_model("g2g-mixer", 784, 10, hidden=[64, 64, 64], seed=0); opt = torch.optim.Adam(m.parameters())
    n0 = sum(p.numel() for p in m.parameters()); a0 = g2gnet.stats.active_parameters(m)
    d = DynamicSparsity(m, opt, prune="magnitude", grow="hebbian", interval=10)
    n1 = sum(p.numel() for p in m.parameters()); a1 = g2gnet.stats.active_parameters(m)
    return f"sum(numel) {n0:,} -> {n1:,} with DST; active_parameters {a0:,} -> {a1:,}; total_parameters {g2gnet.stats.total_parameters(m):,}"
T("sum(p.numel()) before/after DynamicSparsity (64x3 g2g-mixer)", counts)
def counts_byo():
    m = g2gnet.sparsify(MLP(), grouping="mixer", seed=0, post_activation=F.gelu); opt = torch.optim.AdamW(m.parameters())
    n0 = sum(p.numel() for p in m.parameters()); DynamicSparsity(m, opt, prune="magnitude", grow="hebbian", interval=200)
    return f"byo MLP sum(numel) {n0:,} -> {sum(p.numel() for p in m.parameters()):,}"
T("byo MLP numel with DST", counts_byo)
# S2c weight decay grouping
def wd():
    m = g2gnet.sparsify(MLP(), grouping="mixer", seed=0, post_activation=F.gelu)
    shapes = {n: tuple(p.shape) for n, p in m.named_parameters() if n.startswith("fc1")}
    helpers = [n for n in dir(g2gnet) + dir(g2gnet.optim) + dir(g2gnet.convert) if "group" in n.lower() or "decay" in n.lower()]
    return f"fc1 params {shapes}; ndim<=1 rule would exempt {[n for n, p in m.named_parameters() if p.ndim <= 1 and n.startswith('fc1')]}; helpers named *group*/*decay* in g2gnet, g2gnet.optim, g2gnet.convert: {helpers}"
T("weight-decay grouping", wd)
# S2d nothing replaced on 784-300-100-10
T("sparsify(784-300-100-10)", lambda: [type(x).__name__ for x in g2gnet.sparsify(nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)))])
# S2e way back to dense
def back():
    from g2gnet.convert import densify
    m = g2gnet.sparsify(MLP(), grouping="mixer", seed=0, post_activation=F.gelu); x = torch.randn(4, 784); y = m(x)
    densify(m); return f"types {[type(x).__name__ for x in m.children()]}, max|diff| {float((m(x) - y).abs().max()):.1e}, g2gnet.densify exists: {hasattr(g2gnet, 'densify')}"
T("densify", back)
# S3 find_groups on an untouched g2g-mixer middle layer, and after DST
def fg():
    from g2gnet.ensembles import find_groups, ensemble_fill
    m = g2gnet.build_model("g2g-mixer", 784, 10, hidden=[1024] * 3, seed=0); l = m.blocks[1].linear
    g = find_groups(l.mask)
    res = f"find_groups: {None if g is None else (type(g).__name__, int(g.out_groups.max()) + 1 if hasattr(g, 'out_groups') else g)}"
    fresh = g2gnet.SparseLinear(1024, 1024, l.mask.clone())
    res += f"; SparseLinear(1024,1024,mask) intra {tuple(fresh.intra.shape)}"
    if g is not None:
        ok = torch.equal(ensemble_fill(l.mask, g.out_groups, g.in_groups).diagonal(), torch.ones(8)) if hasattr(g, "out_groups") else "?"
        res += f"; diagonal fill 1.0: {ok}"
    return res
T("find_groups, untouched g2g-mixer 1024 middle layer", fg)
def fg_dst():
    from g2gnet.ensembles import find_groups, ensemble_fill
    m = g2gnet.build_model("g2g-mixer", 784, 10, hidden=[1024] * 3, seed=0); opt = torch.optim.Adam(m.parameters())
    d = DynamicSparsity(m, opt, prune="magnitude", grow="random", interval=1, fraction=0.1)
    x, t = torch.randn(64, 784), torch.randint(0, 10, (64,))
    for _ in range(4):
        loss = F.cross_entropy(m(x), t); opt.zero_grad(); loss.backward(); opt.step(); d.step()
    out = []
    for i in range(3):
        l = m.blocks[i].linear; g = find_groups(l.mask)
        fill = ensemble_fill(l.mask, l.packed.out_groups, l.packed.in_groups)
        out.append(f"layer {i}: find_groups {'None' if g is None else 'found'}, fill diag mean {float(fill.diagonal().mean()):.2f} off-diag mean {float((fill.sum() - fill.diagonal().sum()) / (fill.numel() - fill.shape[0])):.2f}")
    return "; ".join(out)
T("after 4 DST updates: find_groups / ensemble_fill", fg_dst)
T("g2gnet.topology.find_groups still importable (README)", lambda: hasattr(g2gnet.topology, "find_groups"))
# S6 fails
model = g2gnet.build_model("g2g-mixer", 784, 10, hidden=[1024] * 3, groups=8, p_inter=0.15, seed=0); x = torch.randn(256, 784)
T("torch.jit.trace", lambda: f"max|diff| {float((torch.jit.trace(model, x)(x) - model(x)).abs().max()):.1e}")
def inf_first(batch):
    m = g2gnet.build_model("g2g-mixer", 784, 10, hidden=[256] * 3, seed=0); opt = torch.optim.Adam(m.parameters())
    with torch.inference_mode(): m(torch.randn(batch, 784))
    loss = m(torch.randn(batch, 784)).sum(); opt.zero_grad(); loss.backward(); opt.step()
    buf = io.BytesIO(); torch.save(m.state_dict(), buf); return "train step and state_dict after a first forward under inference_mode: ok"
T("inference_mode first, batch 256", lambda: inf_first(256)); T("inference_mode first, batch 1", lambda: inf_first(1))
T("onnx", lambda: __import__("onnx") and "onnx installed")
