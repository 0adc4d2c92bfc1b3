"""Freeze transfer artifacts as the format-2 code wrote them (ran once, at commit d56f40f).

That code's ``fit`` took ``(X_src, X_tgt)``; do not re-run it against later code: the point of
the fixture is that it was written before the scikit-learn rewrite.
"""

import numpy as np

from app.core.transfer import DS, PDS, SBC, NaiveTransfer

rng = np.random.default_rng(7)
n, p = 8, 12
axis = np.linspace(0, 1, p)
X_src = np.cumsum(rng.normal(size=(n, p)), axis=1) * 0.1 + np.sin(6 * axis)
X_tgt = 0.9 * X_src + 0.05 * np.roll(X_src, 1, axis=1) + 0.02 + 0.01 * rng.normal(size=(n, p))
coef = rng.normal(size=p) * 0.3
intercept = 1.5
X_new = 0.9 * X_src[:3] + 0.03
out = {"X_new": X_new, "coef": coef, "intercept": np.array(intercept)}
fitted = {
    "pds": PDS(window=5, rcond=0.01).fit(X_src, X_tgt),
    "ds": DS(rcond=0.01, anchor="identity").fit(X_src, X_tgt),
    "dszero": DS(rcond=0.01, anchor="zero").fit(X_src, X_tgt),
    "sbc": SBC().fit(X_src, X_tgt, coef=coef, intercept=intercept),
    "naive": NaiveTransfer().fit(X_src, X_tgt),
}
for name, t in fitted.items():
    arrays = t.to_arrays()
    for k, v in arrays.items():
        out[f"{name}__{k}"] = v
    c_t, i_t = t.collapse(coef, intercept)
    out[f"expected_{name}__coef_t"] = c_t
    out[f"expected_{name}__intercept_t"] = np.array(i_t)
    out[f"expected_{name}__predictions"] = X_new @ c_t + i_t
    if name in ("pds", "ds", "dszero"):
        out[f"expected_{name}__transform"] = t.transform(X_new)
# format 1: DS without anchor (textbook DS), as written before the anchor existed
for k, v in fitted["dszero"].to_arrays().items():
    if k != "anchor":
        out[f"dsv1__{k}"] = np.array(1) if k == "format_version" else v
for k in ("coef_t", "intercept_t", "predictions", "transform"):
    out[f"expected_dsv1__{k}"] = out[f"expected_dszero__{k}"]
np.savez("tests/data/transfer_artifacts_format2.npz", **out)
print(sorted(out))
