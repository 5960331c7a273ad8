"""Compiled one-row decoding (owngpt/generate/compiled.py): the compiled step gives the eager step's logits and greedy
tokens (GPT-2 and modern presets, GQA, the row left alone after a batch), compiles as one graph and never again after
its warm-up, batches stay eager, and a model it cannot serve is refused with the reason."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gen_fixtures import greedy, invoke, model, random_gpt, save_run, tok  # noqa: F401 - fixtures
from owngpt.errors import OwnGPTError
from owngpt.generate import generate_ids
from owngpt.generate import compiled as compiled_mod
from owngpt.generate import runner as runner_mod
from owngpt.generate.compiled import compile_decoding, compiled

needs_compiler = pytest.mark.skipif(not compiled_mod.has_cpp_compiler(), reason="torch.compile's CPU kernels need g++")


@pytest.fixture
def steps(monkeypatch):
    """How many rows each compiled step decoded."""
    calls = []
    real = runner_mod.decode_step
    monkeypatch.setattr(runner_mod, "decode_step", lambda m, ids, c: calls.append(ids.size(0)) or real(m, ids, c))
    return calls


@pytest.fixture
def left_in_graphs(monkeypatch):
    """For each graph the compiled step hands to Inductor: (calls rewritten, F.linear calls left, SDPA calls left)."""
    seen = []
    real = compiled_mod._one_row_rewrites

    def rewrite(gm):
        done = real(gm)
        left = [sum(n.op == "call_function" and n.target is f for n in gm.graph.nodes)
                for f in (F.linear, F.scaled_dot_product_attention)]
        seen.append((done, *left))
        return done

    monkeypatch.setattr(compiled_mod, "_one_row_rewrites", rewrite)
    return seen


@needs_compiler
@pytest.mark.parametrize("preset,n_kv_head", [("gpt2", None), ("modern", 1)])
def test_compiled_steps_give_the_eager_logits_and_greedy_tokens(preset, n_kv_head, steps, left_in_graphs):
    """...and every product and attention of one row in the graphs Inductor gets is in its rewritten form."""
    from torch._dynamo.utils import counters

    net = random_gpt(50, preset=preset, block=48, n_kv_head=n_kv_head)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    prompts = [prompt, [7], [2, 2]]  # one- and two-token prompts too: the warm-up's shapes
    eager = [generate_ids(net, [p], greedy(30)) for p in prompts]
    eager_runner = runner_mod.Runner(net)
    counters.clear()
    compile_decoding(net)
    assert compiled(net)
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]  # one graph per version
    ours = runner_mod.Runner(net)
    with torch.no_grad():
        for r in (eager_runner, ours):
            r.join([prompt])
        eager_runner.compiled_rows = False  # the same model, stepped eagerly
        for t in (6, 2, 8):
            token = torch.tensor([t])
            torch.testing.assert_close(ours.step(token), eager_runner.step(token), rtol=1e-5, atol=1e-5)
    steps.clear()
    with torch._dynamo.config.patch(error_on_recompile=True):  # after the warm-up nothing compiles again
        assert [generate_ids(net, [p], greedy(30)) for p in prompts] == eager  # caches of other lengths too
    assert len(steps) == 3 * 30 and set(steps) == {1}  # every decode step of each row went through the compiled step
    # 2 layers of 4 products (the modern preset's gate and up projections are one matrix), the head, 2 attentions
    assert left_in_graphs and all(left == (2 * 4 + 1 + 2, 0, 0) for left in left_in_graphs)


@pytest.mark.parametrize("heads,kv_heads,mask", [(4, 4, None), (4, 2, None), (4, 1, "bool"), (4, 4, "float"),
                                                 (6, 3, "bool")])
def test_one_query_attention_is_sdpa(heads, kv_heads, mask):
    """The compiled step's attention of one query (_one_query_attention) gives torch's SDPA result: grouped KV heads,
    a padding mask (bool, or added to the scores) and an explicit scale."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, heads, 1, 8, generator=g)
    k, v = (torch.randn(2, kv_heads, 7, 8, generator=g) for _ in range(2))
    attn_mask = None
    if mask == "bool":
        attn_mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
        attn_mask[0, ..., :3] = False  # the first row's first three positions are padding
    elif mask == "float":
        attn_mask = torch.randn(2, 1, 1, 7, generator=g)
    gqa = {"enable_gqa": True} if heads != kv_heads else {}
    for scale in (None, 0.3):
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale, **gqa)
        got = compiled_mod._one_query_attention(q, k, v, attn_mask=attn_mask, scale=scale, **gqa)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bias", [False, True])
