"""MLflow tracking (``use_mlflow=True``): parameters, per-subset and per-merge scores, tokens, and the
result JSON and merge-tree plot as artifacts. mlflow is imported only when asked for (the ``mlflow``
extra); the run goes to whatever tracking URI and experiment the caller set (``mlflow.set_tracking_uri``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger("dspy." + __name__)


class RunTracker:
    """Does nothing unless the optimizer has ``use_mlflow=True``."""

    def __init__(self, mlflow: Any = None, params: dict[str, Any] | None = None):
        self.mlflow, self.params = mlflow, params or {}

    @classmethod
    def start(cls, optimizer: Any, run: Any) -> RunTracker:
        if not getattr(optimizer, "use_mlflow", False):
            return cls()
        try:
            import mlflow
        except ImportError as exc:
            raise ImportError("use_mlflow=True needs MLflow: pip install 'dspy-fgo[mlflow]'") from exc
        params = {k: v for k, v in optimizer.config().items() if not isinstance(v, dict | list | tuple)}
        params.update(epochs_planned=run.epochs, trainset_size=len(run.trainset),
                      valset_size=len(run.valset) if run.valset is not None else 0,
                      max_metric_calls_planned=run.budget.limits.get("max_metric_calls"))
        return cls(mlflow, params)

    def finish(self, result: Any) -> None:
        if self.mlflow is None:
            return
        mlflow = self.mlflow
        nested = mlflow.active_run() is not None
        with mlflow.start_run(run_name=f"dspy-fgo {result.method}", nested=nested):
            mlflow.log_params({k: ("" if v is None else v) for k, v in self.params.items()})
            for s in result.subsets:
                if s.best_score is not None:
                    mlflow.log_metric("subset_best_score", s.best_score, step=s.subset_id)
                if s.seed_score is not None:
                    mlflow.log_metric("subset_seed_score", s.seed_score, step=s.subset_id)
            for node in result.merge_tree:
                if node["children"] and node["score"] is not None:
                    mlflow.log_metric("merge_score", node["score"], step=node["node_id"])
            for name, value in result.val_scores.items():
                mlflow.log_metric(f"val_{name}", value)
            acc = result.accounting
            mlflow.log_metric("metric_calls", acc.get("metric_calls", 0))
            for role, usage in acc.get("roles", {}).items():
                mlflow.log_metric(f"{role}_prompt_tokens", usage["prompt_tokens"])
                mlflow.log_metric(f"{role}_completion_tokens", usage["completion_tokens"])
                mlflow.log_metric(f"{role}_calls", usage["calls"])
            mlflow.set_tag("final_choice", result.final_choice)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "fgo_result.json"
                path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
                mlflow.log_artifact(str(path))
                try:
                    plot = Path(tmp) / "fgo_merge_tree.png"
                    result.plot(plot)
                    mlflow.log_artifact(str(plot))
                except ImportError:
                    logger.info("matplotlib not installed: no plot artifact")
