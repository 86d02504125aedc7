"""Training steps/s: specc's align step against TRL and against a minimal hand-written PyTorch loop.

The setting of the issue: a tiny GPT-2 (d=64, L=2, H=4, vocab 32), 8-token prompts and
16-token responses, batch 32, fp32 unless a contestant's defaults say otherwise, the same
torch thread count for every contestant, everything in this one process and never two
contestants computing at once. Contestants take turns (a few steps each, for several
rounds), so a change in the machine's load hits all of them alike; each ratio is the
median over rounds of that round's ratio.

  offline IPO  specc (reference log-probs precomputed, as this run visits every pair),
               specc with the reference forward in the step (runs too short to precompute),
               a minimal loop, TRL DPOTrainer(loss_type="ipo") fastest and defaults
  online IPO   specc (two samples per prompt with a KV cache, a pointwise reward model
               judges, update), a minimal loop, TRL OnlineDPOTrainer(loss_type="ipo") with
               the same reward model, fastest and defaults

Before timing, every contestant computes the loss of one batch from the same weights
(TRL's offline IPO averages log-probs over tokens, so the offline contestants use specc's
`normalize: mean`; TRL's online IPO sums them, as specc's default does).

    pip install 'trl==1.16.0'      # the `bench` extra; without it only specc and the minimal loops run
    python benchmarks/bench_train.py [--threads 1] [--rounds 5] [--steps 8] [--profile CONTESTANT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from specc.compiler.plan import compile_spec  # noqa: E402
from specc.runtime.artifacts import read_pairs, read_prompts  # noqa: E402
from specc.runtime.context import JobContext, policy_path  # noqa: E402
from specc.runtime.executor import prepare  # noqa: E402
from specc.runtime.job import run_job  # noqa: E402
from specc.runtime.jobdir import JobDir  # noqa: E402
from specc.runtime.judges import load_judge  # noqa: E402
from specc.runtime.models import load_model  # noqa: E402
from specc.runtime.samplers import OfflineSampler  # noqa: E402
from specc.runtime.stages.align import build_align  # noqa: E402

BATCH, BETA, LR = 32, 0.1, 3e-4
EVERY = 25  # eval_every: the default evaluation cadence
SPEC = """\
name: bench-train
defaults:
  model: {{family: tiny, size: S}}            # d=64, L=2, H=4
  train: {{batch_size: {batch}, threads: {threads}, eval_every: {every}, lr: {lr}}}
  loss: {{name: ipo, beta: {beta}}}
evaluate: {{judge: golden, pairs: golden_data, kl_prompts: 256, win_prompts: 512}}
stages:
  task:        {{kind: dataset, task: {{variant: cover, cover_set: 8, train_prompts: 4096, seed: 0}}}}
  golden:      {{kind: oracle, data: task}}
  golden_data: {{kind: label, data: task, judge: golden}}
  sft:         {{kind: sft, data: golden_data, train: {{steps: 60, lr: 1.0e-3}}}}
  proxy:       {{kind: preference_model, data: golden_data, init: sft, form: pointwise, train: {{steps: 60, lr: 1.0e-3}}}}
  offline:     {{kind: align, init: sft, sampler: {{offline: golden_data}}, loss: {{normalize: mean}}, train: {{steps: 200}}}}
  offline_short: {{kind: align, init: sft, sampler: {{offline: golden_data}}, loss: {{normalize: mean}}, train: {{steps: 30}}}}
  online:      {{kind: align, init: sft, sampler: {{online: proxy}}, train: {{steps: 200}}}}
