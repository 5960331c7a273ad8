"""Train/val/test splits: by a hash of each document (the same split on every run and machine), or by tail.

`hash_split`: blake2b of the document's text, read as a number in [0, 1), falls into one of the cumulative ratio
intervals. It depends only on the text, so a document keeps its split when other documents are added, removed
or reordered, and when the corpus is prepared again elsewhere: a validation document never leaks into training.

A conversation's split is the hash split of `conversation_key`: its cleaned messages as JSON (the key prepare also
deduplicates conversations by), so whoever asks which sessions are held out (`owngpt persona suggest`) gets
prepare's answer.

`tail_split`: the last `fraction` of one long text becomes validation, as nanoGPT does for character-level
Shakespeare; the cut moves forward to the next line break when there is one close by, so no line is cut in two.
"""

from __future__ import annotations

import hashlib
import json

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.9, 0.05, 0.05)  # train, val, test: `owngpt prepare --split`'s default


def parse_ratios(spec: str | tuple[float, ...] | list[float]) -> tuple[float, float, float]:
    """'0.9,0.05,0.05' -> (train, val, test) ratios summing to 1. Three numbers are weights ('8,1,1' is 0.8/0.1/0.1);
    with one or two the missing splits are empty, so those must already add up to 1 ('0.9,0.1': no test split).
    '0.8,0.1' is refused rather than silently rescaled to 0.889/0.111/0."""
    from owngpt.errors import OwnGPTError

    try:
        parts = [float(p) for p in spec.split(",")] if isinstance(spec, str) else [float(p) for p in spec]
    except ValueError:
        raise OwnGPTError(f"split ratios must be numbers like 0.9,0.05,0.05, not {spec!r}") from None
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts) or sum(parts) <= 0 or parts[0] <= 0:
        raise OwnGPTError(f"split ratios must be 1-3 non-negative numbers with train > 0, like 0.9,0.05,0.05; got {spec!r}")
    if len(parts) < 3 and abs(sum(parts) - 1.0) > 1e-6:
        shown = ",".join(f"{p:g}" for p in parts)
        rest = 1.0 - sum(parts)
        hint = f"; for a test split of the rest, write {shown},{rest:g}" if rest > 0 else ""
        raise OwnGPTError(f"split ratios {spec!r} add up to {sum(parts):g}, not 1: give train,val,test, e.g. "
                          f"0.9,0.05,0.05 (with fewer than three numbers the missing splits are empty){hint}")
    parts += [0.0] * (3 - len(parts))
    total = sum(parts)
    return (parts[0] / total, parts[1] / total, parts[2] / total)


def unit_hash(key: str) -> float:
    """A number in [0, 1) from blake2b of the key: uniform, and identical on every machine and Python version."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(u: float, ratios: tuple[float, float, float]) -> str:
    """The split whose cumulative interval holds u."""
    edge = 0.0
    for name, r in zip(SPLITS, ratios):
        edge += r
        if u < edge:
            return name
    return next(name for name, r in zip(reversed(SPLITS), reversed(ratios)) if r > 0)  # u at the rounding edge


def hash_split(text: str, ratios: tuple[float, float, float]) -> str:
    """'train' | 'val' | 'test' for this text, decided by its hash alone."""
    return split_of(unit_hash(text), ratios)


def conversation_key(messages: list[dict[str, str]]) -> str:
    """The text a cleaned conversation's split hash (and its exact-duplicate check) is taken from."""
    return json.dumps(messages, ensure_ascii=False)


def tail_cut(text: str, fraction: float) -> int:
    """Index where the tail starts: len(text) * (1 - fraction), moved to just after the next newline if one is
    within the first tenth of the tail."""
    if not 0.0 < fraction < 1.0:
        from owngpt.errors import OwnGPTError

        raise OwnGPTError(f"the tail fraction must be between 0 and 1 (e.g. 0.1), not {fraction}")
    cut = int(len(text) * (1.0 - fraction))
    window = max(1, (len(text) - cut) // 10)
    nl = text.find("\n", cut, cut + window)
    return nl + 1 if nl != -1 else cut


def tail_split(text: str, fraction: float) -> tuple[str, str]:
    """(head → train, tail → val) of one text."""
    cut = tail_cut(text, fraction)
    return text[:cut], text[cut:]
