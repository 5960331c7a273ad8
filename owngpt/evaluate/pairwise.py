"""Statistics of pairwise judgements ("A's reply is better than B's"): win rates with Wilson score intervals, and a
Bradley-Terry ranking with bootstrap intervals, as chat arenas report them (no database, no web: numbers in, numbers
out; owngpt/evaluate/rating.py feeds it the judgements of `owngpt rate`).

Scoring: a win is 1 point, a loss 0, a tie or "both bad" half a point to each side (both-bad says neither reply is
better, which is a tie as far as the ranking goes; the tables still count it apart).

  win rate        (wins + ties/2) / judgements of one pair, with the 95% Wilson score interval (better than the
                  normal approximation at small counts and near 0 or 1; exact counts of halves are used as is)
  Bradley-Terry   P(i beats j) = p_i / (p_i + p_j), fitted by maximum likelihood with Hunter's MM (Zermelo)
                  iterations; one virtual tie per pair of models is added (a weak prior: a model that never won keeps
                  a finite rating, and the fit exists whatever the data). Shown on the Elo scale chat arenas use:
                  rating = 1000 + 400 * log10(p_i), mean over models 1000, so a 100-point gap is P(win) = 0.64.
  intervals       2.5th and 97.5th percentiles of the ratings refitted on bootstrap resamples of the judgements
                  (seeded: the same seed gives the same intervals).

Not handled: rater effects (every judgement weighs the same), order effects beyond balancing left and right.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054  # the normal quantile of 0.975
ELO_BASE, ELO_SCALE = 1000.0, 400.0
PRIOR_TIES = 1.0  # virtual ties added to every pair of models (half a point each way per tie)
POINTS = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}  # the left model's points per verdict


@dataclass(frozen=True)
class Outcome:
    """One judgement: model indices shown left and right, and the verdict (a key of POINTS)."""

    left: int
    right: int
    verdict: str


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion successes / n (successes may hold halves); (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class PairResult:
    """One pair of models (a, b) from a's side: counts, win rate (ties as half) and its 95% Wilson interval."""

    a: str
    b: str
    wins: int
    losses: int
    ties: int
    both_bad: int
    judgements: int
    win_rate: float
    low: float
    high: float


def pair_results(outcomes: Sequence[Outcome], names: Sequence[str]) -> list[PairResult]:
    """A row for every pair of models that has judgements, in model order (a before b)."""
    counts: dict[tuple[int, int], dict[str, int]] = {}
    for o in outcomes:
        a, b = sorted((o.left, o.right))
        c = counts.setdefault((a, b), {"wins": 0, "losses": 0, "ties": 0, "both_bad": 0})
        if o.verdict in ("tie", "both_bad"):
            c["ties" if o.verdict == "tie" else "both_bad"] += 1
        else:
            a_won = (o.verdict == "left") == (o.left == a)
            c["wins" if a_won else "losses"] += 1
    rows = []
    for (a, b), c in sorted(counts.items()):
        n = sum(c.values())
        points = c["wins"] + 0.5 * (c["ties"] + c["both_bad"])
        rows.append(PairResult(names[a], names[b], **c, judgements=n, win_rate=points / n, low=wilson(points, n)[0],
                               high=wilson(points, n)[1]))
    return rows


def points_matrix(outcomes: Sequence[Outcome], k: int) -> np.ndarray:
    """(k, k) points: [i, j] = points model i earned against model j."""
    w = np.zeros((k, k))
    for o in outcomes:
        s = POINTS[o.verdict]
        w[o.left, o.right] += s
        w[o.right, o.left] += 1 - s
    return w


