"""The campaign report: every (model, data set) pair of a results folder (``results/<model>/``),
LGA's readings against brute force, the held-out choice of a reading, CMA, the proxy-size curve
and the runtimes, as ``campaign.md`` beside one study report per model. From the result files
alone (campaign/README.md):

    python -m campaign.report results --out docs/findings
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from campaign.rules import (DEFAULT_HISTORY, PREREGISTERED_READING, RULE_5B_DRAWS,
                            RULE_5B_WRITTEN_AFTER, DefaultChoice, HeldOutChoice, RulesCompared,
                            default_choice, held_out, out_of_sample, rules_compared)
from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate import OVERALL
from goldenlayers.files.outputs import write_output_text
from goldenlayers.locate.readings import DEFAULT_READING
from goldenlayers.report import study_folders, write_reports
from goldenlayers.report.render import markdown_table
from goldenlayers.report.tables import MIN_TEST_REQUESTS, Table, fmt, fmt_interval, fmt_p
from goldenlayers.study.analysis import PRIMARY, StudyResults, load_results
from goldenlayers.study.lga_readings import (PROXY_DRAWS, Pair, ProxySizePoint, ReadingRegret,
                                             proxy_size_curve, reading_regrets, resampled_regrets,
                                             stored_products)

# the proxy-size curve's readings: the one fixed beforehand and locate's default (one if the same)
CURVE_READINGS = tuple(dict.fromkeys((PREREGISTERED_READING, DEFAULT_READING)))


@dataclass(frozen=True)
class PairResult:
    pair: Pair
    results: StudyResults
    complete: bool  # every planned proxy and test request edited at every layer
    readings: list[ReadingRegret]
    proxy_size: list[ProxySizePoint]
    resampled: list[ReadingRegret]  # rule 5b's measure: regret over resampled proxy sets
    measured: bool = True  # enough test requests at every layer for test-set numbers


@dataclass(frozen=True)
class Campaign:
    root: Path
    pairs: list[PairResult]
    held_out: list[HeldOutChoice]
    default: DefaultChoice | None  # rule 5, from three complete pairs on
    rule_five_b: DefaultChoice | None  # rule 5b: by the mean regret over resampled proxy sets
    compared: list[RulesCompared]  # rules 5 and 5b on the pairs completed after 5b was written
    waiting: list[str]  # model folders with no data set that has both proxy and test cells yet
    min_test_requests: int = MIN_TEST_REQUESTS


def load_campaign(root: str | Path, min_test_requests: int = MIN_TEST_REQUESTS) -> Campaign:
    pairs, waiting = [], []
    for folder in study_folders(root):
        try:
            results = load_results(folder)
        except GoldenLayersError as error:  # nothing to analyse yet: say so, do not fail
            waiting.append(f"{folder.name}: {error}")
            continue
        rows = results.locate_rows
        for dataset in results.datasets:
            pair = Pair(str(results.manifest["model"]), dataset)
            test, proxy = results.test[dataset], results.proxy[dataset]
            planned = results.manifest["datasets"][dataset]
            complete = (len(test.case_ids) == planned["test"] and len(proxy.case_ids) == planned["proxy"]
                        and len(test.layers) == results.num_layers == len(proxy.layers))
            measured = len(test.case_ids) >= min_test_requests
            products = stored_products(rows, dataset, "proxy") if measured else []
            readings = reading_regrets(pair, test, products) if products else []
            curve, resampled = [], []
            if products:
                pool = stored_products(rows, dataset, "pool")
                for reading in CURVE_READINGS:
                    curve += proxy_size_curve(pair, test, products, pool, reading)
                resampled = resampled_regrets(pair, test, products, pool, draws=RULE_5B_DRAWS)
            pairs.append(PairResult(pair, results, complete, readings, curve, resampled, measured))
    complete = complete_readings(pairs)
    resampled = complete_resampled(pairs)
    return Campaign(Path(root), pairs, held_out(complete), default_choice(complete),
                    default_choice(resampled), rules_compared(complete, resampled), waiting,
                    min_test_requests)


def complete_readings(pairs: list[PairResult]) -> dict[Pair, list[ReadingRegret]]:
    """Every reading's regret, for the pairs with every planned cell (the only ones rules 4-5 use)."""
    return {p.pair: p.readings for p in pairs if p.complete and p.readings}


def complete_resampled(pairs: list[PairResult]) -> dict[Pair, list[ReadingRegret]]:
    """Every reading's resampled regret (rule 5b's measure), for the complete pairs."""
    return {p.pair: p.resampled for p in pairs if p.complete and p.resampled}


