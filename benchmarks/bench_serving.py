"""Servers compared as users meet them: OpenAI-compatible HTTP, streamed, on 127.0.0.1.

Drives any OpenAI-compatible server through `/v1/completions` and `/v1/chat/completions`
(`stream: true`, usage in the last chunk) and measures, per workload x concurrency x server:
time to first token (TTFT), inter-token latency (ITL: the gaps between streamed chunks that
carry text, as vLLM's own benchmark counts them), end-to-end latency (p50 / p99 over the
requests of every repeat), output tokens/s and requests/s (median over repeats), the prompt
share the server reports as cached, and for the JSON workload how many outputs parse and
match the schema.

In one run it starts `radixlm serve` (ServerProcess) and, with `--vllm-python`, `vllm serve`
from that venv (`python -m vllm.entrypoints.openai.api_server`, in a folder outside this
checkout: from inside, vLLM imports our top-level `kernels/` as its optional `kernels`
package) on the same model folder, the same KV capacity in tokens, the same context length
and the same number of compute threads (default cores - 1, what each picks by itself: vLLM
reserves a core for its engine process, radixlm one for HTTP and detokenizing); both stay up, and each cell's runs alternate the
servers (A B, then B A: ABBA with the default two repeats) because this machine's speed
drifts over minutes. `--server NAME=URL` adds a server that is already running.

Workloads (bounded request counts; `concurrency` simulated users, each sending its
requests one after another):
  * fewshot -- `/v1/completions`: every request one ~400-token few-shot prefix plus its own
               ~20-token question (benchmarks/workloads.py);
  * random  -- `/v1/completions`: unrelated prompts of 16-256 tokens;
  * chat    -- `/v1/chat/completions`: conversations of --chat-turns turns, each turn the
               whole history (system, users, the server's own replies) plus a new question;
               max(concurrency, requests / turns) conversations;
  * json    -- `/v1/chat/completions` with `response_format` json_schema: extract a film
               record from a short note (no ignore_eos: each output ends where its JSON does).
Comparable work: greedy (temperature 0), the same max_tokens, `ignore_eos` (an extra field
both radixlm and vLLM accept) on every workload but json, so every server produces the same
number of output tokens; the table shows each server's counts. Every run's prompts start
with a tag of their own ("Session 0007."), so no run reuses a cache entry another run made.

    python benchmarks/bench_serving.py --vllm-python /opt/peers/vllm/bin/python
    python benchmarks/bench_serving.py --quick                        # radixlm only, ~1 min
    python benchmarks/bench_serving.py --quick --vllm-python /opt/peers/vllm/bin/python
    python benchmarks/bench_serving.py --server mine=http://127.0.0.1:30000 --workloads fewshot
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import cpu_count, load_average, print_machine  # noqa: E402
from workloads import few_shot_requests, random_prompts  # noqa: E402

from radixlm.runtime.server.server_process import ServerProcess, free_port  # noqa: E402

COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
REQUEST_TIMEOUT_S = 900.0
VLLM_START_TIMEOUT_S = 900.0  # its first start compiles the model (~2-3 min on 2 cores)

FILM_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "director": {"type": "string", "maxLength": 40},
        "year": {"type": "integer"},
        "rating": {"type": "number"},
        "genre": {"enum": ["drama", "comedy", "thriller", "sci-fi"]},
        "available": {"type": "boolean"},
    },
    "required": ["title", "director", "year", "rating", "genre", "available"],
    "additionalProperties": False,
}
TITLES = ["The Long Voyage", "Midnight Garden", "Paper Moons", "Iron Coast", "Quiet Harbor",
          "Glass Towers", "Northern Lights", "Salt and Stone"]
DIRECTORS = ["Ana Ruiz", "Kenji Mori", "Lena Berg", "Omar Haddad", "Chloe Martin", "Ivo Petrov"]
CHAT_OPENERS = ["Can you suggest a name for a cat?", "What should I cook tonight?",
                "How do I keep a basil plant alive?", "What is a good first telescope?",
                "How can I learn to juggle?", "Which board game suits four players?",
                "How do I start running?", "What makes a good short story?"]
CHAT_FOLLOW_UPS = ["Why that one?", "Give me one more idea.", "Which of the two do you prefer?",
                   "Summarize that in one sentence."]


# ---- what one simulated user sends -----------------------------------------------------
@dataclass
class Session:
    """One request (`prompt`), or a conversation whose turns (`turns`: messages added before
    each request) go out one after another, each with the server's previous replies."""

    route: str
    params: dict  # sent with every request: max_tokens, temperature, ignore_eos, response_format
    prompt: str | None = None
    turns: list[list[dict]] = field(default_factory=list)


