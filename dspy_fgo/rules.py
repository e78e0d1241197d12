"""Itemized rules: a component's text as its base text plus a list of learned rules, and the checks that
keep proposals instructions (not code, JSON or a restated answer).

With ``update="rules"`` a step adds rules to a component instead of rewriting it, and a merge is the
union of its members' rules with duplicates dropped (no LM call unless the union is over the length
cap): the incremental updates ACE (Agentic Context Engineering, 2025) uses against the "context
collapse" of monolithic rewrites by a small LM. The text stays one plain instruction DSPy can use::

    Extract the tracking number from the shipping notification.

    Rules learned from examples:
    - DHL puts the tracking number after "Waybill:".
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence

RULES_HEADER = "Rules learned from examples:"
MAX_RULE_WORDS = 60
DUPLICATE_RATIO = 0.85  # difflib similarity above which two rules are the same rule
SENTENCE_ENDS = (".", "!", "?", ":", ";", '"', "'", ")", "]", "`", "*")  # how a complete rule ends

_CODE = re.compile(r"```|^\s*(def |class |import |from \S+ import |return |print\()|\bself\.\w+\s*=|^\s*\w+\s*=\s*\S",
                   re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.*\S)\s*$")


def split_rules(text: str) -> tuple[str, list[str]]:
    """(base text, rules) of a component text; a text without the rules header has no rules."""
    base, header, rest = text.partition(RULES_HEADER)
    if not header:
        return text.strip(), []
    return base.strip(), [m.group(1) for line in rest.splitlines() if (m := _BULLET.match(line))]


def join_rules(base: str, rules: Sequence[str]) -> str:
    """The component text of ``base`` plus ``rules`` (just ``base`` when there are none; an empty base,
    as a tool argument's description often is, gets the rules alone)."""
    if not rules:
        return base.strip()
    head = f"{base.strip()}\n\n" if base.strip() else ""
    return f"{head}{RULES_HEADER}\n" + "\n".join(f"- {r}" for r in rules)


def parse_rule_list(reply: str) -> list[str]:
    """The rules of an LM reply: its bulleted or numbered lines (or, with none, its non-empty lines),
    without a last rule cut off mid-sentence (a reply stopped at its token limit: every other rule ends
    a sentence, the last does not, as in "- If the immediately")."""
    lines = [line for line in (reply or "").splitlines() if line.strip()]
    bullets = [m.group(1) for line in lines if (m := _BULLET.match(line))]
    rules = [r.strip() for r in (bullets or [line.strip() for line in lines])]
    if len(rules) >= 2 and all(ends_sentence(r) for r in rules[:-1]) and not ends_sentence(rules[-1]):
        return rules[:-1]
    return rules


def ends_sentence(rule: str) -> bool:
    return rule.rstrip().endswith(SENTENCE_ENDS)


def is_duplicate(rule: str, others: Iterable[str]) -> bool:
    """A near-copy of one of ``others``: similar words and the same quoted phrases (rules that name
    different lines, 'the "Waybill" line' and 'the "Label no." line', are different rules)."""
    key, cues = _normal(rule), quoted_phrases(rule)
    return any(quoted_phrases(o) == cues and difflib.SequenceMatcher(None, key, _normal(o)).ratio() >= DUPLICATE_RATIO
               for o in others)


def quoted_phrases(text: str) -> set[str]:
    """The quoted phrases of ``text``, lowercased, without a trailing colon."""
    return {next(g for g in m.groups() if g is not None).strip().rstrip(":").strip().lower()
            for m in _QUOTED.finditer(text)}


def union_rules(rule_lists: Iterable[Sequence[str]]) -> list[str]:
    """All rules in order of first appearance, near-duplicates dropped."""
    out: list[str] = []
    for rules in rule_lists:
        for rule in rules:
            if not is_duplicate(rule, out):
                out.append(rule)
    return out


def instruction_problem(text: str, answers: Iterable[str] = (), max_words: int | None = None) -> str | None:
    """Why ``text`` is not a usable instruction (code, JSON, a restated answer, too short or too long), or None.

    ``answers`` are the expected answers of the examples the proposal was made from: an instruction that
    quotes an example-specific one (an id, a number: four characters or more with a digit) verbatim teaches
    the task LM to copy it (a small model does) instead of a rule. Class labels ("BILLING") may be named.
    """
    stripped = text.strip()
    if _CODE.search(stripped):
        return "looks like code, not an instruction"
    if stripped[:1] in "{[":
        try:
            json.loads(stripped)
            return "is JSON, not an instruction"
        except ValueError:
            pass
    words = len(stripped.split())
    if words < 3:
        return f"too short to be an instruction ({words} words)"
    if max_words is not None and words > max_words:
        return f"too long for one rule ({words} words > {max_words})"
    quoted = next((a for a in answers if len(a) >= 4 and any(c.isdigit() for c in a) and a in stripped), None)
    if quoted is not None:
        return f"quotes an expected answer verbatim ({quoted!r})"
    return None


_QUOTED = re.compile(r'"([^"\n]{2,60})"|\u201c([^\u201d\n]{2,60})\u201d|`([^`\n]{2,60})`|(?<!\w)\'([^\'\n]{2,60})\'(?!\w)')
_NEGATION = re.compile(r"\b(not|never|ignore|avoid|don'?t|instead|except|rather|unless|other than|skip|exclude|"
                       r"neither|nor|without|but)\b", re.IGNORECASE)
_CONDITION = re.compile(r"\s*(if|when|whenever|in case|otherwise)\b", re.IGNORECASE)
MIN_GROUNDING_RUNS = 2  # inputs holding a cue before the check says anything about it


def ungrounded_cue(text: str, runs: Sequence[tuple[str, Sequence[str]]]) -> str | None:
    """Why ``text`` points the task LM at the wrong place, or None: a sentence that tells it to use a quoted
    phrase of the inputs ("Look for the "Track your order" line") when that phrase, in the runs' inputs,
    is never on a line that holds the expected answer.

    ``runs`` are (input text, the input lines holding the expected answer) of the examples the proposal
    was made from (``rollout.answer_lines``); runs whose answer is not in the input say nothing. A sentence
    with a negation ("ignore", "not", "instead", ...) may be steering away from the phrase and is not judged;
    a leading condition is judged apart from the rest ("If the number is not present, look for "Track your
    order"" is judged on its second part).
    """
    grounded = [(inputs.lower(), [line.lower() for line in lines]) for inputs, lines in runs if lines]
    for clause in _clauses(text):
        if _NEGATION.search(clause):
            continue
        for key in sorted(quoted_phrases(clause)):
            if len(key) < 3 or not any(c.isalpha() for c in key):
                continue
            having = [lines for inputs, lines in grounded if key in inputs]
            if len(having) >= MIN_GROUNDING_RUNS and not any(key in line for lines in having for line in lines):
                return (f"points at {key!r}, which is on no line holding the expected answer "
                        f"({len(having)} inputs have it)")
    return None


def _clauses(text: str) -> list[str]:
    """The sentences of ``text``, a leading condition ("If the number is not present, ...") cut from the rest
    at its first comma outside quotes; other commas do not cut ("Ignore "A", "B" and "C"" stays whole)."""
    out = []
    for sentence in re.split(r"(?<=[.!?;])\s+", text):
        parts = re.split(r""",(?=(?:[^"]*"[^"]*")*[^"]*$)""", sentence, maxsplit=1)
        conditional = len(parts) == 2 and _CONDITION.match(sentence)
        out += [p for p in parts if p.strip()] if conditional else [sentence]
    return out


def _normal(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
