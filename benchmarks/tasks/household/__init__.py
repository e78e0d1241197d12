"""ALFWorld-style household benchmark for agents: games generated offline from the ``alfworld`` package's
scene layouts, PDDL domain, grammar and goal templates, played through textworld's PDDL environment, and a
``dspy.ReAct`` agent whose tools act on the game.

Needs the optional packages of the ``bench`` extra (``alfworld==0.4.2``, ``textworld[pddl]==1.7.0``);
importing this package works without them, generating or playing a game does not.
"""

from .agent import (
    AGENT_OPTIONS,
    DEFAULT_MAX_STEPS,
    DEMO_GAME_INDEX,
    HAND_WRITTEN_ACT_INSTRUCTION,
    HAND_WRITTEN_INSTRUCTION,
    GameReAct,
    GameTool,
    HouseholdAgent,
    HouseholdTask,
    act,
    command_to_tool_call,
    efficiency,
    episode,
    format_table1,
    hand_written_instruction,
    household_metric,
    household_metric_with_feedback,
    household_progress_metric,
    household_progress_metric_with_feedback,
    load_household_task,
    make_agent,
    make_tools,
    parse_agent_kind,
    play_games,
    summarize_games,
    to_examples,
)
from .env import HouseholdEnv, normalize_command
from .generate import (
    DIFFICULTIES,
    SPLITS,
    TASK_LABELS,
    TASK_TYPES,
    GameSpec,
    generate_game,
    generate_games,
    load_game,
    run_expert,
)

__all__ = [
    "AGENT_OPTIONS", "DEFAULT_MAX_STEPS", "DEMO_GAME_INDEX", "GameReAct", "GameTool", "DIFFICULTIES", "HAND_WRITTEN_ACT_INSTRUCTION", "HAND_WRITTEN_INSTRUCTION", "SPLITS", "TASK_LABELS", "TASK_TYPES",
    "GameSpec", "HouseholdAgent", "HouseholdEnv", "HouseholdTask", "act", "command_to_tool_call", "efficiency",
    "episode", "format_table1", "hand_written_instruction", "generate_game", "generate_games", "household_metric",
    "household_metric_with_feedback", "household_progress_metric",
    "household_progress_metric_with_feedback", "load_game", "load_household_task", "make_agent", "make_tools", "parse_agent_kind",
    "normalize_command", "play_games", "run_expert", "summarize_games", "to_examples",
]
