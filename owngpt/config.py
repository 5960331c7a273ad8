"""Typed settings for the model and training, YAML presets, `key=value` overrides, and THE one coercer.

`coerce_fields` turns a mapping into a dataclass's keyword arguments, every value checked against the field's
declared type and every unknown key named with the nearest valid one. YAML presets and `--set` overrides
(text, parsed as YAML), a saved chat's settings (`/load`) and HTTP request bodies (JSON values, taken as they
are) all go through it, so a setting is read the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, get_args, get_origin, get_type_hints

import yaml

from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text

PRESET_DIR = Path(__file__).parent / "configs"
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")  # the form only; whether the device exists is checked later


def _require(obj: Any, section: str, names: tuple[str, ...], rule: str, ok: Callable[[Any], bool]) -> None:
    """Raise an OwnGPTError naming `section.name` and its value for the first set field that fails `ok`."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and not ok(value):
            raise OwnGPTError(f"{section}.{name} must be {rule}, not {value!r}")


@dataclass
class ModelConfig:
    """Architecture of the model: the decoder-only Transformer (see owngpt/model/gpt.py) unless `arch` names a
    baseline (owngpt/model/registry.py `make_model`: `lstm`, or `seq2seq` the encoder-decoder Transformer), which
    takes its sizes from the generic fields here (vocab_size, block_size, n_layer, n_embd, n_head, dropout; the
    seq2seq also tie_embeddings, the LSTM's head is always its own) and ignores the GPT-only ones.

    `preset` picks a family of defaults: `gpt2` (learned positions, LayerNorm eps 1e-5, tanh-GELU, biases,
    tied embeddings: GPT-2's exact maths) or `modern` (RoPE, RMSNorm, SwiGLU, no biases). `depth` is the
    one size knob: it fills in whichever of n_layer = depth, n_embd = 64 * depth and n_head = n_embd // 64
    (at least 1, from the final n_embd) are not given; values you give win (GPT-2 124M is depth 12). Without
    depth, unset sizes default to 4 layers, 4 heads, 128 wide. With depth and no train.lr given, the learning
    rate follows the width too (see `lrs_for_width`). After construction n_layer, n_head, n_embd and n_kv_head
    are ints.
    """

    arch: Literal["gpt", "lstm", "seq2seq"] = "gpt"
    preset: Literal["gpt2", "modern"] = "modern"
    vocab_size: int = 50304
    block_size: int = 256
    depth: int | None = None
    n_layer: int | None = None  # None = depth, or 4 without depth
    n_head: int | None = None  # None = n_embd // 64 with depth, or 4 without
    n_kv_head: int | None = None  # None = n_head (multi-head); fewer = grouped-query attention
    n_embd: int | None = None  # None = 64 * depth, or 128 without depth
    mlp_hidden: int | None = None  # None = 4 * n_embd (gelu) or ~8/3 * n_embd rounded to 64 (swiglu)
    head_size: int | None = None  # None = n_embd // n_head; set by `owngpt prune` (fewer heads, each as wide)
    pos: Literal["learned", "sinusoidal", "rope"] | None = None  # None = the preset's choice
    norm: Literal["layernorm", "rmsnorm"] | None = None
    mlp: Literal["gelu", "swiglu"] | None = None
    bias: bool | None = None
    tie_embeddings: bool | None = None
    norm_eps: float | None = None
    dropout: float = 0.0
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.preset not in ("gpt2", "modern"):
            raise OwnGPTError(f"unknown model preset {self.preset!r}: choose 'gpt2' or 'modern'")
        defaults = PRESET_DEFAULTS[self.preset]
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        _require(self, "model", ("depth",), ">= 1", lambda v: v >= 1)
        if self.depth is not None:  # the one size knob fills in only what was not given
            self.n_layer = self.depth if self.n_layer is None else self.n_layer
            self.n_embd = 64 * self.depth if self.n_embd is None else self.n_embd
            self.n_head = max(1, self.n_embd // 64) if self.n_head is None else self.n_head
        self.n_layer = 4 if self.n_layer is None else self.n_layer
        self.n_head = 4 if self.n_head is None else self.n_head
        self.n_embd = 128 if self.n_embd is None else self.n_embd
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        _require(self, "model", ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "mlp_hidden",
                                 "head_size"), ">= 1", lambda v: v >= 1)
        _require(self, "model", ("norm_eps", "rope_theta"), "> 0", lambda v: v > 0)
        _require(self, "model", ("dropout",), ">= 0 and < 1", lambda v: 0 <= v < 1)
        if self.head_size is None and self.n_embd % self.n_head:
            raise OwnGPTError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise OwnGPTError(f"model.n_head ({self.n_head}) must be divisible by model.n_kv_head ({self.n_kv_head})")
        if self.pos == "rope" and self.head_dim % 2:
            raise OwnGPTError(f"rotary positions need an even head size (model.n_embd / model.n_head), "
                              f"not {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.head_size or self.n_embd // self.n_head


PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt2": dict(pos="learned", norm="layernorm", mlp="gelu", bias=True, tie_embeddings=True, norm_eps=1e-5),
    "modern": dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=True, norm_eps=1e-6),
}


