"""The appointments task: the label is the time after the clinic's own label, in the clinic's format."""

import re
from collections import Counter

from benchmarks.tasks import appointments
from benchmarks.tasks.invoices import count_tokens

TASK = appointments.TASK
FORMATS = {"Lindenhof Clinic": r"\d\d:\d\d", "Harbor Dental": r"1?\d:\d\d [AP]M", "Westside Physio": r"\d\d\.\d\d",
           "St. Anne Medical": r"\d\dh\d\d", "Northside Eye Care": r"1?\d\.\d\d[ap]m"}


def test_label_follows_the_clinics_label_once_and_has_the_clinics_format():
    for row in TASK.generate(250, seed=0):
        text, label, clinic = row["message"], row["appointment_time"], row["category"]
        lines = text.split("\n")
        assert lines[0] == f"From: {clinic}" and text.count(label) == 1
        assert f"{appointments.CLINICS[clinic][0]}: {label}" in lines
        assert re.fullmatch(FORMATS[clinic], label)
        assert all(decoy in text and re.fullmatch(FORMATS[clinic], decoy) for decoy in row["decoys"])
        booked = re.search(r"Appointment booked: (.+)", text).group(1)
        assert booked in row["decoys"] and booked != label


def test_decoys_never_equal_the_label_nor_each_other():
    for row in TASK.generate(500, seed=1):
        values = [TASK.normalize(v) for v in (row["appointment_time"], *row["decoys"])]
        assert len(set(values)) == len(values) == 5


def test_same_seed_same_data_and_balanced_clinics():
    assert TASK.generate(40, seed=7) == TASK.generate(40, seed=7)
    assert TASK.generate(40, seed=7) != TASK.generate(40, seed=8)
    counts = Counter(row["category"] for row in TASK.generate(52, seed=0))
    assert set(counts) == set(appointments.CLINICS) and max(counts.values()) - min(counts.values()) <= 1


def test_the_label_line_is_shuffled_among_the_decoys():
    rows = TASK.generate(300, seed=2)
    positions = Counter(row["message"].split("\n").index(
        f"{appointments.CLINICS[row['category']][0]}: {row['appointment_time']}") for row in rows)
    assert set(positions) == {2, 3, 4, 5} and min(positions.values()) > 40


def test_inputs_are_under_60_tokens():
    assert max(count_tokens(row["message"]) for row in TASK.generate(500, seed=3)) < 60


def test_normalize_ignores_spaces_case_separators_and_a_leading_zero():
    assert TASK.normalize(" 2:30 pm. ") == TASK.normalize("2:30 PM") == "2:30PM"
    assert TASK.normalize("09h15") == TASK.normalize("09.15") == TASK.normalize("9:15") == "9:15"
    assert TASK.normalize('"14:30"') == "14:30" != TASK.normalize("14:30 PM")
    assert TASK.normalize("2.30pm") == TASK.normalize("2:30 PM") != TASK.normalize("2:30 AM")
