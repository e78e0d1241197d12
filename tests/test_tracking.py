"""The tracking task: the label is the value after the carrier's own label, in the carrier's format."""

import re

from benchmarks.tasks import tracking

FORMATS = {"UPS": r"1Z[A-Z0-9]{6}\d{10}", "FedEx": r"\d{12}", "DHL": r"\d{10}", "USPS": r"94\d{20}",
           "Royal Mail": r"[A-Z]{2}\d{9}GB"}


def test_label_follows_the_carriers_label_once_and_has_the_carriers_format():
    for row in tracking.TASK.generate(250, seed=0):
        text, label, carrier = row["notification"], row["tracking_number"], row["category"]
        assert f"with {carrier}." in text and text.count(label) == 1
        assert f"{tracking.CARRIERS[carrier][0]}: {label}\n" in text
        assert re.fullmatch(FORMATS[carrier], label)
        assert all(decoy in text for decoy in row["decoys"])
        order = re.search(r"Track your order: (\d+)", text).group(1)
        assert order in row["decoys"] and order != label


def test_normalize_ignores_spaces_dashes_and_case():
    assert tracking.normalize(" 1z-999 aa10123456784. ") == "1Z999AA10123456784"
