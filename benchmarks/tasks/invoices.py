"""Seeded benchmark: extract the transport reference number from UBL 2.1 invoices.

Invoices are built from small hand-written vocabularies in Turkish, English, Spanish and Italian.
Each one puts its transport reference (bill of lading, CMR, air waybill, despatch note, container or
trailer plate) in one place, its *category*, or carries none, and is full of reference-like decoys
(invoice number, order reference, IBAN, tax ids, contracts, quotations, goods receipts).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import random
import re
import shutil
import string
import unicodedata
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dspy
from datasets import Dataset

CATEGORIES = ("note", "additional_document", "despatch", "shipment", "none")
LANGUAGES = ("tr", "en", "es", "it")
LANGUAGE_MIX = {"tr": 40, "en": 30, "es": 22, "it": 9}  # relative weights
NONE = "none"
NAMESPACES = {
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "invoices"
_GENERATOR_VERSION = 1  # bump when the output changes, so stale caches are not reused


@dataclass(frozen=True)
class _Profile:
    lines: tuple[int, int]  # invoice lines (min, max)
    fillers: tuple[int, int]  # plain notes (min, max)
    documents: tuple[int, int]  # non-transport AdditionalDocumentReferences (min, max)
    detailed: bool  # optional UBL elements: dates of references, contacts, full addresses, item details
    indent: str | None  # pretty-print with this indent, or one compact line


PROFILES = {
    "small": _Profile(lines=(1, 1), fillers=(0, 2), documents=(1, 1), detailed=False, indent=None),
    "paper": _Profile(lines=(3, 5), fillers=(3, 6), documents=(2, 3), detailed=True, indent="  "),
}

# --------------------------------------------------------------------------------------------------
# Vocabularies. Id patterns use {Y} (year), {A<k>} (k letters), {N<k>} (k digits), {CITY} (the
# seller's city code) and the shared choice tables in _CHOICES.
# --------------------------------------------------------------------------------------------------

_TRANSPORT_DOCUMENTS = ("bl", "cmr", "awb")
_OTHER_DOCUMENTS = ("contract", "quotation", "proforma")
_DOCUMENT_CODES = {"bl": "705", "cmr": "730", "awb": "740", "contract": "315", "quotation": "310", "proforma": "325"}
_CHOICES = {
    "SCAC": ("MEDU", "MAEU", "HLCU", "CMDU", "COSU", "ONEY"),
    "OWNER": ("MSCU", "MSKU", "HLXU", "CMAU", "TGHU", "CSQU", "OOLU", "TCNU"),
    "AIRLINE": ("235", "176", "020", "057", "125", "075", "055"),
    "INCOTERM": ("EXW", "FCA", "FOB", "CIF", "DAP", "CPT"),
}
_COMMON_IDS = {
    "bl": ("{SCAC}{N9}", "{SCAC} {N9}", "BL {N8}", "BL-{Y}-{N6}"),
    "cmr": ("CMR-{Y}-{N6}", "CMR {N7}", "{CC} {N7}"),
    "sku": ("{A3}-{N5}", "{N8}"),
}
_CONTAINER_FORMATS = ("{owner}{serial}{check}", "{owner} {serial} {check}", "{owner}-{serial}-{check}", "{owner} {serial}{check}")
_AWB_FORMATS = ("{airline}-{head}{tail}", "AWB {airline}-{head}{tail}", "{airline} {head} {tail}", "{airline}{head}{tail}")
# price ranges are in EUR and converted with _FX
_FX = {"EUR": Decimal("1"), "USD": Decimal("1.08"), "GBP": Decimal("0.85"), "TRY": Decimal("35")}

_VOCAB: dict[str, dict[str, Any]] = {
    "tr": {
        "country": ("TR", "Türkiye"),
        "stems": ("Anadolu", "Ege", "Marmara", "Karadeniz", "Toros", "Başkent", "Yıldız", "Efes", "Demirtaş", "Özkan"),
        "sectors": ("Tekstil", "Gıda", "Makina", "Plastik", "Kimya", "Ambalaj", "Otomotiv", "Tarım Ürünleri"),
        "suffixes": ("San. ve Tic. A.Ş.", "Tic. Ltd. Şti.", "Dış Tic. A.Ş.", "İth. İhr. Ltd. Şti."),
        "streets": ("Atatürk Cad.", "Cumhuriyet Cad.", "İnönü Sok.", "Fevzi Çakmak Cad.", "Gazi Mustafa Kemal Blv.",
                    "Organize Sanayi Bölgesi 4. Cad.", "Barbaros Blv."),
        "cities": (("İstanbul", "Kadıköy", "34"), ("Ankara", "Çankaya", "06"), ("İzmir", "Bornova", "35"),
                   ("Bursa", "Nilüfer", "16"), ("Kocaeli", "Gebze", "41"), ("Mersin", "Akdeniz", "33"),
                   ("Gaziantep", "Şehitkamil", "27"), ("Denizli", "Merkezefendi", "20")),
        "people": (("Ahmet", "Ayşe", "Mehmet", "Elif", "Mustafa", "Zeynep", "Emre", "Selin"),
                   ("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Öztürk", "Arslan", "Doğan")),
        "products": (("Pamuklu Penye Kumaş", "MTR", 2, 5), ("Polipropilen Granül", "KGM", 1, 2),
                     ("Rulman 6204 ZZ", "C62", 1, 3), ("Karton Koli 40x30x30", "C62", 0.3, 0.8),
                     ("Zeytinyağı 5 L Teneke", "C62", 20, 30), ("Hidrolik Hortum 1/2 inç", "MTR", 3, 5),
                     ("Çelik Profil 40x40", "KGM", 0.8, 1.5), ("Kuru Kayısı", "KGM", 5, 9),
                     ("Fındık İçi", "KGM", 7, 12), ("Paslanmaz Küresel Vana DN50", "C62", 25, 45)),
        "tax": ("KDV", (20, 10, 1)),
        "currencies": {"TRY": 75, "USD": 15, "EUR": 10},
        "profile": ("TR1.2", "TICARIFATURA", "SATIS"),
        "date_format": "%d.%m.%Y",
        "mail": "muhasebe@{slug}.com.tr",
        "banks": ("Türkiye İş Bankası", "Garanti BBVA", "Akbank", "Yapı Kredi"),
        "ports": ("Mersin", "Ambarlı", "Aliağa", "Gemlik"),
        "carriers": ("Arkas Lojistik", "Ekol Lojistik", "Borusan Lojistik", "Netlog Lojistik"),
        "ids": {
            "invoice": ("{A3}{Y}{N9}",),
            "order": ("SIP-{Y}-{N4}", "PO{N6}"),
            "despatch": ("IRS{Y}{N9}", "{A3}{Y}{N9}", "IRS-{N6}"),
            "receipt": ("TF-{N6}", "MKB{Y}{N5}"),
            "contract": ("SZL-{Y}-{N3}", "SÖZ/{Y}/{N3}"),
            "quotation": ("TKL-{N5}", "TEK{Y}{N4}"),
            "proforma": ("PRF-{Y}-{N4}",),
            "plate": ("{CITY} {A3} {N3}", "{CITY} {A2} {N4}"),
            "tax_id": ("{N10}",),
            "registry": ("0{N15}",),
            "bban": ("{N5}0{N16}",),
            "phone": ("+90 2{N2} {N3} {N2} {N2}",),
        },
        "labels": {"bl": ("Konşimento No", "B/L No"), "cmr": ("CMR No", "Hamule Senedi No"),
                   "awb": ("Hava Konşimentosu No", "AWB No"), "container": ("Konteyner No",)},
        "documents": {"bl": "Konşimento", "cmr": "CMR Hamule Senedi", "awb": "Hava Konşimentosu",
                      "contract": "Sözleşme", "quotation": "Fiyat Teklifi", "proforma": "Proforma Fatura"},
        "transport_notes": ("Ürünler {date} tarihinde {port} çıkışlı olarak {carrier} ile sevk edilmiştir; {label}: {ref}.",
                            "Sevkiyat bilgisi - {label}: {ref}, taşıyıcı firma {carrier}.",
                            "{label}: {ref} (yükleme tarihi {date}, çıkış {port})."),
        "decoy_notes": ("{order} numaralı siparişinize istinaden düzenlenmiştir.",
                        "Banka bilgileri: {bank} IBAN {iban}"),
        "fillers": ("Ödeme vadesi fatura tarihinden itibaren {days} gündür.",
                    "Vadesinde ödenmeyen faturalara aylık %{pct} vade farkı uygulanır.",
                    "Mallar bedeli tamamen ödeninceye kadar satıcının mülkiyetindedir.",
                    "Ödeme yaparken açıklama kısmına fatura numarasını yazınız.",
                    "Faturaya 8 gün içinde itiraz edilmediği takdirde içeriği kabul edilmiş sayılır.",
                    "Teslim şekli: {incoterm}.",
                    "Ürünler orijinal ambalajında ve eksiksiz teslim edilmiştir.",
                    "Firmamızı tercih ettiğiniz için teşekkür ederiz."),
        "payment_terms": "Fatura tarihinden itibaren {days} gün vadeli havale.",
    },
    "en": {
        "country": ("GB", "United Kingdom"),
        "stems": ("Thornbury", "Ashford", "Kestrel", "Northgate", "Blackwell", "Harrington", "Pennine", "Severn", "Albion"),
        "sectors": ("Engineering", "Packaging", "Foods", "Textiles", "Components", "Supplies", "Chemicals"),
        "suffixes": ("Ltd", "Limited", "plc", "& Sons Ltd"),
        "streets": ("High Street", "Station Road", "Church Lane", "Mill Road", "Victoria Street", "Kingsway",
                    "Riverside Way", "Enterprise Park"),
        "cities": (("Manchester", "Trafford Park", "M17"), ("Birmingham", "Aston", "B6"), ("Leeds", "Holbeck", "LS11"),
                   ("Bristol", "Avonmouth", "BS11"), ("Sheffield", "Attercliffe", "S9"), ("Glasgow", "Govan", "G51"),
                   ("Southampton", "Millbrook", "SO15"), ("Felixstowe", "Walton", "IP11")),
        "people": (("James", "Sarah", "Oliver", "Emily", "Daniel", "Charlotte", "Thomas", "Hannah"),
                   ("Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Walker", "Wright")),
        "products": (("Stainless Steel Bolt M10x50", "C62", 0.2, 0.5), ("Corrugated Carton 600x400", "C62", 0.6, 1.2),
                     ("Hydraulic Hose 3/4in", "MTR", 4, 7), ("Organic Rolled Oats 25kg", "C62", 20, 32),
                     ("Cotton Twill Fabric", "MTR", 3, 6), ("LED Panel 600x600 40W", "C62", 18, 30),
                     ("Nitrile Gloves (box of 100)", "C62", 4, 7), ("Pallet Wrap Film 500mm", "C62", 9, 14),
                     ("Industrial Adhesive 5L", "C62", 25, 40)),
        "tax": ("VAT", (20, 5, 0)),
        "currencies": {"GBP": 65, "USD": 25, "EUR": 10},
        "profile": ("urn:cen.eu:en16931:2017", "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0", "380"),
        "date_format": "%d/%m/%Y",
        "mail": "accounts@{slug}.co.uk",
        "banks": ("Barclays Bank", "HSBC UK", "Lloyds Bank", "NatWest"),
        "ports": ("Felixstowe", "Southampton", "London Gateway", "Immingham"),
        "carriers": ("DHL Global Forwarding", "Kuehne + Nagel", "DB Schenker", "Maersk", "Wincanton"),
        "ids": {
            "invoice": ("INV-{N5}", "INV{Y}{N4}", "SI-{N6}"),
            "order": ("PO-{N6}", "PO{N5}", "4500{N6}"),
            "despatch": ("DN-{N5}", "DESP/{Y}/{N4}", "DN{N6}"),
            "receipt": ("GRN-{N6}", "GRN{Y}{N4}"),
            "contract": ("CTR-{Y}-{N3}", "MSA-{N4}"),
            "quotation": ("QUO-{N5}", "Q{Y}-{N4}"),
            "proforma": ("PF-{N5}",),
            "plate": ("{A2}{N2} {A3}",),
            "tax_id": ("GB{N9}",),
            "registry": ("{N8}", "SC{N6}"),
            "bban": ("{A4}{N14}",),
            "phone": ("+44 {N3} {N3} {N4}",),
        },
        "labels": {"bl": ("Bill of Lading No", "B/L No"), "cmr": ("CMR No", "Consignment Note No"),
                   "awb": ("Air Waybill No", "AWB No"), "container": ("Container No",)},
        "documents": {"bl": "Bill of Lading", "cmr": "CMR", "awb": "Air Waybill",
                      "contract": "Contract", "quotation": "Quotation", "proforma": "Pro forma invoice"},
        "transport_notes": ("Goods dispatched on {date} from {port} via {carrier}; {label}: {ref}.",
                            "Shipping details - {label}: {ref}, carrier {carrier}.",
                            "{label}: {ref} (loaded {date}, {port})."),
        "decoy_notes": ("Issued against your purchase order {order}.",
                        "Bank details: {bank}, IBAN {iban}"),
        "fillers": ("Payment due within {days} days of the invoice date.",
                    "Late payments are subject to interest at {pct}% per month.",
                    "Goods remain the property of the seller until paid in full.",
                    "Please quote the invoice number as the payment reference.",
                    "Delivery terms: {incoterm}.",
                    "Any discrepancies must be reported within 7 days of receipt.",
                    "Prices are exclusive of VAT unless stated otherwise.",
                    "Thank you for your business."),
        "payment_terms": "Net {days} days from invoice date.",
    },
    "es": {
        "country": ("ES", "España"),
        "stems": ("Levante", "Ibérica", "Cantábrica", "Mediterránea", "Aragonesa", "Castellana", "Guadalquivir", "Sierra Nevada"),
        "sectors": ("Envases", "Alimentación", "Textil", "Maquinaria", "Química", "Cerámica", "Suministros Industriales"),
        "suffixes": ("S.L.", "S.A.", "S.L.U."),
        "streets": ("Calle Mayor", "Avenida de la Constitución", "Calle de Alcalá", "Polígono Industrial Las Salinas",
                    "Paseo de la Castellana", "Avenida del Puerto", "Calle San Vicente"),
        "cities": (("Madrid", "Vallecas", "28"), ("Barcelona", "Zona Franca", "08"), ("Valencia", "Poblats Marítims", "46"),
                   ("Sevilla", "Triana", "41"), ("Bilbao", "Zorrotzaurre", "48"), ("Zaragoza", "Plaza", "50"),
                   ("Algeciras", "El Rinconcillo", "11")),
        "people": (("Javier", "Lucía", "Carlos", "María", "Alejandro", "Carmen", "Pablo", "Laura"),
                   ("García", "Martínez", "López", "Sánchez", "Pérez", "Gómez", "Fernández", "Ruiz")),
        "products": (("Aceite de oliva virgen extra 5 L", "C62", 25, 40), ("Azulejo cerámico 30x60", "MTK", 9, 18),
                     ("Tornillo hexagonal M8", "C62", 0.1, 0.3), ("Caja de cartón 40x30", "C62", 0.4, 0.9),
                     ("Tejido de algodón", "MTR", 3, 6), ("Vino tinto Rioja crianza 75 cl", "C62", 5, 9),
                     ("Manguera hidráulica 1/2 pulgada", "MTR", 3, 6), ("Naranjas de Valencia (caja 15 kg)", "C62", 9, 14)),
        "tax": ("IVA", (21, 10, 4)),
        "currencies": {"EUR": 90, "USD": 10},
        "profile": ("urn:cen.eu:en16931:2017", "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0", "380"),
        "date_format": "%d/%m/%Y",
        "mail": "administracion@{slug}.es",
        "banks": ("Banco Santander", "BBVA", "CaixaBank", "Banco Sabadell"),
        "ports": ("Valencia", "Algeciras", "Barcelona", "Bilbao"),
        "carriers": ("Grupo Sesé", "Transportes Ochoa", "DHL Freight", "MSC"),
        "ids": {
            "invoice": ("F{Y}-{N5}", "FAC-{Y}/{N4}", "A-{N6}"),
            "order": ("PED-{N5}", "PO-{Y}-{N4}"),
            "despatch": ("ALB-{Y}/{N4}", "ALB {N6}", "AL{Y}-{N5}"),
            "receipt": ("REC-{N6}", "ENT/{Y}/{N4}"),
            "contract": ("CON-{Y}/{N3}", "CTO-{N4}"),
            "quotation": ("PRE-{N5}", "PRES/{Y}/{N3}"),
            "proforma": ("PRO-{Y}-{N4}",),
            "plate": ("{N4} {A3}", "{N4}-{A3}"),
            "tax_id": ("ESB{N8}", "ESA{N8}"),
            "registry": ("B{N8}",),
            "bban": ("{N20}",),
            "phone": ("+34 9{N2} {N3} {N3}",),
        },
        "labels": {"bl": ("Conocimiento de embarque n.º", "B/L n.º"), "cmr": ("Carta de porte CMR n.º", "CMR n.º"),
                   "awb": ("Guía aérea n.º", "AWB n.º"), "container": ("N.º de contenedor",)},
        "documents": {"bl": "Conocimiento de embarque", "cmr": "Carta de porte CMR", "awb": "Guía aérea",
                      "contract": "Contrato", "quotation": "Presupuesto", "proforma": "Factura proforma"},
        "transport_notes": ("Mercancía expedida el {date} desde {port} con {carrier}; {label}: {ref}.",
                            "Datos del transporte - {label}: {ref}, transportista {carrier}.",
                            "{label}: {ref} (carga {date}, {port})."),
        "decoy_notes": ("Factura correspondiente a su pedido n.º {order}.",
                        "Datos bancarios: {bank}, IBAN {iban}"),
        "fillers": ("Forma de pago: transferencia bancaria a {days} días fecha factura.",
                    "En caso de impago se aplicará un interés de demora del {pct}% mensual.",
                    "La mercancía viaja por cuenta y riesgo del comprador.",
                    "Indique el número de factura en el concepto de la transferencia.",
                    "Condiciones de entrega: {incoterm}.",
                    "Cualquier reclamación deberá comunicarse en un plazo de 7 días.",
                    "Operación sujeta a IVA según la Ley 37/1992.",
                    "Gracias por su confianza."),
        "payment_terms": "Transferencia a {days} días fecha factura.",
    },
    "it": {
        "country": ("IT", "Italia"),
        "stems": ("Adriatica", "Tirrenica", "Lombarda", "Padana", "Veneta", "Ligure", "Dolomiti", "Vesuviana"),
        "sectors": ("Imballaggi", "Alimentari", "Tessile", "Meccanica", "Chimica", "Ceramiche", "Forniture Industriali"),
        "suffixes": ("S.r.l.", "S.p.A.", "S.n.c."),
        "streets": ("Via Roma", "Via Garibaldi", "Corso Italia", "Via dell'Industria", "Viale Europa", "Via Mazzini",
                    "Via del Porto"),
        "cities": (("Milano", "Lambrate", "20"), ("Torino", "Mirafiori", "10"), ("Bologna", "Borgo Panigale", "40"),
                   ("Genova", "Sampierdarena", "16"), ("Napoli", "Poggioreale", "80"), ("Verona", "Borgo Roma", "37"),
                   ("Bari", "San Paolo", "70")),
        "people": (("Marco", "Giulia", "Luca", "Francesca", "Andrea", "Chiara", "Matteo", "Sara"),
                   ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci")),
        "products": (("Pasta di semola 500 g", "C62", 0.8, 1.5), ("Olio extravergine d'oliva 1 L", "C62", 7, 12),
                     ("Piastrelle in gres 60x60", "MTK", 12, 25), ("Bullone in acciaio M10", "C62", 0.2, 0.5),
                     ("Tessuto di lana", "MTR", 8, 15), ("Valvola a sfera 1 pollice", "C62", 9, 16),
                     ("Scatola in cartone ondulato", "C62", 0.4, 0.9), ("Parmigiano Reggiano 24 mesi", "KGM", 14, 22)),
        "tax": ("IVA", (22, 10, 4)),
        "currencies": {"EUR": 95, "USD": 5},
        "profile": ("urn:cen.eu:en16931:2017", "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0", "380"),
        "date_format": "%d/%m/%Y",
        "mail": "amministrazione@{slug}.it",
        "banks": ("Intesa Sanpaolo", "UniCredit", "Banco BPM", "BPER Banca"),
        "ports": ("Genova", "La Spezia", "Trieste", "Gioia Tauro"),
        "carriers": ("Grimaldi", "Arcese Trasporti", "Fercam", "Gruber Logistics"),
        "ids": {
            "invoice": ("FT {Y}/{N4}", "{N3}/{Y}", "FPR {N4}/{Y}"),
            "order": ("ORD-{Y}/{N4}", "PO {N6}"),
            "despatch": ("DDT {N3}/{Y}", "DDT-{Y}-{N5}", "{N4}/DDT"),
            "receipt": ("RIC-{Y}-{N4}", "BEM {N5}"),
            "contract": ("CONTR. {N3}/{Y}", "CTR-{N4}"),
            "quotation": ("OFF-{Y}-{N4}", "PREV {N4}/{Y}"),
            "proforma": ("PF {N4}/{Y}",),
            "plate": ("{A2} {N3} {A2}", "{A2}{N3}{A2}"),
            "tax_id": ("IT{N11}",),
            "registry": ("MI-{N7}", "TO-{N7}"),
            "bban": ("{A1}{N22}",),
            "phone": ("+39 0{N2} {N7}",),
        },
        "labels": {"bl": ("Polizza di carico n.", "B/L n."), "cmr": ("Lettera di vettura", "CMR n."),
                   "awb": ("Lettera di vettura aerea n.", "AWB n."), "container": ("N. container",)},
        "documents": {"bl": "Polizza di carico", "cmr": "Lettera di vettura CMR", "awb": "Lettera di vettura aerea",
                      "contract": "Contratto", "quotation": "Offerta", "proforma": "Fattura proforma"},
        "transport_notes": ("Merce spedita il {date} da {port} tramite {carrier}; {label}: {ref}.",
                            "Dati di trasporto - {label}: {ref}, vettore {carrier}.",
                            "{label}: {ref} (carico del {date}, {port})."),
        "decoy_notes": ("Rif. vostro ordine n. {order}.",
                        "Coordinate bancarie: {bank}, IBAN {iban}"),
        "fillers": ("Pagamento a mezzo bonifico bancario a {days} giorni data fattura.",
                    "In caso di ritardato pagamento saranno applicati interessi di mora del {pct}% mensile.",
                    "La merce viaggia a rischio e pericolo del committente.",
                    "Indicare il numero della fattura nella causale del bonifico.",
                    "Resa: {incoterm}.",
                    "Eventuali contestazioni devono pervenire entro 8 giorni dal ricevimento.",
                    "Contributo ambientale CONAI assolto ove dovuto.",
                    "Grazie per averci scelto."),
        "payment_terms": "Bonifico bancario a {days} giorni data fattura.",
    },
}

_LANGUAGE_NAMES = {"tr": "Turkish", "en": "English", "es": "Spanish", "it": "Italian"}


def _note_labels(lang: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(label for labels in _VOCAB[lang]["labels"].values() for label in labels))


TRANSPORT_NOTE_LABELS = tuple(dict.fromkeys(label for lang in LANGUAGES for label in _note_labels(lang)))
TRANSPORT_DOCUMENT_TYPES = frozenset(v["documents"][kind] for v in _VOCAB.values() for kind in _TRANSPORT_DOCUMENTS)


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_LETTERS = "ABCDEFGHJKLMNPRSTUVYZ"
_CENT = Decimal("0.01")


def _fill(rng: random.Random, pattern: str, **named: Any) -> str:
    """Fill an id pattern: named values, _CHOICES tables, {A<k>} letters and {N<k>} digits."""

    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key in named:
            return str(named[key])
        if key in _CHOICES:
            return rng.choice(_CHOICES[key])
        alphabet = _LETTERS if key[0] == "A" else string.digits
        return "".join(rng.choice(alphabet) for _ in range(int(key[1:])))

    return _PLACEHOLDER.sub(replace, pattern)


def _el(tag: str, text: Any = None, **attrib: str) -> ET.Element:
    element = ET.Element(tag, attrib)
    if text is not None:
        element.text = str(text)
    return element


def _sub(parent: ET.Element, path: str, text: Any = None, **attrib: str) -> ET.Element:
    """Append a new chain of elements along ``path`` ("cac:A/cbc:B") and return the last one."""
    *steps, last = path.split("/")
    for step in steps:
        parent = ET.SubElement(parent, step)
    parent.append(element := _el(last, text, **attrib))
    return element


def _money(tag: str, amount: Decimal, currency: str) -> ET.Element:
    return _el(tag, f"{amount.quantize(_CENT)}", currencyID=currency)


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text.replace("ı", "i")).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_text.lower())


def _iban(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def _container_check_digit(code: str) -> int:
    """ISO 6346 check digit of owner code + serial (letters skip multiples of 11)."""
    values, value = {}, 10
    for letter in string.ascii_uppercase:
        if value % 11 == 0:
            value += 1
        values[letter] = value
        value += 1
    total = sum((values[c] if c.isalpha() else int(c)) * 2**i for i, c in enumerate(code))
    return total % 11 % 10


def _stratified(values: tuple[str, ...], weights: list[float], n: int, rng: random.Random) -> list[str]:
    """n values with counts proportional to weights (largest remainder), in shuffled order."""
    exact = [n * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(values)), key=lambda i: (exact[i] - counts[i], rng.random()), reverse=True)
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    out = [value for value, count in zip(values, counts, strict=True) for _ in range(count)]
    rng.shuffle(out)
    return out


# --------------------------------------------------------------------------------------------------
# Invoice builder
# --------------------------------------------------------------------------------------------------


@dataclass
class _Line:
    name: str
    unit: str
    quantity: int
    price: Decimal
    rate: int
    sku: str

    @property
    def amount(self) -> Decimal:
        return (self.price * self.quantity).quantize(_CENT)


@dataclass
class _Context:
    """Random state and the values shared by several parts of one invoice."""

    rng: random.Random
    lang: str
    profile: _Profile
    issue_date: date
    currency: str
    days: int
    decoys: list[str] = field(default_factory=list)

    @property
    def vocab(self) -> dict[str, Any]:
        return _VOCAB[self.lang]

    def ident(self, kind: str, lang: str | None = None, decoy: bool = True, **named: Any) -> str:
        """A new identifier of ``kind`` in ``lang``'s format; decoys are recorded."""
        vocab = _VOCAB[lang or self.lang]
        patterns = vocab["ids"].get(kind) or _COMMON_IDS[kind]
        value = _fill(self.rng, self.rng.choice(patterns), Y=self.issue_date.year, CC=vocab["country"][0], **named)
        if decoy:
            self.decoys.append(value)
        return value

    def day(self, offset: int) -> str:
        return (self.issue_date + timedelta(days=offset)).isoformat()


