import torch, torch.nn as nn, g2gnet
torch.manual_seed(0); dense = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
torch.manual_seed(1); sp = g2gnet.sparsify(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)))
print(sp.load_state_dict(dense.state_dict(), strict=False))
m = sp[0].mask
print("layer-0 weight == dense weight on the mask:", torch.equal(sp[0].weight[m], dense[0].weight[m]), "zero off the mask:", bool((sp[0].weight[~m] == 0).all()), "mask unchanged density", round(sp[0].density, 4))
