"""A simulated LM for cost-and-time benchmarks: fixed latency, a concurrency limit, a context window,
real token counting, and canned but well-formed answers for any DSPy signature.

    server = SimulatedServer(latency=0.2, concurrency=16, window=8192)
    task_lm = SimulatedLM("simulated/task", server=server, responder=my_task_answers)
    optimizer_lm = SimulatedLM("simulated/optimizer", server=server)

Every LM made on one :class:`SimulatedServer` shares its concurrency limit (one deployment serving
all roles) and its call log. A call waits for a free slot, sleeps ``latency`` seconds (no CPU), and
answers. Prompt tokens are counted with litellm's counter (``dspy_fgo.budget.count_tokens``); a
prompt longer than ``window`` tokens raises ``litellm.ContextWindowExceededError`` at once (no sleep)
and is counted as an overflow.

Answers follow the adapter's prompt: ChatAdapter's ``[[ ## field ## ]]`` sections, JSONAdapter's JSON
object, or a fenced block for a raw prompt with no signature. The output fields' names *and types* are
read from the system message ("1. `score` (float): ..."), so a ``float``, ``int``, ``bool``,
``list[str]``, ``dict[str, Any]``, ``Literal[...]``, ``Optional[...]``, an Enum or a pydantic model
(from the JSON schema the adapter prints) all get a value that parses. A ``responder`` can supply some
or all fields itself (e.g. the task answers); the rest are canned text from a fixed pool of
instruction-like rules, chosen deterministically from a hash of the prompt.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from dspy.clients.base_lm import BaseLM

from dspy_fgo.budget import count_tokens

warnings.filterwarnings("ignore", message="Implementing custom LMs through BaseLM", category=DeprecationWarning)

FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with |\n*\Z)", re.S)
OUTPUTS = re.compile(r"Your output fields are:\n(.*?)(?=\nAll interactions will be structured|\n\n|\Z)", re.S)
OUTPUT_ITEM = re.compile(r"^\d+\. `(\w+)` \(", re.M)
SCHEMA_NOTE = re.compile(r"\{(\w+)\}\s+# note: the value you produce (.*)$", re.M)
JSON_MODE = "Outputs will be a JSON object"
JSON_STRUCTURE = re.compile(re.escape(JSON_MODE) + r"[^\n]*\n\n(\{\n.*?\n\})", re.S)

RULES = (
    "Read the whole document before deciding; the decisive line is often near the end.",
    "Prefer the error line over warnings and informational lines when they disagree.",
    "A retry that later succeeds is not the root cause; look for the first failure.",
    "Timeouts mention a duration or a deadline; do not confuse them with refused connections.",
    "Out-of-memory failures name a heap, an allocation or an OOM killer; report them as such.",
    "Permission problems mention denied access, forbidden status codes or missing roles.",
    "Configuration errors name a missing key, an invalid value or a file that failed to parse.",
    "Dependency failures name another service that is unavailable or returned an error.",
    "Disk problems mention a full volume, a quota or an I/O error on a device.",
    "Ignore request ids, host names and timestamps: they never decide the label.",
    "When two failures appear, choose the one that happened first in time.",
    "Answer with the label only, in lowercase, with no explanation.",
    "Do not invent labels: use exactly one of the allowed values.",
    "If the log shows a stack trace, the exception type usually names the cause.",
    "Status 503 from an upstream service points to a dependency failure, not a timeout.",
    "Status 403 points to a permission problem even when the message says 'error'.",
    "Heap or memory limits reached during a batch job mean out of memory.",
    "A parse error in a YAML or JSON file at start-up is a configuration error.",
    "Quota exceeded on storage is a disk problem, not a permission problem.",
    "Keep the rules general; do not memorize example-specific ids.",
)
WORDS = {  # canned length (in rules) of a string output field, by name; others get DEFAULT_RULES
    "critique": 3, "lessons": 5, "new_text": 7, "merged_text": 8, "proposed_instruction": 6,
    "new_instruction": 6, "improved_instruction": 6, "shortened_instruction": 4, "observations": 3,
    "summary": 2, "program_description": 3, "module_description": 2, "reasoning": 2,
}
INSTRUCTION_FIELDS = {"new_text", "merged_text", "proposed_instruction", "new_instruction", "improved_instruction",
                      "shortened_instruction", "instruction"}
DEFAULT_RULES = 2


def _hash(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest(), "big")


# ----- the request and its output types ------------------------------------------------------------------


@dataclass
class Request:
    """What the simulated LM read: the system message, the last user message's input fields, the expected
    output fields with their type annotations (as the adapter printed them), and the adapter's mode."""

    model: str
    system: str
    user: str
    fields: dict[str, str]
    outputs: list[tuple[str, str]]  # (name, annotation text)
    notes: dict[str, str] = field(default_factory=dict)  # name -> "must be one of: ..." / JSON schema note
    mode: str = "chat"  # "chat", "json" or "raw"

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.outputs]