@dataclass
class TrainConfig:
    """How `fit()` trains: optimizer, schedule, budget, evaluation, checkpoints and hardware."""

    data: str = ""  # a folder written by `owngpt prepare` (pretraining) or a conversations source (sft)
    out_dir: str = "runs/pretrain"
    seed: int = 1337
    batch_size: int = 12  # micro-batch, sequences per forward pass
    grad_accum: int = 1
    max_steps: int = 2000  # optimizer steps; 0 = no step budget
    max_tokens: int = 0  # training tokens; 0 = no token budget
    max_time: str = ""  # wall-clock budget such as "10m", "90s", "1h"; "" = none
    lr: float = 1e-3  # with model.depth and no lr given: from the width (lrs_for_width)
    min_lr: float = 1e-4  # with model.depth and neither lr nor min_lr given: lr / 10
    warmup_steps: int = 100
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = 0.1
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon on the hidden matrices, AdamW on the rest
    muon_lr: float = 0.0  # 0 = train.lr * muon_lr_scale; scaled per matrix to AdamW's update size (Moonshot's rule)
    muon_lr_scale: float = 1.0  # Muon's rate over train.lr (when muon_lr is 0), so it follows lr, depth and sweeps
    muon_momentum: float = 0.95
    embed_lr_scale: float = 1.0  # the embedding tables' AdamW rate over train.lr (a tied head shares its table's)
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 = off
    eval_interval: int = 250  # steps between validations; 0 = only at the end
    eval_batches: int = 20
    log_interval: int = 10
    patience: int = 0  # stop after this many validations without improvement; 0 = off
    save_interval: int = 0  # steps between checkpoints; 0 = at each validation
    keep_last: int = 2  # periodic checkpoints kept besides the best
    max_nonfinite: int = 5  # this many non-finite losses in a row stop the run
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto = bf16 autocast on CUDA and AMX CPUs
    compile: Literal["auto", "on", "off"] = "auto"  # auto = torch.compile on CUDA only
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    parallel: Literal["auto", "ddp", "fsdp", "none"] = "auto"  # under torchrun: auto = DDP when world size > 1
    dist_backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto = nccl on CUDA GPUs, gloo on CPUs
    dist_timeout: str = "10m"  # how long the other ranks wait for one that died or hangs before they stop
    resume: str = "auto"  # auto (continue out_dir's latest checkpoint) | none | PATH
    init_from: str = ""  # start weights from this checkpoint (fine-tuning)
    tensorboard: bool = True

    def __post_init__(self) -> None:
        _require(self, "train", ("batch_size", "grad_accum", "eval_batches", "log_interval", "keep_last",
                                 "max_nonfinite"), ">= 1", lambda v: v >= 1)
        _require(self, "train", ("max_steps", "max_tokens", "warmup_steps", "eval_interval", "save_interval",
                                 "patience", "threads", "grad_clip", "weight_decay", "lr"), ">= 0", lambda v: v >= 0)
        _require(self, "train", ("beta1", "beta2", "muon_momentum"), ">= 0 and < 1", lambda v: 0 <= v < 1)
        _require(self, "train", ("muon_lr",), ">= 0", lambda v: v >= 0)
        _require(self, "train", ("muon_lr_scale", "embed_lr_scale"), "> 0", lambda v: v > 0)
        _require(self, "train", ("eps",), "> 0", lambda v: v > 0)
        if not 0 <= self.min_lr <= self.lr:
            raise OwnGPTError(f"train.min_lr must be between 0 and train.lr ({self.lr:g}), not {self.min_lr!r} "
                              "(lowering train.lr? set train.min_lr too)")
        for name in ("max_time", "dist_timeout"):
            try:
                parse_duration(getattr(self, name))
            except OwnGPTError as e:
                raise OwnGPTError(f"train.{name}: {e}") from None
        if parse_duration(self.dist_timeout) <= 0:
            raise OwnGPTError(f"train.dist_timeout must be a positive duration such as '10m', not {self.dist_timeout!r}")
        if not DEVICE_PATTERN.fullmatch(str(self.device)):
            raise OwnGPTError(f"train.device must be auto, cpu, mps, cuda or cuda:N, not {self.device!r}")


