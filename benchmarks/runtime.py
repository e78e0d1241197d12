"""The embedded runtime, old against new, in one run: llama-cpp-python's server against xllamacpp.

    python -m benchmarks.runtime --old-python /path/to/venv-with-llama-cpp-python/bin/python

Each server runs in its own process (so its peak RSS is its own), on the same GGUF files, prompts and
settings (temperature 0, n_ctx 8192 per slot, threads = cores, OMP_WAIT_POLICY=PASSIVE as both ship). Workloads:

* ``short``: qwen0.5b, 16 short extraction prompts, answers of a few tokens;
* ``long``: qwen1.5b, 8 prompts asking for ~190-token texts;
* ``invoice``: qwen1.5b, 4 invoice-sized prompts (~1,300 tokens) with a short JSON answer;
* ``prefix-cache``: qwen0.5b, two long prompts A and B interleaved (A, B, A', B'): cached prompt tokens
  of the second round show whether each slot kept its prefix.

Configurations: ``old`` (one request at a time: llama-cpp-python serves one), ``new-1`` (1 slot), and
``new-N`` (N slots, N requests at once). Writes ``benchmarks/results/runtime/results.json`` and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from dspy_fgo.local.models import model_path

OUT = Path(__file__).parent / "results" / "runtime"
_OPENER = None


def _post(base: str, body: dict, timeout: float = 900) -> dict:
    import urllib.request

    global _OPENER
    _OPENER = _OPENER or urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"{base}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer local"})
    with _OPENER.open(req, timeout=timeout) as r:
        return json.loads(r.read())


def _words(i: int) -> str:
    vendors = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises"]
    return f"Invoice INV-{1000 + i} from {vendors[i % len(vendors)]}, dated 2026-0{1 + i % 9}-1{i % 10}."


def workloads() -> dict[str, tuple[str, list[list[dict]], int]]:
    """name -> (model alias, message lists, max_tokens)."""
    short = [[{"role": "user", "content": f"{_words(i)} Total due: ${100 + 7 * i}.25. Reply with only the vendor "
                                           "name and the invoice number, separated by a comma."}] for i in range(16)]
    topics = ["a lighthouse", "a bakery at dawn", "a chess club", "a river ferry", "a night train",
              "a mountain hut", "a city library", "a harbour market"]
    long = [[{"role": "user", "content": f"Write a short story of about 150 words about {t}."}] for t in topics]
    lines = "\n".join(f"{j + 1}. Item {chr(65 + j % 26)}-{j:03d}, qty {1 + j % 5}, unit price ${3 + j % 17}.{j % 100:02d}"
                      for j in range(70))
    invoice = [[{"role": "system", "content": "You extract invoice fields as JSON."},
                {"role": "user", "content": f"{_words(i)}\nBill to: Customer {i}\n{lines}\nTotal: ${900 + i}.00\n"
                                            'Return {"vendor": ..., "invoice_number": ..., "total": ...}.'}]
               for i in range(4)]
    return {"short": ("qwen0.5b", short, 48), "long": ("qwen1.5b", long, 220), "invoice": ("qwen1.5b", invoice, 64)}


def prefix_prompts() -> list[list[dict]]:
    body = "\n".join(f"Rule {j}: route tickets mentioning product P{j} to queue Q{j % 7}." for j in range(60))
    a = [{"role": "system", "content": "Queue rules:\n" + body}]
    b = [{"role": "system", "content": "Refund policy:\n" + body.replace("route", "refund")}]
    ask = lambda msgs, n: msgs + [{"role": "user", "content": f"Ticket {n}: product P{n} is broken. Queue?"}]  # noqa: E731
    return [ask(a, 1), ask(b, 2), ask(a, 3), ask(b, 4)]


class Server:
    """A server process: ``old`` (llama-cpp-python) or ``new`` (xllamacpp via ``dspy_fgo.local serve``)."""

    def __init__(self, kind: str, alias: str, slots: int, old_python: str | None):
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"runtime-{kind}-", suffix=".log", delete=False)
        threads = str(len(os.sched_getaffinity(0)))
        if kind == "old":
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cmd = [old_python, "-m", "llama_cpp.server", "--model", str(model_path(alias)), "--n_ctx", "8192",
                   "--n_threads", threads, "--n_threads_batch", threads, "--logits_all", "False",
                   "--host", "127.0.0.1", "--port", str(port), "--verbose", "False"]
            self.base = f"http://127.0.0.1:{port}/v1"
        else:
            cmd = [sys.executable, "-m", "dspy_fgo.local", "serve", "--models", alias, "--n-parallel", str(slots)]
            self.base = None
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # both runtimes' shipped default (dspy_fgo.local sets it)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if kind == "new" else self.log, stderr=self.log,
                                     text=True, env=env)
        if kind == "new":
            first = self.proc.stdout.readline()
            if not first.startswith(f"{alias}: "):
                raise RuntimeError(f"serve did not start: {first!r}; log {self.log.name}")
            self.base = first.split()[1]
        self._wait()

    def _wait(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _post(self.base, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}, timeout=60)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited {self.proc.returncode}; log {self.log.name}") from None
                time.sleep(1)
        raise RuntimeError(f"server not ready; log {self.log.name}")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_requests(base: str, messages: list[list[dict]], max_tokens: int, concurrency: int) -> dict:
    def one(msgs):
        return _post(base, {"messages": msgs, "max_tokens": max_tokens, "temperature": 0.0, "seed": 0})

    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as ex:
        replies = list(ex.map(one, messages))
    wall = time.monotonic() - t0
    prompt = sum(r["usage"]["prompt_tokens"] for r in replies)
    completion = sum(r["usage"]["completion_tokens"] for r in replies)
    cached = [((r["usage"].get("prompt_tokens_details") or {}).get("cached_tokens")) for r in replies]
    return {"wall_s": round(wall, 2), "prompt_tokens": prompt, "completion_tokens": completion,
            "prompt_tok_per_s": round(prompt / wall, 1), "completion_tok_per_s": round(completion / wall, 1),
            "cached_tokens": cached, "answers": [r["choices"][0]["message"]["content"] for r in replies]}


def measure(kind: str, alias: str, slots: int, job: str, old_python: str | None) -> dict:
    server = Server(kind, alias, slots, old_python)
    try:
        if job == "prefix-cache":
            rec = run_requests(server.base, prefix_prompts(), 16, 1)  # in order: A, B, A', B'
        else:
            _, messages, max_tokens = workloads()[job]
            rec = run_requests(server.base, messages, max_tokens, slots if kind == "new" else 1)
        rec["peak_rss_mb"] = round(server.peak_rss_mb())
    finally:
        server.stop()
    return rec


def table(results: dict) -> str:
    rows = ["| workload | runtime | slots | wall s | prompt tok/s | completion tok/s | peak RSS MB | speed-up vs old |",
            "|---|---|---|---|---|---|---|---|"]
    for key, rec in results["runs"].items():
        job, kind, slots = key.split("|")
        old = results["runs"].get(f"{job}|old|1")
        speed = f"{old['wall_s'] / rec['wall_s']:.2f}x" if old else "-"
        rows.append(f"| {job} | {kind} | {slots} | {rec['wall_s']} | {rec['prompt_tok_per_s']} | "
                    f"{rec['completion_tok_per_s']} | {rec['peak_rss_mb']} | {speed} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old-python", help="a Python with llama-cpp-python[server] 0.3.36 (omit: new runtime only)")
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--jobs", default="short,long,invoice,prefix-cache")
    p.add_argument("--out", default=str(OUT), help="results folder (%(default)s); an existing results.json resumes")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    results["command"] = "python -m benchmarks.runtime " + " ".join(argv if argv is not None else sys.argv[1:])
    results["versions"] = {"xllamacpp": metadata.version("xllamacpp"), "python": platform.python_version(),
                           "cores": len(os.sched_getaffinity(0))}
    for job in args.jobs.split(","):
        alias = "qwen0.5b" if job == "prefix-cache" else workloads()[job][0]
        configs = ([("old", 1)] if args.old_python else []) + [("new", 1), ("new", args.slots)]
        if job == "prefix-cache":
            configs = [(k, s) for k, s in configs if k == "old"] + [("new", args.slots)]
        for kind, slots in configs:
            key = f"{job}|{kind}|{slots}"
            if key in results["runs"]:
                continue  # resume
            print(f"{key} ...", flush=True)
            results["runs"][key] = measure(kind, alias, slots, job, args.old_python)
            path.write_text(json.dumps(results, indent=1))
            print(f"  {results['runs'][key]['wall_s']} s", flush=True)
    (out / "table.md").write_text(table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
