"""Compiled one-row decoding (owngpt/generate/compiled.py): the compiled step gives the eager step's logits and greedy
tokens (GPT-2 and modern presets, GQA, the row left alone after a batch), compiles as one graph and never again after
its warm-up, batches stay eager, and a model it cannot serve is refused with the reason."""

from __future__ import annotations

import pytest
import torch

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


@needs_compiler
@pytest.mark.parametrize("preset,n_kv_head", [("gpt2", None), ("modern", 1)])
def test_compiled_steps_give_the_eager_logits_and_greedy_tokens(preset, n_kv_head, steps):
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


@needs_compiler
@pytest.mark.parametrize("method,head", [("int8-weight", False), ("int8-dynamic", True)])
def test_an_int8_model_compiles_around_its_own_kernels(method, head, steps):
    """owngpt quantize's models: the compiled step gives the eager int8 step's logits and greedy tokens, as one graph
    (the int8 products inside it are calls to the int8 kernels through custom ops), never compiled again after the
    warm-up."""
    from torch._dynamo.utils import counters

    from owngpt.export.quantize import quantize_model

    net = quantize_model(random_gpt(50, block=48), method, head=head)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [7], [2, 2]]
    eager = [generate_ids(net, [p], greedy(20)) for p in prompts]
    counters.clear()
    compile_decoding(net)
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    eager_runner, ours = runner_mod.Runner(net), runner_mod.Runner(net)
    with torch.no_grad():
        for r in (eager_runner, ours):
            r.join([prompts[0]])
        eager_runner.compiled_rows = False
        for t in (6, 2, 8):
            token = torch.tensor([t])
            torch.testing.assert_close(ours.step(token), eager_runner.step(token), rtol=1e-4, atol=1e-4)
    steps.clear()
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert [generate_ids(net, [p], greedy(20)) for p in prompts] == eager
    assert len(steps) == 3 * 20 and set(steps) == {1}


@needs_compiler
def test_two_int8_models_of_one_shape_each_decode_their_own_weights():
    """int8-dynamic's compiled product finds its layer's packed weights by id(): two models of the same shape with
    different weights, compiled in one process (a server with two int8 runs), each give their own eager tokens, and
    so does a deep copy compiled after them."""
    import copy

    from owngpt.export.quantize import quantize_model

    nets = [quantize_model(random_gpt(50, block=48, seed=seed), "int8-dynamic") for seed in (2, 3)]
    prompt = [5, 4, 3, 2, 1]
    eager = [generate_ids(net, [prompt], greedy(16)) for net in nets]
    assert eager[0] != eager[1]
    twin = copy.deepcopy(nets[1])
    for net in (*nets, twin):
        compile_decoding(net)
    assert [generate_ids(net, [prompt], greedy(16)) for net in (*nets, twin)] == [*eager, eager[1]]


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