@dataclass(frozen=True)
class Load:
    """The sampling side of a cell: the same for every server."""

    max_tokens: int
    json_max_tokens: int
    chat_turns: int

    def greedy(self) -> dict:
        return {"max_tokens": self.max_tokens, "temperature": 0.0, "top_p": 1.0, "ignore_eos": True}

    def json_schema(self) -> dict:
        return {"max_tokens": self.json_max_tokens, "temperature": 0.0, "top_p": 1.0,
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "film", "schema": FILM_SCHEMA}}}


_TOKENIZER = None


def bundled_tokenizer():
    """The bundled model's tokenizer (sizes the prompts; the servers tokenize for themselves)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from radixlm.runtime.model.loader import resolve_model
        from radixlm.runtime.model.tokenizer import load_tokenizer

        _TOKENIZER = load_tokenizer(resolve_model(None))
    return _TOKENIZER


def fewshot_sessions(n: int, concurrency: int, tag: str, load: Load) -> list[Session]:
    prompts = few_shot_requests(bundled_tokenizer(), n=n, prefix_tokens=400)
    return [Session(COMPLETIONS, load.greedy(), prompt=f"{tag}{p}") for p in prompts]


def random_sessions(n: int, concurrency: int, tag: str, load: Load) -> list[Session]:
    prompts = random_prompts(bundled_tokenizer(), n, min_tokens=16, max_tokens=256)
    return [Session(COMPLETIONS, load.greedy(), prompt=f"{tag}{p}") for p in prompts]


def chat_sessions(n: int, concurrency: int, tag: str, load: Load) -> list[Session]:
    turns = max(1, load.chat_turns)
    conversations = max(concurrency, -(-n // turns))
    sessions = []
    for i in range(conversations):
        first = [{"role": "system", "content": f"{tag}You are a helpful assistant. Answer briefly."},
                 {"role": "user", "content": CHAT_OPENERS[i % len(CHAT_OPENERS)] + f" (user {i})"}]
        later = [[{"role": "user", "content": CHAT_FOLLOW_UPS[k % len(CHAT_FOLLOW_UPS)]}]
                 for k in range(turns - 1)]
        sessions.append(Session(CHAT, load.greedy(), turns=[first, *later]))
    return sessions


def film_note(rng: random.Random) -> str:
    genre = rng.choice(FILM_SCHEMA["properties"]["genre"]["enum"])
    available = "you can stream it now" if rng.random() < 0.5 else "it is not available to stream"
    return (f"{rng.choice(TITLES)} is a {genre} film directed by {rng.choice(DIRECTORS)} in "
            f"{rng.randint(1950, 2024)}. Critics rate it {rng.uniform(1, 10):.1f} out of 10, and "
            f"{available}.")


def json_sessions(n: int, concurrency: int, tag: str, load: Load) -> list[Session]:
    rng = random.Random(2)
    return [Session(CHAT, load.json_schema(), turns=[[
        {"role": "system", "content": f"{tag}Extract the film described by the user as a JSON object "
                                      "with title, director, year, rating, genre and available."},
        {"role": "user", "content": film_note(rng)}]]) for _ in range(n)]


WORKLOADS: dict[str, Callable[[int, int, str, Load], list[Session]]] = {
    "fewshot": fewshot_sessions, "random": random_sessions, "chat": chat_sessions, "json": json_sessions,
}


def valid_json(text: str) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), FILM_SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


# ---- one streamed request --------------------------------------------------------------
@dataclass
class RequestResult:
    ok: bool
    ttft: float = 0.0
    e2e: float = 0.0
    itls: list[float] = field(default_factory=list)  # gaps between chunks that carry text
    output_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    text: str = ""
    error: str = ""


async def send(client: httpx.AsyncClient, model: str, route: str, params: dict,
               prompt: str | None = None, messages: list[dict] | None = None) -> RequestResult:
    body = {"model": model, **params, "stream": True, "stream_options": {"include_usage": True}}
    body.update({"prompt": prompt} if route == COMPLETIONS else {"messages": messages})
    start = time.perf_counter()
    first = last = None
    itls, pieces, usage = [], [], {}
    try:
        async with client.stream("POST", route, json=body) as resp:
            if resp.status_code != 200:
                detail = (await resp.aread()).decode(errors="replace")[:300]
                return RequestResult(False, error=f"HTTP {resp.status_code}: {detail}")
            async for line in resp.aiter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                chunk = json.loads(line[5:])
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    piece = choice.get("text") if route == COMPLETIONS else (choice.get("delta") or {}).get("content")
                    if not piece:
                        continue
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    else:
                        itls.append(now - last)
                    last = now
                    pieces.append(piece)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return RequestResult(False, error=f"{type(exc).__name__}: {exc}")
    end = time.perf_counter()
    details = usage.get("prompt_tokens_details") or {}
    return RequestResult(True, ttft=(first or end) - start, e2e=end - start, itls=itls,
                         output_tokens=usage.get("completion_tokens", 0),
                         prompt_tokens=usage.get("prompt_tokens", 0),
                         cached_tokens=details.get("cached_tokens") or 0, text="".join(pieces))


async def run_session(client: httpx.AsyncClient, model: str, session: Session) -> list[RequestResult]:
    if session.prompt is not None:
        return [await send(client, model, session.route, session.params, prompt=session.prompt)]
    results, messages = [], []
    for turn in session.turns:
        messages = [*messages, *turn]
        result = await send(client, model, session.route, session.params, messages=messages)
        results.append(result)
        if not result.ok:
            break
        messages.append({"role": "assistant", "content": result.text})
    return results


# ---- one run: a workload at one concurrency against one server ---------------------------
def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


@dataclass
class RunResult:
    results: list[RequestResult] = field(default_factory=list)
    wall: float = 0.0
    load_1min: float = 0.0

    def summary(self, workload: str = "") -> dict:
        ok = [r for r in self.results if r.ok]
        prompt = sum(r.prompt_tokens for r in ok)
        tokens = sum(r.output_tokens for r in ok)
        itls = [x for r in ok for x in r.itls]
        out = {
            "requests": len(self.results), "failed": len(self.results) - len(ok),
            "prompt_tokens": prompt, "output_tokens": tokens, "wall_s": self.wall,
            "req_per_s": len(ok) / self.wall if self.wall else float("nan"),
            "out_tok_per_s": tokens / self.wall if self.wall else float("nan"),
            "cached_share": sum(r.cached_tokens for r in ok) / prompt if prompt else float("nan"),
            "ttft_p50_ms": 1e3 * pct([r.ttft for r in ok], 50), "ttft_p99_ms": 1e3 * pct([r.ttft for r in ok], 99),
            "itl_p50_ms": 1e3 * pct(itls, 50), "itl_p99_ms": 1e3 * pct(itls, 99),
            "e2e_p50_s": pct([r.e2e for r in ok], 50), "e2e_p99_s": pct([r.e2e for r in ok], 99),
            "load_1min": self.load_1min,
        }
        if workload == "json":
            out["valid_json"] = sum(valid_json(r.text) for r in ok)
        errors = sorted({r.error for r in self.results if not r.ok})
        if errors:
            out["errors"] = errors[:3]
        return out


async def run_sessions(url: str, model: str, sessions: list[Session], concurrency: int,
                       headers: dict | None = None) -> RunResult:
    """`concurrency` users, each taking the next session when its last one is done."""
    run = RunResult(load_1min=os.getloadavg()[0])
    queue = list(reversed(sessions))
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, headers=headers or {}, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as client:
        async def user() -> None:
            while queue:
                run.results.extend(await run_session(client, model, queue.pop()))

        start = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        run.wall = time.perf_counter() - start
    return run


def served_model(url: str, headers: dict | None = None) -> str:
    resp = httpx.get(url + "/v1/models", headers=headers or {}, timeout=60)
    resp.raise_for_status()
    return resp.json()["data"][0]["id"]


def run_workload(url: str, workload: str, requests: int, concurrency: int, max_tokens: int,
                 tag: str = "", headers: dict | None = None, chat_turns: int = 2,
                 json_max_tokens: int = 128) -> RunResult:
    """One run of a workload against a server (other benchmarks use this as their load).
    The same `tag` sends the same prompts again (a warm cache); a new tag, new prompts."""
    load = Load(max_tokens, json_max_tokens, chat_turns)
    sessions = WORKLOADS[workload](requests, concurrency, tag, load)
    return asyncio.run(run_sessions(url, served_model(url, headers), sessions, concurrency, headers))


# ---- the servers -----------------------------------------------------------------------
def kv_bytes_per_token(model_folder: Path, dtype_bytes: int = 4) -> int:
    cfg = json.loads((model_folder / "config.json").read_text())
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    return cfg["num_hidden_layers"] * 2 * kv_heads * head_dim * dtype_bytes


def cpu_list(n: int) -> str:
    """The first n CPUs this process may use, as a list vLLM's thread binding reads ("0,1")."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        cpus = list(range(os.cpu_count() or 1))
    return ",".join(str(c) for c in cpus[:n])


