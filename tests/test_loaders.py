"""Loaders read small files written here in each published layout; nothing is downloaded."""

from __future__ import annotations

import gzip
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from specc.runtime.data.loaders import PreferenceRecord, SkippedRecordsWarning, load_preferences


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # datasets reads the variables at import time; patch the live flag too.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


def write_jsonl(path, rows, opener=open):
    with opener(path, "wt") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(path)


# ---------------------------------------------------------------- Anthropic HH
HH_ROWS = [
    {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?",
     "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away."},
    {"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 6.",
     "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 7, I think."},
    # Dialogues diverge before the last assistant turn: no shared prompt.
    {"chosen": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: D",
     "rejected": "\n\nHuman: A\n\nAssistant: X"},
    # Replies that start alike must not be mistaken for prompt.
    {"chosen": "\n\nHuman: Name a colour\n\nAssistant: Red is nice",
     "rejected": "\n\nHuman: Name a colour\n\nAssistant: Red"},
]


def test_hh_splits_prompt_at_last_assistant_turn(tmp_path, cache):
    path = write_jsonl(tmp_path / "hh.jsonl.gz", HH_ROWS, opener=gzip.open)
    with pytest.warns(SkippedRecordsWarning, match=r"skipped 1 anthropic_hh record.*record 3"):
        records = load_preferences("anthropic_hh", path=path, cache_dir=cache)
    assert [(r.prompt, r.chosen, r.rejected) for r in records] == [
        ("\n\nHuman: Hi there\n\nAssistant:", " Hello! How can I help?", " Go away."),
        ("\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant:", " 6.", " 7, I think."),
        ("\n\nHuman: Name a colour\n\nAssistant:", " Red is nice", " Red"),
    ]
    assert all(isinstance(r, PreferenceRecord) for r in records)
    assert [r.meta["index"] for r in records] == [0, 1, 3]
    assert records[0].source == f"anthropic_hh:{path}"


def test_hh_limit_counts_returned_records(tmp_path, cache):
    path = write_jsonl(tmp_path / "hh.jsonl.gz", HH_ROWS, opener=gzip.open)
    records = load_preferences("anthropic_hh", path=path, cache_dir=cache, limit=2)
    assert [r.chosen for r in records] == [" Hello! How can I help?", " 6."]


def test_hh_missing_field_names_file_and_record(tmp_path, cache):
    rows = HH_ROWS[:1] + [{"chosen": "\n\nHuman: x\n\nAssistant: y"}]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    with pytest.raises(ValueError, match=r"hh\.jsonl: record 2: missing field 'rejected'"):
        load_preferences("anthropic_hh", path=path, cache_dir=cache)


# ---------------------------------------------------------------- TL;DR comparisons
def tldr_row(post, choice, article=None, subreddit="AskReddit", worker="w1"):
    info = {"id": "t3_1", "post": post, "title": "My title", "subreddit": subreddit}
    if article is not None:
        info["article"] = article
    return {"info": info, "summaries": [{"text": " first", "policy": "p0"}, {"text": " second", "policy": "p1"}],
            "choice": choice, "split": "train", "worker": worker}


def test_tldr_prompt_and_choice(tmp_path, cache):
    rows = [tldr_row("Long post.", 1), tldr_row(None, 0, article="News text.", subreddit=None)]
    path = write_jsonl(tmp_path / "tldr.json", rows)
    first, second = load_preferences("tldr", path=path, cache_dir=cache)
    assert first.prompt == "SUBREDDIT: r/AskReddit\nTITLE: My title\nPOST: Long post.\nTL;DR:"
    assert (first.chosen, first.rejected) == (" second", " first")
    assert first.meta["worker"] == "w1" and first.meta["policies"] == ["p0", "p1"]
    assert second.prompt == "TITLE: My title\nPOST: News text.\nTL;DR:"
    assert (second.chosen, second.rejected) == (" first", " second")


def test_tldr_bad_choice_is_readable(tmp_path, cache):
    path = write_jsonl(tmp_path / "tldr.json", [tldr_row("p", 0), tldr_row("p", 2)])
    with pytest.raises(ValueError, match=r"tldr\.json: record 2: expected two summaries and choice 0\|1"):
        load_preferences("tldr", path=path, cache_dir=cache)


