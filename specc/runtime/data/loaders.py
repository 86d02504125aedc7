"""Read pairwise preference data sets into one record type.

Every supported layout is turned into `PreferenceRecord(prompt, chosen, rejected, source, meta)`
where `prompt + chosen` and `prompt + rejected` are the two full texts being compared.
Reading goes through `datasets.load_dataset`, so hub data sets and local
.jsonl / .json / .jsonl.gz / .json.gz / .parquet files share one code path and one cache.
"""

from __future__ import annotations

import difflib
import gzip
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import datasets

log = logging.getLogger(__name__)

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
ROLE_TAGS = {"user": HUMAN, "assistant": ASSISTANT}
TIES = ("tie", "tie (bothbad)")
PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")
_BUILDER_BY_SUFFIX = {
    ".jsonl": "json", ".json": "json", ".jsonl.gz": "json", ".json.gz": "json", ".parquet": "parquet",
}


@dataclass(frozen=True)
class PreferenceRecord:
    """One comparison: `chosen` was preferred over `rejected` as a reply to `prompt`.

    `source` is "<format>:<file path>" or "<format>:<hub name>[/<subset>]:<split>";
    `meta` keeps per-format extras (record index, model names, worker id, ...).
    """

    prompt: str
    chosen: str
    rejected: str
    source: str
    meta: dict = field(default_factory=dict)


class PreferenceRecords(list):
    """The records read, and how many were left out and why: `dropped` maps a reason to a count."""

    def __init__(self, records=(), dropped: dict[str, int] | None = None):
        super().__init__(records)
        self.dropped = dict(dropped or {})

    def dropped_note(self) -> str | None:
        """One line for a person, e.g. 'dropped 6 of 14 records: 4 ties, 2 without a shared prompt'."""
        total = sum(self.dropped.values())
        if not total:
            return None
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.dropped.items())
        return f"dropped {total} of {total + len(self)} records: {reasons}"


class SkippedRecordsWarning(UserWarning):
    """Some records could not be split into prompt/chosen/rejected and were left out."""


class _Skip(Exception):
    """Raised by a parser for a well-formed record that cannot be used (ambiguous split)."""


class _Tie(_Skip):
    """Ties carry no preference: dropped on purpose, not counted as a problem."""


def _require(row: dict, key: str, where: str, expected: str) -> Any:
    """Fetch `row[key]` or explain, for a person, which record lacks what."""
    value = row.get(key) if isinstance(row, dict) else None
    if value is None:
        raise ValueError(f"{where}: missing field '{key}' (expected {expected})")
    return value


def _require_text(row: dict, key: str, where: str, expected: str) -> str:
    value = _require(row, key, where, expected)
    if not isinstance(value, str):
        raise ValueError(f"{where}: field '{key}' is {type(value).__name__}, expected {expected}")
    return value


