"""Issue 16's mechanisms: itemized rules and their union merge, tie acceptance, the raw-feedback (no
critic) mode, the format check, and the diagnosis record and report."""

import re

import dspy
import pytest
from fakes import RULE, FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO, PAPER_SETTINGS, FGOResult
from dspy_fgo.report import diagnosis_report
from dspy_fgo.rules import (
    RULES_HEADER,
    instruction_problem,
    join_rules,
    parse_rule_list,
    split_rules,
    union_rules,
)


@pytest.fixture
def task_lm():
    task = FakeLM(uppercase_task, model="fake/task")
    with dspy.context(lm=task):
        yield task


def fgo(opt, **kw):
    kw = {"metric": exact_metric, "optimizer_lm": opt, "num_subsets": 4, "epochs": 1, "num_threads": 2, **kw}
    return FGO(**kw)


def program():
    return dspy.Predict("question -> answer")


# ----- rules.py ------------------------------------------------------------------------------------


def test_rules_round_trip_through_the_component_text():
    text = join_rules("Answer the question.", ["Use capitals.", "Be brief."])
    assert RULES_HEADER in text and split_rules(text) == ("Answer the question.", ["Use capitals.", "Be brief."])
    assert join_rules("Answer.", []) == "Answer." and split_rules("Answer.") == ("Answer.", [])


def test_rule_lists_are_parsed_from_bullets_or_numbers_and_near_duplicates_dropped():
    assert parse_rule_list("Here:\n- one rule here\n* two rule\n3. three rule") == ["one rule here", "two rule",
                                                                                     "three rule"]
    assert parse_rule_list("a plain line\nanother") == ["a plain line", "another"]
    cut = "- Look for the word \"Waybill\".\n- Take the 10 digits after it.\n- If the word is present"
    assert parse_rule_list(cut) == ['Look for the word "Waybill".', "Take the 10 digits after it."]  # cut at the token limit
    assert parse_rule_list("- one rule here\n- and a second without a period") == ["one rule here",
                                                                                  "and a second without a period"]
    rules = union_rules([["DHL puts it after Waybill."], ["DHL puts it after Waybill", "FedEx: Airbill."]])
    assert rules == ["DHL puts it after Waybill.", "FedEx: Airbill."]
    named = ['Take the value on the "Order" line.', 'Take the value on the "Code" line.']
    assert union_rules([named, ['Take the value on the "code" line']]) == named  # other lines, other rules


@pytest.mark.parametrize("text, problem", [
    ("self.tracking_number = order_number", "code"),
    ("```python\nprint(x)\n```", "code"),
    ('{"answer": "x"}', "JSON"),
    ("Alphanumeric.", "too short"),
    ("Return 1Z999AA10123456784 as the answer.", "quotes an expected answer"),
])
def test_the_format_check_rejects_what_is_not_an_instruction(text, problem):
    assert problem in instruction_problem(text, answers=["1Z999AA10123456784"])


def test_the_format_check_lets_instructions_and_class_labels_through():
    assert instruction_problem("Route refunds over $500 to the BILLING queue.", answers=["BILLING"]) is None
    assert instruction_problem("Copy the number after 'Waybill:' exactly (10 digits).", answers=["1234567890"]) is None
    assert "too long" in instruction_problem("word " * 70, max_words=60)


# ----- the pipeline with update="rules" -------------------------------------------------------------


def test_rules_mode_adds_rules_and_merges_them_without_a_merge_lm_call(task_lm):
    opt = FakeLM(rule_optimizer, model="fake/opt")
    optimized = fgo(opt, update="rules").compile(program(), trainset=word_examples(12), valset=word_examples(4))
    result = optimized.fgo_result
    base, rules = split_rules(result.final_candidate["self"])
    assert result.final_choice == "optimized" and rules == [RULE] and base == result.seed_candidate["self"]
    assert not [r for r in opt.requests if "merged_text" in r.outputs]  # the union needed no LM
    assert not [r for r in opt.requests if "new_text" in r.outputs]


def neutral_rule_optimizer(request):
    """Proposes a rule that changes no answer of the uppercase task."""
    if "new_rules" in request.outputs:
        return {"new_rules": "- Read the whole question before answering."}
    return rule_optimizer(request)


