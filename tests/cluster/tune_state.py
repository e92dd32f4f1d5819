"""What Tune's newest experiment snapshot says about the trials (shared by the cluster tests)."""

from __future__ import annotations

import json
from pathlib import Path


def newest_trials(experiment: Path) -> dict[str, dict]:
    """trial_id -> Tune's record of the trial in the newest ``experiment_state-*.json``, with its
    ``num_failures`` (Tune's retry count); ``{}`` while there is no readable snapshot."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    trials = {}
    for trial_json, run_metadata_json in data.get("trial_data", []):
        trial = json.loads(trial_json)
        trial["num_failures"] = json.loads(run_metadata_json).get("num_failures", 0)
        trials[trial["trial_id"]] = trial
    return trials