def pair_table(campaign: Campaign) -> Table:
    rows = []
    for p in campaign.pairs:
        r, d = p.results, p.pair.dataset
        test = r.test[d]
        head = (str(p.pair), f"{len(r.proxy[d].case_ids)} / {len(test.case_ids)}",
                f"{len(test.layers)}{'' if p.complete else ' (in progress)'}")
        if not p.measured:
            rows.append((*head, *[f"not measured (n test < {campaign.min_test_requests})"] * 5))
            continue
        golden = test.golden_layer(PRIMARY)
        by_selector = {s.selector: s for s in r.selection if s.dataset == d}
        default = next((x for x in p.readings if x.reading == PREREGISTERED_READING.name), None)
        cma = next((a for a in r.agreement if a.dataset == d and a.method == "cma"), None)
        table1 = next((t for t in r.table1 if t.dataset == d and t.metric == PRIMARY), None)
        rows.append((*head,
                     f"{golden} ({fmt_interval(test.interval(PRIMARY, golden))})",
                     "–" if default is None else
                     f"{default.layer}: {fmt_interval(default.regret.get(PRIMARY))}",
                     "not applicable" if cma is None or cma.layer is None else
                     f"{cma.layer}: {fmt_interval(cma.regret)}",
                     f"{by_selector['BF proxy'].layer}: "
                     f"{fmt_interval(by_selector['BF proxy'].regret.get(PRIMARY))}",
                     "–" if table1 is None else
                     f"{fmt_interval(table1.paired.difference)}, p {fmt_p(table1.paired.test.p_value)}, "
                     f"detectable {fmt(table1.paired.detectable, 3)}"))
    return Table("Per pair: the brute-force golden layer and each selector's regret (test rewrite "
                 "accuracy)",
                 ("pair", "n proxy / test", "layers", "BF golden (RwA [95% CI])",
                  "LGA, reading fixed beforehand: layer, regret [95% CI]", "CMA: layer, regret", "BF proxy: layer, regret",
                  "sample-wise optimal − golden [95% CI], paired p, detectable (80% power)"),
                 tuple(rows), f"LGA's reading fixed before the first cell = "
                 f"{PREREGISTERED_READING.name} (out of sample on every pair; locate's default now is "
                 f"{DEFAULT_READING.name}, see rule 5). Regret = the test golden "
                 "layer's mean minus the selected layer's, bootstrap 95% interval over test "
                 "requests with the best layer re-picked in each resample. 'in progress': not every "
                 "planned request has every layer yet. "
                 f"'not measured': fewer than {campaign.min_test_requests} test requests have every "
                 "layer.")


def readings_table(campaign: Campaign, top: int = 8) -> list[Table]:
    tables = []
    for p in campaign.pairs:
        if not p.readings:
            continue
        ranked = sorted(p.readings, key=lambda x: (x.regret[PRIMARY].mean, p.readings.index(x)))
        shown = ranked[:top] + [x for x in p.readings if x not in ranked[:top] and x.reading in
                                (PREREGISTERED_READING.name, DEFAULT_READING.name)]
        rows = tuple((x.reading, str(x.layer), fmt_interval(x.regret.get(PRIMARY)),
                      fmt_interval(x.regret.get(OVERALL))) for x in shown)
        zero = sum(1 for x in p.readings if x.regret[PRIMARY].mean <= 0.02)
        tables.append(Table(f"LGA readings on {p.pair} (chosen on its own proxy set; regret on its "
                            "test set)", ("reading", "layer", "regret RwA [95% CI]",
                                          "regret OV [95% CI]"), rows,
                            f"{zero} of {len(p.readings)} readings have mean regret <= 0.02. These "
                            "rows are for reading only: choosing a reading by them and reporting it "
                            "here would be choosing on the test set (see the held-out table)."))
    return tables


def held_out_table(campaign: Campaign) -> Table:
    rows = tuple((str(h.pair), h.reading, ", ".join(map(str, h.chosen_on)),
                  fmt(h.mean_regret_elsewhere), str(h.layer), fmt_interval(h.regret.get(PRIMARY)),
                  fmt_interval(h.regret.get(OVERALL)),
                  "yes" if h.regret[PRIMARY].mean <= 0.02 else "no")
                 for h in campaign.held_out)
    return Table("Held out: each pair's reading chosen on the other complete pairs",
                 ("pair", "reading chosen elsewhere", "chosen on", "its mean regret there",
                  "layer here", "regret RwA here [95% CI]", "regret OV here [95% CI]",
                  "<= 0.02"), rows,
                 "Rule 4 of docs/findings.md: the reading with the lowest mean rewrite-accuracy "
                 "regret on the other complete pairs (ties: the earlier reading); target <= 0.02."
                 + ("" if rows else " Empty until two pairs are complete."))


