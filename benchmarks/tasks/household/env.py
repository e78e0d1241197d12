"""One episode of a generated household game, played through textworld's PDDL environment.

Commands follow ALFWorld's grammar ("go to countertop 1", "take apple 1 from countertop 1",
"move apple 1 to fridge 1", "open fridge 1", "heat apple 1 with microwave 1", "use desklamp 1",
"examine ...", "look", "inventory"); the older ALFWorld spelling "put apple 1 in/on fridge 1" is accepted
too. A command that the game does not allow gets ALFWorld's "Nothing happens." and still costs a step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .generate import (
    TRANSLATE_LOCK,
    GameSpec,
    acquire_env,
    load_game,
    preload_translation,
    release_env,
    save_translation,
    strip_welcome,
)

OVER = "The episode is over."
_PUT = re.compile(r"^(?:put|place|move)\s+(.+?)\s+(?:in/on|into|onto|in|on|to)\s+(.+)$")
_ALIASES = (
    (re.compile(r"^(?:goto|go|walk to|navigate to|move to)\s+(?!to\b)(.+)$"), "go to {0}"),
    (re.compile(r"^(?:pick up|pickup|get|grab)\s+(.+?)\s+from\s+(.+)$"), "take {0} from {1}"),
    (re.compile(r"^(?:turn on|switch on|toggle)\s+(.+)$"), "use {0}"),
    (re.compile(r"^(?:look at|inspect|check)\s+(.+)$"), "examine {0}"),
    (re.compile(r"^(?:i|inv)$"), "inventory"),
)


def normalize_command(command: str) -> str:
    """Lower case, single spaces, no articles or end punctuation, ALFWorld's older spellings mapped."""
    text = str(command or "").strip().strip("\"'`").lower()
    text = re.sub(r"[.!?;]+$", "", text)
    text = re.sub(r"\b(?:the|a|an)\s+", "", text)
    text = " ".join(text.split())
    match = _PUT.match(text)
    if match:
        return f"move {match.group(1)} to {match.group(2)}"
    if text.startswith("go to "):
        return text
    for pattern, template in _ALIASES:
        match = pattern.match(text)
        if match:
            return template.format(*match.groups())
    return text


