"""The interpreter and program API as specifications, on a scripted backend (no model)."""

from __future__ import annotations

import asyncio
import threading
import warnings

import pytest

import radixlm.lang as rl
from radixlm.lang.ir import SglArgument

pytestmark = pytest.mark.filterwarnings("ignore:Error in stream_executor")


def test_appends_run_in_order_and_gen_text_joins_the_program_text(scripted):
    @rl.function
    def prog(s, topic):
        s += "Topic: " + topic + "\n"
        s += "Answer:" + rl.gen("answer", max_tokens=4)

    state = prog.run(topic="trees", backend=scripted)
    assert state["answer"] == "<gen 1>"
    assert state.text() == "Topic: trees\nAnswer:<gen 1>"
    assert scripted.calls[0][1] == "Topic: trees\nAnswer:"


def test_gen_overrides_run_defaults_and_template_stop_is_appended(scripted):
    @rl.function
    def prog(s):
        s += rl.gen("x", max_tokens=7, stop="\n", temperature=0.3)

    prog.run(backend=scripted, temperature=0.9, top_k=5).sync()
    params = scripted.calls[0][2]
    assert (params.max_new_tokens, params.temperature, params.top_k) == (7, 0.3, 5)
    assert params.stop == ["\n", "<|im_end|>"]  # chatml's stop_str, on every gen


def test_roles_produce_chatml_markup_and_messages(scripted):
    @rl.function
    def chat(s):
        s += rl.system("Be brief.")
        s += rl.user("Hi")
        with s.assistant():
            s += rl.gen("reply")

    state = chat.run(backend=scripted)
    assert state.text() == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<gen 1><|im_end|>\n")
    assert state.messages() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<gen 1>"},
    ]


def test_default_system_prompt_is_inserted_before_the_first_non_system_turn(ScriptedBackend):
    backend = ScriptedBackend(template="qwen")

    @rl.function
    def chat(s):
        s += rl.user_begin() + "Hi" + rl.user_end()

    assert chat.run(backend=backend).messages()[0] == {
        "role": "system", "content": "You are a helpful assistant."}


def test_llama2_style_merges_the_system_turn_into_the_first_user_turn(ScriptedBackend):
    backend = ScriptedBackend(template="llama-2-chat")

    @rl.function
    def chat(s):
        s += rl.system("S")
        s += rl.user("U")

    assert chat.run(backend=backend).text() == "[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]"


def test_nested_roles_are_an_error(scripted):
    @rl.function
    def chat(s):
        s += rl.user_begin() + rl.assistant("x")

    state = chat.run(backend=scripted)
    assert "roles cannot nest" in str(state.error())


def test_var_scope_captures_the_text_appended_inside(scripted):
    @rl.function
    def prog(s):
        s += "a "
        with s.var_scope("middle"):
            s += "b " + rl.gen(max_tokens=2)
        s += " c"

    state = prog.run(backend=scripted)
    assert state["middle"] == "b <gen 1>"
    assert "middle" in state


def test_fork_gathers_each_branch_variable_into_a_list(scripted):
    @rl.function
    def prog(s):
        s += "Shared prefix. "
        forks = s.fork(3)
        forks += lambda i: f"Branch {i}: "
        forks += rl.gen("draft")
        forks.join()
        s += "Done."

    state = prog.run(backend=scripted)
    assert sorted(state["draft"]) == ["<gen 2>", "<gen 3>", "<gen 4>"]
    assert state.text() == "Shared prefix. Done."
    assert scripted.kinds()[0] == "commit"  # the shared prefix is prefilled once, first
    assert sum(1 for k, t, _ in scripted.calls if k == "gen" and t.startswith("Shared prefix. Branch")) == 3


def test_fork_group_accepts_a_list_with_one_item_per_child(scripted):
    @rl.function
    def prog(s):
        forks = s.fork(2)
        forks += ["left", "right"]
        forks.join()
        s += forks[0].text() + "|" + forks[1].text()

    assert prog.run(backend=scripted).text() == "left|right"


