"""Tool calling: OpenAI `tools` / `tool_choice` as prompts, constraints and parsed calls.

  spec.py     the tools and the choice of a request, validated (OpenAI and legacy names)
  formats.py  how a model writes a call (hermes / qwen25, llama3, mistral), the constraint
              that makes it write one that validates, and the parser that reads it back
  stream.py   OpenAI's streaming deltas (`tool_calls[i]` with id and name, then arguments)
Pure Python over JSON: the HTTP routes and the DSL both use it.
"""
