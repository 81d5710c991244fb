"""Fixtures for constrained decoding: the real SmolLM2 tokenizer's vocabulary, one shared
GrammarManager (compiled grammars are cached across tests), and a seeded random walker that
stands in for the model: it samples uniformly among the tokens the bitmask allows."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import interegular
import numpy as np
import pytest

from radixlm.runtime.constrained.bitmask import allocate_token_bitmask
from radixlm.runtime.constrained.char_dfa import DEAD, CharDFA
from radixlm.runtime.constrained.grammar_manager import GrammarManager
from radixlm.runtime.constrained.jump_forward import try_jump_forward
from radixlm.runtime.constrained.outlines_matcher import split_utf8
from radixlm.runtime.constrained.vocabulary import build_token_vocab

EOS_ID = 2  # SmolLM2 <|im_end|>
LOGITS_DIM = 49152


@pytest.fixture(scope="session")
def vocab(tokenizer):
    return build_token_vocab(tokenizer, (EOS_ID,))


@pytest.fixture(scope="session")
def two_stop_vocab(tokenizer):
    """Qwen-style: <|endoftext|> (id 0) ends an output as well as eos."""
    return build_token_vocab(tokenizer, (EOS_ID, 0))


@pytest.fixture(scope="session")
def manager(vocab):
    manager = GrammarManager(vocab, LOGITS_DIM)
    yield manager
    manager.shutdown()


@pytest.fixture(scope="session")
def new_matcher(manager):
    """new_matcher(kind, spec) -> a fresh matcher (compiled once per spec, then cached)."""
    return lambda kind, spec: manager.wait(manager.submit(kind, spec))


def allowed_ids(matcher) -> np.ndarray:
    """Token ids the matcher's bitmask allows, ascending."""
    buf = allocate_token_bitmask(1, LOGITS_DIM)
    matcher.fill_bitmask(buf, 0)
    bits = np.unpackbits(buf.numpy()[0].view(np.uint8), bitorder="little")
    return np.flatnonzero(bits)


@pytest.fixture(scope="session")
def allowed():
    return allowed_ids


class _Finisher:
    """Char-DFA distances to acceptance, to steer a walk to the end of its regex."""

    def __init__(self, regex: str) -> None:
        fsm = interegular.parse_pattern(regex).to_fsm()
        self.dfa = CharDFA(fsm)
        reverse: dict[int, list[int]] = {}
        for s, edges in fsm.map.items():
            for t in edges.values():
                reverse.setdefault(t, []).append(s)
        self.distance = {s: 0 for s in fsm.finals}
        frontier = list(fsm.finals)
        while frontier:
            nxt = []
            for t in frontier:
                for s in reverse.get(t, ()):
                    if s not in self.distance:
                        self.distance[s] = self.distance[t] + 1
                        nxt.append(s)
            frontier = nxt

    def cost(self, state: int, text: str) -> float:
        state = self.dfa.walk(state, text)
        return float("inf") if state == DEAD else self.distance.get(state, float("inf"))


@dataclass
class Walk:
    token_ids: list[int] = field(default_factory=list)
    data: bytes = b""
    steps: int = 0  # sampled tokens (forward passes)
    jumps: list[tuple[str, str]] = field(default_factory=list)  # (forced before, jumped text)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")  # strict: the output must be valid UTF-8


class RandomWalker:
    """Samples uniformly among allowed tokens for `explore_steps`, then steers to the end
    (the shortest char-DFA distance to acceptance), as a model would finish a document."""

    def __init__(self, tokenizer, vocab) -> None:
        self.tokenizer = tokenizer
        self.vocab = vocab
        self._finishers: dict[str, _Finisher] = {}

    def run(self, matcher, seed: int, jump_forward: bool = False, explore_steps: int = 12,
            max_steps: int = 300) -> Walk:
        rng = random.Random(seed)
        finisher = self._finisher(matcher.grammar.regex)
        walk = Walk()
        while not matcher.is_terminated():
            assert walk.steps < max_steps, f"walk did not finish: {walk.data!r}"
            if jump_forward:
                self._jump(matcher, walk)
            ids = allowed_ids(matcher)
            assert len(ids), f"nothing allowed after {walk.data!r}"
            if walk.steps < explore_steps:
                token = self._explore(rng, ids)
            else:
                token = self._finish(rng, ids, finisher, walk.data)
            assert matcher.accept_token(token)
            walk.steps += 1
            if token == EOS_ID:
                break
            self._append(walk, [token])
        return walk

    def _jump(self, matcher, walk: Walk) -> None:
        forced = matcher.forced_string()
        jump = try_jump_forward(matcher, self.tokenizer, max_tokens=64)
        if jump is None:
            return
        assert forced.startswith(jump.text) and jump.text
        assert matcher.forced_string() == forced[len(jump.text):]
        walk.jumps.append((forced, jump.text))
        self._append(walk, jump.token_ids)
        assert walk.data.endswith(jump.text.encode())

    def _append(self, walk: Walk, ids: list[int]) -> None:
        walk.token_ids += ids
        walk.data += b"".join(self.vocab.token_bytes[t] for t in ids)

    @staticmethod
    def _explore(rng: random.Random, ids: np.ndarray) -> int:
        if EOS_ID in ids and rng.random() < 0.3:
            return EOS_ID
        return int(ids[rng.randrange(len(ids))])

    def _finish(self, rng: random.Random, ids: np.ndarray, finisher: _Finisher | None,
                data: bytes) -> int:
        if EOS_ID in ids:
            return EOS_ID
        # Low ids are the single characters and short merges: enough to close anything.
        candidates = ids if len(ids) <= 300 else np.concatenate(
            [ids[ids < 600], rng.sample(list(ids), 50)])
        if finisher is None:
            return int(rng.choice(list(candidates)))
        done, pending = split_utf8(data)
        state = finisher.dfa.walk(finisher.dfa.initial, done)
        best, best_cost = [], float("inf")
        for token in map(int, candidates):
            text, rest = split_utf8(pending + self.vocab.token_bytes[token])
            cost = finisher.cost(state, text) + (4 if rest else 0) if text is not None else 1e9
            if cost < best_cost:
                best, best_cost = [token], cost
            elif cost == best_cost:
                best.append(token)
        return rng.choice(best)

    def _finisher(self, regex: str) -> _Finisher | None:
        if regex not in self._finishers:
            try:
                self._finishers[regex] = _Finisher(regex)
            except Exception:  # interegular cannot parse it: finish by random choice
                self._finishers[regex] = None
        return self._finishers[regex]


@pytest.fixture(scope="session")
def walker(tokenizer, vocab):
    return RandomWalker(tokenizer, vocab)