"""
ALIGN = ("offline", "offline_short", "online")
TARGETS = [  # (label, numerator, denominator, at least)
    ("offline: specc vs TRL fastest", "specc offline", "TRL offline fastest", 1.5),
    ("offline: specc vs TRL defaults", "specc offline", "TRL offline defaults", 3.5),
    ("offline: specc vs minimal loop", "specc offline", "minimal offline", 1 / 1.1),
    ("online: specc vs TRL fastest", "specc online", "TRL online fastest", 1.2),
    ("online: specc vs TRL defaults", "specc online", "TRL online defaults", 3.5),
    ("online: specc vs minimal loop", "specc online", "minimal online", 1 / 1.1),
    ("online stretch: faster than minimal", "specc online", "minimal online", 1.0),
]


def build_workspace(root: Path, threads: int) -> dict[str, JobDir]:
    """Run the upstream jobs (data, SFT, reward model) with specc itself; align jobs are only prepared."""
    spec = root / "bench.yaml"
    spec.write_text(SPEC.format(batch=BATCH, threads=threads, lr=LR, beta=BETA, every=EVERY))
    plan = compile_spec(spec)
    workspace = root / "ws"
    prepare(plan, workspace)
    jobs = {job.stage: JobDir(workspace / "jobs" / job.id) for job in plan.jobs}
    for wave in plan.waves():
        for job in wave:
            if job.stage not in ALIGN:
                run_job(jobs[job.stage].path)
    torch.set_num_threads(threads)
    return jobs


def align_context(job: JobDir) -> JobContext:
    return JobContext(job, job.job_json())


# -- contestants: each has .name, .step() -> loss, .setup_s ---------------------------------------------


def reference_in_the_step(job: JobDir) -> JobDir:
    """`offline_short` visits too few pairs (30 steps x 32 < 4096 / 4) to precompute its reference
    table; without a cached table (which the 200-step job leaves) its reference runs in the step."""
    shutil.rmtree(job.path.parent.parent / "cache", ignore_errors=True)
    return job


class Specc:
    """specc's own align step (`build_align(ctx).step_fn`), as `run_loop` calls it."""

    deterministic = True  # run_job turns on torch's deterministic algorithms for every job

    def __init__(self, name: str, job: JobDir):
        start = time.perf_counter()
        self.name, self.learner, self.next = name, build_align(align_context(job)), 0
        self.setup_s = time.perf_counter() - start

    def step(self) -> float:
        metrics = self.learner.step_fn(self.next)
        self.next += 1
        return metrics["train/loss"]


def ipo(h: torch.Tensor) -> torch.Tensor:
    return ((h - 1 / (2 * BETA)) ** 2).mean()


def logps_hf(model, prompts, responses) -> torch.Tensor:
    """Per-token log-probs through the transformers forward, as one writes it by hand."""
    logits = model(input_ids=torch.cat([prompts, responses], 1)).logits[:, prompts.shape[1] - 1:-1]
    return logits.log_softmax(-1).gather(2, responses.unsqueeze(-1)).squeeze(-1)