def bradley_terry(points: np.ndarray, prior_ties: float = PRIOR_TIES, tol: float = 1e-10,
                  max_iter: int = 100_000) -> np.ndarray:
    """Log-strengths (mean 0) maximising the Bradley-Terry likelihood of `points` ((k, k) or a batch (B, k, k)),
    with `prior_ties` virtual ties added to every pair. Hunter's MM update p_i <- W_i / sum_j n_ij / (p_i + p_j)
    increases the likelihood every step; it stops when no log-strength moves by more than `tol`."""
    w = np.asarray(points, dtype=np.float64)
    single = w.ndim == 2
    w = w[None] if single else w
    k = w.shape[-1]
    w = w + 0.5 * prior_ties * (1 - np.eye(k))
    n = w + np.swapaxes(w, -1, -2)  # games between i and j (diagonal 0)
    won = w.sum(-1)  # (B, k)
    if np.any(won <= 0):
        raise ValueError("a model with no points and no prior has no finite Bradley-Terry strength")
    log_p = np.zeros(won.shape)
    for _ in range(max_iter):
        p = np.exp(log_p)
        denom = (n / (p[..., :, None] + p[..., None, :])).sum(-1)
        new = np.log(won) - np.log(denom)
        new -= new.mean(-1, keepdims=True)
        moved = np.abs(new - log_p).max()
        log_p = new
        if moved < tol:
            break
    return log_p[0] if single else log_p


def elo(log_p: np.ndarray) -> np.ndarray:
    """Log-strengths on the Elo scale: 1000 + 400 log10(p), centred at 1000."""
    return ELO_BASE + ELO_SCALE * (log_p - log_p.mean(-1, keepdims=True)) / math.log(10)


def bootstrap_ratings(outcomes: Sequence[Outcome], k: int, samples: int = 1000, seed: int = 0,
                      prior_ties: float = PRIOR_TIES) -> np.ndarray:
    """(samples, k) Elo ratings refitted on `samples` resamples (with replacement) of the judgements."""
    if not outcomes:
        return np.full((samples, k), ELO_BASE)
    rng = np.random.default_rng(seed)
    left = np.array([o.left for o in outcomes])
    right = np.array([o.right for o in outcomes])
    score = np.array([POINTS[o.verdict] for o in outcomes])
    draws = rng.integers(0, len(outcomes), size=(samples, len(outcomes)))
    batch = np.repeat(np.arange(samples), len(outcomes)) * k * k
    li, ri, s = left[draws].ravel(), right[draws].ravel(), score[draws].ravel()
    flat = np.bincount(batch + li * k + ri, weights=s, minlength=samples * k * k)
    flat += np.bincount(batch + ri * k + li, weights=1 - s, minlength=samples * k * k)
    return elo(bradley_terry(flat.reshape(samples, k, k), prior_ties))


@dataclass
class Ranked:
    """One model's place in the Bradley-Terry ranking."""

    rank: int
    model: str
    rating: float
    low: float
    high: float
    judgements: int
    win_rate: float  # points / judgements over all its opponents (ties as half)


def ranking(outcomes: Sequence[Outcome], names: Sequence[str], samples: int = 1000, seed: int = 0) -> list[Ranked]:
    """Models best first: Bradley-Terry Elo ratings with 2.5-97.5 percentile bootstrap intervals."""
    k = len(names)
    w = points_matrix(outcomes, k)
    ratings = elo(bradley_terry(w))
    boot = bootstrap_ratings(outcomes, k, samples, seed)
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    games = (w + w.T).sum(1)
    order = sorted(range(k), key=lambda i: -ratings[i])
    return [Ranked(place, names[i], float(ratings[i]), float(low[i]), float(high[i]), int(round(games[i])),
                   float(w[i].sum() / games[i]) if games[i] else 0.0) for place, i in enumerate(order, 1)]


def summary(outcomes: Sequence[Outcome], names: Sequence[str], samples: int = 1000, seed: int = 0) -> dict:
    """Pairs and (with three or more models) the ranking, as plain data (the --json of `owngpt rate --results`)."""
    out = {"models": list(names), "judgements": len(outcomes),
           "pairs": [asdict(r) for r in pair_results(outcomes, names)],
           "win_rate": {"ties": "half a win", "interval": "95% Wilson score"}, "ranking": None}
    if len(names) >= 3:
        out["ranking"] = [asdict(r) for r in ranking(outcomes, names, samples, seed)]
        out["bradley_terry"] = {"fit": "maximum likelihood, MM iterations", "ties": "half a win each",
                                "prior": f"{PRIOR_TIES:g} virtual tie per pair", "scale": "1000 + 400 log10(p)",
                                "interval": f"95% percentile bootstrap, {samples} resamples of the judgements",
                                "samples": samples, "seed": seed}
    return out