# ---------------------------------------------------------------- Anthropic/hh-rlhf
def split_hh_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two HH transcripts into (shared prompt, chosen reply, rejected reply).

    HH records are {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": "..."}: two
    full dialogues that differ only in the final assistant turn. The prompt runs up to and
    including the last "\\n\\nAssistant:"; replies keep their leading space. Raises `_Skip`
    when the two dialogues do not share that prefix or a reply has a further human turn.
    """
    cut = chosen.rfind(ASSISTANT)
    if cut < 0:
        raise _Skip("no '\\n\\nAssistant:' turn")
    prompt = chosen[: cut + len(ASSISTANT)]
    if not rejected.startswith(prompt):
        raise _Skip("chosen and rejected dialogues differ before the last assistant turn")
    chosen_reply, rejected_reply = chosen[len(prompt):], rejected[len(prompt):]
    if HUMAN in chosen_reply or HUMAN in rejected_reply or ASSISTANT in rejected_reply:
        raise _Skip("a reply continues the dialogue past the last assistant turn")
    return prompt, chosen_reply, rejected_reply


def _parse_hh(row: dict, where: str) -> tuple[str, str, str, dict]:
    expected = "HH string fields 'chosen' and 'rejected'"
    chosen = _require_text(row, "chosen", where, expected)
    rejected = _require_text(row, "rejected", where, expected)
    prompt, chosen_reply, rejected_reply = split_hh_dialogue(chosen, rejected)
    return prompt, chosen_reply, rejected_reply, {}


# ---------------------------------------------------------------- openai/summarize_from_feedback
def tldr_prompt(info: dict) -> str:
    """Format a Reddit TL;DR prompt; CNN/DM records (post null, article set) use the article."""
    body = info.get("post") if info.get("post") is not None else info.get("article")
    if body is None:
        raise ValueError("info has neither 'post' nor 'article'")
    # CNN/DM records have no subreddit: leave that line out rather than print "r/None".
    head = f"SUBREDDIT: r/{info['subreddit']}\n" if info.get("subreddit") else ""
    return f"{head}TITLE: {info.get('title') or ''}\nPOST: {body}\nTL;DR:"


def _parse_tldr(row: dict, where: str) -> tuple[str, str, str, dict]:
    """Record: {"info": {"id", "post", "title", "subreddit", ...}, "summaries": [{"text"}, {"text"}],
    "choice": 0|1, "split", "worker"} (config "comparisons")."""
    info = _require(row, "info", where, "a dict with 'post' (or 'article'), 'title', 'subreddit'")
    summaries = _require(row, "summaries", where, "a list of two {'text': ...} dicts")
    choice = _require(row, "choice", where, "0 or 1, the index of the preferred summary")
    if choice not in (0, 1) or len(summaries) != 2:
        raise ValueError(f"{where}: expected two summaries and choice 0|1, got {len(summaries)} and {choice!r}")
    try:
        prompt = tldr_prompt(info)
    except ValueError as err:
        raise ValueError(f"{where}: {err} (expected info.post or info.article)") from None
    texts = [_require(s, "text", f"{where} summaries[{i}]", "a string") for i, s in enumerate(summaries)]
    meta = {
        "id": info.get("id"), "subreddit": info.get("subreddit"), "worker": row.get("worker"),
        "split": row.get("split"), "choice": choice,
        "policies": [s.get("policy") for s in summaries],
    }
    return prompt, texts[choice], texts[1 - choice], meta


# ---------------------------------------------------------------- lmsys/chatbot_arena_conversations
def format_turns(messages: list[dict]) -> str:
    """Render role/content messages in the HH transcript style."""
    return "".join(f"{ROLE_TAGS[m['role']]} {m['content']}" for m in messages)


def _check_conversation(conv: Any, where: str) -> list[dict]:
    if not isinstance(conv, list) or not conv:
        raise ValueError(f"{where}: expected a non-empty list of {{'role', 'content'}} messages")
    for i, message in enumerate(conv):
        role = _require(message, "role", f"{where}[{i}]", "'user' or 'assistant'")
        _require(message, "content", f"{where}[{i}]", "a string")
        if role not in ROLE_TAGS:
            raise ValueError(f"{where}[{i}]: unknown role {role!r} (expected 'user' or 'assistant')")
    return conv


def _parse_arena(row: dict, where: str) -> tuple[str, str, str, dict]:
    """Record: {"model_a", "model_b", "winner": "model_a"|"model_b"|"tie"|"tie (bothbad)",
    "conversation_a"/"conversation_b": [{"role", "content"}, ...], "turn", "language", ...}.

    Multi-turn: earlier assistant turns differ between the two sides (each model saw its own
    history); the prompt uses the winner's history and meta["histories_differ"] says so.
    """
    winner = _require(row, "winner", where, "'model_a', 'model_b', 'tie' or 'tie (bothbad)'")
    if winner in TIES:
        raise _Tie()
    if winner not in ("model_a", "model_b"):
        raise ValueError(f"{where}: unknown winner {winner!r} (expected 'model_a', 'model_b' or a tie)")
    conv = {side: _check_conversation(_require(row, f"conversation_{side}", where, "a message list"),
                                      f"{where} conversation_{side}") for side in ("a", "b")}
    if any(c[-1]["role"] != "assistant" for c in conv.values()):
        raise _Skip("a conversation does not end with an assistant turn")
    users = {side: [m["content"] for m in c if m["role"] == "user"] for side, c in conv.items()}
    if users["a"] != users["b"] or len(conv["a"]) != len(conv["b"]):
        raise _Skip("user turns differ between conversation_a and conversation_b")
    win, lose = ("a", "b") if winner == "model_a" else ("b", "a")
    prompt = format_turns(conv[win][:-1]) + ASSISTANT
    meta = {
        "model_a": row.get("model_a"), "model_b": row.get("model_b"), "winner": winner,
        "language": row.get("language"), "turn": row.get("turn"), "question_id": row.get("question_id"),
        "histories_differ": conv["a"][:-1] != conv["b"][:-1],
    }
    return prompt, conv[win][-1]["content"], conv[lose][-1]["content"], meta


# ---------------------------------------------------------------- generic prompt/chosen/rejected
def _generic_parser(columns: dict | None) -> Callable[[dict, str], tuple[str, str, str, dict]]:
    names = {name: name for name in PREFERENCE_FIELDS} | dict(columns or {})
    unknown = set(names) - set(PREFERENCE_FIELDS)
    if unknown:
        raise ValueError(f"columns: unknown keys {sorted(unknown)} (expected a subset of {list(PREFERENCE_FIELDS)})")

    def parse(row: dict, where: str) -> tuple[str, str, str, dict]:
        values = [_require_text(row, names[f], where, f"column '{names[f]}' holding the {f} text")
                  for f in PREFERENCE_FIELDS]
        # Anything else in the row (ids, scores) rides along in meta.
        extra = {k: v for k, v in row.items() if k not in names.values()}
        return values[0], values[1], values[2], extra

    return parse


_PARSERS = {"anthropic_hh": _parse_hh, "tldr": _parse_tldr, "chatbot_arena": _parse_arena}
FORMATS = (*_PARSERS, "generic")


# ---------------------------------------------------------------- reading
def _builder_for(path: str) -> str:
    for suffix, builder in _BUILDER_BY_SUFFIX.items():
        if path.lower().endswith(suffix):
            return builder
    raise ValueError(f"{path}: unsupported file type (expected one of {', '.join(_BUILDER_BY_SUFFIX)})")


# Anthropic/hh-rlhf keeps its subsets (helpful-base, harmless-base, ...) as folders of one
# repository, not as named configurations: the subset selects a data_dir there.
SUBSET_IS_FOLDER = {"anthropic_hh"}


def _check_local_file(path: str) -> None:
    """What `datasets` reports badly (a traceback without a file or line): an empty file, or
    JSON text that is not UTF-8. Raises ValueError naming the file, line and byte."""
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty (expected preference records)")
    if _builder_for(path) != "json":
        return
    opener = gzip.open if path.lower().endswith(".gz") else open
    blank = True
    with opener(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{number}: not UTF-8 text: byte {line[err.start]:#04x} at column "
                                 f"{err.start + 1} cannot be decoded") from None
            blank = blank and not line.strip()
    if blank:
        raise ValueError(f"{path}: the file holds no records (only blank lines)")


def _read_rows(path: str | None, hub_name: str | None, subset: str | None, split: str,
               cache_dir: str | None, subset_is_folder: bool = False) -> datasets.Dataset:
    if path is not None:
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file (expected a .jsonl, .json, .jsonl.gz or .parquet file)")
        where = path
        _check_local_file(path)
        # Name the split after `split` so that the local file answers to it.
        load = lambda: datasets.load_dataset(_builder_for(path), data_files={split: path}, split=split,
                                             cache_dir=cache_dir)
    else:
        where = f"{hub_name}" + (f" (subset {subset!r})" if subset else "") + f", split {split!r}"
        if subset_is_folder:
            load = lambda: datasets.load_dataset(hub_name, data_dir=subset, split=split, cache_dir=cache_dir)
        else:
            load = lambda: datasets.load_dataset(hub_name, subset, split=split, cache_dir=cache_dir)
    try:
        return load()
    except Exception as err:  # datasets raises many types (FileNotFound, DatasetGenerationError, ...)
        cause = err.__cause__ or err.__context__
        detail = f"{err} ({cause})" if cause is not None else str(err)
        raise ValueError(f"{where}: could not be read: {type(err).__name__}: {detail}") from err


def load_preferences(format: str, *, path: str | None = None, hub_name: str | None = None,
                     split: str = "train", subset: str | None = None, limit: int | None = None,
                     columns: dict | None = None, cache_dir: str | None = None) -> PreferenceRecords:
    """Load pairwise preferences in one of `FORMATS` from a local file or a hub data set.

    - anthropic_hh: Anthropic/hh-rlhf, {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}
    - tldr: openai/summarize_from_feedback "comparisons", {"info", "summaries", "choice", ...}
    - chatbot_arena: lmsys/chatbot_arena_conversations; ties dropped
    - generic: columns prompt/chosen/rejected, renamed by `columns={"prompt": "question"}`

    Records whose prompt cannot be split off unambiguously are skipped with one
    `SkippedRecordsWarning` giving the count. `limit` caps the number of records returned.
    Malformed input raises `ValueError` naming the file (or hub name) and record index.
    """
    if format not in FORMATS:
        hint = difflib.get_close_matches(str(format), FORMATS, n=1)
        raise ValueError(f"unknown format {format!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                         + f"; expected one of {', '.join(FORMATS)}")
    if (path is None) == (hub_name is None):
        raise ValueError("load_preferences: give exactly one of path= or hub_name=")
    if columns is not None and format != "generic":
        raise ValueError(f"columns= renames generic columns only; format {format!r} has a fixed layout")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    parse = _generic_parser(columns) if format == "generic" else _PARSERS[format]
    origin = path if path is not None else f"{hub_name}" + (f"/{subset}" if subset else "") + f":{split}"
    rows = _read_rows(path, hub_name, subset, split, cache_dir, format in SUBSET_IS_FOLDER)
    return _parse_rows(rows, parse, format, origin, limit)


def _parse_rows(rows, parse, format: str, origin: str, limit: int | None) -> PreferenceRecords:
    records: list[PreferenceRecord] = []
    skipped: list[tuple[int, str]] = []
    ties = 0
    for index, row in enumerate(rows):
        if limit is not None and len(records) >= limit:
            break
        try:
            # records are numbered from 1, as a person counts lines of a jsonl file
            prompt, chosen, rejected, meta = parse(row, f"{origin}: record {index + 1}")
        except _Tie:
            ties += 1
            continue
        except _Skip as why:
            skipped.append((index, str(why)))
            continue
        records.append(PreferenceRecord(prompt, chosen, rejected, f"{format}:{origin}", {"index": index, **meta}))
    dropped = {}
    if ties:
        log.info("%s: dropped %d tied comparisons", origin, ties)
        dropped["ties (no preference)"] = ties
    if skipped:
        first_index, first_reason = skipped[0]
        warnings.warn(f"{origin}: skipped {len(skipped)} {format} record(s) without an unambiguous "
                      f"prompt/chosen/rejected split (first: record {first_index + 1}, {first_reason})",
                      SkippedRecordsWarning, stacklevel=3)
        dropped[f"without an unambiguous prompt/chosen/rejected split (first: record {first_index + 1}, "
                f"{first_reason})"] = len(skipped)
    return PreferenceRecords(records, dropped)
