"""The Hebbian score of SPEC §3: how similar the activity of input unit i and output unit o is.

CH(o, i) = <a_i, b_o> / (|a_i| |b_o|), the cosine similarity of the activity vectors of input
unit i (pre, the layer's input) and output unit o (post, after the non-linearity) over recent
training samples, as in the G2GNet follow-up code (paper-reconstruction.md §3.2). ``pearson``
is the mean-centred variant. Dead units (zero norm, or zero variance for pearson) score 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import G2GError

KINDS = ("cosine", "pearson")
_SUMS = ("sxy", "sx", "sxx", "sy", "syy")  # ActivityStats' running sums, in this order everywhere


def outer_sum(post: Tensor, pre: Tensor) -> Tensor:
    """Σ over samples of postᵀ·pre: [B, out] x [B, in] -> [out, in], in at least fp32.

    Training may run under autocast; these sums (Hebbian co-activity, dense weight gradients)
    must not be computed in bf16, so autocast is off and the inputs are promoted."""
    dtype = torch.promote_types(pre.dtype, torch.float32)
    with torch.autocast(pre.device.type, enabled=False):
        return post.to(dtype).T @ pre.to(dtype)


class ActivityStats:
    """Running sums over samples of one layer: Σ post^T pre, Σ pre, Σ pre², Σ post, Σ post², n.

    Enough for both cosine and Pearson scores, so any number of batches can be folded in at the
    cost of one [out,B]x[B,in] matmul each. The matmul sum is kept in float32 (float64 if the
    activations are float64): it is the size of the weight and is summed at most once per
    training step. The per-unit sums are tiny and kept in float64, so norms and variances are
    accurate and a dead unit's norm is exactly 0.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (and free the [out,in] buffer until the next window)."""
        self.n = 0
        self.sxy: Tensor | None = None  # Σ post^T pre  [out, in]
        self.sx: Tensor | None = None  # Σ pre         [in]   float64
        self.sxx: Tensor | None = None  # Σ pre²        [in]   float64
        self.sy: Tensor | None = None  # Σ post        [out]  float64
        self.syy: Tensor | None = None  # Σ post²       [out]  float64

    @torch.no_grad()
    def update(self, pre: Tensor, post: Tensor) -> None:
        """Fold in a batch: pre [..., in], post [..., out]; leading dims are samples."""
        pre = pre.detach().reshape(-1, pre.shape[-1])
        post = post.detach().reshape(-1, post.shape[-1])
        if pre.shape[0] != post.shape[0]:
            raise G2GError(f"pre and post must have the same samples, got {pre.shape[0]} and {post.shape[0]}")
        sxy = outer_sum(post, pre)
        x, y = pre.double(), post.double()
        self._fold((sxy, x.sum(0), (x * x).sum(0), y.sum(0), (y * y).sum(0)), pre.shape[0])

    @torch.no_grad()
    def merge_(self, other: ActivityStats) -> None:
        """Fold in everything ``other`` holds (its tensors become this one's while this is empty)."""
        if other.n:
            self._fold(tuple(getattr(other, k) for k in _SUMS), other.n)

    def _fold(self, sums: tuple[Tensor, ...], n: int) -> None:
        if self.n == 0:
            self.sxy, self.sx, self.sxx, self.sy, self.syy = sums
        else:
            for k, s in zip(_SUMS, sums):
                getattr(self, k).add_(s)
        self.n += n

    @torch.no_grad()
    def scores(self, kind: str = "cosine") -> Tensor:
        """[out, in] scores in [-1, 1] from everything folded in since the last reset."""
        if kind not in KINDS:
            raise G2GError(f"unknown Hebbian score {kind!r}; valid: {', '.join(KINDS)}")
        if self.n == 0:
            raise G2GError("no activity was recorded: Hebbian scores need at least one sample")
        num, vx, vy = self.sxy.double(), self.sxx, self.syy
        if kind == "pearson":
            n = self.n
            num = num - torch.outer(self.sy, self.sx) / n  # n·cov
            # n·var. A unit that is constant up to rounding of the float32 matmul sum has no
            # defined correlation (its tiny variance would amplify that rounding): treat it as
            # dead. 1e3·eps is ~1e-4 of the mean square in float32.
            tol = 1e3 * torch.finfo(self.sxy.dtype).eps
            vx = self.sxx - self.sx**2 / n
            vy = self.syy - self.sy**2 / n
            vx = torch.where(vx > tol * self.sxx, vx, 0.0)
            vy = torch.where(vy > tol * self.syy, vy, 0.0)
        denom = torch.outer(vy.clamp_min(0).sqrt(), vx.clamp_min(0).sqrt())  # (out, in)
        alive = denom > 0
        out = torch.where(alive, num / torch.where(alive, denom, 1.0), 0.0)
        return out.clamp_(-1.0, 1.0).to(self.sxy.dtype)

    def state_dict(self) -> dict:
        if self.n == 0:
            return {"n": 0}
        return {"n": self.n, **{k: getattr(self, k).clone() for k in _SUMS}}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        self.reset()
        self.n = int(state["n"])
        if self.n:
            for k in _SUMS:
                setattr(self, k, state[k].to(device).clone())


def hebbian_scores(pre: Tensor, post: Tensor, kind: str = "cosine") -> Tensor:
    """Hebbian scores of one batch: pre [B, in], post [B, out] -> [out, in].

    ``cosine``: CH(o, i) = Σ_b post[b,o] pre[b,i] / (|post[:,o]| |pre[:,i]|).
    ``pearson``: the same on mean-centred activities. Dead units score 0.
    """
    stats = ActivityStats()
    stats.update(pre, post)
    return stats.scores(kind)