# ---------------------------------------------------------------- Chatbot Arena
def turns(*pairs):
    out = []
    for user, assistant in pairs:
        out += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return out


ARENA_ROWS = [
    {"model_a": "m1", "model_b": "m2", "winner": "model_b", "turn": 1, "language": "English",
     "conversation_a": turns(("Hi", "A-hi")), "conversation_b": turns(("Hi", "B-hi"))},
    {"model_a": "m1", "model_b": "m2", "winner": "tie", "turn": 1, "language": "English",
     "conversation_a": turns(("x", "y")), "conversation_b": turns(("x", "z"))},
    {"model_a": "m3", "model_b": "m4", "winner": "tie (bothbad)", "turn": 1, "language": "German",
     "conversation_a": turns(("x", "y")), "conversation_b": turns(("x", "z"))},
    {"model_a": "m3", "model_b": "m4", "winner": "model_b", "turn": 2, "language": "German",
     "conversation_a": turns(("Q1", "a1"), ("Q2", "a2")), "conversation_b": turns(("Q1", "b1"), ("Q2", "b2"))},
    {"model_a": "m1", "model_b": "m4", "winner": "model_a", "turn": 1, "language": "English",
     "conversation_a": turns(("one", "y")), "conversation_b": turns(("other", "z"))},
]


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_arena_drops_ties_and_formats_hh_style(tmp_path, cache, suffix):
    path = tmp_path / f"arena.{suffix}"
    if suffix == "parquet":
        pq.write_table(pa.Table.from_pylist(ARENA_ROWS), path)
    else:
        write_jsonl(path, ARENA_ROWS)
    with pytest.warns(SkippedRecordsWarning, match=r"skipped 1 chatbot_arena record.*record 5.*user turns differ"):
        records = load_preferences("chatbot_arena", path=str(path), cache_dir=cache)
    single, multi = records
    # what was left out is counted and said, for the job's status and the run's output
    assert records.dropped_note() == ("dropped 3 of 5 records: 2 ties (no preference), 1 without an unambiguous "
                                      "prompt/chosen/rejected split (first: record 5, user turns differ between "
                                      "conversation_a and conversation_b)")
    assert (single.prompt, single.chosen, single.rejected) == ("\n\nHuman: Hi\n\nAssistant:", "B-hi", "A-hi")
    assert single.meta["index"] == 0 and single.meta["model_b"] == "m2"
    assert single.meta["histories_differ"] is False
    # Multi-turn: the winner's own earlier reply is in the prompt.
    assert multi.prompt == "\n\nHuman: Q1\n\nAssistant: b1\n\nHuman: Q2\n\nAssistant:"
    assert (multi.chosen, multi.rejected) == ("b2", "a2")
    assert (multi.meta["model_a"], multi.meta["language"], multi.meta["histories_differ"]) == ("m3", "German", True)


def test_arena_unknown_winner(tmp_path, cache):
    path = write_jsonl(tmp_path / "arena.jsonl", [dict(ARENA_ROWS[0], winner="model_c")])
    with pytest.raises(ValueError, match=r"arena\.jsonl: record 1: unknown winner 'model_c'"):
        load_preferences("chatbot_arena", path=path, cache_dir=cache)


# ---------------------------------------------------------------- generic
GENERIC_ROWS = [{"question": f"q{i}", "good": f"g{i}", "bad": f"b{i}", "score": i} for i in range(4)]


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_generic_with_renamed_columns_and_limit(tmp_path, cache, suffix):
    path = tmp_path / f"pairs.{suffix}"
    if suffix == "parquet":
        pq.write_table(pa.Table.from_pylist(GENERIC_ROWS), path)
    else:
        write_jsonl(path, GENERIC_ROWS)
    records = load_preferences("generic", path=str(path), cache_dir=cache, limit=3,
                               columns={"prompt": "question", "chosen": "good", "rejected": "bad"})
    assert [(r.prompt, r.chosen, r.rejected) for r in records] == [("q0", "g0", "b0"), ("q1", "g1", "b1"),
                                                                   ("q2", "g2", "b2")]
    assert records[2].meta == {"index": 2, "score": 2}


