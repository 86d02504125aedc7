"""Probe: can a preference model learn a synthetic task's oracle from D_golden?

Builds D_golden in-process (oracle argmax labels, as the `label` stage does),
trains a PreferenceModel from scratch and prints held-out accuracy over steps.
Usage: python scripts/research/proxy_probe.py variant=motif form=pairwise readout=last lr=3e-4 steps=300
"""

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from specc.compiler.schema import SyntheticTask as TaskSchema
from specc.runtime.loop import batch_indices, step_generator
from specc.runtime.preference_models import PreferenceModel
from specc.runtime.tasks.synthetic import SyntheticTask


class ProbeModel(PreferenceModel):
    """readout `last` is specc's PreferenceModel; `sum` adds a score from every response position."""

    def __init__(self, *args, readout="last"):
        super().__init__(*args)
        self.readout = readout

    def _score(self, tokens):
        if self.readout == "last":
            return super()._score(tokens)
        hidden = self.backbone(input_ids=tokens).last_hidden_state
        return self.head(hidden[:, self.prompt_len:]).squeeze(-1).sum(-1)

torch.set_num_threads(1)
args = dict(a.split("=", 1) for a in sys.argv[1:])
pm_keys = {"sft": "0", "sft_lr": "1e-3", "form": "pairwise", "readout": "last", "lr": "3e-4", "steps": "300", "size": "S", "bs": "32", "every": "100"}
pm = {k: args.pop(k, v) for k, v in pm_keys.items()}
cfg = TaskSchema().model_dump()
for k, v in args.items():
    cfg[k] = type(cfg[k])(v) if not isinstance(cfg[k], bool) else v == "true"
task = SyntheticTask.from_config(cfg)
pairs = task.initial_pairs()
p = task.preference_prob(pairs["prompt"], pairs["chosen"], pairs["rejected"])
keep = p >= 0.5
chosen = np.where(keep[:, None], pairs["chosen"], pairs["rejected"])
rejected = np.where(keep[:, None], pairs["rejected"], pairs["chosen"])
r_c, r_r = task.reward(pairs["prompt"], chosen), task.reward(pairs["prompt"], rejected)
print(f"task {cfg}\n  reward mean {np.mean(np.r_[r_c, r_r]):.3f} sd {np.std(np.r_[r_c, r_r]):.3f}; "
      f"ties {np.mean(np.abs(r_c - r_r) < 1e-9):.3f}; |dr|<0.2 {np.mean(np.abs(r_c - r_r) < 0.2):.3f}")
data = {k: torch.from_numpy(v) for k, v in (("prompt", pairs["prompt"]), ("chosen", chosen), ("rejected", rejected))}
n_val = len(data["prompt"]) // 10
val = {k: v[-n_val:] for k, v in data.items()}
fit = {k: v[:-n_val] for k, v in data.items()}
torch.manual_seed(0)
model = ProbeModel(pm["form"], pm["size"], task.vocab, task.prompt_len + 2 * task.response_len + 1, readout=pm["readout"])
model.prompt_len = task.prompt_len
if int(pm["sft"]):
    from specc.runtime.models import build_policy, response_logprobs
    policy = build_policy({"family": "tiny", "size": pm["size"]}, task.vocab, task.prompt_len + task.response_len, 0)
    sopt = torch.optim.AdamW(policy.parameters(), lr=float(pm["sft_lr"]), weight_decay=0.0)
    P = torch.from_numpy(np.concatenate([pairs["prompt"]] * 2))
    Y = torch.from_numpy(np.concatenate([pairs["chosen"], pairs["rejected"]]))
    t = time.time()
    for step in range(int(pm["sft"])):
        idx = batch_indices(len(P), 32, 0, step)
        nll = -response_logprobs(policy, P[idx], Y[idx]).mean()
        sopt.zero_grad(); nll.backward(); torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0); sopt.step()
    print(f"  sft {pm['sft']} steps nll {nll.item():.3f} {time.time() - t:.0f}s")
    model.init_from_policy(policy)
opt = torch.optim.AdamW(model.parameters(), lr=float(pm["lr"]), weight_decay=0.0)
t0 = time.time()
for step in range(int(pm["steps"]) + 1):
    if step % int(pm["every"]) == 0:
        pr = model.prob_first(val["prompt"], val["chosen"], val["rejected"])
        pf = model.prob_first(fit["prompt"][:512], fit["chosen"][:512], fit["rejected"][:512])
        print(f"  step {step:5d} val acc {np.mean(pr > 0.5):.3f} fit acc {np.mean(pf > 0.5):.3f}  {time.time() - t0:.0f}s", flush=True)
    if step == int(pm["steps"]):
        break
    idx = batch_indices(len(fit["prompt"]), int(pm["bs"]), 0, step)
    pr_, c, r = fit["prompt"][idx], fit["chosen"][idx], fit["rejected"][idx]
    if pm["form"] == "pointwise":
        loss = -F.logsigmoid(model.logit(pr_, c, r)).mean()
    else:
        cf = torch.rand(len(idx), generator=step_generator(0, "order", step)) < 0.5
        first, second = torch.where(cf[:, None], c, r), torch.where(cf[:, None], r, c)
        loss = F.binary_cross_entropy_with_logits(model.logit(pr_, first, second), cf.float())
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