@pytest.mark.parametrize("acceptance, kept", [("improve", False), ("tie", True)])
def test_tie_acceptance_keeps_a_proposal_that_scores_as_high(task_lm, acceptance, kept):
    opt = FakeLM(neutral_rule_optimizer)
    result = fgo(opt, update="rules", acceptance=acceptance, num_subsets=1).compile(
        program(), trainset=word_examples(3)).fgo_result
    subset = result.subsets[0]
    step = subset.steps[0]
    assert step.score_before == step.score_after == 0.0 and step.accepted is kept
    assert (subset.best_candidate != subset.seed_candidate) is kept


NEUTRAL_RULES = ["Read the whole question first.", "Stay calm and be polite.", "Never mention the weather."]


def numbered_neutral_rules():
    """Proposes a new rule at every call, none of which changes an answer of the uppercase task."""
    rules = iter(NEUTRAL_RULES)

    def handler(request):
        if "new_rules" in request.outputs:
            return {"new_rules": f"- {next(rules)}"}
        return rule_optimizer(request)

    return handler


@pytest.mark.parametrize("acceptance, kept", [("improve", 0), ("tie", 3), ("tie-once", 1)])
def test_tie_once_keeps_the_first_tie_and_then_asks_for_a_higher_score(task_lm, acceptance, kept):
    result = fgo(FakeLM(numbered_neutral_rules()), update="rules", acceptance=acceptance, num_subsets=1,
                 epochs=3, num_threads=1).compile(program(), trainset=word_examples(3)).fgo_result
    subset = result.subsets[0]
    assert [s.score_after for s in subset.steps] == [0.0, 0.0, 0.0]  # three new rules, none of them helps
    assert [s.accepted for s in subset.steps] == [True] * kept + [False] * (3 - kept)
    assert split_rules(subset.best_candidate["self"])[1] == NEUTRAL_RULES[:kept]


def uppercase_unless_told_not_to_shout(request) -> dict:
    """Task LM: the uppercase task, but a "Never shout" rule turns every answer back to lowercase."""
    out = uppercase_task(request)
    return {**out, "answer": out["answer"].lower()} if "Never shout" in request.system else out


@pytest.mark.parametrize("acceptance", ["tie", "climb"])
def test_climb_starts_again_from_the_best_after_a_worse_proposal_and_says_how_it_scored(acceptance):
    rules = iter([RULE, "Never shout at the reader in any answer.", "Keep every answer brief and to the point."])
    opt = FakeLM(lambda r: {"new_rules": f"- {next(rules)}"} if "new_rules" in r.outputs else rule_optimizer(r))
    trainset = word_examples(3)
    trainset[2] = dspy.Example(question="word: stone2", answer="unreachable").with_inputs("question")
    with dspy.context(lm=FakeLM(uppercase_unless_told_not_to_shout, model="fake/task")):
        result = fgo(opt, update="rules", acceptance=acceptance, num_subsets=1, epochs=3, num_threads=1,
                     check_grounding=False).compile(program(), trainset=trainset).fgo_result
    steps = result.subsets[0].steps
    proposals = [r for r in opt.requests if "new_rules" in r.outputs]
    climbed = acceptance == "climb"
    # the walk goes on from the worse text (the paper's) or from the best, 2 of 3 right
    assert [round(s.score_before, 2) for s in steps] == [0.0, 0.67, 0.67 if climbed else 0.0]
    assert ("Never shout" in proposals[2].fields["current_text"]) is not climbed
    note = "Your previous proposal for these same runs scored 0.00 on these runs, not above the current text's 0.67"
    assert (note in proposals[2].fields["feedback"] and "- Never shout at the reader" in proposals[2].fields["feedback"]) is climbed
    assert split_rules(result.subsets[0].best_candidate["self"])[1] == [RULE]


