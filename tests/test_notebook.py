"""The notebook runs top to bottom against a feature table and shows what it promises."""

import nbformat
from nbclient import NotebookClient

from tests.helpers import ROOT


def test_explore_notebook_runs_on_the_feature_table(pipeline_data, monkeypatch):
    monkeypatch.setenv("LEADSCORE_FEATURES", str(pipeline_data["build"].features))
    nb = nbformat.read(ROOT / "notebooks" / "explore.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    build = pipeline_data["build"]
    assert f"{build.rows:,} snapshot rows of {build.leads_with_rows:,} leads" in text
    assert "behavior" in text and "pricing_visits_30d" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