def default_table(campaign: Campaign) -> Table:
    choice = campaign.default
    rows = () if choice is None else tuple(
        (str(r.pair), r.reading, str(r.layer), fmt_interval(r.regret.get(PRIMARY)),
         fmt_interval(r.regret.get(OVERALL))) for r in choice.on_each)
    return Table("Rule 5: the reading chosen on every complete pair (locate's default)",
                 ("pair", "reading", "layer", "regret RwA [95% CI]", "regret OV [95% CI]"), rows,
                 (f"Not chosen from these results: rule 5 needs three complete pairs (locate's "
                  f"default is {DEFAULT_READING.name})." if choice is None else
                  f"Mean rewrite-accuracy regret {fmt(choice.mean_regret)} over the "
                  f"{len(choice.chosen_on)} pairs it was chosen on. These regrets are in-sample "
                  "(the reading was chosen on these very test sets); the held-out table is the "
                  "estimate of how it does on a pair it was not chosen on."))


def out_of_sample_table(campaign: Campaign) -> Table:
    complete = complete_readings(campaign.pairs)
    rows, notes = [], []
    for number, choice in enumerate(DEFAULT_HISTORY, 1):
        label = f"{number}: {choice.reading.name}" + (" (in force)" if number == len(DEFAULT_HISTORY)
                                                       else "")
        rows += [(label, str(r.pair), str(r.layer), fmt_interval(r.regret.get(PRIMARY)),
                  fmt_interval(r.regret.get(OVERALL)),
                  "yes" if r.regret[PRIMARY].mean <= 0.02 else "no")
                 for r in out_of_sample(complete, choice)]
        waiting = [str(p.pair) for p in campaign.pairs
                   if not p.complete and str(p.pair) not in choice.chosen_on]
        notes.append(f"{number} was chosen on {', '.join(choice.chosen_on)} ({choice.when})"
                     + (f"; in progress, so not here until complete: {', '.join(waiting)}"
                        if waiting else ""))
    return Table("Each default rule 5 chose, on the complete pairs it was not chosen on",
                 ("default", "pair", "layer", "regret RwA [95% CI]", "regret OV [95% CI]",
                  "<= 0.02"), tuple(rows),
                 "; ".join(notes) + ". No row here was used to choose its default, so these "
                 "regrets are out of sample." + ("" if rows else " None complete yet."))


def rule_five_b_table(campaign: Campaign) -> Table:
    own = complete_readings(campaign.pairs)
    resampled = complete_resampled(campaign.pairs)

    def mean_over(by_pair: dict[Pair, list[ReadingRegret]], name: str) -> str:
        values = [r.regret[PRIMARY].mean for rows in by_pair.values() for r in rows
                  if r.reading == name]
        return fmt(sum(values) / len(values)) if values else "–"

    rows = tuple((rule, choice.reading, ", ".join(map(str, choice.chosen_on)),
                  mean_over(own, choice.reading), mean_over(resampled, choice.reading))
                 for rule, choice in (("5: each pair's own proxy set", campaign.default),
                                      ("5b: resampled proxy sets", campaign.rule_five_b))
                 if choice is not None)
    return Table("Rules 5 and 5b: the reading each chooses on every complete pair",
                 ("rule", "reading", "chosen on", "mean regret RwA, own proxy sets",
                  "mean regret RwA, resampled proxy sets"), rows,
                 f"Resampled: the mean over {RULE_5B_DRAWS} seeded draws of 20 requests from each "
                 "pair's proxy + pool requests, as rule 5b was written and judged (the figures "
                 f"elsewhere use {PROXY_DRAWS:,} draws); both columns are means of point "
                 "estimates over the pairs, in-sample for both rules. Rule 5 sets locate's default; "
                 "rule 5b is judged in the next table." + ("" if rows else " Needs three complete "
                                                           "pairs."))


def rules_compared_table(campaign: Campaign) -> Table:
    tests = {p.pair: p.results.test[p.pair.dataset] for p in campaign.pairs}
    rows = []
    for c in campaign.compared:
        # how much worse rule 5b's layer did than rule 5's, request by request on this test set
        paired = tests[c.pair].compare(PRIMARY, c.rule_five_b.layer, c.rule_five.layer)
        rows.append((str(c.pair), c.rule_five.reading, str(c.rule_five.layer),
                     fmt_interval(c.rule_five.regret.get(PRIMARY)), c.rule_five_b.reading,
                     str(c.rule_five_b.layer), fmt_interval(c.rule_five_b.regret.get(PRIMARY)),
                     f"{fmt_interval(paired.difference)}, p {fmt_p(paired.test.p_value)}, "
                     f"detectable {fmt(paired.detectable, 3)}"))
    return Table("Rules 5 and 5b out of sample: pairs completed after rule 5b was written",
                 ("pair", "rule 5's reading (other pairs)", "layer", "regret RwA [95% CI]",
                  "rule 5b's reading (other pairs)", "layer", "regret RwA [95% CI]",
                  "5b's regret − 5's [95% CI], paired p, detectable (80% power)"), tuple(rows),
                 "Each rule chooses on the other complete pairs; the regret is on this pair's own "
                 "proxy and test sets, which neither choice saw. The last column is a paired t-test "
                 "over this pair's test requests (rule 5's layer against rule 5b's; 0 when they "
                 "pick the same layer), one pair at a time: no test over pairs. Rule 5b was "
                 f"written when these were complete: {', '.join(RULE_5B_WRITTEN_AFTER)}."
                 + ("" if rows else " No pair has completed since."))