def test_concate_and_append_join_appends_the_branch_texts(scripted):
    @rl.function
    def prog(s):
        s += "P:"
        forks = s.fork(2)
        forks += lambda i: f"[{i}]"
        forks.join(mode="concate_and_append")
        s += "!"

    assert prog.run(backend=scripted).text() == "P:[0][1]!"


def test_a_backend_error_surfaces_in_error_and_in_a_clear_key_error(ScriptedBackend):
    backend = ScriptedBackend(fail_on="boom")

    @rl.function
    def prog(s):
        s += "boom" + rl.gen("x")
        s += rl.gen("y")

    with warnings.catch_warnings(record=True):
        state = prog.run(backend=backend)
        assert isinstance(state.error(), RuntimeError)
        with pytest.raises(KeyError, match="program failed: RuntimeError: scripted failure"):
            state["y"]
    assert state.text() == "boom"  # sync() does not hang after the error


def test_unknown_variable_key_error_lists_known_ones(scripted):
    @rl.function
    def prog(s):
        s += rl.gen("known")

    state = prog.run(backend=scripted)
    with pytest.raises(KeyError, match="unknown variable 'nope'.*'known'"):
        state["nope"]


def test_gen_with_choices_is_a_select(scripted):
    expr = rl.gen("pick", choices=["a", "b"])
    assert type(expr).__name__ == "SglSelect" and expr.temperature == 0.0

    @rl.function
    def prog(s):
        s += "Pick: " + rl.select("pick", choices=["yes", "no"])

    state = prog.run(backend=scripted)
    assert state["pick"] == "yes" and state.text() == "Pick: yes"
    assert state.get_meta_info("pick") == {"scored": ["yes", "no"]}


def test_gen_validates_regex_on_the_client():
    with pytest.raises(ValueError, match="invalid regex"):
        rl.gen("x", regex="(unclosed")


def test_run_batch_accepts_tuples_and_rejects_wrong_arity(scripted):
    @rl.function
    def prog(s, a, b=1):
        s += f"{a}-{b}"

    states = prog.run_batch([(1,), (2, 3)], backend=scripted)
    assert [st.text() for st in states] == ["1-1", "2-3"]
    with pytest.raises(Exception, match="Given arguments mismatch"):
        prog.run_batch([(1, 2, 3)], backend=scripted)
    assert prog.run_batch([], backend=scripted) == []


def test_run_batch_sends_the_traced_constant_prefix_once_first(scripted):
    few_shot = "Q: 1+1?\nA: 2\n" * 8

    @rl.function
    def qa(s, question):
        s += few_shot
        s += "Q: " + question + "\nA:" + rl.gen("answer", max_tokens=2)

    states = qa.run_batch([{"question": str(i)} for i in range(5)], backend=scripted, num_threads=3)
    assert scripted.calls[0] == ("cache_prefix", few_shot + "Q: ", None)
    assert scripted.kinds().count("cache_prefix") == 1
    assert [st["answer"] for st in states] and all(st.error() is None for st in states)


def test_run_batch_generator_style_yields_states_in_order(scripted):
    @rl.function
    def prog(s, i):
        s += str(i)

    gen = prog.run_batch([{"i": i} for i in range(4)], backend=scripted, generator_style=True)
    assert [st.text() for st in gen] == ["0", "1", "2", "3"]


def test_short_prefix_is_not_precached(scripted):
    @rl.function
    def prog(s, q):
        s += "Q: " + q

    assert prog.cache(backend=scripted) == ""
    assert "cache_prefix" not in scripted.kinds()


def test_trace_records_nodes_with_abstract_arguments(scripted):
    @rl.function
    def prog(s, question):
        s += rl.user("Q: " + question)
        s += rl.assistant(rl.gen("answer"))

    tracer = prog.trace(backend=scripted)
    kinds = [type(n).__name__ for n in tracer.flatten_nodes()]
    assert "SglArgument" in kinds and "SglGen" in kinds
    assert "Gen('answer')" in tracer.last_node.print_graph_dfs()
    with pytest.raises(TypeError, match="traced argument"):
        f"{SglArgument('question')}"


def test_bind_fixes_arguments(scripted):
    @rl.function(num_api_spec_tokens=None)
    def prog(s, a, b):
        s += a + b

    assert prog.bind(b="!").run("hi", backend=scripted).text() == "hi!"


