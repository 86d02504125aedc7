"""Preference models (App. A): a transformer that judges whole responses.

- pairwise: scores the tuple (x, y1, y2) -> logit of P(y1 beats y2), reading
  `x ++ y1 ++ SEP ++ y2`; trained with the order of the two responses
  randomised (Eq. 5) and judged symmetrised: P = (s(x,y1,y2) + 1 - s(x,y2,y1)) / 2,
  so y1 wins iff s(x,y1,y2) > s(x,y2,y1).
- pointwise: a Bradley-Terry reward model r(x, y); P(y1 beats y2) = sigmoid(r1 - r2).

The backbone is a tiny GPT-2 built from config (family `tiny`) or any transformers base
model (family `hub`: a hub name or a `save_pretrained` folder); a linear head scores its
hidden state. Real data comes padded (prompts on the left, responses on the right, see
runtime.data.tokenize): with masks the score is read at each row's last real token, and
position ids count real tokens only, so a score does not depend on how much padding a
batch needed. Without masks (the synthetic task) every token is real and the last
position is read.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2Model

from specc.runtime.jobdir import JobDir, atomic_write_json
from specc.runtime.models import (ROWS_PER_FORWARD, TINY_ACTIVATION, TINY_SIZES, last_hidden, positions,
                                  in_row_chunks, shared_prompt_hidden)
from specc.runtime.models_hub import resolve_dtype


class PreferenceModel(torch.nn.Module):
    """A judge: `backbone` (hidden states out) and a linear `head` on one position.

    Built as a tiny GPT-2 of `size` from config, or around a given base model
    (`backbone`, with its `sep` token id and `source`, a description for judge.json)."""

    def __init__(self, form: str, size: str | None, vocab: int, max_len: int,
                 backbone: torch.nn.Module | None = None, sep: int | None = None, source: dict | None = None):
        super().__init__()
        self.form, self.vocab, self.max_len = form, vocab, max_len
        if backbone is None:
            width, layers, heads = TINY_SIZES[size]
            self.sep = vocab  # one extra token id separates the two responses
            self.source = {"family": "tiny", "size": size}
            self.backbone = GPT2Model(GPT2Config(vocab_size=vocab + 1, n_positions=max_len, n_embd=width,
                                                 n_layer=layers, n_head=heads, resid_pdrop=0.0, embd_pdrop=0.0,
                                                 attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
                                                 pad_token_id=None, activation_function=TINY_ACTIVATION))
        else:
            self.sep, self.source, self.backbone = sep, source, backbone
            width = backbone.config.hidden_size
        # float32 head: the score is one number per sequence, worth full precision on any backbone
        self.head = torch.nn.Linear(width, 1)
        # the backbone's dtype on disk and when loaded as a judge; it trains in float32
        self.saved_dtype = str(next(self.backbone.parameters()).dtype).removeprefix("torch.")

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def _score(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            return self._read(last_hidden(self.backbone, tokens)[:, -1])
        if not torch.is_grad_enabled() and len(tokens) > ROWS_PER_FORWARD:  # judging many rows: in chunks
            return in_row_chunks(self._score, tokens, attention_mask)
        hidden = self.backbone(input_ids=tokens, attention_mask=attention_mask, position_ids=positions(attention_mask),
                               use_cache=False).last_hidden_state
        last = hidden[torch.arange(len(tokens), device=tokens.device), last_real_index(attention_mask)]
        return self._read(last)

    def _read(self, last: torch.Tensor) -> torch.Tensor:
        """The score of each row's last (real) hidden state [B, d] -> [B], in the head's precision."""
        return self.head(last.to(self.head.weight.dtype)).squeeze(-1)

    def logit(self, prompts, first, second, prompt_mask=None, first_mask=None, second_mask=None) -> torch.Tensor:
        """pairwise: logit of P(first beats second) as shown in this order; pointwise: r1 - r2.
        Masks (1 = real token) are for padded data; a missing one means all real."""
        prompts, first, second = (self._on_device(t) for t in (prompts, first, second))
        masks = self._masks(prompts, first, second, prompt_mask, first_mask, second_mask)
        if self.form == "pointwise":  # both rewards from one forward, each prompt computed once where we can
            hidden = None if masks is not None else shared_prompt_hidden(self.backbone, prompts, torch.cat([first, second]))
            if hidden is not None:
                first_reward, second_reward = self._read(hidden[:, -1]).chunk(2)
                return first_reward - second_reward
            rewards = self._reward(torch.cat([prompts, prompts]), torch.cat([first, second]),
                                   None if masks is None else (torch.cat([masks[0], masks[0]]), torch.cat(masks[1:])))
            first_reward, second_reward = rewards.chunk(2)
            return first_reward - second_reward
        sep = torch.full((len(prompts), 1), self.sep, dtype=prompts.dtype, device=prompts.device)
        tokens = torch.cat([prompts, first, sep, second], 1)
        if masks is None:
            return self._score(tokens)
        prompt_m, first_m, second_m = masks
        return self._score(tokens, torch.cat([prompt_m, first_m, torch.ones_like(sep), second_m], 1))

    def _reward(self, prompts, responses, masks) -> torch.Tensor:
        tokens = torch.cat([prompts, responses], 1)
        return self._score(tokens) if masks is None else self._score(tokens, torch.cat(masks, 1))

    def _masks(self, prompts, first, second, prompt_mask, first_mask, second_mask):
        """None when no mask is given (the unpadded path), else all three, on the model's device."""
        given = (prompt_mask, first_mask, second_mask)
        if all(m is None for m in given):
            return None
        return tuple(torch.ones_like(t) if m is None else self._on_device(m).to(t.dtype)
                     for t, m in zip((prompts, first, second), given))

    def _on_device(self, t) -> torch.Tensor:
        t = t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t))
        return t.to(self.device)

    @torch.no_grad()
    def prob_first(self, prompts, first, second, prompt_mask=None, first_mask=None, second_mask=None,
                   batch: int = 512) -> np.ndarray:
        """Symmetrised P(first beats second), as float64 numpy on the CPU."""
        prompts, first, second = (torch.as_tensor(np.asarray(t)) if not isinstance(t, torch.Tensor) else t
                                  for t in (prompts, first, second))
        out = []
        for i in range(0, len(prompts), batch):
            rows = slice(i, i + batch)
            p, a, b = prompts[rows], first[rows], second[rows]
            pm, am, bm = (None if m is None else m[rows] for m in (prompt_mask, first_mask, second_mask))
            if self.form == "pointwise":
                out.append(torch.sigmoid(self.logit(p, a, b, pm, am, bm).double()))
            else:  # both orders in one forward
                masks = self._masks(p, a, b, pm, am, bm) or (None, None, None)
                twice = lambda x, y: None if x is None else torch.cat([x, y])  # noqa: E731
                in_order, swapped = self.logit(twice(p, p), twice(a, b), twice(b, a), twice(masks[0], masks[0]),
                                               twice(masks[1], masks[2]), twice(masks[2], masks[1])).double().chunk(2)
                out.append((torch.sigmoid(in_order) + 1 - torch.sigmoid(swapped)) / 2)
        return torch.cat(out).cpu().numpy()

    def init_from_policy(self, policy) -> None:
        """Start the backbone from a policy (e.g. SFT). Tiny: same blocks, embedding rows copied
        (the judge has one extra row, SEP). Hub: the policy's base model must have exactly the
        backbone's weights and shapes (the same architecture, e.g. an SFT of the same model)."""
        if self.source["family"] != "tiny":
            self._copy_base_model(policy)
            return
        source = policy.transformer.state_dict()
        own = self.backbone.state_dict()
        if source["wte.weight"].shape[1] != own["wte.weight"].shape[1] or len(policy.transformer.h) != len(self.backbone.h):
            raise ValueError(f"init: the policy (width {source['wte.weight'].shape[1]}, {len(policy.transformer.h)} layers) "
                             f"and the preference model (size {self.source['size']}: width {own['wte.weight'].shape[1]}, "
                             f"{len(self.backbone.h)} layers) differ; give the judge the policy's model size, "
                             f"or train it without `init`")
        for name, tensor in source.items():
            if name == "wte.weight":
                own[name][: tensor.shape[0]] = tensor
            elif name in own and own[name].shape == tensor.shape:
                own[name] = tensor
        self.backbone.load_state_dict(own)

    def _copy_base_model(self, policy) -> None:
        source = policy.base_model.state_dict()
        own = self.backbone.state_dict()
        mismatched = sorted(k for k in own.keys() | source.keys()
                            if k not in own or k not in source or own[k].shape != source[k].shape)
        if mismatched:
            raise ValueError(f"init: the policy's transformer does not match the preference model's backbone "
                             f"{self.source['name']!r} ({len(mismatched)} weights differ, e.g. {mismatched[0]!r}); "
                             f"start a hub preference model from a policy of the same model")
        self.backbone.load_state_dict(source)

    def describe(self) -> dict:
        """What judge.json records to rebuild this model without downloading anything."""
        out = {"form": self.form, **self.source, "vocab": self.vocab, "max_len": self.max_len, "sep": self.sep,
               "dtype": self.saved_dtype}
        if self.source["family"] != "tiny":
            out["backbone_config"] = json.loads(self.backbone.config.to_json_string(use_diff=False))
        return out


