import torch, torch.nn as nn, g2gnet
torch.manual_seed(0)
dense = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
torch.manual_seed(1)
sp = g2gnet.sparsify(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)))
b_before = sp[0].bias.detach().clone()
r = sp.load_state_dict(dense.state_dict(), strict=False)
print(r)
print("layer-0 bias loaded:", torch.equal(sp[0].bias, dense[0].bias), "unchanged:", torch.equal(sp[0].bias, b_before))
print("layer-2 (dense head) loaded:", torch.equal(sp[2].weight, dense[2].weight))
try:
    sp.load_state_dict(dense.state_dict())
except RuntimeError as e:
    print("strict:", str(e).replace("\n", " | "))
# state dict missing only the bias of a sparse layer
sd = sp.state_dict(); del sd["0.bias"]
print(sp.load_state_dict(sd, strict=False))
# state dict with an extra unknown key inside the sparse layer
sd = sp.state_dict(); sd["0.junk"] = torch.zeros(1)
print(sp.load_state_dict(sd, strict=False))
# weight_values of wrong length, strict=False
sd = sp.state_dict(); sd["0.packed.weight_values"] = sd["0.packed.weight_values"][:-1]
try:
    print(sp.load_state_dict(sd, strict=False))
except Exception as e:
    print(type(e).__name__, e)
