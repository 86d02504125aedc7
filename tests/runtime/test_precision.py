"""Mixed precision and what a job keeps: bf16 specs train float32 master weights (AdamW state in
float32 too) and compute in bf16 autocast; saved weights keep the spec's dtype; a finished job
drops its optimiser state unless asked to keep it, and records the bytes it keeps.

What would break: pure-bf16 AdamW rounding small updates away (a learning-rate sweep would
measure rounding), a bf16 model reaching the optimiser, resume state kept forever.
"""

from __future__ import annotations

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from specc.compiler.plan import compile_spec
from specc.runtime.executor import run_local
from specc.runtime.jobdir import JobDir
from specc.runtime.loop import apply_update, make_optimizer
from specc.runtime.models import build_policy, load_model, master_weights, response_logprobs, save_model
from tests.runtime.test_real_pipeline import word_tokenizer

VOCAB, PROMPT, RESPONSE = 25, 6, 6
STEPS, LR = 30, 1e-5


def neox_folder(path, dtype=torch.bfloat16):
    """A small GPTNeoX (Pythia's architecture) saved like a hub checkpoint, in bf16."""
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=32, eos_token_id=2, pad_token_id=0)
    GPTNeoXForCausalLM(config).to(dtype).save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return str(path)


def train(model, autocast: bool, build=make_optimizer) -> None:
    """STEPS updates at lr 1e-5 on fixed sequences, through the runtime's optimiser and update."""
    optimizer, scheduler = build(model, {"lr": LR, "weight_decay": 0.0, "warmup": 0})
    data = torch.randint(3, VOCAB, (4, PROMPT + RESPONSE), generator=torch.Generator().manual_seed(1))
    for _ in range(STEPS):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = -response_logprobs(model, data[:, :PROMPT], data[:, PROMPT:]).mean()
        apply_update(model, optimizer, scheduler, loss, 1.0)


def moved(model, start: dict) -> tuple[float, float]:
    """(share of weights that changed at all, total distance moved)."""
    changed, total, distance = 0, 0, 0.0
    for name, p in model.named_parameters():
        delta = p.detach().float() - start[name].detach().float()
        changed += int((delta != 0).sum())
        total += delta.numel()
        distance += float(delta.norm() ** 2)
    return changed / total, distance ** 0.5


def pure_bf16_optimizer(model, train):
    optimizer = torch.optim.AdamW(model.parameters(), lr=train["lr"], weight_decay=0.0)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


def test_a_bf16_spec_trains_float32_masters_that_move_like_float32(tmp_path):
    cfg = {"family": "hub", "name": neox_folder(tmp_path / "lm"), "dtype": "bfloat16"}
    reference = build_policy(cfg, VOCAB, PROMPT + RESPONSE, seed=0)
    assert {p.dtype for p in reference.parameters()} == {torch.float32}  # masters, whatever the spec says
    start = {k: v.clone() for k, v in reference.named_parameters()}

    train(reference, autocast=False)  # the float32 run: what the update should do
    share_fp32, dist_fp32 = moved(reference, start)

    mixed = build_policy(cfg, VOCAB, PROMPT + RESPONSE, seed=0)
    train(mixed, autocast=True)  # bf16 compute, float32 masters and AdamW state
    share_mixed, dist_mixed = moved(mixed, start)
    assert share_fp32 > 0.99 and share_mixed > 0.99
    assert 0.9 < dist_mixed / dist_fp32 < 1.1, (dist_mixed, dist_fp32)

    pure = build_policy(cfg, VOCAB, PROMPT + RESPONSE, seed=0).bfloat16()  # what bf16 weights alone do
    train(pure, autocast=False, build=pure_bf16_optimizer)
    share_pure, dist_pure = moved(pure, start)
    assert share_pure < 0.5 and dist_pure < 0.5 * dist_fp32, (share_pure, dist_pure / dist_fp32)


def test_the_optimiser_refuses_bf16_weights(tmp_path):
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64)).bfloat16()
    try:
        make_optimizer(model, {"lr": LR, "weight_decay": 0.0, "warmup": 0})
    except ValueError as err:
        assert "float32 master weights" in str(err)
    else:
        raise AssertionError("a bf16 model reached AdamW")
    make_optimizer(master_weights(model), {"lr": LR, "weight_decay": 0.0, "warmup": 0})


def test_saved_weights_keep_the_specs_dtype_and_load_on_the_device(tmp_path):
    cfg = {"family": "hub", "name": neox_folder(tmp_path / "lm"), "dtype": "bfloat16"}
    model = build_policy(cfg, VOCAB, PROMPT + RESPONSE, seed=0)
    save_model(model, tmp_path / "p.safetensors", torch.bfloat16)
    assert not list(tmp_path.glob("*.tmp"))
    frozen = load_model(tmp_path / "p.safetensors", "cpu")
    assert {p.dtype for p in frozen.parameters()} == {torch.bfloat16}
    for (name, a), b in zip(model.state_dict().items(), frozen.state_dict().values()):
        assert torch.equal(a.bfloat16(), b), name
    assert {p.dtype for p in master_weights(frozen).parameters()} == {torch.float32}


SFT_ONLY = """
name: keep
defaults: {{model: {{family: tiny, size: XS}}, train: {{batch_size: 8, threads: 1, checkpoint_every: 2}}}}
stages:
  task: {{kind: dataset, task: {{variant: motif, train_prompts: 64, eval_prompts: 16}}}}
  golden: {{kind: oracle, data: task}}
  data: {{kind: label, data: task, judge: golden}}
  sft: {{kind: sft, data: data, train: {{steps: 4, keep_optimizer_state: {keep}}}}}
executor: {{kind: debug}}
"""


def _sft_job(tmp_path, keep: bool) -> JobDir:
    tmp_path = tmp_path / f"keep-{keep}"
    tmp_path.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(SFT_ONLY.format(keep=str(keep).lower()))
    plan = compile_spec(spec)
    assert run_local(plan, tmp_path / "ws", kind="debug").ok
    (job,) = [j for j in plan.jobs if j.stage == "sft"]
    return JobDir(tmp_path / "ws" / "jobs" / job.id)


def test_a_done_job_drops_its_optimiser_state_and_records_what_it_keeps(tmp_path):
    dropped = _sft_job(tmp_path, keep=False)
    assert dropped.is_done() and not list(dropped.checkpoint_dir.glob("state.pt*"))
    assert (dropped.artifacts / "policy.safetensors").exists()
    on_disk = sum(p.stat().st_size for p in dropped.path.rglob("*") if p.is_file())
    kept = dropped.status()["kept_bytes"]
    assert 0 < kept <= on_disk and on_disk - kept < 4096  # only status.json itself grew since

    kept_job = _sft_job(tmp_path, keep=True)
    assert kept_job.id == dropped.id  # what is kept is not part of what is computed
    assert (kept_job.checkpoint_dir / "state.pt").exists()
    assert kept_job.status()["kept_bytes"] > kept
