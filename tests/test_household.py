"""The household benchmark: generated games, the environment, the agent's tools and the metric (no LLM).

Needs the optional alfworld and textworld[pddl] packages (the ``bench`` extra); skipped without them.
Generated games are cached under benchmarks/.cache/household, so only the first run generates them
(about 4 minutes for the standard games on 2 cores, 30 s for the easy ones). HOUSEHOLD_TEST_GAMES sets
how many games per difficulty the expert and placement checks cover (default 60).
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import threading
import time
from collections import Counter

import pytest

pytest.importorskip("alfworld")
pytest.importorskip("textworld")
pytest.importorskip("fast_downward")

import alfworld.gen.constants as constants  # noqa: E402
import dspy  # noqa: E402
from fakes import FakeLM  # noqa: E402

from benchmarks.tasks import household as hh  # noqa: E402
from benchmarks.tasks.household.generate import ALFRED_TASK_TYPES, GENERATOR_VERSION, MAX_EXPERT_STEPS  # noqa: E402
from dspy_fgo.candidate import Candidate  # noqa: E402

N_GAMES = int(os.environ.get("HOUSEHOLD_TEST_GAMES", "60"))
VERB_TOOLS = {"look", "inventory", "go_to", "open", "close", "take", "put", "heat", "cool", "clean", "use", "examine"}
FITS = {r.lower(): {o.lower() for o in objs} for r, objs in constants.VAL_RECEPTACLE_OBJECTS.items()}
LAMP_HOLDERS = {"desklamp": {"desk", "sidetable", "dresser", "shelf"},
                "floorlamp": {"sidetable", "dresser", "desk", "coffeetable", "tvstand"}}


def kind(name: str) -> str:
    """ "apple 1" -> "apple" """
    return name.rsplit(" ", 1)[0]


@pytest.fixture(scope="module", params=hh.DIFFICULTIES)
def games(request) -> list[hh.GameSpec]:
    return hh.generate_games(N_GAMES, seed=0, split="train", difficulty=request.param)


@pytest.fixture(scope="module")
def easy() -> list[hh.GameSpec]:
    return hh.generate_games(12, seed=0, split="train", difficulty="easy")


def scripted_lm(games: list[hh.GameSpec], tools: str = "verbs", delay: float = 0.0) -> FakeLM:
    """A fake LM that plays each game's expert plan through the ReAct agent's tools, then finishes."""
    plans = {g.intro: list(g.expert_plan) for g in games}

    def handler(request):
        if "next_tool_name" not in request.outputs:
            return {"reasoning": "The game said the task is completed.", "final_status": "done"}
        plan = plans[request.fields["task_description"].strip()]
        step = sum(1 for key in request.fields if key.startswith("tool_name_"))
        if delay:
            time.sleep(delay)
        if step >= len(plan):
            return {"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": "{}"}
        name, args = hh.command_to_tool_call(plan[step], tools)
        return {"next_thought": f"Step {step}.", "next_tool_name": name, "next_tool_args": json.dumps(args)}

    return FakeLM(handler)


# ----- generation --------------------------------------------------------------------------------------


def test_games_are_balanced_and_in_alfred_rooms(games):
    difficulty = games[0].difficulty
    assert Counter(g.task_type for g in games) == {t: N_GAMES // 6 for t in hh.TASK_TYPES}
    assert [g.task_type for g in games[:6]] == list(hh.TASK_TYPES)
    for g in games:
        assert g.room in constants.GOALS_VALID[ALFRED_TASK_TYPES[g.task_type]]
        assert int(g.scene.removeprefix("FloorPlan")) in constants.TRAIN_SCENE_NUMBERS
        assert 0 < g.expert_steps <= MAX_EXPERT_STEPS[difficulty]
        assert g.intro.startswith("You are in the middle of a room.")
        assert g.intro.endswith(f"Your task is to: {g.goal}.")
        assert g.targets["object"].lower() in g.goal
        if g.task_type == "look":
            assert g.targets["toggle"] in ("DeskLamp", "FloorLamp") and g.targets["toggle"].lower() in g.goal
        else:
            assert g.targets["parent"].lower() in g.goal
        if difficulty == "easy":
            assert g.n_receptacles <= 5 and g.n_objects <= 6
        if difficulty == "tiny":
            assert g.n_receptacles <= 4 and g.n_objects <= 4
    rooms = Counter(g.room for g in games)
    assert set(rooms) == {"Kitchen", "LivingRoom", "Bedroom", "Bathroom"}
    if difficulty == "standard":  # rooms of ALFWorld's size: tens of receptacles in kitchens
        assert max(g.n_receptacles for g in games) >= 25


def test_generation_is_deterministic_and_seeded(tmp_path, easy):
    again = hh.generate_games(6, seed=0, split="train", difficulty="easy", cache_dir=tmp_path / "a")
    for old, new in zip(easy[:6], again, strict=True):
        assert (old.goal, old.expert_plan, old.intro, old.scene) == (new.goal, new.expert_plan, new.intro, new.scene)
        problem = lambda g: json.loads(open(g.game_file).read())["pddl_problem"]  # noqa: E731
        assert problem(old) == problem(new)
    other = hh.generate_games(6, seed=1, split="train", difficulty="easy", cache_dir=tmp_path / "b")
    assert [g.intro for g in other] != [g.intro for g in again]
    assert [g.task_type for g in other] == list(hh.TASK_TYPES)


def test_cache_loss_and_ids(tmp_path):
    game = hh.generate_game(4, seed=0, split="test", difficulty="easy", cache_dir=tmp_path)
    assert game.game_id == "test-easy-s0-0004" and game.task_type == "look"
    assert int(game.scene.removeprefix("FloorPlan")) in constants.TEST_SCENE_NUMBERS
    for path in (tmp_path / f"v{GENERATOR_VERSION}" / game.game_id).iterdir():
        path.unlink()
    assert hh.load_game(game.game_id, cache_dir=tmp_path) == game
    with pytest.raises(ValueError):
        hh.generate_game(0, split="valid")
    with pytest.raises(ValueError):
        hh.generate_game(0, difficulty="hard")


# ----- the environment -----------------------------------------------------------------------------------


def test_placements_are_sensible_and_the_expert_plan_wins(games):
    for game in games:
        with hh.HouseholdEnv(game, max_steps=game.expert_steps) as env:
            assert env.reset() == game.intro
            obj, parent, toggle = (game.targets[k].lower() for k in ("object", "parent", "toggle"))
            placed = [args for name, args in env.facts() if name == "inreceptacle"]
            assert len(placed) == game.n_objects
            for o, r in placed:
                if kind(o) in LAMP_HOLDERS:
                    assert kind(r) in LAMP_HOLDERS[kind(o)], (game.game_id, o, r)
                else:
                    assert kind(o) in FITS[kind(r)], (game.game_id, o, r)
                    assert not (kind(o) == obj and kind(r) == parent), (game.game_id, "goal already met")
            assert sum(kind(o) == obj for o, _ in placed) >= (2 if game.task_type == "pick_two" else 1)
            if toggle:
                assert any(kind(o) == toggle for o, _ in placed)
            for i, command in enumerate(game.expert_plan):
                assert not env.won, (game.game_id, "won before the plan's end")
                observation, done, won = env.step(command)
                assert observation != "Nothing happens.", (game.game_id, i, command)
                assert done == (i == game.expert_steps - 1)
            assert env.won and env.steps == game.expert_steps and env.invalid_steps == 0
            assert env.progress["took"]
            report = env.progress_report()
            assert "took a" in report and ": no" not in report


def test_noop_and_random_policies_do_not_win(games):
    wins = 0
    for n, game in enumerate(games[:18]):
        with hh.HouseholdEnv(game, max_steps=20) as env:
            env.reset()
            while not env.done:
                env.step(random.Random(n).choice(["look", "inventory", f"examine {game.targets['object'].lower()} 1"]))
            assert not env.won and env.steps == 20
        rng = random.Random(n)
        limit = hh.DEFAULT_MAX_STEPS[game.difficulty]
        with hh.HouseholdEnv(game, max_steps=limit) as env:
            env.reset()
            while not env.done:
                env.step(rng.choice(env.admissible_commands))
            wins += env.won
    assert wins <= 3, f"a random policy won {wins} of 18 games"


def test_invalid_commands_get_nothing_happens_and_cost_a_step(easy):
    game = easy[0]
    with hh.HouseholdEnv(game, max_steps=8) as env:
        first = env.reset()
        for command in ("", "fly to the moon", "take apple 99 from fridge 1", "help", "go to", "é" * 500):
            observation, done, won = env.step(command)
            assert observation == "Nothing happens." and not won
        assert env.steps == 6 and env.invalid_steps == 6 and not env.done
        observation, _, _ = env.step("look")
        assert observation.startswith("You are in the middle of a room")
        assert env.step("inventory") == ("You are not carrying anything.", True, False)
        assert env.step("look") == (hh.env.OVER, True, False)
        assert env.steps == 8
    assert first == game.intro
    with pytest.raises(RuntimeError):
        hh.HouseholdEnv(game).step("look")


@pytest.mark.parametrize("raw, command", [
    ("Go to the Countertop 1.", "go to countertop 1"),
    ("put apple 1 in/on fridge 1", "move apple 1 to fridge 1"),
    ("put the apple 1 on countertop 2", "move apple 1 to countertop 2"),
    ("move apple 1 to fridge 1", "move apple 1 to fridge 1"),
    ("goto drawer 3", "go to drawer 3"),
    ("pick up mug 2 from cabinet 1", "take mug 2 from cabinet 1"),
    ("turn on desklamp 1", "use desklamp 1"),
    ("  heat   egg 1 with   microwave 1 ", "heat egg 1 with microwave 1"),
    ("look", "look"),
    ("i", "inventory"),
])
def test_normalize_command(raw, command):
    assert hh.normalize_command(raw) == command


def test_aliases_play(easy):
    game = next(g for g in easy if g.task_type == "pick")
    with hh.HouseholdEnv(game, max_steps=50) as env:
        env.reset()
        for command in game.expert_plan:
            match = re.match(r"move (.+) to (.+)", command)
            env.step(f"put {match[1]} in/on {match[2]}" if match else command.replace("go to ", "go to the "))
        assert env.won and env.invalid_steps == 0


# ----- the agent's tools ----------------------------------------------------------------------------------


def test_tools_reached_through_the_agent_act_on_the_episode(easy):
    agent = hh.make_agent(max_iters=10)
    tools = agent.agent.tools
    assert set(tools) == VERB_TOOLS | {"finish"}
    assert all(isinstance(t, dspy.Tool) and len(t.desc) < 50 for name, t in tools.items() if name != "finish")
    assert tools["look"]() == "No household episode is running."
    game = easy[2]
    with hh.episode(game, max_steps=10) as (env, observation):
        assert observation == game.intro
        receptacle = re.search(r"you see an? (\w+ \d+)", observation)[1]
        assert tools["go_to"](receptacle=receptacle).startswith(f"You arrive at {receptacle}.")
        assert tools["take"](obj="unicorn 1", receptacle=receptacle) == "Nothing happens."
        assert tools["inventory"]() == "You are not carrying anything."
        assert env.steps == 3 and env.invalid_steps == 1
        assert [c for c, _ in env.history] == [f"go to {receptacle}", f"take unicorn 1 from {receptacle}", "inventory"]
    assert tools["look"]() == "No household episode is running."
    act_agent = hh.make_agent(tools="act")
    assert set(act_agent.agent.tools) == {"act", "finish"}


@pytest.mark.parametrize("tool_kind", ["verbs", "act"])
def test_scripted_tool_calls_in_expert_order_win(easy, tool_kind):
    agent = hh.make_agent(tools=tool_kind)
    for game in easy[:6]:
        with hh.episode(game, max_steps=30) as (env, _):
            for command in game.expert_plan:
                name, args = hh.command_to_tool_call(command, tool_kind)
                observation = agent.agent.tools[name](**args)
            assert observation.endswith("Task completed! Call finish.")
            prediction = dspy.Prediction(won=env.won, steps=env.steps, expert_steps=game.expert_steps)
        assert hh.household_metric(None, prediction) == 1.0
        assert prediction.steps == game.expert_steps


def test_react_agent_with_a_scripted_lm_wins_and_is_scored(easy):
    examples = hh.to_examples(easy[:6])
    program = hh.make_agent(max_iters=25)
    lm = scripted_lm(easy[:6])
    with dspy.context(lm=lm):
        for example, game in zip(examples, easy, strict=False):
            prediction = program(**example.inputs())
            assert prediction.won is True and prediction.steps == game.expert_steps
            assert hh.household_metric(example, prediction) == 1.0
            feedback = hh.household_metric_with_feedback(example, prediction)
            assert feedback.score == 1.0 and feedback.feedback.startswith(f"Won in {game.expert_steps} steps")
    # one call per command plus finish: GameReAct skips ReAct's closing extraction call
    assert lm.calls == sum(g.expert_steps + 1 for g in easy[:6])
    assert prediction.final_status == "Done."


def test_react_shows_tool_arguments_as_a_call_not_a_schema():
    agent = hh.make_agent(max_iters=10)
    instructions = agent.agent.react.signature.instructions
    assert 'go_to, whose description is <desc>Go to a receptacle.</desc>. It takes {"receptacle": "<text>"}.' in instructions
    assert "'type': 'string'" not in instructions.split("(13) finish")[0]
    agent.agent.tools["go_to"].args["receptacle"]["description"] = "with its number, e.g. fridge 1"
    assert str(agent.agent.tools["go_to"]).endswith('{"receptacle": "<text>"}. (receptacle: with its number, e.g. fridge 1)')


def test_tools_take_schema_shaped_arguments_and_answer_bad_calls_in_one_line(easy):
    tools = hh.make_agent(max_iters=10).agent.tools
    game = easy[2]
    receptacle = re.search(r"you see an? (\w+ \d+)", game.intro)[1]
    with hh.episode(game, max_steps=10) as (env, _):
        # what a 1.5B model writes after reading "It takes arguments {'receptacle': {'type': 'string'}}"
        observation = tools["go_to"](receptacle={"type": "string", "value": receptacle})
        assert observation.startswith(f"You arrive at {receptacle}.")
        assert tools["take"](obj="apple 1") == 'Error: take takes {"obj": "<text>", "receptacle": "<text>"}.'
        assert tools["look"](where="here") == "Error: look takes no arguments: {}."
        assert env.steps == 1  # bad calls never reach the game
        assert env.history[0][0] == f"go to {receptacle}"


def test_play_games_records_steps_for_analysis(easy):
    examples = hh.to_examples(easy[:6])
    with dspy.context(lm=scripted_lm(easy[:6])):
        records = hh.play_games(hh.make_agent(max_iters=25), examples, num_threads=2)
    assert [r["game_id"] for r in records] == [g.game_id for g in easy[:6]]
    assert all(r["won"] and r["steps"] == r["expert_steps"] and r["invalid_steps"] == 0 for r in records)
    summary = hh.summarize_games(records)
    assert list(summary) == [*hh.TASK_TYPES, "all"]
    assert summary["all"] == {"games": 6, "success": 1.0, "steps_won": sum(g.expert_steps for g in easy[:6]) / 6,
                              "efficiency_won": 1.0}


def test_lost_episode_scores_zero_with_feedback(easy):
    game = next(g for g in easy if g.task_type == "heat")

    def handler(request):
        if "next_tool_name" in request.outputs:
            return {"next_thought": "Open it.", "next_tool_name": "open", "next_tool_args": '{"receptacle": "fridge 99"}'}
        return {"reasoning": "I ran out of steps.", "final_status": "not done"}

    with dspy.context(lm=FakeLM(handler)):
        prediction = hh.make_agent(max_iters=4)(game_id=game.game_id, task_description=game.intro)
    assert prediction.won is False and prediction.steps == 4 and prediction.invalid_steps == 4
    assert hh.household_metric(None, prediction) == 0.0
    feedback = hh.household_metric_with_feedback(None, prediction)
    assert feedback.score == 0.0
    assert "Lost" in feedback.feedback and "heated it with a microwave: no" in feedback.feedback
    assert "open({'receptacle': 'fridge 99'})" in feedback.feedback


def test_deep_copies_play_two_games_in_two_threads(easy):
    base = hh.make_agent(max_iters=25)
    copies = [copy.deepcopy(base), base.deepcopy()]
    assert copies[0].agent.tools["go_to"] is not copies[1].agent.tools["go_to"]
    games = [easy[2], easy[5]]  # heat and pick two
    lm = scripted_lm(games, delay=0.002)
    results: dict[int, dspy.Prediction] = {}

    def run(i: int) -> None:
        with dspy.context(lm=lm):
            results[i] = copies[i](game_id=games[i].game_id, task_description=games[i].intro)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i, game in enumerate(games):
        prediction = results[i]
        assert prediction.won is True and prediction.steps == game.expert_steps and prediction.invalid_steps == 0
        tool_calls = [prediction.trajectory[f"tool_name_{k}"] for k in range(game.expert_steps)]
        assert tool_calls == [hh.command_to_tool_call(c)[0] for c in game.expert_plan]


def test_fgo_reads_and_rewrites_tool_descriptions(easy):
    from dspy_fgo.candidate import Candidate

    agent = hh.make_agent(max_iters=25)
    candidate = Candidate.from_program(agent)
    assert candidate["tool:go_to"] == "Go to a receptacle."
    assert "tool:heat.obj" in candidate and "tool:finish" not in candidate
    better = "Heat the object you carry with microwave 1; go_to the microwave first."
    rewritten = candidate.updated({"tool:heat": better}).apply(agent)
    assert rewritten.agent.tools["heat"].desc == better and agent.agent.tools["heat"].desc != better
    assert better in rewritten.agent.react.signature.instructions
    game = easy[2]
    with dspy.context(lm=scripted_lm([game])):
        assert rewritten(game_id=game.game_id, task_description=game.intro).won is True


# ----- examples, task and report ---------------------------------------------------------------------------


def test_load_household_task():
    train, val, test, program_factory, metric, hand_written = hh.load_household_task(6, 2, 6, difficulty="easy")
    assert [len(train), len(val), len(test)] == [6, 2, 6]
    assert [ex.category for ex in train] == list(hh.TASK_TYPES) and [ex.category for ex in test] == list(hh.TASK_TYPES)
    assert set(train[0].inputs().keys()) == {"game_id", "task_description"}
    assert {ex.game_id for ex in train + val}.isdisjoint({ex.game_id for ex in test})
    assert all(ex.game_id.startswith("test-easy-s0-") for ex in test)
    program = program_factory()
    assert isinstance(program, hh.HouseholdAgent) and program.agent.max_iters == hh.DEFAULT_MAX_STEPS["easy"]
    assert program.max_steps == hh.DEFAULT_MAX_STEPS["easy"]
    assert "Pick" not in program.agent.signature.instructions
    assert hand_written().agent.signature.instructions.strip() == hh.HAND_WRITTEN_INSTRUCTION.strip()
    assert metric is hh.household_metric
    act = hh.load_household_task(1, 0, 1, difficulty="easy", agent="act-commands-json")[3]()
    assert set(act.agent.tools) == {"act", "finish"} and act.show_commands and act.json_adapter
    act_hand = hh.load_household_task(1, 0, 1, difficulty="tiny", agent="act-commands")[5]()
    assert act_hand.agent.signature.instructions.strip() == hh.HAND_WRITTEN_ACT_INSTRUCTION.strip()
    assert act_hand.max_steps == hh.DEFAULT_MAX_STEPS["tiny"] and not act_hand.json_adapter
    assert not program.show_commands and not program.json_adapter


@pytest.mark.parametrize("kind", ["acts", "verbs-act", "json-yaml"])
def test_unknown_agent_options_are_refused(kind):
    with pytest.raises(ValueError, match="act-commands-json"):
        hh.parse_agent_kind(kind)


def test_repeating_a_command_that_did_nothing_is_pointed_out(easy):
    with hh.episode(easy[0], max_steps=10) as (env, _):
        assert hh.act("take unicorn 1 from desk 9") == "Nothing happens."
        again = hh.act("take unicorn 1 from desk 9")
        assert again == "Nothing happens. You just tried this command and nothing happened: do something else."
        assert hh.act("look") != "Nothing happens." and hh.act("take unicorn 1 from desk 9") == "Nothing happens."
        assert env.invalid_steps == 3 and env.steps == 4


def test_show_commands_lists_what_the_game_accepts(easy):
    game = easy[0]
    with hh.episode(game, max_steps=10, show_commands=True) as (env, observation):
        intro, listed = observation.rsplit("\nValid commands: ", 1)
        assert intro == game.intro
        commands = listed.rstrip(".").split(", ")
        assert commands == [c for c in env.admissible_commands if not c.startswith("examine ")]
        assert f"go to {kind(game.expert_plan[0].split('go to ')[-1])} 1" in commands or \
            game.expert_plan[0] in commands
        after = hh.act(game.expert_plan[0])
        assert after.split("\nValid commands: ")[1].rstrip(".").split(", ") == \
            [c for c in env.admissible_commands if not c.startswith("examine ")]
    with hh.episode(game, max_steps=10) as (_, observation):
        assert "Valid commands" not in observation and "Valid commands" not in hh.act("look")


def test_json_agent_plays_through_the_json_adapter(easy):
    seen_adapters = []

    def handler(request):
        seen_adapters.append(type(dspy.settings.adapter).__name__)
        return json.dumps({"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}})

    with dspy.context(lm=FakeLM(handler)):
        prediction = hh.make_agent(max_iters=3, json_adapter=True)(game_id=easy[0].game_id)
    assert seen_adapters == ["JSONAdapter"] and prediction.final_status == "Done."


def test_expert_demo_shows_a_winning_episode_with_state_in_the_thoughts():
    program = hh.load_household_task(1, 0, 1, difficulty="tiny", agent="act-commands-demo")[3]()
    game = hh.generate_game(hh.DEMO_GAME_INDEX, seed=0, split="train", difficulty="tiny")
    (demo,) = program.agent.react.demos
    assert game.task_type == "pick" and demo.task_description.startswith(game.intro)
    assert demo.next_tool_name == "act" and demo.next_tool_args == {"command": game.expert_plan[-1]}
    for command in game.expert_plan[:-1]:
        assert f'{{"command": "{command}"}}' in demo.trajectory
    taken = next(c for c in game.expert_plan if c.startswith("take "))
    held = taken.removeprefix("take ").split(" from ")[0]
    assert demo.next_thought.endswith(f"I hold {held}. Next: {game.expert_plan[-1]}.")
    assert "Valid commands: " in demo.trajectory
    with hh.episode(game, max_steps=20) as (env, _):  # the demo's answer is the winning command
        for command in game.expert_plan:
            hh.act(command)
        assert env.won
    optimized = Candidate.from_program(program).updated({"agent": "Better."}).apply(program)
    assert optimized.agent.react.demos == program.agent.react.demos
    assert optimized.agent.signature.instructions == "Better."


def test_an_unparsable_step_ends_the_episode_as_a_lost_game(easy):
    replies = iter([json.dumps({"next_thought": "Go.", "next_tool_name": "act", "next_tool_args": {"command": "look"}}),
                    json.dumps({"next_thought": "Look.", "next_tool_name": "look", "next_tool_args": {}})])

    with dspy.context(lm=FakeLM(lambda request: next(replies))):
        prediction = hh.make_agent(max_iters=5, tools="act", json_adapter=True)(game_id=easy[0].game_id)
    assert prediction.won is False and prediction.steps == 1 and prediction.subgoals.startswith("0/")
    assert hh.household_progress_metric(None, prediction) == 0.0


def test_format_table1():
    def run(method, per, score):
        return {"method": method, "test": {"score": score, "per_category": per}}

    per = {"pick": 1.0, "clean": 0.5, "heat": 0.0, "cool": 0.25, "look": 1.0, "pick_two": 0.0}
    results = {"runs": {"seed/seed0": run("seed", per, 0.46), "fgo/seed0": run("fgo", {**per, "heat": 1.0}, 0.6),
                        "fgo/seed1": run("fgo", {**per, "heat": 0.5}, 0.5)}}
    title, *lines = hh.format_table1(results).splitlines()
    assert title == "success rate (%)"
    assert lines[0].split() == ["method", "Pick", "Clean", "Heat", "Cool", "Look", "Pick", "Two", "Average"]
    assert lines[2].split() == ["seed", "100.0", "50.0", "0.0", "25.0", "100.0", "0.0", "46.0"]
    assert lines[3].split() == ["fgo", "100.0", "50.0", "75.0", "25.0", "100.0", "0.0", "55.0"]
    assert hh.format_table1({**results, "args": {"metric": "progress"}}).startswith("sub-goal progress")


def test_progress_metric_gives_partial_credit_by_sub_goal(easy):
    heat = next(g for g in easy if g.task_type == "heat")
    plan = list(heat.expert_plan)
    took = next(i for i, c in enumerate(plan) if c.startswith("take "))
    heated = next(i for i, c in enumerate(plan) if c.startswith("heat "))
    expected = {took: "0/3", took + 1: "1/3", heated + 1: "2/3", len(plan): "3/3"}
    for cut, subgoals in expected.items():
        with hh.episode(heat, max_steps=30) as (env, _):
            for command in plan[:cut]:
                hh.act(command)
            assert "{}/{}".format(*env.subgoals()) == subgoals
            prediction = dspy.Prediction(won=env.won, subgoals=subgoals, trajectory={}, steps=env.steps)
        assert hh.household_progress_metric(None, prediction) == pytest.approx(int(subgoals[0]) / 3)
        assert hh.household_metric(None, prediction) == (1.0 if cut == len(plan) else 0.0)
        feedback = hh.household_progress_metric_with_feedback(None, prediction)
        assert feedback.score == hh.household_progress_metric(None, prediction)
    pick_two = next(g for g in easy if g.task_type == "pick_two")
    with hh.episode(pick_two, max_steps=30) as (env, _):
        first_put = next(i for i, c in enumerate(pick_two.expert_plan) if c.startswith("move "))
        for command in pick_two.expert_plan[:first_put + 1]:
            hh.act(command)
        assert env.subgoals() == (2, 3)
    assert hh.household_progress_metric(None, dspy.Prediction(won=False, subgoals="garbage")) == 0.0


def test_runner_task_takes_the_progress_metric():
    from benchmarks.tasks.registry import load_task

    task = load_task("household", 1, 0, 1, profile="tiny", program="act-commands", metric="progress")
    assert task.metric is hh.household_progress_metric
    assert task.feedback_metric is hh.household_progress_metric_with_feedback
    assert load_task("household", 1, 0, 1, profile="tiny").metric is hh.household_metric
    with pytest.raises(ValueError, match="won"):
        load_task("household", 1, 0, 1, profile="tiny", metric="steps")


def test_watch_describes_each_step_and_the_outcome(easy):
    from benchmarks.tasks.household.watch import describe

    examples = hh.to_examples(easy[:1])
    with dspy.context(lm=scripted_lm(easy[:1])):
        prediction = hh.make_agent(max_iters=25)(**examples[0].inputs())
    text = describe(examples[0], prediction)
    lines = text.splitlines()
    assert lines[0].startswith(f"=== {easy[0].game_id} (pick): won=True steps={easy[0].expert_steps}")
    assert f"sub-goals=2/2 expert={easy[0].expert_steps}" in lines[0]
    commands = [line for line in lines if line.startswith("    ")]
    assert len(commands) == easy[0].expert_steps + 1 and commands[-1].startswith("    finish({})")
    assert "Task completed!" in commands[-2]
