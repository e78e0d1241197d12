"""dspy-fgo: Fine-Grained Optimization (divide, optimize, merge) as a DSPy optimizer."""

from .candidate import Candidate
from .merge import MergeNode
from .optimize import SubsetResult
from .result import FGOResult
from .rollout import Trajectory
from .saving import load_program, save_program
from .schedules import AllAtOnce, BatchWise, Bootstrapping
from .teleprompter import FGO, FGOTeleprompter, TextGradOptimizer

__all__ = [
    "FGO",
    "FGOTeleprompter",
    "AllAtOnce",
    "BatchWise",
    "Bootstrapping",
    "TextGradOptimizer",
    "Candidate",
    "FGOResult",
    "MergeNode",
    "SubsetResult",
    "Trajectory",
    "save_program",
    "load_program",
]
__version__ = "0.1.0"
