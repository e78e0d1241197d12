"""The quickstart's FGO settings are arguments FGO accepts (the example itself needs the local LLMs)."""

import importlib.util
from pathlib import Path

from fakes import exact_metric

from dspy_fgo import FGO

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


def quickstart_module():
    spec = importlib.util.spec_from_file_location("quickstart", QUICKSTART)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_options_parse_to_valid_fgo_arguments():
    module = quickstart_module()
    options = module.fgo_options(module.QUICKSTART_OPTIONS)
    assert options == {"prune_rules": False, "valset_candidates": 1}
    fgo = FGO(metric=exact_metric, partition="category", **options)  # an unknown name or value raises
    assert fgo.prune_rules is False and fgo.valset_candidates == 1
    assert module.fgo_options("") == {} and module.fgo_options("epochs=2, update=rules") == {"epochs": 2, "update": "rules"}
