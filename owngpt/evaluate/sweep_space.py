"""What `owngpt sweep` searches: the default ranges, `--search KEY=SPEC` changes to them, and one trial's choices
turned into `section.key=value` overrides of the preset (the same overrides `owngpt pretrain --set` takes).

A setting given with `--set` is held fixed and not searched. `--search KEY=SPEC` narrows, widens or adds a range:
`LOW:HIGH` (uniform; integers for integer settings), `LOW:HIGH:log` (log-uniform), `A,B,C` (choices) or `off` (not
searched: the preset's value). Does not handle conditional spaces (a range that depends on another choice).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from owngpt.config import ModelConfig, RunConfig, TrainConfig, coerce_value, unknown_key
from owngpt.errors import OwnGPTError

SECTIONS = {"model": ModelConfig, "train": TrainConfig}
# what the sweep sets itself for every trial: searching them would make no sense
NOT_SEARCHABLE = ("train.data", "train.out_dir", "train.resume", "train.init_from", "model.vocab_size")


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (low..high, log-uniform when `log`, integers when `integer`) or `choices`."""

    key: str  # section.name, e.g. "train.lr"; also the parameter's name in the Optuna study
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for an Optuna trial (its sampler decides; a re-run trial gets its old value)."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def spec(self) -> str:
        """The range as `--search` writes it: '1e-4:1e-2:log', '0:200', '2,3,4,6'."""
        if self.choices:
            return ",".join(str(c) for c in self.choices)
        num = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:g}")
        return f"{num(self.low)}:{num(self.high)}" + (":log" if self.log else "")


# Sized for the tiny-cpu preset on a laptop; widen or narrow with --search. n_embd choices are multiples of 64, so
# the preset's head size (32) divides them all: the number of heads follows the width (see trial_overrides).
DEFAULT_SPACE: tuple[Param, ...] = (
    Param("train.lr", 1e-4, 1e-2, log=True),
    Param("train.batch_size", choices=(4, 8, 16, 32)),
    Param("model.n_layer", choices=(2, 3, 4, 6)),
    Param("model.n_embd", choices=(64, 128, 192, 256)),
    Param("model.dropout", 0.0, 0.2),
    Param("train.warmup_steps", 0, 200, integer=True),
)


def _field_type(key: str, where: str) -> Any:
    """The declared type of `section.name` (Optional stripped), or an error naming the nearest valid key."""
    section, _, name = key.partition(".")
    if section not in SECTIONS or not name:
        raise OwnGPTError(f"{where}: {key!r} must be 'model.NAME' or 'train.NAME', e.g. train.lr")
    cls = SECTIONS[section]
    valid = [f.name for f in fields(cls)]
    if name not in valid:
        raise unknown_key(name, valid, f"{where} ({section} settings)")
    hint = get_type_hints(cls)[name]
    if get_origin(hint) in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        hint = inner[0] if len(inner) == 1 else hint
    return hint


def parse_search(item: str) -> Param | str:
    """A Param from one `--search KEY=SPEC`, or just the key for `KEY=off`."""
    where = f"--search {item!r}"
    if "=" not in item:
        raise OwnGPTError(f"{where} must look like KEY=SPEC, e.g. train.lr=1e-4:3e-3:log or model.n_layer=2,4,6")
    key, spec = (part.strip() for part in item.split("=", 1))
    kind = _field_type(key, where)
    if key in NOT_SEARCHABLE:
        raise OwnGPTError(f"{where}: the sweep sets {key} itself for every trial; it cannot be searched")
    if spec.lower() == "off":
        return key
    if "," in spec:
        choices = tuple(coerce_value(c.strip(), kind, key) for c in spec.split(",") if c.strip())
        if len(set(choices)) < 2:
            raise OwnGPTError(f"{where}: give at least two different choices, or fix the value with --set {key}=VALUE")
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise OwnGPTError(f"{where}: choices must be plain numbers, words or true/false")
        return Param(key, choices=choices)
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].strip().lower() != "log"):
        raise OwnGPTError(f"{where}: SPEC must be LOW:HIGH, LOW:HIGH:log, A,B,C or off (to fix one value use "
                          f"--set {key}=VALUE)")
    if kind not in (int, float):
        raise OwnGPTError(f"{where}: {key} is not a number, so it takes choices (A,B,C), not a range")
    low, high = (coerce_value(p.strip(), kind, key) for p in parts[:2])
    log = len(parts) == 3
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise OwnGPTError(f"{where}: LOW must be below HIGH, both finite")
    if log and low <= 0:
        raise OwnGPTError(f"{where}: a log range needs LOW > 0")
    return Param(key, low, high, log=log, integer=kind is int)


def fixed_keys(overrides: list[str] | tuple[str, ...]) -> set[str]:
    """The `section.name` keys that --set items fix."""
    return {item.split("=", 1)[0].strip() for item in overrides if "=" in item}


def search_space(overrides: list[str] | tuple[str, ...] = (), search: list[str] | tuple[str, ...] = ()
                 ) -> tuple[Param, ...]:
    """DEFAULT_SPACE changed by `--search` items, less the keys `--set` fixes; an error when nothing is left."""
    space = {p.key: p for p in DEFAULT_SPACE}
    fixed = fixed_keys(overrides)
    for item in search:
        found = parse_search(item)
        if isinstance(found, str):
            space.pop(found, None)
            continue
        if found.key in fixed:
            raise OwnGPTError(f"{found.key} is both fixed (--set) and searched (--search): drop one of them")
        space[found.key] = found
    kept = tuple(p for key, p in space.items() if key not in fixed)
    if not kept:
        raise OwnGPTError("nothing left to search: every searched setting is fixed by --set or turned off; "
                          "add a range with --search KEY=LOW:HIGH")
    return kept


def trial_overrides(params: dict[str, Any], base: RunConfig, fixed: set[str]) -> list[str]:
    """`section.key=value` overrides for one trial's choices, plus what follows from them (unless --set fixed it):
    train.min_lr = lr / 10 (as the presets have it), and with a searched model.n_embd the heads keep the preset's
    head size (n_head = n_embd / head size) and its grouping (n_kv_head in the same ratio)."""
    out = [f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}" for key, value in params.items()]
    if "train.lr" in params and "train.min_lr" not in fixed and "train.min_lr" not in params:
        out.append(f"train.min_lr={params['train.lr'] / 10!r}")
    n_embd = params.get("model.n_embd")
    if isinstance(n_embd, int) and "model.n_head" not in fixed and "model.n_head" not in params:
        head = base.model.head_dim
        if n_embd % head == 0:
            n_head = max(1, n_embd // head)
            out.append(f"model.n_head={n_head}")
            group = base.model.n_head // base.model.n_kv_head
            if "model.n_kv_head" not in fixed and "model.n_kv_head" not in params and n_head % group == 0:
                out.append(f"model.n_kv_head={n_head // group}")
    return out
