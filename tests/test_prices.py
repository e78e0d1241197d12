"""The prices task: the unit price follows from each source's convention applied to the listing."""

import re

from benchmarks.tasks import prices


def unit_price(listing: str) -> str:
    """Each source's convention, written independently of the generator."""
    source = listing.split("\n")[0].removeprefix("Source: ")
    if source == "marketplace":
        return re.search(r"Deal: \$(\d+\.\d\d)", listing).group(1)
    if source == "eu_shop":
        german = re.search(r"Preis: ([\d.]+,\d\d) EUR", listing).group(1)
        return f"{float(german.replace('.', '').replace(',', '.')):.2f}"
    if source == "feed":
        cents = int(re.search(r"price_cents=(\d+)", listing).group(1))
        return f"{cents / 100:.2f}"
    pack = int(re.search(r"Case of (\d+)", listing).group(1))
    case = float(re.search(r"Case price: \$(\d+\.\d\d)", listing).group(1))
    return f"{case / pack:.2f}"


def test_the_unit_price_follows_from_the_sources_convention():
    rows = prices.TASK.generate(400, seed=0)
    assert all(unit_price(row["listing"]) == row["unit_price"] for row in rows)
    assert any("." in re.search(r"Preis: (\S+)", r["listing"]).group(1) for r in rows if r["category"] == "eu_shop")


def test_normalize_accepts_currency_and_one_decimal_but_not_a_decimal_comma():
    assert prices.normalize(" $12.5 ") == prices.normalize("12.50 USD") == "12.50"
    assert prices.normalize("12,50") != "12.50"
