"""g2gnet: G2GNet, neuro-inspired sparse modular neural networks, and dynamic sparse training.

Public API (SPEC §8): ``SparseLinear``, ``build_model``, ``g2gnet.topology``, ``g2gnet.dst``.
"""

from . import dst, topology
from .errors import G2GError
from .layers import SparseLinear, sparse_layers
from .models import MODELS, build_model
from .version import __version__

__all__ = ["G2GError", "MODELS", "SparseLinear", "build_model", "dst", "sparse_layers", "topology", "__version__"]
