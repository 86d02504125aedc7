"""Usage: python scripts/gpu_hours.py [-v] (from the repository root).

GPU-hours implied by the full profiles: FLOPs per job from its resolved config, / (peak x MFU).
Activation checkpointing (train.grad_checkpointing) recomputes each forward in the backward:
8N FLOPs per trained token instead of 6N; a checkpointed hub policy computes each prompt with
both of its responses (no shared KV cache), which the estimate below already assumes."""
import sys
from collections import defaultdict
from pathlib import Path

from specc.compiler.plan import compile_spec

ROOT = Path(__file__).resolve().parents[1]

PARAMS = {"EleutherAI/pythia-1b": 1.012e9, "EleutherAI/pythia-2.8b": 2.775e9, "EleutherAI/pythia-12b": 11.85e9}
RECORDS = {("Anthropic/hh-rlhf", "helpful-base"): 43_835, ("Anthropic/hh-rlhf", "harmless-base"): 42_537,
           ("openai/summarize_from_feedback", "comparisons"): 92_858, ("lmsys/chatbot_arena_conversations", None): 24_000}
PEAK = {"H100": 989e12, "A100": 312e12}
MFU_DENSE, MFU_DECODE = 0.40, 0.10
names = ["fig01-online-vs-offline","fig04-tandem","fig05-strong-policy-data","fig06-08-classification","fig09-bo2",
         "fig10-11-14-scaling","fig12-dataset-ablations","fig13-shuffle-levels","appF-exact-tandem"]

def n_evals(train):
    s, e = train["steps"], train["eval_every"]
    return 1 + s // e + (1 if s % e else 0)

def job_flops(job, by_id):
    """(dense FLOPs, decode FLOPs) of one job."""
    c = job.config
    def up(role): return by_id[job.upstream[role]]
    def task(j):
        while j.kind != "dataset":
            j = by_id[j.upstream.get("prompts") or j.upstream.get("data") or j.upstream.get("data.0")]
        return j.config
    def n_of(j):  # params of a policy/judge job
        while "model" not in j.config:
            j = by_id[j.upstream["init"]]
        return PARAMS[j.config["model"]["name"]]
    if job.kind in ("dataset", "oracle"):
        return 0.0, 0.0
    t = task(job)
    Lp, Lr = t["max_prompt_tokens"], t["max_response_tokens"]
    T, Tpm = Lp + Lr, Lp + 2 * Lr
    if job.kind == "label":
        D = RECORDS[t["hub_name"], t["subset"]]
        return D * 2 * 2 * n_of(up("judge")) * Tpm, 0.0
    def train_flops(tr):  # per parameter and trained token: forward, backward, and the recomputed forward
        return 8 if tr.get("grad_checkpointing") else 6
    if job.kind == "sft":
        tr = c["train"]; return train_flops(tr) * n_of(job) * tr["batch_size"] * T * tr["steps"], 0.0
    if job.kind == "preference_model":
        tr = c["train"]; return train_flops(tr) * n_of(job) * tr["batch_size"] * Tpm * tr["steps"], 0.0
    def sample(N, prompts):  # one response per prompt: prefill (dense) + decode
        return prompts * 2 * N * Lp, prompts * 2 * N * Lr
    if job.kind == "pairs":
        D = int(0.9 * RECORDS[t["hub_name"], t["subset"]]); count = min(c["count"], D)
        da, ca = sample(n_of(up("a")), count); db, cb = sample(n_of(up("b")), count)
        return da + db + count * 2 * 2 * n_of(up("judge")) * Tpm, ca + cb
    # align
    tr, N = c["train"], n_of(job)
    B, steps = tr["batch_size"], tr["steps"]
    dense = steps * B * (train_flops(tr) * N * 2 * T + 2 * N * 2 * T)   # policy fwd+bwd and reference fwd, both responses
    decode = 0.0
    if c["sampler"]["online"]:
        d, k = sample(N, 2 * B * steps); dense += d; decode += k
        dense += steps * B * 2 * 2 * n_of(up("sampler.online")) * Tpm   # judge, symmetrised
    ev = c["evaluate"]; E = n_evals(tr)
    Ng = n_of(up("evaluate.judge")); Nb = n_of(up("evaluate.baseline")) if "evaluate.baseline" in job.upstream else N
    d1, k1 = sample(N, ev["kl_prompts"]); d1 += ev["kl_prompts"] * 2 * 2 * N * T
    d2, k2 = sample(N, ev["win_prompts"]); d3, k3 = sample(Nb, ev["win_prompts"])
    d2 += d3 + ev["win_prompts"] * 2 * 2 * Ng * Tpm
    d4 = ev["classifier_pairs"] * 4 * 2 * N * T
    return dense + E * (d1 + d2 + d4), decode + E * (k1 + k2 + k3)

def hours(dense, decode, gpu):
    return (dense / (PEAK[gpu] * MFU_DENSE) + decode / (PEAK[gpu] * MFU_DECODE)) / 3600

union = {}
rows = []
by_kind_union = defaultdict(float)
for n in names:
    plan = compile_spec(ROOT / "specs" / "paper" / f"{n}.yaml", profile="full")
    by_id = plan.by_id()
    tot = [0.0, 0.0]; per_stage = defaultdict(lambda: [0.0, 0.0])
    for j in plan.jobs:
        d, k = job_flops(j, by_id)
        tot[0] += d; tot[1] += k; per_stage[j.stage][0] += d; per_stage[j.stage][1] += k
        union[j.id] = (d, k, j.stage, n)
    rows.append((n, len(plan.jobs), *tot))
    if "-v" in sys.argv:
        for s, (d, k) in per_stage.items():
            print(f"   {n:26s} {s:22s} {hours(d,k,'H100'):9.1f} H100-h  dense {d:.2e} decode {k:.2e}")
print(f"{'spec':28s} {'jobs':>5s} {'PFLOP dense':>12s} {'PFLOP decode':>12s} {'H100-h':>8s} {'A100-h':>8s}")
for n, jobs, d, k in rows:
    print(f"{n:28s} {jobs:5d} {d/1e15:12.0f} {k/1e15:12.0f} {hours(d,k,'H100'):8.0f} {hours(d,k,'A100'):8.0f}")
d = sum(v[0] for v in union.values()); k = sum(v[1] for v in union.values())
print(f"{'all nine, shared jobs once':28s} {len(union):5d} {d/1e15:12.0f} {k/1e15:12.0f} {hours(d,k,'H100'):8.0f} {hours(d,k,'A100'):8.0f}")
