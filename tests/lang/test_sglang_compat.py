"""SGLang programs run unchanged with `import radixlm.lang as sgl` (docs/wire-protocol.md Part A).

Each program is written the way SGLang's docs and examples write it; only the import differs.
The default backend is the raw in-process Engine (set_default_backend wraps it).
"""

from __future__ import annotations

import pytest

import radixlm.lang as sgl
from radixlm.lang.ir import REGEX_BOOL, REGEX_FLOAT, REGEX_INT, REGEX_STR

pytestmark = pytest.mark.filterwarnings("ignore:Error in stream_executor")


@pytest.fixture(autouse=True)
def default_backend(engine):
    sgl.set_default_backend(engine)
    yield
    sgl.set_default_backend(None)


@sgl.function
def multi_turn_question(s, question_1, question_2):
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(question_1)
    s += sgl.assistant(sgl.gen("answer_1", max_tokens=8))
    s += sgl.user(question_2)
    s += sgl.assistant(sgl.gen("answer_2", max_tokens=8))


def test_quick_start_multi_turn_question():
    state = multi_turn_question.run(
        question_1="What is the capital of the United States?",
        question_2="List two local attractions.",
        temperature=0,
    )
    assert [m["role"] for m in state.messages()] == ["system", "user", "assistant", "user", "assistant"]
    assert state["answer_1"] and state["answer_2"]


def test_quick_start_streaming_with_text_iter():
    state = multi_turn_question.run(question_1="Hi!", question_2="How are you?", stream=True,
                                    temperature=0)
    streamed = "".join(state.text_iter())
    assert streamed == state.text()
    assert list(state.text_iter("answer_2"))  # a finished variable can still be iterated


@sgl.function
def tool_use(s, question):
    s += "To answer this question: " + question + ". "
    s += "I need to use a " + sgl.gen("tool", choices=["calculator", "search engine"]) + ". "
    if s["tool"] == "calculator":
        s += "The math expression is" + sgl.gen("expression", max_tokens=6)
    elif s["tool"] == "search engine":
        s += "The key word to search is" + sgl.gen("word", max_tokens=6)


def test_tool_use_with_gen_choices_and_control_flow_on_the_result():
    state = tool_use.run(question="What is 3 + 5?", temperature=0)
    assert state["tool"] in ("calculator", "search engine")
    state.sync()  # `in` does not block
    assert ("expression" in state) or ("word" in state)
    assert state.get_meta_info("tool")["normalized_prompt_logprobs"]


@sgl.function
def tip_suggestion(s):
    s += "Here are two tips for staying healthy: 1. Balanced Diet. 2. Regular Exercise.\n\n"
    forks = s.fork(2)
    for i, f in enumerate(forks):
        f += f"Now, expand tip {i + 1} into a paragraph:\n"
        f += sgl.gen("detailed_tip", max_tokens=6, stop="\n\n")
    s += "Tip 1:" + forks[0]["detailed_tip"] + "\n"
    s += "Tip 2:" + forks[1]["detailed_tip"] + "\n"
    s += "In summary" + sgl.gen("summary", max_tokens=6)


def test_tip_suggestion_fork_reads_branch_variables_without_join():
    state = tip_suggestion.run(temperature=0)
    assert state.error() is None
    assert state.text().count("Tip ") == 2 and state["summary"]


@sgl.function
def text_qa(s, question):
    s += "Q: " + question + "\n"
    s += "A:" + sgl.gen("answer", stop="\n", max_tokens=6)


def test_run_batch_with_progress_bar_and_positional_items():
    states = text_qa.run_batch(
        [{"question": "What is the capital of the United Kingdom?"},
         {"question": "What is the capital of France?"}, ("What is 2 + 2?",)],
        progress_bar=True, temperature=0,
    )
    assert len(states) == 3 and all(st.error() is None for st in states)
    assert "Paris" in states[1]["answer"]


@sgl.function
def explicit_roles(s):
    s += sgl.system_begin() + "Answer with one word." + sgl.system_end()
    s += sgl.user_begin() + "Color of the sky?" + sgl.user_end()
    s += sgl.assistant_begin() + sgl.gen("color", max_tokens=3) + sgl.assistant_end()
    with s.user():
        s += "And grass?"
    with s.assistant():
        s += sgl.gen("grass", max_tokens=3)


