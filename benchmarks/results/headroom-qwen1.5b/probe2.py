import time
import dspy
from benchmarks.tasks import invoices
from benchmarks.tasks.registry import load_task
from dspy_fgo.local import local_lms

task_lm, _, server = local_lms(task="qwen1.5b", optimizer="qwen1.5b")
t = load_task("invoices", 0, 0, 20)
exs = t.test[:8]

class Plain(dspy.Signature):
    """Extract the transport reference number from the invoice."""
    invoice_xml: str = dspy.InputField(desc="a UBL 2.1 invoice in XML")
    reference_number: str = dspy.OutputField(desc="the transport reference number")

HAND = invoices.HAND_WRITTEN_INSTRUCTION.replace('If the invoice has no transport reference, answer "none".',
    'Most invoices carry one: look at every cac:AdditionalDocumentReference, cac:DespatchDocumentReference, cac:TransportEquipment and cbc:Note before you decide. Only if none of them holds a transport reference, answer "none".')
variants = {"plain-seed": (Plain, None), "plain-hand": (Plain, HAND), "hand-v2": (invoices.ExtractTransportReference, HAND)}
with dspy.context(lm=task_lm):
    for name, (sig, instr) in variants.items():
        prog = dspy.Predict(sig if instr is None else sig.with_instructions(instr))
        t0 = time.time(); outs = []
        for e in exs:
            try: outs.append(prog(invoice_xml=e.invoice_xml).reference_number)
            except Exception: outs.append("ERR")
        score = sum(invoices.normalize_reference(o) == invoices.normalize_reference(e.reference_number) for o, e in zip(outs, exs))
        print(name, score, "/", len(exs), f"{time.time()-t0:.0f}s", outs, [e.reference_number for e in exs], flush=True)
server.stop()