def _new_context(rng: random.Random, lang: str, profile: _Profile) -> _Context:
    currencies = _VOCAB[lang]["currencies"]
    return _Context(
        rng=rng,
        lang=lang,
        profile=profile,
        issue_date=date(2023, 1, 2) + timedelta(days=rng.randrange(900)),
        currency=rng.choices(list(currencies), weights=list(currencies.values()))[0],
        days=rng.choice((30, 45, 60, 90)),
    )


def _address(ctx: _Context, lang: str, tag: str) -> tuple[ET.Element, tuple[str, str, str]]:
    """A postal address in ``lang``'s country and its (city, district, code) row; code is the postal prefix."""
    vocab, rng = _VOCAB[lang], ctx.rng
    city, district, code = rng.choice(vocab["cities"])
    address = _el(tag)
    _sub(address, "cbc:StreetName", rng.choice(vocab["streets"]))
    if ctx.profile.detailed:
        _sub(address, "cbc:BuildingNumber", rng.randint(1, 180))
        _sub(address, "cbc:CitySubdivisionName", district)
    _sub(address, "cbc:CityName", city)
    if ctx.profile.detailed:
        inward = f" {rng.randint(1, 9)}{{A2}}" if lang == "en" else "{N3}"  # UK postcodes: "M17 7NP"
        _sub(address, "cbc:PostalZone", _fill(rng, code + inward))
    country = _sub(address, "cac:Country")
    _sub(country, "cbc:IdentificationCode", vocab["country"][0])
    if ctx.profile.detailed:
        _sub(country, "cbc:Name", vocab["country"][1])
    return address, (city, district, code)


