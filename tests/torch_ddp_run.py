"""One rank of a two-process DistributedDataParallel training (gloo on loopback), recorded
with `watch`. Run by test_torch.py, one process per rank:

    python -m tests.torch_ddp_run RANK WORLD PORT LOGDIR OUT.json

Each rank trains on its own half of the batch; DDP averages the gradients. Rank 0
writes OUT.json with, per step, the norm of the synchronized gradients it saw (and of
its own half's gradients, computed apart) for the test to compare with the records.
"""

import json
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tb_plateau.summaries.torch import watch


def main(rank, world, port, log_dir, out):
    dist.init_process_group(
        "gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=world
    )
    torch.manual_seed(0)  # the same initial weights on every rank
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    local = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    data = torch.Generator().manual_seed(1)
    norms = []
    with watch(ddp, optimizer, loss_fn, log_dir=log_dir, every_n_steps=1, live=False) as handle:
        for _ in range(4):
            x = torch.randn(2 * 16, 8, generator=data)
            y = torch.randint(0, 2, (2 * 16,), generator=data)
            mine = slice(rank * 16, rank * 16 + 16)
            optimizer.zero_grad()
            loss_fn(ddp(x[mine]), y[mine]).backward()
            synced = float(torch.sqrt(sum(p.grad.square().sum() for p in model[0].parameters())))
            local.load_state_dict(model.state_dict())
            local.zero_grad()
            loss_fn(local(x[mine]), y[mine]).backward()
            own = float(torch.sqrt(sum(p.grad.square().sum() for p in local[0].parameters())))
            norms.append({"synced": synced, "own": own})
            optimizer.step()
        writes = handle.writes
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"norms": norms, "writes": writes}, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
