"""Support ticket routing by house rules: a short ticket -> one of five queue codes.

The house rules, in order: every Enterprise-plan ticket goes to ENTERPRISE; a refund request goes to
ESCALATIONS above $500 and to BILLING up to $500; a sign-in problem goes to ACCOUNTS and a fault to
TECH even when the customer mentions an invoice (the subject lines and side remarks are the decoys);
other billing questions go to BILLING. The category is the rule that decides the queue.
"""

from __future__ import annotations

import random
import re

import dspy

from benchmarks.tasks.short import ShortTask, digits

QUEUES = ("BILLING", "ESCALATIONS", "ACCOUNTS", "TECH", "ENTERPRISE")
PRODUCTS = ["Mailbox", "Cloud Drive", "Meetings", "Payments API"]
CATEGORIES = ("enterprise", "refund_large", "refund_small", "sign_in", "fault", "billing")
THRESHOLD = 500

SIGN_IN = ["I can't log in since the password reset", "my account is locked after three wrong passwords",
           "the 2FA code never arrives so I cannot sign in", "the login page says my password is wrong"]
FAULTS = ["the app crashes when I open the settings", "uploads stop at 99% with error 500",
          "the dashboard does not load at all", "sync fails with a timeout error every hour"]
BILLING = ["please send me a copy of invoice {inv}", "I need to change the card we pay with",
           "please add our VAT number to invoice {inv}", "why did the price on invoice {inv} go up?"]
INVOICE_ASIDES = ["I wanted to download invoice {inv}.", "It happened while I was paying invoice {inv}.",
                  "My billing contact needs invoice {inv} today."]
OPENINGS = ["Hello,", "Hi team,", "Good morning,", "Dear support,"]
CLOSINGS = ["Thanks in advance.", "Please help, this is blocking our team.", "Best regards.", "Thank you!"]
DECOY_SUBJECTS = ["Invoice problem", "Billing question", "Urgent: payment", "Refund?"]


def _amount(rng: random.Random, large: bool) -> int:
    return rng.randint(THRESHOLD + 1, 5000) if large else rng.randint(20, THRESHOLD)


def _refund(rng: random.Random, amount: int, inv: str) -> str:
    return rng.choice([f"we were charged ${amount:,}.00 twice on invoice {inv}, please refund it",
                       f"please refund ${amount:,}.00 for the seats we never used (invoice {inv})",
                       f"I cancelled in time but was billed ${amount:,}.00; I want a refund"])


def _ticket(rng: random.Random, category: str) -> dict:
    inv = f"INV-{digits(rng, 5)}"
    plan = "Enterprise" if category == "enterprise" else rng.choice(["Free", "Pro", "Business"])
    if category == "enterprise":  # any topic; an Enterprise ticket never goes to the topic's queue
        topic = rng.choice(["refund", "sign_in", "fault", "billing"])
        category_for_text = {"refund": rng.choice(["refund_large", "refund_small"])}.get(topic, topic)
    else:
        category_for_text = category
    if category_for_text.startswith("refund"):
        body, subject = _refund(rng, _amount(rng, category_for_text == "refund_large"), inv), "Refund request"
    elif category_for_text == "sign_in":
        body, subject = rng.choice(SIGN_IN) + ". " + rng.choice(INVOICE_ASIDES), rng.choice(DECOY_SUBJECTS)
    elif category_for_text == "fault":
        body, subject = rng.choice(FAULTS) + ". " + rng.choice(INVOICE_ASIDES), rng.choice(DECOY_SUBJECTS)
    else:
        body, subject = rng.choice(BILLING), rng.choice(["Invoice", "Payment details", "Question"])
    body = body.format(inv=inv).rstrip(".?") + ("?" if body.endswith("?") else ".")
    queue = {"enterprise": "ENTERPRISE", "refund_large": "ESCALATIONS", "refund_small": "BILLING",
             "sign_in": "ACCOUNTS", "fault": "TECH", "billing": "BILLING"}[category]
    text = "\n".join([f"Plan: {plan}", f"Product: {rng.choice(PRODUCTS)}", f"Subject: {subject}",
                      f"Message: {rng.choice(OPENINGS)} {body} {rng.choice(CLOSINGS)}",
                      f"Customer: {digits(rng, 6)}, account since {rng.randint(2012, 2024)}"])
    return {"ticket": text, "queue": queue, "decoys": [q for q in QUEUES if q != queue]}


def normalize(s: str) -> str:
    """Uppercase letters only (quotes, spaces and punctuation dropped)."""
    return re.sub(r"[^A-Z]", "", s.upper())


class RouteTicket(dspy.Signature):
    """Route the support ticket to a queue."""

    ticket: str = dspy.InputField(desc="a customer support ticket")
    queue: str = dspy.OutputField(desc="the queue code: " + ", ".join(QUEUES))


RULES = {
    "enterprise": "Every ticket from a customer on the Enterprise plan goes to ENTERPRISE, whatever it is about.",
    "refund_large": f"A refund request for more than ${THRESHOLD} goes to ESCALATIONS.",
    "refund_small": f"A refund request for ${THRESHOLD} or less goes to BILLING.",
    "sign_in": "A sign-in problem (password, locked account, 2FA) goes to ACCOUNTS, even if it mentions an invoice.",
    "fault": "A fault (crash, error, page not loading, sync failure) goes to TECH, even if it mentions an invoice.",
    "billing": "Other billing questions (invoice copies, card changes, VAT numbers, prices) go to BILLING.",
}

HAND_WRITTEN = (
    "Route the support ticket to one queue code by these house rules, checked in this order. "
    "1. Plan: Enterprise -> ENTERPRISE, whatever the message is about. "
    f"2. A refund request: more than ${THRESHOLD} -> ESCALATIONS; ${THRESHOLD} or less -> BILLING. "
    "3. Cannot sign in (password, locked account, 2FA code) -> ACCOUNTS. "
    "4. Something is broken (crash, error, page not loading, sync failure) -> TECH. "
    "5. Any other billing question (invoice copy, card change, VAT number, price) -> BILLING. "
    "Ignore the subject line and side remarks about invoices: route by what the customer needs."
)

TASK = ShortTask(name="tickets", version=2, generate_one=_ticket, categories=CATEGORIES, signature=RouteTicket,
                 input_field="ticket", output_field="queue", normalize=normalize, rules=RULES,
                 hand_written=HAND_WRITTEN)
