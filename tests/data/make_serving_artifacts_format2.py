"""Freeze whole transferred-version artifacts as the format-2 code wrote them.

Ran once against the code of commit d56f40f, before the transfers became scikit-learn
estimators: ``git archive d56f40f app/__init__.py app/core | tar -x -C old``, then, from
``old`` (so that the editable install does not shadow it), ``PYTHONPATH=.:<site-packages>
python -S <this file>``. That code's ``fit`` took ``(X_src, X_tgt)`` and SBC was stored as a
spectral map. Do not re-run it against later code: the point of the fixture is that it was
written before the rewrite.
"""

import numpy as np

from app.core.pls import fit_pls
from app.core.serving import ServingModel
from app.core.transfer import DS, PDS, SBC, NaiveTransfer

rng = np.random.default_rng(11)
n, p = 60, 30
grid = np.linspace(0.0, 1.0, p)
axis = np.linspace(400.0, 1800.0, p)
bands = np.exp(-0.5 * ((grid[None, :] - np.array([[0.3], [0.6]])) / 0.06) ** 2)
amounts = rng.uniform(0.2, 1.0, (n, 2))
X = amounts @ bands + 1e-3 * rng.normal(size=(n, p))
y = 3.0 * amounts[:, 0]
source = fit_pls(X[:40], y[:40], axis, n_components=2)
X_tgt = 0.9 * X + 0.03 * np.roll(X, 1, axis=1) + 0.02 + 1e-3 * rng.normal(size=X.shape)
X_std_src, X_std_tgt, X_new = X[40:52], X_tgt[40:52], X_tgt[52:]
out = {"X_new": X_new}
for name, t in {
    "pds": PDS(window=5, rcond=0.01),
    "ds": DS(rcond=0.01),
    "sbc": SBC(),
    "naive": NaiveTransfer(),
}.items():
    t.fit(X_std_src, X_std_tgt, coef=source.coef, intercept=source.intercept)
    served = ServingModel.transferred(source, t)
    for k, v in served.to_arrays().items():
        out[f"{name}__{k}"] = v
    t2, q = served.diagnose(X_new)
    out[f"expected_{name}__predictions"] = served.predict(X_new)
    out[f"expected_{name}__t2"] = t2
    out[f"expected_{name}__q"] = q
np.savez("tests/data/serving_artifacts_format2.npz", **out)
print(len(out), "arrays")