class MinimalOffline:
    """A hand-written loop over the same model and data: the same algorithm as specc's offline step
    (reference log-probs computed once, token-mean IPO, clipping, AdamW), and nothing else."""

    deterministic = False

    def __init__(self, jobs: dict[str, JobDir]):
        start = time.perf_counter()
        self.name = "minimal offline"
        self.pairs = {k: torch.from_numpy(v) for k, v in read_pairs(jobs["golden_data"]).items()}
        self.policy = load_model(policy_path(jobs["sft"]))
        self.reference = load_model(policy_path(jobs["sft"]))
        with torch.no_grad():
            self.ref = [torch.cat([self.ref_logps(self.pairs["prompt"][i:i + 256], self.pairs[side][i:i + 256])
                                   for i in range(0, len(self.pairs["prompt"]), 256)]) for side in ("chosen", "rejected")]
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=LR, weight_decay=0.0)
        self.generator = torch.Generator().manual_seed(0)
        self.setup_s = time.perf_counter() - start

    def ref_logps(self, prompts, responses) -> torch.Tensor:
        return logps_hf(self.reference, prompts, responses).mean(-1)

    def loss(self, prompts, chosen, rejected, ref_chosen, ref_rejected) -> torch.Tensor:
        logps = logps_hf(self.policy, torch.cat([prompts, prompts]), torch.cat([chosen, rejected])).mean(-1)
        return ipo((logps[:len(prompts)] - ref_chosen) - (logps[len(prompts):] - ref_rejected))

    @torch.no_grad()
    def loss_on(self, prompts, chosen, rejected) -> float:
        return self.loss(prompts, chosen, rejected, self.ref_logps(prompts, chosen), self.ref_logps(prompts, rejected)).item()

    def step(self) -> float:
        idx = torch.randint(len(self.pairs["prompt"]), (BATCH,), generator=self.generator)
        loss = self.loss(*(self.pairs[k][idx] for k in ("prompt", "chosen", "rejected")), self.ref[0][idx], self.ref[1][idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
        self.optimizer.step()
        return loss.item()


def multinomial(logits, generator) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)


@torch.no_grad()
def sample_hf(model, prompts, length, generator, draw=multinomial) -> torch.Tensor:
    """The usual hand-written KV-cache sampling loop through the transformers forward
    (`draw`: specc's own token draw, to compare its decoding with this one bit for bit)."""
    out = model(input_ids=prompts, use_cache=True)
    tokens = []
    for t in range(length):
        tokens.append(draw(out.logits[:, -1], generator))
        if t + 1 < length:
            out = model(input_ids=tokens[-1], past_key_values=out.past_key_values, use_cache=True)
    return torch.cat(tokens, 1)


class MinimalOnline:
    """A hand-written online IPO loop: sample two responses per prompt, the reward model picks
    the winner, reference forward, policy forward and backward, clipping, AdamW (summed IPO)."""

    deterministic = False

    def __init__(self, jobs: dict[str, JobDir], response_len: int):
        start = time.perf_counter()
        self.name, self.response_len = "minimal online", response_len
        self.prompts = torch.from_numpy(read_prompts(jobs["task"], "train"))
        self.policy = load_model(policy_path(jobs["sft"]))
        self.reference = load_model(policy_path(jobs["sft"]))
        self.reward_model = load_judge(jobs["proxy"])
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=LR, weight_decay=0.0)
        self.generator = torch.Generator().manual_seed(0)
        self.setup_s = time.perf_counter() - start

    def loss(self, prompts, chosen, rejected) -> torch.Tensor:
        both_prompts, both = torch.cat([prompts, prompts]), torch.cat([chosen, rejected])
        with torch.no_grad():
            ref = logps_hf(self.reference, both_prompts, both).sum(-1)
        logps = logps_hf(self.policy, both_prompts, both).sum(-1)
        n = len(prompts)
        return ipo((logps[:n] - ref[:n]) - (logps[n:] - ref[n:]))

    @torch.no_grad()
    def loss_on(self, prompts, chosen, rejected) -> float:
        return self.loss(prompts, chosen, rejected).item()

    def step(self) -> float:
        prompts = self.prompts[torch.randint(len(self.prompts), (BATCH,), generator=self.generator)]
        first = sample_hf(self.policy, prompts, self.response_len, self.generator)
        second = sample_hf(self.policy, prompts, self.response_len, self.generator)
        with torch.no_grad():
            first_wins = (rewards(self.reward_model, prompts, first)
                          >= rewards(self.reward_model, prompts, second))[:, None]
        loss = self.loss(prompts, torch.where(first_wins, first, second), torch.where(first_wins, second, first))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
        self.optimizer.step()
        return loss.item()


# -- TRL, set up like for like ---------------------------------------------------------------------------


def rewards(reward_model, prompts, responses) -> torch.Tensor:
    """The pointwise reward model's score r(x, y) per row (what specc's judge compares)."""
    return reward_model._score(torch.cat([prompts, responses], 1))


def vocab(jobs) -> int:
    return json.loads((jobs["task"].artifacts / "task.json").read_text())["vocab"]


def as_text(tokens: torch.Tensor) -> list[str]:
    return [" ".join(f"t{t}" for t in row) for row in tokens.tolist()]


def word_tokenizer(vocab: int):
    """Word "t{i}" <-> token i, and an end-of-sequence word the model cannot emit (id `vocab`):
    TRL's text interface then carries the task's token ids through unchanged."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = {f"t{i}": i for i in range(vocab)} | {"<eos>": vocab}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="<eos>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<eos>")


class TrainerTurns:
    """`trainer.train()` in a worker thread that pauses after every optimizer step until the next
    `.step()`: TRL takes turns with the other contestants and never computes alongside them."""

    def __init__(self, trainer, threads: int):
        from transformers import TrainerCallback
        self.trainer, self.threads, self.stop, self.error = trainer, threads, False, None
        self.go, self.done = threading.Semaphore(0), threading.Semaphore(0)
        turns = self

        class Pause(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                turns.done.release()
                turns.go.acquire()
                control.should_training_stop = turns.stop

        trainer.add_callback(Pause())
        self.thread = threading.Thread(target=self._train, daemon=True)
        self.thread.start()

    def _train(self) -> None:
        torch.set_num_threads(self.threads)  # a setting per OS thread: set it here too
        self.go.acquire()
        try:
            self.trainer.train()
        except BaseException as exc:  # noqa: BLE001 (reported by step())
            self.error = exc
        self.done.release()

    def step(self) -> None:
        self.go.release()
        self.done.acquire()
        if self.error is not None:
            raise RuntimeError(f"TRL training failed: {self.error!r}") from self.error

    def close(self) -> None:
        self.stop = True
        self.go.release()
        self.thread.join(timeout=60)


def trl_args(config_class, jobs, fastest: bool, **task):
    """The issue's fastest configuration, or TRL's defaults; both with the task's settings."""
    fast = {"bf16": False, "gradient_checkpointing": False, "logging_strategy": "no"} if fastest else {}
    output = tempfile.mkdtemp(prefix="trl-", dir=jobs["task"].path.parent.parent)  # removed with the workspace
    return config_class(output_dir=output, beta=BETA, learning_rate=LR,
                        per_device_train_batch_size=BATCH, max_steps=10 ** 6, save_strategy="no", report_to="none",
                        use_cpu=True, seed=0, **task, **fast)


