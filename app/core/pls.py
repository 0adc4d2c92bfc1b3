"""PLS soft sensors: fitting, component selection and the exported linear form.

A PLS1 model on mean-centred spectra is linear in the spectra, so once fitted it is exported as
:class:`LinearSoftSensor`: ``y = X @ coef + intercept`` plus what the process-monitoring
diagnostics need (Hotelling's T² on the scores and Q, the squared prediction error, on the
residuals, with their control limits). That dataclass is the numeric contract between the core,
the artifact store and the services; it round-trips through ``.npz`` without pickle.

:class:`PLSSoftSensor` is the scikit-learn style estimator that fits it, choosing the number of
latent variables by cross-validation with the one-standard-error rule when it is not given.

References
----------
.. [1] Wold, S., Sjöström, M. & Eriksson, L. "PLS-regression: a basic tool of chemometrics."
   Chemometrics and Intelligent Laboratory Systems 58 (2001) 109–130.
.. [2] Hastie, T., Tibshirani, R. & Friedman, J. *The Elements of Statistical Learning*,
   2nd ed., Springer (2009), §7.10 (cross-validation and the one-standard-error rule).
.. [3] Tracy, N. D., Young, J. C. & Mason, R. L. "Multivariate control charts for individual
   observations." Journal of Quality Technology 24 (1992) 88–95.
.. [4] Nomikos, P. & MacGregor, J. F. "Multivariate SPC charts for monitoring batch processes."
   Technometrics 37 (1995) 41–59.
.. [5] Jackson, J. E. & Mudholkar, G. S. "Control procedures for residuals associated with
   principal component analysis." Technometrics 21 (1979) 341–349.
.. [6] Box, G. E. P. "Some theorems on quadratic forms applied in the study of analysis of
   variance problems, I." Annals of Mathematical Statistics 25 (1954) 290–302.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from app.core.spectra import FloatArray, as_axis, as_spectra, as_target

__all__ = ["CVScheme", "LinearSoftSensor", "PLSSoftSensor", "fit_pls"]

CVScheme = Literal["kfold", "blocks"]

_MIN_SAMPLES = 3
_FLOAT_VECTORS = ("coef", "axis", "x_mean", "score_var")
_FLOAT_MATRICES = ("rotations", "loadings")
_FLOAT_SCALARS = ("intercept", "t2_limit_95", "t2_limit_99", "q_limit_95", "q_limit_99")
_INT_SCALARS = ("n_components", "n_train")


@dataclass(frozen=True, eq=False)
class LinearSoftSensor:
    """A fitted PLS soft sensor in its exported, numeric-only form.

    Predictions are ``X @ coef + intercept``. The diagnostics describe the training spectra's
    PLS model: scores ``T = (X - x_mean) @ rotations``, Hotelling's T² on the scores and the
    Q (SPE) residual ``(X - x_mean) - T @ loadings.T``, each with 95 % and 99 % limits for new
    observations.

    Arrays are copied to C-contiguous float64 on construction and made read-only, and every
    shape is checked, so an instance is consistent however it was built (by
    :class:`PLSSoftSensor` or by :meth:`from_arrays` from a stored artifact). Equality is
    identity (``eq=False``): compare the arrays of :meth:`to_arrays` to compare models.

    Parameters
    ----------
    coef : ndarray of shape (n_channels,)
        Regression vector on the raw (uncentred) spectra, in units of y per unit of signal.
    intercept : float
        Offset in units of y.
    axis : ndarray of shape (n_channels,)
        Strictly increasing spectral axis (Raman shift in cm⁻¹ or wavelength in nm) the model
        was trained on.
    n_components : int
        Number of PLS latent variables ``a``.
    x_mean : ndarray of shape (n_channels,)
        Mean training spectrum.
    rotations : ndarray of shape (n_channels, n_components)
        ``W (PᵀW)⁻¹`` (scikit-learn's ``x_rotations_``): scores are ``(X - x_mean) @ rotations``.
    loadings : ndarray of shape (n_channels, n_components)
        X loadings ``P`` (scikit-learn's ``x_loadings_``).
    score_var : ndarray of shape (n_components,)
        Variance of each training score (``ddof=1``); all strictly positive.
    n_train : int
        Number of training spectra, ``n_train > n_components``.
    t2_limit_95, t2_limit_99 : float
        Hotelling T² limits for new observations at 95 % and 99 % confidence.
    q_limit_95, q_limit_99 : float
        Q (SPE) limits at 95 % and 99 % confidence, in squared signal units.

    Raises
    ------
    ValueError
        If a shape, the axis, a variance or a limit is inconsistent (the message names it).
    """

    coef: FloatArray
    intercept: float
    axis: FloatArray
    n_components: int
    x_mean: FloatArray
    rotations: FloatArray
    loadings: FloatArray
    score_var: FloatArray
    n_train: int
    t2_limit_95: float
    t2_limit_99: float
    q_limit_95: float
    q_limit_99: float

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in _INT_SCALARS:
            value = getattr(self, name)
            if isinstance(value, bool | float):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            set_(self, name, operator.index(value))
        for name in _FLOAT_SCALARS:
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
            set_(self, name, value)
        for name in (*_FLOAT_VECTORS, *_FLOAT_MATRICES):
            arr = np.array(getattr(self, name), dtype=np.float64, order="C", copy=True)
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} has a non-finite value")
            set_(self, name, arr)

        coef = self.coef
        if coef.ndim != 1 or coef.shape[0] < 1:
            raise ValueError(f"coef must have shape (n_channels,), got {coef.shape}")
        p, a = coef.shape[0], self.n_components
        if not 1 <= a <= p:
            raise ValueError(f"n_components must be between 1 and n_channels={p}, got {a}")
        set_(self, "axis", as_axis(self.axis, p))
        expected = {
            "x_mean": (p,),
            "rotations": (p, a),
            "loadings": (p, a),
            "score_var": (a,),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(
                    f"{name} must have shape {shape} (n_channels={p}, a={a}), got {got}"
                )
        if not (self.score_var > 0).all():
            raise ValueError(f"score_var must be strictly positive, got {self.score_var}")
        if self.n_train <= a:
            raise ValueError(f"n_train must exceed n_components={a}, got {self.n_train}")
        if not 0 < self.t2_limit_95 <= self.t2_limit_99:
            raise ValueError(
                f"need 0 < t2_limit_95 <= t2_limit_99, got {self.t2_limit_95}, {self.t2_limit_99}"
            )
        if not 0 <= self.q_limit_95 <= self.q_limit_99:
            raise ValueError(
                f"need 0 <= q_limit_95 <= q_limit_99, got {self.q_limit_95}, {self.q_limit_99}"
            )
        for name in (*_FLOAT_VECTORS, *_FLOAT_MATRICES):
            getattr(self, name).setflags(write=False)

    @property
    def n_channels(self) -> int:
        """Number of spectral channels the model expects."""
        return int(self.coef.shape[0])

    def _validate(self, X: ArrayLike) -> FloatArray:
        Xa = as_spectra(X, "X")
        if Xa.shape[1] != self.n_channels:
            raise ValueError(
                f"X has {Xa.shape[1]} channels (shape {Xa.shape}) but the model expects "
                f"{self.n_channels}"
            )
        return Xa

    def predict(self, X: ArrayLike) -> FloatArray:
        """Predict the reference value of each spectrum.

        The channel count is checked; the axis is not (compare it with ``self.axis`` using
        :func:`app.core.spectra.check_same_axis` where the axis is known).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels)
            Spectra on the model's axis.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``X @ coef + intercept``, in units of y.
        """
        return self._validate(X) @ self.coef + self.intercept

    def scores(self, X: ArrayLike) -> FloatArray:
        """Project spectra on the latent variables: ``(X - x_mean) @ rotations``.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        return (self._validate(X) - self.x_mean) @ self.rotations

    def hotelling_t2(self, X: ArrayLike) -> FloatArray:
        """Hotelling's T² of each spectrum: ``sum(t**2 / score_var)`` over the components.

        PLS scores of the training set are mutually orthogonal, so the diagonal form is the
        Mahalanobis distance in the score space.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.diagnose(X)[0]

    def q_residuals(self, X: ArrayLike) -> FloatArray:
        """Q (squared prediction error) of each spectrum: ``||(X - x_mean) - T @ loadings.T||²``.

        Returns
        -------
        ndarray of shape (n_samples,)
            In squared signal units.
        """
        return self.diagnose(X)[1]

    def diagnose(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Return ``(T², Q)`` of each spectrum, computed in one pass.

        Compare them with ``t2_limit_95/99`` and ``q_limit_95/99``: a spectrum above a limit is
        outside the calibration space (T²) or has structure the model does not explain (Q).

        Returns
        -------
        t2, q : ndarray of shape (n_samples,)
        """
        Xc = self._validate(X) - self.x_mean
        T = Xc @ self.rotations
        t2 = np.einsum("ij,ij->i", T, T / self.score_var)
        E = Xc - T @ self.loadings.T
        q = np.einsum("ij,ij->i", E, E)
        return t2, q

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return every field as a numpy array (0-d for scalars), for ``np.savez``.

        The dictionary holds only float64 and int64 arrays, so it is saved and loaded with
        ``allow_pickle=False``; :meth:`from_arrays` reverses it.
        """
        out: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            dtype = np.int64 if f.name in _INT_SCALARS else np.float64
            out[f.name] = np.array(value, dtype=dtype, copy=True)
        return out

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray]) -> LinearSoftSensor:
        """Rebuild a model from :meth:`to_arrays` output or an ``NpzFile`` of it.

        Keys other than the fields (e.g. metadata stored alongside) are ignored.

        Parameters
        ----------
        d : mapping of str to ndarray
            For instance ``np.load(buf, allow_pickle=False)``.

        Raises
        ------
        ValueError
            If a field is missing, is not a real-number array, has the wrong number of
            dimensions, or the shapes are inconsistent.
        """
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise ValueError(f"soft-sensor arrays are missing {', '.join(missing)}")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            arr = np.asarray(d[f.name])
            kinds = "iu" if f.name in _INT_SCALARS else "fiu"
            if arr.dtype.kind not in kinds:
                raise ValueError(
                    f"soft-sensor array {f.name!r} has dtype {arr.dtype}, "
                    f"expected {'an integer' if kinds == 'iu' else 'a real'} number"
                )
            ndim = (
                0
                if f.name in (*_INT_SCALARS, *_FLOAT_SCALARS)
                else 1
                if f.name in _FLOAT_VECTORS
                else 2
            )
            if arr.ndim != ndim:
                raise ValueError(
                    f"soft-sensor array {f.name!r} must be {ndim}-D, got shape {arr.shape}"
                )
            kwargs[f.name] = arr.item() if ndim == 0 else arr
        return cls(**kwargs)


class PLSSoftSensor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """PLS1 regression of a reference value on mean-centred spectra.

    Uses scikit-learn's NIPALS ``PLSRegression(scale=False)``: spectra are centred, not
    autoscaled, so noisy low-signal channels are not inflated. When ``n_components`` is None it
    is chosen by cross-validation with the one-standard-error rule [2]_: the smallest number of
    latent variables whose RMSECV is within one standard error of the minimum RMSECV, the
    standard error being that of the per-fold RMSEs (their SD over ``sqrt(cv)``). The rule
    prefers the more parsimonious model when the extra components are not clearly better.

    Out-of-fold predictions for the final number of components are always computed, so the
    caller can report cross-validated figures of merit on data each fit did not see.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of latent variables; None chooses it by cross-validation. It must leave every
        training fold with more samples than components: ``1 <= n_components <= min(n_min - 1,
        n_channels, rank(X))`` where ``n_min`` is the size of the smallest training fold.
    max_components : int, default=15
        Largest number of latent variables tried when choosing by cross-validation.
    cv : int, default=5
        Number of cross-validation folds (>= 2).
    cv_scheme : {"kfold", "blocks"}, default="kfold"
        ``"kfold"`` shuffles the samples into folds (seeded by ``random_state``); ``"blocks"``
        uses contiguous blocks in row order, for time-ordered runs where neighbouring samples
        are correlated and a shuffled split would be optimistic.
    random_state : int, default=0
        Seed of the ``"kfold"`` shuffle; the same data and seed give the same model.

    Attributes
    ----------
    n_components_ : int
        Number of latent variables of the fitted model.
    cv_table_ : list of dict or None
        One ``{"n_components", "rmsecv", "se"}`` per tried number of components (RMSECV and its
        standard error in units of y), or None when ``n_components`` was given.
    cv_predictions_ : ndarray of shape (n_samples,)
        Out-of-fold predictions with ``n_components_`` components.
    model_ : LinearSoftSensor
        The fitted model in its exported form.
    n_features_in_ : int
        Number of spectral channels seen in ``fit``.

    References
    ----------
    .. [1] Wold, Sjöström & Eriksson, Chemom. Intell. Lab. Syst. 58 (2001) 109–130.
    .. [2] Hastie, Tibshirani & Friedman, *The Elements of Statistical Learning*, 2nd ed.
       (2009), §7.10.
    """

    def __init__(
        self,
        n_components: int | None = None,
        *,
        max_components: int = 15,
        cv: int = 5,
        cv_scheme: CVScheme = "kfold",
        random_state: int = 0,
    ) -> None:
        self.n_components = n_components
        self.max_components = max_components
        self.cv = cv
        self.cv_scheme = cv_scheme
        self.random_state = random_state

    def fit(self, X: ArrayLike, y: ArrayLike, axis: ArrayLike | None = None) -> PLSSoftSensor:
        """Fit the model, choosing the number of components by cross-validation if unset.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels)
            Training spectra.
        y : array-like of shape (n_samples,)
            Reference values (e.g. titre in g/L).
        axis : array-like of shape (n_channels,), optional
            Strictly increasing spectral axis; defaults to ``0, 1, ..., n_channels - 1``.

        Returns
        -------
        self : PLSSoftSensor

        Raises
        ------
        ValueError
            On non-finite or mis-shaped input, a constant y, fewer than ``max(3, cv)``
            samples, or ``n_components`` out of range (the messages name the shapes).
        """
        self._check_params()
        Xa = as_spectra(X, "X")
        ya = as_target(y, name="y")
        n, p = Xa.shape
        if ya.shape[0] != n:
            raise ValueError(
                f"X has shape {Xa.shape} but y has shape {ya.shape}: "
                "need one reference value per spectrum"
            )
        ax = as_axis(np.arange(p, dtype=np.float64) if axis is None else axis, p)
        if n < max(_MIN_SAMPLES, self.cv):
            raise ValueError(
                f"need at least {max(_MIN_SAMPLES, self.cv)} samples (>= {_MIN_SAMPLES} and one "
                f"per fold for cv={self.cv}), got X of shape {Xa.shape}"
            )
        if np.ptp(ya) == 0:
            raise ValueError(f"y is constant ({ya[0]:g} for all {n} samples): nothing to model")

        folds = self._folds(n)
        n_min = n - max(test.shape[0] for _, test in folds)
        x_mean = Xa.mean(axis=0)
        lam = _gram_eigenvalues(Xa - x_mean)
        rank = int(np.count_nonzero(lam > lam[0] * max(n, p) * np.finfo(np.float64).eps))
        a_cap = min(n_min - 1, p, rank)
        if a_cap < 1:
            raise ValueError(f"X of shape {Xa.shape} has no variation to model (rank {rank})")
        cv_table: list[dict[str, float | int]] | None = None
        if self.n_components is None:
            a_max = min(self.max_components, a_cap)
            oof, fold_rmse = _cv_path(Xa, ya, folds, a_max)
            rmsecv = np.sqrt(np.mean((oof - ya[:, None]) ** 2, axis=0))
            se = fold_rmse.std(axis=0, ddof=1) / math.sqrt(len(folds))
            best = int(np.argmin(rmsecv))
            a = int(np.flatnonzero(rmsecv <= rmsecv[best] + se[best])[0]) + 1  # one-SE rule
            cv_table = [
                {"n_components": k + 1, "rmsecv": float(rmsecv[k]), "se": float(se[k])}
                for k in range(a_max)
            ]
        else:
            a = int(self.n_components)
            if not 1 <= a <= a_cap:
                raise ValueError(
                    f"n_components={a} is out of range: X has shape {Xa.shape} and numerical "
                    f"rank {rank}, and with cv={self.cv} the smallest training fold has {n_min} "
                    f"samples, so it must be between 1 and {a_cap}"
                )
            oof, _ = _cv_path(Xa, ya, folds, a)
        model = _export(_fit_pls(Xa, ya, a), Xa, ax)

        self.model_: LinearSoftSensor = model
        self.n_components_: int = a
        self.cv_table_: list[dict[str, float | int]] | None = cv_table
        self.cv_predictions_: FloatArray = np.ascontiguousarray(oof[:, a - 1])
        self.n_features_in_: int = p
        return self

    def predict(self, X: ArrayLike) -> FloatArray:
        """Predict with the fitted model (see :meth:`LinearSoftSensor.predict`).

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "model_")
        return self.model_.predict(X)

    def _check_params(self) -> None:
        def is_int(v: object) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        if self.n_components is not None and not (
            is_int(self.n_components) and self.n_components >= 1
        ):
            raise ValueError(
                f"n_components must be None or an integer >= 1, got {self.n_components!r}"
            )
        if not (is_int(self.max_components) and self.max_components >= 1):
            raise ValueError(f"max_components must be an integer >= 1, got {self.max_components!r}")
        if not (is_int(self.cv) and self.cv >= 2):
            raise ValueError(f"cv must be an integer >= 2, got {self.cv!r}")
        if self.cv_scheme not in ("kfold", "blocks"):
            raise ValueError(f"cv_scheme must be 'kfold' or 'blocks', got {self.cv_scheme!r}")

    def _folds(self, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.cv_scheme == "kfold":
            splitter = KFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        else:
            splitter = KFold(n_splits=self.cv, shuffle=False)
        return list(splitter.split(np.empty((n, 1))))


def fit_pls(
    X: ArrayLike, y: ArrayLike, axis: ArrayLike | None = None, **kwargs: Any
) -> LinearSoftSensor:
    """Fit a :class:`PLSSoftSensor` and return its exported model.

    ``kwargs`` are the estimator's parameters (``n_components``, ``max_components``, ``cv``,
    ``cv_scheme``, ``random_state``).
    """
    return PLSSoftSensor(**kwargs).fit(X, y, axis).model_


def _fit_pls(X: FloatArray, y: FloatArray, n_components: int) -> Any:
    return PLSRegression(n_components=n_components, scale=False).fit(X, y)


def _cv_path(
    X: FloatArray, y: FloatArray, folds: list[tuple[np.ndarray, np.ndarray]], a_max: int
) -> tuple[FloatArray, FloatArray]:
    """Out-of-fold predictions for 1..a_max components from one fit per fold.

    NIPALS extracts components one at a time and ``PᵀW`` is upper triangular, so the first
    ``a`` columns of ``x_rotations_ = W (PᵀW)⁻¹`` of an ``a_max``-component fit are those of an
    ``a``-component fit and ``coef_a = rotations[:, :a] @ y_loadings[:, :a].T``. Prediction for
    every ``a`` is then a cumulative sum of score times y-loading.

    Returns
    -------
    oof : ndarray of shape (n_samples, a_max)
        Out-of-fold prediction of each sample with 1..a_max components.
    fold_rmse : ndarray of shape (n_folds, a_max)
        RMSE of each fold's held-out predictions.
    """
    oof = np.empty((X.shape[0], a_max))
    fold_rmse = np.empty((len(folds), a_max))
    for k, (train, test) in enumerate(folds):
        Xtr = X[train]
        pls = _fit_pls(Xtr, y[train], a_max)
        T = (X[test] - Xtr.mean(axis=0)) @ pls.x_rotations_
        pred = float(pls.intercept_[0]) + np.cumsum(T * pls.y_loadings_[0], axis=1)
        oof[test] = pred
        fold_rmse[k] = np.sqrt(np.mean((pred - y[test, None]) ** 2, axis=0))
    return oof, fold_rmse


def _export(pls: Any, X: FloatArray, axis: FloatArray) -> LinearSoftSensor:
    """Build the exported model and its T²/Q diagnostics from a fitted ``PLSRegression``."""
    n = X.shape[0]
    a = int(pls.n_components)
    x_mean = X.mean(axis=0)
    coef = np.ascontiguousarray(pls.coef_[0], dtype=np.float64)
    intercept = float(pls.intercept_[0]) - float(x_mean @ coef)
    rotations = np.ascontiguousarray(pls.x_rotations_)
    loadings = np.ascontiguousarray(pls.x_loadings_)
    Xc = X - x_mean
    T = Xc @ rotations
    E = Xc - T @ loadings.T
    eig = _gram_eigenvalues(E) / (n - 1)  # nonzero eigenvalues of the residual covariance
    q95, q99 = _q_limit(eig, 0.95), _q_limit(eig, 0.99)
    return LinearSoftSensor(
        coef=coef,
        intercept=intercept,
        axis=axis,
        n_components=a,
        x_mean=x_mean,
        rotations=rotations,
        loadings=loadings,
        score_var=T.var(axis=0, ddof=1),
        n_train=n,
        t2_limit_95=_t2_limit(a, n, 0.95),
        t2_limit_99=_t2_limit(a, n, 0.99),
        q_limit_95=q95,
        q_limit_99=q99,
    )


def _gram_eigenvalues(M: FloatArray) -> FloatArray:
    """Squared singular values of ``M``, largest first, from its smaller Gram matrix.

    ``eigvalsh`` of the ``min(n, p)``-square Gram matrix costs less than an SVD of ``M``
    when one side is much smaller than the other. Squaring loses the eigenvalues below
    ``λ_max · max(n, p) · eps``, which is also the rank tolerance used in
    :meth:`PLSSoftSensor.fit`; tiny negative round-off is clipped to zero.
    """
    G = M @ M.T if M.shape[0] <= M.shape[1] else M.T @ M
    lam = np.linalg.eigvalsh(G)[::-1]
    return np.ascontiguousarray(np.clip(lam, 0.0, None))


def _t2_limit(a: int, n: int, confidence: float) -> float:
    """Hotelling T² limit for a new observation, scores estimated from ``n`` samples [3]_, [4]_.

    ``T²_lim = a (n - 1)(n + 1) / (n (n - a)) · F_conf(a, n - a)``.
    """
    f = float(stats.f.ppf(confidence, a, n - a))
    return a * (n - 1) * (n + 1) / (n * (n - a)) * f


def _q_limit(eigenvalues: FloatArray, confidence: float) -> float:
    """Q (SPE) limit from the eigenvalues of the residual covariance matrix.

    Jackson & Mudholkar [5]_: with ``θᵢ = Σ λʲ`` and ``h₀ = 1 - 2θ₁θ₃ / (3θ₂²)``,
    ``Q = θ₁ [c √(2θ₂h₀²) / θ₁ + 1 + θ₂h₀(h₀ - 1) / θ₁²]^(1/h₀)`` with ``c`` the standard normal
    quantile. When ``h₀ <= 0`` (a few dominant eigenvalues) or the bracket is not positive it
    falls back to Box's scaled chi-squared [6]_, ``g χ²_conf(h)`` with ``g = θ₂/θ₁`` and
    ``h = θ₁²/θ₂`` (the same first two moments). Zero residual gives a zero limit.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    theta1, theta2, theta3 = (float(np.sum(lam**k)) for k in (1, 2, 3))
    if theta1 <= 0 or theta2 <= 0:
        return 0.0
    h0 = 1.0 - 2.0 * theta1 * theta3 / (3.0 * theta2**2)
    if h0 > 0:
        c = float(stats.norm.ppf(confidence))
        bracket = (
            c * math.sqrt(2.0 * theta2 * h0**2) / theta1
            + 1.0
            + theta2 * h0 * (h0 - 1.0) / theta1**2
        )
        if bracket > 0:
            return theta1 * float(bracket ** (1.0 / h0))
    g, h = theta2 / theta1, theta1**2 / theta2
    return g * float(stats.chi2.ppf(confidence, h))
