"""Duplicate removal: exact (a hash of the normalised text) and near-duplicate (MinHash + LSH), streaming.

Both keep only 64-bit hashes, never the documents: `ExactDedup` 8 bytes per document, `NearDedup` 8 bytes per band
per document (16 bands: 128 bytes), in sorted numpy arrays rather than Python sets (which would cost ~70 bytes per
entry). The first occurrence is kept; later ones are duplicates.

Near duplicates: a document becomes the set of its character k-grams (k=4 by default; characters, not words, so
Chinese and other unsegmented text works), hashed to 32 bits; its MinHash signature has `num_perm` positions
(one-permutation hashing for long texts, classic MinHash for short ones: see NearDedup.signatures), and two signatures agree in a position with probability close
to the Jaccard similarity of the two k-gram sets. LSH cuts the signature into
`bands` bands of `rows` rows; a document that shares any whole band with an earlier one is taken as a near
duplicate. The chance of that is 1 - (1 - J**rows)**bands, an S-curve; bands and rows are chosen to put its steep
part at `threshold` (as datasketch does). Candidates are not verified against stored signatures (that would keep
num_perm * 4 bytes per document), so a pair just below the threshold is sometimes removed and one just above it is
sometimes kept; pairs far from the threshold are decided reliably. Everything is seeded: the same input gives the
same result on every run and machine.

Not handled: semantic duplicates (paraphrases), duplicated passages inside otherwise different documents.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np



# A normalised text longer than this is MinHashed alone, in pieces of this many characters (bounded memory).
HUGE_CHARS = 1 << 20
_SPACE = re.compile(r"\s")  # what str.split() splits at
_EMPTY = np.iinfo(np.uint32).max  # a one-permutation bin no k-gram fell into


def normalise_for_dedup(text: str) -> str:
    """Case-folded, whitespace collapsed to single spaces: 'Hello  World\\n' and 'hello world' are the same.
    A text over HUGE_CHARS is done in pieces cut at whitespace (the same result): split() of a whole 20 MB line
    held ~17 bytes per character in word strings."""
    if len(text) <= HUGE_CHARS:
        return " ".join(text.casefold().split())
    parts = []
    start = 0
    while start < len(text):
        end = start + HUGE_CHARS
        if end < len(text):  # cut after the next whitespace character (none: the rest is one word)
            m = _SPACE.search(text, end)
            end = m.end() if m is not None else len(text)
        piece = " ".join(text[start:end].casefold().split())
        if piece:
            parts.append(piece)
        start = end
    return " ".join(parts)


def text_key(text: str, normalised: bool = False) -> int:
    """64-bit key of the normalised text (blake2b); equal for texts that differ only in case and spacing.
    normalised=True: `text` is normalise_for_dedup's output already. Hashed in pieces of HUGE_CHARS characters
    (the same digest), so a huge text is not encoded whole."""
    norm = text if normalised else normalise_for_dedup(text)
    h = hashlib.blake2b(digest_size=8)
    for i in range(0, len(norm), HUGE_CHARS):
        h.update(norm[i:i + HUGE_CHARS].encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "little")


class HashSet64:
    """A set of uint64 values: a sorted numpy array plus a small Python set of recent additions.

    The recent set (~70 bytes per value as Python ints) is merged into the array (8 bytes per value) whenever it
    reaches RECENT_MAX values or 1/16 of the array, whichever is more: memory stays near 12 bytes per value plus
    ~5 MB, and since each merge copies the array, the geometric schedule keeps the total copying to ~16 times
    the final size (a fixed merge interval made it quadratic).
    """

    RECENT_MAX = 1 << 16

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def contains_any(self, values: list[int]) -> bool:
        if any(v in self._recent for v in values):
            return True
        if not len(self._sorted):
            return False
        arr = np.asarray(values, dtype=np.uint64)
        idx = np.searchsorted(self._sorted, arr)
        idx[idx == len(self._sorted)] = 0
        return bool(np.any(self._sorted[idx] == arr))

    def recent_any(self, values: list[int]) -> bool:
        return any(v in self._recent for v in values)

    def contains_matrix(self, values: np.ndarray) -> np.ndarray:
        """For each row of a (N, m) uint64 array: whether any of its values is in the sorted part."""
        if not len(self._sorted):
            return np.zeros(len(values), dtype=bool)
        idx = np.searchsorted(self._sorted, values)
        idx[idx == len(self._sorted)] = 0
        return (self._sorted[idx] == values).any(axis=1)

    def add(self, values: list[int], merge: bool = True) -> None:
        """Add values; a value that is already present is stored once (len() may count it twice until the next merge).
        merge=False: leave the new values in the recent set for now (see merge())."""
        self._recent.update(values)
        if merge:
            self.merge()

    def merge(self) -> None:
        """Move the recent values into the sorted array once there are enough of them (see the class docstring)."""
        if len(self._recent) >= max(self.RECENT_MAX, len(self._sorted) // 16):
            new = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            new.sort()
            new = new[np.searchsorted(self._sorted, new) == np.searchsorted(self._sorted, new, side="right")]
            # a linear merge of two sorted arrays (np.insert), not a re-sort: merges are frequent but cheap
            self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, new), new)
            self._recent = set()

    def nbytes(self) -> int:
        return self._sorted.nbytes + 80 * len(self._recent)


class ExactDedup:
    """Remembers the key of every text seen; `seen(text)` says whether an equal text came before (and adds it)."""

    def __init__(self) -> None:
        self._keys = HashSet64()

    def seen(self, text: str) -> bool:
        return self.seen_key(text_key(text))

    def seen_key(self, key: int) -> bool:
        if self._keys.contains_any([key]):
            return True
        self._keys.add([key])
        return False

    def __len__(self) -> int:
        return len(self._keys)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit mixer (vectorised, wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising false positives + false negatives around threshold."""
    s = np.linspace(0.0, 1.0, 2001)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s**r) ** b
            fp = np.trapezoid(np.where(s < threshold, p, 0.0), s)
            fn = np.trapezoid(np.where(s >= threshold, 1.0 - p, 0.0), s)
            if fp + fn < best_err:
                best, best_err = (b, r), fp + fn
    return best


