"""Rank classification and greedy generation on tiny models."""

import pytest
import torch

from imlsweep.data.tokenizer import cached_tokenizer
from imlsweep.eval.batching import length_sorted_batches
from imlsweep.eval.generation import cut_at_eos, encode_prompts, generate_texts, generate_token_ids
from imlsweep.eval.ranking import encode_rank_request, rank_causal, rank_seq2seq
from imlsweep.train.model import ModelConfig, load_model

PROMPTS = ["Premise: the cat sat on the mat. Hypothesis: a cat sits.\nAnswer: ", "Is this spam? Win money now!\nOutput:",
           "x"]
CANDIDATES = [["Entailment", "Contradiction", "Neutral"], [" yes", " no"], ["a", "bb b", "c"]]


@pytest.fixture(scope="module")
def tokenizer():
    return cached_tokenizer("tiny")


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-opt", "tiny-t5"])
def model(request):
    return load_model(ModelConfig(name=request.param, dropout=0.0)).eval()


def naive_logprob(model, prompt_ids, ids):
    """The candidate's log-likelihood from its own full forward pass."""
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            logits = model(input_ids=torch.tensor([prompt_ids]), labels=torch.tensor([ids])).logits[0]
            rows = torch.arange(len(ids))
        else:
            logits = model(input_ids=torch.tensor([prompt_ids + ids])).logits[0]
            rows = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(ids))
    return float(torch.log_softmax(logits.float(), -1)[rows, torch.tensor(ids)].sum())


def rank(model, requests, batch_size, pad_id):
    scorer = rank_seq2seq if model.config.is_encoder_decoder else rank_causal
    return scorer(model, requests, batch_size, pad_id)


def test_shared_prompt_scores_equal_one_pass_per_candidate(model, tokenizer):
    seq2seq = model.config.is_encoder_decoder
    requests = [encode_rank_request(tokenizer, p, c, seq2seq=seq2seq) for p, c in zip(PROMPTS, CANDIDATES)]
    results = rank(model, requests, 2, tokenizer.pad_token_id)  # padded batches of different lengths
    for request, result in zip(requests, results):
        expected = [naive_logprob(model, request.prompt_ids, ids) for ids in request.candidate_ids]
        assert result.logprob_sum == pytest.approx(expected, abs=1e-4)
        assert result.logprob_per_char == pytest.approx(
            [total / chars for total, chars in zip(expected, request.candidate_chars)], abs=1e-4)


def test_tokenization_follows_the_harness(tokenizer):
    request = encode_rank_request(tokenizer, "Sentiment: ", ["positive", "negative"])
    # trailing whitespace moves to the candidate; candidate ids are those of the whole string after the prompt
    assert request.prompt_ids == tokenizer("Sentiment:", add_special_tokens=False)["input_ids"]
    whole = tokenizer("Sentiment: positive", add_special_tokens=False)["input_ids"]
    assert request.prompt_ids + request.candidate_ids[0] == whole
    truncated = encode_rank_request(tokenizer, "one two three four five six", ["x y"], max_tokens=4)
    assert len(truncated.prompt_ids) + len(truncated.candidate_ids[0]) <= 4
    with pytest.raises(ValueError, match="at least one candidate"):
        encode_rank_request(tokenizer, "p", [])


def train_preferences(model, tokenizer, pairs, steps=30):
    """A few full-batch optimizer steps teaching a decoder-only `model` the answer of each prompt."""
    torch.manual_seed(0)
    rows = []
    for prompt, answer in pairs:
        request = encode_rank_request(tokenizer, prompt, [answer])
        rows.append((request.prompt_ids + request.candidate_ids[0],
                     [-100] * len(request.prompt_ids) + request.candidate_ids[0]))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([labels + [-100] * (width - len(labels)) for _, labels in rows])
    attention_mask = (torch.arange(width)[None, :] < torch.tensor([len(ids) for ids, _ in rows])[:, None]).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_rank_classification_picks_the_trained_candidate(tokenizer):
    pairs = [("Review: a wonderful, moving film.\nSentiment: ", "positive"),
             ("Review: dull and far too long.\nSentiment: ", "negative"),
             ("Review: the best thing I saw this year.\nSentiment: ", "positive"),
             ("Review: I walked out after an hour.\nSentiment: ", "negative")]
    candidates = ["positive", "negative"]
    model = load_model(ModelConfig(name="tiny-llama", dropout=0.0))
    requests = [encode_rank_request(tokenizer, prompt, candidates) for prompt, _ in pairs]
    before = [candidates[result.choice("sum")] for result in rank(model.eval(), requests, 4, tokenizer.pad_token_id)]
    assert before != [answer for _, answer in pairs]  # untrained (seeded) it gets them wrong: the test can fail
    train_preferences(model, tokenizer, pairs)
    results = rank(model, requests, 4, tokenizer.pad_token_id)
    assert [candidates[result.choice("sum")] for result in results] == [answer for _, answer in pairs]
    assert [candidates[result.choice("per_char")] for result in results] == [answer for _, answer in pairs]


def test_batched_generation_equals_one_at_a_time(model, tokenizer):
    batched = generate_texts(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=3, max_source_tokens=64)
    single = [generate_texts(model, tokenizer, [p], max_new_tokens=6, batch_size=1, max_source_tokens=64)[0]
              for p in PROMPTS]
    assert batched == single
    seq2seq = model.config.is_encoder_decoder
    ids = generate_token_ids(model, encode_prompts(tokenizer, PROMPTS, 64, seq2seq), max_new_tokens=5, batch_size=2,
                             eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
    assert all(len(tokens) <= 5 and tokenizer.eos_token_id not in tokens for tokens in ids)


def test_greedy_generation_reproduces_a_trained_answer(tokenizer):
    model = load_model(ModelConfig(name="tiny-llama", dropout=0.0))
    answer = " the blue whale"
    prompt = "Question: which animal is the largest?\nAnswer:"
    eos = tokenizer.eos_token
    train_preferences(model, tokenizer, [(prompt, answer + eos)])
    text = generate_texts(model, tokenizer, [prompt], max_new_tokens=12, batch_size=1, max_source_tokens=64)[0]
    assert text == answer.strip()  # stops at EOS, not at max_new_tokens


def test_cut_at_eos_and_batches():
    assert cut_at_eos([5, 6, 1, 7], eos_id=1, pad_id=2, skip_first=False) == [5, 6]
    assert cut_at_eos([2, 5, 2, 2], eos_id=1, pad_id=2, skip_first=True) == [5]
    assert length_sorted_batches([3, 9, 1, 5], 2) == [[1, 3], [0, 2]]
    assert length_sorted_batches([3, 9], 2, num_batches=3) == [[1, 0], [1, 0], [1, 0]]
    with pytest.raises(ValueError):
        length_sorted_batches([1, 2, 3], 1, num_batches=2)
