import dspy
import pytest

from dspy_fgo import Candidate


class TwoStep(dspy.Module):
    def __init__(self):
        super().__init__()
        self.draft = dspy.ChainOfThought("question -> draft")
        self.answer = dspy.Predict("question, draft -> answer")

    def forward(self, question):
        draft = self.draft(question=question).draft
        return self.answer(question=question, draft=draft)


def test_read_apply_round_trip_on_several_predictors():
    program = TwoStep()
    seed = Candidate.from_program(program)
    assert set(seed) == {"draft.predict", "answer"}
    new = seed.updated({"draft.predict": "Write a draft.", "answer": "Answer from the draft."})
    applied = new.apply(program)
    assert Candidate.from_program(applied) == new
    assert applied.draft.predict.signature.instructions == "Write a draft."
    # the original is untouched, and the other signature parts are kept
    assert Candidate.from_program(program) == seed
    assert list(applied.draft.predict.signature.output_fields) == ["reasoning", "draft"]


def test_candidate_is_immutable_and_json_round_trips(tmp_path):
    c = Candidate({"a": "x", "b": "y"})
    with pytest.raises(TypeError):
        c["a"] = "z"
    with pytest.raises(KeyError):
        c.updated({"nope": "z"})
    c.to_json(tmp_path / "c.json")
    assert Candidate.from_json(tmp_path / "c.json") == c
    assert hash(c) == hash(Candidate({"b": "y", "a": "x"}))
    assert c.updated({"a": "z"}).changed_components(c) == ["a"]


def lookup_city(city: str) -> str:
    """Look up."""
    return f"{city}: sunny"


def test_react_tools_are_components_and_applying_rebuilds_the_prompt():
    agent = dspy.ReAct("question -> answer", tools=[lookup_city], max_iters=2)
    seed = Candidate.from_program(agent)
    assert set(seed) == {"self", "tool:lookup_city", "tool:lookup_city.city"}
    assert seed["tool:lookup_city"] == "Look up."
    new = seed.updated({
        "self": "Answer weather questions.",
        "tool:lookup_city": "Returns today's weather for a city name.",
        "tool:lookup_city.city": "The city's English name, e.g. Paris.",
    })
    applied = new.apply(agent)
    instructions = applied.react.signature.instructions
    assert instructions.startswith("Answer weather questions.")
    assert "<desc>Returns today's weather for a city name.</desc>" in instructions
    assert "The city's English name, e.g. Paris." in instructions
    assert "finish" in instructions  # DSPy's own tool list is intact
    assert applied.extract.predict.signature.instructions == "Answer weather questions."
    assert Candidate.from_program(applied) == new
    assert agent.tools["lookup_city"].desc == "Look up."  # the original agent is untouched
    assert Candidate.from_program(agent, components="instructions") == Candidate({"self": seed["self"]})
    assert set(Candidate.from_program(agent, components="tools")) == {"tool:lookup_city", "tool:lookup_city.city"}


def test_unknown_component_kind_is_an_error():
    with pytest.raises(ValueError, match="components must be one of"):
        Candidate.from_program(TwoStep(), components="demos")
