"""Preference models (App. A): a transformer that judges whole responses.

- pairwise: scores the tuple (x, y1, y2) -> logit of P(y1 beats y2), reading
  `x ++ y1 ++ SEP ++ y2`; trained with the order of the two responses
  randomised (Eq. 5) and judged symmetrised: P = (s(x,y1,y2) + 1 - s(x,y2,y1)) / 2,
  so y1 wins iff s(x,y1,y2) > s(x,y2,y1).
- pointwise: a Bradley-Terry reward model r(x, y); P(y1 beats y2) = sigmoid(r1 - r2).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2Model

from specc.runtime.jobdir import JobDir, atomic_write_json
from specc.runtime.models import TINY_SIZES


class PreferenceModel(torch.nn.Module):
    def __init__(self, form: str, size: str, vocab: int, max_len: int):
        super().__init__()
        width, layers, heads = TINY_SIZES[size]
        self.form, self.vocab = form, vocab
        self.sep = vocab  # one extra token id separates the two responses
        self.backbone = GPT2Model(GPT2Config(vocab_size=vocab + 1, n_positions=max_len, n_embd=width, n_layer=layers,
                                             n_head=heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                             bos_token_id=None, eos_token_id=None, pad_token_id=None))
        self.head = torch.nn.Linear(width, 1)

    def _score(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=tokens).last_hidden_state
        return self.head(hidden[:, -1]).squeeze(-1)

    def logit(self, prompts, first, second) -> torch.Tensor:
        """pairwise: logit of P(first beats second) as shown in this order; pointwise: r1 - r2."""
        if self.form == "pointwise":
            return self._score(torch.cat([prompts, first], 1)) - self._score(torch.cat([prompts, second], 1))
        sep = torch.full((len(prompts), 1), self.sep, dtype=prompts.dtype)
        return self._score(torch.cat([prompts, first, sep, second], 1))

    @torch.no_grad()
    def prob_first(self, prompts, first, second, batch: int = 512) -> np.ndarray:
        """Symmetrised P(first beats second)."""
        prompts, first, second = (torch.as_tensor(np.asarray(t)) if not isinstance(t, torch.Tensor) else t
                                  for t in (prompts, first, second))
        out = []
        for i in range(0, len(prompts), batch):
            p, a, b = prompts[i:i + batch], first[i:i + batch], second[i:i + batch]
            if self.form == "pointwise":
                out.append(torch.sigmoid(self.logit(p, a, b).double()))
            else:
                out.append((torch.sigmoid(self.logit(p, a, b).double()) + 1 - torch.sigmoid(self.logit(p, b, a).double())) / 2)
        return torch.cat(out).numpy()

    def init_from_policy(self, policy) -> None:
        """Start the backbone from a policy (e.g. SFT): same blocks, embedding rows copied."""
        source = policy.transformer.state_dict()
        own = self.backbone.state_dict()
        for name, tensor in source.items():
            if name == "wte.weight":
                own[name][: tensor.shape[0]] = tensor
            elif name in own and own[name].shape == tensor.shape:
                own[name] = tensor
        self.backbone.load_state_dict(own)


def save_preference_model(model: PreferenceModel, job: JobDir, meta: dict) -> None:
    path = job.artifacts / "judge.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
    atomic_write_json(job.artifacts / "judge.json", {"type": "preference_model", **meta})


def load_preference_model(job: JobDir, meta: dict | None = None) -> PreferenceModel:
    meta = meta or json.loads((job.artifacts / "judge.json").read_text())
    model = PreferenceModel(meta["form"], meta["size"], meta["vocab"], meta["max_len"])
    model.load_state_dict(load_file(str(job.artifacts / "judge.safetensors")))
    model.eval()
    return model
