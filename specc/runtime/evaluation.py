"""The paper's evaluation of a policy checkpoint (Sec. 3, 5, App. D, E.1).

Every evaluation uses the same seeded draws (common random numbers), so a
curve over checkpoints moves because the policy moved, not the dice. Besides the
means, each evaluation records its per-item outcomes (`outcome/<what>/<index>`:
the win on each held-out prompt, its oracle reward, the verdict on each pair of
D_golden): runs evaluated on the same prompts and pairs are then compared item
by item, paired.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from specc.contracts import outcome_metric
from specc.runtime.artifacts import read_pairs, read_prompt_set, task_info
from specc.runtime.batch import Responder, pair_logps
from specc.runtime.context import JobContext
from specc.runtime.device import autocast
from specc.runtime.engines import Draw, open_engine
from specc.runtime.metrics import (classifier_accuracy, classifier_correct, classifier_scores, exact_token_kl,
                                   win_outcomes, win_rate_interval)
from specc.runtime.models import ROWS_PER_FORWARD, response_logits, response_logprobs, token_logprobs


class Evaluator:
    def __init__(self, ctx: JobContext, policy, reference):
        settings = ctx.config["evaluate"]
        self.policy, self.reference, self.device = policy, reference, ctx.device
        self.seed = settings["seed"]
        self.respond = Responder.for_task(task_info(ctx.upstream("prompts")))
        prompts, prompt_mask = read_prompt_set(ctx.upstream("prompts"), "eval")
        prompts = torch.from_numpy(prompts).to(self.device)
        self.engine = open_engine(settings.get("engine", "hf"), self.respond, self.device, prompts.shape[1])
        prompt_mask = None if prompt_mask is None else torch.from_numpy(prompt_mask).to(self.device)
        self.win_prompts = (prompts[: settings["win_prompts"]],
                            None if prompt_mask is None else prompt_mask[: settings["win_prompts"]])
        note_capped(ctx.job, settings, len(prompts))
        self.kl_prompts = (prompts[: settings["kl_prompts"]],
                           None if prompt_mask is None else prompt_mask[: settings["kl_prompts"]])
        self.judge = ctx.judge("evaluate.judge") if ctx.has("evaluate.judge") else None
        # an online run's own judge (the proxy), scored against the golden judge on the policy's samples
        self.proxy = ctx.judge("sampler.online") if ctx.has("sampler.online") else None
        # on a GPU, a judge only evaluations read (no online sampler shares it) waits on the host
        # between them: a 12B golden judge's 24 GB are free for training the rest of the time
        self.parked = [] if self.device.type == "cpu" or ctx.has("sampler.online") else [
            judge for judge in (self.judge,) if isinstance(judge, torch.nn.Module)]
        baseline_role = "evaluate.baseline" if ctx.has("evaluate.baseline") else "init"
        self.baseline_responses = self._sample(ctx.policy(baseline_role), self.win_prompts, "baseline")
        self.pairs = None
        if ctx.has("evaluate.pairs"):
            pairs = read_pairs(ctx.upstream("evaluate.pairs"))
            n = settings["classifier_pairs"]
            self.pairs = {k: torch.from_numpy(v[:n]).to(self.device) for k, v in pairs.items()}
            with torch.no_grad():
                self.ref_pair_logps = self._pair_logps(reference)
        for judge in self.parked:
            judge.cpu()

    def _sample(self, model, prompts, purpose: str, keep: str | None = None):
        """(responses, mask) for (prompts, mask); the same draws at every evaluation. With
        `keep`, also what sampling kept of the model's distributions (models.sample)."""
        draw = Draw(self.seed, purpose, 0)
        with torch.no_grad(), autocast(self.device):
            if keep is None:
                return self.engine.sample(model, *prompts, draw)
            return self.engine.sample_keeping(keep, model, *prompts, draw)

    def _logits(self, model, prompts, responses):
        with autocast(self.device):
            return response_logits(model, prompts[0], responses, prompts[1])

    def _kl(self, policy_logits, samples) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Exact KL to the reference of each KL sample [B], and the policy's and the reference's
        token log-probs of the samples, in chunks of rows: one chunk of reference logits
        ([rows, R, vocab]) is alive at a time, next to the policy's kept from sampling."""
        kls, policy, reference = [], [], []
        for i in range(0, len(samples[0]), ROWS_PER_FORWARD):
            rows = slice(i, i + ROWS_PER_FORWARD)
            prompts = tuple(None if t is None else t[rows] for t in self.kl_prompts)
            tokens, sample_mask = samples[0][rows], None if samples[1] is None else samples[1][rows]
            ref_logits = self._logits(self.reference, prompts, tokens)
            kls.append(exact_token_kl(policy_logits[rows], ref_logits, sample_mask))
            policy.append(token_logprobs(policy_logits[rows], tokens))
            reference.append(token_logprobs(ref_logits, tokens))
        return torch.cat(kls), (torch.cat(policy), torch.cat(reference))

    def _logps(self, model, prompts, responses):
        """Sequence log-probs of (responses, mask) after (prompts, mask)."""
        with autocast(self.device):
            return response_logprobs(model, prompts[0], responses[0], responses[1], prompts[1]).sum(-1)

    def _pair_logps(self, model):
        return pair_logps(model, self.pairs, "sum", self.device)

    def _prefer(self, judge, prompts, first, second) -> torch.Tensor:
        """The judge's P(first beats second) for (tokens, mask) pairs, as a float64 tensor."""
        return torch.from_numpy(np.asarray(judge.prob_first(prompts[0], first[0], second[0], prompt_mask=prompts[1],
                                                            first_mask=first[1], second_mask=second[1]),
                                           dtype=np.float64))

    @torch.no_grad()
    def __call__(self, step: int) -> dict:
        self.engine.sync(self.policy, step)  # an evaluation always samples the current weights
        with visiting(self.parked, self.device):
            out = self._evaluate()
        self.engine.sleep()
        return out

    def _evaluate(self) -> dict:
        out = {}
        # the policy's logits come from the sampling pass itself: no second policy forward
        kl_samples, policy_logits = self._sample(self.policy, self.kl_prompts, "kl", keep="logits")
        kl, kl_logps = self._kl(policy_logits, kl_samples)
        del policy_logits
        out["eval/kl"] = kl.mean().item()
        if self.judge is not None:
            # the policy's log-probs of its samples come with them
            win_samples, win_logps = self._sample(self.policy, self.win_prompts, "win", keep="logprobs")
            p = self._prefer(self.judge, self.win_prompts, win_samples, self.baseline_responses)
            wins = win_outcomes(p)
            rate, lo, hi = win_rate_interval(wins)
            out.update({"eval/win_rate": rate, "eval/win_rate_lo": lo, "eval/win_rate_hi": hi, **per_item("win", wins)})
            if hasattr(self.judge, "reward"):
                rewards = self.judge.reward(self.win_prompts[0], win_samples[0])
                out["eval/oracle_reward"] = float(np.mean(rewards))
                out.update(per_item("oracle_reward", rewards))
            out.update(self._self_classification(kl_samples, win_samples, kl_logps, win_logps))
        if self.pairs is not None:
            chosen, rejected = self._pair_logps(self.policy)
            scores = classifier_scores(chosen, rejected, *self.ref_pair_logps)
            correct = classifier_correct(scores, torch.ones_like(scores, dtype=torch.bool))
            out["eval/classifier_accuracy"] = correct.mean().item()
            out.update(per_item("classifier_correct", correct))
            out["eval/logp_chosen"] = chosen.mean().item()
            out["eval/logp_rejected"] = rejected.mean().item()
        return out

    def _self_classification(self, first, second_all, first_logps, second_logps) -> dict:
        """App. E.1 / Fig. 6: on pairs of the policy's own samples, how often the policy (as a
        classifier) and the online run's proxy judge agree with the golden judge.
        `first`, `second_all`: (responses, mask) after the KL and the win prompts;
        `first_logps`: (policy, reference) token log-probs of `first`; `second_logps`: the
        policy's token log-probs of `second_all`, kept while sampling it."""
        n = min(len(first[0]), len(second_all[0]))
        cut = lambda pair: (pair[0][:n], None if pair[1] is None else pair[1][:n])  # noqa: E731
        prompts, first, second = cut(self.win_prompts), cut(first), cut(second_all)
        golden = self._prefer(self.judge, prompts, first, second)
        decided = golden != 0.5
        if not decided.any():
            return {}
        out = {}
        if self.proxy is not None:
            proxy = self._prefer(self.proxy, prompts, first, second)
            agree = torch.where(proxy == 0.5, 0.5, ((proxy > 0.5) == (golden > 0.5)).double())
            out["eval/proxy_accuracy_on_policy"] = agree[decided].mean().item()
        if _same(prompts, cut(self.kl_prompts)):  # the KL pass already scored these very sequences
            policy_first, ref_first = (_masked(logps[:n], first[1]).sum(-1) for logps in first_logps)
        else:
            policy_first, ref_first = self._logps(self.policy, prompts, first), self._logps(self.reference, prompts, first)
        scores = classifier_scores(policy_first, _masked(second_logps[:n], second[1]).sum(-1),
                                   ref_first, self._logps(self.reference, prompts, second))
        decided = decided.to(scores.device)
        out["eval/self_classifier_accuracy"] = classifier_accuracy(scores[decided], (golden > 0.5).to(scores.device)[decided])
        return out


@contextlib.contextmanager
def visiting(models: list, device: torch.device):
    """`models` on `device` for the block, back on the host after it."""
    for model in models:
        model.to(device)
    try:
        yield
    finally:
        for model in models:
            model.cpu()


def per_item(name: str, values) -> dict[str, float]:
    """One metric per evaluated item (prompt or pair), `outcome/<name>/<index>`, for paired comparisons."""
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    return {outcome_metric(name, i): float(v) for i, v in enumerate(values)}


def _same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and (a[1] is None) == (b[1] is None) and (a[1] is None or torch.equal(a[1], b[1]))


def _masked(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return values if mask is None else values * mask


def note_capped(job, settings: dict, held_out: int) -> None:
    """Fewer held-out prompts than asked for: the evaluation uses what there is, and says so."""
    for key in ("win_prompts", "kl_prompts"):
        if settings[key] > held_out:
            job.add_note(f"evaluate.{key}={settings[key]} but the data set holds out only {held_out} prompts: "
                         f"{key.split('_')[0]} is measured on {held_out}")
