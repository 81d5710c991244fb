"""try_jump_forward: appends exactly the forced text (less the back-off token), re-syncs the
matcher, never splits a character and never rewrites earlier tokens."""

from __future__ import annotations

from radixlm.runtime.constrained.jump_forward import try_jump_forward

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
          "role": {"enum": ["admin", "editor"]}}, "required": ["name", "age", "role"]}
CHINESE = "霍格沃茨特快列车|霍比特人比尔博"


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def _accept(matcher, ids: list[int]) -> None:
    assert all(matcher.accept_token(t) for t in ids)


def test_first_jump_is_the_forced_text_less_its_last_token(new_matcher, tokenizer):
    matcher = new_matcher("json_schema", SCHEMA)
    assert matcher.forced_string() == '{"name":"'
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64)
    assert jump.token_ids == _encode(tokenizer, '{"name":"')[:-1]
    assert jump.text == tokenizer.decode(jump.token_ids)
    assert matcher.accepted_ids == jump.token_ids
    assert matcher.forced_string() == '{"name":"'[len(jump.text):]


def test_jump_after_sampled_text_keeps_earlier_tokens(new_matcher, tokenizer):
    matcher = new_matcher("json_schema", SCHEMA)
    sampled = _encode(tokenizer, '{"name":"Al"')
    _accept(matcher, sampled)
    forced = matcher.forced_string()
    assert forced == ',"age":'
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64)
    assert jump.token_ids == _encode(tokenizer, forced)[:-1]  # `"` + `,"` kept apart
    assert matcher.accepted_ids == sampled + jump.token_ids
    assert matcher.forced_string() == forced[len(jump.text):]


def test_enum_prefix_resolves_the_rest_of_the_value(new_matcher, tokenizer):
    matcher = new_matcher("json_schema", SCHEMA)
    _accept(matcher, _encode(tokenizer, '{"name":"A","age":1,"role":"e'))
    assert matcher.forced_string() == 'ditor"}'
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64)
    assert jump is not None and 'ditor"}'.startswith(jump.text)


def test_one_forced_character_is_not_worth_a_jump(new_matcher, tokenizer):
    matcher = new_matcher("regex", "a[0-9]")
    assert matcher.forced_string() == "a"
    assert try_jump_forward(matcher, tokenizer, max_tokens=64) is None
    assert matcher.accepted_ids == []


def test_max_tokens_caps_the_jump(new_matcher, tokenizer):
    matcher = new_matcher("regex", "The quick brown fox jumps over the lazy dog [0-9]")
    jump = try_jump_forward(matcher, tokenizer, max_tokens=2)
    assert len(jump.token_ids) == 2
    assert try_jump_forward(matcher, tokenizer, max_tokens=0) is None


def test_rollback_undoes_a_jump(new_matcher, tokenizer):
    matcher = new_matcher("json_schema", SCHEMA)
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64)
    matcher.rollback(len(jump.token_ids))
    assert matcher.accepted_ids == [] and matcher.forced_string() == '{"name":"'


def test_forced_text_that_would_merge_into_the_last_token_keeps_the_boundary(new_matcher,
                                                                             tokenizer):
    """Sampled " qu" + forced "ick brown fox": " quick" would rewrite the sampled token, so
    the forced text is tokenized on its own after it."""
    matcher = new_matcher("regex", " quick brown fox[0-9]")
    (first,) = _encode(tokenizer, " qu")
    _accept(matcher, [first])
    assert _encode(tokenizer, " quick")[0] != first
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64)
    assert matcher.accepted_ids == [first] + jump.token_ids
    assert jump.token_ids == _encode(tokenizer, "ick brown fox")[:-1]


def test_chinese_jump_is_whole_characters(new_matcher, tokenizer):
    matcher = new_matcher("regex", CHINESE)
    _accept(matcher, _encode(tokenizer, "霍比"))
    assert matcher.forced_string() == "特人比尔博"
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64)
    assert jump is not None
    assert "特人比尔博".startswith(jump.text) and jump.text
    assert matcher.forced_string() == "特人比尔博"[len(jump.text):]


def test_no_jump_inside_a_multibyte_character(new_matcher, tokenizer, vocab):
    matcher = new_matcher("regex", CHINESE)
    ids = _encode(tokenizer, "霍比")
    for token_id in ids[:-1]:  # stop before the token that completes 比
        assert matcher.accept_token(token_id)
    if matcher._pending:
        assert matcher.forced_string() == ""
        assert try_jump_forward(matcher, tokenizer, max_tokens=64) is None


def test_jumped_tokens_are_what_the_mask_allows(new_matcher, tokenizer, allowed):
    """Re-sync walks the real index: a replayed copy accepts the same tokens under the mask."""
    matcher = new_matcher("json_schema", SCHEMA)
    _accept(matcher, _encode(tokenizer, '{"name":"Bo","age":7,'))
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64)
    replay = new_matcher("json_schema", SCHEMA)
    for token_id in matcher.accepted_ids:
        assert token_id in allowed(replay)
        assert replay.accept_token(token_id)
    assert jump.text.startswith('"role')


def test_jump_tokenized_in_context_when_the_last_token_survives(new_matcher, tokenizer):
    matcher = new_matcher("json_schema", SCHEMA)
    (brace,) = _encode(tokenizer, '{"')
    _accept(matcher, [brace])
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64)
    assert [brace] + jump.token_ids == _encode(tokenizer, '{"name":"')[:-1]


def test_draft_is_the_back_off_token_and_is_not_accepted(new_matcher, tokenizer):
    """With `draft`, the dropped last token comes back for speculative verification; the
    matcher stands before it, so the caller's mask at that position can judge it."""
    matcher = new_matcher("json_schema", SCHEMA)
    ids = _encode(tokenizer, '{"name":"')
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64, draft=True)
    assert jump.token_ids == ids[:-1] and jump.draft_id == ids[-1]
    assert matcher.accepted_ids == ids[:-1]
    assert matcher.accept_token(jump.draft_id)


def test_one_forced_token_is_a_draft_only_jump(new_matcher, tokenizer):
    """A forced text of one character (or one token) appends nothing but still drafts it."""
    matcher = new_matcher("regex", "a[0-9]")
    jump = try_jump_forward(matcher, tokenizer, max_tokens=64, draft=True)
    assert jump.token_ids == [] and jump.text == ""
    assert jump.draft_id == _encode(tokenizer, "a")[0]
    assert matcher.accepted_ids == []


def test_draft_counts_against_max_tokens(new_matcher, tokenizer):
    matcher = new_matcher("regex", "The quick brown fox [0-9]")
    ids = _encode(tokenizer, "The quick brown fox ")
    full = try_jump_forward(matcher, tokenizer, max_tokens=len(ids), draft=True)
    assert full.draft_id == ids[-1]
    matcher.rollback(len(full.token_ids))
    capped = try_jump_forward(matcher, tokenizer, max_tokens=len(ids) - 1, draft=True)
    assert capped.token_ids == ids[:-1] and capped.draft_id is None
