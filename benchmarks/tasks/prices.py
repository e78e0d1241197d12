"""Price normalisation by per-source conventions: a short product listing -> the price of one unit.

Four sources (the categories), each with its own way of writing prices and its own decoy numbers:
``marketplace`` lists "List" (the old price) before "Deal" (the price); ``eu_shop`` writes German prices
with a decimal comma (and a thousands dot) next to the UVP (recommended price); ``feed`` is a key=value
export in cents; ``wholesale`` prices a whole case, so the unit price is the case price / units per case.
The answer is the unit price with a decimal point and two decimals, e.g. "12.50".
"""

from __future__ import annotations

import random
import re

import dspy

from benchmarks.tasks.short import ShortTask

PRODUCTS = ["steel bolts M6", "desk lamp", "USB-C cable", "garden hose 20 m", "ceramic mug", "notebook A5",
            "hand cream", "bike light", "yoga mat", "coffee beans 1 kg"]
SOURCES = ("marketplace", "eu_shop", "feed", "wholesale")


def _cents(rng: random.Random, low: int, high: int) -> int:
    return rng.randint(low, high) * 5  # multiples of 5 cents, like real prices


def _german(cents: int) -> str:
    euros, rest = divmod(cents, 100)
    return f"{euros:,}".replace(",", ".") + f",{rest:02d}"


def _listing(rng: random.Random, source: str) -> dict:
    product = rng.choice(PRODUCTS)
    sku = f"{rng.choice('ABCDEFGH')}{rng.choice('KLMNPRST')}-{rng.randint(1000, 9999)}"
    if source == "wholesale":
        pack = rng.choice([2, 4, 5, 10, 20])
        unit = _cents(rng, 20, 600)
        price, shown = unit, [f"Case of {pack} x {product}", f"Case price: ${unit * pack / 100:.2f}",
                              f"Item: {sku}", f"Minimum order: {rng.choice([2, 3, 5])} cases"]
        decoys = [unit * pack]
    else:
        price = _cents(rng, 100, 30000 if source == "eu_shop" else 4000)
        old = price + _cents(rng, 20, 400)
        shipping = _cents(rng, 50, 199)
        if source == "marketplace":
            shown = [product, f"List: ${old / 100:.2f}", f"Deal: ${price / 100:.2f}", f"Shipping: ${shipping / 100:.2f}",
                     f"Seller SKU {sku}"]
        elif source == "eu_shop":
            shown = [f"{product} (Art.-Nr. {sku})", f"UVP {_german(old)} EUR", f"Preis: {_german(price)} EUR",
                     f"Versand {_german(shipping)} EUR"]
        else:
            shown = [f"sku={sku}", f"title={product}", f"price_cents={price}", f"was_cents={old}",
                     f"ship_cents={shipping}", f"stock={rng.randint(0, 400)}"]
        decoys = [old, shipping]
    rating, reviews, days, color = rng.randint(30, 50) / 10, rng.randint(3, 900), rng.randint(1, 5), rng.randrange(5)
    extras = {"feed": [f"rating={rating}", f"reviews={reviews}", f"ships_days={days}"],
              "eu_shop": [f"Bewertung {str(rating).replace('.', ',')} ({reviews} Bewertungen)", f"Lieferzeit {days} Tage",
                          f"Farbe: {['schwarz', 'weiß', 'rot', 'blau', 'grün'][color]}"]
              }.get(source, [f"Rating {rating} ({reviews} reviews)", f"Ships in {days} days",
                             f"Color: {['black', 'white', 'red', 'blue', 'green'][color]}"])
    text = "\n".join([f"Source: {source}", *shown, *rng.sample(extras, 2)])
    return {"listing": text, "unit_price": f"{price / 100:.2f}", "decoys": [f"{d / 100:.2f}" for d in decoys]}


def normalize(s: str) -> str:
    """A number with a decimal point, rounded to two decimals; currency signs, codes and spaces dropped.
    Anything else (a decimal comma, words) stays as written and so scores 0."""
    compact = re.sub(r"[\s$€\"'`]|USD|EUR", "", s.strip().upper()).rstrip(".")
    return f"{float(compact):.2f}" if re.fullmatch(r"\d+(\.\d+)?", compact) else compact


class NormalizePrice(dspy.Signature):
    """Give the price of one unit from the product listing."""

    listing: str = dspy.InputField(desc="a product listing from one of several sources")
    unit_price: str = dspy.OutputField(desc="the price of one unit, a number with two decimals, e.g. 12.50")


RULES = {
    "marketplace": 'marketplace listings show the old price after "List:" and the price after "Deal:"; the answer is the Deal price.',
    "eu_shop": 'eu_shop writes German prices: "Preis" is the price, UVP the recommended price; "1.234,50" means 1234.50.',
    "feed": "feed listings give price_cents in cents: divide by 100 (was_cents and ship_cents are not the price).",
    "wholesale": "wholesale listings price a whole case: the unit price is the case price divided by the units per case.",
}

HAND_WRITTEN = (
    "Give the price of one unit as a number with a decimal point and two decimals (e.g. 12.50), without "
    "currency. Each source writes prices its own way. marketplace: the price is after \"Deal:\" (\"List:\" is the "
    "old price, ignore shipping). eu_shop: the price is after \"Preis:\", written with a decimal comma and a "
    "thousands dot, so \"1.234,50 EUR\" is 1234.50 (ignore UVP and Versand). feed: price_cents is in cents, so "
    "price_cents=1250 is 12.50 (ignore was_cents and ship_cents). wholesale: the case price is for a whole case, "
    "so divide it by the number of units in the case: \"Case of 4\" at $50.00 is 12.50."
)

TASK = ShortTask(name="prices", version=2, generate_one=_listing, categories=SOURCES, signature=NormalizePrice,
                 input_field="listing", output_field="unit_price", normalize=normalize, rules=RULES,
                 hand_written=HAND_WRITTEN)
