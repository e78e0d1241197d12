"""Identifier picking: a short incoming-payment notice -> the payment reference the payer wrote.

Every notice carries look-alike ids: a mandate reference and a customer reference (both labelled "ref",
the decoys a vague instruction falls for), the bank's transaction id and a second id of the bank's own
reference format that is not the payment reference (a batch or previous-payment line). Each bank (the
category) labels the payment reference in its own way and gives it its own format; no label says
"reference" or "payment". Built after `tracking` (the same kind of convention, another domain); its
headroom is measured before any optimizer runs on it, and it is dropped, not tuned, if it has none.
"""

from __future__ import annotations

import random
import string

import dspy

from benchmarks.tasks.short import ShortTask, digits, pick_other
from benchmarks.tasks.tracking import normalize  # the same light normalisation of ids

PAYERS = ["Maria Lopez", "Tom Becker", "Aylin Demir", "Lukas Novak", "Priya Shah", "Chen Wei", "Sofia Rossi"]
ALNUM = string.ascii_uppercase + string.digits

# bank -> (label of the payment reference, format description, generator of an id in that format)
BANKS: dict[str, tuple[str, str, object]] = {
    "Sparkasse": ("Verwendungszweck", '"RG" + 8 digits', lambda r: "RG" + digits(r, 8)),
    "ING": ("Description", '"INV-" + 7 digits', lambda r: "INV-" + digits(r, 7)),
    "Revolut": ("Note", "10 letters/digits", lambda r: "".join(r.choices(ALNUM, k=10))),
    "Chase": ("Memo", "2 letters + 6 digits", lambda r: "".join(r.choices(string.ascii_uppercase, k=2)) + digits(r, 6)),
    "Rabobank": ("Omschrijving", '4 digits + "/" + 6 digits', lambda r: f"{digits(r, 4)}/{digits(r, 6)}"),
}
# A second id of the bank's own format that is not the payment reference.
LOOKALIKE_LABELS = {"Sparkasse": "Sammler", "ING": "Batch", "Revolut": "Card note", "Chase": "Previous memo",
                    "Rabobank": "Kenmerk"}


def _notice(rng: random.Random, bank: str) -> dict:
    label, _, make = BANKS[bank]
    reference = make(rng)
    mandate = pick_other(rng, lambda: f"MR-{digits(rng, 8)}", [reference])
    customer = pick_other(rng, lambda: f"C{digits(rng, 7)}", [reference, mandate])
    lookalike = pick_other(rng, lambda: make(rng), [reference, mandate, customer])
    transaction = pick_other(rng, lambda: "TX" + "".join(rng.choices(ALNUM, k=12)), [reference, lookalike])
    lines = [f"Mandate ref: {mandate}", f"{label}: {reference}", f"{LOOKALIKE_LABELS[bank]}: {lookalike}",
             f"Transaction ID: {transaction}", f"Customer ref: {customer}"]
    rng.shuffle(lines)
    payer = rng.choice(PAYERS)
    amount = f"{rng.randint(12, 4800)}.{rng.randint(0, 99):02d}"
    day = f"{rng.randint(2, 28)} {rng.choice(['March', 'April', 'May', 'June'])}"
    text = "\n".join([f"{bank}: incoming payment", f"{payer} sent you EUR {amount} on {day}.", *lines])
    return {"notice": text, "payment_reference": reference, "decoys": [mandate, customer, lookalike, transaction]}


class ExtractPaymentReference(dspy.Signature):
    """Extract the payment reference from the payment notice."""

    notice: str = dspy.InputField(desc="a bank's incoming-payment notice")
    payment_reference: str = dspy.OutputField(desc="the payment reference, copied exactly")


RULES = {bank: f'{bank} writes the payment reference after "{label}:" ({fmt}); the "Mandate ref", the '
               f'"Customer ref" and the {LOOKALIKE_LABELS[bank]} line are not it.'
         for bank, (label, fmt, _) in BANKS.items()}

HAND_WRITTEN = (
    "Return the payment reference the payer wrote, copied exactly. The bank is named on the first line; each "
    "bank labels the payment reference its own way: "
    + "; ".join(f'{bank}: "{label}" ({fmt})' for bank, (label, fmt, _) in BANKS.items())
    + '. Do not return the "Mandate ref", the "Customer ref", the transaction ID, or the '
    + ", ".join(f'"{LOOKALIKE_LABELS[b]}"' for b in BANKS) + " lines."
)

TASK = ShortTask(name="payments", version=1, generate_one=_notice, categories=tuple(BANKS),
                 signature=ExtractPaymentReference, input_field="notice", output_field="payment_reference",
                 normalize=normalize, rules=RULES, hand_written=HAND_WRITTEN)
