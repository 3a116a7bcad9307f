"""What ``g2g bench`` times and how (``BenchConfig``): every option of ``g2g bench`` is one of its
knobs, the settings it shares with ``g2g train`` taken from the run config's. Plain settings and
their checks; ``bench`` times them, ``epoch_speed`` times the epochs they ask for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import DataConfig, ModelConfig, TrainConfig, _Section, at_least, each_at_least, knob, same_knob
from .data.datasets import dataset_info
from .errors import G2GError, lookup
from .models import MODELS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PATHS = {"auto": None, "fast": True, "reference": False}  # -> SparseLinear.fast
TRAIN_MODES = ("forward", "forward_backward", "step")
MODES = (*TRAIN_MODES, "inference")
TABLES = ("layer", "model")


def _subset_of(choices: tuple[str, ...], empty_ok: bool) -> dict:
    return {"check": lambda v: set(v) <= set(choices) and (empty_ok or len(v) > 0),
            "expect": f"a list of {', '.join(choices)}" + ("" if empty_ok else " (at least one)")}


@dataclass(frozen=True)
class BenchConfig(_Section):
    """What ``g2g bench`` times and how: every option of ``g2g bench`` is one of these knobs."""

    widths: tuple[int, ...] = knob((1024, 2048, 4096), "layer table: widths of the layers (in = out)",
                                   **each_at_least(8, "widths"))
    batch: int = knob(256, "batch size of the training rows (forward, forward_backward, step)", **at_least(1))
    infer_batches: tuple[int, ...] = knob((1, 8, 64, 256), "batch sizes of the inference rows",
                                          **each_at_least(1, "batch sizes"))
    modes: tuple[str, ...] = knob(MODES, "rows of the layer and model tables: forward (no grad), forward_backward "
                                  "(input, weight and bias gradients), step (forward, backward, Adam), inference "
                                  "(eval() forward under torch.inference_mode())", **_subset_of(MODES, False))
    tables: tuple[str, ...] = knob(TABLES, "tables to time besides the epochs: layer (SparseLinear vs nn.Linear), "
                                   "model (a whole model vs the dense MLP); none: epochs only",
                                   **_subset_of(TABLES, True))
    model: str = same_knob(ModelConfig, "name", flag=None, help="model table: this model against dense, at "
                           "--dataset's input size and classes with the default hidden widths, on random inputs")
    device: str = same_knob(TrainConfig, "device")
    dtype: str = knob("float32", "float32 | bfloat16 | float16 (layer table)")
    threads: int | None = same_knob(TrainConfig, "threads")
    repeats: int = knob(15, "timed repeats of each layer and model row (each times both sides)", **at_least(1))
    warmup: int = knob(3, "untimed calls of each side before a row is timed (epochs: untimed training steps)",
                       **at_least(0))
    inter_tile: int = same_knob(ModelConfig, "inter_tile",
                                help="inter-group tile side of the G2G layers and models (1 = element-wise)")
    path: str = knob("auto", "SparseLinear execution path: auto (the dispatcher's choice) | fast | reference")
    dataset: str = same_knob(DataConfig, "dataset", help="dataset of the model table's input size and of --epoch")
    epoch_models: tuple[str, ...] = knob((), "time training epochs of these models (their default configuration on "
                                         "--dataset, with --inter-tile) against dense, e.g. g2g-mixer,er",
                                         flag="--epoch", metavar="MODELS")
    epoch_configs: tuple[str, ...] = knob((), "time training epochs of these configurations against dense at their "
                                          "widths: config.json files, run directories, globs of them, suite files "
                                          "(suites/*.toml: their cells); configurations that differ only in the "
                                          "seed are timed once", flag="--epoch-config", metavar="CONFIG")
    epoch_repeats: int = knob(3, "timed epochs of each configuration and of its dense baseline", **at_least(1))
    epoch_steps: int | None = knob(None, "time only the first N training steps of each epoch (a partial epoch, for a "
                                   "quicker ratio; default: whole epochs)", **at_least(1), metavar="N")

    def validate(self) -> None:
        lookup(DTYPES, self.dtype, "dtype")
        lookup(PATHS, self.path, "path")
        lookup(MODELS, self.model, "model")
        dataset_info(self.dataset)
        for name in self.epoch_models:
            lookup(MODELS, name, "model")
        if not self.tables and not (self.epoch_models or self.epoch_configs):
            raise G2GError("nothing to time: --tables none needs --epoch or --epoch-config")
        if self.dtype != "float32" and not self.device.startswith("cuda"):
            raise G2GError(f"{self.dtype} is benchmarked on CUDA only (the CPU kernels are float32)")
        # The widest layer's dense weight, gradient, Adam state and activations must fit: say so
        # before allocating, not in a traceback.
        need = 4 * max(self.widths) ** 2 * DTYPES[self.dtype].itemsize * 2
        if "layer" in self.tables and need > 64 * 2**30:
            raise G2GError(f"width {max(self.widths)} needs about {need / 2**30:.0f} GiB for the dense "
                           "side; use smaller --widths")
