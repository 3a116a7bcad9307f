"""The resolved configuration of one training run (SPEC §5): defaults are the paper's settings.

Plain data, no torch: it is what ``config.json`` stores and what a resumed run must match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .errors import G2GError

# Epochs per dataset when none are given (SPEC §5).
DEFAULT_EPOCHS = {"fashion-mnist": 20, "mnist": 20, "cifar10": 30, "cifar100": 40}
# Datasets trained with random crop + flip by default.
AUGMENTED = {"cifar10", "cifar100"}


@dataclass
class TrainConfig:
    dataset: str = "fashion-mnist"
    model: str = "g2g-mixer"
    epochs: int | None = None
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    val: int = 0
    labels: str = "fine"
    augment: bool | None = None
    device: str = "cpu"
    threads: int | None = None
    # model options (g2gnet.models.ModelOptions)
    hidden: list[int] = field(default_factory=lambda: [1024, 1024, 1024])
    groups: int = 8
    p_intra: float = 1.0
    p_inter: float = 0.15
    frontend: str = "none"
    inter_tile: int = 1
    # dynamic sparse training (g2gnet.dst); dst=None means a static mask
    dst: str | None = None
    dst_interval: int = 1000
    dst_fraction: float = 0.1
    dst_decay: str = "constant"
    dst_stop: float = 1.0
    dst_window: str = "1"
    dst_score: str = "cosine"

    def resolve(self) -> "TrainConfig":
        """Fill dataset-dependent defaults and check ranges; returns self."""
        if self.epochs is None:
            self.epochs = DEFAULT_EPOCHS.get(self.dataset, 20)
        if self.augment is None:
            self.augment = self.dataset in AUGMENTED
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.val >= 0, f"--val must be >= 0, got {self.val}"),
            (self.labels in ("fine", "coarse"), f"labels must be fine or coarse, got {self.labels!r}"),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (self.dst_interval >= 1, f"dst interval must be >= 1, got {self.dst_interval}"),
            (0.0 <= self.dst_fraction <= 1.0, f"dst fraction must be in [0, 1], got {self.dst_fraction}"),
            (0.0 < self.dst_stop <= 1.0, f"dst stop must be in (0, 1], got {self.dst_stop}"),
        ]
        for ok, message in checks:
            if not ok:
                raise G2GError(message)
        return self

    def model_options(self) -> dict:
        keys = ("hidden", "groups", "p_intra", "p_inter", "frontend", "inter_tile", "seed")
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        valid = {f.name for f in fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise G2GError(f"unknown config key(s) {sorted(unknown)}; valid: {sorted(valid)}")
        return cls(**d)
