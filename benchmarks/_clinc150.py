"""The CLINC150 intent task both throughput benchmarks run on: where its data lies, the
instruction they give the model, and the attribution they print."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATASETS = Path(os.environ.get("TUNEWISE_SHARED_DATASETS")
                       or Path(__file__).resolve().parents[2] / "shared" / "datasets")
DATA = SHARED_DATASETS / "clinc150"
INSTRUCTION = (
    "Classify the intent of the user's message to a voice assistant. "
    "Use oos when the message fits none of the intents."
)
ATTRIBUTION = (
    'CLINC150: Larson et al., "An Evaluation Dataset for Intent Classification and Out-of-Scope '
    'Prediction", EMNLP 2019 (github: clinc/oos-eval), CC BY 3.0'
)