def _party(ctx: _Context, lang: str, role: str) -> tuple[ET.Element, str, str]:
    """cac:<role>/cac:Party with name, address, tax ids and (detailed) contact; also returns name and city code."""
    vocab, rng, detailed = _VOCAB[lang], ctx.rng, ctx.profile.detailed
    stem = rng.choice(vocab["stems"])
    name = f"{stem} {rng.choice(vocab['sectors'])} {rng.choice(vocab['suffixes'])}"
    tax_id = ctx.ident("tax_id", lang)
    wrapper = _el(role)
    party = _sub(wrapper, "cac:Party")
    if lang == "tr":
        _sub(party, "cac:PartyIdentification/cbc:ID", tax_id, schemeID="VKN")
        if detailed:
            _sub(party, "cac:PartyIdentification/cbc:ID", ctx.ident("registry", lang), schemeID="MERSISNO")
    _sub(party, "cac:PartyName/cbc:Name", name)
    address, (_, district, code) = _address(ctx, lang, "cac:PostalAddress")
    party.append(address)
    tax = _sub(party, "cac:PartyTaxScheme")
    if lang == "tr":
        _sub(tax, "cac:TaxScheme/cbc:Name", district)  # the tax office
    else:
        _sub(tax, "cbc:CompanyID", tax_id)
        _sub(tax, "cac:TaxScheme/cbc:ID", "VAT")
    if detailed:
        legal = _sub(party, "cac:PartyLegalEntity")
        _sub(legal, "cbc:RegistrationName", name)
        if lang != "tr":
            _sub(legal, "cbc:CompanyID", ctx.ident("registry", lang))
        contact = _sub(party, "cac:Contact")
        _sub(contact, "cbc:Name", f"{rng.choice(vocab['people'][0])} {rng.choice(vocab['people'][1])}")
        _sub(contact, "cbc:Telephone", ctx.ident("phone", lang, decoy=False))
        _sub(contact, "cbc:ElectronicMail", vocab["mail"].format(slug=_slug(stem)))
    return wrapper, name, code


