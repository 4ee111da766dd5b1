"""copairs' mean average precision of replicate retrieval against controls (its
"phenotypic activity" recipe), for the vectors in a Parquet file.

Usage: copairs_map.py IN.parquet  (columns group, is_control, vector) -> JSON lines
{"group", "mean_average_precision", "p_value"} on standard output.
"""

import json
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from copairs import map as cmap
from copairs.matching import assign_reference_index

t = pq.read_table(sys.argv[1]).to_pandas()
feats = np.array(t["vector"].tolist(), dtype=np.float64)
meta = pd.DataFrame({"group": t["group"].astype(str), "is_control": t["is_control"]})
meta.loc[meta["is_control"], "group"] = "control"
meta = assign_reference_index(meta, "is_control", reference_col="ref", default_value=-1)
ap = cmap.average_precision(meta, feats, pos_sameby=["group", "ref"], pos_diffby=[],
                            neg_sameby=[], neg_diffby=["group", "ref"], batch_size=20000,
                            progress_bar=False)
ap = ap[~ap["is_control"]]
m = cmap.mean_average_precision(ap, sameby=["group"], null_size=2000, threshold=0.05, seed=0,
                                progress_bar=False)
for _, r in m.iterrows():
    print(json.dumps({"group": r["group"], "mean_average_precision": float(r["mean_average_precision"]),
                      "p_value": float(r["p_value"])}))