def test_raw_feedback_skips_the_critic_and_shows_the_proposer_the_runs(task_lm):
    opt = FakeLM(rule_optimizer)

    def with_feedback(example, prediction, trace=None):
        return dspy.Prediction(score=exact_metric(example, prediction), feedback="expected uppercase")

    result = fgo(opt, metric=with_feedback, feedback="raw", num_subsets=1).compile(
        program(), trainset=word_examples(3)).fgo_result
    assert not [r for r in opt.requests if "critique" in r.outputs]
    proposals = [r for r in opt.requests if "new_rules" in r.outputs]  # update="rules", the default
    assert proposals and all("Expected:" in r.fields["feedback"] and "Metric feedback: expected uppercase"
                             in r.fields["feedback"] for r in proposals)
    assert result.subsets[0].steps[0].critiques == (None, None, None)
    assert RULE in result.final_candidate["self"]


def code_optimizer(request):
    for key in ("new_text", "new_rules"):  # a rewrite or a rule
        if key in request.outputs:
            return {key: "self.answer = question.upper()"}
    return rule_optimizer(request)


@pytest.mark.parametrize("check, changed", [(True, False), (False, True)])
def test_the_format_check_rejects_a_code_proposal_and_records_why(task_lm, check, changed):
    result = fgo(FakeLM(code_optimizer), check_format=check, num_subsets=1).compile(
        program(), trainset=word_examples(3)).fgo_result
    step = result.subsets[0].steps[0]
    assert step.proposed == {"self": "self.answer = question.upper()"}
    assert bool(step.changed) is changed
    assert ("code" in step.rejected.get("self", "")) is check
    assert result.error_counts.get("proposal check", 0) == int(check) and "optimizer" not in result.error_counts


def test_rules_never_take_a_component_over_max_component_tokens(task_lm):
    """Each reply of 20 rules is within the cap, but the rules pile up (ties kept): those that do not fit are
    rejected, as an oversized rewrite is."""
    from dspy_fgo.budget import count_tokens

    def many_rules(request):
        if "new_rules" in request.outputs:  # distinct quoted phrases: no two rules are duplicates
            n = len(request.fields.get("current_text", ""))
            return {"new_rules": "\n".join(f'- Check the "part {n}-{i}" line step by step.' for i in range(20))}
        return rule_optimizer(request)

    result = fgo(FakeLM(many_rules), num_subsets=1, epochs=3, max_component_tokens=500).compile(
        program(), trainset=word_examples(3)).fgo_result
    subset = result.subsets[0]
    assert len(split_rules(subset.best_candidate["self"])[1]) > 20  # a second step added what fit
    assert count_tokens(subset.best_candidate["self"]) <= 500
    assert any("over max_component_tokens=500" in step.rejected.get("self", "") for step in subset.steps)


