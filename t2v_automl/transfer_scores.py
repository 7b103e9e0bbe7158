"""Transferability scores: the numerics, written from the papers' equations.

Functions of a candidate's features ``(n, d)`` (or source-head outputs) and the task's
labels ``(n,)``, higher = better:

- :func:`logme` (exact evidence) and :func:`logme_authors` — You et al., "LogME:
  Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021, and the
  authors' code; :func:`logme_pca` on 64 principal components (:func:`pca_reduce`);
- :func:`ncti_components` / :func:`ncti` — Wang et al., "How Far Pre-trained Models Are
  from Neural Collapse on the Target Dataset Informs their Transferability", ICCV 2023;
- :func:`etran_components` / :func:`etran` — Gholami et al., "ETran: Energy-Based
  Transferability Estimation", ICCV 2023;
- :func:`leep` — Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of
  Learned Representations", ICML 2020;
- :func:`nce` — Tran et al., "Transferability and Hardness of Supervised Classification
  Tasks", ICCV 2019;
- :func:`h_score` — Bao et al., "An Information-Theoretic Approach to Transferability in
  Task Transfer Learning", ICIP 2019;
- :func:`knn_accuracy` — leave-one-out k-nearest-neighbour accuracy.

NCTI and ETran are *relative*: each candidate gives components, and :func:`minmax_combine`
turns the candidates' components on one task into scores. The registry, the feature path
and the estimators live above (:mod:`t2v_automl.transferability`), which re-exports all of
these.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from t2v_automl._validation import check_int
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidTaskError,
    UnknownNameError,
)

__all__ = [
    "etran",
    "etran_components",
    "h_score",
    "knn_accuracy",
    "leep",
    "logme",
    "logme_authors",
    "logme_pca",
    "minmax_combine",
    "nce",
    "ncti",
    "ncti_components",
    "pca_reduce",
    "softmax",
]


# ----------------------------------------------------------------------------- helpers
def _check_labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise InvalidTaskError(
            f"labels must be 1-D with one label per row of the features ({n}); got shape "
            f"{y.shape}."
        )
    _, codes = np.unique(y, return_inverse=True)
    if codes.max(initial=0) < 1:
        raise InvalidTaskError(
            "labels hold a single class; a transferability score needs at least two classes."
        )
    return codes.astype(np.int64)


def _check_features(features: Any, what: str = "features") -> np.ndarray:
    try:
        F = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputTypeError(
            f"{what} must be a numeric array of shape (n_images, n_features); got "
            f"{type(features).__name__}."
        ) from exc
    if F.ndim != 2 or F.shape[0] < 2 or F.shape[1] < 1:
        raise InvalidTaskError(
            f"{what} must be 2-D (n_images >= 2, n_features >= 1); got shape {F.shape}."
        )
    if not np.isfinite(F).all():
        raise InvalidTaskError(
            f"{what} contain NaN or inf; the extractor failed on some images (check that "
            f"they are float in [0, 1])."
        )
    return F


def _check_probs(p: Any, what: str) -> np.ndarray:
    P = _check_features(p, what)
    if (P < 0).any() or not np.allclose(P.sum(axis=1), 1.0, atol=1e-4):
        raise InvalidTaskError(
            f"{what} must be probabilities: non-negative rows that sum to 1 (apply a softmax "
            f"to logits first); row sums range {P.sum(axis=1).min():.3g}.."
            f"{P.sum(axis=1).max():.3g}."
        )
    return P


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)




# ----------------------------------------------------------------------------- scores
def _evidence(F: np.ndarray, y: np.ndarray, *, max_iter: int, tol: float, eps: float,
              exact: bool) -> float:
    """LogME's evidence per image, averaged over classes (see :func:`logme`)."""
    n, d = F.shape
    Y = np.eye(int(y.max()) + 1)[y]  # (n, C)
    U, S, _ = np.linalg.svd(F, full_matrices=False)
    sig = S ** 2  # (k,)
    k = sig.shape[0]
    Z = U.T @ Y  # (k, C): targets in the singular basis
    y2 = (Y ** 2).sum(axis=0)  # (C,)
    resid0 = np.maximum(y2 - (Z ** 2).sum(axis=0), 0.0)  # part of y outside span(F)
    C = Y.shape[1]
    alpha, beta = np.ones(C), np.ones(C)
    floor = eps if eps > 0 else 1e-300
    for _ in range(int(max_iter)):
        t = alpha / beta
        g = sig[:, None] / (sig[:, None] + t[None, :])  # (k, C)
        gamma = g.sum(axis=0)
        # m in the basis V: m_i = S_i z_i / (sigma_i + alpha / beta)
        m2 = ((S[:, None] * Z / (sig[:, None] + t[None, :])) ** 2).sum(axis=0)
        res2 = ((Z * t[None, :] / (sig[:, None] + t[None, :])) ** 2).sum(axis=0) + resid0
        alpha = np.maximum(gamma, 1e-12) / np.maximum(m2 + eps, floor)
        beta = np.maximum(n - gamma, 1e-12) / np.maximum(res2 + eps, floor)
        if np.all(np.abs(alpha / beta - t) <= tol * np.abs(t)):
            break
    t = alpha / beta
    m2 = ((S[:, None] * Z / (sig[:, None] + t[None, :])) ** 2).sum(axis=0)
    res2 = ((Z * t[None, :] / (sig[:, None] + t[None, :])) ** 2).sum(axis=0) + resid0
    logdetA = np.log(alpha[None, :] + beta[None, :] * sig[:, None]).sum(axis=0)
    if exact:  # the d - k zero singular values of F still contribute log(alpha) each
        logdetA = logdetA + (d - k) * np.log(alpha)
    ev = (d * np.log(alpha) + n * np.log(beta) - beta * res2 - alpha * m2 - logdetA
          - n * math.log(2 * math.pi)) / (2 * n)
    return float(ev.mean())


