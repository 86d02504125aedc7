"""The embedded synthetic preference task: prompts, a hidden oracle reward, a mediocre generator.

Everything is a pure function of the task config (numpy, seeded), so a task
is rebuilt identically wherever a job runs. Token 0..vocab-1 are content
tokens; prompts and responses have fixed lengths.

Variants (selectable by name; old ones stay):

- `topic` (the first prototype's): topic = first prompt token mod 8; the
  reward is the mean topic weight of the response tokens minus a penalty
  for any token used more than 3 times. Additive over tokens.
- `motif`: the prompt's first `k` tokens are its *motif*. The reward counts
  which motif tokens the response contains (a set: repeats earn nothing),
  a bonus when they appear in the motif's order, and a penalty for tokens
  repeated more than twice; a small additive token preference breaks ties.
  Global, non-additive structure that a judge of whole responses sees but a
  per-token likelihood ratio does not. (Tiny preference models stay near 50%
  on it within minutes of CPU: matching response tokens to prompt positions
  is slow to learn from scratch.)
- `cover` (the default since v1; see docs/embedded-task.md): a hidden set S of
  `cover_set` tokens. The reward is the number of distinct tokens of S the
  response contains, minus `repeat_penalty` per extra copy of a token of S,
  plus 0.1 x a small additive token preference (breaks ties). Coverage
  saturates, so "emit more S tokens", which a per-token likelihood ratio
  learns from pairs, overshoots into wasted copies; a judge reading the whole
  response counts them. The behaviour policy of D_initial gives each response
  its own random unigram (`behaviour_spread`), so peaked responses with many
  repeats and flat ones with wide coverage both appear in the data.

A variant's prompts, reward and behaviour policy never change under its name
(VARIANT_VERSION records the version); a change is a new variant.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from functools import cached_property

import numpy as np

MOTIF_LEN = 3
TOPICS = 8
VARIANT_VERSION = {"topic": 1, "motif": 1, "cover": 1}


@dataclass(frozen=True)
class SyntheticTask:
    variant: str
    vocab: int
    prompt_len: int
    response_len: int
    train_prompts: int
    eval_prompts: int
    label_temperature: float
    behaviour_temperature: float
    seed: int
    # `cover` only (defaults keep configs written before these fields loadable)
    cover_set: int = 8
    repeat_penalty: float = 0.5
    behaviour_spread: float = 2.0

    @classmethod
    def from_config(cls, task: dict) -> "SyntheticTask":
        fields = cls.__dataclass_fields__
        return cls(**{k: task[k] for k in fields if k in task or fields[k].default is MISSING})

    @cached_property
    def _hidden(self) -> dict:
        """The oracle's hidden parameters, from a stream independent of the prompts."""
        rng = np.random.default_rng([self.seed, 1])
        return {"token_pref": rng.normal(0.0, 1.0, size=(TOPICS, self.vocab)),
                "copy_bias": rng.uniform(0.0, 1.0, size=self.vocab),
                # `cover`: the hidden set of tokens a good response covers
                "cover_set": np.sort(rng.permutation(self.vocab)[: self.cover_set])}

    # -- data -----------------------------------------------------------------------

    def prompts(self, split: str) -> np.ndarray:
        n = self.train_prompts if split == "train" else self.eval_prompts
        rng = np.random.default_rng([self.seed, 2 if split == "train" else 3])
        if self.variant == "motif":
            # distinct motif tokens first, then filler
            motif = np.argsort(rng.random((n, self.vocab)), axis=1)[:, :MOTIF_LEN]
            filler = rng.integers(0, self.vocab, size=(n, self.prompt_len - MOTIF_LEN))
            return np.concatenate([motif, filler], axis=1).astype(np.int64)
        return rng.integers(0, self.vocab, size=(n, self.prompt_len)).astype(np.int64)

    def behaviour_responses(self, prompts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The mediocre generator of D_initial: copies prompt tokens sometimes, else noise."""
        n = len(prompts)
        if self.variant == "cover":
            return self._spread_responses(n, rng)
        copy = rng.random((n, self.response_len)) < 0.35 / self.behaviour_temperature
        from_prompt = prompts[np.arange(n)[:, None], rng.integers(0, self.prompt_len, (n, self.response_len))]
        noise = rng.integers(0, self.vocab, size=(n, self.response_len))
        return np.where(copy, from_prompt, noise).astype(np.int64)

    def _spread_responses(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`cover`'s behaviour policy: each response draws iid tokens from its own random
        unigram softmax(z / behaviour_temperature), z ~ N(0, s^2), s ~ U(0, behaviour_spread).
        Spread responses repeat a few tokens, flat ones cover many: the data shows both."""
        scale = rng.uniform(0.0, self.behaviour_spread, size=(n, 1)) / self.behaviour_temperature
        logits = rng.normal(size=(n, self.vocab)) * scale
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
        u = rng.random((n, self.response_len))
        return np.minimum((u[:, :, None] > cdf[:, None, :]).sum(axis=2), self.vocab - 1).astype(np.int64)

    # -- the hidden oracle ------------------------------------------------------------

    def reward(self, prompts: np.ndarray, responses: np.ndarray) -> np.ndarray:
        prompts = np.asarray(prompts)
        responses = np.asarray(responses)
        topic = prompts[:, 0] % TOPICS
        pref = self._hidden["token_pref"][topic[:, None], responses]  # [n, R]
        counts = _token_counts(responses, self.vocab)
        if self.variant == "topic":
            return pref.mean(axis=1) - 0.5 * np.maximum(counts - 3, 0).sum(axis=1)
        if self.variant == "cover":
            in_set = counts[:, self._hidden["cover_set"]]  # [n, k]
            covered = np.minimum(in_set, 1).sum(axis=1)
            wasted = np.maximum(in_set - 1, 0).sum(axis=1)
            return covered - self.repeat_penalty * wasted + 0.1 * self._hidden["token_pref"][0][responses].mean(axis=1)
        motif = prompts[:, :MOTIF_LEN]
        present = (responses[:, None, :] == motif[:, :, None])  # [n, k, R]
        covered = present.any(axis=2)
        first = np.where(covered, present.argmax(axis=2), self.response_len)
        in_order = (np.diff(first, axis=1) > 0).all(axis=1) & covered.all(axis=1)
        repeats = np.maximum(counts - 2, 0).sum(axis=1)
        return covered.sum(axis=1) + 1.0 * in_order - 0.5 * repeats + 0.1 * pref.mean(axis=1)

    def preference_prob(self, prompts, first, second) -> np.ndarray:
        """P(first beats second) for noisy "human" labels: sigmoid(dr / T)."""
        delta = self.reward(prompts, first) - self.reward(prompts, second)
        return 1.0 / (1.0 + np.exp(-delta / self.label_temperature))

    def initial_pairs(self) -> dict[str, np.ndarray]:
        """D_initial: two behaviour responses per train prompt, labelled by noisy raters."""
        rng = np.random.default_rng([self.seed, 4])
        prompts = self.prompts("train")
        a = self.behaviour_responses(prompts, rng)
        b = self.behaviour_responses(prompts, rng)
        a_wins = rng.random(len(prompts)) < self.preference_prob(prompts, a, b)
        chosen = np.where(a_wins[:, None], a, b)
        rejected = np.where(a_wins[:, None], b, a)
        return {"prompt": prompts, "chosen": chosen, "rejected": rejected}


def _token_counts(responses: np.ndarray, vocab: int) -> np.ndarray:
    counts = np.zeros((len(responses), vocab), dtype=np.int64)
    np.add.at(counts, (np.arange(len(responses))[:, None], responses), 1)
    return counts