def _buyer_language(ctx: _Context) -> str:
    """Mostly a domestic buyer, sometimes a foreign one."""
    if ctx.rng.random() < 0.75:
        return ctx.lang
    return ctx.rng.choice([lang for lang in LANGUAGES if lang != ctx.lang])


def _reference_kind(ctx: _Context, category: str) -> str | None:
    kinds = {
        "note": (*_TRANSPORT_DOCUMENTS, "container"),
        "additional_document": _TRANSPORT_DOCUMENTS,
        "despatch": ("despatch",),
        "shipment": ("container", "plate"),
    }
    return ctx.rng.choice(kinds[category]) if category in kinds else None


def _reference(ctx: _Context, kind: str, city_code: str) -> str:
    """A transport reference of ``kind`` in one of its usual spellings."""
    rng = ctx.rng
    if kind == "container":
        owner, serial = rng.choice(_CHOICES["OWNER"]), f"{rng.randrange(10**6):06d}"
        check = _container_check_digit(owner + serial)
        return rng.choice(_CONTAINER_FORMATS).format(owner=owner, serial=serial, check=check)
    if kind == "awb":
        serial = rng.randrange(10**6, 10**7)
        digits = f"{serial}{serial % 7}"  # the 8th digit is a mod-7 check digit
        return rng.choice(_AWB_FORMATS).format(airline=rng.choice(_CHOICES["AIRLINE"]), head=digits[:4], tail=digits[4:])
    return ctx.ident(kind, decoy=False, CITY=city_code)