def test_row_sum_is_linear(bias):
    """Of a contiguous row (taken with as_strided) and of a row whose elements are strided (reshaped)."""
    g = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(1, 1, 12, generator=g), torch.randn(5, 12, generator=g), torch.randn(5, generator=g)
    b = b if bias else None
    strided = torch.randn(1, 12, 2, generator=g)[..., 0]  # stride 2 along the row
    sliced = torch.randn(1, 1, 20, generator=g)[..., 4:16]  # a view at an offset into its storage
    for row in (x, sliced, strided):
        torch.testing.assert_close(compiled_mod._row_sum(row, w, b), F.linear(row, w, b))


@needs_compiler
def test_batches_stay_eager_and_a_row_left_alone_is_compiled(steps):
    """Two prompts of different lengths: while both decode, the steps run eagerly; once the longer prompt's row
    has stopped (at a stop id), the other continues alone through the compiled step, with the tokens it gets alone."""
    net = random_gpt(50, block=64, seed=1)
    short, long = [7, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]
    stop = generate_ids(net, [long], greedy(20))[0][3]  # the longer row stops at its 4th token
    first = generate_ids(net, [short], greedy(20))[0]
    if stop in first:  # keep the short row going: another stop id that it never emits
        stop = next(t for t in generate_ids(net, [long], greedy(20))[0] if t not in first)
    alone = [generate_ids(net, [p], greedy(20), stop_ids=[stop])[0] for p in (short, long)]
    assert len(alone[1]) < len(alone[0])
    compile_decoding(net)
    steps.clear()
    assert generate_ids(net, [short, long], greedy(20), stop_ids=[stop]) == alone
    assert steps and set(steps) == {1} and len(steps) < 20  # only the steps the short row took alone


