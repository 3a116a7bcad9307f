"""g2gnet: G2GNet, neuro-inspired sparse modular neural networks, and dynamic sparse training.

Public API (SPEC §8): ``SparseLinear``, ``build_model``, ``sparsify``, ``load_model``,
``g2gnet.topology``, ``g2gnet.dst``.
"""

from . import dst, ensembles, topology
from .convert import densify, sparsify
from .errors import G2GError
from .layers import SparseLinear, sparse_layers
from .load import load_model
from .models import MODELS, build_model
from .optim import param_groups
from .stats import active_parameters
from .version import __version__

__all__ = ["G2GError", "MODELS", "SparseLinear", "active_parameters", "build_model", "densify", "dst", "ensembles",
           "load_model", "param_groups", "sparse_layers", "sparsify", "topology", "__version__"]
