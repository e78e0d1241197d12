"""Value picking: a short clinic confirmation -> the time of the patient's appointment.

Every confirmation carries look-alike times in the clinic's own format: the time the appointment was booked
(on an "Appointment booked" line, the decoy a vague instruction falls for), a check-in time a few minutes
before the appointment (each clinic names it its own way) and the office hours' opening and closing times.
Each clinic (the category) labels the appointment time in its own way and writes times in its own format;
no label says "appointment" or "time". The answer is copied, never converted.
"""

from __future__ import annotations

import random
import re

import dspy

from benchmarks.tasks.short import ShortTask

NAMES = ["Maria", "Tom", "Aylin", "Lukas", "Priya", "Chen", "Sofia", "Omar"]
MONTHS = ["March", "April", "May", "June"]


def _h24(sep: str):
    return lambda m: f"{m // 60:02d}{sep}{m % 60:02d}"


def _h12(sep: str, am: str, pm: str):
    return lambda m: f"{(m // 60 - 1) % 12 + 1}{sep}{m % 60:02d}{pm if m >= 720 else am}"


# clinic -> (label of the appointment time, format description, minutes since midnight -> time in that format)
CLINICS: dict[str, tuple[str, str, object]] = {
    "Lindenhof Clinic": ("Slot", '24-hour "14:30"', _h24(":")),
    "Harbor Dental": ("Chair", '12-hour "2:30 PM"', _h12(":", " AM", " PM")),
    "Westside Physio": ("Session", '24-hour with a dot "14.30"', _h24(".")),
    "St. Anne Medical": ("Seen at", '24-hour with an h "14h30"', _h24("h")),
    "Northside Eye Care": ("Exam", '12-hour with a dot "2.30pm"', _h12(".", "am", "pm")),
}
# A time a few minutes before the appointment, in the clinic's format, that is not the appointment time.
CHECKIN_LABELS = {"Lindenhof Clinic": "Check-in", "Harbor Dental": "Arrive by", "Westside Physio": "Warm-up",
                  "St. Anne Medical": "Reception", "Northside Eye Care": "Drops at"}


def _times(rng: random.Random, fmt) -> tuple[int, int, int, int, int]:
    """Minutes of (appointment, booked, check-in, opens, closes), distinct, no written time inside another."""
    for _ in range(100):
        slot = rng.randrange(9 * 60, 17 * 60, 15)
        minutes = (slot, rng.randrange(7 * 60, 23 * 60), slot - rng.choice([10, 15, 20, 30]),
                   rng.choice([7 * 60, 7 * 60 + 30, 8 * 60, 8 * 60 + 30]), rng.choice([17, 18, 19, 20]) * 60 + 30)
        written = [fmt(m) for m in minutes]
        if not any(a in b for i, a in enumerate(written) for j, b in enumerate(written) if i != j):
            return minutes
    raise RuntimeError("could not draw distinct times")


def _confirmation(rng: random.Random, clinic: str) -> dict:
    label, _, fmt = CLINICS[clinic]
    slot, booked, checkin, opens, closes = (fmt(m) for m in _times(rng, fmt))
    lines = [f"Appointment booked: {booked}", f"{label}: {slot}", f"{CHECKIN_LABELS[clinic]}: {checkin}",
             f"Office hours: {opens}-{closes}"]
    rng.shuffle(lines)
    day = f"{rng.randint(2, 28)} {rng.choice(MONTHS)}"
    text = "\n".join([f"From: {clinic}", f"Hi {rng.choice(NAMES)}, see you on {day}.", *lines])
    return {"message": text, "appointment_time": slot, "decoys": [booked, checkin, opens, closes]}


def normalize(s: str) -> str:
    """Uppercase, without spaces, quotes and a trailing period; ".", "h" and ":" between digits alike; no
    leading zero on the hour."""
    s = re.sub(r"[\s\"'`]+", "", s).upper().rstrip(".")
    return re.sub(r"^0(?=\d)", "", re.sub(r"(?<=\d)[.H](?=\d)", ":", s))


class ExtractAppointmentTime(dspy.Signature):
    """Extract the appointment time from the clinic message."""

    message: str = dspy.InputField(desc="a clinic's confirmation message")
    appointment_time: str = dspy.OutputField(desc="the appointment time, copied exactly")


RULES = {clinic: f'{clinic} writes the appointment time after "{label}:" ({fmt}); the "Appointment booked" '
                 f'time, the {CHECKIN_LABELS[clinic]} time and the office hours are not it.'
         for clinic, (label, fmt, _) in CLINICS.items()}

HAND_WRITTEN = (
    "Return the time of the patient's appointment from the clinic message, copied exactly as written. The "
    "clinic is named on the From line; each clinic labels the appointment time its own way: "
    + "; ".join(f'{clinic}: "{label}" ({fmt})' for clinic, (label, fmt, _) in CLINICS.items())
    + '. Do not return the "Appointment booked" time (when the booking was made), the office hours, or the '
    + ", ".join(CHECKIN_LABELS.values()) + " times (before the appointment)."
)

TASK = ShortTask(name="appointments", version=1, generate_one=_confirmation, categories=tuple(CLINICS),
                 signature=ExtractAppointmentTime, input_field="message", output_field="appointment_time",
                 normalize=normalize, rules=RULES, hand_written=HAND_WRITTEN)
