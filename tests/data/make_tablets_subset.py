"""Write the tablet shoot-out subset that tests/core/test_tablets.py reads.

Run ``.venv/bin/python tests/data/make_tablets_subset.py [DATA_DIR]`` (default
``../shared/data`` beside the repository). From ``tablets_instrument{1,2}.parquet`` it keeps
every 4th ``cal`` row (100), all 30 ``trans`` rows and every 5th ``test`` row (43), in file
order, and every 8th spectral channel (``nm_600``, ``nm_616``, ... ``nm_1784``: 75 channels),
and writes ``tablets_subset_instrument{1,2}.parquet`` here with the same columns and values
(float64, unchanged). Row i of one file is the same tablet as row i of the other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROWS = {"cal": 4, "trans": 1, "test": 5}  # keep every k-th row of each split
CHANNEL_STEP = 8


def subset(table: pa.Table) -> pa.Table:
    split = np.asarray(table.column("split").to_pylist())
    rows = np.sort(np.concatenate([np.flatnonzero(split == s)[::k] for s, k in ROWS.items()]))
    spectral = [c for c in table.column_names if c.startswith("nm_")][::CHANNEL_STEP]
    return table.take(pa.array(rows)).select(["sample_id", "split", "assay_mg", *spectral])


def main(data_dir: Path) -> None:
    for i in (1, 2):
        out = HERE / f"tablets_subset_instrument{i}.parquet"
        pq.write_table(subset(pq.read_table(data_dir / f"tablets_instrument{i}.parquet")), out)
        print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    default = HERE.parents[1] / ".." / "shared" / "data"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