def test_begin_end_markers_and_role_context_managers():
    state = explicit_roles.run(temperature=0)
    assert [m["role"] for m in state.messages()] == ["system", "user", "assistant", "user", "assistant"]
    assert state.messages()[1]["content"] == "Color of the sky?"


@sgl.function
def scoped_and_logprobs(s):
    with s.var_scope("intro"):
        s += "The number after one is"
    s += sgl.gen("next", max_tokens=2, min_tokens=1, return_logprob=True, top_logprobs_num=2,
                 logprob_start_len=0, return_text_in_logprobs=True, frequency_penalty=0.1,
                 presence_penalty=0.1, top_p=0.9, top_k=20, min_p=0.0, ignore_eos=False,
                 stop_token_ids=[], stop_regex=[], n=1)


def test_var_scope_and_gen_logprob_parameters():
    state = scoped_and_logprobs.run(temperature=0)
    assert state["intro"] == "The number after one is"
    meta = state.get_meta_info("next")
    assert meta["input_token_logprobs"][0][0] is None  # the first prompt token has no predictor
    assert len(meta["output_token_logprobs"]) == meta["completion_tokens"]
    assert all(len(top) == 2 for top in meta["output_top_logprobs"])
    assert isinstance(meta["output_token_logprobs"][0][2], str)


@sgl.function
def choose(s, method):
    s += "Q: Is fire hot or cold?\nA: It is"
    s += sgl.select("answer", choices=[" hot", " cold"], choices_method=method)


@pytest.mark.parametrize("method", [sgl.token_length_normalized, sgl.greedy_token_selection,
                                    sgl.unconditional_likelihood_normalized])
def test_every_choice_method_decides(method):
    state = choose.run(method=method)
    assert state["answer"] in (" hot", " cold") and state.error() is None


def test_bind_trace_cache_flush_and_server_info(engine):
    @sgl.function
    def persona(s, name, question):
        s += "You are " + name + ", a very knowledgeable assistant who answers briefly. " * 2
        s += "Question: " + question + "\nAnswer:" + sgl.gen("a", max_tokens=4)

    bound = persona.bind(name="Ada")
    tracer = bound.trace()
    assert any(type(n).__name__ == "SglGen" for n in tracer.flatten_nodes())
    assert bound.cache().startswith("You are Ada")
    assert sgl.flush_cache() is True
    assert sgl.get_server_info()["max_total_tokens"] == engine.args.max_total_tokens
    assert bound.run(question="2+2?", temperature=0).error() is None


def test_copy_context_manager_forks_and_joins():
    @sgl.function
    def prog(s):
        s += "Base"
        with s.copy() as c:
            c += sgl.gen("side", max_tokens=2)
        s += "!"

    state = prog.run(temperature=0)
    assert state.text() == "Base!" and state["side"] and isinstance(state["side"], list)


def test_global_config_regex_constants_and_version():
    assert sgl.global_config.enable_precache_with_tracing is True
    assert sgl.global_config.skip_special_tokens_in_output is True
    assert (REGEX_INT, REGEX_FLOAT, REGEX_BOOL, REGEX_STR) == (
        r"[-+]?[0-9]+[ \n]*", r"[-+]?[0-9]*\.?[0-9]+[ \n]*", r"(True|False)", r"\"[\w\d\s]*\"")
    assert sgl.__version__


def test_separate_reasoning_leaves_plain_answers_alone():
    @sgl.function
    def prog(s):
        s += "2+2=" + sgl.separate_reasoning(sgl.gen("a", max_tokens=2), model_type="deepseek-r1")

    state = prog.run(temperature=0)
    assert state["a_reasoning_content"] == "" and state.text() == "2+2=" + state["a"]


def test_num_api_spec_tokens_fails_in_the_worker_like_sglang():
    @sgl.function(num_api_spec_tokens=16)
    def prog(s):
        s += "x" + sgl.gen("y")

    assert isinstance(prog.run().error(), NotImplementedError)
