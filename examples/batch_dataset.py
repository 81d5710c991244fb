"""Batch over a dataset with a progress bar: few-shot QA with `run_batch`.

The program's constant few-shot prefix is traced and sent to the backend once before the
batch, so every item's prompt starts with cached tokens (printed at the end).
"""

from __future__ import annotations

from common import backend_from_args

import radixlm.lang as rl

EXAMPLES = [("What is 2 plus 3?", "5"), ("What is 10 minus 4?", "6"), ("What is 3 times 3?", "9")]
FEW_SHOT = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in EXAMPLES)


@rl.function
def few_shot_qa(s, question):
    s += FEW_SHOT
    s += "Question: " + question + "\nAnswer:"
    s += rl.gen("answer", max_tokens=4, stop="\n")


def main() -> None:
    backend, args = backend_from_args(__doc__, lambda p: p.add_argument("--n", type=int, default=24))
    dataset = [{"question": f"What is {i} plus {i + 1}?"} for i in range(args.n)]
    states = few_shot_qa.run_batch(dataset, temperature=0, progress_bar=True, num_threads=16)
    correct = sum(st["answer"].strip() == str(2 * i + 1) for i, st in enumerate(states))
    cached = sum(st.get_meta_info("answer")["cached_tokens"] for st in states)
    prompt = sum(st.get_meta_info("answer")["prompt_tokens"] for st in states)
    print(f"accuracy {correct}/{len(states)}; cache hit rate {cached / prompt:.0%} of prompt tokens")
    backend.shutdown()


if __name__ == "__main__":
    main()
