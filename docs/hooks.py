"""MkDocs hook: the benchmark plots enter the site from benchmarks/results/.

The plots are written by the benchmark scripts next to their numbers; the
site serves those files rather than copies that would go stale.
"""

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def on_files(files, config):
    """Adds every `benchmarks/results/*.png` as `img/benchmarks/NAME.png`."""
    for plot in sorted(RESULTS.glob("*.png")):
        files.append(
            File.generated(
                config, f"img/benchmarks/{plot.name}", abs_src_path=str(plot)
            )
        )
    return files
