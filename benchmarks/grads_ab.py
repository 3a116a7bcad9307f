"""Element-wise layouts: the backward's two inter-part products in one pass over the transposed
pattern (``ops._grads_into``, ``g2g_csr_grads``: each output-gradient row read once for both) against
the two apart (the transposed CSR product, then the SDDMM over the untransposed pattern: the code
before), in one process, on this build's kernels.

Per width: the two products alone at batch 256 (with the transposition each needs), then a layer's
forward + backward, then (``--model``) a training step (forward, backward, Adam) of the whole
``g2g-mixer`` 784-W x 3-10 on the native stack. Medians [min-max] of per-repeat ratios
(``g2gnet.timing``; "apart / one pass" > 1: one pass is faster).

    python benchmarks/grads_ab.py [--widths 1024,2048,4096] [--repeats 21] [--model]
"""

import argparse

import torch

from g2gnet import malloc
from g2gnet.kernels import ops
from grads_ways import compare_ways

parser = argparse.ArgumentParser()
parser.add_argument("--widths", default="1024,2048,4096", help="layer widths, comma-separated")
parser.add_argument("--batch", type=int, default=256, help="batch size")
parser.add_argument("--repeats", type=int, default=21, help="interleaved repeats")
parser.add_argument("--model", action="store_true", help="also time the whole model's training step")
args = parser.parse_args()
malloc.keep_defaults()
torch.set_num_threads(2)
one_pass = ops._grads_into


def apart(lay, intra, values, gys, xs, dst, gxs, gi, gv, nt, scratch="blocks"):
    """The code before: the weight gradients (SDDMM), then the transposed product, each as
    ``_grads_into`` runs it when asked for it alone."""
    one_pass(lay, intra, values, gys, xs, dst, None, gi, gv, nt, scratch)
    one_pass(lay, intra, values, gys, xs, dst, gxs, None, None, nt, scratch)


WAYS = {"apart": apart, "one pass": one_pass}


for width in (int(w) for w in args.widths.split(",")):
    compare_ways(WAYS, width, args.batch, args.repeats, args.model, "the two products")
