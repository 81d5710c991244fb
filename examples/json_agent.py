"""An agent step that must emit machine-readable output: select a tool, then fill its
arguments as JSON constrained by a schema, and a priority constrained by a regex.

`select` works on every native backend. The `json_schema` / `regex` constraints need
constrained decoding in the runtime; output that does not parse is reported as such.
"""

from __future__ import annotations

import json

from common import backend_from_args

import radixlm.lang as rl

TOOLS = ["search", "calculator", "weather"]
ARGS_SCHEMA = json.dumps({
    "type": "object",
    "properties": {"query": {"type": "string", "maxLength": 30}},
    "required": ["query"],
})


@rl.function
def agent_step(s, request):
    s += rl.system("You route user requests to tools. Tools: " + ", ".join(TOOLS) + ".")
    s += rl.user(request)
    with s.assistant():
        s += "Tool: " + rl.select("tool", choices=TOOLS) + "\n"
        s += "Arguments: " + rl.gen("arguments", json_schema=ARGS_SCHEMA, max_tokens=64)
        s += "\nPriority (1-5): " + rl.gen("priority", regex="[1-5]", max_tokens=2)


def main() -> None:
    backend, _ = backend_from_args(__doc__)
    for request in ["What is 17 times 23?", "Will it rain in Paris tomorrow?"]:
        state = agent_step.run(request=request, temperature=0)
        if state.error() is not None:
            print(f"{request!r}: backend error: {state.error()}")
            continue
        try:
            arguments = json.loads(state["arguments"])
        except json.JSONDecodeError:
            arguments = {"unparsed": state["arguments"].strip()}
        print(json.dumps({"request": request, "tool": state["tool"], "arguments": arguments,
                          "priority": state["priority"].strip()}))
    backend.shutdown()


if __name__ == "__main__":
    main()
