"""cmpfull.py A B: metrics (all but timings) incl. DST records, and every tensor of the final checkpoint."""
import json, sys, torch
def rows(d): return [{k: v for k, v in json.loads(l).items() if "time" not in k} for l in open(f"{d}/metrics.jsonl")]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
print("epochs", [r["epoch"] for r in a], "vs", [r["epoch"] for r in b], "| metrics incl. DST records equal:", a == b,
      "| DST updates", sum(len(r.get("dst", [])) for r in a), sum(len(r.get("dst", [])) for r in b))
for ra, rb in zip(a, b):
    if ra != rb: print("  epoch", ra["epoch"], "differs in", [k for k in ra if ra[k] != rb.get(k)], {k: (ra[k], rb.get(k)) for k in ("train_loss", "test_loss") if ra[k] != rb.get(k)})
ca, cb = (torch.load(f"{d}/checkpoint.pt", weights_only=True) for d in sys.argv[1:3])
def flat(x, p=""):
    if isinstance(x, torch.Tensor): yield p, x
    elif isinstance(x, dict):
        for k, v in x.items(): yield from flat(v, f"{p}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x): yield from flat(v, f"{p}[{i}]")
fa, fb = dict(flat({k: ca[k] for k in ca if k != "wall_time"})), dict(flat({k: cb[k] for k in cb if k != "wall_time"}))
diff = [k for k in fa if k not in fb or fa[k].shape != fb[k].shape or not torch.equal(fa[k], fb[k])]
print("checkpoint tensors:", len(fa), "vs", len(fb), "| differing:", diff[:8] if diff else "none")
s = [json.load(open(f"{d}/summary.json")) for d in sys.argv[1:3]]
print("summary test_acc", s[0]["test_acc"], s[1]["test_acc"])