def test_stream_mode_text_iter_yields_deltas_and_meta_folds_empty_events(scripted):
    @rl.function
    def prog(s):
        s += "X" + rl.gen("g")

    state = prog.run(backend=scripted, stream=True)
    chunks = list(state.text_iter("g"))
    assert "".join(chunks) == "<gen 1>"

    async def collect():
        return [item async for item in state.text_async_iter("g", return_meta_data=True)]

    pairs = asyncio.run(collect())
    total = sum(len(meta["output_token_logprobs"]) for _, meta in pairs)
    assert total == pairs[-1][1]["completion_tokens"] + 0 == len("<gen 1>")
    assert pairs[0] == ("<", {"completion_tokens": 1, "output_token_logprobs": [[-0.5, 0, None]]})
    assert "".join(state.text_iter()) == "X<gen 1>"


def test_folded_stream_events_keep_every_jump_forward_position():
    from radixlm.lang.stream_meta import merge_stream_events

    events = [("", {"completion_tokens": 2, "jump_forward_positions": [0, 1]}),
              ("ab", {"completion_tokens": 3, "jump_forward_positions": []})]
    assert merge_stream_events(events) == ("ab", {"completion_tokens": 3, "jump_forward_positions": [0, 1]})


def test_non_stream_text_iter_yields_the_final_value_once(scripted):
    @rl.function
    def prog(s):
        s += rl.gen("g")

    state = prog.run(backend=scripted)
    assert list(state.text_iter("g")) == ["<gen 1>"]
    assert list(state.text_iter()) == ["<gen 1>"]


def test_separate_reasoning_moves_the_think_block_to_its_own_variable(ScriptedBackend):
    backend = ScriptedBackend(reply=lambda p, sp: "<think>hmm</think>42")

    @rl.function
    def prog(s):
        s += "Q:" + rl.separate_reasoning(rl.gen("a"), model_type="deepseek-r1")

    state = prog.run(backend=backend)
    assert (state["a"], state["a_reasoning_content"], state.text()) == ("42", "hmm", "Q:42")


def test_a_program_without_a_backend_says_how_to_set_one():
    rl.set_default_backend(None)

    @rl.function
    def prog(s):
        s += "x"

    with pytest.raises(ValueError, match="set_default_backend"):
        prog.run()


def test_image_is_a_clear_not_implemented_error():
    with pytest.raises(NotImplementedError, match="text-only"):
        rl.image("cat.png")


def test_an_exception_in_a_streamed_program_body_becomes_the_state_error(scripted):
    @rl.function
    def prog(s):
        s += "a"
        raise ValueError("bad program")

    state = prog.run(backend=scripted, stream=True)
    assert list(state.text_iter()) == ["a"]
    assert isinstance(state.error(), ValueError)


def test_reading_a_streamed_state_waits_for_the_program_body(scripted):
    """The body of a streamed run goes on in its own thread: text() and s[name] read from
    outside must not depend on how far it got (they gave "a" and a KeyError when read early)."""
    release = threading.Event()

    @rl.function
    def prog(s):
        s += "a"
        release.wait()
        s += rl.gen("x")

    state = prog.run(backend=scripted, stream=True)
    read: dict = {}
    reader = threading.Thread(target=lambda: read.update(text=state.text(), x=state["x"]))
    reader.start()
    reader.join(0.2)  # still waiting: the body has not appended the gen yet
    release.set()
    reader.join(30)
    assert read == {"text": "a<gen 1>", "x": "<gen 1>"}


def test_greedy_selection_ignores_noise_on_shared_prompt_tokens():
    noisy = [[[None, 1, "a"], [-0.20001, 2, "b"], [-3.0, 5, "x"]],
             [[None, 1, "a"], [-0.20000, 2, "b"], [-1.0, 6, "y"]]]
    decision = rl.greedy_token_selection(
        choices=["x", "y"], normalized_prompt_logprobs=[-1.6, -0.6],
        input_token_logprobs=noisy, output_token_logprobs=[[], []])
    assert decision.decision == "y"
