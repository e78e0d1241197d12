"""Watch an agent play household games: every thought, command and observation, then the outcome.

    python -m benchmarks.tasks.household.watch --profile tiny --program act-commands-json --games 0,1
    python -m benchmarks.tasks.household.watch --instruction seed --task-lm openai/gpt-4o-mini

Games already played with the same LM settings come back from DSPy's cache, so this also replays the games
of a finished benchmark run (same ``--profile``, ``--program``, ``--split`` and instruction) in seconds.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import dspy

from .agent import load_household_task


def describe(example: dspy.Example, prediction: Any, width: int = 200) -> str:
    """The game's intro, each step as thought / command -> observation, and the outcome, as text."""
    trajectory = prediction.trajectory
    lines = [f"=== {example.game_id} ({example.category}): won={prediction.won} steps={prediction.steps} "
             f"invalid={prediction.invalid_steps} sub-goals={prediction.subgoals} expert={example.expert_steps}",
             example.task_description]
    step = 0
    while f"tool_name_{step}" in trajectory:
        observation = str(trajectory.get(f"observation_{step}", "")).replace("\n", " | ")
        lines.append(f"[{step}] {trajectory[f'thought_{step}']}")
        lines.append(f"    {trajectory[f'tool_name_{step}']}({trajectory[f'tool_args_{step}']}) -> {observation[:width]}")
        step += 1
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="tiny", help="standard, easy or tiny")
    p.add_argument("--program", default="act-commands-json", help="agent options, e.g. act-commands-json-demo")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--games", default="0", help="comma-separated game indices of the split")
    p.add_argument("--instruction", default="hand-written", choices=("hand-written", "seed"))
    p.add_argument("--task-lm", default="local:qwen1.5b")
    p.add_argument("--temperature", type=float, default=0.0)
    args = p.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    from benchmarks.run import resolve_lms

    indices = [int(i) for i in args.games.split(",")]
    train, _, test, make, _, hand = load_household_task(
        max(indices) + 1 if args.split == "train" else 0, 0, max(indices) + 1 if args.split == "test" else 0,
        difficulty=args.profile, agent=args.program)
    examples = train if args.split == "train" else test
    task_lm, _, server = resolve_lms(args.task_lm, args.task_lm, 8192, args.temperature)
    program = (hand if args.instruction == "hand-written" else make)()
    try:
        with dspy.context(lm=task_lm):
            for i in indices:
                print(describe(examples[i], program(**examples[i].inputs())), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
