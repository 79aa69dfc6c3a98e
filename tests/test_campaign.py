"""The campaign's rules (campaign/rules.py, outside the package): the history of defaults ends in
the library's ``DEFAULT_READING``, and rule 5b is judged only on pairs completed after it."""

from campaign.rules import DEFAULT_HISTORY, PREREGISTERED_READING, rules_compared
from goldenlayers.evaluate import Interval
from goldenlayers.locate.readings import DEFAULT_READING
from goldenlayers.study.lga_readings import Pair, ReadingRegret


def test_the_last_default_rule_5_chose_is_the_one_locate_uses():
    assert PREREGISTERED_READING.name == "edit-matrix/dataset/raw/sum/k1/argmax"
    # rule 5 of docs/findings.md, applied on five complete pairs; the earlier choices are kept
    assert [c.reading.name for c in DEFAULT_HISTORY] == [
        "mlp/greedy/raw/sum/k1/argmax", "edit-matrix/dataset/cosine/mean-rank/k1.5/argmax",
        DEFAULT_READING.name]
    assert all(len(c.chosen_on) == len(set(c.chosen_on)) >= 3 for c in DEFAULT_HISTORY)


def test_rules_5_and_5b_are_compared_only_on_pairs_completed_after_5b_was_written():
    def regrets(pair, by_reading):  # reading -> (layer, rewrite regret)
        return [ReadingRegret(pair, name, layer, {"rewrite_accuracy": Interval(value, value, value, 50)})
                for name, (layer, value) in by_reading.items()]

    a, b, c, d = (Pair("m", name) for name in "abcd")
    # "lucky" wins on each pair's own proxy set, "steady" on resampled ones
    own = {p: regrets(p, {"lucky": (1, 0.0), "steady": (2, 0.05)}) for p in (a, b, c)}
    own[d] = regrets(d, {"lucky": (7, 0.4), "steady": (3, 0.01)})
    resampled = {p: regrets(p, {"lucky": (1, 0.3), "steady": (2, 0.06)}) for p in (a, b, c, d)}
    [compared] = rules_compared(own, resampled, written_after=("m x a", "m x b", "m x c"))
    assert compared.pair == d
    assert (compared.rule_five.reading, compared.rule_five.layer) == ("lucky", 7)
    assert (compared.rule_five_b.reading, compared.rule_five_b.layer) == ("steady", 3)
    assert compared.rule_five_b.regret["rewrite_accuracy"].mean == 0.01  # d's own regret, not resampled
    assert rules_compared(own, resampled, written_after=("m x a", "m x b", "m x c", "m x d")) == []
    assert rules_compared(own, resampled, written_after=(), min_pairs=4) == []  # three others only
