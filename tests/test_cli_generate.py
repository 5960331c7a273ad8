"""The `owngpt generate` CLI."""

from __future__ import annotations


import pytest
import torch

from gen_fixtures import greedy, invoke, model, save_run, tok  # noqa: F401 - fixtures
from owngpt.generate import (
    generate,
)
from owngpt.model.gpt import GPT


def test_cli_generate(tok, model, tmp_path, capsys):
    run = save_run(tmp_path, tok, model)
    common = ["--max-new-tokens", "15", "--temperature", "0", "--device", "cpu"]
    want = generate(model, tok, ["the quick", "hello"], greedy(15), stop_ids=[tok.eot_id, tok.im_end_id])
    one = invoke(["generate", str(run), "the quick", *common])
    assert one.exit_code == 0, one.output
    assert one.stdout.startswith("the quick" + want[0])
    many = invoke(["generate", str(run), "the quick", "hello", *common, "--no-echo"])
    assert many.exit_code == 0, many.output
    assert want[0] in many.stdout and want[1] in many.stdout and "--- prompt 2 ---" in many.stdout
    samples = invoke(["generate", str(run), "hello", "--num-samples", "3", "--seed", "1", "--max-new-tokens", "10",
                      "--device", "cpu", "--no-echo", "--stop", "\\n", "--top-k", "5"])
    assert samples.exit_code == 0, samples.output
    assert samples.stdout.count("--- prompt 1, sample") == 3
    (tmp_path / "p.txt").write_text("hello world", encoding="utf-8")
    beams = invoke(["generate", str(run), "--prompt-file", str(tmp_path / "p.txt"), *common, "--beams", "3",
                    "--no-stream"])
    assert beams.exit_code == 0 and beams.stdout.startswith("hello world")

    from owngpt.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(run), "x" * 200, *common])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "200 tokens long" in err and "--truncate left" in err and "Traceback" not in err
    ok = invoke(["generate", str(run), "x" * 200, *common, "--truncate", "left", "--no-echo"])
    assert ok.exit_code == 0, ok.output


def test_cli_generate_checks_settings_and_prompt_before_printing_it(tok, model, tmp_path, capsys):
    from owngpt.cli import main

    run = save_run(tmp_path, tok, model)
    for bad, message in ((["hi", "--truncate", "right"], "truncate must be"), (["x" * 200], "200 tokens long")):
        with pytest.raises(SystemExit) as exit_info:
            main(["generate", str(run), *bad, "--device", "cpu"])
        out = capsys.readouterr()
        assert exit_info.value.code == 1
        assert out.out == "" and out.err.startswith("error: ") and message in out.err  # not glued to the prompt


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("MPS backend out of memory (MPS allocated: 9.1 GB)")])
@pytest.mark.parametrize("prompts", [["hi"], ["hi", "there"]])
def test_cli_generate_out_of_gpu_memory_is_one_line(tok, model, tmp_path, capsys, monkeypatch, error, prompts):
    from owngpt.cli import main

    def out_of_memory(*args, **kwargs):
        raise error

    run = save_run(tmp_path, tok, model)
    monkeypatch.setattr(GPT, "forward", out_of_memory)
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(run), *prompts, "--device", "cpu"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err.startswith("error: the GPU ran out of memory") and err.count("\n") == 1
    assert "--max-new-tokens" in err and "--device cpu" in err and "Traceback" not in err


@pytest.mark.parametrize("device, message", [
    ("cuda", "needs a CUDA build of PyTorch"),
    ("cuda:5", "needs a CUDA build of PyTorch"),
    ("mps", "needs an Apple silicon Mac with macOS"),
    ("tpu", "device 'tpu' is not a device: use auto, cpu, cuda, cuda:N or mps"),
])
def test_cli_generate_on_a_device_this_machine_lacks_is_one_line(tok, model, tmp_path, capsys, monkeypatch, device,
                                                                  message):
    """No GPU and a CPU-only PyTorch: --device cuda is refused up front (not an AssertionError from deep in torch)."""
    import sys

    from owngpt.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(sys, "platform", "linux")
    run = save_run(tmp_path, tok, model)
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(run), "hi", "--device", device])
    out = capsys.readouterr()
    assert exit_info.value.code == 1 and out.out == ""
    assert out.err.startswith("error: device ") and out.err.count("\n") == 1 and message in out.err
    assert "Traceback" not in out.err


def test_cli_generate_beams_with_num_samples_prints_the_best_distinct_beams(tok, model, tmp_path, capsys):
    """Beam search is deterministic: --num-samples N with --beams gives its N best distinct beams, best first, not
    N copies of one text; more than --beams is refused in one line."""
    from owngpt.cli import main

    run = save_run(tmp_path, tok, model)
    common = ["--max-new-tokens", "12", "--device", "cpu", "--no-echo", "--beams", "4"]
    one = invoke(["generate", str(run), "the quick", *common, "--no-stream"])
    three = invoke(["generate", str(run), "the quick", *common, "--num-samples", "3"])
    assert one.exit_code == 0 and three.exit_code == 0, three.output
    texts = [part.split("\n", 1)[1].rstrip("\n") for part in three.stdout.split("--- prompt 1, beam ")[1:]]
    assert len(texts) == 3 and len(set(texts)) == 3
    assert texts[0] == one.stdout.rstrip("\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(run), "the quick", *common, "--num-samples", "5"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1
    assert err == "error: --num-samples 5 with --beams 4: beam search keeps 4 beams, so at most 4 distinct results\n"