def logme(features: Any, labels: Any, *, max_iter: int = 100, tol: float = 1e-4) -> float:
    """LogME: the log marginal evidence of a Bayesian linear model on the features.

    For each class ``c`` the one-hot target ``y`` is modelled as ``y = F w + e`` with prior
    ``w ~ N(0, I / alpha)`` and noise ``e ~ N(0, I / beta)``. ``alpha`` and ``beta``
    maximise the evidence by the fixed-point updates of MacKay (You et al. 2021, Alg. 1):
    with ``F = U S V^T`` and ``sigma_i = S_i^2``,
    ``gamma = sum_i beta sigma_i / (alpha + beta sigma_i)``, ``m = beta A^-1 F^T y``,
    ``alpha = gamma / |m|^2``, ``beta = (n - gamma) / |y - F m|^2``. The score is the
    evidence per image, averaged over classes:

    ``L/n = (1/2n) [d log alpha + n log beta - beta |y - F m|^2 - alpha |m|^2
    - log|A| - n log 2 pi]``, ``A = alpha I + beta F^T F``.

    This is the *exact* evidence: ``log|A|`` counts all ``d`` eigenvalues of ``A``,
    including the ``d - k`` equal to ``alpha`` when ``F`` has rank ``k < d`` (more
    features than images). The authors' code omits those; see :func:`logme_authors`.

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
    max_iter : int, default=100
        Fixed-point iterations at most.
    tol : float, default=1e-4
        Relative change of ``alpha / beta`` at which to stop.

    Returns
    -------
    float
        Higher = the features explain the labels better. All classes are solved at once
        on one SVD.
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    return _evidence(F, y, max_iter=max_iter, tol=tol, eps=0.0, exact=True)


def logme_authors(features: Any, labels: Any) -> float:
    """LogME as the authors' code computes it (``thuml/LogME``, fixed-point version).

    The same model and updates as :func:`logme`, with the authors' constants (at most 11
    iterations, relative tolerance 1e-3, 1e-5 added to both denominators) and their
    ``log|A|``, which sums ``log(alpha + beta sigma_i)`` over the ``k = min(n, d)``
    singular values only: the ``(d - k) log alpha`` of the remaining eigenvalues of ``A``
    is left out. The two agree when ``n >= d``; when ``d > n`` (1280-d features of a few
    hundred images, this zoo's regime) the missing term rewards a large ``alpha`` in
    proportion to ``d - k``, and the two can rank candidates very differently
    (``tests/test_transferability.py`` shows a case). Kept so that figures can be
    compared with published ones.

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)

    Returns
    -------
    float
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    return _evidence(F, y, max_iter=11, tol=1e-3, eps=1e-5, exact=False)


