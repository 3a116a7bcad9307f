"""The state-dict formats a ``SparseLinear`` reads besides its own, and masks read from any of them.

A SparseLinear saves ``packed.mask_bits``, ``packed.weight_values``, ``packed.out_groups``,
``packed.in_groups``, ``packed.blocks`` and ``bias`` (``g2gnet.packed``). Before loading,
``upgrade`` rewrites three other formats found at the layer's prefix into that one:

- the flat keys of the first packed version (``mask_bits``, ``weight_values``, group ids; no
  ``blocks``: the packed weight then decides it, as that version did);
- g2gnet 0.1: a dense ``weight`` with a bool ``mask``;
- a dense ``nn.Linear`` (``weight`` alone): its weights are taken on the layer's current mask, as
  ``sparsify`` does, and the layer keeps its mask and layout.

Every tensor is checked before use; a wrong one is a ``G2GError`` naming its key.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .kernels.layout import pack_bits, unpack_bits
from .packed import expect

_FLAT = ("mask_bits", "weight_values", "out_groups", "in_groups")


def upgrade(layer, state: dict, prefix: str) -> None:
    """Rewrite the other formats at ``prefix`` for ``layer`` (a SparseLinear), in place: its
    ``_load_from_state_dict`` calls this on the copy that ``load_state_dict`` makes."""
    packed = prefix + "packed."
    if any(k.startswith(packed) for k in state):
        return
    shape = (layer.out_features, layer.in_features)
    if prefix + "weight" in state:
        weight = expect(state[prefix + "weight"], prefix + "weight", None, shape)
        if prefix + "mask" in state:  # g2gnet 0.1
            mask = expect(state[prefix + "mask"], prefix + "mask", torch.bool, shape)
            del state[prefix + "mask"]
        else:  # a dense nn.Linear: its weights on this layer's mask and layout
            mask = layer.mask
            state[packed + "blocks"] = torch.tensor(layer.packed.blocks)
            if layer.out_groups is not None:
                state[packed + "out_groups"], state[packed + "in_groups"] = layer.out_groups, layer.in_groups
        del state[prefix + "weight"]
        state[packed + "mask_bits"] = pack_bits(mask.cpu())
        state[packed + "weight_values"] = weight.detach().reshape(-1)[mask.reshape(-1).to(weight.device)]
    for key in _FLAT:  # the first packed version's flat keys (and 0.1's group ids)
        if prefix + key in state:
            state[packed + key] = state.pop(prefix + key)


def masks_from_state(state: dict) -> dict[str, Tensor]:
    """The masks of the SparseLinear layers in a model ``state_dict`` (any format ``upgrade``
    reads), by layer name, rows and columns sorted by ensemble where group ids are stored (so
    the blocks are visible). A bit mask of a checkpoint without its input width (``in_features``,
    saved since 2026-12-08) or group ids is shown with the width rounded up to a multiple of 8
    (the padding bits are 0)."""
    out = {}
    for key, value in state.items():
        if key.endswith("mask_bits") and isinstance(value, Tensor) and value.dtype == torch.uint8:
            prefix = key[: -len("mask_bits")]
            ig, width = state.get(prefix + "in_groups"), state.get(prefix + "in_features")
            width = (int(width) if isinstance(width, Tensor) and width.numel() == 1
                     else ig.numel() if isinstance(ig, Tensor) else value.shape[1] * 8)
            mask = unpack_bits(value, width)
        elif key.endswith(".mask") and isinstance(value, Tensor) and value.dtype == torch.bool:
            prefix, mask = key[: -len("mask")], value
        else:
            continue
        og, ig = state.get(prefix + "out_groups"), state.get(prefix + "in_groups")
        if isinstance(og, Tensor) and isinstance(ig, Tensor):
            mask = mask[torch.argsort(og, stable=True)][:, torch.argsort(ig, stable=True)]
        name = prefix[:-1]
        out[name[: -len(".packed")] if name.endswith(".packed") else name] = mask
    return out
