import torch, json, g2gnet
from g2gnet.layers import sparse_layers
m = g2gnet.load_model("dst1")
ck = torch.load("dst1/checkpoint.pt", weights_only=True)["model"]
cfg = json.load(open("dst1/config.json"))["model"]
init = g2gnet.build_model(cfg["name"], 784, 10, hidden=cfg["hidden"], seed=0)
for (n, l), (_, l0) in zip(sparse_layers(m), sparse_layers(init)):
    print(n, "mask_bits == checkpoint:", torch.equal(l.packed.mask_bits, ck[n + ".packed.mask_bits"]),
          "positions differing from the seed-0 initial mask:", int((l.mask != l0.mask).sum()))
print("training:", m.training)
t = g2gnet.load_model("tile1")
d = [x for x in t.modules() if isinstance(x, torch.nn.Dropout)]
print("tile1 dropouts:", len(d), "any training:", any(x.training for x in d), "p", d[0].p if d else None)
x = torch.randn(4, 784)
print("tile1 deterministic forward:", torch.equal(t(x), t(x)))
