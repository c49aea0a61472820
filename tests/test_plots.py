"""benchmarks/plots.py: the result tables it reads, and the plots it draws from the shipped results."""

import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import plots  # noqa: E402


def test_markdown_tables_and_cells_are_read_as_written(tmp_path):
    page = tmp_path / "r.md"
    page.write_text("intro\n\n| method | a NRMSE |\n|---|---|\n| x, y | **0.418 ± 0.025** |\n| z | 1.5 |\n\n"
                    "text\n| k | v |\n|:-:|--|\n| 1 | — |\n")
    tables = plots.markdown_tables(page)
    assert tables == [[{"method": "x, y", "a NRMSE": "**0.418 ± 0.025**"}, {"method": "z", "a NRMSE": "1.5"}],
                      [{"k": "1", "v": "—"}]]
    assert plots.number(tables[0][0]["a NRMSE"]) == (0.418, 0.025)
    assert plots.number("+0.2565 (+7.39%)") == (0.2565, 0.0)
    with pytest.raises(plots.MissingInput):
        plots.number("—")
    with pytest.raises(plots.MissingInput):
        plots.markdown_tables(tmp_path / "absent.md")


def test_every_plot_is_drawn_from_the_shipped_results(tmp_path):
    pytest.importorskip("matplotlib")
    assert plots.main(["--out", str(tmp_path)]) == 0
    for name in ("path_network", "budgets_gap", "compression", "imputation", "lattice"):
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.size[0] > 400 and image.size[1] > 300
