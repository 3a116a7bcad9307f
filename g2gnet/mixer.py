"""A small MLP-Mixer (Tolstikhin et al. 2021) for 32x32 images, with dense or G2G MLP blocks:
G2GNet's ensemble-to-ensemble connectivity inside a modern architecture (beyond the paper).

4x4 patches -> 64 tokens of width 128 -> 4 mixer blocks (token MLP 64-64-64, channel MLP
128-512-128, GELU, pre-LayerNorm, residuals) -> mean over tokens -> LayerNorm -> classifier.
``mlp-mixer-g2g`` runs ``sparsify`` over the blocks' MLPs (the patch embedding and classifier stay
dense) with the model options' ``groups``, ``p_intra``, ``p_inter`` and the mixer grouping, so
each MLP's two layers are contiguous / interleaved ensembles; DST then rewires them like any
SparseLinear (``--dst``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import ModelConfig
from .errors import G2GError
from .convert import sparsify
from .layers import sparse_layers

PATCH, DIM, DEPTH, TOKEN_HIDDEN, CHANNEL_HIDDEN = 4, 128, 4, 64, 512


def _mlp(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = _mlp(tokens, TOKEN_HIDDEN)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = _mlp(dim, CHANNEL_HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, tokens, dim]
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MLPMixer(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = input_shape
        tokens = block_widths(input_shape)[0]
        self.embed = nn.Conv2d(c, DIM, PATCH, stride=PATCH)
        self.blocks = nn.Sequential(*(MixerBlock(tokens, DIM) for _ in range(DEPTH)))
        self.norm = nn.LayerNorm(DIM)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flat pixels, as the data loader may hand them
            raise G2GError("mlp-mixer needs images [B, C, H, W], not flat vectors")
        x = self.embed(x).flatten(2).transpose(1, 2)  # [B, tokens, DIM]
        x = self.blocks(x)
        return self.head(self.drop(self.norm(x).mean(1)))


# ModelConfig fields that a mixer does not read (its widths, tiles and patch embedding are fixed
# above): a value other than the default would be recorded in config.json for a model that ignores
# it, and a grid over it would give rows that differ only in name.
_FIXED = {"hidden": f"its widths are fixed: {DEPTH} blocks of token MLP tokens-{TOKEN_HIDDEN}-tokens and "
                    f"channel MLP {DIM}-{CHANNEL_HIDDEN}-{DIM}",
          "inter_tile": "the mixers sample G2G links element-wise",
          "frontend": "it has its own patch embedding"}


def block_widths(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The widths of the block MLPs' layers for images of ``input_shape`` (C, H, W)."""
    if len(input_shape) != 3 or input_shape[1] % PATCH or input_shape[2] % PATCH:
        raise G2GError(f"mlp-mixer needs images whose sides {PATCH} divides, got shape {tuple(input_shape)}")
    tokens = (input_shape[1] // PATCH) * (input_shape[2] // PATCH)
    return tokens, TOKEN_HIDDEN, DIM, CHANNEL_HIDDEN


def check_mixer_options(opts: ModelConfig, input_shape: tuple[int, ...]) -> None:
    """A mixer's options: the fixed ones at their defaults; for mlp-mixer-g2g, groups that divide
    every block width (else some block MLPs would stay dense under the G2G name)."""
    defaults = ModelConfig()
    for key, why in _FIXED.items():
        if getattr(opts, key) != getattr(defaults, key):
            default = getattr(defaults, key)
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            raise G2GError(f"{opts.name} does not use --{key.replace('_', '-')} ({why}); leave it at its "
                           f"default {shown}")
    widths = block_widths(input_shape)
    if opts.name == "mlp-mixer-g2g":
        bad = sorted({w for w in widths if w % opts.groups})
        if bad:
            raise G2GError(f"mlp-mixer-g2g: groups={opts.groups} does not divide its block width(s) "
                           f"{', '.join(map(str, bad))} (every block MLP is sparse; widths "
                           f"{', '.join(map(str, widths))})")


def _seed(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=gen))


def build_mixer(opts: ModelConfig, input_shape: tuple[int, int, int], num_classes: int,
                gen: torch.Generator) -> MLPMixer:
    """The dense MLP-Mixer."""
    check_mixer_options(opts, input_shape)
    # nn.Module default inits draw from the global RNG: run them under a seed drawn from gen.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(gen))
        return MLPMixer(input_shape, num_classes, opts.dropout)


def build_mixer_g2g(opts: ModelConfig, input_shape: tuple[int, int, int], num_classes: int,
                    gen: torch.Generator) -> MLPMixer:
    """The MLP-Mixer with every block MLP made G2G (``sparsify``, mixer grouping), each sparse
    row's kept weights scaled by its fan-in as every G2G layer's init is (SPEC §2; ``sparsify``
    keeps weights as they are, and a row that keeps a quarter of its inputs would start with
    half the dense block's output scale)."""
    model = build_mixer(opts, input_shape, num_classes, gen)
    model = sparsify(model, groups=opts.groups, p_intra=opts.p_intra, p_inter=opts.p_inter, grouping="mixer",
                     include=["blocks.*_mlp.*"], seed=_seed(gen))
    for _, layer in sparse_layers(model):
        layer.packed.scale_by_fan_in_()
    return model
