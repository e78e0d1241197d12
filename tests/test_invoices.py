"""Offline tests of the invoice transport-reference benchmark (no LLM)."""

import json
import re
import statistics
import xml.etree.ElementTree as ET
from collections import Counter

import dspy
import pytest

from benchmarks.tasks import invoices as inv

NS = inv.NAMESPACES
UBL_NAMESPACES = {NS["cac"], NS["cbc"]}


@pytest.fixture(scope="module")
def small():
    return inv.generate_invoices(200, seed=7)


@pytest.fixture(scope="module")
def paper():
    return inv.generate_invoices(40, seed=7, profile="paper")


@pytest.fixture(scope="module")
def records(small, paper):
    return small + paper


def _transport_elements(root: ET.Element) -> list[str]:
    """Texts of every element that carries a transport reference, by the benchmark's own rules."""
    found = [note.text for note in root.findall("cbc:Note", NS)
             if any(f"{label}: " in note.text for label in inv.TRANSPORT_NOTE_LABELS)]
    found += [doc.findtext("cbc:ID", namespaces=NS) for doc in root.findall("cac:AdditionalDocumentReference", NS)
              if doc.findtext("cbc:DocumentType", namespaces=NS) in inv.TRANSPORT_DOCUMENT_TYPES]
    found += [el.text for el in root.findall("cac:DespatchDocumentReference/cbc:ID", NS)]
    found += [el.text for el in root.findall(".//cac:TransportEquipment/cbc:ID", NS)]
    return found


def test_every_invoice_is_a_ubl_invoice(records):
    for record in records:
        root = ET.fromstring(record["invoice_xml"].encode("utf-8"))
        assert root.tag == f"{{{NS['inv']}}}Invoice"
        child_namespaces = {el.tag[1:].split("}")[0] for el in root.iter() if el is not root}
        assert child_namespaces == UBL_NAMESPACES
        assert record["category"] in inv.CATEGORIES and record["language"] in inv.LANGUAGES


def test_reference_occurs_once_at_its_location(records):
    for record in (r for r in records if r["category"] != "none"):
        reference, location = record["reference_number"], record["location"]
        assert record["invoice_xml"].count(reference) == 1, record
        root = ET.fromstring(record["invoice_xml"])
        element = root.find(location, NS)
        assert element is not None, location
        if record["category"] == "note":
            assert any(f"{label}: {reference}" in element.text for label in inv.TRANSPORT_NOTE_LABELS)
        else:
            assert element.text == reference
        if record["category"] == "additional_document":
            document = root.find(location.rsplit("/", 1)[0], NS)
            assert document.findtext("cbc:DocumentType", namespaces=NS) in inv.TRANSPORT_DOCUMENT_TYPES


def test_exactly_one_transport_element_and_none_for_category_none(records):
    for record in records:
        found = _transport_elements(ET.fromstring(record["invoice_xml"]))
        if record["category"] == "none":
            assert record["reference_number"] == "none" and record["location"] == ""
            assert found == [], found
        else:
            assert len(found) == 1 and record["reference_number"] in found[0], (found, record["reference_number"])


def test_decoys_are_present_and_never_match_the_answer(records):
    for record in records:
        decoys = record["decoys"]
        assert len(decoys) >= 5  # invoice id, order, IBAN, two tax ids, ...
        texts = {el.text for el in ET.fromstring(record["invoice_xml"]).iter()}
        assert set(decoys) <= texts, set(decoys) - texts
        answer = inv.normalize_reference(record["reference_number"])
        assert answer not in {inv.normalize_reference(decoy) for decoy in decoys}


def test_reference_formats_vary(small):
    references = [r["reference_number"] for r in small if r["category"] != "none"]
    assert len(set(references)) == len(references)
    assert any(" " in ref for ref in references) and any("-" in ref for ref in references)
    for prefix in ("CMR", "BL", "AWB", "IRS", "DDT", "ALB"):
        assert any(ref.startswith(prefix) for ref in references), prefix
    containers = [ref for ref in references if re.fullmatch(r"[A-Z]{4}[ -]?\d{6}[ -]?\d", ref)]
    assert containers
    for ref in containers:
        digits = re.sub(r"[ -]", "", ref)
        assert inv._container_check_digit(digits[:10]) == int(digits[10])


def test_same_seed_same_data_different_seed_different_data(small):
    assert inv.generate_invoices(200, seed=7) == small
    other = inv.generate_invoices(200, seed=8)
    assert [r["invoice_xml"] for r in other] != [r["invoice_xml"] for r in small]
    assert inv.generate_invoices(5, seed=7, profile="paper") == inv.generate_invoices(5, seed=7, profile="paper")


def test_categories_balanced_and_language_mix(small):
    assert Counter(r["category"] for r in small) == {category: 40 for category in inv.CATEGORIES}
    languages = Counter(r["language"] for r in small)
    assert set(languages) == set(inv.LANGUAGES)
    total_weight = sum(inv.LANGUAGE_MIX.values())
    for lang, weight in inv.LANGUAGE_MIX.items():
        assert languages[lang] / len(small) == pytest.approx(weight / total_weight, abs=0.03), lang
    pairs = Counter((r["category"], r["language"]) for r in small)
    assert all(pairs[(category, "tr")] > 0 for category in inv.CATEGORIES)


