"""Configuration dataclasses with the paper's values as defaults."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class TrainingConfig:
    """Optimiser, loss and bookkeeping settings; defaults are the original cephalogram code's."""

    iterations: int = 30_000
    learning_rate: float = 1e-6
    momentum: float = 0.99
    clip_norm: float | None = 1e4
    alpha: float = 20.0
    weight_decay: float = 0.001
    gamma: float = 100.0
    sigma_init: float = 2.5
    nonfinite_lr_factor: float = 0.5
    max_recoveries: int = 5
    log_every: int = 100
    checkpoint_every: int = 1000
    max_to_keep: int = 3
    xla: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        return cls(**values)
