"""Multi-turn chat with streaming: tokens are printed as they arrive.

Each turn re-sends the whole conversation; the radix cache makes that cheap (see the
cached_tokens printed after each reply). Pass --interactive to type your own turns.
"""

from __future__ import annotations

from common import backend_from_args

import radixlm.lang as rl


@rl.function
def chat_turn(s, history, question):
    s += rl.system("You are a friendly assistant. Answer in one or two sentences.")
    for user_text, assistant_text in history:
        s += rl.user(user_text)
        s += rl.assistant(assistant_text)
    s += rl.user(question)
    s += rl.assistant(rl.gen("reply", max_tokens=48, return_logprob=True))


def ask(history: list[tuple[str, str]], question: str) -> str:
    state = chat_turn.run(history=history, question=question, stream=True, temperature=0)
    print("assistant: ", end="", flush=True)
    for chunk in state.text_iter("reply"):
        print(chunk, end="", flush=True)
    meta = state.get_meta_info("reply")
    print(f"\n  [{meta['completion_tokens']} tokens, {meta['cached_tokens']} prompt tokens cached]")
    return state["reply"].strip()


def main() -> None:
    backend, args = backend_from_args(__doc__, lambda p: p.add_argument("--interactive", action="store_true"))
    history: list[tuple[str, str]] = []
    questions = iter(["Hi! What is a radix tree?", "Why is it useful for serving LLMs?"])
    while True:
        question = input("you: ") if args.interactive else next(questions, None)
        if not question:
            break
        if not args.interactive:
            print("you:", question)
        history.append((question, ask(history, question)))
    backend.shutdown()


if __name__ == "__main__":
    main()
