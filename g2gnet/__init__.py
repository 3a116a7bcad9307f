"""g2gnet: G2GNet, neuro-inspired sparse modular neural networks, and dynamic sparse training.

Public API (SPEC §8): ``SparseLinear``, ``build_model``, ``g2gnet.topology``, ``g2gnet.dst``.
"""

__version__ = "0.1.0"

from . import topology  # noqa: E402
from .errors import G2GError  # noqa: E402
from .layers import SparseLinear, sparse_layers  # noqa: E402
from .models import MODELS, build_model  # noqa: E402

__all__ = ["G2GError", "MODELS", "SparseLinear", "build_model", "sparse_layers", "topology", "__version__"]


def __getattr__(name: str):
    # dst is imported lazily so that `import g2gnet` stays light; `g2gnet.dst` works as usual.
    if name == "dst":
        import importlib

        return importlib.import_module(".dst", __name__)
    raise AttributeError(f"module 'g2gnet' has no attribute {name!r}")
