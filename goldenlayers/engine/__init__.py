"""The brute-force engine: one cell (edit, score, restore), grids of cells and the golden-layer
picker, and the JSON-lines result files they are kept in. Everything that edits and scores goes
through ``CellRunner.run_batch`` (``run`` is a batch of one); many cells go through ``run_cells``."""

from goldenlayers.engine.cell import (CELL_METRICS, CellKey, CellRow, CellRunner, layer_batches,
                                      request_blocks, seed_everything, unit_overall)
from goldenlayers.engine.grid import Grid, build_grids, grid_of, pick_index, union_grid
from goldenlayers.engine.ranking import (best_layer, direction_name, oriented, parse_direction,
                                         rank_layers, signed)
from goldenlayers.engine.results import LocateRow, ResultsFolder, read_cells
from goldenlayers.engine.run import EXECUTORS, batching_order, check_executor, run_cells

__all__ = ["CELL_METRICS", "EXECUTORS", "CellKey", "CellRow", "CellRunner", "Grid", "LocateRow",
           "ResultsFolder", "batching_order", "best_layer", "build_grids", "check_executor",
           "direction_name", "grid_of", "layer_batches", "oriented", "parse_direction",
           "pick_index", "rank_layers", "read_cells", "request_blocks", "run_cells",
           "seed_everything", "signed", "union_grid", "unit_overall"]
