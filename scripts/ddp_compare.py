"""A 1-process and a 2-process (torchrun) run of the same configuration side by side: test
accuracy, and per sparse layer the overlap of the final masks and the largest weight difference
(their checkpoints must be present). Writes the comparison as JSON beside the runs.

    python scripts/ddp_compare.py results/ddp/one results/ddp/two results/ddp/comparison.json
"""

import json
import sys
from pathlib import Path

import torch

from g2gnet.state_compat import masks_from_state
from g2gnet.runs import load_checkpoint, read_json

one, two, out = (Path(a) for a in sys.argv[1:4])
a, b = (load_checkpoint(p / "checkpoint.pt")["model"] for p in (one, two))
ma, mb = masks_from_state(a), masks_from_state(b)
layers = {}
for name in ma:
    same = int(torch.count_nonzero(ma[name] & mb[name]))
    layers[name] = {"active": int(torch.count_nonzero(ma[name])), "active_in_both": same,
                    "overlap": same / max(int(torch.count_nonzero(ma[name])), 1)}
result = {
    "runs": {str(p): {"processes": read_json(p / "env.json").get("processes", 1),
                      "test_acc": read_json(p / "summary.json")["test_acc"]} for p in (one, two)},
    "layers": layers,
}
out.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