def pca_reduce(features: Any, n_components: int) -> np.ndarray:
    """Centred features projected on their first principal components (deterministic).

    Parameters
    ----------
    features : array-like of shape (n, d)
    n_components : int
        Kept components; at most ``min(n, d)``.

    Returns
    -------
    ndarray of shape (n, min(n_components, n, d))
        ``U_k S_k`` of the full SVD of the centred features (signs as LAPACK gives them:
        every score here is invariant to them).
    """
    F = _check_features(features)
    k = min(check_int(n_components, "n_components", 1), *F.shape)
    Fc = F - F.mean(axis=0)
    U, S, _ = np.linalg.svd(Fc, full_matrices=False)
    return U[:, :k] * S[:k]


def logme_pca(features: Any, labels: Any, *, n_components: int = 64) -> float:
    """:func:`logme` on the first ``n_components`` principal components of the features.

    Candidates with 1280 and 16 features are compared on equal dimension (NCTI's
    reduction, Wang et al. 2023, applied to LogME): with ``d`` far above the number of
    images the evidence is dominated by terms in ``d``, not by how well the features
    explain the labels.

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
    n_components : int, default=64

    Returns
    -------
    float
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    return _evidence(pca_reduce(F, n_components), y, max_iter=100, tol=1e-4, eps=0.0,
                     exact=True)


def _class_counts(y: np.ndarray) -> np.ndarray:
    return np.bincount(y, minlength=int(y.max()) + 1).astype(np.float64)


def _nuclear(M: np.ndarray) -> float:
    return float(np.linalg.svd(M, compute_uv=False).sum()) if M.size else 0.0


def ncti_components(features: Any, labels: Any, *, n_components: int = 64
                    ) -> np.ndarray:
    """The three neural-collapse terms of NCTI for one candidate (Wang et al., ICCV 2023).

    "How Far Pre-trained Models Are from Neural Collapse on the Target Dataset Informs
    their Transferability". The features are reduced to ``n_components`` by PCA; a
    shrinkage linear discriminant analysis (shrinkage ``max(exp(-sum of the first 32
    PCA variances), 1e-10)``; the plain SVD solver when that is at its floor) projects them
    and gives class posteriors ``P``. On small tasks the PCA keeps at most ``(n - C) // 2``
    components (``n`` images, ``C`` classes; our adaptation, the paper's tasks have
    thousands of images): with as many dimensions as within-class degrees of freedom the
    LDA separates any labelling of the training images, random features included, and
    every candidate would score ``ncc = 1``. Then:

    - ``seli`` (simplex ETF / between-class spread): the nuclear norm of the centred LDA
      projections, higher = more collapsed towards separated class means;
    - ``ncc`` (nearest-class-centre classifier): the mean posterior of the true class;
    - ``vc`` (within-class variability): ``log sum_c |P_c|_*``, the nuclear norms of each
      class's posterior rows, *lower* = more collapsed.

    :func:`ncti` combines them across candidates: ``minmax(seli) + minmax(ncc) -
    minmax(vc)``. Features with no variance, and tasks with no more images than classes,
    give ``seli = 0`` and posteriors equal to the class priors (the score of a constant
    extractor, defined rather than an error).

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
    n_components : int, default=64

    Returns
    -------
    ndarray of shape (3,)
        ``[seli, ncc, vc]``.
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    n = F.shape[0]
    counts = _class_counts(y)
    k = check_int(n_components, "n_components", 1)
    X = pca_reduce(F, max(1, min(k, (n - len(counts)) // 2)))
    var = (X ** 2).sum(axis=0) / max(n - 1, 1)  # PCA explained variances
    if n <= len(counts) or not np.any(var > 1e-12 * max(float(np.abs(F).max()), 1.0) ** 2):
        # no variance, or one image per class (an LDA needs more images than classes):
        # nothing to discriminate with, the posterior is the class prior
        post = np.tile(counts / n, (n, 1))
        seli = 0.0
    else:
        import warnings

        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        shrink = max(math.exp(-float(var[:32].sum())), 1e-10)
        lda = (LinearDiscriminantAnalysis(solver="svd") if shrink <= 1e-10 else
               LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrink))
        with warnings.catch_warnings():  # collinear PCA components of tiny tasks
            warnings.simplefilter("ignore")
            low = lda.fit(X, y).transform(X)
            post = lda.predict_proba(X)
        low = low - low.mean(axis=0, keepdims=True)
        seli = _nuclear(low)
    ncc = float(post[np.arange(n), y].mean())
    vc = math.log(max(sum(_nuclear(post[y == c]) for c in range(len(counts))), 1e-300))
    return np.array([seli, ncc, vc])


def etran_components(features: Any, labels: Any, *, tail_fraction: float = 1.0
                     ) -> np.ndarray:
    """The energy and LDA classification terms of ETran for one candidate.

    Gholami et al., "ETran: Energy-Based Transferability Estimation", ICCV 2023, the
    classification score ``S_en + S_lda`` (``S_svd`` is for detection):

    - ``energy``: the mean over images of ``log sum_j exp(f_j)``, the negative free
      energy of the features read as logits (higher = the features look
      in-distribution); with ``tail_fraction < 1`` only that fraction of images with the
      lowest energy is averaged (the authors' code averages the lowest 0.5 %);
    - ``lda``: the mean posterior of the true class under the authors' LDA classifier.
      Their classifier keeps every discriminant direction, an orthonormal basis, so its
      scores reduce to ``f . mu_c - |mu_c|^2 / 2 + log pi_c`` (class means ``mu_c``,
      priors ``pi_c``), soft-maxed over classes: that is what is computed here.

    :func:`etran` combines them across candidates, ``minmax(energy) + minmax(lda)``
    (the two are on unrelated scales).

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
    tail_fraction : float in (0, 1], default=1.0

    Returns
    -------
    ndarray of shape (2,)
        ``[energy, lda]``.
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    if isinstance(tail_fraction, bool) or not isinstance(tail_fraction, numbers.Real) \
            or not 0.0 < float(tail_fraction) <= 1.0:
        raise InvalidParameterError(
            f"tail_fraction must lie in (0, 1]; got {tail_fraction!r}.")
    n = F.shape[0]
    top = F.max(axis=1, keepdims=True)
    energy = (top[:, 0] + np.log(np.exp(F - top).sum(axis=1)))
    keep = max(1, int(math.floor(float(tail_fraction) * n)))
    energy_score = float(np.sort(energy)[:keep].mean())
    counts = _class_counts(y)
    means = np.zeros((len(counts), F.shape[1]))
    np.add.at(means, y, F)
    means /= counts[:, None]
    logits = F @ means.T - 0.5 * (means ** 2).sum(axis=1) + np.log(counts / n)
    post = softmax(logits)
    return np.array([energy_score, float(post[np.arange(n), y].mean())])


def minmax_combine(components: Any, signs: Any) -> np.ndarray:
    """Combine per-candidate score components across candidates: ``sum_j s_j minmax(c_j)``.

    Each column is rescaled to [0, 1] over the candidates with a finite value (a column
    equal for all of them contributes 0); a candidate with a NaN component gets NaN
    (ranked last).

    Parameters
    ----------
    components : array-like of shape (n_candidates, n_components)
    signs : array-like of shape (n_components,)
        +1 where higher is better, -1 where lower is better.

    Returns
    -------
    ndarray of shape (n_candidates,)
    """
    C = np.asarray(components, dtype=np.float64)
    s = np.asarray(signs, dtype=np.float64)
    if C.ndim != 2 or C.shape[1] != s.shape[0]:
        raise InvalidParameterError(
            f"components must be (n_candidates, {s.shape[0]}); got shape {C.shape}.")
    out = np.zeros(C.shape[0])
    for j in range(C.shape[1]):
        col = C[:, j]
        ok = np.isfinite(col)
        if not ok.any():
            return np.full(C.shape[0], np.nan)
        lo, hi = col[ok].min(), col[ok].max()
        out += s[j] * ((col - lo) / (hi - lo) if hi > lo else np.where(ok, 0.0, np.nan))
    out[~np.isfinite(C).all(axis=1)] = np.nan
    return out


def ncti(components: Any) -> np.ndarray:
    """NCTI of several candidates from their :func:`ncti_components` rows.

    ``minmax(seli) + minmax(ncc) - minmax(vc)`` over the candidates (Wang et al. 2023):
    a *relative* score, meaningful only between candidates scored on the same task.

    Parameters
    ----------
    components : array-like of shape (n_candidates, 3)

    Returns
    -------
    ndarray of shape (n_candidates,)
    """
    return minmax_combine(components, (1.0, 1.0, -1.0))


def etran(components: Any) -> np.ndarray:
    """ETran of several candidates from their :func:`etran_components` rows.

    ``minmax(energy) + minmax(lda)`` over the candidates: a relative score.

    Parameters
    ----------
    components : array-like of shape (n_candidates, 2)

    Returns
    -------
    ndarray of shape (n_candidates,)
    """
    return minmax_combine(components, (1.0, 1.0))


def leep(source_probs: Any, labels: Any) -> float:
    """LEEP: log expected empirical prediction of the source head on the target labels.

    With ``theta(x)`` the source model's class probabilities, the empirical joint
    ``P(y, z) = (1/n) sum_{i: y_i = y} theta(x_i)_z``, ``P(y | z) = P(y, z) / P(z)``, and
    ``LEEP = (1/n) sum_i log sum_z P(y_i | z) theta(x_i)_z`` (Nguyen et al. 2020, Eq. 2).

    Parameters
    ----------
    source_probs : array-like of shape (n, n_source_classes)
        Softmax of the source head's logits (rows sum to 1).
    labels : array-like of shape (n,)

    Returns
    -------
    float
        At most 0; higher = more transferable.
    """
    P = _check_probs(source_probs, "source_probs")
    y = _check_labels(labels, P.shape[0])
    n = P.shape[0]
    Yh = np.eye(int(y.max()) + 1)[y]  # (n, C)
    joint = Yh.T @ P / n  # (C, Z)
    cond = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-300)  # P(y | z)
    eep = (P * cond[y]).sum(axis=1)
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))


def nce(source_labels: Any, labels: Any) -> float:
    """NCE: negative conditional entropy ``-H(Y | Z)`` of target labels given source labels.

    ``Z`` are the source model's (hard) labels of the target images, e.g. the argmax of
    its source head; ``-H(Y|Z) = sum_{y,z} P(y, z) log P(y | z)`` with empirical
    probabilities (Tran et al. 2019, Eq. 3).

    Parameters
    ----------
    source_labels : array-like of shape (n,)
        Any hashable labels.
    labels : array-like of shape (n,)

    Returns
    -------
    float
        At most 0; 0 when the source labels determine the target labels.
    """
    z = np.asarray(source_labels)
    if z.ndim != 1:
        raise InvalidTaskError(
            f"source_labels must be 1-D (one hard label per image, e.g. the argmax of the "
            f"source head); got shape {z.shape}."
        )
    y = _check_labels(labels, z.shape[0])
    _, zc = np.unique(z, return_inverse=True)
    n = y.shape[0]
    joint = np.zeros((int(zc.max()) + 1, int(y.max()) + 1))
    np.add.at(joint, (zc, y), 1.0 / n)
    pz = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / pz), 0.0)
    return float(terms.sum())


def h_score(features: Any, labels: Any, *, shrinkage: float | str = "auto") -> float:
    """H-score: ``tr(cov(f)^-1 cov(E[f | y]))``, with a shrunk feature covariance.

    Bao et al. 2019, Definition 2. The covariance of the features is shrunk towards a
    multiple of the identity, ``(1 - a) cov + a (tr(cov) / d) I``, so that the inverse
    exists for ``d >= n`` and the score does not follow noise in directions with tiny
    variance.

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
    shrinkage : float in [0, 1] or "auto", default="auto"
        ``a`` above; ``"auto"`` uses the Ledoit-Wolf estimate (at least 1e-3).

    Returns
    -------
    float
        Higher = features more discriminative of the labels (at most ``n_classes - 1``).
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    if isinstance(shrinkage, str):
        if shrinkage != "auto":
            raise UnknownNameError(f"shrinkage must be a number in [0, 1] or 'auto'; got "
                                   f"{shrinkage!r}.")
        from sklearn.covariance import ledoit_wolf_shrinkage

        a = max(float(ledoit_wolf_shrinkage(F)), 1e-3)
    else:
        if isinstance(shrinkage, bool) or not isinstance(shrinkage, numbers.Real) \
                or not 0.0 <= float(shrinkage) <= 1.0:
            raise InvalidParameterError(f"shrinkage must lie in [0, 1]; got {shrinkage!r}.")
        a = float(shrinkage)
    Fc = F - F.mean(axis=0)
    n, d = Fc.shape
    cov = Fc.T @ Fc / n
    mu = float(np.trace(cov)) / d
    if mu <= 0:
        return 0.0
    cov = (1.0 - a) * cov + a * mu * np.eye(d)
    C = int(y.max()) + 1
    counts = np.bincount(y, minlength=C).astype(np.float64)
    means = np.zeros((C, d))
    np.add.at(means, y, Fc)
    means /= counts[:, None]
    g = means[y]  # E[f | y] for each image
    cov_g = g.T @ g / n
    return float(np.trace(np.linalg.solve(cov, cov_g)))


def knn_accuracy(features: Any, labels: Any, *, n_neighbors: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy on standardised features.

    Each image is classified by the majority label of its ``n_neighbors`` nearest other
    images (Euclidean distance after standardising each feature; ties go to the label
    whose neighbours are nearer).

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
    n_neighbors : int, default=5

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    k = check_int(n_neighbors, "n_neighbors", 1)
    n = F.shape[0]
    k = min(k, n - 1)
    std = F.std(axis=0)
    Fs = (F - F.mean(axis=0)) / np.where(std > 0, std, 1.0)
    sq = (Fs ** 2).sum(axis=1)
    D = sq[:, None] + sq[None, :] - 2.0 * Fs @ Fs.T
    np.fill_diagonal(D, np.inf)
    nn = np.argsort(D, axis=1, kind="stable")[:, :k]  # (n, k), nearest first
    C = int(y.max()) + 1
    votes = np.zeros((n, C))
    # one vote per neighbour, plus a tie-breaking bonus that favours nearer neighbours
    rank_bonus = 1e-3 * (k - np.arange(k)) / k
    np.add.at(votes, (np.repeat(np.arange(n), k), y[nn].ravel()),
              np.tile(1.0 + rank_bonus, n))
    return float(np.mean(votes.argmax(axis=1) == y))