def _note_fields(ctx: _Context, order_id: str, bank: str, iban: str) -> dict[str, Any]:
    rng, vocab = ctx.rng, ctx.vocab
    return {
        "days": ctx.days,
        "pct": rng.choice(("1", "1,5", "2", "3")),
        "incoterm": f"{rng.choice(_CHOICES['INCOTERM'])} {rng.choice(vocab['ports'])}",
        "date": (ctx.issue_date - timedelta(days=rng.randint(1, 10))).strftime(vocab["date_format"]),
        "port": rng.choice(vocab["ports"]),
        "carrier": rng.choice(vocab["carriers"]),
        "order": order_id,
        "bank": bank,
        "iban": iban,
    }


def _notes(ctx: _Context, fields: dict[str, Any]) -> list[str]:
    """Plain notes plus, sometimes, notes quoting the order number or the IBAN."""
    rng, vocab = ctx.rng, ctx.vocab
    notes = rng.sample(vocab["fillers"], rng.randint(*ctx.profile.fillers))
    notes += [note for note in vocab["decoy_notes"] if rng.random() < 0.5]
    rng.shuffle(notes)
    return [note.format(**fields) for note in notes]


def _transport_note(ctx: _Context, kind: str, reference: str, fields: dict[str, Any]) -> str:
    label = ctx.rng.choice(ctx.vocab["labels"][kind])
    return ctx.rng.choice(ctx.vocab["transport_notes"]).format(**fields, label=label, ref=reference)