@pytest.mark.parametrize(
    ("profile", "mean_band", "each_band"),
    [("small", (600, 1100), (450, 1400)), ("paper", (2000, 4000), (1500, 5000))],
)
def test_token_sizes(profile, mean_band, each_band, small, paper):
    sizes = [inv.count_tokens(r["invoice_xml"]) for r in (small if profile == "small" else paper)]
    assert mean_band[0] <= statistics.mean(sizes) <= mean_band[1]
    assert each_band[0] <= min(sizes) and max(sizes) <= each_band[1]


def test_unknown_profile_and_kind_are_rejected():
    with pytest.raises(ValueError):
        inv.generate_invoices(3, profile="huge")
    with pytest.raises(ValueError):
        inv.make_program("react")


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("MSCU 123456-7", "mscu1234567"), (" cmr-2024/118.734 ", "cmr2024118734"), ("34 ABC 123", "34abc123"),
     ("", "none"), ("None", "none"), ("N/A", "none"), ("null", "none"), ("No reference", "none"), (None, "none")],
)
def test_normalize_reference(raw, normalized):
    assert inv.normalize_reference(raw) == normalized


def test_metric_scores():
    example = dspy.Example(invoice_xml="<Invoice/>", reference_number="MSCU 123456 7", category="shipment")
    assert inv.invoice_metric(example, dspy.Prediction(reference_number="mscu-123456-7")) == 1.0
    assert inv.invoice_metric(example, dspy.Prediction(reference_number="MSCU1234568")) == 0.0
    assert inv.invoice_metric(example, {"reference_number": "MSCU1234567"}) == 1.0
    none_example = dspy.Example(reference_number="none", category="none")
    assert inv.invoice_metric(none_example, dspy.Prediction(reference_number="N/A")) == 1.0
    assert inv.invoice_metric(none_example, dspy.Prediction(answer="none")) == 0.0  # missing attribute
    assert inv.invoice_metric(none_example, None) == 0.0


def test_metric_feedback():
    example = dspy.Example(reference_number="DDT 123/2024", category="despatch")
    right = inv.invoice_metric_with_feedback(example, dspy.Prediction(reference_number="DDT-123-2024"))
    assert right.score == 1.0 and "DDT 123/2024" in right.feedback and "Despatch" not in right.feedback
    wrong = inv.invoice_metric_with_feedback(example, dspy.Prediction(reference_number="FT 2024/0001"))
    assert wrong.score == 0.0
    assert "DDT 123/2024" in wrong.feedback and "FT 2024/0001" in wrong.feedback
    assert "DespatchDocumentReference" in wrong.feedback
    missing = inv.invoice_metric_with_feedback(example, dspy.Prediction())
    assert missing.score == 0.0 and "no reference_number" in missing.feedback


def test_load_invoices_caches_on_disk(tmp_path, monkeypatch):
    first = inv.load_invoices(12, seed=3, cache_dir=tmp_path)
    assert {"invoice_xml", "reference_number", "category", "language"} <= set(first.column_names)
    assert len(list(tmp_path.iterdir())) == 1

    def fail(*args, **kwargs):
        raise AssertionError("load_invoices regenerated instead of reading the cache")

    monkeypatch.setattr(inv, "generate_invoices", fail)
    second = inv.load_invoices(12, seed=3, cache_dir=tmp_path)
    assert second.to_list() == first.to_list()
    assert all(str(tmp_path) in f["filename"] for f in second.cache_files)
    assert json.loads(second[0]["decoys"])
    with pytest.raises(AssertionError):  # another key is not served from this cache
        inv.load_invoices(12, seed=4, cache_dir=tmp_path)


def test_to_examples_from_dataset_and_dicts(tmp_path, small):
    for rows in (inv.load_invoices(5, seed=1, cache_dir=tmp_path), small[:5]):
        examples = inv.to_examples(rows)
        assert len(examples) == 5
        for example, row in zip(examples, rows, strict=True):
            assert set(example.inputs().keys()) == {"invoice_xml"}
            assert example.reference_number == row["reference_number"]
            assert example.category == row["category"] and example.language == row["language"]


def test_signature_programs_and_instruction():
    signature = inv.ExtractTransportReference
    assert set(signature.input_fields) == {"invoice_xml"}
    assert set(signature.output_fields) == {"reference_number"}
    assert len(signature.instructions) < 100
    assert isinstance(inv.make_program(), dspy.Predict)
    assert isinstance(inv.make_program("cot"), dspy.ChainOfThought)
    assert isinstance(inv.make_program("cot-json").extract, dspy.ChainOfThought)
    instruction = inv.HAND_WRITTEN_INSTRUCTION
    for needed in ("cac:AdditionalDocumentReference", "cbc:DocumentType", "cac:DespatchDocumentReference",
                   "TransportEquipment", "cbc:Note", "OrderReference", "PayeeFinancialAccount", "IBAN",
                   "VKN", "contract", "quotation", '"none"', *inv.TRANSPORT_NOTE_LABELS):
        assert needed in instruction, needed


def test_json_program_asks_for_a_json_object_and_parses_it():
    from tests.fakes import FakeLM

    lm = FakeLM(lambda request: '{"reference_number": "CMR 3230049"}')
    program = inv.make_program("predict-json")
    assert [name for name, _ in program.named_predictors()] == ["extract"]
    with dspy.context(lm=lm):
        prediction = program(invoice_xml="<Invoice/>")
    assert prediction.reference_number == "CMR 3230049"
    assert "JSON object" in lm.requests[-1].system
    assert dspy.settings.adapter is None or not isinstance(dspy.settings.adapter, dspy.JSONAdapter)
