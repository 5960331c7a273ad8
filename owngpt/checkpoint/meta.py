"""The typed meta.json of a checkpoint: what it holds (`arch`, model config, tokenizer), how it was made, its hashes.

`make_meta` is the one place a checkpoint's description is assembled (the training loop, LoRA merges and
imports all call it); `CheckpointMeta.from_dict` reads every meta.json written so far: those from before
`arch` existed are GPTs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from owngpt.errors import OwnGPTError

FORMAT = 1


@dataclass
class CheckpointMeta:
    """One checkpoint's meta.json. The writer fills in format, sha256, files and tied."""

    arch: str = "gpt"  # the model class (owngpt/model/registry.py)
    model_config: dict[str, Any] = field(default_factory=dict)
    tokenizer_hash: str | None = None
    step: int = 0
    tokens: int = 0  # training tokens seen
    val_loss: float | None = None
    best_val_loss: float | None = None
    weights_filtered: bool = False  # only part of the model (LoRA adapters)
    run_config: dict[str, Any] = field(default_factory=dict)  # config.yaml of the run that wrote it
    merged_adapter: dict[str, Any] | None = None  # set by `owngpt lora merge`
    format: int = FORMAT
    sha256: str | None = None  # of model.safetensors
    files: dict[str, str] = field(default_factory=dict)  # sha256 of the other files (train_state.pt)
    tied: dict[str, str] = field(default_factory=dict)  # weight name -> the stored name it shares memory with
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # keys of a newer owngpt, kept as they are

    @classmethod
    def from_dict(cls, data: Any, where: str | Path = "meta.json") -> "CheckpointMeta":
        if not isinstance(data, dict):
            raise OwnGPTError(f"{where}: meta.json must hold a JSON object")
        known = {f.name for f in fields(cls)} - {"extra"}
        meta = cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})
        if not isinstance(meta.model_config, dict):
            raise OwnGPTError(f"{where}: model_config must be a JSON object")
        meta.arch = meta.arch or "gpt"
        return meta

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data

    # ------------------------------------------------------------------ what the run that wrote it recorded

    def recorded(self, section: str) -> dict[str, Any]:
        """A section of the run's config (`chat`, `sft`, `train`, `base_meta`, ...), {} when absent."""
        value = (self.run_config or {}).get(section)
        return value if isinstance(value, dict) else {}

    @property
    def base_sha256(self) -> str | None:
        """For a fine-tuning run: the sha256 of the base checkpoint's weights it started from."""
        return self.recorded("base_meta").get("sha256")


def make_meta(*, arch: str, model_config: dict[str, Any], tokenizer=None, run_config: dict[str, Any] | None = None,
              tokens: int = 0, val_loss: float | None = None, best_val_loss: float | None = None,
              weights_filtered: bool = False) -> CheckpointMeta:
    """The meta of a checkpoint about to be written (its step, hashes and file list are added by the writer)."""
    return CheckpointMeta(arch=arch, model_config=dict(model_config), tokenizer_hash=getattr(tokenizer, "hash", None),
                          tokens=int(tokens), val_loss=val_loss, best_val_loss=best_val_loss,
                          weights_filtered=weights_filtered, run_config=dict(run_config or {}))


def merged_meta(base: CheckpointMeta, merged_adapter: dict[str, Any]) -> CheckpointMeta:
    """The meta of a base checkpoint with an adapter folded in: the base's description, no losses (they do not
    describe the merged weights), whole weights; the writer records new hashes."""
    return replace(base, val_loss=None, best_val_loss=None, weights_filtered=False, merged_adapter=merged_adapter,
                   sha256=None, files={}, tied={})