@dataclass
class NearDedupConfig:
    """MinHash/LSH settings; bands=0 chooses bands and rows from threshold."""

    threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 4
    bands: int = 0
    seed: int = 0


class NearDedup:
    """Streaming near-duplicate filter: `is_duplicate(text)` is True when an earlier text shares an LSH band."""

    def __init__(self, cfg: NearDedupConfig | None = None) -> None:
        self.cfg = cfg = cfg or NearDedupConfig()
        if not 0.0 < cfg.threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {cfg.threshold}")
        if cfg.bands:
            self.bands, self.rows = cfg.bands, cfg.num_perm // cfg.bands
        else:
            self.bands, self.rows = lsh_params(cfg.threshold, cfg.num_perm)
        rng = np.random.default_rng(cfg.seed)
        self._a = (rng.integers(0, 2**32, cfg.num_perm, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
        self._b = rng.integers(0, 2**32, cfg.num_perm, dtype=np.uint64).astype(np.uint32)
        self._salt = np.uint32(rng.integers(0, 2**32))
        self._mult = np.uint32(rng.integers(0, 2**31) * 2 + 1)
        self._band_mult = rng.integers(1, 2**63, (self.bands, self.rows), dtype=np.uint64) | np.uint64(1)
        self._band_salt = rng.integers(0, 2**63, self.bands, dtype=np.uint64)
        self._keys = HashSet64()

    def shingles(self, texts: list[str], normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """32-bit hashes of the character k-grams of each normalised text, all texts in one vectorised pass.

        Returns (hashes, starts): the k-grams of text i are hashes[starts[i]:starts[i+1]]. A text shorter than k
        is padded with NULs to one k-gram, so every text has at least one. normalised=True: the texts are
        normalise_for_dedup's output already.
        """
        k = self.cfg.shingle
        norm = texts if normalised else [normalise_for_dedup(t) for t in texts]
        norm = [t if len(t) >= k else t + "\0" * (k - len(t)) for t in norm]
        lens = np.fromiter((len(t) for t in norm), dtype=np.int64, count=len(norm))
        cps = np.frombuffer("".join(norm).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        m = len(cps) - k + 1
        h = cps[:m].copy()
        for j in range(1, k):  # polynomial hash of every window of the concatenation, wrapping mod 2**64
            h *= np.uint64(0x100000001B3)
            h += cps[j : j + m]
        counts = lens - k + 1  # windows that lie inside one text
        starts = np.zeros(len(norm) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        text_starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
        keep = np.arange(starts[-1]) + np.repeat(text_starts - starts[:-1], counts)
        return (_splitmix64(h[keep]) >> np.uint64(32)).astype(np.uint32), starts

    def signatures(self, texts: list[str], normalised: bool = False) -> np.ndarray:
        """MinHash signatures, shape (len(texts), num_perm) uint32.

        Texts with at least 2 * num_perm k-grams use one-permutation hashing: instead of num_perm hash functions
        per k-gram, each k-gram hash is split, its low bits picking one of num_perm bins and its high bits being
        the value, and each bin keeps its minimum (cost O(k-grams), independent of num_perm). Almost every bin
        gets a k-gram at that length; the few empty ones borrow the next filled bin's value, salted by the distance.
        Shorter texts would leave most bins empty, and borrowed values make unrelated short texts collide, so they
        get classic MinHash (num_perm hash functions a*x + b mod 2**32), which costs little at their size. A pair
        with one text on each side of the boundary is rarely found (a missed near duplicate, never a false one).
        """
        norm = texts if normalised else [normalise_for_dedup(t) for t in texts]
        huge = [i for i, t in enumerate(norm) if len(t) > HUGE_CHARS]
        if huge:  # one at a time, in pieces: the k-gram arrays of a 20 MB text alone would take ~0.5 GB
            sig = np.empty((len(norm), self.cfg.num_perm), dtype=np.uint32)
            rest = [i for i in range(len(norm)) if len(norm[i]) <= HUGE_CHARS]
            if rest:
                sig[rest] = self.signatures([norm[i] for i in rest], normalised=True)
            for i in huge:
                sig[i] = self._huge_signature(norm[i])
            return sig
        x, starts = self.shingles(norm, normalised=True)
        n, P = len(texts), self.cfg.num_perm
        counts = np.diff(starts)
        sig = np.empty((n, P), dtype=np.uint32)
        long = counts >= 2 * P
        if long.any():
            sig[long] = self._one_permutation(x, starts, np.flatnonzero(long))
        if not long.all():
            sig[~long] = self._classic(x, starts, np.flatnonzero(~long))
        return sig

    def _huge_signature(self, text: str) -> np.ndarray:
        """The one-permutation signature of one normalised text longer than HUGE_CHARS, built from pieces that
        overlap by k - 1 characters (so they hold exactly the text's k-grams): bin minima combine by min."""
        k, P = self.cfg.shingle, self.cfg.num_perm
        bins = np.full(P, _EMPTY, dtype=np.uint32)
        for i in range(0, len(text) - k + 1, HUGE_CHARS):
            x, _ = self.shingles([text[i : i + HUGE_CHARS + k - 1]], normalised=True)
            v = self._permuted(x)
            np.minimum.at(bins, v % np.uint32(P), v // np.uint32(P))
        return self._densify(bins[None, :])[0]

    def _permuted(self, x: np.ndarray) -> np.ndarray:
        v = x ^ self._salt
        v *= self._mult  # a seeded bijection of the 32-bit hashes
        v ^= v >> np.uint32(15)
        return v

    def _one_permutation(self, x: np.ndarray, starts: np.ndarray, docs: np.ndarray) -> np.ndarray:
        P = self.cfg.num_perm
        parts = [x[starts[i] : starts[i + 1]] for i in docs]
        v = self._permuted(np.concatenate(parts))
        doc = np.repeat(np.arange(len(docs), dtype=np.int64), [len(p) for p in parts])
        sig = np.full(len(docs) * P, _EMPTY, dtype=np.uint32)
        np.minimum.at(sig, doc * P + (v % np.uint32(P)), v // np.uint32(P))
        return self._densify(sig.reshape(len(docs), P))

    @staticmethod
    def _densify(sig: np.ndarray) -> np.ndarray:
        """Empty bins borrow the next filled bin's value (circularly), salted by the distance."""
        P = sig.shape[1]
        filled = sig != _EMPTY
        if not filled.all():
            cols = np.arange(2 * P)
            idx = np.where(np.concatenate([filled, filled], axis=1), cols, 2 * P)  # (n, 2P)
            nxt = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1][:, :P]  # next filled column, circularly
            donor = np.take_along_axis(sig, nxt % P, axis=1)
            dist = (nxt - cols[:P]).astype(np.uint32)
            sig = np.where(filled, sig, donor + dist * np.uint32(0x9E3779B1))
        return sig

    def _classic(self, x: np.ndarray, starts: np.ndarray, docs: np.ndarray, block: int = 8192) -> np.ndarray:
        P = self.cfg.num_perm
        parts = [x[starts[i] : starts[i + 1]] for i in docs]
        lens = np.array([len(p) for p in parts], dtype=np.int64)
        xs = np.concatenate(parts)
        offsets = np.concatenate(([0], np.cumsum(lens)))
        out = np.empty((len(docs), P), dtype=np.uint32)
        d0 = 0
        while d0 < len(docs):  # blocks of whole texts, about `block` k-grams each (each text < 2 * P k-grams)
            d1 = int(np.searchsorted(offsets, offsets[d0] + block, side="right")) - 1
            d1 = max(d1, d0 + 1)
            rows = xs[offsets[d0] : offsets[d1]]
            buf = rows[:, None] * self._a[None, :]  # (S, P), wrapping mod 2**32
            buf += self._b[None, :]
            out[d0:d1] = np.minimum.reduceat(buf, offsets[d0:d1] - offsets[d0], axis=0)
            d0 = d1
        return out

    def signature(self, text: str) -> np.ndarray:
        """MinHash signature of one text, shape (num_perm,) uint32."""
        return self.signatures([text])[0]

    def band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """(N, bands) 64-bit keys (the band's index is mixed in, so equal rows in different bands differ)."""
        rows = sigs[:, : self.bands * self.rows].astype(np.uint64).reshape(len(sigs), self.bands, self.rows)
        return _splitmix64((rows * self._band_mult[None]).sum(axis=2) ^ self._band_salt[None])

    def duplicates(self, texts: list[str]) -> list[bool]:
        """For each text in order: True if an earlier text (in this call or before) shares a band with it.

        Texts that are not duplicates are remembered. Batching is only for speed: the answers are the same as
        calling is_duplicate on each text in turn.
        """
        if not texts:
            return []
        return self.duplicates_of_keys(self.band_keys(self.signatures(texts)))

    def duplicates_of_keys(self, keys: np.ndarray) -> list[bool]:
        """`duplicates` for texts whose band keys (band_keys(signatures(texts))) were computed elsewhere."""
        if not len(keys):
            return []
        hit = self._keys.contains_matrix(keys)
        out = []
        for row, h in zip(keys.tolist(), hit.tolist()):
            dup = h or self._keys.recent_any(row)
            if not dup:
                self._keys.add(row, merge=False)  # no merge inside the batch: `hit` holds for the sorted part as it was
            out.append(dup)
        self._keys.merge()
        return out

    def is_duplicate(self, text: str) -> bool:
        """True if an earlier text shares a band with this one; otherwise remember this one and return False."""
        return self.duplicates([text])[0]

    def memory_bytes(self) -> int:
        return self._keys.nbytes()


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """MinHash estimate of the Jaccard similarity of two texts' k-gram sets."""
    return float(np.mean(sig_a == sig_b))


def jaccard(a: str, b: str, k: int = 4) -> float:
    """Exact Jaccard similarity of the character k-gram sets (a reference for tests and for tuning)."""
    def grams(t: str) -> set[str]:
        t = normalise_for_dedup(t)
        return {t[i : i + k] for i in range(max(1, len(t) - k + 1))}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb) if ga | gb else 1.0
