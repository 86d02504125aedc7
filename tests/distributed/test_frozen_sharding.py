"""A frozen model sharded over two ranks (FSDP2 over gloo, on the CPU): each rank holds half
of its weights, and its forwards, called by both ranks together, give one process's values
bit for bit (the whole-model runs, offline and online, are in test_ranks)."""

import json
import os
import subprocess
import sys

import pytest

from tests.distributed.ranks import free_port

pytestmark = pytest.mark.slow

RANK_MAIN = """
import json, sys
import torch
from specc.runtime import distributed
from specc.runtime.models import build_policy, response_logprobs

distributed.start("cpu")
def policy():
    return build_policy({"family": "tiny", "size": "S"}, vocab=16, max_len=12, seed=7).eval()
whole = policy()
frozen = distributed.shard_frozen(policy())
local = sum(p.to_local().numel() for p in frozen.parameters())
total = sum(p.numel() for p in whole.parameters())
generator = torch.Generator().manual_seed(distributed.rank())  # different rows, the same number
chunks = [(torch.randint(0, 16, (4, 6), generator=generator), torch.randint(0, 16, (4, 5), generator=generator))
          for _ in range(3)]
with torch.no_grad():
    same = all(torch.equal(response_logprobs(frozen, p, r), response_logprobs(whole, p, r)) for p, r in chunks)
print(json.dumps({"local": local, "total": total, "same": same,
                  "grad": any(p.requires_grad for p in frozen.parameters())}))
distributed.stop()
"""


def test_a_sharded_frozen_model_holds_half_and_computes_as_a_whole_one():
    port, procs = free_port(), []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_MAIN], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    reports = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert all(r["same"] and not r["grad"] for r in reports)
    assert sum(r["local"] for r in reports) == reports[0]["total"]  # the shards make the model, once
    assert all(r["local"] <= reports[0]["total"] / 2 + 64 for r in reports)  # padding of odd-sized rows
