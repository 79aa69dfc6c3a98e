"""The data layer: every benchmark format, bundled samples, bad input, splits, corpus text, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.data import (BUNDLED, METRICS, Dataset, EditRequest, load_corpus_texts,
                               load_dataset, proxy_union, split)
from goldenlayers.data.corpus import HEADING, detokenize
from goldenlayers.data.load import bundled_manifest, samples_dir
from goldenlayers.errors import InputError

BUNDLED_FORMATS = {"counterfact": "counterfact", "zsre": "zsre-mend", "wikibio": "wikibio",
                   "wikicounterfact": "wikicounterfact", "wikirecent": "wikirecent"}
ALL = set(METRICS)
BUNDLED_METRICS = {
    "counterfact": ALL - {"portability"},
    "zsre": ALL,
    "wikibio": ALL - {"rephrase_accuracy", "portability"},
    "wikicounterfact": ALL - {"rephrase_accuracy"},
    "wikirecent": ALL - {"rephrase_accuracy"},
}

# (file under shared/data, records, detected format, metrics)
SHARED_FILES = [
    ("counterfact/counterfact-edit.json", 10_000, "counterfact", ALL - {"portability"}),
    ("knowedit_zsre/ZsRE-test-all.json", 1_301, "knowedit-zsre", ALL),
    ("knowedit_wikibio/wikibio-test-all.json", 306, "wikibio",
     ALL - {"rephrase_accuracy", "portability"}),
    ("knowedit_wiki_counterfact/test_cf.reconstructed.json", 885, "wikicounterfact",
     ALL - {"rephrase_accuracy"}),
    ("knowedit_wiki_recent/recent_train.json", 570, "wikirecent", ALL - {"rephrase_accuracy"}),
    ("counterfact/rome_format_most_orthogonal.json", 10, "counterfact-rome", ALL - {"portability"}),
    ("zsre/zsre_mend_eval_portability_gpt4.json", 1_037, "zsre-mend", ALL),
    ("counterfact/counterfact_qna.json", 1_000, "counterfact-qna",
     {"rewrite_accuracy", "rephrase_accuracy", "fluency"}),
    ("knowedit_wikibio/wikibio-train-all.json", 464, "wikibio",
     ALL - {"rephrase_accuracy", "portability"}),
]


def write_json(tmp_path, records, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def counterfact_record(**changes):
    record = {"case_id": 7, "prompt": "The mother tongue of Danielle Darrieux is",
              "subject": "Danielle Darrieux", "target_new": "English", "ground_truth": "French",
              "rephrase_prompt": "Danielle Darrieux speaks", "locality_prompt": "Michel Rocard speaks",
              "locality_ground_truth": "French"}
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


# --- bundled samples (always run) -----------------------------------------------------------------

@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_sample_loads(name):
    data = load_dataset(name)
    assert isinstance(data, Dataset) and data.name == name
    assert len(data) == 200 and data.skipped == 0
    assert data.format == BUNDLED_FORMATS[name]
    assert set(data.metrics) == BUNDLED_METRICS[name]
    assert list(data.metrics) == [m for m in METRICS if m in data.metrics]  # canonical order
    assert all(isinstance(r, EditRequest) and r.source == name for r in data)
    assert all(r.subject_span() is not None and r.target_new.strip() for r in data)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_case_ids_are_the_full_files_indices(name):
    data, entry = load_dataset(name), bundled_manifest()["samples"][name]
    if name == "counterfact":  # carries its own case_id
        assert len({r.case_id for r in data}) == 200
    else:
        assert [r.case_id for r in data] == [str(i) for i in entry["indices"]]
    assert entry["indices"] == sorted(set(entry["indices"]))


def test_bundled_samples_are_small_and_attributed():
    files = [p for p in samples_dir().iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 5 * 1024 * 1024
    note = (samples_dir() / "SOURCES.md").read_text(encoding="utf-8")
    for phrase in ("MIT", "CC BY-SA", "KnowEdit", "zsRE", "WikiText-2", "seed"):
        assert phrase in note


def test_bundled_samples_are_the_shared_records(shared_data):
    manifest = bundled_manifest()
    for name in BUNDLED:
        entry = manifest["samples"][name]
        full = json.loads((shared_data / entry["source"]).read_text(encoding="utf-8"))
        sample = json.loads((samples_dir() / f"{name}.json").read_text(encoding="utf-8"))
        assert len(full) == entry["source_records"]
        assert sample == [full[i] for i in entry["indices"]]
    corpus = (shared_data / manifest["corpus"]["source"]).read_bytes()
    assert (samples_dir() / manifest["corpus"]["file"]).read_bytes() == corpus


def test_limit_reads_the_first_records():
    assert [r.case_id for r in load_dataset("zsre", limit=5)] == \
        [r.case_id for r in load_dataset("zsre").requests[:5]]


# --- full shared files (skip where ../shared is absent) --------------------------------------------

@pytest.mark.parametrize("relative,count,fmt,metrics", SHARED_FILES,
                         ids=[row[0].split("/")[-1] for row in SHARED_FILES])
def test_shared_file_reads_completely(shared_data, relative, count, fmt, metrics):
    data = load_dataset(shared_data / relative)
    assert (len(data), data.skipped, data.format, set(data.metrics)) == (count, 0, fmt, metrics)
    assert data.path == shared_data / relative


def test_counterfact_flat_fields(shared_data):
    first = load_dataset(shared_data / "counterfact/counterfact-edit.json", limit=1).requests[0]
    assert (first.case_id, first.subject, first.target_new, first.target_old) == \
        ("0", "Danielle Darrieux", "English", "French")
    assert first.rephrase_prompts == ("Where Danielle Darrieux is from, people speak the language of",)
    assert first.locality[0].prompt == "Michel Rocard is a native speaker of"
    assert first.locality[0].answer == "French" and first.portability == ()


def test_counterfact_rome_fields(shared_data):
    raw = json.loads((shared_data / "counterfact/rome_format_most_orthogonal.json").read_text())[0]
    first = load_dataset(shared_data / "counterfact/rome_format_most_orthogonal.json").requests[0]
    rewrite = raw["requested_rewrite"]
    assert first.prompt == rewrite["prompt"].replace("{}", rewrite["subject"])
    assert "{}" not in first.prompt and first.case_id == str(raw["case_id"])
    assert (first.target_new, first.target_old) == (rewrite["target_new"]["str"],
                                                    rewrite["target_true"]["str"])
    assert first.rephrase_prompts == tuple(raw["paraphrase_prompts"])
    assert [p.prompt for p in first.locality] == raw["neighborhood_prompts"]
    assert {p.answer for p in first.locality} == {rewrite["target_true"]["str"]}


def test_zsre_mend_fields(shared_data):
    first = load_dataset(shared_data / "zsre/zsre_mend_eval_portability_gpt4.json").requests[0]
    assert first.prompt == "When was the inception of IAAF Combined Events Challenge?"
    assert (first.target_new, first.target_old, first.target_old_aliases) == ("2006", "1998", ("1998",))
    assert first.rephrase_prompts == ("When was the IAAF Combined Events Challenge launched?",)
    assert first.locality[0].prompt == "what is the name of the last episode of spongebob"
    assert first.locality[0].answer == "The String"
    assert first.portability[0].answer == "Athletics"
    assert first.portability[0].prompt.startswith("What type of sports event")


def test_knowedit_zsre_fields(shared_data):
    data = load_dataset(shared_data / "knowedit_zsre/ZsRE-test-all.json")
    first = data.requests[0]
    assert (first.subject, first.target_new, first.target_old) == \
        ("Epaspidoceras", "Noctuidae", "Aspidoceratidae")
    assert first.rephrase_prompts == ("What family are Epaspidoceras?",)
    assert [(p.answer, p.kind) for p in first.locality] == [("genus", "Relation_Specificity")] * 2
    assert first.portability[0].answer == "Owlet moths" and first.portability[0].kind == "Reasoning"
    kinds = {p.kind for r in data for p in r.portability}
    assert kinds == {"Reasoning", "Subject_Aliasing", "Logical_Generalization"}


def test_wikibio_fields(shared_data):
    raw = json.loads((shared_data / "knowedit_wikibio/wikibio-test-all.json").read_text())
    data = load_dataset(shared_data / "knowedit_wikibio/wikibio-test-all.json")
    for record, request in zip(raw, data):
        assert (request.prompt, request.target_new, request.subject) == \
            (record["text"], record["labels"], record["concept"])
        assert request.target_old is None and request.rephrase_prompts == () == request.portability
    assert all(len(r.locality) >= 1 for r in data)


def test_wikicounterfact_alias_lists(shared_data):
    data = load_dataset(shared_data / "knowedit_wiki_counterfact/test_cf.reconstructed.json")
    first = data.requests[0]
    assert (first.subject, first.target_new, first.target_old) == \
        ("Leonardo DiCaprio", "Syria", "United States of America")
    currency = first.portability[0]
    assert currency.answer == "Syrian pound"
    assert currency.aliases == ("Syrian pound", "SYP", "LS", "Syrian lira")
    assert {p.kind for r in data for p in r.locality} == {"Relation_Specificity", "Forgetfulness"}
    # pairs whose alias lists are all empty ([[]]) cannot be scored: counted, not dropped silently
    assert data.notes == {"portability pairs without an answer": 25,
                          "locality pairs without an answer": 2}


def test_wikirecent_has_no_old_answer(shared_data):
    data = load_dataset(shared_data / "knowedit_wiki_recent/recent_train.json")
    assert all(r.target_old is None and r.target_old_aliases == () for r in data)
    first = data.requests[0]
    assert (first.subject, first.target_new) == ("Ingrīda Amantova", "female")
    citizenship = first.locality[1]
    assert citizenship.answer == "Soviet Union" and "USSR" in citizenship.aliases
    assert len(citizenship.aliases) == 13


def test_real_files_with_empty_targets_fail_naming_the_record(shared_data):
    path = shared_data / "zsre/zsre_mend_train-1k.json"
    with pytest.raises(InputError, match=r"record 534, field 'alt'") as error:
        load_dataset(path)
    assert (error.value.index, error.value.field, error.value.source) == (534, "alt", str(path))
    data = load_dataset(path, skip_invalid=True)
    assert (len(data), data.skipped) == (998, 2)
    assert "record 723" in data.skip_reasons[1]
    with pytest.raises(InputError, match=r"record 630, field 'ground_truth'"):
        load_dataset(shared_data / "knowedit_wiki_counterfact/train_cf.json")


# --- bad input ----------------------------------------------------------------------------------

def test_malformed_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"prompt": "a",\n "subject": }]', encoding="utf-8")
    with pytest.raises(InputError, match=r"broken\.json: malformed JSON at line 2"):
        load_dataset(path)


def test_malformed_json_lines_name_the_record(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(counterfact_record()) + "\n\n{oops\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"broken\.jsonl, record 1: malformed JSON on line 3"):
        load_dataset(path)


@pytest.mark.parametrize("changes,field", [
    ({"target_new": None}, "target_new"),              # missing
    ({"target_new": "  "}, "target_new"),              # empty
    ({"prompt": ""}, "prompt"),
    ({"subject": 3}, "subject"),
    ({"subject": "Michel Rocard"}, "subject"),         # not in the prompt
    ({"locality_ground_truth": None}, "locality_ground_truth"),
    ({"case_id": ["a", "b"]}, "case_id"),               # results are keyed by it: not its repr
    ({"case_id": float("nan")}, "case_id"),
    ({"case_id": True}, "case_id"),
    ({"case_id": {"id": 1}}, "case_id"),
])
def test_bad_record_names_index_and_field(tmp_path, changes, field):
    path = write_json(tmp_path, [counterfact_record(), counterfact_record(**changes)])
    with pytest.raises(InputError) as error:
        load_dataset(path)
    assert (error.value.source, error.value.index, error.value.field) == (str(path), 1, field)
    assert f"record 1, field '{field}'" in str(error.value) and str(path) in str(error.value)


def test_subject_matches_case_insensitively(tmp_path):
    path = write_json(tmp_path, [counterfact_record(subject="danielle DARRIEUX")])
    request = load_dataset(path).requests[0]
    assert request.subject_span() == (21, 38)


def test_knowedit_nested_field_errors_name_the_path(tmp_path):
    record = {"subject": "X", "prompt": "X lives in", "target_new": "Y",
              "locality": {"Relation_Specificity": [{"prompt": "X works at"}]}}
    with pytest.raises(InputError, match=r"record 0, field 'locality.Relation_Specificity\[0\]"
                                         r"\.ground_truth': missing field"):
        load_dataset(write_json(tmp_path, [record]))


def test_alias_lists_must_hold_strings(tmp_path):
    record = {"subject": "X", "prompt": "X lives in", "target_new": "Y", "ground_truth": [["Z", 3]]}
    with pytest.raises(InputError, match=r"record 0, field 'ground_truth': answers must be strings"):
        load_dataset(write_json(tmp_path, [record]))


def test_rome_prompt_without_placeholder(tmp_path):
    record = {"case_id": 1, "requested_rewrite": {"prompt": "Paris is in", "subject": "Paris",
                                                  "target_new": {"str": "Italy"},
                                                  "target_true": {"str": "France"}}}
    with pytest.raises(InputError, match=r"field 'requested_rewrite.prompt'"):
        load_dataset(write_json(tmp_path, [record]))


def test_non_object_records_and_files(tmp_path):
    with pytest.raises(InputError, match=r"record 1, field '\(record\)'"):
        load_dataset(write_json(tmp_path, [counterfact_record(), ["not", "a", "record"]]))
    with pytest.raises(InputError, match=r"expected a JSON array"):
        load_dataset(write_json(tmp_path, {"prompt": "x"}, "object.json"))
    with pytest.raises(InputError, match=r"cannot tell the format"):
        load_dataset(write_json(tmp_path, [{"question": "x"}], "unknown.json"))
    with pytest.raises(InputError, match=r"no records"):
        load_dataset(write_json(tmp_path, [], "empty.json"))
    assert len(load_dataset(tmp_path / "empty.json", format="counterfact")) == 0
    with pytest.raises(InputError, match=r"no such file"):
        load_dataset(tmp_path / "absent.json")


def test_skip_invalid_skips_and_counts(tmp_path, caplog):
    records = [counterfact_record(), counterfact_record(target_new=""), counterfact_record(case_id=9),
               counterfact_record(subject="Nobody")]
    data = load_dataset(write_json(tmp_path, records), skip_invalid=True)
    assert [r.case_id for r in data] == ["7", "9"]
    assert data.skipped == 2
    assert "record 1, field 'target_new'" in data.skip_reasons[0]
    assert "record 3, field 'subject'" in data.skip_reasons[1]
    assert "skipped 2 invalid record(s) of 4" in caplog.text


# --- formats: JSON Lines, forcing --------------------------------------------------------------------

def test_json_lines_read_like_json(tmp_path):
    records = [counterfact_record(case_id=i) for i in range(3)]
    as_lines = "\n".join(json.dumps(r) for r in records) + "\n"
    (tmp_path / "a.jsonl").write_text(as_lines, encoding="utf-8")
    (tmp_path / "b.json").write_text(as_lines, encoding="utf-8")  # JSON Lines under .json too
    expected = load_dataset(write_json(tmp_path, records)).requests
    unsourced = lambda data: [replace(r, source="") for r in data]  # noqa: E731
    assert len(expected) == 3
    assert unsourced(load_dataset(tmp_path / "a.jsonl")) == unsourced(expected)
    assert unsourced(load_dataset(tmp_path / "b.json")) == unsourced(expected)


def test_forced_format(tmp_path):
    record = {"subject": "X", "prompt": "X lives in", "target_new": "Y", "ground_truth": "Z"}
    path = write_json(tmp_path, [record])
    assert load_dataset(path).format == "wikicounterfact"
    forced = load_dataset(path, format="wikirecent")
    assert forced.format == "wikirecent"
    with pytest.raises(InputError, match=r"record 0, field 'rephrase_prompt': missing field"):
        load_dataset(path, format="knowedit-zsre")
    with pytest.raises(InputError, match=r"unknown format 'nope'"):
        load_dataset(path, format="nope")


# --- splits -----------------------------------------------------------------------------------------

def test_split_is_seeded_disjoint_and_complete():
    requests = load_dataset("counterfact").requests
    first, again, other = split(requests), split(requests, seed=0), split(requests, seed=1)
    ids = lambda part: [r.case_id for r in part]  # noqa: E731
    assert (len(first.proxy), len(first.test)) == (20, 180)
    assert ids(first.proxy) == ids(again.proxy) and ids(first.proxy) != ids(other.proxy)
    assert not set(ids(first.proxy)) & set(ids(first.test))
    assert sorted(ids(first.proxy) + ids(first.test)) == sorted(ids(requests))
    order = {r.case_id: i for i, r in enumerate(requests)}
    assert [order[c] for c in ids(first.proxy)] == sorted(order[c] for c in ids(first.proxy))


def test_split_edges():
    requests = load_dataset("zsre", limit=3).requests
    assert (len(split(requests, 0.01).proxy), len(split(requests, 0.99).test)) == (1, 1)
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(InputError, match="proxy_fraction"):
            split(requests, fraction)
    with pytest.raises(InputError, match="at least 2"):
        split(requests[:1])


def test_proxy_union_is_one_call():
    sets = [load_dataset(name) for name in ("zsre", "wikibio")]
    union = proxy_union(sets, proxy_fraction=0.1, seed=0)
    assert list(union.parts) == ["zsre", "wikibio"]
    assert union.proxy == split(sets[0]).proxy + split(sets[1]).proxy
    assert union.test == split(sets[0]).test + split(sets[1]).test
    assert len(union.proxy) == 40
    lists = proxy_union([s.requests for s in sets])
    assert list(lists.parts) == ["zsre", "wikibio"] and lists.proxy == union.proxy


# --- corpus -------------------------------------------------------------------------------------

def test_corpus_texts():
    texts = load_corpus_texts()
    assert len(texts) == 2185
    assert texts[0].startswith("Robert Boulter is an English film, television and theatre actor.")
    assert not any(HEADING.match(t) or not t.strip() or " @-@ " in t for t in texts)
    assert texts[1].startswith("In 2006, Boulter starred")  # after "= = Career = =" etc. went
    assert load_corpus_texts(limit=3) == texts[:3]


def test_corpus_from_a_user_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text(" = Heading = \n\nFirst text , here .\n  \nSecond @-@ text\n", encoding="utf-8")
    assert load_corpus_texts(path=path) == ["First text, here.", "Second-text"]
    (tmp_path / "empty.txt").write_text("\n = Only = \n", encoding="utf-8")
    with pytest.raises(InputError, match="no text"):
        load_corpus_texts(path=tmp_path / "empty.txt")


def test_detokenize():
    assert detokenize(" It 's 1 @,@ 000 km ( long ) , isn 't it ? ") == \
        "It's 1,000 km (long), isn't it?"


# --- command line -------------------------------------------------------------------------------

def test_cli_datasets_lists_bundled_and_given_files(tmp_path):
    path = write_json(tmp_path, [counterfact_record(), counterfact_record(target_new="")], "mine.json")
    result = CliRunner().invoke(app, ["datasets", str(path), "--skip-invalid"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name, fmt in BUNDLED_FORMATS.items():
        assert f"│ {name} " in result.output and fmt in result.output
    assert "1 (1 skipped)" in result.output and "rephrase_accuracy" in result.output
    failed = CliRunner().invoke(app, ["datasets", str(path)])
    assert isinstance(failed.exception, InputError) and failed.exception.index == 1


# --- exports: a records wrapper, list-valued rephrase and locality, repeated case ids ------------

def knowedit_export_record(case_id, **changes):
    record = {"case_id": case_id, "prompt": "The mother tongue of Danielle Darrieux is",
              "subject": "Danielle Darrieux", "target_new": "English", "ground_truth": "French",
              "rephrase_prompt": ["Danielle Darrieux speaks", "Darrieux's first language is"],
              "locality": [{"prompt": "Michel Rocard speaks", "ground_truth": "French"},
                           {"prompt": "The capital of France is", "ground_truth": ["Paris"]}]}
    record.update(changes)
    return record


def test_an_export_with_a_records_wrapper_and_lists_is_read(tmp_path):
    path = write_json(tmp_path, {"records": [knowedit_export_record("a"), knowedit_export_record("b")]})
    data = load_dataset(path)
    assert data.format == "knowedit-zsre" and [r.case_id for r in data] == ["a", "b"]
    first = data.requests[0]
    assert first.rephrase_prompts == ("Danielle Darrieux speaks",)  # the first one is scored
    assert [(p.prompt, p.answer) for p in first.locality] == [
        ("Michel Rocard speaks", "French"), ("The capital of France is", "Paris")]
    assert data.notes == {"rephrase_prompt prompts after the first, not scored": 2}
    assert "rephrase_accuracy" in data.metrics and "locality" in data.metrics


def test_flat_counterfact_with_listed_locality_prompts(tmp_path):
    record = counterfact_record(rephrase_prompt=["Danielle Darrieux speaks"],
                                locality_prompt=["Michel Rocard speaks", "Jean Gabin speaks"])
    request = load_dataset(write_json(tmp_path, [record])).requests[0]
    assert [p.prompt for p in request.locality] == ["Michel Rocard speaks", "Jean Gabin speaks"]
    assert request.rephrase_prompts == ("Danielle Darrieux speaks",)
    bad = counterfact_record(locality_prompt=["a", "b"], locality_ground_truth=["French"])
    with pytest.raises(InputError, match="locality_ground_truth.*1 answers for 2"):
        load_dataset(write_json(tmp_path, [bad], "bad.json"))


def test_repeated_case_ids_are_an_error_naming_them(tmp_path):
    records = [counterfact_record(case_id=1), counterfact_record(case_id=2),
               counterfact_record(case_id=1)]
    with pytest.raises(InputError, match=r"field 'case_id': case ids must be unique; repeated: '1'"):
        load_dataset(write_json(tmp_path, records))
    with pytest.raises(InputError, match="repeated: '1'"):
        load_dataset(write_json(tmp_path, records), skip_invalid=True)


def test_cli_datasets_says_what_was_read_and_what_was_skipped_why(tmp_path):
    records = [knowedit_export_record("a"), knowedit_export_record("b", target_new="")]
    path = write_json(tmp_path, {"records": records}, "export.json")
    result = CliRunner().invoke(app, ["datasets", str(path), "--skip-invalid"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "read 2 records, 1 usable, 1 skipped" in result.output
    assert "skipped" in result.output and "record 1, field 'target_new'" in result.output
    assert "left out 1 rephrase_prompt prompts after the first" in result.output


def test_whole_number_case_ids_are_read_as_their_digits(tmp_path):
    path = write_json(tmp_path, [counterfact_record(case_id=7), counterfact_record(case_id=8.0)])
    assert [r.case_id for r in load_dataset(path).requests] == ["7", "8"]


def test_a_simple_edit_file_refuses_a_case_id_that_is_a_list(tmp_path):
    from goldenlayers.app.user_input import read_simple_file

    path = tmp_path / "edits.json"
    path.write_text(json.dumps([{"prompt": "Paris is in", "subject": "Paris", "target": "Italy",
                                 "case_id": ["x"]}]))
    with pytest.raises(InputError, match=r"record 0, field 'case_id': must be a string or a whole"):
        read_simple_file(path)


def test_locality_without_a_ground_truth_is_kept_for_the_model_answer(tmp_path):
    from goldenlayers.data.formats import MODEL_ANSWER_NOTE

    record = {"subject": "X", "prompt": "X lives in", "target_new": "Y",
              "locality": {"Relation_Specificity": [
                  {"prompt": "X works at", "ground_truth": None},
                  {"prompt": "X was born in", "ground_truth": "Z",
                   "metric": "pre_post_consistency"},
                  {"prompt": "X likes", "ground_truth": "tea"}]},
              "portability": {"Reasoning": [{"prompt": "X's home is", "ground_truth": None}]}}
    with pytest.raises(InputError, match=r"field 'portability.Reasoning\[0\].ground_truth'"):
        load_dataset(write_json(tmp_path, [record]))  # portability needs an answer
    del record["portability"]
    data = load_dataset(write_json(tmp_path, [record]))
    pairs = data.requests[0].locality
    assert [(p.prompt, p.answer) for p in pairs] == [("X works at", None), ("X was born in", None),
                                                     ("X likes", "tea")]
    assert data.notes == {MODEL_ANSWER_NOTE: 2} and "locality" in data.metrics


@pytest.mark.parametrize("name, match", [
    ("folder", "is a folder; give a data set file"),
    ("edits.csv", "benchmark files are JSON or JSON Lines; a CSV of prompt, subject and target"),
    ("missing.json", "no such file, and not a bundled data set"),
])
def test_a_data_path_that_is_not_a_benchmark_file_says_what_it_is(tmp_path, name, match):
    (tmp_path / "folder").mkdir()
    (tmp_path / "edits.csv").write_text("prompt,subject,target\n")
    with pytest.raises(InputError, match=match) as error:
        load_dataset(tmp_path / name)
    assert str(tmp_path / name) in str(error.value)
