"""Prompt encodings against hand-checked strings built from the real SuperNI sample."""

from __future__ import annotations

import pytest

from imlsweep.data.encodings import OPT_IML_DELIMITERS, EncodingConfig, encode_prompt
from imlsweep.data import tokenization
from imlsweep.data.tokenization import CHUNK, PromptTokenizer, chunk_memo, splices_exactly, token_ids
from imlsweep.data.tokenizer import cached_tokenizer

ANTONYMS = "task1508_wordnet_antonyms"
COLA = "task1346_glue_cola_grammatical_correctness_classification"


def render(row, config=None, demonstrations=(), **kwargs):
    kwargs.setdefault("seed", 0)
    return encode_prompt(row, row["outputs"][0], list(demonstrations), config or EncodingConfig(), **kwargs)


def test_superni_def_pos_matches_tk_instruct_exactly(superni_row):
    prompt = render(superni_row(ANTONYMS))
    assert prompt.source == (
        "Definition: Given an adjective, generate its antonym. An antonym of a word is a word opposite in "
        "meaning to it.\n\n"
        " Positive Example 1 -\nInput: able.\n Output: unable.\n\n"
        " Positive Example 2 -\nInput: accurate.\n Output: inaccurate.\n\n"
        "Now complete the following example -\nInput: unable.\nOutput: ")
    assert prompt.target == "able"


def test_superni_options_negatives_explanations_no_definition(superni_row):
    config = EncodingConfig(num_pos_examples=1, num_neg_examples=1, add_explanation=True, add_definition=False)
    prompt = render(superni_row(ANTONYMS), config)
    assert prompt.source == (
        " Positive Example 1 -\nInput: able.\n Output: unable.\n"
        " Explanation: The output is correct as able and unable are opposities of each other in meaning.\n\n"
        " Negative Example 1 -\nInput: abstract.\n Output: disadvantageous.\n"
        " Explanation: Abstract and disadvantageous aren't opposite in meaning, as the opposite of abstract is "
        "concrete.\n\n"
        "Now complete the following example -\nInput: unable.\nOutput: ")


def test_superni_keeps_punctuation_and_adds_none(superni_row):
    prompt = render(superni_row(COLA), EncodingConfig(num_pos_examples=0))
    assert prompt.source == (
        "Definition: You will be given a sentence. Check whether the sentence is grammatically correct and is "
        "meaningful. If the sentence is grammatically correct, then answer with '1', otherwise answer with '0'.\n\n"
        "Now complete the following example -\nInput: I have should eat plums.\nOutput: ")


def test_superni_leaves_out_examples_past_max_source_length(superni_row):
    row = superni_row(COLA)
    tokenizer = PromptTokenizer(cached_tokenizer("tiny"))
    no_examples = render(row, EncodingConfig(num_pos_examples=0)).source
    one_example = render(row, EncodingConfig(num_pos_examples=1)).source
    limit = tokenizer.count_tokens([one_example])  # room for exactly one positive example
    prompt = render(row, count_tokens=tokenizer.count_tokens, max_source_length=limit)
    assert prompt.source == one_example
    prompt = render(row, count_tokens=tokenizer.count_tokens, max_source_length=limit - 1)
    assert prompt.source == no_examples


def test_no_instruction_is_input_to_output(superni_row):
    prompt = render(superni_row(COLA), EncodingConfig(name="no_instruction"))
    assert (prompt.source, prompt.target) == ("I have should eat plums.", "0")


def test_bipartite_task_level_draws_a_seeded_delimiter(superni_row):
    row = superni_row(ANTONYMS)
    config = EncodingConfig(name="bipartite")
    prompt = render(row, config, seed=3)
    definition = "Given an adjective, generate its antonym. An antonym of a word is a word opposite in meaning to it."
    assert prompt.source.startswith(definition + "\n\nunable")
    delimiter = prompt.source[len(definition + "\n\nunable"):]
    assert delimiter in OPT_IML_DELIMITERS
    assert prompt.target == " able"
    assert render(row, config, seed=3).source == prompt.source  # same seed, same draw
    draws = {render(superni_row(ANTONYMS, i), config, seed=3).source.rsplit("\n\n", 1)[1]
             .removeprefix(superni_row(ANTONYMS, i)["input"]) for i in range(40)}
    assert len(draws) > 3 and draws <= set(OPT_IML_DELIMITERS)  # drawn per example


def test_bipartite_no_delimiter_after_colon_and_instance_level_keeps_its_text(superni_row):
    row = superni_row(COLA) | {"instruction_type": "instance", "input": "Is this sentence correct? I ran home.\nAnswer:",
                               "definition": ""}
    demo = row | {"example_id": "demo", "input": "Is this sentence correct? Home ran I.\nAnswer:", "outputs": ["no"]}
    prompt = render(row, EncodingConfig(name="bipartite"), [demo])
    # instance level: the demonstration (a full prompt) comes before the example; no delimiter after ":"
    assert prompt.source == ("Is this sentence correct? Home ran I.\nAnswer: no\n\n"
                             "Is this sentence correct? I ran home.\nAnswer:")