def last_real_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's last position with a real token (0 for a row with none)."""
    columns = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return torch.where(attention_mask.bool(), columns, 0).max(1).values


# -- building -----------------------------------------------------------------------------


def sequence_len(form: str, info: dict) -> int:
    """Longest sequence a judge reads: x ++ y1 ++ SEP ++ y2 (pairwise) or x ++ y (pointwise)."""
    return info["prompt_len"] + (2 * info["response_len"] + 1 if form == "pairwise" else info["response_len"])


def build_preference_model(form: str, model_cfg: dict, info: dict) -> PreferenceModel:
    """A fresh judge for a dataset (`info`: its task.json). Initialises from the global generator."""
    if model_cfg.get("family", "tiny") == "tiny":
        # tiny judges keep the pairwise length for both forms: positions beyond are unused
        return PreferenceModel(form, model_cfg["size"], info["vocab"], info["prompt_len"] + 2 * info["response_len"] + 1)
    return hub_preference_model(form, model_cfg["name"], model_cfg.get("dtype", "float32"), info)


def hub_preference_model(form: str, name: str, dtype: str, info: dict) -> PreferenceModel:
    """A judge around a hub model's (or local folder's) base model, with a fresh head."""
    backbone, tokenizer = load_backbone(name, dtype)
    embeddings = backbone.get_input_embeddings().num_embeddings
    if info["vocab"] > embeddings:
        raise ValueError(f"preference model {name!r} has {embeddings} token embeddings, but the dataset's tokenizer "
                         f"({info.get('tokenizer') or 'unnamed'}) has {info['vocab']} ids: tokenize the dataset with "
                         f"the model's own tokenizer (dataset `tokenizer: {name}`)")
    max_len = sequence_len(form, info)
    limit = getattr(backbone.config, "max_position_embeddings", None)
    if limit is not None and max_len > limit:
        raise ValueError(f"preference model {name!r} reads at most {limit} positions, but a {form} judge of this "
                         f"dataset reads {max_len}: lower max_prompt_tokens / max_response_tokens")
    model = PreferenceModel(form, None, info["vocab"], max_len, backbone=backbone, sep=separator_id(tokenizer, name),
                            source={"family": "hub", "name": name})
    model.backbone.float()  # float32 master weights for training; saved (and judged) in `dtype`
    return model