@dataclass
class RunConfig:
    """Everything one training run needs; saved next to its outputs as `config.yaml`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def parse_duration(text: str) -> float:
    """'90s' / '10m' / '1.5h' / '600' -> seconds; '' -> 0 (no limit)."""
    text = str(text).strip().lower()
    if not text:
        return 0.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text)
    if not m:
        raise OwnGPTError(f"cannot read duration {text!r}: use a number with s, m, h or d, e.g. '10m'")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * scale


def unknown_key(key: str, valid: list[str], where: str) -> OwnGPTError:
    """The error for a key that is not a field: names the nearest valid one (or lists them all)."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    return OwnGPTError(f"unknown key {key!r} in {where}{hint}")


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def coerce_value(value: Any, annotation: Any, key: str, *, parse_text: bool = True) -> Any:
    """Turn a value into the field's declared type, or explain why not. With parse_text (YAML, --set) a string is
    read as YAML first ("3e-4" -> 3e-4, "null" -> None); without it (JSON bodies, saved chats) values must
    already have their type, an integer standing for a float."""
    origin = get_origin(annotation)
    options = get_args(annotation)
    if origin is Literal and value in options:  # before YAML parsing, which would turn "on"/"off" into booleans
        return value
    if parse_text and isinstance(value, str) and annotation is not str:
        loaded = yaml.safe_load(value) if value != "" else None
        value = loaded if loaded is not None or value.lower() in ("null", "none", "~") else value
    if origin is Literal:
        if value not in options:
            raise OwnGPTError(f"{key} must be one of {', '.join(map(repr, options))}, not {value!r}")
        return value
    if options and type(None) in options:  # Optional[...]
        if value is None:
            return None
        inner = [a for a in options if a is not type(None)]
        return coerce_value(value, inner[0], key, parse_text=parse_text) if len(inner) == 1 else value
    for kind in (bool, int, float, str):
        if annotation is kind:
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            if parse_text and kind is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
                try:
                    return float(value)
                except ValueError:
                    pass
            if parse_text and kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                name = kind.__name__ if parse_text else _KIND_NAMES[kind]
                raise OwnGPTError(f"{key} must be {name}, not {value!r}")
            return value
    return value


