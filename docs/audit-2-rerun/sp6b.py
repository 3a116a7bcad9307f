import torch, torch.nn as nn, g2gnet
torch.manual_seed(0)
m = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
g2gnet.sparsify(m)
opt = torch.optim.Adam(m.parameters())
x, t = torch.randn(32, 256), torch.randint(0, 10, (32,))
for step in range(5):                      # a few static steps first
    loss = nn.functional.cross_entropy(m(x), t); opt.zero_grad(); loss.backward(); opt.step()
dst = g2gnet.dst.DynamicSparsity(m, opt, prune="magnitude", grow="random", interval=2, fraction=0.1)
for step in range(5):                      # then DST
    loss = nn.functional.cross_entropy(m(x), t); opt.zero_grad(); loss.backward(); opt.step(); s = dst.step(); s and print("step", step, {k: v["changed"] for k, v in s["layers"].items()}, "loss", round(float(loss), 4))
print("ok")
