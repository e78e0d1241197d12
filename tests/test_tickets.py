"""The tickets task: the queue follows from the house rules applied to the ticket text."""

import re

from benchmarks.tasks import tickets


def route(ticket: str) -> str:
    """The house rules, written independently of the generator."""
    message = ticket.split("Message: ")[1]
    if "Plan: Enterprise" in ticket:
        return "ENTERPRISE"
    if "refund" in message:
        amount = int(re.search(r"\$([\d,]+)\.00", message).group(1).replace(",", ""))
        return "ESCALATIONS" if amount > tickets.THRESHOLD else "BILLING"
    if re.search(r"log in|locked|sign in|login", message):
        return "ACCOUNTS"
    if re.search(r"crash|error|does not load|fails", message):
        return "TECH"
    return "BILLING"


def test_the_queue_follows_from_the_rules():
    rows = tickets.TASK.generate(600, seed=0)
    assert all(route(row["ticket"]) == row["queue"] for row in rows)
    assert {row["queue"] for row in rows} == set(tickets.QUEUES)


def test_decoy_subjects_and_invoice_asides_appear_where_the_topic_differs():
    rows = [r for r in tickets.TASK.generate(300, seed=1) if r["category"] in ("sign_in", "fault")]
    assert all("invoice INV-" in r["ticket"] for r in rows)


def test_normalize_keeps_letters_only():
    assert tickets.normalize(' "tech". ') == "TECH"
