"""The stock agent task: the tools answer only with site codes and SKUs, and a scripted agent that reads
the tool texts succeeds with the hand-written ones and fails with the seed's."""

import json
import re

import dspy
from fakes import FakeLM

from benchmarks.tasks import stock
from benchmarks.tasks.registry import load_task
from benchmarks.tasks.short import ShortTask
from dspy_fgo import Candidate


def test_tools_want_site_codes_and_skus():
    assert re.fullmatch(r"SKU-0042 at ES2: \d+ units on hand", stock.stock_level("sku-0042", "ES2"))
    assert stock.stock_level("SKU-0042", "Madrid") == "unknown site 'Madrid'"
    assert stock.stock_level("item 42", "ES2") == "unknown item 'item 42'"
    assert "open orders" in stock.open_orders("SKU-0042", "ES2")


def test_the_label_is_what_stock_level_says_and_no_decoy_equals_it():
    for row in stock.TASK.generate(200, seed=0):
        assert row["sku"][4:] in row["question"] and row["category"] in row["question"]
        assert stock.stock_level(row["sku"], row["site"]).endswith(f": {row['answer']} units on hand")
        assert row["answer"] not in row["decoys"]
        assert row["decoys"][0] in stock.open_orders(row["sku"], row["site"])


def test_hand_written_program_changes_only_tool_texts():
    seed, hand = stock.TASK.make_program(), stock.TASK.make_program(hand_written=True)
    head = stock.TASK.signature.instructions
    assert seed.react.signature.instructions.startswith(head) and hand.react.signature.instructions.startswith(head)
    assert seed.extract.predict.signature.instructions == hand.extract.predict.signature.instructions
    assert seed.tools["stock_level"].desc == "Stock." and "ES2 = Madrid" in str(hand.tools["stock_level"].args)
    seed_texts, hand_texts = Candidate.from_program(seed).to_dict(), Candidate.from_program(hand).to_dict()
    changed = {name for name in seed_texts if seed_texts[name] != hand_texts[name]}
    assert seed_texts["self"] == hand_texts["self"] and changed == set(seed_texts) - {"self"}  # FGO's components


def reading_agent(request):
    """Passes the site code and the SKU only when the tool texts give them; answers from the observation."""
    question, trajectory = request.fields.get("question", ""), request.user
    if "next_tool_name" in request.outputs:
        if "observation_0" in trajectory:
            return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": "{}"}
        city = next(c for c in stock.SITES if c in question)
        number = re.search(r"\d{4}", question).group()
        knows = f"{stock.SITES[city]} = {city}" in request.system and '"SKU-" and 4 digits' in request.system
        args = {"item": f"SKU-{number}", "site": stock.SITES[city]} if knows else {"item": number, "site": city}
        return {"next_thought": "look it up", "next_tool_name": "stock_level", "next_tool_args": json.dumps(args)}
    observation = trajectory.split("[[ ## observation_0 ## ]]\n")[1].split("\n")[0]
    numbers = re.findall(r": (\d+) units", observation)
    return {"reasoning": "from the tool", "answer": numbers[0] if numbers else "unknown"}


def test_with_a_scripted_agent_the_hand_written_tool_texts_are_the_headroom(tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.tasks.short.CACHE_DIR", tmp_path)
    spec = load_task("stock", train=0, val=0, test=8, seed=0)
    assert isinstance(stock.TASK, ShortTask) and {ex.category for ex in spec.test} == set(stock.SITES)
    with dspy.context(lm=FakeLM(reading_agent)):
        seed = [spec.metric(ex, spec.program_factory()(**ex.inputs())) for ex in spec.test]
        hand = [spec.metric(ex, spec.hand_written_program()(**ex.inputs())) for ex in spec.test]
    assert seed == [0.0] * 8 and hand == [1.0] * 8
    feedback = spec.feedback_metric(spec.test[0], dspy.Prediction(answer="unknown")).feedback
    assert stock.SITES[spec.test[0].category] in feedback


def test_normalize_takes_the_first_number():
    assert stock.normalize("1,204 units") == "1204" and stock.normalize("none") == "none"
