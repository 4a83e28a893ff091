"""How the .h5 files here were made (not run by the tests; needs pandas and PyTables).

DeepLabCut's own ``deeplabcut.utils.conversioncode.convertcsv2h5`` steps, applied to
DeepLabCut's openfield example CSV and SLEAP's multi-animal test CSV: pandas reads the
CSV with DeepLabCut's header/index arguments, the rows become DeepLabCut 2.3's
MultiIndex, and ``to_hdf(key="df_with_missing", mode="w")`` writes pandas' default
"fixed" HDFStore layout, which current DeepLabCut writes (the example's own .h5 from
2018 has the older "table" layout).
"""

from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
PEERS = HERE.parents[1]
SOURCES = {
    "CollectedData_Pranav.h5": PEERS
    / "deeplabcut/openfield-Pranav-2018-10-30/labeled-data/m4s1/CollectedData_Pranav.csv",
    "CollectedData_madlc.h5": PEERS / "sleap/dlc/labeled-data/video/madlc_testdata.csv",
}

for name, fn in SOURCES.items():
    head = fn.read_text().splitlines()[:5]
    header = list(range(4)) if "individuals" in head[1] else list(range(3))
    index_col = [0, 1, 2] if head[-1].split(",")[0] == "labeled-data" else 0
    data = pd.read_csv(fn, index_col=index_col, header=header)
    if not isinstance(data.index, pd.MultiIndex):  # guarantee_multiindex_rows
        splits = data.index.str.replace("\\", "/").str.split("/")
        data.index = pd.MultiIndex.from_tuples([tuple(s) for s in splits])
    data.to_hdf(HERE / name, key="df_with_missing", mode="w")
    print(name, data.shape, pd.__version__)