class HouseholdEnv:
    """An episode of one game: ``reset() -> observation``, ``step(command) -> (observation, done, won)``.

    The episode ends when the game is won or after ``max_steps`` commands (valid or not). Use it as a
    context manager, or call :meth:`close`, to give the underlying textworld env back to the pool.
    """

    def __init__(self, game: GameSpec | str, max_steps: int = 50):
        self.game = game if isinstance(game, GameSpec) else load_game(game)
        self.max_steps = max_steps
        self._env: Any = None
        self._handle: Any = None
        self._state: Any = None
        self.steps = 0
        self.invalid_steps = 0
        self.won = False
        self.history: list[tuple[str, str]] = []
        self.progress: dict[str, Any] = {}

    # ----- lifecycle ---------------------------------------------------------------------------------

    def reset(self) -> str:
        if self._env is None:
            self._env, self._handle = acquire_env()
        saved = preload_translation(self.game.game_file)
        with TRANSLATE_LOCK:
            self._env.load(str(Path(self.game.game_file)))
            self._state = self._env.reset()
        if not saved:
            save_translation(self.game.game_file)
        self.steps = self.invalid_steps = 0
        self.won = bool(self._state["won"])
        self.history = []
        self.progress = {"took": False, "transformed": False, "placed": 0, "lamp_on": False}
        self._update_progress()
        return strip_welcome(self._state["feedback"])

    def close(self) -> None:
        if self._handle is not None:
            release_env(self._handle)
        self._env = self._handle = self._state = None

    def __enter__(self) -> HouseholdEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- playing -----------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.won or self.steps >= self.max_steps

    @property
    def admissible_commands(self) -> list[str]:
        self._require_started()
        return [c for c in self._state["admissible_commands"] if c != "help"]

    def step(self, command: str) -> tuple[str, bool, bool]:
        self._require_started()
        if self.done:
            return OVER, True, self.won
        normalized = normalize_command(command)
        self.steps += 1
        if normalized in self._state["admissible_commands"] and normalized != "help":
            self._state, _, _ = self._env.step(normalized)
            observation = self._state["feedback"].strip()
            self.won = bool(self._state["won"])
            self._update_progress()
        else:
            observation = "Nothing happens."
        if observation == "Nothing happens.":
            self.invalid_steps += 1
        self.history.append((str(command), observation))
        return observation, self.done, self.won

    def facts(self) -> list[tuple[str, tuple[str, ...]]]:
        """The game state as (predicate, argument names), e.g. ("inreceptacle", ("apple 1", "fridge 1"))."""
        self._require_started()
        return [(f.name, tuple(a.name.strip() for a in f.arguments)) for f in self._state["facts"]]

    def _require_started(self) -> None:
        if self._state is None:
            raise RuntimeError("call reset() first")

    # ----- how far the agent got (for feedback) ------------------------------------------------------

    def _update_progress(self) -> None:
        targets = self.game.targets
        obj, parent, toggle = (targets.get(k, "").lower() for k in ("object", "parent", "toggle"))
        prop = {"clean": "isclean", "heat": "ishot", "cool": "iscool"}.get(self.game.task_type)
        facts: dict[str, set[tuple[str, ...]]] = {}
        for name, args in self.facts():
            facts.setdefault(name, set()).add(args)

        def is_obj(name: str) -> bool:
            return name.rsplit(" ", 1)[0] == obj

        held = [o for _, o in facts.get("holds", ()) if is_obj(o)]
        if held:
            self.progress["took"] = True
        if prop and any(is_obj(o) for (o,) in facts.get(prop, ())):
            self.progress["transformed"] = True
        if parent:
            ready = {o for (o,) in facts.get(prop, ())} if prop else None
            self.progress["placed"] = sum(
                1 for o, r in facts.get("inreceptacle", ())
                if is_obj(o) and r.rsplit(" ", 1)[0] == parent and (ready is None or o in ready))
        if toggle:
            self.progress["lamp_on"] = any(o.rsplit(" ", 1)[0] == toggle for (o,) in facts.get("istoggled", ()))

    def subgoals(self) -> tuple[int, int]:
        """(sub-goals reached, sub-goals of the task): took the object; cleaned, heated or cooled it; put it in
        place (pick two: each of the two) or turned on the lamp. A won game has reached all of them."""
        p, task_type = self.progress, self.game.task_type
        if task_type == "look":
            reached = [p["took"], p["lamp_on"]]
        else:
            reached = [p["took"], *([p["transformed"]] if task_type in ("clean", "heat", "cool") else []),
                       p["placed"] >= 1, *([p["placed"] >= 2] if task_type == "pick_two" else [])]
        return (len(reached) if self.won else sum(reached)), len(reached)

    def progress_report(self) -> str:
        """Which parts of the task the episode got done, in words."""
        game, p = self.game, self.progress
        obj = game.targets.get("object", "").lower()
        parent = game.targets.get("parent", "").lower()
        verb = {"clean": "cleaned it with a sinkbasin", "heat": "heated it with a microwave",
                "cool": "cooled it with a fridge"}.get(game.task_type)
        parts = [f"took a {obj}: {'yes' if p['took'] else 'no'}"]
        if verb:
            parts.append(f"{verb}: {'yes' if p['transformed'] else 'no'}")
        if game.task_type == "look":
            parts.append(f"turned on the {game.targets.get('toggle', '').lower()} while holding it: "
                         f"{'yes' if self.won else ('lamp on, not holding it' if p['lamp_on'] else 'no')}")
        elif game.task_type == "pick_two":
            parts.append(f"{obj}s in/on a {parent}: {p['placed']} of 2")
        else:
            parts.append(f"put it in/on a {parent}: {'yes' if p['placed'] else 'no'}")
        return "; ".join(parts)
