"""Fork/join: parallel drafts that share a prefix, then a final answer that reads them.

The shared prefix is prefilled once (the fork commits it), so the branches only pay for
their own tokens; `join()` gathers each branch's variable into a list on the parent.
"""

from __future__ import annotations

from common import backend_from_args

import radixlm.lang as rl

ASPECTS = ["speed", "memory use", "simplicity"]


@rl.function
def compare(s, topic):
    s += rl.system("You are a concise technical writer. Answer in one sentence.")
    drafts = s.fork(len(ASPECTS))
    drafts += lambda i: rl.user(f"How does {topic} affect {ASPECTS[i]}?")
    drafts += rl.assistant(rl.gen("draft", max_tokens=32))
    drafts.join()
    points = "\n".join(f"- {d.strip()}" for d in s["draft"])  # join() gathered a list
    s += rl.user(f"Summarize these points about {topic}:\n{points}")
    s += rl.assistant(rl.gen("summary", max_tokens=40))


def main() -> None:
    backend, _ = backend_from_args(__doc__)
    state = compare.run(topic="a radix tree KV cache", temperature=0)
    for aspect, draft in zip(ASPECTS, state["draft"]):
        print(f"[{aspect}] {draft.strip()}")
    print("summary:", state["summary"].strip())
    backend.shutdown()


if __name__ == "__main__":
    main()
