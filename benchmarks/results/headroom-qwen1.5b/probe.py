import sys, time, xml.dom.minidom
import dspy
from benchmarks.tasks import invoices
from benchmarks.tasks.registry import load_task
from dspy_fgo.local import local_lms

task_lm, _, server = local_lms(task="qwen1.5b", optimizer="qwen1.5b")
t = load_task("invoices", 0, 0, 20)
exs = [e for e in t.test if e.category != "none"][:6]

def pretty(x):
    return xml.dom.minidom.parseString(x.encode()).toprettyxml(indent=" ")

WORKED = """

Worked example. Invoice (abridged):
<Invoice><cbc:ID>INV-2024-0042</cbc:ID><cbc:Note>Order 4500012 shipped.</cbc:Note><cac:OrderReference><cbc:ID>4500012</cbc:ID></cac:OrderReference><cac:DespatchDocumentReference><cbc:ID>IRS 2024 7781</cbc:ID></cac:DespatchDocumentReference>...</Invoice>
Answer: IRS 2024 7781"""

variants = {
    "hand": (invoices.make_program("predict"), invoices.HAND_WRITTEN_INSTRUCTION, lambda x: x),
    "hand+pretty": (invoices.make_program("predict"), invoices.HAND_WRITTEN_INSTRUCTION, pretty),
    "hand+worked": (invoices.make_program("predict"), invoices.HAND_WRITTEN_INSTRUCTION + WORKED, lambda x: x),
    "cot+hand": (invoices.make_program("cot"), invoices.HAND_WRITTEN_INSTRUCTION, lambda x: x),
    "seed+pretty": (invoices.make_program("predict"), None, pretty),
}
only = sys.argv[1:] or list(variants)
with dspy.context(lm=task_lm):
    for name in only:
        prog, instr, fmt = variants[name]
        if instr:
            for p in prog.predictors():
                p.signature = p.signature.with_instructions(instr)
        t0 = time.time(); outs = []
        for e in exs:
            try:
                outs.append(prog(invoice_xml=fmt(e.invoice_xml)).reference_number)
            except Exception as ex:
                outs.append("ERR")
        score = sum(invoices.normalize_reference(o) == invoices.normalize_reference(e.reference_number) for o, e in zip(outs, exs))
        print(name, score, "/", len(exs), f"{time.time()-t0:.0f}s", outs, [e.reference_number for e in exs], flush=True)
server.stop()