def load_backbone(name: str, dtype: str):
    """(base model, tokenizer) of a hub id or local `save_pretrained` folder; a local folder is
    read offline. Dropout is off (eval mode), as in the tiny judges: training stays deterministic."""
    from transformers import AutoModel, AutoTokenizer

    from specc.runtime.models_hub import _resolve_source, resolve_dtype

    torch_dtype = resolve_dtype(dtype)
    source, offline = _resolve_source(name, None)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
        backbone = AutoModel.from_pretrained(source, local_files_only=offline, dtype=torch_dtype)
    except OSError as err:  # transformers reports missing repos/files as OSError
        raise ValueError(f"{name}: could not load a base model and tokenizer for a preference model: {err}") from err
    return backbone.eval(), tokenizer


def separator_id(tokenizer, name: str) -> int:
    """The token between the two responses of a pairwise hub judge: SEP, else EOS."""
    for token_id in (tokenizer.sep_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError(f"{name}: its tokenizer has neither a sep nor an eos token to separate two responses")


def _backbone_from_config(meta: dict, device: torch.device | str = "cpu") -> torch.nn.Module:
    from transformers import AutoModel
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from specc.runtime.models_hub import resolve_dtype

    config = CONFIG_MAPPING[meta["backbone_config"]["model_type"]].from_dict(meta["backbone_config"])
    with torch.device(device):  # built where it will run, in its saved dtype
        return AutoModel.from_config(config, dtype=resolve_dtype(meta["dtype"])).eval()


# -- saving and loading -------------------------------------------------------------------


def save_preference_model(model: PreferenceModel, job: JobDir, meta: dict | None = None,
                          state: dict | None = None) -> None:
    """`state`: the model's whole state dict where the model itself holds shards of it."""
    path = job.artifacts / "judge.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    dtype = resolve_dtype(model.saved_dtype)
    state = model.state_dict() if state is None else state
    save_file({k: (v if k.startswith("head.") else v.to(dtype)).contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(path)
    atomic_write_json(job.artifacts / "judge.json", {"type": "preference_model", **model.describe(), **(meta or {})})


def load_preference_model(job: JobDir, meta: dict | None = None, device: torch.device | str = "cpu") -> PreferenceModel:
    """Rebuild a saved judge on `device` from judge.json and its weights (nothing is downloaded)."""
    meta = meta or json.loads((job.artifacts / "judge.json").read_text())
    if meta.get("family", "tiny") == "tiny":
        model = PreferenceModel(meta["form"], meta["size"], meta["vocab"], meta["max_len"])
    else:
        model = PreferenceModel(meta["form"], None, meta["vocab"], meta["max_len"],
                                backbone=_backbone_from_config(meta, device),
                                sep=meta["sep"], source={"family": meta["family"], "name": meta["name"]})
    model.load_state_dict(load_file(str(job.artifacts / "judge.safetensors"), device=str(device)))
    model.eval()
    return model.to(device)
