"""Names shared across layers: what the runtime writes and the store and reports read.

The compiler, runtime, store and reports never import each other's internals; they agree
through job dirs and the names below. A name spelled by hand in two layers can drift apart
silently (a report reading a metric nothing writes); spelled here once, it cannot.
`tests/test_contracts.py` checks these against a real run: every declared metric is
written by some stage, every metric a stage writes is declared, and every metric and config
key the store's views and the reports read is declared.

This module imports nothing from specc (the compiler imports it, and must not import torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# -- runtime version ---------------------------------------------------------------------------
# Part of every job id. Bump when a change to the runtime changes what an existing job config
# computes (CPU results differ in any bit), so cached jobs of the old version are recomputed.
# 2: each prompt computed once for its two responses, GPT-2's tanh GELU as one kernel in tiny
#    models, both online samples in one decode, fused AdamW, tokens drawn by inverting the CDF.
# 3: evaluations record per-item outcomes (win and oracle reward per prompt, verdict per pair).
# 4: padded (real) data: batches trimmed to their longest real prompt and response, logits
#    only at the response positions, sampling and judging in fixed chunks of rows (uniforms
#    drawn up front), sampling in eval mode; bf16 specs train float32 masters. The synthetic
#    task's results are unchanged (same metrics, new ids).
RUNTIME_VERSION = 4

# -- executors ---------------------------------------------------------------------------------
# `executor.kind` in a spec and `specc run --executor`; runtime.executor.EXECUTORS maps each to
# its implementation (a test keeps the two in step).
EXECUTORS = ("debug", "local", "slurm")


# -- samplers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplerKind:
    """A source of an align stage's labelled pairs: the key under `sampler:` in a spec, the kinds
    of stage its value may name, and the method labels the store gives its runs
    (store.schema.SAMPLER_METHODS spells how)."""

    names: tuple[str, ...]
    methods: tuple[str, ...]
    description: str


# In legend order: reports draw methods in this order.
SAMPLERS: dict[str, SamplerKind] = {
    "online": SamplerKind(("oracle", "preference_model"), ("online",),
                          "the policy's own samples, labelled by a judge stage each step"),
    "offline": SamplerKind(("dataset", "label", "pairs"), ("offline",), "a fixed pair dataset"),
    "replay": SamplerKind(("align",), ("tandem", "tandem-shuffled"),
                          "an online align stage's recorded stream, in its order (shuffle 0) or shuffled"),
}
METHODS = tuple(method for kind in SAMPLERS.values() for method in kind.methods)
UNKNOWN_METHOD = "unknown sampler"  # what the store calls an align run whose sampler it has no label for

# -- metrics -----------------------------------------------------------------------------------
# name -> what it measures. Stages write them (runtime), the store's views and the reports read
# them. Namespaces: train/ per step, online/ per online step, eval/ per evaluated checkpoint,
# data/ once per data job.
METRICS: dict[str, str] = {
    "train/loss": "the stage's training loss at this step",
    "train/margin_mean": "align: mean of h, the policy-vs-reference log-ratio margin of the step's pairs",
    "train/margin_std": "align: standard deviation of h over the step's pairs",
    "train/logp_chosen": "align: mean policy log-probability of the step's chosen responses",
    "train/logp_rejected": "align: mean policy log-probability of the step's rejected responses",
    "online/judge_accuracy_golden": "online align: how often the labelling judge agrees with the golden judge",
    "eval/kl": "exact per-token KL to the reference (SFT) policy on held-out prompts",
    "eval/win_rate": "win rate against the baseline policy on held-out prompts, judged by the golden judge",
    "eval/win_rate_lo": "lower end of the win rate's 95% Wilson interval",
    "eval/win_rate_hi": "upper end of the win rate's 95% Wilson interval",
    "eval/oracle_reward": "mean oracle reward of the policy's responses (synthetic task)",
    "eval/classifier_accuracy": "the policy as a classifier (implicit reward) of D_golden's pairs",
    "eval/self_classifier_accuracy": "the policy as a classifier of pairs of its own samples, judged golden",
    "eval/proxy_accuracy_on_policy": "online: the labelling (proxy) judge's agreement with the golden judge on the "
                                     "policy's samples",
    "eval/logp_chosen": "mean policy log-probability of D_golden's chosen responses",
    "eval/logp_rejected": "mean policy log-probability of D_golden's rejected responses",
    "eval/judge_accuracy": "preference model: accuracy on its held-out pairs",
    "data/label_agreement_with_oracle": "synthetic dataset: how often D_initial's labels agree with the oracle",
    "data/agreement_with_input_labels": "label: how often the judge keeps the input's order",
    "data/a_win_rate": "pairs: how often policy a's response wins",
}
EVAL_PREFIX = "eval/"
EVAL_METRICS = tuple(name for name in METRICS if name.startswith(EVAL_PREFIX))

# Per-item outcomes of an evaluation, `outcome/<kind>/<index>`: one metric per held-out prompt
# or D_golden pair, so runs evaluated on the same items are compared item by item.
OUTCOME_PREFIX = "outcome/"
OUTCOMES: dict[str, str] = {
    "win": "1, 0.5 or 0: the policy's response against the baseline's on one held-out prompt",
    "oracle_reward": "the oracle reward of the policy's response on one held-out prompt",
    "classifier_correct": "1, 0.5 or 0: the policy as a classifier on one pair of D_golden",
}


def outcome_metric(kind: str, index: int) -> str:
    return f"{OUTCOME_PREFIX}{kind}/{index:05d}"


# -- job config keys read outside the runtime ---------------------------------------------------
# Paths into a job's resolved config (job.json `config`) that the store's views and the reports
# read with json_extract, or that decide when a job records something they read.
CONFIG_KEYS: dict[str, str] = {
    "loss.name": "runs.loss",
    "loss.beta": "runs.beta",
    "train.lr": "runs.lr",
    "train.seed": "runs.seed and the replicate label",
    "train.eval_at": "steps evaluated besides every train.eval_every (dense early evaluations)",
    "train.eval_every": "how often an align stage is evaluated",
    "model.size": "runs.policy_size",
    "sampler.online": "runs.method",
    "sampler.offline": "runs.method, the reports' data_stage",
    "sampler.replay": "runs.method",
    "sampler.shuffle": "runs.method and runs.shuffle_level",
    "evaluate.classifier_pairs": "the reports' binomial errors of classifier accuracies",
    "evaluate.kl_prompts": "the reports' binomial errors",
    "evaluate.win_prompts": "the reports' binomial errors",
}

# -- job dir artifacts -------------------------------------------------------------------------
# Files a job writes under artifacts/ that another job or a report reads.
TASK_FILE = "task.json"  # dataset/label/pairs: vocabulary and widths (and the synthetic task)
PAIRS_FILE = "pairs.parquet"  # dataset/label/pairs: the pair table
EXAMPLES_FILE = "examples.json"  # dataset: a few pairs as text, shown by the report
STREAM_DIR = "stream"  # online align: the recorded labelled stream, for replay
POLICY_FILE = "policy.safetensors"  # sft/align: the final policy


def prompts_file(split: str) -> str:
    return f"prompts_{split}.parquet"


def policy_filename(step: int | None = None) -> str:
    """The final policy (step None), or the named checkpoint a stage keeps at `step` (train.save_at)."""
    return POLICY_FILE if step is None else f"policy@{step}.safetensors"


# -- local content -----------------------------------------------------------------------------
def looks_like_path(name: str) -> bool:
    """Hub ids are `owner/name`; a name starting like a path is meant as one."""
    return name.startswith(("/", "./", "../", "~"))


def local_path(name: str) -> Path | None:
    """The one rule for "is this model, tokenizer or dataset name local content": the path it
    names (`~` expanded) when that exists, else None (a hub name). A name that looks like a path
    but does not exist is the caller's error to report (the compiler does, with its location)."""
    path = Path(name).expanduser()
    return path if path.exists() else None