class Server:
    """A server the benchmark talks to: `name`, `url`, `model`; `stop()` ends what we started."""

    name: str
    url: str
    model: str
    config: str  # how it was started, for the record
    version: str = ""

    def pids(self) -> list[int]:
        return []

    def stop(self) -> None:
        pass


class ExternalServer(Server):
    def __init__(self, name: str, url: str, headers: dict) -> None:
        self.name, self.url, self.config = name, url.rstrip("/"), f"already running at {url}"
        self.model = served_model(self.url, headers)


class RadixlmServer(Server):
    def __init__(self, flags: list[str], log_path: Path) -> None:
        self.name = "radixlm"
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.flags = flags
        self.proc = ServerProcess.launch(flags, timeout=900, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = self.proc.url
        self.model = served_model(self.url)
        self.config = "radixlm serve " + " ".join(flags)
        info = httpx.get(self.url + "/server_info", timeout=60).json()
        self.version = f"radixlm {info.get('version', '?')} ({git_revision()})"

    def pids(self) -> list[int]:
        return process_group(self.proc.pid)

    def stop(self) -> None:
        self.proc.stop()
        kill_leftovers(self.proc.pid)
        self.log.close()


class VllmServer(Server):
    def __init__(self, python: str, flags: list[str], threads: int, log_path: Path) -> None:
        self.name = "vllm"
        self.cwd = tempfile.mkdtemp(prefix="bench_serving_vllm_")  # outside the checkout
        port = free_port()
        self.cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1",
                    "--port", str(port), *flags]
        env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND=cpu_list(threads))
        # the legacy VLLM_CPU_KVCACHE_SPACE (GiB) would override --kv-cache-memory-bytes
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
        env.pop("PYTHONPATH", None)
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"
        self.config = (f"VLLM_CPU_OMP_THREADS_BIND={env['VLLM_CPU_OMP_THREADS_BIND']} vllm serve "
                       + " ".join(flags))
        try:
            self._wait_ready(log_path)
            self.model = served_model(self.url)
            self.version = "vLLM " + httpx.get(self.url + "/version", timeout=60).json().get("version", "?")
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, log_path: Path) -> None:
        deadline = time.monotonic() + VLLM_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"vllm serve exited with code {self.proc.returncode}; log tail:\n{tail}")
            try:
                if httpx.get(self.url + "/health", timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(2)
        raise RuntimeError(f"vllm serve was not ready within {VLLM_START_TIMEOUT_S:.0f} s (log: {log_path})")

    def pids(self) -> list[int]:
        return process_group(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM to its process group (API server, engine core, worker), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        kill_leftovers(self.proc.pid)
        self.log.close()


def kill_leftovers(pgid: int) -> None:
    """SIGKILL what is left of the process group we started (a child that outlived its parent)."""
    for pid in process_group(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def process_group(pgid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown revision"
    return rev + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


# ---- the run ---------------------------------------------------------------------------
def per_level(value: str, levels: list[int], flag: str) -> list[int]:
    counts = [int(x) for x in value.split(",")]
    if len(counts) == 1:
        return counts * len(levels)
    if len(counts) != len(levels):
        raise SystemExit(f"{flag} takes one number or one per concurrency level ({len(levels)}), got {value!r}")
    return counts


def start_servers(args, log_dir: Path) -> list[Server]:
    """The running servers of --server, then radixlm (unless --server names one or
    --no-radixlm) and vLLM (with --vllm-python), started with the same capacity and threads."""
    from radixlm.runtime.model.loader import resolve_model

    servers: list[Server] = []
    try:
        for spec in args.server:
            name, _, url = spec.partition("=")
            if not name or not url:
                raise SystemExit(f"--server takes NAME=URL (got {spec!r})")
            servers.append(ExternalServer(name, url, auth_headers(args)))
        folder = resolve_model(None)
        if not args.no_radixlm and "radixlm" not in [s.name for s in servers]:
            flags = ["--log-level", "warning", "--max-total-tokens", str(args.kv_tokens),
                     "--context-length", str(args.max_model_len), "--scheduler-threads", str(args.threads),
                     *shlex.split(args.radixlm_args)]
            print(f"starting radixlm serve {' '.join(flags)}", flush=True)
            servers.append(RadixlmServer(flags, log_dir / "radixlm.log"))
        if args.vllm_python:
            flags = ["--model", str(folder), "--served-model-name", folder.name, "--dtype", "float32",
                     "--max-model-len", str(args.max_model_len), "--enable-prefix-caching",
                     "--kv-cache-memory-bytes", str(args.kv_tokens * kv_bytes_per_token(folder)),
                     "--enable-prompt-tokens-details", "--seed", "0", "--disable-uvicorn-access-log",
                     *shlex.split(args.vllm_args)]
            print(f"starting vllm serve {' '.join(flags)} (its first start compiles: minutes)", flush=True)
            servers.append(VllmServer(args.vllm_python, flags, args.threads, log_dir / "vllm.log"))
    except BaseException:
        for s in servers:
            s.stop()
        raise
    if not servers:
        raise SystemExit("no server to benchmark: drop --no-radixlm, or add --server / --vllm-python")
    return servers


def auth_headers(args) -> dict:
    return {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm-python", help="python of a venv with vLLM (vllm-cpu): start `vllm serve` too")
    ap.add_argument("--server", action="append", default=[], metavar="NAME=URL",
                    help="also (or only) benchmark this running OpenAI-compatible server")
    ap.add_argument("--no-radixlm", action="store_true", help="do not start radixlm serve")
    ap.add_argument("--api-key", help="sent as a bearer token to running servers")
    ap.add_argument("--workloads", default="fewshot,random,chat,json")
    ap.add_argument("--concurrency", default="1,16,64", help="concurrency levels (simulated users)")
    ap.add_argument("--num-requests", default="8,32,64",
                    help="requests per run at each concurrency level (one number: the same for all)")
    ap.add_argument("--max-tokens", type=int, default=32, help="output tokens per request (ignore_eos)")
    ap.add_argument("--json-max-tokens", type=int, default=128, help="max_tokens of the json workload")
    ap.add_argument("--chat-turns", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs of each cell per server, alternating the order (2: A B B A)")
    ap.add_argument("--threads", type=int, default=max(1, cpu_count() - 1),
                    help="compute threads of each server (radixlm --scheduler-threads, vLLM's OMP threads "
                         "bound to the first N CPUs); default: cores - 1, what both choose by themselves")
    ap.add_argument("--kv-tokens", type=int, default=32768, help="KV cache capacity in tokens of each server")
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--radixlm-args", default="",
                    help="extra `radixlm serve` flags, one string: --radixlm-args=\"--disable-torch-compile\"")
    ap.add_argument("--vllm-args", default="", help="extra `vllm serve` flags, one string (as --radixlm-args)")
    ap.add_argument("--baseline", default="vllm", help="the server the ratio column divides by")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: concurrency 1,4, 4 requests, 8 tokens, one repeat")
    ap.add_argument("--output", help="write the markdown report here")
    ap.add_argument("--json-out", help="write every run's summary here")
    args = ap.parse_args(argv)
    if args.quick:
        args.concurrency, args.num_requests, args.max_tokens, args.repeats = "1,4", "4", 8, 1
        args.json_max_tokens = min(args.json_max_tokens, 96)
    levels = [int(x) for x in args.concurrency.split(",")]
    counts = per_level(args.num_requests, levels, "--num-requests")
    workloads = args.workloads.split(",")
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; choose from {sorted(WORKLOADS)}")
    load = Load(args.max_tokens, args.json_max_tokens, args.chat_turns)

    machine = print_machine()
    started = datetime.datetime.now()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the `finally`: stop our servers
    log_dir = Path(tempfile.mkdtemp(prefix="bench_serving_logs_"))
    print(f"server logs: {log_dir}", flush=True)
    bundled_tokenizer()
    t0 = time.perf_counter()
    servers = start_servers(args, log_dir)
    start_s = time.perf_counter() - t0
    runs: list[dict] = []
    loads = [os.getloadavg()[0]]
    counter = 0
    try:
        headers = auth_headers(args)
        for s in servers:
            print(f"{s.name}: {s.url} ({s.version or s.config}); warming up", flush=True)
            for w in workloads:
                sessions = WORKLOADS[w](2, 2, "Warm-up. ", Load(4, args.json_max_tokens, 2))
                asyncio.run(run_sessions(s.url, s.model, sessions, 2, headers))
        for w in workloads:
            for c, n in zip(levels, counts, strict=True):
                for rep in range(args.repeats):
                    k = rep % len(servers)
                    for s in servers[k:] + servers[:k]:  # rotate: A B, B A, ...
                        counter += 1
                        sessions = WORKLOADS[w](n, c, f"Session {counter:04d}. ", load)
                        time.sleep(1.0)  # let the last run's stragglers (detokenizer, logs) settle
                        run = asyncio.run(run_sessions(s.url, s.model, sessions, c, headers))
                        row = {"workload": w, "concurrency": c, "server": s.name, "repeat": rep,
                               **run.summary(w)}
                        runs.append(row)
                        loads.append(row["load_1min"])
                        print(progress_line(row), flush=True)
    finally:
        for s in servers:
            s.stop()
    elapsed = {"start_s": start_s, "total_s": time.perf_counter() - t0}
    report = render_report(args, argv, machine, started, servers, runs, loads, workloads, levels, elapsed)
    print("\n" + report, flush=True)
    if args.output:
        Path(args.output).write_text(report + "\n")
    result = {"machine": machine, "date": started.isoformat(timespec="minutes"), "runs": runs, **elapsed,
              "servers": {s.name: {"config": s.config, "version": s.version} for s in servers}}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    return result


def progress_line(r: dict) -> str:
    extra = f", valid JSON {r['valid_json']}/{r['requests']}" if "valid_json" in r else ""
    failed = f", {r['failed']} FAILED {r.get('errors')}" if r["failed"] else ""
    return (f"  {r['workload']:7s} c={r['concurrency']:<3d} {r['server']:8s} rep {r['repeat']}: "
            f"{r['wall_s']:6.1f} s, {r['out_tok_per_s']:6.1f} out tok/s, {r['output_tokens']} tokens, "
            f"TTFT p50 {r['ttft_p50_ms']:.0f} ms, ITL p50 {r['itl_p50_ms']:.0f} ms, "
            f"cached {r['cached_share']:.0%}, load {r['load_1min']:.1f}{extra}{failed}")


# ---- the report ------------------------------------------------------------------------
def cell_stats(rows: list[dict]) -> dict:
    """One server's runs of one cell: medians of the per-run figures."""
    med = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    out = {k: med(k) for k in ("req_per_s", "out_tok_per_s", "wall_s", "ttft_p50_ms", "ttft_p99_ms",
                               "itl_p50_ms", "itl_p99_ms", "e2e_p50_s", "e2e_p99_s", "cached_share")}
    out["walls"] = [r["wall_s"] for r in rows]
    out["requests"] = rows[0]["requests"]
    out["failed"] = sum(r["failed"] for r in rows)
    out["prompt_tokens"] = sorted({r["prompt_tokens"] for r in rows})
    out["output_tokens"] = sorted({r["output_tokens"] for r in rows})
    if "valid_json" in rows[0]:
        out["valid_json"] = [r["valid_json"] for r in rows]
    return out


def cells(runs: list[dict]) -> dict[tuple[str, int, str], dict]:
    grouped: dict[tuple[str, int, str], list[dict]] = {}
    for r in runs:
        grouped.setdefault((r["workload"], r["concurrency"], r["server"]), []).append(r)
    return {key: cell_stats(rows) for key, rows in grouped.items()}


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


TABLE_HEADER = (
    "| workload | conc. | server | requests | prompt tok | out tok | wall s (each run) | out tok/s "
    "| TTFT p50 / p99 ms | ITL p50 / p99 ms | E2E p50 / p99 s | cached | valid JSON (each run) | {ours} / {base} |\n"
    "|---|---:|---|---:|---:|---:|---|---:|---|---|---|---:|---:|---:|"
)


def render_table(stats: dict, workloads: list[str], levels: list[int], names: list[str],
                 ours: str, base: str | None) -> list[str]:
    lines = [TABLE_HEADER.format(ours=ours, base=base or "baseline")]
    for w in workloads:
        for c in levels:
            for name in names:
                s = stats.get((w, c, name))
                if s is None:
                    continue
                b = stats.get((w, c, base)) if base else None
                ratio = f"**{s['req_per_s'] / b['req_per_s']:.2f}×**" if name == ours and b else ""
                if ratio and s["output_tokens"] != b["output_tokens"]:
                    ratio += " (unequal work: out tok differ)"  # json ends where its JSON does
                walls = ", ".join(f"{x:.1f}" for x in s["walls"])
                valid = "/".join(str(v) for v in s["valid_json"]) + f" of {s['requests']}" if "valid_json" in s else "—"
                failed = f" ({s['failed']} failed)" if s["failed"] else ""
                lines.append(
                    f"| {w} | {c} | {name} | {s['requests']}{failed} | {_span(s['prompt_tokens'])} "
                    f"| {_span(s['output_tokens'])} | {s['wall_s']:.1f} ({walls}) | {s['out_tok_per_s']:.1f} "
                    f"| {s['ttft_p50_ms']:.0f} / {s['ttft_p99_ms']:.0f} | {s['itl_p50_ms']:.0f} / {s['itl_p99_ms']:.0f} "
                    f"| {s['e2e_p50_s']:.2f} / {s['e2e_p99_s']:.2f} | {s['cached_share']:.0%} | {valid} | {ratio} |")
    return lines


def targets(stats: dict, levels: list[int], ours: str, base: str) -> list[str]:
    """Issue 21's serving targets, where this run measured their cells."""
    def ratio(w: str, c: int) -> float | None:
        a, b = stats.get((w, c, ours)), stats.get((w, c, base))
        return a["req_per_s"] / b["req_per_s"] if a and b else None

    lines = []
    checks = [("fewshot", c, 1.25) for c in levels if c >= 16]
    checks += [(w, c, 1.0) for w in ("random", "chat") for c in levels]
    for w, c, goal in checks:
        r = ratio(w, c)
        if r is not None:
            lines.append(f"- {w} at concurrency {c}: {r:.2f}× (target ≥ {goal:.2f}×): {'met' if r >= goal else 'MISSED'}")
    if 1 in levels:
        for w in ("fewshot", "random", "chat", "json"):
            a, b = stats.get((w, 1, ours)), stats.get((w, 1, base))
            if a and b:
                verdict = "met" if a["ttft_p50_ms"] <= b["ttft_p50_ms"] else "MISSED"
                lines.append(f"- TTFT p50 at concurrency 1, {w}: {a['ttft_p50_ms']:.0f} vs {b['ttft_p50_ms']:.0f} ms "
                             f"(target: no worse): {verdict}")
    return lines


def render_report(args, argv, machine: str, started: datetime.datetime, servers: list[Server],
                  runs: list[dict], loads: list[float], workloads: list[str], levels: list[int],
                  elapsed: dict) -> str:
    names = [s.name for s in servers]
    ours = "radixlm" if "radixlm" in names else names[0]
    stats = cells(runs)
    command = "python benchmarks/bench_serving.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = [
        f"- date: {started:%Y-%m-%d %H:%M}; command: `{command.strip()}`",
        f"- machine: {machine}; load average (1 min) during the runs {min(loads):.1f}-{max(loads):.1f} "
        f"(at the end {load_average()}); {elapsed['total_s'] / 60:.1f} min in all, "
        f"{elapsed['start_s']:.0f} s of it starting the servers",
        f"- work per run: {args.num_requests} requests at concurrency {args.concurrency}; {args.max_tokens} "
        f"greedy output tokens each with ignore_eos (json: up to {args.json_max_tokens}, ends with its JSON); "
        f"chat {args.chat_turns} turns per conversation; {args.repeats} runs per server per cell, "
        "servers alternating",
    ]
    lines += [f"- {s.name}: {s.version + ', ' if s.version else ''}`{s.config}`" for s in servers]
    base = args.baseline if args.baseline in names and args.baseline != ours else None
    lines += ["", *render_table(stats, workloads, levels, names, ours, base)]
    if base:
        found = targets(stats, levels, ours, base)
        if found:
            lines += ["", f"Targets ({ours} / {base}: ratio of median requests/s, equal work):", *found]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