def _document_reference(ctx: _Context, kind: str, doc_id: str) -> ET.Element:
    """cac:AdditionalDocumentReference; the type is named in the invoice's language or in English."""
    rng = ctx.rng
    vocab = ctx.vocab if rng.random() < 0.5 else _VOCAB["en"]
    element = _el("cac:AdditionalDocumentReference")
    _sub(element, "cbc:ID", doc_id)
    if ctx.profile.detailed:
        _sub(element, "cbc:IssueDate", ctx.day(-rng.randint(1, 60)))
    if rng.random() < 0.5:
        _sub(element, "cbc:DocumentTypeCode", _DOCUMENT_CODES[kind])
    _sub(element, "cbc:DocumentType", vocab["documents"][kind])
    return element


def _reference_element(ctx: _Context, tag: str, doc_id: str, days_before: tuple[int, int]) -> ET.Element:
    """An order/despatch/receipt reference: its cbc:ID and (detailed) cbc:IssueDate."""
    element = _el(tag)
    _sub(element, "cbc:ID", doc_id)
    if ctx.profile.detailed:
        _sub(element, "cbc:IssueDate", ctx.day(-ctx.rng.randint(*days_before)))
    return element


def _delivery(ctx: _Context, buyer_lang: str, equipment: str | None, kind: str | None) -> ET.Element:
    """cac:Delivery; with ``equipment`` a Shipment carrying it as TransportEquipment/cbc:ID."""
    rng = ctx.rng
    delivery = _el("cac:Delivery")
    _sub(delivery, "cbc:ActualDeliveryDate", ctx.day(-rng.randint(0, 5)))
    if ctx.profile.detailed:
        delivery.append(_address(ctx, buyer_lang, "cac:DeliveryAddress")[0])
    if equipment is not None:
        shipment = _sub(delivery, "cac:Shipment")
        _sub(shipment, "cbc:ID", "1")
        _sub(shipment, "cbc:GrossWeightMeasure", rng.randint(800, 24000), unitCode="KGM")
        unit = _sub(shipment, "cac:TransportHandlingUnit/cac:TransportEquipment")
        _sub(unit, "cbc:ID", equipment)
        _sub(unit, "cbc:TransportEquipmentTypeCode", "CN" if kind == "container" else "TE")
    return delivery


def _payment(ctx: _Context, seller_name: str, bank: str, iban: str) -> list[ET.Element]:
    means = _el("cac:PaymentMeans")
    _sub(means, "cbc:PaymentMeansCode", "42" if ctx.lang == "tr" else ctx.rng.choice(("30", "58")))
    if ctx.profile.detailed:
        _sub(means, "cbc:PaymentDueDate", ctx.day(ctx.days))
    account = _sub(means, "cac:PayeeFinancialAccount")
    _sub(account, "cbc:ID", iban)
    if not ctx.profile.detailed:
        return [means]
    _sub(account, "cbc:Name", seller_name)
    _sub(account, "cac:FinancialInstitutionBranch/cbc:Name", bank)
    terms = _el("cac:PaymentTerms")
    _sub(terms, "cbc:Note", ctx.vocab["payment_terms"].format(days=ctx.days))
    return [means, terms]


def _lines(ctx: _Context) -> list[_Line]:
    rng, vocab = ctx.rng, ctx.vocab
    rates = vocab["tax"][1]
    count = rng.randint(*ctx.profile.lines)
    products = rng.sample(vocab["products"], min(count, len(vocab["products"])))
    products += [rng.choice(vocab["products"]) for _ in range(count - len(products))]  # long invoices repeat
    lines = []
    for name, unit, low, high in products:
        price = (Decimal(str(rng.uniform(low, high))) * _FX[ctx.currency]).quantize(_CENT)
        quantity = rng.randint(10, 2000) if unit in ("KGM", "MTR", "MTK") else rng.randint(1, 400)
        rate = rng.choices(rates, weights=(6, 3, 1))[0]
        lines.append(_Line(name, unit, quantity, price, rate, ctx.ident("sku", decoy=False)))
    return lines


def _tax_scheme(ctx: _Context, parent: ET.Element) -> None:
    scheme = _sub(parent, "cac:TaxScheme")
    name = ctx.vocab["tax"][0]
    if ctx.lang == "tr":
        _sub(scheme, "cbc:Name", name)
        _sub(scheme, "cbc:TaxTypeCode", "0015")
    else:
        _sub(scheme, "cbc:ID", "VAT")


def _line_element(ctx: _Context, number: int, line: _Line) -> ET.Element:
    element = _el("cac:InvoiceLine")
    _sub(element, "cbc:ID", number)
    _sub(element, "cbc:InvoicedQuantity", line.quantity, unitCode=line.unit)
    element.append(_money("cbc:LineExtensionAmount", line.amount, ctx.currency))
    item = _sub(element, "cac:Item")
    _sub(item, "cbc:Name", line.name)
    if ctx.profile.detailed:
        _sub(item, "cac:SellersItemIdentification/cbc:ID", line.sku)
        category = _sub(item, "cac:ClassifiedTaxCategory")
        _sub(category, "cbc:ID", "S" if line.rate else "Z")
        _sub(category, "cbc:Percent", line.rate)
        _tax_scheme(ctx, category)
    _sub(element, "cac:Price").append(_money("cbc:PriceAmount", line.price, ctx.currency))
    return element


def _tax_amount(base: Decimal, rate: int) -> Decimal:
    return (base * rate / 100).quantize(_CENT)


def _totals(ctx: _Context, lines: list[_Line]) -> list[ET.Element]:
    """cac:TaxTotal (detailed: one subtotal per rate) and cac:LegalMonetaryTotal."""
    bases: dict[int, Decimal] = {}
    for line in lines:
        bases[line.rate] = bases.get(line.rate, Decimal(0)) + line.amount
    tax = sum((_tax_amount(base, rate) for rate, base in bases.items()), Decimal(0))
    net = sum(bases.values(), Decimal(0))
    tax_total = _el("cac:TaxTotal")
    tax_total.append(_money("cbc:TaxAmount", tax, ctx.currency))
    for rate, base in sorted(bases.items(), reverse=True) if ctx.profile.detailed else ():
        subtotal = _sub(tax_total, "cac:TaxSubtotal")
        subtotal.append(_money("cbc:TaxableAmount", base, ctx.currency))
        subtotal.append(_money("cbc:TaxAmount", _tax_amount(base, rate), ctx.currency))
        _sub(subtotal, "cbc:Percent", rate)
        _tax_scheme(ctx, _sub(subtotal, "cac:TaxCategory"))
    monetary = _el("cac:LegalMonetaryTotal")
    monetary.append(_money("cbc:LineExtensionAmount", net, ctx.currency))
    if ctx.profile.detailed:
        monetary.append(_money("cbc:TaxExclusiveAmount", net, ctx.currency))
        monetary.append(_money("cbc:TaxInclusiveAmount", net + tax, ctx.currency))
    monetary.append(_money("cbc:PayableAmount", net + tax, ctx.currency))
    return [tax_total, monetary]


