"""The paper's evaluation of a policy checkpoint (Sec. 3, 5, App. D, E.1).

Every evaluation uses the same seeded draws (common random numbers), so a
curve over checkpoints moves because the policy moved, not the dice.
"""

from __future__ import annotations

import numpy as np
import torch

from specc.runtime.artifacts import read_pairs, read_prompts, task_info
from specc.runtime.context import JobContext
from specc.runtime.judges import load_judge
from specc.runtime.loop import step_generator
from specc.runtime.metrics import (classifier_accuracy, classifier_scores, exact_token_kl,
                                   mean_with_interval, win_outcomes)
from specc.runtime.models import response_logits, response_logprobs, sample, token_logprobs


class Evaluator:
    def __init__(self, ctx: JobContext, policy, reference):
        settings = ctx.config["evaluate"]
        self.policy, self.reference = policy, reference
        self.seed = settings["seed"]
        self.response_len = task_info(ctx.upstream("prompts"))["response_len"]
        prompts = torch.from_numpy(read_prompts(ctx.upstream("prompts"), "eval"))
        self.win_prompts = prompts[: settings["win_prompts"]]
        self.kl_prompts = prompts[: settings["kl_prompts"]]
        self.judge = load_judge(ctx.upstream("evaluate.judge")) if ctx.has("evaluate.judge") else None
        # an online run's own judge (the proxy), scored against the golden judge on the policy's samples
        self.proxy = load_judge(ctx.upstream("sampler.online")) if ctx.has("sampler.online") else None
        baseline_role = "evaluate.baseline" if ctx.has("evaluate.baseline") else "init"
        baseline = ctx.policy(baseline_role)
        self.baseline_responses = sample(baseline, self.win_prompts, self.response_len,
                                         step_generator(self.seed, "baseline", 0))
        self.pairs = None
        if ctx.has("evaluate.pairs"):
            pairs = read_pairs(ctx.upstream("evaluate.pairs"))
            n = settings["classifier_pairs"]
            self.pairs = {k: torch.from_numpy(v[:n]) for k, v in pairs.items()}
            with torch.no_grad():
                self.ref_pair_logps = self._sequence_logps(reference, self.pairs)

    @staticmethod
    def _sequence_logps(model, pairs):
        return (response_logprobs(model, pairs["prompt"], pairs["chosen"]).sum(-1),
                response_logprobs(model, pairs["prompt"], pairs["rejected"]).sum(-1))

    @torch.no_grad()
    def __call__(self, step: int) -> dict:
        out = {}
        kl_samples = sample(self.policy, self.kl_prompts, self.response_len, step_generator(self.seed, "kl", 0))
        kl_logits = (response_logits(self.policy, self.kl_prompts, kl_samples),
                     response_logits(self.reference, self.kl_prompts, kl_samples))
        out["eval/kl"] = exact_token_kl(*kl_logits).mean().item()
        if self.judge is not None:
            win_samples = sample(self.policy, self.win_prompts, self.response_len, step_generator(self.seed, "win", 0))
            p = self.judge.prob_first(self.win_prompts, win_samples, self.baseline_responses)
            rate, lo, hi = mean_with_interval(win_outcomes(p))
            out.update({"eval/win_rate": rate, "eval/win_rate_lo": lo, "eval/win_rate_hi": hi})
            if hasattr(self.judge, "reward"):
                out["eval/oracle_reward"] = float(np.mean(self.judge.reward(self.win_prompts, win_samples)))
            out.update(self._self_classification(kl_samples, win_samples, kl_logits))
        if self.pairs is not None:
            chosen, rejected = self._sequence_logps(self.policy, self.pairs)
            scores = classifier_scores(chosen, rejected, *self.ref_pair_logps)
            out["eval/classifier_accuracy"] = classifier_accuracy(scores, torch.ones_like(scores, dtype=torch.bool))
            out["eval/logp_chosen"] = chosen.mean().item()
            out["eval/logp_rejected"] = rejected.mean().item()
        return out

    def _self_classification(self, first, second_all, first_logits) -> dict:
        """App. E.1 / Fig. 6: on pairs of the policy's own samples, how often the policy (as a
        classifier) and the online run's proxy judge agree with the golden judge.
        `first_logits`: (policy, reference) response logits of `first` after the KL prompts."""
        n = min(len(first), len(second_all))
        prompts, first, second = self.win_prompts[:n], first[:n], second_all[:n]
        golden = torch.from_numpy(np.asarray(self.judge.prob_first(prompts, first, second)))
        decided = golden != 0.5
        if not decided.any():
            return {}
        out = {}
        if self.proxy is not None:
            proxy = torch.from_numpy(np.asarray(self.proxy.prob_first(prompts, first, second)))
            agree = torch.where(proxy == 0.5, 0.5, ((proxy > 0.5) == (golden > 0.5)).double())
            out["eval/proxy_accuracy_on_policy"] = agree[decided].mean().item()
        if torch.equal(prompts, self.kl_prompts[:n]):  # the KL pass already scored these very sequences
            policy_first, ref_first = (token_logprobs(logits[:n], first).sum(-1) for logits in first_logits)
        else:
            policy_first = response_logprobs(self.policy, prompts, first).sum(-1)
            ref_first = response_logprobs(self.reference, prompts, first).sum(-1)
        scores = classifier_scores(policy_first, response_logprobs(self.policy, prompts, second).sum(-1),
                                   ref_first, response_logprobs(self.reference, prompts, second).sum(-1))
        out["eval/self_classifier_accuracy"] = classifier_accuracy(scores[decided], (golden > 0.5)[decided])
        return out
