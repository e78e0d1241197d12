import json

import dspy
import pytest
from fakes import FakeLM

from dspy_fgo import FGO, PAPER_SETTINGS, Candidate, load_program, save_program
from dspy_fgo.rules import split_rules


def convert(value: str) -> str:
    """Does something."""
    return str(int(value) * 1000)


def make_agent():
    return dspy.ReAct("question -> answer", tools=[dspy.Tool(convert)], max_iters=3)


def examples(n=8):
    return [dspy.Example(question=f"How many grams is {i} kg?", answer=str(i * 1000)).with_inputs("question")
            for i in range(1, n + 1)]


def metric(example, prediction, trace=None):
    return float(str(prediction.answer).strip() == example.answer)


def agent_lm(request):
    """Calls the tool only when its description says it converts kilograms to grams."""
    question = request.fields.get("question", "")
    trajectory = request.user  # the trajectory field holds nested [[ ## ... ## ]] headers: read the raw text
    if "next_tool_name" in request.outputs:
        if "kilograms to grams" in request.system and "observation_0" not in trajectory:
            kg = question.split("is ")[1].split(" kg")[0]
            return {"next_thought": "convert", "next_tool_name": "convert", "next_tool_args": json.dumps({"value": kg})}
        return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": "{}"}
    observation = trajectory.split("[[ ## observation_0 ## ]]\n")[1].split("\n")[0] if "observation_0" in trajectory else "?"
    return {"reasoning": "from the tool", "answer": observation}


def tool_optimizer(request):
    if "critique" in request.outputs:
        tools_unused = "Tool call 1: convert" not in request.fields["trajectory"]
        return {"critique": "The convert tool was never used; its description should say it converts kilograms to grams."
                if tools_unused else "Fine."}
    if "new_text" in request.outputs or "new_rules" in request.outputs:
        name, current = request.fields["component_name"], request.fields["current_text"]
        feedback = request.fields["feedback"]
        # the critic said so, or the raw runs (feedback="raw") show the tool never called
        unused = "kilograms to grams" in feedback or (
            "Critique:" not in feedback and "Tool call 1: convert" not in feedback)
        text = {"tool:convert": "Converts kilograms to grams: pass the number of kilograms as `value`."
                if unused else None, "tool:convert.value": "the number of kilograms, e.g. 3"}.get(name)
        if "new_rules" in request.outputs:
            return {"new_rules": f"- {text}" if text and text not in current else ""}
        return {"new_text": text or current}
    if "merged_text" in request.outputs:
        return {"merged_text": request.fields["versions"].split("\n")[1]}
    if "lessons" in request.outputs:
        return {"lessons": "mention kilograms to grams"}
    raise AssertionError(request.outputs)


def run(components, **settings):
    with dspy.context(lm=FakeLM(agent_lm, model="fake/agent")):
        return FGO(metric=metric, optimizer_lm=FakeLM(tool_optimizer), components=components, num_subsets=2,
                   epochs=1, num_threads=2, **settings).compile(make_agent(), trainset=examples(), valset=examples(3))


@pytest.mark.parametrize("settings", [{}, PAPER_SETTINGS], ids=["rules", "paper"])
def test_fgo_rewrites_tool_descriptions_and_the_agent_starts_using_the_tool(settings):
    optimized = run("all", **settings)
    result = optimized.fgo_result
    assert "kilograms to grams" in result.final_candidate["tool:convert"]
    value = result.final_candidate["tool:convert.value"]  # the seed's is empty
    assert (value == "the number of kilograms, e.g. 3") if settings else (
        split_rules(value) == ("", ["the number of kilograms, e.g. 3"]))
    assert result.val_scores == {"seed": 0.0, "optimized": 1.0}
    assert "kilograms to grams" in optimized.react.signature.instructions


def test_instructions_only_leaves_the_tools_alone():
    result = run("instructions").fgo_result
    assert set(result.final_candidate) == {"self"}
    assert result.final_choice == "seed"


@pytest.mark.parametrize("feedback,reader,field", [("critique", "critique", "trajectory"),
                                                   ("raw", "new_rules", "feedback")])
def test_tool_calls_are_shown_to_the_critic(feedback, reader, field):
    """To the critic, or with feedback="raw" (the default) to the proposer reading the runs."""
    optimizer_lm = FakeLM(tool_optimizer)
    good = Candidate.from_program(make_agent()).updated({"tool:convert": "Converts kilograms to grams."})
    with dspy.context(lm=FakeLM(agent_lm)):
        FGO(metric=lambda e, p, t=None: 0.0, optimizer_lm=optimizer_lm, num_subsets=1, epochs=1,
            critique_successes=True, feedback=feedback).compile(good.apply(make_agent()), trainset=examples(2))
    trajectories = [r.fields[field] for r in optimizer_lm.requests if reader in r.outputs]
    assert trajectories and all("Tool call 1: convert" in t and "observation: " in t for t in trajectories)


def prompt_of(agent, question="How many grams is 2 kg?"):
    adapter = dspy.ChatAdapter()
    messages = adapter.format(agent.react.signature, agent.react.demos, {"question": question, "trajectory": ""})
    return json.dumps(messages)


def test_save_and_load_round_trip_restores_tool_descriptions(tmp_path):
    optimized = run("all")
    save_program(optimized, tmp_path / "agent.json")
    fresh = make_agent()
    assert prompt_of(fresh) != prompt_of(optimized)
    loaded = load_program(fresh, tmp_path / "agent.json")
    assert prompt_of(loaded) == prompt_of(optimized)
    assert loaded.tools["convert"].desc == optimized.tools["convert"].desc
    assert Candidate.from_program(fresh)["tool:convert"] == "Does something."  # fresh program untouched


def test_loading_into_a_differently_built_program_is_refused(tmp_path):
    save_program(make_agent(), tmp_path / "agent.json")
    with pytest.raises(ValueError, match="does not fit"):
        load_program(dspy.Predict("question -> answer"), tmp_path / "agent.json")
