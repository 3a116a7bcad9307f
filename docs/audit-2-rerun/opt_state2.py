import torch, torch.nn as nn, g2gnet
from g2gnet.layers import SparseLinear
torch.set_num_threads(1)
for name, mk, keys in [("SGD momentum", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), ["momentum_buffer"]),
                       ("AdamW", lambda p: torch.optim.AdamW(p, lr=1e-3), ["exp_avg", "exp_avg_sq"]),
                       ("Adam amsgrad", lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
                       ("RMSprop", lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5), ["square_avg", "momentum_buffer"])]:
    torch.manual_seed(0)
    m = g2gnet.build_model("g2g-mixer", 256, 10, hidden=[256, 256], seed=0)
    opt = mk(m.parameters())
    dst = g2gnet.dst.DynamicSparsity(m, opt, prune="magnitude", grow="gradient", interval=3, fraction=0.2)
    x, t = torch.randn(64, 256), torch.randint(0, 10, (64,))
    ok = True
    for step in range(6):
        layer = m.blocks[1].linear
        loss = nn.functional.cross_entropy(m(x), t); opt.zero_grad(); loss.backward(); opt.step()
        old_mask = layer.mask.clone()
        before = {k: layer.packed.dense(opt.state[layer.intra][k], opt.state[layer.values][k]).clone() for k in keys}
        w_before = layer.weight.detach().clone()
        st = dst.step()
        if st is None: continue
        new_mask = layer.mask
        kept, grown = old_mask & new_mask, new_mask & ~old_mask
        for k in keys:
            after = layer.packed.dense(opt.state[layer.intra][k], opt.state[layer.values][k])
            ok &= torch.equal(after[kept], before[k][kept]) and bool((after[grown] == 0).all()) and bool((after[~new_mask] == 0).all())
        ok &= torch.equal(layer.weight.detach()[kept], w_before[kept]) and bool((layer.weight.detach()[grown] == 0).all())
        print(name, "step", step + 1, "changed", st["layers"]["blocks.1.linear"]["changed"], "state moved correctly:", ok)