def coerce_fields(cls: type, data: dict[str, Any] | None, where: str, *, parse_text: bool = True,
                  allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Keyword arguments for dataclass `cls` from `data`: unknown keys (or keys outside `allowed`) are an error
    naming the nearest valid one; each value is coerced to its field's type (`coerce_value`), the error naming
    `where.key`."""
    hints = get_type_hints(cls)
    valid = list(allowed) if allowed is not None else [f.name for f in fields(cls)]
    if not isinstance(data or {}, dict):
        raise OwnGPTError(f"{where} must be a mapping of settings, not {type(data).__name__}")
    kwargs = {}
    for key, value in (data or {}).items():
        if key not in valid:
            raise unknown_key(key, valid, where)
        kwargs[key] = coerce_value(value, hints[key], f"{where}.{key}", parse_text=parse_text)
    return kwargs


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    return cls(**coerce_fields(cls, data, where))


def lrs_for_width(n_embd: int) -> tuple[float, float]:
    """(lr, min_lr) for a model `n_embd` wide: GPT-3's 6e-4 for the 124M model (768 wide), scaled by width^-1/2
    as nanochat scales its AdamW rates, so wider models take smaller steps; min_lr = lr / 10. Both are rounded
    to 3 significant figures so that saved configs stay readable."""
    lr = 6e-4 * math.sqrt(768 / n_embd)
    return float(f"{lr:.3g}"), float(f"{lr / 10:.3g}")


def run_config_from_dict(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Build a RunConfig from nested dicts, rejecting unknown keys with the nearest valid one. With model.depth
    set and no train.lr given, lr and (unless given) min_lr follow the width: see `lrs_for_width`."""
    data = dict(data or {})
    sections = {"model": ModelConfig, "train": TrainConfig}
    for key in data:
        if key not in sections:
            raise unknown_key(key, list(sections), where)
    model = _build(ModelConfig, data.get("model", {}), f"{where}: model")
    train_data = dict(data.get("train") or {})
    if model.depth is not None and "lr" not in train_data:
        lr, min_lr = lrs_for_width(model.n_embd)
        train_data["lr"] = lr
        train_data.setdefault("min_lr", min_lr)
    return RunConfig(model=model, train=_build(TrainConfig, train_data, f"{where}: train"))


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset_dict(name_or_path: str) -> dict[str, Any]:
    """Read a preset by name (owngpt/configs/NAME.yaml) or a YAML file path into nested dicts."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            presets = list_presets()
            close = difflib.get_close_matches(name_or_path, presets, n=1, cutoff=0.4)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise OwnGPTError(f"no config preset {name_or_path!r}{hint} (presets: {', '.join(presets)})")
    if not path.exists():
        raise OwnGPTError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise OwnGPTError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise OwnGPTError(f"{path}: expected a mapping with 'model' and 'train' sections")
    return data


# What model.depth derives: a depth override drops the preset's values for these, unless they are overridden too.
# (A preset's absolute muon_lr goes too; its muon_lr_scale stays, so Muon follows the derived train.lr.)
DEPTH_DERIVED = (("model", "n_layer"), ("model", "n_head"), ("model", "n_embd"), ("train", "lr"), ("train", "min_lr"),
                 ("train", "muon_lr"))
# What a from-scratch recipe sets for new weights only: a train.init_from override (continued pretraining, prune's
# recovery) drops the preset's value unless it is overridden too. tiny-cpu's 30x embedding rate would shake a trained
# table (and a head tied to it).
FROM_SCRATCH_ONLY = (("train", "embed_lr_scale"),)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings (e.g. `train.lr=3e-4`, `model.depth=6`) to nested dicts. Overriding
    model.depth resizes the preset: its n_layer, n_head, n_embd, lr, min_lr and absolute muon_lr give way to the
    depth's own. Overriding train.init_from drops the preset's embed_lr_scale (a from-scratch setting)."""
    data = {k: dict(v or {}) for k, v in data.items()}
    given: set[tuple[str, str]] = set()
    for item in overrides:
        if "=" not in item:
            raise OwnGPTError(f"override {item!r} must look like section.key=value, e.g. train.lr=3e-4")
        path, value = item.split("=", 1)
        parts = path.strip().split(".")
        if len(parts) != 2:
            raise OwnGPTError(f"override {item!r}: the key must be 'model.NAME' or 'train.NAME'")
        data.setdefault(parts[0], {})[parts[1]] = value
        given.add((parts[0], parts[1]))
    def give_way(keys: tuple[tuple[str, str], ...]) -> None:  # the preset's values of keys not overridden too
        for section, key in keys:
            if (section, key) not in given:
                data.get(section, {}).pop(key, None)

    if ("model", "depth") in given and data["model"]["depth"].strip().lower() not in ("", "null", "none", "~"):
        give_way(DEPTH_DERIVED)
    if ("train", "init_from") in given and data["train"]["init_from"].strip():
        give_way(FROM_SCRATCH_ONLY)
    return data


def load_run_config(preset: str = "tiny-cpu", overrides: list[str] | None = None) -> RunConfig:
    """The one way to get a RunConfig: a preset (name or YAML path) plus `section.key=value` overrides."""
    data = apply_overrides(load_preset_dict(preset), overrides or [])
    return run_config_from_dict(data, where=preset)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_yaml(cfg: Any, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))
