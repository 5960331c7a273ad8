"""Blind rating without the web: the statistics (Wilson interval by hand, Bradley-Terry against known strengths and
an independent maximum-likelihood fit, bootstrap coverage), the prompts file's errors (file:line), the database
(made once, refusing other prompts, models or settings), which item a rater gets on which side, and replies
generated once through THE reply path."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
import torch

from owngpt.chat import chat_generation_config
from owngpt.chat.reply import ReplyModel, replies
from owngpt.errors import OwnGPTError
from owngpt.evaluate.pairwise import (Outcome, bootstrap_ratings, bradley_terry, elo, pair_results, points_matrix,
                                      ranking, wilson)
from owngpt.evaluate.rating import (RatedModel, RatingDB, RatingError, generate_replies, read_prompts, results)
from serve_fixtures import SYSTEM, char_tokenizer, tiny_gpt

GEN = {"seed": 0, "temperature": 0.8, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1, "max_new_tokens": 12}
MODELS = [RatedModel("alpha", "runs/alpha", "a" * 64), RatedModel("beta", "runs/beta", "b" * 64),
          RatedModel("gamma", "runs/gamma", "c" * 64)]


# ----------------------------------------------------------------------------- statistics


def test_wilson_interval_matches_a_hand_computed_case():
    # 7 of 10, z = 1.96: centre (0.7 + 1.96²/20) / (1 + 1.96²/10) = 0.64449, half-width
    # 1.96 sqrt(0.7 * 0.3 / 10 + 1.96² / 400) / 1.38416 = 0.24772 -> (0.3968, 0.8922), the textbook values
    low, high = wilson(7, 10)
    assert low == pytest.approx(0.3968, abs=2e-4) and high == pytest.approx(0.8922, abs=2e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(10, 10) == pytest.approx((10 / (10 + 1.96**2), 1.0), abs=2e-4)  # all wins: n / (n + z²) to 1


def test_pair_counts_follow_the_sides_and_ties_count_half():
    # alpha (0) against beta (1): 6 wins (some shown right), 2 ties, 1 both-bad, 1 loss
    outcomes = ([Outcome(0, 1, "left")] * 3 + [Outcome(1, 0, "right")] * 3 + [Outcome(0, 1, "tie")] * 2
                + [Outcome(1, 0, "both_bad")] + [Outcome(1, 0, "left")])
    (row,) = pair_results(outcomes, ["alpha", "beta"])
    assert (row.a, row.b, row.wins, row.losses, row.ties, row.both_bad, row.judgements) == ("alpha", "beta", 6, 1, 2, 1, 10)
    assert row.win_rate == pytest.approx(0.75)
    assert (row.low, row.high) == pytest.approx(wilson(7.5, 10))


def simulate(true_log_p: np.ndarray, n: int, seed: int, ties: float = 0.0) -> list[Outcome]:
    """n judgements of random pairs on random sides from a Bradley-Terry model (with a share of ties)."""
    rng = np.random.default_rng(seed)
    k = len(true_log_p)
    out = []
    for _ in range(n):
        left, right = rng.choice(k, size=2, replace=False)
        if rng.random() < ties:
            out.append(Outcome(int(left), int(right), "tie"))
            continue
        p_left = 1 / (1 + math.exp(true_log_p[right] - true_log_p[left]))
        out.append(Outcome(int(left), int(right), "left" if rng.random() < p_left else "right"))
    return out


def test_bradley_terry_recovers_known_strengths():
    truth = np.array([-1.0, -0.3, 0.4, 0.9])
    fitted = bradley_terry(points_matrix(simulate(truth, 8000, seed=1), 4), prior_ties=0.0)
    assert np.abs(fitted - (truth - truth.mean())).max() < 0.1
    assert list(np.argsort(fitted)) == [0, 1, 2, 3]


def test_bradley_terry_matches_an_independent_maximum_likelihood_fit():
    outcomes = simulate(np.array([0.0, 0.5, -0.4]), 60, seed=2, ties=0.2) + [Outcome(0, 2, "both_bad")]
    w = points_matrix(outcomes, 3) + 0.5 * (1 - np.eye(3))  # the one virtual tie per pair bradley_terry adds

    # the logistic-regression form, minimised by L-BFGS: -sum_ij w_ij log sigmoid(theta_i - theta_j)
    weights = torch.tensor(w)
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (weights * torch.nn.functional.softplus(theta[None, :] - theta[:, None])).sum()
        loss.backward()
        return loss

    opt.step(closure)
    independent = (theta - theta.mean()).detach().numpy()
    np.testing.assert_allclose(bradley_terry(points_matrix(outcomes, 3)), independent, atol=1e-5)
    # the batched fit is the same fit, row by row
    batch = np.stack([points_matrix(outcomes, 3), points_matrix(outcomes[:30], 3)])
    np.testing.assert_allclose(bradley_terry(batch)[1], bradley_terry(points_matrix(outcomes[:30], 3)), atol=1e-9)


def test_a_model_that_never_won_keeps_a_finite_rating():
    ratings = elo(bradley_terry(points_matrix([Outcome(0, 1, "left")] * 5 + [Outcome(1, 2, "left")] * 5, 3)))
    assert np.all(np.isfinite(ratings)) and ratings[0] > ratings[1] > ratings[2]
    assert ratings.mean() == pytest.approx(1000.0)


def test_bootstrap_intervals_cover_the_true_ratings_and_are_seeded():
    truth = np.array([-0.5, 0.0, 0.6])
    true_elo = elo(truth)
    covered = total = 0
    for rep in range(40):
        outcomes = simulate(truth, 240, seed=100 + rep)
        low, high = np.percentile(bootstrap_ratings(outcomes, 3, samples=200, seed=rep), [2.5, 97.5], axis=0)
        covered += int(((low <= true_elo) & (true_elo <= high)).sum())
        total += 3
    assert covered / total >= 0.85, f"95% intervals covered the truth {covered} of {total} times"
    outcomes = simulate(truth, 50, seed=7)
    np.testing.assert_array_equal(bootstrap_ratings(outcomes, 3, 50, seed=3), bootstrap_ratings(outcomes, 3, 50, seed=3))
    ranked = ranking(outcomes, ["a", "b", "c"], samples=100)
    assert [r.rank for r in ranked] == [1, 2, 3] and all(r.low <= r.rating <= r.high for r in ranked)
    assert sum(r.judgements for r in ranked) == 2 * len(outcomes)


# ----------------------------------------------------------------------------- the prompts file


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_prompts_plain_text_and_jsonl(tmp_path):
    plain = read_prompts(write(tmp_path / "p.txt", "\ufeffHello there!\n\n  你好，你叫什么名字？  \r\n"))
    assert [p.messages for p in plain] == [[{"role": "user", "content": "Hello there!"}],
                                           [{"role": "user", "content": "你好，你叫什么名字？"}]]
    assert plain[1].source.endswith("p.txt:3")
    lines = ['{"prompt": "hi"}', "", '{"messages": [{"role": "system", "content": "Be brief."}, '
             '{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}']
    jsonl = read_prompts(write(tmp_path / "p.jsonl", "\n".join(lines)))
    assert jsonl[0].messages == [{"role": "user", "content": "hi"}] and len(jsonl[1].messages) == 4
    assert jsonl[1].source.endswith("p.jsonl:3")


@pytest.mark.parametrize("name,text,message", [
    ("p.jsonl", '{"prompt": "ok"}\n{"prompt": "x",}\n', "p.jsonl:2: not valid JSON"),
    ("p.jsonl", '{"prompt": "ok"}\n\n["a list"]\n', 'p.jsonl:3: each line must be an object with either "prompt"'),
    ("p.jsonl", '{"prompt": "a", "messages": []}\n', "p.jsonl:1: each line must be an object"),
    ("p.jsonl", '{"prompt": "  "}\n', 'p.jsonl:1: "prompt" must be non-empty text'),
    ("p.jsonl", '{"prompt": "a"}\n{"messages": [{"role": "bot", "content": "hi"}]}\n',
     "p.jsonl:2: messages[0]: unknown role 'bot'"),
    ("p.jsonl", '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n',
     'p.jsonl:1: "messages" must end with a user message'),
    ("p.txt", b"fine\n\xff\xfe broken\n", "p.txt:2: not UTF-8 text"),
    ("p.txt", '{"prompt": "hi"}\n', "p.txt:1: this line is a JSON object"),
    ("p.txt", "\n  \n", "holds no prompt"),
])
def test_prompts_file_errors_name_file_and_line(tmp_path, name, text, message):
    with pytest.raises(OwnGPTError, match=message.replace("[", r"\[").replace("(", r"\(")):
        read_prompts(write(tmp_path / name, text))
    with pytest.raises(OwnGPTError, match="prompts file .*missing.txt"):
        read_prompts(tmp_path / "missing.txt")


# ----------------------------------------------------------------------------- the database


@pytest.fixture
def prompts(tmp_path):
    return read_prompts(write(tmp_path / "prompts.txt", "one\ntwo\n三\nfour\n"))


def filled(db: RatingDB) -> RatingDB:
    """Every reply stored without a model: 'MODEL says PROMPT'."""
    for m in db.models():
        db.add_replies(m.sha256, {i: f"{m.name} says {p.messages[-1]['content']}" for i, p in enumerate(db.prompts())})
    return db


def test_a_database_refuses_other_prompts_models_and_settings(tmp_path, prompts):
    path = tmp_path / "ratings.sqlite"
    RatingDB.create_or_check(path, prompts, MODELS, GEN).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.txt", "ratings.sqlite"]  # one file, no temp left
    moved = [RatedModel(m.name, "elsewhere/" + m.name, m.sha256) for m in reversed(MODELS)]
    RatingDB.create_or_check(path, prompts, moved, GEN).close()  # same weights moved and in another order: fine
    other = read_prompts(write(tmp_path / "other.txt", "one\ntwo\nthree\nfour\n"))
    with pytest.raises(OwnGPTError, match=r"made for other prompts: .*other.txt:3 is 'three', where the database has "
                                          r"'三' \(.*prompts.txt:3\).*--db OTHER.sqlite"):
        RatingDB.create_or_check(path, other, MODELS, GEN)
    with pytest.raises(OwnGPTError, match=r"made for 4 prompts \(from .*prompts.txt\); this prompts file has 2"):
        RatingDB.create_or_check(path, prompts[:2], MODELS, GEN)
    retrained = MODELS[:2] + [RatedModel("gamma", "runs/gamma", "d" * 64)]
    with pytest.raises(OwnGPTError, match=r"other models: not given: gamma \(runs/gamma, sha256 cccccccccccc\); not in "
                                          r"the database: runs/gamma \(sha256 dddddddddddd\).*--db OTHER.sqlite"):
        RatingDB.create_or_check(path, prompts, retrained, GEN)
    with pytest.raises(OwnGPTError, match=r"other settings: temperature 0.8 \(now 0.5\)"):
        RatingDB.create_or_check(path, prompts, MODELS, {**GEN, "temperature": 0.5})
    with pytest.raises(OwnGPTError, match="runs/a and runs/b are the same checkpoint"):
        RatingDB.create_or_check(tmp_path / "new.sqlite", prompts,
                                 [RatedModel("a", "runs/a", "e" * 64), RatedModel("b", "runs/b", "e" * 64)], GEN)
    sqlite3.connect(tmp_path / "foreign.sqlite").execute("CREATE TABLE t (x)")
    with pytest.raises(OwnGPTError, match="not an owngpt rating database"):
        RatingDB.open(tmp_path / "foreign.sqlite")
    with pytest.raises(OwnGPTError, match="no rating database at .*nothing.sqlite"):
        RatingDB.open(tmp_path / "nothing.sqlite")


def test_raters_get_every_item_once_with_balanced_sides(tmp_path, prompts):
    db = filled(RatingDB.create_or_check(tmp_path / "r.sqlite", prompts, MODELS, GEN))
    assert db.item_count() == 4 * 3
    verdicts = ["left", "right", "tie", "both_bad"]
    for rater in ("ann", "bo", "李雷"):
        seen, sides = set(), {}
        first = db.next_item(rater)
        assert db.next_item(f"  {rater} ").id == first.id  # not judged yet: the same item again (name stripped)
        for n in range(12):
            item = db.next_item(rater)
            assert item.id not in seen and (item.done, item.total) == (n, 12)
            seen.add(item.id)
            prompt = item.messages[-1]["content"]
            left, right = item.left.split(" says ")[0], item.right.split(" says ")[0]
            assert item.left.endswith(prompt) and item.right.endswith(prompt) and left != right
            pair = tuple(sorted((left, right)))
            sides.setdefault(pair, []).append(left == pair[0])
            assert db.judge(rater, item.id, verdicts[n % 4], "好" if n == 0 else "") == (n + 1, 12)
        assert db.next_item(rater) is None and db.progress(rater) == (12, 12)
        for pair, on_left in sides.items():  # each pair on each side equally often: 4 prompts -> 2 and 2
            assert sum(on_left) == 2, (rater, pair, on_left)
    judged = db.judgements()
    assert len(judged) == 36 and judged[0]["comment"] == "好"
    # the database records which model was shown on which side, as the rater saw it
    names = [m.name for m in db.models()]
    for j in judged:
        assert {names[j["left"]], names[j["right"]]} <= set(names) and j["left"] != j["right"]
    report = results(db, samples=50)
    assert report["judgements"] == 36 and report["raters"] == ["ann", "bo", "李雷"]
    assert sum(p["judgements"] for p in report["pairs"]) == 36 and len(report["ranking"]) == 3
    db.close()


def test_judging_mistakes_are_named(tmp_path, prompts):
    db = filled(RatingDB.create_or_check(tmp_path / "r.sqlite", prompts, MODELS[:2], GEN))
    item = db.next_item("ann")
    cases = [(("ann", item.id, "better"), "bad_request", "verdict must be one of left, right, tie, both_bad"),
             (("ann", 999, "left"), "not_found", "no item 999"),
             (("", item.id, "left"), "bad_request", "a rater name is needed"),
             (("x" * 65, item.id, "left"), "bad_request", "at most 64 characters"),
             (("bo", item.id, "left"), "not_found", "no rater 'bo'")]
    other = next(i for i in range(1, 5) if i != item.id)
    cases.append((("ann", other, "left"), "conflict", f"item {other} was not shown to 'ann'"))
    for args, kind, message in cases:
        with pytest.raises(RatingError, match=message) as e:
            db.judge(*args)
        assert e.value.kind == kind
    db.judge("ann", item.id, "tie")
    with pytest.raises(RatingError, match=f"'ann' has already judged item {item.id}") as e:
        db.judge("ann", item.id, "left")
    assert e.value.kind == "conflict"
    with pytest.raises(RatingError, match="at most 2,000"):
        db.judge("ann", db.next_item("ann").id, "left", "x" * 2001)
    db.close()


def test_replies_are_generated_once_through_the_reply_path(tmp_path, prompts):
    tok = char_tokenizer()
    models = {m.sha256: ReplyModel(tiny_gpt(tok, seed=i), tok, None, SYSTEM) for i, m in enumerate(MODELS[:2])}
    loaded = []

    def load(m: RatedModel) -> ReplyModel:
        loaded.append(m.name)
        return models[m.sha256]

    path = tmp_path / "r.sqlite"
    gen = chat_generation_config(**GEN)
    with RatingDB.create_or_check(path, prompts, MODELS[:2], GEN) as db:
        db.add_replies("a" * 64, {0: "stored before"})  # a stopped run resumes: only the missing replies are made
        assert generate_replies(db, load, gen, progress=lambda line: None) == 7
        assert db.missing_replies() == {}
    with RatingDB.create_or_check(path, prompts, MODELS[:2], GEN) as db:
        assert generate_replies(db, load, gen, progress=lambda line: None) == 0  # a restart regenerates nothing
        rows = dict(((p, m), t) for p, m, t in db.conn.execute("SELECT prompt_id, model_id, text FROM replies"))
    assert loaded == ["alpha", "beta"]
    assert rows[(1, 1)] == "stored before"
    for index, prompt in enumerate(prompts):  # each reply is the one that prompt gets alone, as `owngpt chat` gives it
        for model_index, m in enumerate(MODELS[:2], 1):
            if (index, model_index) == (0, 1):
                continue
            alone = replies(models[m.sha256].model, tok, [prompt.messages], gen, system=SYSTEM)[0]
            assert rows[(index + 1, model_index)] == alone