def proxy_size_table(campaign: Campaign) -> Table:
    rows = tuple((str(pt.pair), pt.reading, str(pt.size), str(pt.resamples),
                  ", ".join(f"{layer}: {count}" for layer, count in pt.layers.items()),
                  fmt_interval(pt.regret)) for p in campaign.pairs for pt in p.proxy_size)
    return Table("Proxy-size curve of the reading fixed beforehand and of locate's default",
                 ("pair", "reading", "proxy requests", "resamples", "layer: times picked",
                  "mean regret RwA over resamples [95% CI]"), rows,
                 "draws without replacement from the proxy and pool requests (disjoint from test); "
                 "a size equal to all of them draws the same set every time, so its interval is a "
                 "single value, not a measure of spread.")


def runtime_table(campaign: Campaign) -> Table:
    rows = []
    for p in campaign.pairs:
        r, d = p.results, p.pair.dataset
        lga, cma = r.locators.get((d, "lga")), r.locators.get((d, "cma"))
        cells = r.proxy[d].values.shape[0] * len(r.proxy[d].layers)
        rows.append((str(p.pair), fmt(lga.seconds if lga else None, 1),
                     fmt(cma.seconds if cma else None, 1),
                     f"{fmt(r.proxy[d].seconds, 0)} ({cells} cells, "
                     f"{fmt(r.proxy[d].seconds / max(cells, 1), 1)} s each)"))
    return Table("Runtimes on the proxy set (seconds, wall time on the machine that ran them)",
                 ("pair", "LGA", "CMA", "brute force, every layer"), tuple(rows),
                 "LGA: the study's LGA locator, one pass (the default reading when it ran); CMA: "
                 "every proxy fact; brute force: the sum of its cells. Machines and load differ "
                 "between runs: compare within a row.")


def write_campaign_report(root: str | Path, out_dir: str | Path,
                          min_test_requests: int = MIN_TEST_REQUESTS,
                          overwrite: bool = False) -> Path:
    """campaign.md and a report per study folder; the per-model reports follow the output rule
    (``overwrite``: replace report files goldenlayers did not write, e.g. committed ones in a
    fresh clone, whose ownership records are not committed)."""
    campaign = load_campaign(root, min_test_requests)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_reports(root, out, min_test_requests, overwrite)
    tables = [pair_table(campaign), held_out_table(campaign), default_table(campaign),
              out_of_sample_table(campaign), rule_five_b_table(campaign),
              rules_compared_table(campaign), *readings_table(campaign),
              proxy_size_table(campaign), runtime_table(campaign)]
    complete = sum(p.complete for p in campaign.pairs)
    lines = [f"# Campaign: {len(campaign.pairs)} pairs ({complete} complete)", "",
             "Built by `python -m campaign.report " + str(root) + "` from the result files alone. "
             "Per-model reports: " + (", ".join(f"[{f.name}]({f.name}/report.md)"
                                                for f in study_folders(root)
                                                if not any(w.startswith(f"{f.name}:")
                                                           for w in campaign.waiting))
                                      or "none yet") + ".", ""]
    lines += [f"- waiting: {note}" for note in campaign.waiting] + ([""] if campaign.waiting else [])
    path = out / "campaign.md"
    write_output_text(path, "\n".join(lines + [markdown_table(t) for t in tables]))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m campaign.report", description=(
        "campaign.md and one study report per model, from a folder of study folders"))
    parser.add_argument("root", help="the results folder, one study folder per model")
    parser.add_argument("--out", help="where to write (default: ROOT)")
    parser.add_argument("--min-test-requests", type=int, default=MIN_TEST_REQUESTS,
                        help="a pair with fewer test requests at every layer is 'not measured'")
    parser.add_argument("--overwrite", action="store_true", help="replace report files that "
                        "goldenlayers did not write (the committed docs/findings in a fresh clone)")
    args = parser.parse_args(argv)
    if not study_folders(args.root):
        raise SystemExit(f"{args.root} holds no study folder (no */study.json)")
    path = write_campaign_report(args.root, args.out or args.root, args.min_test_requests,
                                 args.overwrite)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
