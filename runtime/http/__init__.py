"""The HTTP surface: SGLang-native and OpenAI-compatible routes, request parsing and
validation, the OpenAPI description, error bodies, metrics."""
