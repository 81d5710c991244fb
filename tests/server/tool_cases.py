"""Tool schemas for the tool-calling tests: nested objects, enums, arrays, optional and
nullable fields, a function without arguments, one `strict` function."""

from __future__ import annotations


def tool(name: str, description: str, properties: dict, required: list[str], strict: bool = False) -> dict:
    fn = {"name": name, "description": description,
          "parameters": {"type": "object", "properties": properties, "required": required}}
    if strict:
        fn["strict"] = True
    return {"type": "function", "function": fn}


STRING = {"type": "string", "maxLength": 24}
TOOLS = [
    tool("get_weather", "Current weather in a city",
         {"city": STRING, "unit": {"enum": ["celsius", "fahrenheit"]}}, ["city"]),
    tool("search_flights", "Flights between two airports on a date",
         {"origin": {"type": "string", "pattern": "[A-Z]{3}"}, "destination": {"type": "string", "pattern": "[A-Z]{3}"},
          "date": {"type": "string", "format": "date"}, "passengers": {"type": "integer"}},
         ["origin", "destination", "date"]),
    tool("create_event", "Put a meeting in the calendar",
         {"title": STRING,
          "attendees": {"type": "array", "maxItems": 3, "items": {
              "type": "object", "properties": {"name": STRING, "email": {"type": "string", "format": "email"}},
              "required": ["name"]}},
          "start": {"type": "object", "properties": {"day": {"type": "string", "format": "date"},
                                                     "hour": {"type": "integer"}}, "required": ["day", "hour"]}},
         ["title", "start"]),
    tool("add_todo", "Add an item to the to-do list",
         {"task": STRING, "priority": {"enum": [1, 2, 3]},
          "tags": {"type": "array", "items": {"enum": ["home", "work", "errand"]}, "maxItems": 3},
          "done": {"type": "boolean"}},
         ["task", "priority"]),
    tool("lookup_user", "A user's record by id", {"user_id": {"type": "integer"}}, ["user_id"]),
    tool("send_email", "Send an email",
         {"to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1, "maxItems": 2},
          "subject": STRING, "cc": {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 1}},
         ["to", "subject"], strict=True),
    tool("convert_currency", "Convert an amount of money",
         {"amount": {"type": "number"}, "source": {"enum": ["USD", "EUR", "JPY"]},
          "target": {"enum": ["USD", "EUR", "JPY"]}}, ["amount", "source", "target"]),
    tool("update_profile", "Change the user's profile",
         {"profile": {"type": "object", "properties": {
             "name": STRING, "age": {"type": "integer"},
             "address": {"type": "object", "properties": {"street": STRING, "city": STRING, "zip": STRING},
                         "required": ["city"]}}, "required": ["name"]}},
         ["profile"]),
    tool("run_query", "Run a read-only SQL query",
         {"sql": {"type": "string", "maxLength": 40}, "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
         ["sql", "limit"]),
    tool("list_files", "The files in the current folder", {}, []),
]
PROMPTS = {
    "get_weather": "What is the weather in Paris?",
    "search_flights": "Find me a flight from JFK to LHR on 2025-03-14.",
    "create_event": "Schedule a meeting called Review with Ann tomorrow at 10.",
    "add_todo": "Remind me to buy milk, it is urgent.",
    "lookup_user": "Show me the record of user 42.",
    "send_email": "Email bob@example.com that the report is late.",
    "convert_currency": "How much is 100 USD in EUR?",
    "update_profile": "Change my name to Sam; I live in Oslo.",
    "run_query": "How many rows does the table orders have?",
    "list_files": "What files are here?",
}