@needs_compiler
def test_cli_generate_compile_prints_the_eager_text(tok, model, tmp_path, steps):
    from owngpt.generate import generate

    run = save_run(tmp_path, tok, model)
    args = ["generate", str(run), "the quick", "--max-new-tokens", "12", "--temperature", "0", "--device", "cpu"]
    want = generate(model, tok, ["the quick"], greedy(12), stop_ids=[tok.eot_id, tok.im_end_id])[0]
    result = invoke([*args, "--compile"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the quick" + want) and steps  # the reply's steps went through the compiled step


@needs_compiler
def test_chat_and_serve_load_their_models_compiled(tok, model, tmp_path):
    """`chat --compile` and `serve --compile` reach compile_decoding through their loaders."""
    from owngpt.chat.reply import load_reply_model
    from owngpt.serve.models import load_served

    run = save_run(tmp_path, tok, model)
    assert compiled(load_reply_model(run, device="cpu", compile=True).model)
    assert not compiled(load_reply_model(run, device="cpu").model)
    served = load_served([str(run)], device="cpu", compile=True)
    assert all(compiled(m.reply.model) for m in served.values())


def assert_greedy_of(net, prompt: list[int], tokens: list[int], tol: float = 0.1) -> None:
    """Each of `tokens`, a greedy continuation of `prompt`, is `net`'s eager top token after what precedes it, or
    within `tol` of that token's logit. For the frozen int8-weight step: Inductor's template rounds its products to
    bf16 as the eager kernel does but sums in another order, so logits differ by ~0.5% (as far from the dequantized
    fp32 model's as the eager ones) and a near tie may go the other way."""
    with torch.no_grad():
        logits = net(torch.tensor([prompt + tokens[:-1]]))[0, len(prompt) - 1:]  # eager: the whole sequence at once
    chosen = logits.gather(1, torch.tensor(tokens)[:, None])[:, 0]
    assert bool((chosen >= logits.max(-1).values - tol).all()), (chosen, logits.max(-1).values)


@needs_compiler
@pytest.mark.parametrize("method,head,width,preset", [("int8-weight", False, 32, "modern"),
                                                      ("int8-weight", True, 36, "gpt2"),
                                                      ("int8-dynamic", True, 32, "gpt2")])
def test_an_int8_model_compiles_to_the_eager_tokens(method, head, width, preset, steps):
    """owngpt quantize's models compile as one graph, never compiled again after the warm-up. An int8-dynamic model's
    products stay calls to fbgemm through a custom op: the eager step's logits and greedy tokens. An int8-weight
    model's weights are frozen in and its products are Inductor's int8 template (also at a width that is not a
    multiple of 8: the weights padded with zero columns): logits within 2% (relative L2; measured 0.2-0.7%) and
    greedy tokens the eager model's up to near ties (assert_greedy_of). The modern preset with grouped KV heads too:
    nothing else in its step needs a choice the template alone cannot give."""
    from torch._dynamo.utils import counters

    from owngpt.export.quantize import quantize_model

    net = quantize_model(random_gpt(50, preset, block=48, n_embd=width, n_kv_head=1 if preset == "modern" else None),
                         method, head=head)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [7], [2, 2]]
    eager = [generate_ids(net, [p], greedy(20)) for p in prompts]
    counters.clear()
    compile_decoding(net)
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    templates = counters["inductor"]["cpp_templated_kernel_counter"]
    if method == "int8-weight":  # every int8 product of each compiled version (2 layers x 4, and the head)
        assert compiled_mod._FROZEN[net] == "CPP" and templates == counters["stats"]["unique_graphs"] * (8 + head)
    else:
        assert net not in compiled_mod._FROZEN and templates == 0
    eager_runner, ours = runner_mod.Runner(net), runner_mod.Runner(net)
    with torch.no_grad():
        for r in (eager_runner, ours):
            r.join([prompts[0]])
        eager_runner.compiled_rows = False
        for t in (6, 2, 8):
            token = torch.tensor([t])
            got, want = ours.step(token), eager_runner.step(token)
            if method == "int8-dynamic":
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
            else:
                assert float((got - want).norm() / want.norm()) < 0.02
    steps.clear()
    with torch._dynamo.config.patch(error_on_recompile=True):
        ours = [generate_ids(net, [p], greedy(20)) for p in prompts]
    assert len(steps) == 3 * 20 and set(steps) == {1}
    if method == "int8-dynamic":
        assert ours == eager
    else:
        for p, (row,) in zip(prompts, ours):
            assert_greedy_of(net, p, row)


@needs_compiler
def test_an_int8_weight_model_the_template_cannot_take_compiles_with_atens_kernel(monkeypatch):
    """When Inductor finds no choice for the products with the first backends (here Triton's, which makes no CPU
    GEMMs), the model is compiled again with the next (ATen's kernel alone): one graph, no template, and the eager
    model's greedy tokens."""
    from torch._dynamo.utils import counters

    from owngpt.export.quantize import quantize_model

    monkeypatch.setattr(compiled_mod, "FROZEN_BACKENDS", ("TRITON", "ATEN"))
    monkeypatch.setattr(compiled_mod, "_frozen_steps", {})
    net = quantize_model(random_gpt(50, block=48, seed=4), "int8-weight")
    counters.clear()
    compile_decoding(net)
    assert compiled_mod._FROZEN[net] == "ATEN"
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    assert counters["inductor"]["cpp_templated_kernel_counter"] == 0
    assert_greedy_of(net, [4, 4, 2], generate_ids(net, [[4, 4, 2]], greedy(12))[0])


def test_only_no_choice_errors_move_on_to_the_next_backends():
    """A compile error for another reason (a broken compiler, out of memory) is not retried with other backends."""
    from torch._inductor.select_algorithm import NoValidChoicesError

    try:
        try:
            raise NoValidChoicesError("no choices")
        except NoValidChoicesError as inner:
            raise RuntimeError("lowering failed") from inner
    except RuntimeError as e:
        assert compiled_mod._no_choice(e)
    assert not compiled_mod._no_choice(RuntimeError("g++ crashed"))


@needs_compiler
@pytest.mark.parametrize("method", ["int8-weight", "int8-dynamic"])
def test_two_int8_models_of_one_shape_each_decode_their_own_weights(method):
    """Two models of the same shape with different weights, compiled in one process (a server with two int8 runs),
    each give their own eager tokens, and so does a deep copy compiled after them: int8-weight's compiled versions
    hold the weights as constants (dynamo guards them by identity), int8-dynamic's product finds its layer's packed
    weights by id()."""
    import copy

    from owngpt.export.quantize import quantize_model

    nets = [quantize_model(random_gpt(50, block=48, seed=seed), method) for seed in (2, 3)]
    prompt = [5, 4, 3, 2, 1]
    eager = [generate_ids(net, [prompt], greedy(16)) for net in nets]
    assert eager[0] != eager[1]
    twin = copy.deepcopy(nets[1])
    for net in (*nets, twin):
        compile_decoding(net)
    ours = [generate_ids(net, [prompt], greedy(16)) for net in (*nets, twin)]
    if method == "int8-dynamic":
        assert ours == [*eager, eager[1]]
    else:  # up to near ties (assert_greedy_of)
        for net, (row,) in zip((*nets, twin), ours):
            assert_greedy_of(net, prompt, row)
        assert ours[0] != ours[1]


def test_a_model_without_a_kv_cache_or_a_compiler_is_refused(monkeypatch):
    class NoCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    with pytest.raises(OwnGPTError, match="KV cache"):
        compile_decoding(NoCache())
    with pytest.raises(OwnGPTError, match="--dtype float32"):
        compile_decoding(random_gpt(50).to(torch.bfloat16))
    monkeypatch.setattr(compiled_mod.shutil, "which", lambda name: None)
    with pytest.raises(OwnGPTError, match="C\\+\\+ compiler"):
        compile_decoding(random_gpt(50))