class TRLOffline:
    deterministic = False

    def __init__(self, name: str, jobs, threads: int, fastest: bool):
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        class PretokenizedDPOTrainer(DPOTrainer):
            def _prepare_dataset(self, dataset, *args, **kwargs):
                return dataset  # already token ids (TRL's text step would append an EOS the task has no room for)

        start = time.perf_counter()
        self.name, self.fastest = name, fastest
        pairs = read_pairs(jobs["golden_data"])
        dataset = Dataset.from_dict({f"{k}_ids": pairs[k].tolist() for k in ("prompt", "chosen", "rejected")})
        args = trl_args(DPOConfig, jobs, fastest, loss_type=["ipo"], **({"precompute_ref_log_probs": True} if fastest else {}))
        self.trainer = PretokenizedDPOTrainer(model=load_model(policy_path(jobs["sft"])),
                                              ref_model=load_model(policy_path(jobs["sft"])), args=args,
                                              train_dataset=dataset, processing_class=word_tokenizer(vocab(jobs)))
        self.turns = TrainerTurns(self.trainer, threads)
        self.setup_s = time.perf_counter() - start
        self.step, self.close, self.policy = self.turns.step, self.turns.close, self.trainer.model

    def loss_on(self, prompts, chosen, rejected) -> float:
        t = self.trainer
        batch = t.data_collator([{"prompt_ids": p, "chosen_ids": c, "rejected_ids": r}
                                 for p, c, r in zip(prompts.tolist(), chosen.tolist(), rejected.tolist())])
        with torch.no_grad(), t.accelerator.autocast():
            if self.fastest:
                batch["ref_chosen_logps"], batch["ref_rejected_logps"] = t.compute_ref_log_probs(t.ref_model, batch)
            return t.compute_loss(t.model, batch).item()


class TRLOnline:
    deterministic = False

    def __init__(self, name: str, jobs, threads: int, fastest: bool, response_len: int):
        from datasets import Dataset
        from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

        start = time.perf_counter()
        self.name = name
        prompts = torch.from_numpy(read_prompts(jobs["task"], "train"))
        ids = dict(zip(as_text(prompts), prompts))
        reward_model = load_judge(jobs["proxy"])

        def reward(prompts, completion_ids, **_):  # the same reward model specc's online sampler judges with
            with torch.no_grad():
                return rewards(reward_model, torch.stack([ids[p] for p in prompts]), torch.tensor(completion_ids)).tolist()

        args = trl_args(OnlineDPOConfig, jobs, fastest, loss_type="ipo", max_new_tokens=response_len, temperature=1.0)
        self.trainer = OnlineDPOTrainer(model=load_model(policy_path(jobs["sft"])),
                                        ref_model=load_model(policy_path(jobs["sft"])), reward_funcs=reward, args=args,
                                        train_dataset=Dataset.from_dict({"prompt": as_text(prompts)}),
                                        processing_class=word_tokenizer(vocab(jobs)))
        self.turns = TrainerTurns(self.trainer, threads)
        self.setup_s = time.perf_counter() - start
        self.step, self.close, self.policy = self.turns.step, self.turns.close, self.trainer.model

    def loss_on(self, prompts, chosen, rejected) -> float:
        """TRL's online step on given samples: first = chosen, second = rejected."""
        t = self.trainer
        both_prompts, both = prompts.repeat(2, 1), torch.cat([chosen, rejected])
        t._generate = lambda *a, **k: (both_prompts, torch.ones_like(both_prompts), both, torch.ones_like(both), None)
        try:
            with t.accelerator.autocast():
                return t.training_step(t.model, {"prompt": as_text(prompts)}).item()
        finally:
            del t._generate
            t.model.zero_grad(set_to_none=True)


