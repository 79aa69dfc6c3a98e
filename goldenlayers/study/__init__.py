"""The paper's experiments on any model, resumable, in one process or on a Ray cluster.

    run_study(StudySettings(model="smollm2-135m", datasets=("counterfact", "zsre")), "runs/smollm2")
    results = load_results("runs/smollm2")   # the tables' numbers; goldenlayers.report renders them

Every finished cell (one request edited at one layer) and locator run is appended to the run
folder's JSON-lines result files (``engine.results``); running again skips what is done.
"""

from goldenlayers.study.analysis import StudyResults, load_results
from goldenlayers.study.run import DatasetPlan, StudyRun, plan_datasets, run_study
from goldenlayers.study.settings import StudySettings, parse_layers
from goldenlayers.study.store import SettingsMismatch, read_manifest

__all__ = ["DatasetPlan", "SettingsMismatch", "StudyResults", "StudyRun", "StudySettings",
           "load_results", "parse_layers", "plan_datasets", "read_manifest", "run_study"]
