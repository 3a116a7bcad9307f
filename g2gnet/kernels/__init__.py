"""The execution of G2G layers (SPEC §7): the packed layout of the active connections, the native
CPU kernels behind PyTorch custom ops, and the choice between them and the masked reference.

``reference_mode()`` or ``G2G_FAST=0`` force the masked reference; ``G2G_NO_NATIVE=1``
disables the native kernels.
"""

from .dispatch import reference_mode
from .layout import Layout, build_layout
from .native import available as native_available

__all__ = ["Layout", "build_layout", "native_available", "reference_mode"]