def _scan_annotation(text: str, start: int) -> str:
    """The annotation that starts at ``text[start]`` and ends at the matching ')' (brackets and quotes
    balanced), e.g. ``Literal['a', 'b']`` or ``dict[str, list[int]]``."""
    depth, quote, i = 0, None, start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == ")" and depth == 0:
            return text[start:i]
        i += 1
    return text[start:]


def parse_request(model: str, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> Request:
    system = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    user = str(messages[-1].get("content") or "") if messages else ""
    block = OUTPUTS.search(system)
    outputs = []
    if block:
        body = block.group(1)
        for match in OUTPUT_ITEM.finditer(body):
            outputs.append((match.group(1), _scan_annotation(body, match.end()).strip()))
    notes = {m.group(1): m.group(2).strip() for m in SCHEMA_NOTE.finditer(system)}
    structure = JSON_STRUCTURE.search(system)
    if structure:  # JSONAdapter prints the notes inside a JSON object, escaped
        try:
            for text in json.loads(structure.group(1)).values():
                notes.update({m.group(1): m.group(2).strip() for m in SCHEMA_NOTE.finditer(str(text))})
        except ValueError:
            pass
    if not outputs:
        mode = "raw"
    elif JSON_MODE in system or "response_format" in kwargs:
        mode = "json"
    else:
        mode = "chat"
    return Request(model, system, user, dict(FIELD.findall(user)), outputs, notes, mode)


# ----- values for a type -----------------------------------------------------------------------------------


def _split_top(text: str) -> list[str]:
    """Split ``text`` at commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, None, []
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _head_args(annotation: str) -> tuple[str, str | None]:
    annotation = annotation.strip()
    if "[" in annotation and annotation.endswith("]"):
        head, _, rest = annotation.partition("[")
        return head.strip().split(".")[-1], rest[:-1]
    return annotation.split(".")[-1], None


def value_for_annotation(annotation: str, name: str, seed: int, note: str | None = None) -> Any:
    """A Python value of the type DSPy printed as ``annotation`` (``note`` is the adapter's "# note: the
    value you produce ..." line for the field, used for enums and pydantic models)."""
    if note and "JSON schema:" in note:  # the adapter's schema is authoritative for structured types
        try:
            schema = json.loads(note.split("JSON schema:", 1)[1].strip())
            return value_for_schema(schema, name, seed, schema.get("$defs", {}))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    head, args = _head_args(annotation)
    lowered = head.lower()
    if lowered == "str":
        return canned_text(name, seed)
    if lowered == "int":
        return 1 + seed % 5
    if lowered == "float":
        return round(0.1 + (seed % 9) / 10, 2)
    if lowered == "bool":
        return seed % 2 == 0
    if lowered in ("nonetype", "none"):
        return None
    if lowered == "any":
        return canned_text(name, seed, rules=1)
    if lowered == "literal" and args is not None:
        options = ast.literal_eval(f"({args},)")
        return options[seed % len(options)]
    if lowered in ("optional", "union") and args is not None:
        choices = [a for a in _split_top(args) if a.lower() not in ("nonetype", "none")]
        return value_for_annotation(choices[0] if choices else "str", name, seed, note)
    if lowered in ("list", "set", "frozenset", "sequence", "iterable") or (lowered == "tuple" and args is None):
        inner = _split_top(args)[0] if args else "str"
        return [value_for_annotation(inner, name, seed + k) for k in range(2)]
    if lowered == "tuple":
        inner = _split_top(args)
        if len(inner) == 2 and inner[1] == "...":
            return [value_for_annotation(inner[0], name, seed + k) for k in range(2)]
        return [value_for_annotation(a, name, seed + k) for k, a in enumerate(inner)]
    if lowered in ("dict", "mapping", "mutablemapping"):
        key_type, value_type = (_split_top(args) + ["str", "str"])[:2] if args else ("str", "str")
        key = value_for_annotation(key_type, "key", seed)
        return {str(key) if not isinstance(key, str) else _slug(key): value_for_annotation(value_type, name, seed)}
    if note and note.startswith("must be one of:"):  # an Enum
        options = [o.strip() for o in note[len("must be one of:"):].split(";") if o.strip()]
        if options:
            return options[seed % len(options)]
    return canned_text(name, seed)


def value_for_schema(schema: dict[str, Any], name: str, seed: int, defs: dict[str, Any]) -> Any:
    """A minimal value that validates against a JSON schema (the subset pydantic emits)."""
    if "$ref" in schema:
        return value_for_schema(defs.get(schema["$ref"].split("/")[-1], {}), name, seed, defs)
    if "enum" in schema:
        return schema["enum"][seed % len(schema["enum"])]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return value_for_schema(options[0], name, seed, defs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        out = {k: value_for_schema(v, k, seed + i, defs) for i, (k, v) in enumerate(props.items())}
        extra = schema.get("additionalProperties")
        if not props and extra:
            out = {"key": value_for_schema(extra, name, seed, defs) if isinstance(extra, dict) else "value"}
        return out
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        count = max(int(schema.get("minItems", 0)), 1 if schema.get("maxItems", 2) < 2 else 2)
        return [value_for_schema(items, name, seed + k, defs) for k in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 1 + seed % 5))
    if kind == "number":
        return float(schema.get("minimum", round(0.1 + (seed % 9) / 10, 2)))
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "null":
        return None
    return canned_text(name, seed)


def _slug(text: str) -> str:
    return re.sub(r"\W+", "_", text.lower()).strip("_")[:24] or "key"


def canned_text(name: str, seed: int, rules: int | None = None) -> str:
    """Instruction-like prose of a length typical for the field (an instruction ~100-200 tokens, a critique
    ~50), chosen deterministically by ``seed``."""
    count = rules if rules is not None else WORDS.get(name, DEFAULT_RULES)
    picked = [RULES[(seed // (k + 1) + 7 * k) % len(RULES)] for k in range(count)]
    picked = list(dict.fromkeys(picked))
    if name in INSTRUCTION_FIELDS:
        return "Classify the log excerpt by the root cause of its failure. " + " ".join(picked)
    if name == "critique":
        return "Incorrect: the prediction names the wrong cause. " + " ".join(picked)
    return " ".join(picked)


def format_value(value: Any) -> str:
    """A ChatAdapter field value: strings as they are (str, Literal and enum values), the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# ----- the server and the LM -------------------------------------------------------------------------------


@dataclass
class CallRecord:
    model: str
    requested: float  # when the call asked for a slot (perf_counter)
    start: float  # when it got one
    end: float
    prompt_tokens: int
    completion_tokens: int
    outputs: tuple[str, ...]
    overflow: bool = False


class SimulatedServer:
    """The shared deployment: one concurrency limit, one latency, one window, one call log."""

    def __init__(self, latency: float = 0.0, concurrency: int | None = None, window: int | None = 8192,
                 token_model: str | None = None, keep_log: bool = True):
        self.latency, self.concurrency, self.window = latency, concurrency, window
        self.token_model, self.keep_log = token_model, keep_log
        self._slots = threading.Semaphore(concurrency) if concurrency else None
        self._lock = threading.Lock()
        self.log: list[CallRecord] = []
        self.overflows = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.calls: dict[str, int] = {}
        self.prompt_tokens: dict[str, int] = {}
        self.completion_tokens: dict[str, int] = {}
        self.started = time.perf_counter()

    def __deepcopy__(self, memo):  # LMs are copied (lm.copy(), deepcopies of programs): keep one server
        return self

    def __copy__(self):
        return self

    def _enter(self) -> None:
        if self._slots is not None:
            self._slots.acquire()
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _exit(self) -> None:
        with self._lock:
            self.in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    def record(self, rec: CallRecord) -> None:
        with self._lock:
            if rec.overflow:
                self.overflows += 1
            else:
                self.calls[rec.model] = self.calls.get(rec.model, 0) + 1
                self.prompt_tokens[rec.model] = self.prompt_tokens.get(rec.model, 0) + rec.prompt_tokens
                self.completion_tokens[rec.model] = self.completion_tokens.get(rec.model, 0) + rec.completion_tokens
            if self.keep_log:
                self.log.append(rec)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self.calls), "prompt_tokens": dict(self.prompt_tokens),
                "completion_tokens": dict(self.completion_tokens), "overflows": self.overflows,
                "peak_in_flight": self.peak_in_flight, "total_calls": sum(self.calls.values()),
            }


Responder = Callable[[Request], "dict[str, Any] | str | None"]


class SimulatedLM(BaseLM):
    """A DSPy LM answering from :class:`SimulatedServer` (see the module docstring).

    ``responder(request)`` may return a dict of some output values (the rest are canned), a full reply
    string, or None (all canned).
    """

    def __init__(self, model: str = "simulated/lm", *, server: SimulatedServer | None = None,
                 latency: float = 0.0, concurrency: int | None = None, window: int | None = 8192,
                 responder: Responder | None = None, max_tokens: int = 1000, temperature: float = 0.0):
        super().__init__(model=model, model_type="chat", temperature=temperature, max_tokens=max_tokens, cache=False)
        self.server = server or SimulatedServer(latency=latency, concurrency=concurrency, window=window)
        self.responder = responder
        self.context_window = self.server.window  # read by dspy_fgo.budget.context_window

    @property
    def overflows(self) -> int:
        return self.server.overflows

    def forward(self, prompt=None, messages=None, **kwargs):
        messages = messages or [{"role": "user", "content": prompt or ""}]
        requested = time.perf_counter()
        prompt_text = "\n".join(str(m.get("content") or "") for m in messages)
        prompt_tokens = count_tokens(prompt_text, self.server.token_model)
        request = parse_request(self.model, messages, kwargs)
        window = self.server.window
        if window is not None and prompt_tokens > window:
            self.server.record(CallRecord(self.model, requested, requested, requested, prompt_tokens, 0,
                                          tuple(request.output_names), overflow=True))
            import litellm

            raise litellm.ContextWindowExceededError(
                message=f"This model's maximum context length is {window} tokens. However, your messages "
                        f"resulted in {prompt_tokens} tokens.",
                model=self.model, llm_provider="openai",
            )
        text = self.answer(request)
        completion_tokens = count_tokens(text, self.server.token_model)
        self.server._enter()
        try:
            start = time.perf_counter()
            if self.server.latency > 0:
                time.sleep(self.server.latency)
            end = time.perf_counter()
        finally:
            self.server._exit()
        self.server.record(CallRecord(self.model, requested, start, end, prompt_tokens, completion_tokens,
                                      tuple(request.output_names)))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        choice = SimpleNamespace(message=SimpleNamespace(content=text, tool_calls=None), finish_reason="stop",
                                 logprobs=None)
        return SimpleNamespace(choices=[choice], usage=usage, model=self.model, _hidden_params={})

    def answer(self, request: Request) -> str:
        seed = _hash(request.model, request.system[-2000:], request.user[-4000:])
        supplied = self.responder(request) if self.responder is not None else None
        if isinstance(supplied, str):
            return supplied
        supplied = supplied or {}
        if request.mode == "raw":
            text = supplied.get("text") or canned_text("new_instruction", seed)
            return f"```\n{text}\n```"
        values = {}
        for k, (name, annotation) in enumerate(request.outputs):
            value = supplied[name] if name in supplied else value_for_annotation(
                annotation, name, seed + k, request.notes.get(name))
            values[name] = (value, annotation)
        if request.mode == "json":
            return json.dumps({name: value for name, (value, _) in values.items()}, ensure_ascii=False)
        body = "\n\n".join(f"[[ ## {name} ## ]]\n{format_value(value)}" for name, (value, _) in values.items())
        return body + "\n\n[[ ## completed ## ]]"
