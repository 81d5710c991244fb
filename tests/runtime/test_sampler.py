"""Sampler unit tests on hand-made logits: truncation, penalties, masks, bad rows."""

from __future__ import annotations

import torch

from radixlm.runtime.sampling.sampler import Sampler
from radixlm.runtime.sampling.sampling_params import SamplingParams
from radixlm.runtime.scheduler.request import Req


def req(**params) -> Req:
    return Req(rid="r", input_ids=[0], sampling_params=SamplingParams.from_dict(params))


def test_top_p_keeps_only_the_nucleus():
    sampler = Sampler(4, (3,))
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    picks = {sampler.sample(logits, [req(top_p=0.6)]).next_ids[0] for _ in range(200)}
    assert picks == {0, 1}


def test_min_p_drops_unlikely_tokens():
    sampler = Sampler(4, (3,))
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    picks = {sampler.sample(logits, [req(min_p=0.5)]).next_ids[0] for _ in range(200)}
    assert picks == {0, 1}


def test_truncation_is_per_row_in_a_batch():
    # Regression (found by the soak): min_p broadcast across rows once two rows truncated.
    sampler = Sampler(4, (3,))
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    picks: list[set[int]] = [set(), set()]
    for _ in range(200):
        ids = sampler.sample(logits.clone(), [req(min_p=0.5), req(top_p=0.6)]).next_ids
        picks[0].add(ids[0])
        picks[1].add(ids[1])
    assert picks == [{0, 1}, {2, 3}]


def test_top_k_limits_candidates():
    sampler = Sampler(4, (3,))
    logits = torch.zeros(1, 4)
    picks = {sampler.sample(logits, [req(top_k=2)]).next_ids[0] for _ in range(200)}
    assert len(picks) == 2


def test_min_new_tokens_masks_eos():
    sampler = Sampler(4, (3,))
    logits = torch.tensor([[0.0, 0.0, 0.0, 10.0]])
    assert sampler.sample(logits, [req(temperature=0)]).next_ids == [3]
    assert sampler.sample(logits, [req(temperature=0, min_new_tokens=2, max_new_tokens=4)]).next_ids != [3]


def test_frequency_penalty_discourages_repeats():
    sampler = Sampler(3, (2,))
    r = req(temperature=0, frequency_penalty=2.0)
    r.output_ids = [0, 0]
    logits = torch.tensor([[3.0, 0.0, -9.0]])
    assert sampler.sample(logits, [r]).next_ids == [1]


def test_logit_bias_applies():
    sampler = Sampler(3, (2,))
    logits = torch.tensor([[1.0, 0.0, 0.0]])
    assert sampler.sample(logits, [req(temperature=0, logit_bias={"1": 5.0})]).next_ids == [1]


def test_raw_logprobs_ignore_temperature():
    sampler = Sampler(3, (2,))
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    r = req(temperature=0)
    r.return_logprob = True
    out = sampler.sample(logits, [r])
    assert abs(out.logprobs[0] - torch.log_softmax(logits, -1)[0, 0].item()) < 1e-6


def test_nan_rows_are_reported_and_others_still_sample():
    sampler = Sampler(3, (2,))
    logits = torch.tensor([[float("nan"), 0.0, 0.0], [5.0, 0.0, 0.0]])
    out = sampler.sample(logits, [req(temperature=0), req(temperature=0)])
    assert out.bad_rows == [0]
    assert out.next_ids[1] == 0


def test_verify_keeps_the_sampling_distribution_whatever_the_draft():
    """Speculative verification of a fixed draft: each token comes out with exactly the
    probability `sample` gives it (here after top_p), the draft accepted iff it comes out."""
    sampler = Sampler(4, (3,))
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    r = req(temperature=1.0, top_p=0.9)  # keeps 0.5, 0.3, 0.15 -> renormalised
    want = torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95
    r.generator = torch.Generator().manual_seed(0)
    n = 4000
    for draft in (0, 2, 3):
        counts = torch.zeros(4)
        for _ in range(n):
            out = sampler.verify(torch.log(probs)[None], [r], [draft])
            tok = out.next_ids[0]
            assert out.accepted[0] == (tok == draft)
            counts[tok] += 1
        torch.testing.assert_close(counts / n, want, atol=0.03, rtol=0)


def test_verify_greedy_accepts_only_the_masked_argmax():
    from radixlm.runtime.constrained import allocate_token_bitmask

    sampler = Sampler(64, (3,))
    logits = torch.zeros(2, 64)
    logits[:, 5] = 3.0
    logits[:, 9] = 2.0
    mask = allocate_token_bitmask(2, 64)
    mask[1, 0] &= ~(1 << 5)  # row 1 may not pick 5: its argmax under the mask is 9
    out = sampler.verify(logits, [req(temperature=0), req(temperature=0)], [5, 5], token_bitmask=mask)
    assert out.next_ids == [5, 9] and out.accepted == [True, False] and out.bad_rows == []


def test_the_callers_logits_are_never_changed():
    """Plain rows sample from the caller's tensor as it is (no copy); rows with a bias, a
    penalty or a min-token mask change a copy, never the model's output."""
    sampler = Sampler(4, (3,))
    logits = torch.tensor([[0.1, 2.0, 0.3, 0.4], [0.1, 2.0, 0.3, 5.0]])
    before = logits.clone()
    assert sampler.sample(logits, [req(temperature=0), req(temperature=0)]).next_ids == [1, 3]
    biased = [req(temperature=0, logit_bias={"0": 10.0}), req(temperature=0, min_new_tokens=1)]
    assert sampler.sample(logits, biased).next_ids == [0, 1]  # row 2: eos (3) masked
    assert torch.equal(logits, before)
