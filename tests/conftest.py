import os
import sys
from pathlib import Path

# Offline: litellm must not try to download its price list (it retries for seconds).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).parent))
