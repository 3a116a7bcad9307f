import torch, torch.nn as nn, g2gnet
torch.manual_seed(0)
for act in [nn.ReLU(inplace=True), nn.LeakyReLU(0.1, inplace=True), nn.ELU(inplace=True), nn.LeakyReLU(0.1), nn.SiLU(inplace=True), nn.Hardtanh(inplace=True)]:
    m = nn.Sequential(nn.Linear(64, 64), act, nn.Linear(64, 10))
    g2gnet.sparsify(m)
    opt = torch.optim.Adam(m.parameters())
    dst = g2gnet.dst.DynamicSparsity(m, opt, prune="magnitude", grow="hebbian", interval=10, fraction=0.1, window="all")
    x = torch.randn(32, 64)
    m.train()
    dst.recorder.recording = True
    y_rec = m(x).detach()
    dst.recorder.recording = False
    y_plain = m(x).detach()
    with torch.no_grad(): y_eval = m.eval()(x)
    print(f"{act!r:40s} max |y(recording) - y(not recording)| = {float((y_rec - y_plain).abs().max()):.4f}")
