"""The paper's experiments on any model, resumable, in one process or on a Ray cluster.

    run_study(StudySettings(model="smollm2-135m", datasets=("counterfact", "zsre")), "runs/smollm2")
    results = load_results("runs/smollm2")   # the tables' numbers; goldenlayers.report renders them

Every finished unit (one request edited at one layer, one locator run) is committed to a SQLite
store in the run directory (``study.store``); running again skips what is done.
"""

from goldenlayers.study.analysis import StudyResults, load_results
from goldenlayers.study.executor import EXECUTORS, EditTask, EditWorker, WorkerSpec, make_executor
from goldenlayers.study.experiments import DatasetPlan, StudyRun, plan_datasets, run_study
from goldenlayers.study.settings import StudySettings, parse_layers
from goldenlayers.study.store import ResultsStore, SettingsMismatch
from goldenlayers.study.units import EditRecord, EditUnit, LocateRecord, LocateUnit

__all__ = ["EXECUTORS", "DatasetPlan", "EditRecord", "EditTask", "EditUnit", "EditWorker",
           "LocateRecord", "LocateUnit", "ResultsStore", "SettingsMismatch", "StudyResults",
           "StudyRun", "StudySettings", "WorkerSpec", "load_results", "make_executor",
           "parse_layers", "plan_datasets", "run_study"]
