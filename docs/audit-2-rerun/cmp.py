"""cmp.py A B [keys]: compare metrics.jsonl of two runs epoch by epoch (exact)."""
import json, sys
def load(d):
    return [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
a, b = load(sys.argv[1]), load(sys.argv[2])
keys = ["train_loss", "train_acc", "test_loss", "test_acc"] + (["val_acc"] if "val_acc" in a[0] else [])
print("epochs", [r["epoch"] for r in a], "vs", [r["epoch"] for r in b])
same = True
for ra, rb in zip(a, b):
    d = {k: (ra.get(k), rb.get(k)) for k in keys if ra.get(k) != rb.get(k)}
    if d: same = False; print(" epoch", ra["epoch"], "differs:", d)
print("bit-identical" if same and len(a) == len(b) else "DIFFERENT", "final test_acc", a[-1]["test_acc"], b[-1]["test_acc"], "test_loss", a[-1]["test_loss"], b[-1]["test_loss"])