def _header(ctx: _Context, invoice_id: str) -> list[ET.Element]:
    customization, profile_id, type_code = ctx.vocab["profile"]
    elements = [_el("cbc:UBLVersionID", "2.1"), _el("cbc:CustomizationID", customization),
                _el("cbc:ProfileID", profile_id)] if ctx.profile.detailed else []
    elements.append(_el("cbc:ID", invoice_id))
    if ctx.lang == "tr":
        invoice_uuid = str(uuid.UUID(int=ctx.rng.getrandbits(128), version=4))
        ctx.decoys.append(invoice_uuid)
        elements.append(_el("cbc:UUID", invoice_uuid))
    elements.append(_el("cbc:IssueDate", ctx.issue_date.isoformat()))
    if ctx.lang != "tr":
        elements.append(_el("cbc:DueDate", ctx.day(ctx.days)))
    elements.append(_el("cbc:InvoiceTypeCode", type_code))
    return elements


_FIXED_LOCATIONS = {
    "despatch": "cac:DespatchDocumentReference/cbc:ID",
    "shipment": "cac:Delivery/cac:Shipment/cac:TransportHandlingUnit/cac:TransportEquipment/cbc:ID",
}


def _insert_randomly(rng: random.Random, items: list, item: Any) -> int:
    """Insert ``item`` at a random position of ``items``; return its 1-based (XPath) index."""
    position = rng.randint(0, len(items))
    items.insert(position, item)
    return position + 1


def _serialize(root: ET.Element, indent: str | None) -> str:
    if indent:
        ET.indent(root, space=indent)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _build_record(rng: random.Random, category: str, lang: str, profile: _Profile) -> dict[str, Any]:
    """One invoice with its transport reference placed according to ``category``."""
    ctx = _new_context(rng, lang, profile)
    invoice_id, order_id = ctx.ident("invoice"), ctx.ident("order")
    bank = rng.choice(ctx.vocab["banks"])
    iban = _iban(ctx.vocab["country"][0], ctx.ident("bban", decoy=False))
    ctx.decoys.append(iban)
    seller, seller_name, city_code = _party(ctx, lang, "cac:AccountingSupplierParty")
    buyer_lang = _buyer_language(ctx)
    buyer, _, _ = _party(ctx, buyer_lang, "cac:AccountingCustomerParty")
    kind = _reference_kind(ctx, category)
    reference = _reference(ctx, kind, city_code) if kind else NONE

    fields = _note_fields(ctx, order_id, bank, iban)
    notes = _notes(ctx, fields)
    documents = [_document_reference(ctx, doc, ctx.ident(doc))
                 for doc in rng.sample(_OTHER_DOCUMENTS, rng.randint(*profile.documents))]
    location = _FIXED_LOCATIONS.get(category, "")
    if category == "note":
        index = _insert_randomly(rng, notes, _transport_note(ctx, kind, reference, fields))
        location = f"cbc:Note[{index}]"
    elif category == "additional_document":
        index = _insert_randomly(rng, documents, _document_reference(ctx, kind, reference))
        location = f"cac:AdditionalDocumentReference[{index}]/cbc:ID"

    lines = _lines(ctx)
    root = _el("Invoice", xmlns=NAMESPACES["inv"], **{f"xmlns:{p}": NAMESPACES[p] for p in ("cac", "cbc")})
    root.extend(_header(ctx, invoice_id))
    root.extend(_el("cbc:Note", note) for note in notes)
    root.append(_el("cbc:DocumentCurrencyCode", ctx.currency))
    if profile.detailed:
        root.append(_el("cbc:LineCountNumeric", len(lines)))
    root.append(_reference_element(ctx, "cac:OrderReference", order_id, (5, 40)))
    if category == "despatch":
        root.append(_reference_element(ctx, "cac:DespatchDocumentReference", reference, (0, 3)))
    elif rng.random() < 0.7:
        root.append(_reference_element(ctx, "cac:ReceiptDocumentReference", ctx.ident("receipt"), (0, 3)))
    root.extend(documents)
    root.extend((seller, buyer))
    root.append(_delivery(ctx, buyer_lang, reference if category == "shipment" else None, kind))
    root.extend(_payment(ctx, seller_name, bank, iban))
    root.extend(_totals(ctx, lines))
    root.extend(_line_element(ctx, number, line) for number, line in enumerate(lines, start=1))
    return {
        "invoice_xml": _serialize(root, profile.indent),
        "reference_number": reference,
        "category": category,
        "language": lang,
        "location": location,
        "decoys": list(dict.fromkeys(ctx.decoys)),
    }


def _is_unambiguous(record: dict[str, Any]) -> bool:
    """The reference occurs exactly once and no decoy normalizes to it."""
    reference = record["reference_number"]
    if record["category"] != "none" and record["invoice_xml"].count(reference) != 1:
        return False
    return normalize_reference(reference) not in {normalize_reference(d) for d in record["decoys"]}


def _generate_one(rng: random.Random, category: str, lang: str, profile: _Profile) -> dict[str, Any]:
    for _ in range(20):  # random collisions are rare; redraw with the same (seeded) rng
        record = _build_record(rng, category, lang, profile)
        if _is_unambiguous(record):
            return record
    raise RuntimeError(f"could not generate an unambiguous {category!r} invoice")


def _get_profile(name: str) -> _Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def generate_invoices(n: int, seed: int = 0, profile: str = "small") -> list[dict]:
    """n invoices with balanced categories and languages in LANGUAGE_MIX proportions; deterministic in seed."""
    settings = _get_profile(profile)
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(f"invoices:{seed}")
    categories = _stratified(CATEGORIES, [1] * len(CATEGORIES), n, rng)
    languages = _stratified(LANGUAGES, [LANGUAGE_MIX[lang] for lang in LANGUAGES], n, rng)
    return [
        _generate_one(random.Random(f"invoices:{seed}:{i}"), category, lang, settings)
        for i, (category, lang) in enumerate(zip(categories, languages, strict=True))
    ]


def load_invoices(n: int, seed: int = 0, profile: str = "small", cache_dir: str | Path | None = None) -> Dataset:
    """generate_invoices as a Dataset, cached on disk (Arrow) per profile, seed and n."""
    _get_profile(profile)
    path = Path(cache_dir or DEFAULT_CACHE_DIR) / f"v{_GENERATOR_VERSION}-{profile}-seed{seed}-n{n}"
    if not path.exists():
        rows = [{**row, "decoys": json.dumps(row["decoys"], ensure_ascii=False)} for row in generate_invoices(n, seed, profile)]
        partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
        Dataset.from_list(rows).save_to_disk(str(partial))
        try:
            partial.rename(path)
        except OSError:  # another process cached it first
            shutil.rmtree(partial, ignore_errors=True)
    return Dataset.load_from_disk(str(path))


