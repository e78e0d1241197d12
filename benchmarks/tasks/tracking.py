"""Identifier picking: a short shipping notification -> the carrier's tracking number.

Every notification carries look-alike ids: the shop's order number (on a "Track your order" line, the
decoy a vague instruction falls for), an invoice number, a customer id and a number of the carrier's own
format that is not the tracking number (an account or return number). Each carrier (the category) labels
its tracking number in its own way and gives it its own format; neither label says "tracking".
"""

from __future__ import annotations

import random
import re
import string

import dspy

from benchmarks.tasks.short import ShortTask, digits, pick_other

SHOPS = ["Northwind Outlet", "Blue Fern Books", "Kettle & Co", "Orbit Electronics", "Maple Home", "Nordic Gear"]
NAMES = ["Maria", "Tom", "Aylin", "Lukas", "Priya", "Chen", "Sofia", "Omar"]

# carrier -> (label of the tracking number, format description, generator of an id in that format)
CARRIERS: dict[str, tuple[str, str, object]] = {
    "UPS": ("Package ID", '"1Z" + 6 letters/digits + 10 digits',
            lambda r: "1Z" + "".join(r.choices(string.ascii_uppercase + string.digits, k=6)) + digits(r, 10)),
    "FedEx": ("Airbill", "12 digits", lambda r: digits(r, 12)),
    "DHL": ("Waybill", "10 digits", lambda r: digits(r, 10)),
    "USPS": ("Label no.", '22 digits starting with "94"', lambda r: "94" + digits(r, 20)),
    "Royal Mail": ("Item ref", '2 letters + 9 digits + "GB"',
                   lambda r: "".join(r.choices(string.ascii_uppercase, k=2)) + digits(r, 9) + "GB"),
}
# A second id of the carrier's own format that is not the tracking number.
LOOKALIKE_LABELS = {"UPS": "Shipper no.", "FedEx": "Account", "DHL": "Account", "USPS": "Return label",
                    "Royal Mail": "Return ref"}


def _notification(rng: random.Random, carrier: str) -> dict:
    label, _, make = CARRIERS[carrier]
    tracking = make(rng)
    order = pick_other(rng, lambda: digits(rng, rng.choice([8, 10, 12])), [tracking])
    lookalike = pick_other(rng, lambda: make(rng), [tracking, order])
    invoice = f"INV-{digits(rng, 6)}"
    customer = f"C{digits(rng, 7)}"
    lines = [f"Track your order: {order}", f"{label}: {tracking}", f"{LOOKALIKE_LABELS[carrier]}: {lookalike}",
             f"Invoice: {invoice}", f"Customer ID: {customer}"]
    rng.shuffle(lines)
    shop, name = rng.choice(SHOPS), rng.choice(NAMES)
    day = f"{rng.randint(2, 28)} {rng.choice(['March', 'April', 'May', 'June'])}"
    text = "\n".join([f"From: {shop}", f"Hi {name}, your order has shipped with {carrier}.", *lines,
                      f"Estimated delivery: {day}"])
    return {"notification": text, "tracking_number": tracking, "decoys": [order, lookalike, invoice, customer]}


def normalize(s: str) -> str:
    """Uppercase, without spaces, dashes, quotes and a trailing period."""
    return re.sub(r"[\s\-\"'`.]+", "", s).upper()


class ExtractTrackingNumber(dspy.Signature):
    """Extract the tracking number from the shipping notification."""

    notification: str = dspy.InputField(desc="a shipping notification e-mail")
    tracking_number: str = dspy.OutputField(desc="the tracking number, copied exactly")


RULES = {carrier: f'{carrier} writes the tracking number after "{label}:" ({fmt}); the order number on the '
                  f'"Track your order" line and the {LOOKALIKE_LABELS[carrier]} are not it.'
         for carrier, (label, fmt, _) in CARRIERS.items()}

HAND_WRITTEN = (
    "Return the carrier's tracking number from the shipping notification, copied exactly. The carrier is "
    "named in the text; each carrier labels the tracking number its own way: "
    + "; ".join(f'{carrier}: "{label}" ({fmt})' for carrier, (label, fmt, _) in CARRIERS.items())
    + '. Do not return the shop\'s order number (the "Track your order" line), the invoice number, the '
    "customer ID, or the " + ", ".join(sorted(set(LOOKALIKE_LABELS.values()))) + " numbers."
)

TASK = ShortTask(name="tracking", version=1, generate_one=_notification, categories=tuple(CARRIERS),
                 signature=ExtractTrackingNumber, input_field="notification", output_field="tracking_number",
                 normalize=normalize, rules=RULES, hand_written=HAND_WRITTEN)