def test_task_level_demonstrations_follow_the_instruction(superni_row):
    row = superni_row(ANTONYMS)
    demo = superni_row(ANTONYMS, 1)
    prompt = render(row, EncodingConfig(name="bipartite", delimiters=["\nAnswer:"]), [demo])
    assert prompt.source == (row["definition"] + "\n\n" + demo["input"] + "\nAnswer: " + demo["outputs"][0]
                             + "\n\n" + row["input"] + "\nAnswer:")
    tk = render(row, EncodingConfig(num_pos_examples=1), [demo])
    assert f" Positive Example 2 -\nInput: {demo['input']}.\n Output: {demo['outputs'][0]}.\n\n" in tk.source


@pytest.mark.parametrize("encoding", ["superni_def_pos", "no_instruction", "bipartite"])
def test_shared_part_spliced_ids_equal_whole_string_ids(superni_dir, superni_row, encoding):
    tokenizer = cached_tokenizer("tiny")
    assert splices_exactly(tokenizer)
    encoder = PromptTokenizer(tokenizer)
    prompts = [render(superni_row(task.stem, i), EncodingConfig(name=encoding), [superni_row(task.stem, 5)])
               for task in sorted((superni_dir / "tasks").glob("*.json")) for i in range(3)]
    sources, targets = encoder.encode(prompts)
    assert sources == token_ids(tokenizer, [p.source for p in prompts])
    assert targets == token_ids(tokenizer, [p.target for p in prompts])


def test_token_counts_add_up_over_segments(superni_dir, superni_row):
    """The length rule counts joined pieces segment by segment; the sum equals the whole string's count."""
    tokenizer = cached_tokenizer("tiny")
    encoder = PromptTokenizer(tokenizer)
    for task in sorted((superni_dir / "tasks").glob("*.json")):
        row = superni_row(task.stem)
        prompt = render(row, EncodingConfig(num_pos_examples=2, add_explanation=True))
        demos = prompt.shared.split("\n\n ")
        for pieces in ([prompt.shared, prompt.own], [*demos, " ", prompt.own], ["", " x ", prompt.own, "  "], [""]):
            assert encoder.count_tokens(pieces) == len(token_ids(tokenizer, ["".join(pieces)])[0]), (task.stem, pieces)


def test_chunk_ids_joined_equal_the_whole_texts_ids(superni_dir, superni_row, monkeypatch):
    """Every text of the SuperNI sample, cut into chunks whose ids come from the process's memo, gets
    the ids the tokenizer gives it whole; also when the memo fills up and starts over."""
    tokenizer = cached_tokenizer("tiny")
    texts = []
    for task in sorted((superni_dir / "tasks").glob("*.json")):
        row = superni_row(task.stem)
        prompt = render(row, EncodingConfig(num_pos_examples=2, add_explanation=True))
        texts += [prompt.source, prompt.own, row["input"], *row["outputs"]]
    assert all("".join(CHUNK.findall(text)) == text for text in texts)
    # \x1c-\x1f are whitespace to Python, not to the pre-tokenizer's patterns: no cut before them
    assert CHUNK.findall("a!\x1d\u00a0b \x1c") == ["a!\x1d", "\u00a0b", " \x1c"]
    whole = token_ids(tokenizer, texts)
    assert PromptTokenizer(tokenizer).chunked_ids(texts) == whole
    assert 0 < len(chunk_memo(tokenizer)) <= tokenization.CHUNK_MEMO_SIZE
    monkeypatch.setattr(tokenization, "CHUNK_MEMO_SIZE", 50)
    assert [PromptTokenizer(tokenizer).chunked_ids([text])[0] for text in texts] == whole
    assert len(chunk_memo(tokenizer)) <= 50 + max(len(CHUNK.findall(text)) for text in texts)


def test_a_tokenizer_that_marks_word_starts_gets_whole_texts(superni_dir, superni_row):
    """SentencePiece-style word-start marks (Metaspace) make chunk ids differ from the whole text's: such a
    tokenizer is found out and tokenizes whole texts, with the same ids as the bare tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rows = [superni_row(task.stem, i) for task in sorted((superni_dir / "tasks").glob("*.json")) for i in range(3)]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.train_from_iterator([row["input"] for row in rows] + [row["definition"] for row in rows],
                                trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert not splices_exactly(tokenizer)
    prompts = [render(row, EncodingConfig(), [rows[0]]) for row in rows]
    encoder = PromptTokenizer(tokenizer)
    assert encoder.encode(prompts) == (token_ids(tokenizer, [p.source for p in prompts]),
                                       token_ids(tokenizer, [p.target for p in prompts]))
    assert encoder.count_tokens([prompts[0].shared, prompts[0].own]) == len(token_ids(tokenizer, [prompts[0].source])[0])