def trl_makers(jobs, threads: int, response_len: int) -> dict:
    try:
        import trl  # noqa: F401
    except ImportError:
        print("trl is not installed (pip install 'trl==1.16.0'): TRL contestants skipped")
        return {}
    return {
        "TRL offline fastest": lambda: TRLOffline("TRL offline fastest", jobs, threads, fastest=True),
        "TRL offline defaults": lambda: TRLOffline("TRL offline defaults", jobs, threads, fastest=False),
        "TRL online fastest": lambda: TRLOnline("TRL online fastest", jobs, threads, True, response_len),
        "TRL online defaults": lambda: TRLOnline("TRL online defaults", jobs, threads, False, response_len),
    }


# -- checks and timing -------------------------------------------------------------------------------------


def moved_weights(jobs) -> dict:
    """SFT weights plus fixed noise: a policy unlike its reference, so the first loss is not 1/(2 beta)^2."""
    model = load_model(policy_path(jobs["sft"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return {k: v.clone() for k, v in model.state_dict().items()}


def check_forward(jobs) -> str:
    """specc's own GPT-2 forward against the transformers forward: bit-identical or no timing."""
    from specc.runtime import models
    model = load_model(policy_path(jobs["sft"]))
    model.load_state_dict(moved_weights(jobs))
    pairs = {k: torch.from_numpy(v[:64]) for k, v in read_pairs(jobs["golden_data"]).items()}
    logps = [models.response_logprobs(model, pairs["prompt"], pairs["chosen"]), logps_hf(model, pairs["prompt"], pairs["chosen"])]
    grads = []
    for x in logps:
        model.zero_grad(set_to_none=True)
        (x.sum(-1) ** 2).mean().backward()
        grads.append([p.grad for p in model.parameters()])
    samples = [models.sample(model, pairs["prompt"], 16, torch.Generator().manual_seed(0)),
               sample_hf(model, pairs["prompt"], 16, torch.Generator().manual_seed(0),
                         draw=lambda logits, generator: models._draw(logits, 1.0, generator))]
    if not (torch.equal(*logps) and all(map(torch.equal, *grads)) and torch.equal(*samples)):
        raise SystemExit("specc's GPT-2 forward no longer matches transformers' bit for bit (models.py)")
    return "specc's GPT-2 forward vs transformers': log-probs, gradients and samples bit-identical"


def check_losses(jobs, contestants: dict) -> list[str]:
    """Every contestant's loss on specc's first batch from the same weights (moved SFT policy, SFT reference)."""
    moved, sft = moved_weights(jobs), load_model(policy_path(jobs["sft"])).state_dict()
    lines = []
    for kind in ("offline", "online"):
        found = {}
        for job, name in ((kind, "specc"), ("offline_short", "specc, reference per step")):
            if job == "offline_short" and kind == "online":
                continue
            torch.use_deterministic_algorithms(True, warn_only=True)  # as run_job sets it
            learner = build_align(align_context(reference_in_the_step(jobs[job]) if job == "offline_short" else jobs[job]))
            learner.model.load_state_dict(moved)
            found[name] = learner.step_fn(0)["train/loss"]
            if name == "specc":
                # the pairs specc's step just trained on: the online stream's last batch, or offline step 0's
                pairs = (learner.flush_fn.__self__.buffer[-1][1] if kind == "online"
                         else OfflineSampler(align_context(jobs[job]))(0)[0])
                batch = (pairs["prompt"], pairs["chosen"], pairs["rejected"])
        torch.use_deterministic_algorithms(False)
        for name, c in contestants.items():
            if name.split()[0] in ("minimal", "TRL") and kind in name:
                c.policy.load_state_dict(moved)
                found[name] = c.loss_on(*batch)
                c.policy.load_state_dict(sft)
        verdicts = []
        for name, value in found.items():
            rel = abs(value - found["specc"]) / abs(found["specc"])
            # the two specc paths must agree bit for bit; TRL's defaults compute in bf16 autocast
            ok = rel <= (0.0 if name.startswith("specc") else 3e-2 if "defaults" in name else 1e-5)
            verdicts.append(f"{name} {value:.6f}" + ("" if name == "specc" else f" (rel. diff {rel:.1e})"))
            if not ok:
                raise SystemExit(f"{kind}: {name} computes a different loss on the same batch: {verdicts}")
        lines.append(f"same-batch loss, {kind}: " + ", ".join(verdicts))
    return lines


def measure(contestants: dict, rounds: int, steps: int, warmup: int) -> dict[str, list[float]]:
    """Per round and contestant: the median step time of `steps` consecutive steps (s)."""
    for c in contestants.values():
        torch.use_deterministic_algorithms(c.deterministic, warn_only=True)
        for _ in range(warmup):
            c.step()
    times = {name: [] for name in contestants}
    order = list(contestants)
    for r in range(rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
            # specc's jobs run with deterministic algorithms (run_job sets them); the others run as they ship
            torch.use_deterministic_algorithms(contestants[name].deterministic, warn_only=True)
            step_times = []
            for _ in range(steps):
                start = time.perf_counter()
                contestants[name].step()
                step_times.append(time.perf_counter() - start)
            times[name].append(statistics.median(step_times))
    return times


def ratios(times: dict[str, list[float]]) -> list[dict]:
    out = []
    for label, fast, slow, target in TARGETS:
        if fast not in times or slow not in times:
            continue
        value = statistics.median(s / f for f, s in zip(times[fast], times[slow]))  # speed-up = time ratio
        out.append({"name": label, "value": value, "unit": "x", "target": target, "met": value >= target,
                    "detail": f"{slow} {1e3 * statistics.median(times[slow]):.1f} ms / "
                              f"{fast} {1e3 * statistics.median(times[fast]):.1f} ms per step"})
    return out


def target_text(target: float) -> str:
    return f">= {target:.2f}x" if target >= 1 or abs(target - 1 / 1.1) > 1e-9 else "within 1.1x (>= 0.91x)"


def profile(contestant, steps: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    for _ in range(3):
        contestant.step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            contestant.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every contestant (specc's default: 1)")
    parser.add_argument("--rounds", type=int, default=5, help="turns per contestant; medians over rounds are reported")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per turn")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="contestant names to run (default: all)")
    parser.add_argument("--profile", help="print a torch.profiler table of this contestant's steps instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="specc-bench-train-") as tmp:
        start = time.perf_counter()
        jobs = build_workspace(Path(tmp), args.threads)
        print(f"workspace (data, SFT, reward model) built by specc in {time.perf_counter() - start:.1f} s")
        response_len = json.loads((jobs["task"].artifacts / "task.json").read_text())["response_len"]
        makers = {
            "specc offline": lambda: Specc("specc offline", jobs["offline"]),
            "specc offline, reference per step": lambda: Specc("specc offline, reference per step",
                                                               reference_in_the_step(jobs["offline_short"])),
            "minimal offline": lambda: MinimalOffline(jobs),
            "specc online": lambda: Specc("specc online", jobs["online"]),
            "minimal online": lambda: MinimalOnline(jobs, response_len),
        }
        makers.update(trl_makers(jobs, args.threads, response_len))
        wanted = [n for n in makers if not args.only or n in args.only or n == args.profile]
        contestants = {name: makers[name]() for name in wanted}
        if args.profile:
            profile(contestants[args.profile], args.steps)
            return 0
        checks = [check_forward(jobs)] + check_losses(jobs, contestants)
        times = measure(contestants, args.rounds, args.steps, args.warmup)
        results = ratios(times)
        for c in contestants.values():
            getattr(c, "close", lambda: None)()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cpus, load {load:.1f}; "
          f"batch {BATCH}, 8+{response_len} tokens; median of {args.rounds} rounds x {args.steps} steps")
    for line in checks:
        print(line)
    print(f"\n{'contestant':38s} {'ms/step':>8s} {'steps/s':>8s} {'setup s':>8s}")
    for name, c in contestants.items():
        ms = 1e3 * statistics.median(times[name])
        print(f"{name:38s} {ms:8.1f} {1e3 / ms:8.2f} {c.setup_s:8.2f}")
    print(f"\n{'ratio (step-time speed-up)':38s} {'value':>7s}  {'target':22s} verdict")
    for r in results:
        print(f"{r['name']:38s} {r['value']:6.2f}x  {target_text(r['target']):22s} {'met' if r['met'] else 'MISSED'}"
              f"   ({r['detail']})")
    for r in results:
        print("RESULT " + json.dumps({**{k: r[k] for k in ("name", "value", "unit", "target", "met")}, "note": r["detail"]}))
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
                                         "threads": args.threads, "times_s": times, "checks": checks,
                                         "results": results}, indent=1))
    return 0 if all(r["met"] for r in results if "stretch" not in r["name"]) else 1


if __name__ == "__main__":
    sys.exit(main())