def to_examples(rows: Iterable[Mapping[str, Any]]) -> list[dspy.Example]:
    """dspy Examples with invoice_xml as the only input."""
    return [
        dspy.Example(
            invoice_xml=row["invoice_xml"],
            reference_number=row["reference_number"],
            category=row["category"],
            language=row["language"],
        ).with_inputs("invoice_xml")
        for row in rows
    ]


_NONE_ANSWERS = {"", "none", "na", "null", "nil", "noreference", "notfound", "notavailable", "unknown", "nan"}
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015./\\]+")


def normalize_reference(s: str) -> str:
    """Lowercase, drop spaces, dashes, dots and slashes; absent-answer spellings become "none"."""
    compact = _SEPARATORS.sub("", str(s if s is not None else "").strip().strip("\"'`").lower())
    return NONE if compact in _NONE_ANSWERS else compact


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def invoice_metric(example: Any, prediction: Any, trace: Any = None) -> float:
    """1.0 when the predicted reference_number matches the gold one after normalization."""
    predicted = _field(prediction, "reference_number")
    if predicted is None:
        return 0.0
    return float(normalize_reference(predicted) == normalize_reference(_field(example, "reference_number")))


_CATEGORY_FEEDBACK = {
    "note": "The reference was written in a cbc:Note, after a transport-document label.",
    "additional_document": "The reference was the cbc:ID of a cac:AdditionalDocumentReference for a transport document.",
    "despatch": "The reference was in cac:DespatchDocumentReference/cbc:ID.",
    "shipment": "The reference was the cbc:ID of the TransportEquipment in cac:Delivery/cac:Shipment.",
    "none": 'This invoice has no transport reference; the answer was "none".',
}


def invoice_metric_with_feedback(
    example: Any, prediction: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
) -> dspy.Prediction:
    """invoice_metric plus feedback text: expected vs got and, when wrong, where the reference was."""
    score = invoice_metric(example, prediction)
    expected, predicted = _field(example, "reference_number"), _field(prediction, "reference_number")
    got = "no reference_number" if predicted is None else f'"{predicted}"'
    if score:
        feedback = f'Correct: expected "{expected}" and got {got}.'
    else:
        hint = _CATEGORY_FEEDBACK.get(_field(example, "category"), "")
        feedback = f'Wrong: expected "{expected}" but got {got}. {hint}'.strip()
    return dspy.Prediction(score=score, feedback=feedback)


class ExtractTransportReference(dspy.Signature):
    """Extract the transport reference number from the invoice."""

    invoice_xml: str = dspy.InputField(desc="a UBL 2.1 invoice in XML")
    reference_number: str = dspy.OutputField(desc='the transport reference number, or "none"')


class AnswerInJSON(dspy.Module):
    """Runs one predictor with DSPy's JSONAdapter.

    The small local models answer "none" to every invoice in ChatAdapter's ``[[ ## field ## ]]``
    format whatever the instruction says, but follow the instruction when asked for a JSON object
    (benchmarks/README.md, headroom section).
    """

    def __init__(self, extract: dspy.Module):
        super().__init__()
        self.extract = extract

    def forward(self, **inputs: Any) -> dspy.Prediction:
        with dspy.context(adapter=dspy.JSONAdapter()):
            return self.extract(**inputs)


PROGRAM_KINDS = ("predict", "cot", "predict-json", "cot-json")


def make_program(kind: str = "predict") -> dspy.Module:
    """dspy.Predict ("predict") or dspy.ChainOfThought ("cot") over ExtractTransportReference.

    A "-json" suffix wraps it in ``AnswerInJSON`` (same predictor, JSONAdapter).
    """
    if kind not in PROGRAM_KINDS:
        raise ValueError(f"unknown program kind {kind!r}; choose one of {list(PROGRAM_KINDS)}")
    base, _, adapter = kind.partition("-")
    module = {"predict": dspy.Predict, "cot": dspy.ChainOfThought}[base](ExtractTransportReference)
    return AnswerInJSON(module) if adapter else module


def _quoted(values: Iterable[str]) -> str:
    return ", ".join(f'"{value}"' for value in values)


HAND_WRITTEN_INSTRUCTION = f"""\
You are given a UBL 2.1 invoice (XML). Return its transport reference number: the identifier of the \
transport document or transport equipment the goods travelled with (bill of lading, CMR consignment \
note, air waybill, despatch advice / delivery note, container or trailer). An invoice carries at most \
one transport reference, in exactly one of these places:

1. A cac:AdditionalDocumentReference whose cbc:DocumentType names a transport document (or whose \
cbc:DocumentTypeCode is 705 bill of lading, 730 road consignment note, 740 air waybill). The type may \
be written in English, Turkish, Spanish or Italian: {_quoted(sorted(TRANSPORT_DOCUMENT_TYPES))}. \
The answer is that reference's cbc:ID.
2. cac:DespatchDocumentReference/cbc:ID (despatch advice, e-İrsaliye, albarán, DDT).
3. cac:Delivery/cac:Shipment/cac:TransportHandlingUnit/cac:TransportEquipment/cbc:ID: a container \
number (e.g. MSCU1234567) or a trailer/truck plate (e.g. 34 ABC 123). The Shipment's own cbc:ID is not it.
4. A cbc:Note in which the reference follows a transport label, such as \
{"; ".join(f"({_LANGUAGE_NAMES[lang]}) {_quoted(_note_labels(lang))}" for lang in LANGUAGES)}. \
The answer is the identifier after the label (keep a prefix that belongs to it, such as "CMR-" or "BL"), \
without the label itself and without the surrounding sentence.

Ignore look-alike numbers: the invoice's cbc:ID and cbc:UUID, cac:OrderReference and order numbers \
quoted in notes, IBANs (cac:PayeeFinancialAccount or bank details in notes), tax and company ids (VKN, \
MERSIS, VAT numbers in PartyIdentification, PartyTaxScheme, PartyLegalEntity), telephone numbers, \
cac:ReceiptDocumentReference (the buyer's goods receipt), AdditionalDocumentReferences that are not \
transport documents (contracts, quotations, pro forma invoices) and item codes.

Copy the reference exactly as written, with its prefix, spaces and dashes (e.g. "CMR-2024-118734", \
"AWB 235-12345675", "MSCU 123456 7"). If the invoice has no transport reference, answer "none"."""


@functools.cache
def _encoding() -> Any:
    """tiktoken's cl100k_base, using the copy bundled with litellm when no cache dir is set."""
    try:
        import tiktoken
    except ImportError:
        return None
    spec = importlib.util.find_spec("litellm")
    bundled = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers" if spec and spec.origin else None
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    if previous is None and bundled is not None and bundled.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    try:
        return tiktoken.get_encoding("cl100k_base")
    except Exception:  # offline without a cached encoding
        return None
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)


def count_tokens(text: str) -> int:
    """cl100k_base token count when tiktoken is usable, else len(text) / 4."""
    encoding = _encoding()
    return len(encoding.encode(text)) if encoding is not None else round(len(text) / 4)
