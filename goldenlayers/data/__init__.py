"""Benchmark data: one record type, a loader per format, bundled samples, splits, corpus text."""

from goldenlayers.data.corpus import load_corpus_texts
from goldenlayers.data.formats import FORMATS
from goldenlayers.data.load import BUNDLED, METRICS, Dataset, load_dataset
from goldenlayers.data.records import EditRequest, PromptAnswer
from goldenlayers.data.splits import Split, proxy_union, split

__all__ = ["BUNDLED", "FORMATS", "METRICS", "Dataset", "EditRequest", "PromptAnswer", "Split",
           "load_corpus_texts", "load_dataset", "proxy_union", "split"]
