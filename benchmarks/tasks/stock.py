"""Tool texts decide success: a dspy.ReAct agent answers "how many units of item X are on hand in city Y?"
with two warehouse tools.

``stock_level(item, site)`` answers only for an item written "SKU-1234" and a site code (DE1 Berlin, ES2
Madrid, PL1 Warsaw, FR3 Lyon); a city name or another spelling of the item gets "unknown site" / "unknown
item". ``open_orders(item, site)`` returns the units on open customer orders, a number of the same size
(the decoy tool). The seed describes the tools as "Stock." and "Orders."; the hand-written tool texts
state the site codes, the item format and which tool answers what. The agent's instruction is the same
in both, so the headroom between them is the tool texts' alone. The category is the city.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

import dspy

from benchmarks.tasks.invoices import AnswerInJSON
from benchmarks.tasks.short import ShortTask

SITES = {"Berlin": "DE1", "Madrid": "ES2", "Warsaw": "PL1", "Lyon": "FR3"}
PHRASES = ["SKU-{n}", "item {n}", "article no. {n}", "sku {n}"]


def _units(kind: str, sku: str, site: str) -> int:
    return random.Random(f"{kind}:{sku}:{site}").randint(0, 900)


def _parse(item: str, site: str) -> tuple[str | None, str | None]:
    sku = item.strip().upper() if re.fullmatch(r"SKU-\d{4}", item.strip().upper()) else None
    code = site.strip().upper() if site.strip().upper() in SITES.values() else None
    return sku, code


def stock_level(item: str, site: str) -> str:
    """Stock."""
    sku, code = _parse(item, site)
    if sku is None:
        return f"unknown item {item!r}"
    return f"unknown site {site!r}" if code is None else f"{sku} at {code}: {_units('stock', sku, code)} units on hand"


def open_orders(item: str, site: str) -> str:
    """Orders."""
    sku, code = _parse(item, site)
    if sku is None:
        return f"unknown item {item!r}"
    return f"unknown site {site!r}" if code is None else f"{sku} at {code}: {_units('orders', sku, code)} units on open orders"


SITE_LIST = ", ".join(f"{code} = {city}" for city, code in SITES.items())
HAND_WRITTEN_TOOLS = {
    "stock_level": ("Units of one item on hand (in stock) at one warehouse. Use it for 'how many are in stock / "
                    "on hand' questions.",
                    {"item": 'the SKU written as "SKU-" and 4 digits, e.g. "item 0420" or '
                             '"article no. 0420" -> SKU-0420',
                     "site": f"the warehouse code, not the city name: {SITE_LIST}"}),
    "open_orders": ("Units of one item on open customer orders (sold, not yet shipped) at one warehouse; not the "
                    "stock on hand.",
                    {"item": 'the SKU written as "SKU-" and 4 digits', "site": f"the warehouse code: {SITE_LIST}"}),
}
TOOLS = {"stock_level": stock_level, "open_orders": open_orders}


def _question(rng: random.Random, city: str) -> dict:
    for _ in range(100):
        number = f"{rng.randint(1, 9999):04d}"
        sku, code = f"SKU-{number}", SITES[city]
        answer = _units("stock", sku, code)
        decoys = [_units("orders", sku, code)] + [_units("stock", sku, c) for c in SITES.values() if c != code]
        if answer not in decoys:
            break
    item = rng.choice(PHRASES).format(n=number)
    question = rng.choice(["How many units of {item} are on hand at our {city} warehouse?",
                           "{city} warehouse: how many {item} do we have in stock right now?"]).format(item=item, city=city)
    return {"question": question, "answer": str(answer), "decoys": [str(d) for d in decoys], "sku": sku, "site": code}


def normalize(s: str) -> str:
    """The first integer in the answer ("140 units" -> "140"), else the text stripped."""
    match = re.search(r"\d+", s.replace(",", ""))
    return str(int(match.group())) if match else s.strip()


@dataclass(frozen=True)
class AgentTask(ShortTask):
    """A ShortTask whose program is a dspy.ReAct agent over TOOLS; hand_written swaps the tool texts only."""

    def make_program(self, kind: str = "react", hand_written: bool = False) -> dspy.Module:
        kind = {"predict": "react", "predict-json": "react-json"}.get(kind, kind)
        if kind not in ("react", "react-json"):
            raise ValueError(f"unknown program kind {kind!r}; choose react or react-json")
        tools = [dspy.Tool(func, desc=HAND_WRITTEN_TOOLS[name][0], arg_desc=HAND_WRITTEN_TOOLS[name][1])
                 if hand_written else dspy.Tool(func) for name, func in TOOLS.items()]
        agent = dspy.ReAct(self.signature, tools=tools, max_iters=4)
        return AnswerInJSON(agent) if kind == "react-json" else agent


class AnswerStockQuestion(dspy.Signature):
    """Answer the warehouse question using the tools."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the number of units")


RULES = {city: f"stock_level answers with the site code {code} for {city} (not the city name) and the item as "
               "SKU-<4 digits>; open_orders counts open orders, not stock." for city, code in SITES.items()}

TASK = AgentTask(name="stock", version=1, generate_one=_question, categories=tuple(SITES),
                 signature=AnswerStockQuestion, input_field="question", output_field="answer", normalize=normalize,
                 rules=RULES, hand_written=json.dumps({k: {"desc": d, "args": a} for k, (d, a) in HAND_WRITTEN_TOOLS.items()}))
