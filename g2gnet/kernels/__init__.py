"""Fast execution of G2G layers (SPEC §7): block-diagonal bmm + sparse inter-group kernels.

``SparseLinear`` uses this automatically; ``reference_mode()`` or ``G2GNET_FAST=0`` force the
masked reference, ``G2GNET_NO_NATIVE=1`` the pure-PyTorch version of the fast path.
"""

from .dispatch import choose, reference_mode
from .function import G2GLinearFunction, g2g_linear
from .native import available as native_available
from .plan import Plan, build_plan

__all__ = ["G2GLinearFunction", "Plan", "build_plan", "choose", "g2g_linear", "native_available",
           "reference_mode"]
