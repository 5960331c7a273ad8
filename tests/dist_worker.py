"""Run by tests/test_train_distributed.py, alone or under torchrun: fit() the tiny GPT of test_train_loop on its
tiny shards, then write each rank's final weights (what the tests compare).

    python -m torch.distributed.run --nproc_per_node=2 tests/dist_worker.py DATA RUN '{"max_steps": 8}'
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from safetensors.torch import save_file  # noqa: E402

from owngpt.train.loop import fit  # noqa: E402
from test_train_loop import cfg, loaders, make_model  # noqa: E402


def main() -> None:
    data, run, overrides = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    model = make_model(dropout=0.0)
    train, val = loaders(data)
    settings = dict(grad_accum=2, save_interval=4, eval_interval=4, keep_last=10)
    settings.update(overrides)
    result = fit(model, train, val, cfg(**settings), run, run_config={}, quiet=True, echo=print)
    rank = int(os.environ.get("RANK", "0"))
    if settings.get("parallel") != "fsdp":  # FSDP's ranks hold shards; its full weights are in the checkpoint
        save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(run / f"rank{rank}.safetensors"))
    if rank == 0:
        (run / "result.json").write_text(json.dumps({"steps": result.steps, "tokens": result.tokens,
                                                     "best_val_loss": result.best_val_loss}))


if __name__ == "__main__":
    main()
