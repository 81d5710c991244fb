"""The `radixlm` console script.

    radixlm serve [--model-path ...] [--port ...] [--dp N] ...    # one server, or N replicas behind a router
    radixlm router --worker-urls URL [URL ...] [--policy ...]     # SGLang's router in front of servers elsewhere

The options are generated from the fields of ServerArgs and RouterConfig, so every field is
a flag. `--dp` and `router` need the optional sglang-router (`pip install "radixlm[router]"`).
"""

from __future__ import annotations

import argparse
import sys

from radixlm.runtime.server.router import RouterConfig, require_router
from radixlm.runtime.server_args import ServerArgs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radixlm", description="radixlm: a prefix-sharing LLM server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the HTTP server (SGLang-native + OpenAI-compatible API); "
                           "with --dp N, N replicas behind SGLang's cache-aware router")
    ServerArgs.add_cli_args(serve)
    router = sub.add_parser("router", help="start SGLang's router (sglang-router) in front of radixlm "
                            "servers on other machines (docs/scale-out.md)")
    RouterConfig.add_cli_args(router)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        config = ServerArgs.from_cli(ns) if ns.command == "serve" else RouterConfig.from_cli(ns)
        if ns.command == "router" or config.dp > 1:
            require_router()
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    if ns.command == "router":
        from radixlm.runtime.server.router_process import run_router

        return run_router(config)
    if config.dp > 1:
        from radixlm.runtime.server.dp_launch import launch_dp

        return launch_dp(config)
    from radixlm.runtime.server.launch import launch_server

    return launch_server(config)


if __name__ == "__main__":
    sys.exit(main())