def test_generic_default_columns_and_split_name(tmp_path, cache):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    (record,) = load_preferences("generic", path=path, split="test", cache_dir=cache)
    assert (record.prompt, record.chosen, record.rejected) == ("p", "c", "r")


def test_generic_non_text_field(tmp_path, cache):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": ["c"], "rejected": "r"}])
    with pytest.raises(ValueError, match=r"pairs\.jsonl: record 1: field 'chosen' is list, expected column"):
        load_preferences("generic", path=path, cache_dir=cache)


def test_generic_missing_renamed_column(tmp_path, cache):
    path = write_jsonl(tmp_path / "pairs.jsonl", GENERIC_ROWS)
    with pytest.raises(ValueError, match=r"pairs\.jsonl: record 1: missing field 'prompt'.*column 'prompt'"):
        load_preferences("generic", path=path, cache_dir=cache, columns={"chosen": "good", "rejected": "bad"})


# ---------------------------------------------------------------- argument errors
def test_missing_file_is_named(tmp_path, cache):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ValueError, match=r"nope\.jsonl: no such file"):
        load_preferences("generic", path=str(missing), cache_dir=cache)


def test_unknown_format_suggests(tmp_path):
    with pytest.raises(ValueError, match=r"unknown format 'anthropic-hh' \(did you mean 'anthropic_hh'\?\)"):
        load_preferences("anthropic-hh", path=str(tmp_path / "x.jsonl"))


@pytest.mark.parametrize("kwargs", [{}, {"path": "a.jsonl", "hub_name": "Anthropic/hh-rlhf"}])
def test_exactly_one_source(kwargs):
    with pytest.raises(ValueError, match="exactly one of path= or hub_name="):
        load_preferences("generic", **kwargs)


def test_unsupported_suffix_and_unparsable_file(tmp_path, cache):
    csv = tmp_path / "pairs.csv"
    csv.write_text("prompt,chosen,rejected\n")
    with pytest.raises(ValueError, match=r"pairs\.csv: unsupported file type"):
        load_preferences("generic", path=str(csv), cache_dir=cache)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "p"\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl: could not be read"):
        load_preferences("generic", path=str(broken), cache_dir=cache)


def test_hub_name_offline_is_readable(cache):
    with pytest.raises(ValueError, match=r"Anthropic/hh-rlhf \(subset 'helpful-base'\), split 'train'"):
        load_preferences("anthropic_hh", hub_name="Anthropic/hh-rlhf", subset="helpful-base", cache_dir=cache)


def test_hh_subset_selects_a_folder_of_the_repository(tmp_path, cache):
    # Anthropic/hh-rlhf's layout: one repository, a folder per subset (read here from a local copy)
    repo = tmp_path / "hh-rlhf"
    (repo / "helpful-base").mkdir(parents=True)
    (repo / "harmless-base").mkdir()
    write_jsonl(repo / "helpful-base" / "train.jsonl", HH_ROWS[:1])
    write_jsonl(repo / "harmless-base" / "train.jsonl", HH_ROWS[1:2])
    helpful = load_preferences("anthropic_hh", hub_name=str(repo), subset="helpful-base", cache_dir=cache)
    harmless = load_preferences("anthropic_hh", hub_name=str(repo), subset="harmless-base", cache_dir=cache)
    assert [r.chosen.strip() for r in helpful] == ["Hello! How can I help?"]
    assert [r.rejected.strip() for r in harmless] == ["7, I think."]


def test_undecodable_and_empty_files_name_the_file_and_line(tmp_path, cache):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a\xff", "chosen": "b", "rejected": "c"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not UTF-8 text: byte 0xff at column 14"):
        load_preferences("generic", path=str(path), cache_dir=cache)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.jsonl: the file is empty"):
        load_preferences("generic", path=str(tmp_path / "empty.jsonl"), cache_dir=cache)
