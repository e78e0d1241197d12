"""Identifier picking: a short airline booking confirmation -> the booking reference (the PNR, 6 characters).

Every confirmation carries look-alike ids: the travel agency's order code (on a "Your order" line, the
decoy a vague instruction falls for), a 13-digit e-ticket number, the flight number, a frequent-flyer
number and a second 6-character code of the airline's own format that is not the booking reference (a fare
basis, voucher or check-in key). Each airline (the category) labels the booking reference in its own way and
gives it its own format; no label says "booking", "reference" or "ref". Built after `tracking` (the same
kind of convention, another domain).
"""

from __future__ import annotations

import random
import string

import dspy

from benchmarks.tasks.short import ShortTask, digits, pick_other
from benchmarks.tasks.tracking import normalize  # the same light normalisation of ids

NAMES = ["Maria", "Tom", "Aylin", "Lukas", "Priya", "Chen", "Sofia", "Omar"]
ALNUM = string.ascii_uppercase + string.digits


def _letters(r: random.Random, k: int) -> str:
    return "".join(r.choices(string.ascii_uppercase, k=k))


# airline -> (label of the booking reference, format description, generator of a code in that format)
AIRLINES: dict[str, tuple[str, str, object]] = {
    "British Airways": ("Record locator", "2 digits + 4 letters", lambda r: digits(r, 2) + _letters(r, 4)),
    "KLM": ("Reservation code", "5 letters + 1 digit", lambda r: _letters(r, 5) + digits(r, 1)),
    "Ryanair": ("PNR", "4 letters + 2 digits", lambda r: _letters(r, 4) + digits(r, 2)),
    "Delta": ("Confirmation", '"Z" + 5 letters/digits', lambda r: "Z" + "".join(r.choices(ALNUM, k=5))),
    "Lufthansa": ("Ihr Code", "6 letters", lambda r: _letters(r, 6)),
}
FLIGHT_PREFIXES = {"British Airways": "BA", "KLM": "KL", "Ryanair": "FR", "Delta": "DL", "Lufthansa": "LH"}
# A second code of the airline's own format that is not the booking reference.
LOOKALIKE_LABELS = {"British Airways": "Voucher", "KLM": "Fare basis", "Ryanair": "Check-in key",
                    "Delta": "Upgrade code", "Lufthansa": "Gutschein"}


def _confirmation(rng: random.Random, airline: str) -> dict:
    label, _, make = AIRLINES[airline]
    code = make(rng)
    order = pick_other(rng, lambda: "".join(rng.choices(ALNUM, k=6)), [code])
    lookalike = pick_other(rng, lambda: make(rng), [code, order])
    ticket = digits(rng, 13)
    flight = f"{FLIGHT_PREFIXES[airline]} {rng.randint(100, 9999)}"  # never 6 characters in an airline's format
    flyer = digits(rng, 9)
    day = f"{rng.randint(2, 28)} {rng.choice(['March', 'April', 'May', 'June'])}"
    lines = [f"Your order: {order}", f"{label}: {code}", f"{LOOKALIKE_LABELS[airline]}: {lookalike}",
             f"E-ticket: {ticket}", f"Flight: {flight} on {day}", f"Frequent flyer no.: {flyer}"]
    rng.shuffle(lines)
    text = "\n".join([f"From: {airline}", f"Dear {rng.choice(NAMES)}, your trip is confirmed.", *lines])
    return {"confirmation": text, "booking_reference": code, "decoys": [order, lookalike, ticket, flight, flyer]}


class ExtractBookingReference(dspy.Signature):
    """Extract the booking reference from the confirmation e-mail."""

    confirmation: str = dspy.InputField(desc="an airline's booking confirmation e-mail")
    booking_reference: str = dspy.OutputField(desc="the booking reference, copied exactly")


RULES = {airline: f'{airline} writes the booking reference after "{label}:" ({fmt}); the agency code on the '
                  f'"Your order" line and the {LOOKALIKE_LABELS[airline]} are not it.'
         for airline, (label, fmt, _) in AIRLINES.items()}

HAND_WRITTEN = (
    "Return the airline's 6-character booking reference from the confirmation e-mail, copied exactly. The "
    "airline is named on the first line; each airline labels it its own way: "
    + "; ".join(f'{airline}: "{label}" ({fmt})' for airline, (label, fmt, _) in AIRLINES.items())
    + '. Do not return the travel agency\'s order code (the "Your order" line), the e-ticket number, the flight '
    "number, the frequent-flyer number, or the " + ", ".join(f'"{LOOKALIKE_LABELS[a]}"' for a in AIRLINES)
    + " codes."
)

TASK = ShortTask(name="bookings", version=1, generate_one=_confirmation, categories=tuple(AIRLINES),
                 signature=ExtractBookingReference, input_field="confirmation", output_field="booking_reference",
                 normalize=normalize, rules=RULES, hand_written=HAND_WRITTEN)
