"""The staged locate's default, chosen by the rule in docs/findings.md ("Staged locate (issue 28)").

Replays every strategy on the seven R-ROME campaign pairs (1,000 seeded search sets of 20 of each
pair's 70 requests), applies the rule (leave one pair out, then all seven) and writes
docs/findings/replay.md, replay.json and the figures. Run from the repository root:

    python -m campaign.replay results --out docs/findings
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from goldenlayers.locate.search import TRIAL_METRICS, Strategy
from goldenlayers.report.replay import SHORT, outcomes_table, plot_replay
from goldenlayers.files.atomic import atomic_write_json, atomic_write_text
from goldenlayers.study.replay import (Outcome, baseline_strategies, halving_strategies,
                                       load_replay_grid, replay)

PAIRS = (("smollm2-135m", "counterfact"), ("smollm2-135m", "zsre"),
         ("smollm2-135m", "wikicounterfact"), ("smollm2-135m", "wikirecent"),
         ("smollm2-135m", "wikibio"), ("gemma3-270m", "counterfact"), ("gemma3-270m", "zsre"))
BUDGETS_PER_LAYER = (1, 2, 3, 5, 10)  # the figure's budgets; the rule may choose 1, 2 or 3
ELIGIBLE_PER_LAYER = (1, 2, 3)  # rule 4: at most 3 L edits, 15% of brute force's 20 L
TIE = 0.002  # rule 5: objectives this close count as equal
CAP = 0.10  # target: p95 regret
MARGIN = 0.01  # target: mean regret at most brute force's + this


def objective(outcomes: Sequence[Outcome]) -> float:
    """Rule 5: the mean over pairs of (mean RwA regret + mean Overall regret) / 2."""
    return sum((o.mean("rewrite_accuracy") + o.mean("overall")) / 2 for o in outcomes) / len(outcomes)


def config_key(strategy: Strategy, num_layers: int) -> tuple[str, int, str, float]:
    """A configuration independent of the model's depth: the budget as a multiple of L."""
    return strategy.name, strategy.shortlist, strategy.by, strategy.budget / num_layers


def tie_break(key: tuple[str, int, str, float]) -> tuple:
    name, shortlist, by, per_layer = key
    return per_layer, shortlist, name != "lga-halving", by != "overall"


def choose(by_pair: dict[str, dict[tuple, Outcome]], pairs: Sequence[str]) -> tuple[tuple, float]:
    """Rule 5 on ``pairs``: the eligible configuration with the best objective, ties broken."""
    keys = [k for k in by_pair[pairs[0]] if k[0].endswith("halving") and k[3] in ELIGIBLE_PER_LAYER]
    scored = {k: objective([by_pair[p][k] for p in pairs]) for k in keys}
    best = min(scored.values())
    near = [k for k, value in scored.items() if value <= best + TIE]
    chosen = min(near, key=tie_break)
    return chosen, scored[chosen]


@dataclass(frozen=True)
class TargetCheck:
    pair: str
    metric: str
    mean: float
    brute_force_mean: float
    p95: float
    copied_mean: float
    edits: float
    edit_cap: float

    @property
    def met(self) -> dict[str, bool]:
        return {"mean <= BF + 0.01": self.mean <= self.brute_force_mean + MARGIN,
                "p95 <= 0.10": self.p95 <= CAP, "edits <= 3 L": self.edits <= self.edit_cap,
                "below copied": self.mean < self.copied_mean}


def run(results: Path, draws: int) -> tuple[dict[str, dict[tuple, Outcome]], dict[str, int]]:
    by_pair, layers = {}, {}
    for model, dataset in PAIRS:
        grid = load_replay_grid(results / model, dataset)
        strategies = baseline_strategies() + halving_strategies(grid.num_layers, BUDGETS_PER_LAYER)
        outcomes = replay(grid, strategies, draws=draws)
        by_pair[grid.name] = {config_key(o.strategy, grid.num_layers): o for o in outcomes}
        layers[grid.name] = grid.num_layers
        print(f"{grid.name}: {len(outcomes)} strategies x {draws} draws", flush=True)
    return by_pair, layers


