"""The stage timer that batch scoring and its benchmark report: times add up, peaks are per stage."""

import numpy as np

from leadscore.stages import Stages


def test_stages_add_up_over_entries_and_report_their_own_peak():
    stages = Stages(own_peaks=True)
    for _ in range(3):
        with stages("chunk"):
            block = np.ones(2_000_000)  # 16 MB
            del block
    with stages("small"):
        pass
    table = {row["stage"]: row for row in stages.table()}
    assert list(table) == ["chunk", "small"]
    assert table["chunk"]["entered"] == 3 and table["small"]["entered"] == 1
    assert table["chunk"]["seconds"] >= 0 and stages.total_seconds() >= stages.stages["chunk"].seconds
    assert table["chunk"]["seconds"] == round(stages.stages["chunk"].seconds, 3)  # the table rounds to ms
    assert table["chunk"]["peak_gib"] > 0
    assert stages.peak_bytes() >= table["small"]["peak_gib"] * 2**30 * 0.99