def test_bad_mode_names_are_clear_errors():
    for kw in ({"feedback": "none"}, {"update": "append"}, {"acceptance": "always"}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            FGO(metric=exact_metric, **kw)


# ----- the record and the diagnosis view ------------------------------------------------------------


def per_category_optimizer(request):
    """Each subset learns the rule in its own words (so merges have texts to merge); the merge LM writes a
    text that loses the rule (a worse merge, which the back-test must reject)."""
    import re

    if "new_text" in request.outputs:
        category = re.search(r"category: (c\d)", request.fields.get("feedback", ""))
        return {"new_text": f"{RULE} Learned on {category.group(1) if category else 'c?'}."}
    if "merged_text" in request.outputs:
        return {"merged_text": "Answer in lowercase."}
    return rule_optimizer(request)


def test_the_record_keeps_critiques_proposals_and_a_rejected_merge_and_the_report_shows_them(task_lm, tmp_path):
    """The paper's path: critiques, rewrites and an LM merge."""
    result = fgo(FakeLM(per_category_optimizer), **PAPER_SETTINGS, partition="category", num_subsets=None).compile(
        program(), trainset=word_examples(9), valset=word_examples(3)).fgo_result
    step = result.subsets[0].steps[0]
    assert step.critiques and all("uppercase" in c for c in step.critiques)
    assert RULE in step.proposed["self"] and step.accepted
    root = result.merge_root
    assert root.children and root.proposed["self"] == "Answer in lowercase." and root.proposed_score == 0.0
    assert root.candidate != root.proposed and "kept the member" in root.note
    path = tmp_path / "run.json"
    result.to_json(path)
    back = FGOResult.load(path)
    assert back.subsets[0].steps[0].critiques == step.critiques
    assert back.merge_root.proposed == root.proposed
    report = diagnosis_report(back)
    assert "critique: The expected answer is in capitals" in report
    assert "proposed [self]: Always answer in UPPERCASE. Learned on c" in report and "[kept]" in report
    assert "merged [self] (0.00): Answer in lowercase." in report
    assert report.startswith("fgo: chose optimized")


# ----- evidence: where the expected and the predicted values sit in the input ---------------------------


def test_evidence_names_the_input_lines_of_the_expected_and_the_predicted_value():
    from dspy_fgo.rollout import Trajectory, evidence_lines, render_trajectory

    note = "Track your order: 5551234\nWaybill: 1234567890\nInvoice: INV-1"
    wrong = Trajectory(0, {"notification": note}, {"tracking_number": "1234567890"}, {"tracking_number": "5551234"}, 0.0)
    lines = " ".join(evidence_lines(wrong))
    assert "the expected tracking_number sits in the input line: Waybill: 1234567890" in lines
    assert "the predicted tracking_number sits in the input line: Track your order: 5551234" in lines
    invented = Trajectory(1, {"notification": note}, {"tracking_number": "1234567890"}, {"tracking_number": "XYZ"}, 0.0)
    assert any("predicted tracking_number is not in the input" in line for line in evidence_lines(invented))
    right = Trajectory(2, {"notification": note}, {"tracking_number": "1234567890"}, {"tracking_number": "1234567890"},
                       1.0)
    assert evidence_lines(right) == []
    assert "Evidence:" in render_trajectory(wrong, 500, evidence=True)
    assert "Evidence:" not in render_trajectory(wrong, 500)


def test_evidence_reaches_the_proposer_when_asked(task_lm):
    opt = FakeLM(rule_optimizer)
    fgo(opt, feedback="raw", evidence=True, num_subsets=1).compile(program(), trainset=word_examples(3))
    proposals = [r for r in opt.requests if "new_rules" in r.outputs]
    assert proposals and all("the predicted answer sits in the input line: word:" in r.fields["feedback"]
                             for r in proposals)


# ----- the grounding check: rules that point at a phrase never on the answer's line ----------------------


NOTE = "Track your order: 5551234\nWaybill: {n}\nInvoice: INV-1"


@pytest.mark.parametrize("rule, problem", [
    ('Look for the text "Track your order: " and extract the number.', "'track your order'"),
    ("Use the `Invoice` line.", "'invoice'"),
    ('The tracking number follows "Waybill".', None),  # the answer's own line
    ('Ignore the "Track your order" line.', None),  # steering away from a decoy is not judged
    ('Look for "Reference no." in the input.', None),  # a phrase no input has says nothing
    ('If the number is not present, look for the word "Track your order:" and extract it.', "'track your order"),
    ('Use the "Waybill" line, not just "Track your order".', None),  # a negated sentence is not judged
    ('Ignore the "Track your order", "Invoice" and "Waybill" lines.', None),  # nor a negated list
])
def test_the_grounding_check_rejects_rules_pointing_at_a_decoy_line(rule, problem):
    from dspy_fgo.rules import ungrounded_cue

    runs = [(NOTE.format(n=n), [f"Waybill: {n}"]) for n in ("1234567890", "2345678901")]
    found = ungrounded_cue(rule, runs)
    assert (found is None) if problem is None else (problem in found and "2 inputs have it" in found)
    assert ungrounded_cue(rule, runs[:1]) is None  # one input is too few to judge a cue


def test_answer_lines_bring_the_label_of_a_value_on_its_own_line():
    from dspy_fgo.rollout import Trajectory, answer_lines

    traj = Trajectory(0, {"note": "Ref: X1\nTracking number:\n1234567\nOrder 99"}, {"tracking": "1234567"}, None, 0.0)
    assert answer_lines(traj) == ["Tracking number:", "1234567"]


def decoy_task(request) -> dict:
    """Task LM: answers the "Order" line's value unless the instructions point at "Code"."""
    lines = dict(line.split(": ") for line in request.fields.get("question", "").splitlines())
    return {"answer": lines["Code"] if '"Code"' in request.system else lines["Order"]}


def decoy_optimizer(request) -> dict:
    if "new_rules" in request.outputs:
        return {"new_rules": '- Take the value on the "Order" line.\n- Take the value on the "Code" line.'}
    return rule_optimizer(request)


@pytest.mark.parametrize("grounding", [True, False])
def test_grounding_check_drops_the_decoy_rule_in_a_run(grounding):
    train = [dspy.Example(question=f"Order: 55{i}\nCode: C{i}7", answer=f"C{i}7").with_inputs("question")
             for i in range(4)]
    with dspy.context(lm=FakeLM(decoy_task, model="fake/task")):
        result = fgo(FakeLM(decoy_optimizer), update="rules", feedback="raw", check_grounding=grounding,
                     num_subsets=1).compile(program(), trainset=train).fgo_result
    step = result.subsets[0].steps[0]
    text = result.subsets[0].best_candidate["self"]
    assert '"Code" line' in text
    assert ('"Order" line' in text) is not grounding
    assert ("'order'" in step.rejected.get("self", "")) is grounding


# ----- rule ablation after a merge --------------------------------------------------------------------


def c0_learns_the_rule(other_rules: str):
    """An optimizer: subset c0 learns the uppercase rule, every other subset ``other_rules`` (that change nothing)."""

    def handler(request):
        if "new_rules" in request.outputs:
            category = re.search(r"category: (c\d)", request.fields.get("feedback", ""))
            return {"new_rules": f"- {RULE}" if category and category.group(1) == "c0" else other_rules}
        return rule_optimizer(request)

    return handler


two_rule_optimizer = c0_learns_the_rule("- Be polite to the user at all times.")
three_rule_optimizer = c0_learns_the_rule("- Be polite to the user at all times.\n- Greet the reader warmly first.")


@pytest.mark.parametrize("prune", [True, False])
def test_pruning_drops_the_rule_that_does_not_help_and_keeps_the_one_that_does(task_lm, prune):
    result = fgo(FakeLM(two_rule_optimizer), update="rules", acceptance="tie", partition="category", num_subsets=None,
                 merge_clustering="none", prune_rules=prune).compile(
        program(), trainset=word_examples(6, categories=2), valset=word_examples(2)).fgo_result
    root = result.merge_root
    assert "Be polite" in root.proposed["self"] and RULE in root.proposed["self"]
    assert RULE in root.candidate["self"] and root.score == 1.0
    assert ("Be polite" in root.candidate["self"]) is not prune
    assert ("pruned 1 of 2 rules tried" in root.note) is prune
    leaf_c0 = next(n for n in root.children if n.categories == ["c0"])
    assert (root.candidate == leaf_c0.candidate) is prune  # pruned back to the rule that scores
    assert ("pruned [self]: Be polite to the user at all times." in diagnosis_report(result)) is prune


@pytest.mark.parametrize("backtest", ["full", "half"])
def test_pruning_after_a_half_back_test_ablates_on_the_half_the_merge_was_decided_on(task_lm, backtest):
    result = fgo(FakeLM(three_rule_optimizer), update="rules", acceptance="tie", partition="category",
                 num_subsets=None, merge_clustering="none", prune_rules=True, backtest=backtest).compile(
        program(), trainset=word_examples(12, categories=2), valset=word_examples(2)).fgo_result
    root = result.merge_root
    assert root.candidate["self"].count("- ") == 1 and RULE in root.candidate["self"]
    # only the first ablation (without "Greet ...") is a new text; it runs on the union of 12 or on the 6 the
    # half back-test decided on (the merged text's runs there are known); the others' runs are in the ledger
    assert f"pruned 2 of 3 rules tried ({12 if backtest == 'full' else 6} runs)" in root.note
    assert root.estimated is (backtest == "half")


@pytest.mark.parametrize("rounds", [True, False])
def test_pruning_in_a_round_spends_one_union_back_test_so_that_the_rest_goes_to_the_next_round(task_lm, rounds):
    result = fgo(FakeLM(three_rule_optimizer), update="rules", acceptance="tie", partition="category",
                 num_subsets=None, merge_clustering="none", prune_rules=True, epochs=None, max_metric_calls=400,
                 rounds=rounds).compile(program(), trainset=word_examples(12, categories=2),
                                        valset=word_examples(2)).fgo_result
    first = result.rounds[0] if rounds else result
    assert bool(result.rounds) is rounds
    # the first ablation runs on the 12 examples of the union; in a round a second would pass its 12 runs
    if rounds:
        assert "pruned 1 of 1 rules tried (12 runs), union 1.000; stopped at its 12 runs" in first.merge_root.note
    else:
        assert "pruned 2 of 3 rules tried (12 runs)" in first.merge_root.note


def two_category_examples() -> list[dspy.Example]:
    """Four c0 words and two c1 words, every answer in capitals."""
    return [ex.copy(category="c0" if i < 4 else "c1") for i, ex in enumerate(word_examples(6))]


def c1_rule_breaks_c0_task(request) -> dict:
    """Task LM: c0 words come in capitals under RULE unless "Never shout" is there too; c1 words under "CAPITALS"."""
    word = request.fields.get("question", "").split(":")[-1].strip()
    c1 = int(word[-1]) >= 4
    shout = "CAPITALS" in request.system if c1 else "UPPERCASE" in request.system and "Never shout" not in request.system
    return {"answer": word.upper() if shout else word.lower()}


def c0_and_c1_rules(request) -> dict:
    """c0 learns RULE; c1 learns a rule that fixes its words and one that breaks c0's."""
    if "new_rules" in request.outputs:
        category = re.search(r"category: (c\d)", request.fields.get("feedback", "")).group(1)
        return {"new_rules": f"- {RULE}" if category == "c0" else "- Write it in CAPITALS.\n- Never shout at anyone."}
    return rule_optimizer(request)


@pytest.mark.parametrize("prune", [True, "all"])
def test_pruning_all_merges_passes_up_a_lost_merge_once_the_rule_that_broke_it_is_dropped(prune):
    with dspy.context(lm=FakeLM(c1_rule_breaks_c0_task, model="fake/task")):
        result = fgo(FakeLM(c0_and_c1_rules), partition="category", num_subsets=None, merge_clustering="none",
                     prune_rules=prune).compile(program(), trainset=two_category_examples(),
                                                valset=two_category_examples()).fgo_result
    root = result.merge_root
    assert "Never shout" in root.proposed["self"] and root.proposed_score == 2 / 6  # the union broke c0's words
    c0 = next(n for n in root.children if n.categories == ["c0"])
    assert c0.score == 1.0 and "kept the member" in root.note
    if prune is True:  # a lost merge is not pruned: the member goes up
        assert root.candidate == c0.candidate and root.score == 4 / 6 and "pruned" not in root.note
    else:  # without "Never shout" the merge fixes both categories: passed up over the member
        assert RULE in root.candidate["self"] and "CAPITALS" in root.candidate["self"]
        assert "Never shout" not in root.candidate["self"] and root.score == 1.0
        assert "pruned 1 of 3 rules tried" in root.note and "passed up" in root.note
        assert result.final_candidate == root.candidate
    with pytest.raises(ValueError, match="prune_rules must be one of"):
        FGO(metric=exact_metric, prune_rules="yes")


def four_rule_optimizer(request):
    """c0 and c2 learn an uppercase rule each (in other words), every subset a rule of its own that changes nothing."""
    import re

    if "new_rules" in request.outputs:
        c = int(re.search(r"category: c(\d)", request.fields.get("feedback", "")).group(1))
        useful = {0: f"- {RULE}\n", 2: "- Write the answer in UPPERCASE characters.\n"}.get(c, "")
        junk = ["Be polite to the user at all times.", "Greet the reader warmly first.",
                "Keep every reply short and plain.", "Never use emoji in the reply."][c]
        return {"new_rules": f"{useful}- {junk}"}
    return rule_optimizer(request)


def test_pruning_leaves_the_merges_above_the_budget_they_are_planned_to_need(task_lm):
    result = fgo(FakeLM(four_rule_optimizer), update="rules", acceptance="tie", partition="category", num_subsets=None,
                 merge_threshold=2, prune_rules=True, num_threads=1, max_metric_calls=48).compile(
        program(), trainset=word_examples(8, categories=4), valset=word_examples(2)).fgo_result
    root = result.merge_root
    assert len(root.children) == 2 and all(not c.is_leaf for c in root.children)  # two levels of merges
    assert root.note.startswith("merged")  # pruning below did not spend the root's back-test (it did before)
    assert RULE in root.candidate["self"] and "UPPERCASE characters" in root.candidate["self"]
    assert any("16 runs kept for the merges above" in c.note for c in root.children)  # 2 * 8 runs for one level


def test_pruning_needs_rules():
    with pytest.raises(ValueError, match="update='rules'"):
        FGO(metric=exact_metric, update="rewrite", prune_rules=True)
    # unset, pruning is on exactly when there are rules to prune
    assert FGO(metric=exact_metric).prune_rules is True
    assert FGO(metric=exact_metric, update="rewrite").prune_rules is False


def test_where_an_lm_is_served_does_not_change_the_run_fingerprint():
    from dspy_fgo.persist import describe_lm

    a = dspy.LM("openai/qwen0.5b", api_base="http://127.0.0.1:41001/v1", temperature=0.0)
    b = dspy.LM("openai/qwen0.5b", api_base="http://127.0.0.1:52002/v1", temperature=0.0)
    assert describe_lm(a) == describe_lm(b)  # a rerun's local server gets a new port and must still resume
    assert describe_lm(a) != describe_lm(dspy.LM("openai/qwen0.5b", api_base="http://x/v1", temperature=0.7))


def test_a_forked_run_redoes_only_the_merges_with_other_merge_settings(task_lm, tmp_path):
    from dspy_fgo import fork_subsets

    def run(log_dir, prune, opt):
        return fgo(opt, update="rules", acceptance="tie", partition="category", num_subsets=None,
                   merge_clustering="none", prune_rules=prune, log_dir=str(log_dir)).compile(
            program(), trainset=word_examples(6, categories=2), valset=word_examples(2)).fgo_result

    first = run(tmp_path / "plain", False, FakeLM(two_rule_optimizer))
    fork_subsets(tmp_path / "plain", tmp_path / "pruned")
    opt = FakeLM(two_rule_optimizer)
    pruned = run(tmp_path / "pruned", True, opt)
    assert pruned.resumed["subsets"] == 2 and opt.calls == 0  # rules merges need no LM: nothing redone but merges
    assert [s.best_candidate for s in pruned.subsets] == [s.best_candidate for s in first.subsets]
    assert "Be polite" in first.merge_root.candidate["self"] and "Be polite" not in pruned.merge_root.candidate["self"]
    stages = first.accounting["stages"]
    before = sum(stages[s]["metric_calls"] for s in stages if s not in ("merge", "select"))
    assert pruned.accounting["stages"]["optimize"] == stages["optimize"]  # carried over, not counted again
    # (a stage that spent nothing is not in the accounting: with valset_candidates=4 the first run scored
    # the pruned root, a leaf, on the valset, and the fork carried those scores over)
    assert pruned.accounting["metric_calls"] == before + sum(
        pruned.accounting["stages"].get(s, {"metric_calls": 0})["metric_calls"] for s in ("merge", "select"))
    with pytest.raises(ValueError, match="not empty"):
        fork_subsets(tmp_path / "plain", tmp_path / "pruned")
    with pytest.raises(ValueError, match="no finished subsets"):
        fork_subsets(tmp_path / "nothing", tmp_path / "other")


def test_a_forked_run_with_the_same_settings_spends_what_the_original_spent_on_its_merges(task_lm, tmp_path):
    from dspy_fgo import fork_subsets

    def run(log_dir):
        return fgo(FakeLM(two_rule_optimizer), update="rules", acceptance="tie", partition="category",
                   num_subsets=None, merge_clustering="none", prune_rules=True, backtest="race",
                   log_dir=str(log_dir)).compile(program(), trainset=word_examples(6, categories=2),
                                                 valset=word_examples(2)).fgo_result

    first = run(tmp_path / "first")
    fork_subsets(tmp_path / "first", tmp_path / "again")
    again = run(tmp_path / "again")
    assert again.merge_root.candidate == first.merge_root.candidate
    # the subsets' scores come back with them: the race and the pruning reuse them as the original run did
    assert again.accounting["stages"]["merge"]["metric_calls"] == first.accounting["stages"]["merge"]["metric_calls"]


def test_rules_under_an_empty_text_start_with_the_header_and_split_back():
    text = join_rules("", ["Use the ISO date."])
    assert text.startswith(RULES_HEADER) and split_rules(text) == ("", ["Use the ISO date."])
