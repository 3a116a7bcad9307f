"""Dynamic sparse training (SPEC §3): prune and regrow connections of SparseLinear layers.

``criteria`` scores connections, ``rewire`` swaps them, ``schedule`` says when and how many,
``hebbian`` defines the activity score, ``recorder`` collects evidence during training, and
``sparsity.DynamicSparsity`` puts them together behind ``.step()``.
"""

from .criteria import GROW, PRUNE
from .hebbian import hebbian_scores
from .rewire import rewire, set_mask_moving_state
from .schedule import Schedule
from .sparsity import DynamicSparsity

__all__ = [
    "DynamicSparsity", "GROW", "PRUNE", "Schedule", "hebbian_scores", "rewire", "set_mask_moving_state",
]
