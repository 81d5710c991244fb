"""Quick start: a two-turn chat program, the SGLang way (`import radixlm.lang as sgl` works too)."""

from __future__ import annotations

from common import backend_from_args

import radixlm.lang as rl


@rl.function
def multi_turn_question(s, question_1, question_2):
    s += rl.system("You are a helpful assistant.")
    s += rl.user(question_1)
    s += rl.assistant(rl.gen("answer_1", max_tokens=48))
    s += rl.user(question_2)
    s += rl.assistant(rl.gen("answer_2", max_tokens=48))


def main() -> None:
    backend, _ = backend_from_args(__doc__)
    state = multi_turn_question.run(
        question_1="What is the capital of the United Kingdom?",
        question_2="List two local attractions there.",
        temperature=0,
    )
    for message in state.messages():
        print(f"{message['role']:>9}: {message['content']}")
    print("cached tokens on turn 2:", state.get_meta_info("answer_2")["cached_tokens"])
    backend.shutdown()


if __name__ == "__main__":
    main()
