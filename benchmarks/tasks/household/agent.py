"""The DSPy side of the household benchmark: a ``dspy.ReAct`` agent whose tools act on the game, the
metric, examples, a hand-written instruction and the task loader for the benchmark runner.

Optimizers deep-copy programs and run them from several threads, so the tools never hold an episode:
each ``forward`` call makes its own :class:`HouseholdEnv` and publishes it in a ``ContextVar`` that
the tools read. The tools stay ``dspy.Tool`` objects in ``agent.tools``, so FGO can read and rewrite
their descriptions.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dspy
from dspy.utils.callback import with_callbacks
from dspy.utils.exceptions import AdapterParseError

from benchmarks.report import by_method

from .env import OVER, HouseholdEnv
from .generate import TASK_LABELS, TASK_TYPES, GameSpec, generate_game, generate_games, load_game

DEFAULT_MAX_STEPS = {"standard": 50, "easy": 30, "tiny": 15}

_CURRENT_ENV: contextvars.ContextVar[HouseholdEnv | None] = contextvars.ContextVar("household_env", default=None)
_SHOW_COMMANDS: contextvars.ContextVar[bool] = contextvars.ContextVar("household_show_commands", default=False)


@contextlib.contextmanager
def episode(game: GameSpec | str, max_steps: int = 50,
            show_commands: bool = False) -> Iterator[tuple[HouseholdEnv, str]]:
    """Start an episode of ``game`` that the tools act on (in this thread/context): yields (env, first observation).

    ``show_commands`` ends every observation with the commands the game accepts there and then (ALFWorld's
    admissible commands), an aid for small models.
    """
    env = HouseholdEnv(game, max_steps=max_steps)
    try:
        observation = env.reset()
        tokens = _CURRENT_ENV.set(env), _SHOW_COMMANDS.set(show_commands)
        try:
            yield env, _with_commands(observation, env)
        finally:
            _CURRENT_ENV.reset(tokens[0])
            _SHOW_COMMANDS.reset(tokens[1])
    finally:
        env.close()


def act(command: str) -> str:
    """Run one command in the current episode; the observation, with a note when the episode ends."""
    env = _CURRENT_ENV.get()
    if env is None:
        return "No household episode is running."
    if env.done:
        return f"{OVER} Call finish."
    repeated = bool(env.history) and env.history[-1] == (str(command), "Nothing happens.")
    observation, done, won = env.step(command)
    if repeated and observation == "Nothing happens.":
        observation += " You just tried this command and nothing happened: do something else."
    if won:
        return f"{observation} Task completed! Call finish."
    if done:
        return f"{observation} Step limit reached: the episode is over. Call finish."
    return _with_commands(observation, env)


def _with_commands(observation: str, env: HouseholdEnv) -> str:
    if not _SHOW_COMMANDS.get():
        return observation
    commands = [c for c in env.admissible_commands if not c.startswith("examine ")]
    return f"{observation}\nValid commands: {', '.join(commands)}."


# ----- tools -------------------------------------------------------------------------------------------
# Descriptions are deliberately terse: they are what FGO's tool optimization starts from.


def _look() -> str:
    return act("look")


def _inventory() -> str:
    return act("inventory")


def _go_to(receptacle: str) -> str:
    return act(f"go to {receptacle}")


def _open(receptacle: str) -> str:
    return act(f"open {receptacle}")


def _close(receptacle: str) -> str:
    return act(f"close {receptacle}")


def _take(obj: str, receptacle: str) -> str:
    return act(f"take {obj} from {receptacle}")


def _put(obj: str, receptacle: str) -> str:
    return act(f"move {obj} to {receptacle}")


def _heat(obj: str, receptacle: str) -> str:
    return act(f"heat {obj} with {receptacle}")


def _cool(obj: str, receptacle: str) -> str:
    return act(f"cool {obj} with {receptacle}")


def _clean(obj: str, receptacle: str) -> str:
    return act(f"clean {obj} with {receptacle}")


def _use(obj: str) -> str:
    return act(f"use {obj}")


def _examine(target: str) -> str:
    return act(f"examine {target}")


_VERB_TOOLS: tuple[tuple[Callable[..., str], str, str], ...] = (
    (_look, "look", "Look around."),
    (_inventory, "inventory", "List what you carry."),
    (_go_to, "go_to", "Go to a receptacle."),
    (_open, "open", "Open a receptacle."),
    (_close, "close", "Close a receptacle."),
    (_take, "take", "Take an object from a receptacle."),
    (_put, "put", "Put an object in or on a receptacle."),
    (_heat, "heat", "Heat an object with a receptacle."),
    (_cool, "cool", "Cool an object with a receptacle."),
    (_clean, "clean", "Clean an object with a receptacle."),
    (_use, "use", "Use an object."),
    (_examine, "examine", "Examine something."),
)


class GameTool(dspy.Tool):
    """A ``dspy.Tool`` that small models can call without drowning in tracebacks.

    Arguments are game names, so they are taken leniently: a value written like its JSON schema
    (``{"type": "string", "value": "fridge 1"}``, which 1.5B models copy from ReAct's tool list) is unwrapped
    and other values become text. Bad calls answer with one line saying how to call the tool instead of
    raising: ReAct would put a 5-frame traceback (~550 tokens) into the trajectory, every step.
    """

    @with_callbacks
    def __call__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(self.args))
        missing = [name for name in self.args if name not in kwargs]
        if unknown or missing:
            return f"Error: {self.name} takes {self.usage()}."
        return self.func(**{name: _as_text(value) for name, value in kwargs.items()})

    def usage(self) -> str:
        """How to call the tool, e.g. ``{"receptacle": "<text>"}``; ``no arguments: {}`` for none."""
        if not self.args:
            return "no arguments: {}"
        return "{" + ", ".join(f'"{name}": "<text>"' for name in self.args) + "}"

    def __str__(self) -> str:
        """ReAct's line for the tool, with arguments shown as a call (``{"receptacle": "<text>"}``), not as
        the JSON schema ``{'receptacle': {'type': 'string'}}`` that small models copy verbatim; argument
        descriptions (which FGO may write) follow the call."""
        desc = f", whose description is <desc>{self.desc}</desc>.".replace("\n", "  ") if self.desc else "."
        notes = "; ".join(f"{name}: {schema['description']}" for name, schema in self.args.items()
                          if schema.get("description"))
        return f"{self.name}{desc} It takes {self.usage()}." + (f" ({notes})" if notes else "")


def _as_text(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("value", "name", "text"):
            if key in value:
                return _as_text(value[key])
        return " ".join(_as_text(v) for k, v in value.items() if k not in ("type", "description"))
    if isinstance(value, list | tuple):
        return " ".join(_as_text(v) for v in value)
    return str(value)


def make_tools(kind: str = "verbs") -> list[dspy.Tool]:
    """``"verbs"``: one tool per ALFWorld verb; ``"act"``: a single tool taking the command text."""
    if kind == "verbs":
        return [GameTool(func, name=name, desc=desc) for func, name, desc in _VERB_TOOLS]
    if kind == "act":
        return [GameTool(act, name="act", desc="Do one command in the room.")]
    raise ValueError(f"tools must be 'verbs' or 'act', not {kind!r}")


_TOOL_PATTERNS = (
    (re.compile(r"^go to (.+)$"), "go_to", ("receptacle",)),
    (re.compile(r"^take (.+) from (.+)$"), "take", ("obj", "receptacle")),
    (re.compile(r"^move (.+) to (.+)$"), "put", ("obj", "receptacle")),
    (re.compile(r"^(open|close) (.+)$"), None, ("receptacle",)),
    (re.compile(r"^(heat|cool|clean) (.+) with (.+)$"), None, ("obj", "receptacle")),
    (re.compile(r"^use (.+)$"), "use", ("obj",)),
    (re.compile(r"^examine (.+)$"), "examine", ("target",)),
    (re.compile(r"^(look|inventory)$"), None, ()),
)


def command_to_tool_call(command: str, kind: str = "verbs") -> tuple[str, dict[str, str]]:
    """The (tool name, arguments) that issue an ALFWorld command, e.g. ``("take", {"obj": "apple 1",
    "receptacle": "countertop 1"})`` for "take apple 1 from countertop 1"."""
    if kind == "act":
        return "act", {"command": command}
    for pattern, name, arg_names in _TOOL_PATTERNS:
        match = pattern.match(command.strip())
        if match:
            groups = match.groups()
            if name is None:
                name, groups = groups[0], groups[1:]
            return name, dict(zip(arg_names, groups, strict=True))
    raise ValueError(f"no tool issues {command!r}")


# ----- the program -------------------------------------------------------------------------------------


class HouseholdTask(dspy.Signature):
    """Do the household task by acting in the room with the tools."""

    task_description: str = dspy.InputField(desc="the room and your task")
    final_status: str = dspy.OutputField(desc="what you did")


HAND_WRITTEN_INSTRUCTION = """\
You are in a house room. The task description lists the receptacles you can go to (cabinet 1, countertop 2,
fridge 1, ...) and ends with "Your task is to: ...". Reach the goal with the tools, one action per step,
then call finish. Use object and receptacle names exactly as the observations write them, with their
number ("apple 1", "countertop 2"), never a bare type.

How the room works:
- You only see what is on or in the receptacle you are at. go_to a receptacle to see what it holds.
  Cabinets, drawers, fridges, microwaves and safes start closed: after go_to, open them to see inside.
- You carry one object at a time. take an object from the receptacle you are at; put the object you carry
  in or on the receptacle you are at (open it first if it is closed).
- heat/cool/clean need you to carry the object and to be at the appliance: heat with microwave N,
  cool with fridge N, clean with sinkbasin N. You do not need to put the object inside.
- "Nothing happens." means the action was not possible: check the names, where you are and what you carry.
- Do not repeat a failing action; search receptacles you have not checked yet. Objects are usually where
  they belong: food in the fridge, on countertops or dining tables; dishes in cabinets or on countertops;
  cutlery in drawers; small items in drawers, on desks, side tables, dressers or shelves.

The six kinds of task:
1. "put a/some X in/on Y": find an X, take it, go_to a Y, open it if closed, put X in/on it.
2. "put a clean X in Y" / "clean some X and put it in Y": find and take X, go_to sinkbasin 1,
   clean X with sinkbasin 1, go_to Y, put X in/on Y.
3. "put a hot X in Y" / "heat some X and put it in Y": find and take X, go_to microwave 1,
   heat X with microwave 1, go_to Y, put X in/on Y.
4. "put a cool X in Y" / "cool some X and put it in Y": find and take X, go_to fridge 1,
   cool X with fridge 1, go_to Y, put X in/on Y.
5. "look at X under the L" / "examine the X with the L" (L is a desklamp or floorlamp): find and take X,
   then find the lamp (it stands on a desk, side table, dresser, shelf, coffee table or TV stand), go_to
   that receptacle while carrying X and use the lamp ("use desklamp 1").
6. "put two X in Y" / "find two X and put them in Y": find and take one X, put it in/on Y, then find a
   second X (a different one, not the one already in Y), take it and put it in/on Y too.
The game says when the task is completed; then call finish.
"""


class GameReAct(dspy.ReAct):
    """``dspy.ReAct`` without the closing summary call: the game, not the LM, says how the episode went; an
    unparsable step ends the episode like an invalid tool choice does.

    ReAct ends every run with ``extract``, an LM call over the whole trajectory (1-2 minutes of prompt
    reading for a 1.5B model on 2 CPU cores); the agent's output here is the last thought instead.
    """

    def _call_with_potential_trajectory_truncation(self, module, trajectory, **input_args):
        if module is self.extract:
            thoughts = [v for k, v in trajectory.items() if k.startswith("thought_")]
            last = str(thoughts[-1]) if thoughts else ""
            return dspy.Prediction(**{name: last for name in self.signature.output_fields})
        try:
            return super()._call_with_potential_trajectory_truncation(module, trajectory, **input_args)
        except AdapterParseError as err:
            # e.g. a tool name that does not exist: ReAct ends the episode on ValueError (a lost game with its
            # steps and progress kept) but lets DSPy's parse error escape, which loses the whole game record
            raise ValueError(f"unparsable step: {err}") from err


# For the one-tool agent that sees the valid commands (``act-commands``): a 1.5B model keeps repeating its
# first plan, so this one asks it to restate where it is and what it holds before every command.
HAND_WRITTEN_ACT_INSTRUCTION = """\
You are in a house room and act with one command per step through the act tool. After each command the
observation ends with "Valid commands: ...": your next command must be copied exactly from that list.

Every step, write next_thought in this form: "I am at <place>. I hold <object or nothing>. Next: <command>."
Read the latest observation before you decide: if it says "You arrive at X", you are at X now; if you just
took something, you hold it. Never choose a command you just used, and never "go to" the place you are at.

How the room works: you only see what is on a receptacle when you are at it. Take only the object the task
names (take X from Y) when it is listed there; if it is not there, go to another receptacle. Once you hold
it, do not put it back where you found it: carry it to where the task says.
Task kinds (X: the object, Y: where it must go):
1. "put some X on/in Y": take X, go to Y, move X to Y.
2. "clean some X and put it in Y" / "put a clean X in Y": take X, go to sinkbasin 1, clean X with sinkbasin 1,
   go to Y, move X to Y.
3. "heat some X ..." / "put a hot X ...": take X, go to microwave 1, heat X with microwave 1, go to Y, move X to Y.
4. "cool some X ..." / "put a cool X ...": take X, go to fridge 1, cool X with fridge 1, go to Y, move X to Y.
5. "look at X under the L" / "examine the X with the L": take X, go to the receptacle where the lamp L is, use L.
6. "put two X in Y" / "find two X and put them in Y": take one X, go to Y, move it to Y, then take the other X,
   go to Y, move it to Y.
When the observation says "Task completed", call finish.
"""


def hand_written_instruction(tools: str = "verbs") -> str:
    """The hand-written instruction for an agent with these tools (the headroom check)."""
    return HAND_WRITTEN_ACT_INSTRUCTION if tools == "act" else HAND_WRITTEN_INSTRUCTION


class HouseholdAgent(dspy.Module):
    """``dspy.ReAct`` over :class:`HouseholdTask` with tools acting on a fresh episode per call."""

    def __init__(self, max_iters: int = 50, max_steps: int | None = None, tools: str = "verbs",
                 instructions: str | None = None, show_commands: bool = False, json_adapter: bool = False,
                 demo_game: GameSpec | str | None = None):
        super().__init__()
        self.max_steps = max_steps or max_iters
        self.tool_kind = tools
        self.show_commands = show_commands
        self.json_adapter = json_adapter
        signature = HouseholdTask if instructions is None else HouseholdTask.with_instructions(instructions)
        self.agent = GameReAct(signature, tools=make_tools(tools), max_iters=max_iters)
        if demo_game is not None:
            with dspy.context(adapter=self._adapter()):
                self.agent.react.demos = [self.expert_demo(demo_game)]

    def _adapter(self) -> dspy.Adapter | None:
        return dspy.JSONAdapter() if self.json_adapter else dspy.settings.adapter

    def expert_demo(self, game: GameSpec | str) -> dspy.Example:
        """A demonstration for ReAct's step predictor: the expert's winning episode on ``game`` up to its last
        command (the demo's answer), each thought saying where the agent is and what it holds."""
        game = game if isinstance(game, GameSpec) else load_game(game)
        plan, trajectory = game.expert_plan, {}
        place, held = "the middle of the room", "nothing"
        with episode(game, len(plan) + 1, self.show_commands) as (_, intro):
            for i, command in enumerate(plan):
                name, args = command_to_tool_call(command, self.tool_kind)
                thought = f"I am at {place}. I hold {held}. Next: {command}."
                if i == len(plan) - 1:
                    break
                trajectory.update({f"thought_{i}": thought, f"tool_name_{i}": name, f"tool_args_{i}": args,
                                   f"observation_{i}": act(command)})
                place, held = _where_after(command, place, held)
        return dspy.Example(task_description=intro, trajectory=self.agent._format_trajectory(trajectory),
                            next_thought=thought, next_tool_name=name, next_tool_args=args)

    def forward(self, game_id: str, task_description: str | None = None) -> dspy.Prediction:
        game = load_game(game_id)
        with episode(game, self.max_steps, self.show_commands) as (env, observation), \
                dspy.context(adapter=self._adapter()):
            result = self.agent(task_description=observation)
        return dspy.Prediction(
            final_status=result.final_status, trajectory=result.trajectory, won=env.won, steps=env.steps,
            invalid_steps=env.invalid_steps, max_steps=env.max_steps, expert_steps=game.expert_steps,
            progress=env.progress_report(), subgoals="{}/{}".format(*env.subgoals()),
        )


def _where_after(command: str, place: str, held: str) -> tuple[str, str]:
    """(place, held object) after a successful ``command``."""
    if command.startswith("go to "):
        return command.removeprefix("go to "), held
    if command.startswith("take "):
        return place, command.removeprefix("take ").split(" from ")[0]
    if command.startswith("move "):
        return place, "nothing"
    return place, held


def make_agent(max_iters: int = 50, max_steps: int | None = None, tools: str = "verbs",
               instructions: str | None = None, show_commands: bool = False,
               json_adapter: bool = False, demo_game: GameSpec | str | None = None) -> HouseholdAgent:
    """The benchmark's program: ReAct with at most ``max_iters`` LM steps and ``max_steps`` game commands
    (default: as many as ``max_iters``). ``instructions`` replaces the terse task instruction;
    ``show_commands`` lists the valid commands after each observation; ``json_adapter`` runs ReAct with
    ``dspy.JSONAdapter`` (one JSON object per step); ``demo_game`` gives ReAct the expert's episode on that
    game as a demonstration."""
    return HouseholdAgent(max_iters=max_iters, max_steps=max_steps, tools=tools, instructions=instructions,
                          show_commands=show_commands, json_adapter=json_adapter, demo_game=demo_game)


AGENT_OPTIONS = ("verbs", "act", "commands", "json", "demo")
DEMO_GAME_INDEX = 600  # the demo is training game 600 of the series (a "pick" game), beyond any trainset drawn


def parse_agent_kind(kind: str) -> dict[str, Any]:
    """make_agent's options from a name like ``"act-commands-json"``: ``verbs`` or ``act`` tools, plus
    ``commands`` (list the valid commands), ``json`` (JSONAdapter) and ``demo`` (an expert demonstration)."""
    parts = [p for p in kind.split("-") if p]
    unknown = [p for p in parts if p not in AGENT_OPTIONS]
    if unknown or ("act" in parts and "verbs" in parts):
        raise ValueError(f"household agent {kind!r}: use '-'-joined options from {AGENT_OPTIONS}, "
                         "e.g. 'act-commands-json' (verbs or act, not both)")
    return {"tools": "act" if "act" in parts else "verbs", "show_commands": "commands" in parts,
            "json_adapter": "json" in parts, "demo": "demo" in parts}


# ----- metric and data ---------------------------------------------------------------------------------


def _get(prediction: Any, key: str, default: Any = None) -> Any:
    try:
        value = prediction.get(key, default) if hasattr(prediction, "get") else getattr(prediction, key, default)
    except Exception:
        return default
    return default if value is None else value


def household_metric(example: Any, prediction: Any, trace: Any = None, pred_name: str | None = None,
                     pred_trace: Any = None) -> float:
    """1.0 if the episode was won, else 0.0 (the prediction also carries ``steps`` for analysis)."""
    return 1.0 if _get(prediction, "won", False) is True else 0.0


def household_progress_metric(example: Any, prediction: Any, trace: Any = None, pred_name: str | None = None,
                              pred_trace: Any = None) -> float:
    """Partial credit for agents that win few games: the fraction of the task's sub-goals the episode reached
    (took the object, transformed it, placed it / lit the lamp; see ``HouseholdEnv.subgoals``), 1.0 if won.
    Not ALFWorld's success rate: report it next to :func:`household_metric`."""
    if household_metric(example, prediction):
        return 1.0
    done, _, total = str(_get(prediction, "subgoals", "0/1")).partition("/")
    try:
        return int(done) / int(total)
    except (ValueError, ZeroDivisionError):
        return 0.0


def household_metric_with_feedback(example: Any, prediction: Any, trace: Any = None, pred_name: str | None = None,
                                   pred_trace: Any = None) -> dspy.Prediction:
    """household_metric plus what happened: steps against the expert's, progress, commands that did nothing."""
    return _with_feedback(household_metric(example, prediction), prediction)


def household_progress_metric_with_feedback(example: Any, prediction: Any, trace: Any = None,
                                            pred_name: str | None = None, pred_trace: Any = None) -> dspy.Prediction:
    """household_progress_metric with the same feedback as household_metric_with_feedback."""
    return _with_feedback(household_progress_metric(example, prediction), prediction)


def _with_feedback(score: float, prediction: Any) -> dspy.Prediction:
    steps, expert = _get(prediction, "steps", 0), _get(prediction, "expert_steps", "?")
    if _get(prediction, "won", False) is True:
        return dspy.Prediction(score=score, feedback=f"Won in {steps} steps (the reference expert used {expert}).")
    trajectory = _get(prediction, "trajectory", {}) or {}
    failed = [f"{trajectory.get(f'tool_name_{i}')}({trajectory.get(f'tool_args_{i}')})"
              for i in range(len(trajectory))
              if str(trajectory.get(f"observation_{i}", "")).startswith("Nothing happens")]
    feedback = (f"Lost: the task was not done after {steps} game steps (limit {_get(prediction, 'max_steps', '?')}; "
                f"the reference expert needed {expert}). Progress: {_get(prediction, 'progress', 'unknown')}.")
    if failed:
        shown = ", ".join(list(dict.fromkeys(failed))[:3])
        feedback += f" {len(failed)} actions did nothing (not possible there and then), e.g. {shown}."
    return dspy.Prediction(score=score, feedback=feedback)


def to_examples(games: Sequence[GameSpec]) -> list[dspy.Example]:
    """Examples with inputs ``game_id`` (the program loads the game) and ``task_description`` (the first
    observation), ``category`` = task type, and the expert's plan length for the efficiency figure."""
    return [
        dspy.Example(game_id=g.game_id, task_description=g.intro, category=g.task_type, goal=g.goal,
                     expert_steps=g.expert_steps).with_inputs("game_id", "task_description")
        for g in games
    ]


def efficiency(steps: int, expert_steps: int) -> float:
    """The expert's plan length over the agent's steps, for won games (1.0: as short as the expert)."""
    return expert_steps / steps if steps else 0.0


def play_games(program: dspy.Module, examples: Sequence[dspy.Example], num_threads: int = 1) -> list[dict[str, Any]]:
    """Run ``program`` (with the configured LM) on every example: one record per game with ``game_id``,
    ``category``, ``won``, ``steps``, ``invalid_steps`` and ``expert_steps`` (failed runs count as lost)."""
    evaluate = dspy.Evaluate(devset=list(examples), metric=household_metric, num_threads=num_threads,
                             display_progress=False, max_errors=len(examples) + 1, failure_score=0.0)
    records = []
    for example, prediction, score in evaluate(program).results:
        records.append({
            "game_id": example.game_id, "category": example.category, "won": bool(score),
            "steps": _get(prediction, "steps", 0), "invalid_steps": _get(prediction, "invalid_steps", 0),
            "expert_steps": example.expert_steps,
        })
    return records


def summarize_games(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task type and overall ("all"): games, success rate, mean steps of won games and mean efficiency
    (expert steps / steps) of won games."""
    groups: dict[str, list[dict[str, Any]]] = {"all": list(records)}
    for record in records:
        groups.setdefault(record["category"], []).append(record)
    summary = {}
    for name in [t for t in TASK_TYPES if t in groups] + ["all"]:
        group = groups[name]
        won = [r for r in group if r["won"]]
        summary[name] = {
            "games": len(group),
            "success": len(won) / len(group) if group else 0.0,
            "steps_won": sum(r["steps"] for r in won) / len(won) if won else float("nan"),
            "efficiency_won": sum(efficiency(r["steps"], r["expert_steps"]) for r in won) / len(won) if won else float("nan"),
        }
    return summary


def load_household_task(train: int, val: int, test: int, seed: int = 0, difficulty: str = "standard",
                        max_steps: int | None = None, agent: str = "verbs"):
    """(train, val, test, program_factory, metric, hand_written_program_factory).

    ``agent`` names the agent's options (see :func:`parse_agent_kind`), e.g. ``"act-commands-json"``.

    Train and val games come from ALFRED's training floor plans, test games from its held-out ones
    (unseen rooms, like ALFWorld's out-of-distribution split); each list cycles through the six task types.
    """
    steps = max_steps or DEFAULT_MAX_STEPS[difficulty]
    seen = to_examples(generate_games(train + val, seed=seed, split="train", difficulty=difficulty))
    unseen = to_examples(generate_games(test, seed=seed, split="test", difficulty=difficulty))

    options = parse_agent_kind(agent)
    if options.pop("demo"):
        options["demo_game"] = generate_game(DEMO_GAME_INDEX, seed=seed, split="train", difficulty=difficulty)

    def program_factory() -> dspy.Module:
        return make_agent(max_iters=steps, **options)

    def hand_written_program_factory() -> dspy.Module:
        return make_agent(max_iters=steps, instructions=hand_written_instruction(options["tools"]), **options)

    return seen[:train], seen[train:], unseen, program_factory, household_metric, hand_written_program_factory


# ----- the paper's Table 1 -----------------------------------------------------------------------------


def format_table1(results: dict[str, Any]) -> str:
    """Per-task-type success rates of every method in a benchmark ``results.json``, laid out like the
    paper's Table 1 (Pick, Clean, Heat, Cool, Look, Pick Two, Average); Average is over all test games."""
    head = f"{'method':<18}" + "".join(f"{TASK_LABELS[t]:>10}" for t in TASK_TYPES) + f"{'Average':>10}"
    metric = (results.get("args") or {}).get("metric") or "won"
    title = "success rate (%)" if metric == "won" else "sub-goal progress (%, 100 = won; not a success rate)"
    lines = [title, head, "-" * len(head)]
    for method, runs in by_method(results).items():
        cells = []
        for t in TASK_TYPES:
            values = [r["test"].get("per_category", {}).get(t) for r in runs]
            values = [v for v in values if v is not None]
            cells.append(f"{100 * sum(values) / len(values):>10.1f}" if values else f"{'-':>10}")
        average = sum(r["test"]["score"] for r in runs) / len(runs)
        lines.append(f"{method:<18}" + "".join(cells) + f"{100 * average:>10.1f}")
    return "\n".join(lines)
