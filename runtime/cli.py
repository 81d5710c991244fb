"""The `radixlm` console script: `radixlm serve [--model-path ...] [--port ...] ...`.

The serve options are generated from ServerArgs' fields, so every field is a flag.
"""

from __future__ import annotations

import argparse
import sys

from radixlm.runtime.server_args import ServerArgs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radixlm", description="radixlm: a prefix-sharing LLM server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the HTTP server (SGLang-native + OpenAI-compatible API)")
    ServerArgs.add_cli_args(serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command == "serve":
        try:
            args = ServerArgs.from_cli(ns)
        except ValueError as exc:
            parser.error(str(exc))
        from radixlm.runtime.server.launch import launch_server

        return launch_server(args)
    parser.error(f"unknown command {ns.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