def checks(by_pair, layers, key) -> list[TargetCheck]:
    found = []
    for pair, outcomes in by_pair.items():
        for metric in TRIAL_METRICS:
            brute = outcomes[("brute-force", 6, metric, 0.0)]
            copied = outcomes[("copied", 6, "overall", 0.0)]
            chosen = outcomes[key]
            found.append(TargetCheck(pair, metric, chosen.mean(metric), brute.mean(metric),
                                     chosen.p95(metric), copied.mean(metric), chosen.mean_edits,
                                     3 * layers[pair]))
    return found


def write(by_pair, layers, out: Path, draws: int) -> None:
    pairs = list(by_pair)
    held = {p: choose(by_pair, [q for q in pairs if q != p]) for p in pairs}
    default, default_objective = choose(by_pair, pairs)
    lines = ["# Replay of layer-choosing strategies (issue 28)", "",
             f"Seven R-ROME pairs; {draws} seeded search sets of 20 of each pair's 70 requests; "
             "regret on the other 50 (best layer re-picked per draw). Built by "
             "`python -m campaign.replay results --out docs/findings` from the committed rows.", "",
             f"Default by rule 5 on all seven pairs: **{_name(default)}** (objective "
             f"{default_objective:.4f}).", "", "## Held-out choices (rule 6)", "",
             "| pair | chosen on the other six | RwA mean / p95 | Overall mean / p95 | edits |",
             "|---|---|---|---|---|"]
    for pair in pairs:
        key, _ = held[pair]
        o = by_pair[pair][key]
        lines.append(f"| {pair} | {_name(key)} | {o.mean('rewrite_accuracy'):.3f} / "
                     f"{o.p95('rewrite_accuracy'):.3f} | {o.mean('overall'):.3f} / "
                     f"{o.p95('overall'):.3f} | {o.mean_edits:.0f} |")
    lines += ["", "## Targets for the default (rule 7; in-sample for the default, see held-out "
              "above)", "", "| pair | metric | mean | BF mean | p95 | copied mean | edits (cap) | "
              "targets met |", "|---|---|---|---|---|---|---|---|"]
    for c in checks(by_pair, layers, default):
        met = ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in c.met.items())
        lines.append(f"| {c.pair} | {SHORT[c.metric]} | {c.mean:.3f} | {c.brute_force_mean:.3f} | "
                     f"{c.p95:.3f} | {c.copied_mean:.3f} | {c.edits:.0f} ({c.edit_cap}) | {met} |")
    for pair in pairs:
        shown = [o for k, o in by_pair[pair].items()
                 if not k[0].endswith("halving") or k[1] == default[1]]
        lines += ["", f"## {pair}", "", *outcomes_table(shown)]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "replay.md", "\n".join(lines) + "\n")
    summary = {"draws": draws, "default": _name(default), "default_objective": default_objective,
               "held_out": {p: _name(k) for p, (k, _) in held.items()},
               "checks": [asdict(c) | {"met": c.met} for c in checks(by_pair, layers, default)],
               "outcomes": {p: {_name(k): _summary(o) for k, o in by_pair[p].items()}
                            for p in pairs}}
    atomic_write_json(out / "replay.json", summary)
    everything = [o for p in pairs for o in by_pair[p].values()]
    label = next(o.strategy.label for o in by_pair[pairs[0]].values()
                 if config_key(o.strategy, layers[pairs[0]]) == default)
    for metric in TRIAL_METRICS:
        plot_replay(everything, metric, out / f"replay_{metric}.png", highlight=label)


def _name(key: tuple) -> str:
    name, shortlist, by, per_layer = key
    if not name.endswith("halving"):
        return name if name != "brute-force" else f"brute-force by {by}"
    return f"{name} m{shortlist} by {by}, budget {per_layer:g} L"


def _summary(outcome: Outcome) -> dict[str, float]:
    values = {"edits": outcome.mean_edits}
    for metric in TRIAL_METRICS:
        values |= {f"{metric}_mean": outcome.mean(metric), f"{metric}_median": outcome.median(metric),
                   f"{metric}_p95": outcome.p95(metric)}
    return {k: (round(v, 5) if math.isfinite(v) else None) for k, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/findings"))
    parser.add_argument("--draws", type=int, default=1000)
    arguments = parser.parse_args()
    by_pair, layers = run(arguments.results, arguments.draws)
    write(by_pair, layers, arguments.out, arguments.draws)
    print(json.dumps(json.loads((arguments.out / "replay.json").read_text())["default"]))


if __name__ == "__main__":
    main()
