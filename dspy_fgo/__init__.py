"""dspy-fgo: Fine-Grained Optimization (divide, optimize, merge) as a DSPy optimizer."""

from .baselines import AllAtOnce, BatchWise, Bootstrapping
from .budget import BudgetExhausted
from .candidate import Candidate
from .context import LMFailedError
from .fgo import FGO, PAPER_SETTINGS, FGOTeleprompter, TextGradOptimizer
from .merge import MergeNode
from .optimize import SubsetResult
from .persist import fork_subsets, load_program, save_program
from .result import FGOResult
from .rollout import Trajectory

__all__ = [
    "FGO",
    "FGOTeleprompter",
    "PAPER_SETTINGS",
    "AllAtOnce",
    "BatchWise",
    "Bootstrapping",
    "TextGradOptimizer",
    "Candidate",
    "FGOResult",
    "MergeNode",
    "SubsetResult",
    "Trajectory",
    "BudgetExhausted",
    "LMFailedError",
    "save_program",
    "load_program",
    "fork_subsets",
]
__version__ = "0.1.0"
