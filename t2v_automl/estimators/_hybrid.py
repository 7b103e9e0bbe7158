"""HybridSelector: the knowledge base where it knows the task, a transferability score where not.

An embedding-based selector can only repeat what the knowledge base saw: for a task unlike
every known one (a new source dataset), its neighbours are strangers and their best
extractor is a guess. A transferability score (LogME) looks at the new task's own images
through every candidate, so it needs no knowledge base, but it cannot tell apart tasks that
share their images and differ in what the labels mean as well as near known tasks can. The
hybrid embeds the task, measures its :meth:`~ExtractorSelector.novelty`, and mixes both
rankings with :func:`~t2v_automl.estimators.blend_with_transferability`; the
transferability score is computed only for tasks whose gate is not negligible, so tasks
close to known ones cost one probe pass.

A cheap screen comes first: the task's *domain embedding* (the mean of the probe's
penultimate features: a forward pass only, a fifth of the Fisher's cost) is compared with
the known tasks' domain embeddings. A task whose images are far from every known task's
(domain novelty at or above ``domain_screen``) would get the transferability ranking alone
anyway (its Fisher novelty is as high), so its Fisher embedding is not computed at all.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from t2v_automl._logging import logger
from t2v_automl._validation import check_float, check_int
from t2v_automl.estimators._base import SelectorMixin
from t2v_automl.estimators._baselines import BestOnAverage
from t2v_automl.estimators._embedder import Task2VecEmbedder, embedder_params_from_meta
from t2v_automl.estimators._gate import (
    NOVELTY_CENTER,
    NOVELTY_STEEPNESS,
    evidence_blend,
    hybrid_scores,
    novelty_gate,
)
from t2v_automl.estimators._selector import ExtractorSelector
from t2v_automl.estimators._transfer import TransferabilitySelector
from t2v_automl.exceptions import IncompatibleEmbeddingError, InvalidInputTypeError
from t2v_automl.tasks import Task, as_task

if TYPE_CHECKING:
    from t2v_automl.embedding import Embedding
    from t2v_automl.knowledge import KnowledgeBase

__all__ = ["HybridExplanation", "HybridSelector"]


@dataclass(frozen=True)
class HybridExplanation:
    """What :meth:`HybridSelector.explain` computed for each task.

    Attributes
    ----------
    extractor_names : list of str
        The column order of every matrix below.
    scores : ndarray of shape (n_tasks, n_extractors)
        The hybrid's prediction (what :meth:`HybridSelector.predict` returns).
    prior : ndarray of shape (n_tasks, n_extractors)
        The knowledge-based prediction: the Fisher neighbours', or the domain neighbours'
        for a screened task.
    novelty : ndarray of shape (n_tasks,)
        :meth:`ExtractorSelector.novelty` of the Fisher embedding (NaN for a screened task,
        whose Fisher embedding was not computed).
    gate : ndarray of shape (n_tasks,)
        Weight of the transferability ranking (0 = knowledge base only, 1 = transferability
        only).
    domain_novelty : ndarray of shape (n_tasks,)
        Novelty of the domain embedding (NaN where the screen did not run).
    screened : ndarray of bool, shape (n_tasks,)
        Tasks the screen sent to the transferability score without a Fisher embedding.
    transfer_scores : ndarray of shape (n_tasks, n_extractors)
        Transferability scores (NaN rows: not computed).
    transfer_seconds : ndarray of shape (n_tasks, n_extractors)
        Seconds spent on them (0 where not computed).
    embeddings : list of Embedding or None
        The Fisher embedding of each task (given or computed; None when screened).
    domain_embeddings : list of Embedding or None
        The domain embedding of each task (None where the screen did not run).
    global_prior : ndarray of shape (n_extractors,) or None
        The known tasks' mean score per extractor (best on average), mixed into the
        transferability side by :func:`~t2v_automl.estimators.evidence_blend`.
    evidence_weight : ndarray of shape (n_tasks,) or None
        Weight of the task's own transferability ranking against ``global_prior`` (NaN
        where no transferability score was computed; None: ``evidence_half=None``).
    """

    extractor_names: list[str]
    scores: np.ndarray
    prior: np.ndarray
    novelty: np.ndarray
    gate: np.ndarray
    domain_novelty: np.ndarray
    screened: np.ndarray
    transfer_scores: np.ndarray
    transfer_seconds: np.ndarray
    embeddings: list[Embedding | None]
    domain_embeddings: list[Embedding | None]
    global_prior: np.ndarray | None = None
    evidence_weight: np.ndarray | None = None

    @property
    def transfer_computed(self) -> np.ndarray:
        """Which tasks got a transferability score (bool, shape (n_tasks,))."""
        return np.isfinite(self.transfer_scores).any(axis=1)


#: The last explanation of each selector, for the deprecated ``novelty_``-style properties
#: only (kept outside the estimator: nothing is written to it at predict time).
_LAST: weakref.WeakKeyDictionary[Any, HybridExplanation] = weakref.WeakKeyDictionary()


def _deprecated_last(field: str, doc: str) -> property:
    def get(self: HybridSelector) -> Any:
        warnings.warn(
            f"HybridSelector.{field}_ is deprecated and will be removed in the next release: "
            f"use HybridSelector.explain(X).{field}, which returns it for the tasks of that "
            f"call.", FutureWarning, stacklevel=2)
        last = _LAST.get(self)
        if last is None:
            raise AttributeError(
                f"{field}_: no prediction yet; call explain(X) and read its .{field}.")
        return getattr(last, field)
    return property(get, doc=f"Deprecated: ``explain(X).{field}`` ({doc}).")


def _as_task_list(X: Any) -> list[Any]:
    if isinstance(X, Task) or (isinstance(X, tuple) and len(X) == 2
                               and not isinstance(X[0], Task)):
        raise InvalidInputTypeError(
            "X must be a sequence of tasks; got a single task. Wrap it in a list: [task]."
        )
    try:
        tasks = list(X)
    except TypeError:
        raise InvalidInputTypeError(
            f"X must be a sequence of tasks (Task objects, (images, labels) pairs, image "
            f"folders or .npz files); got {type(X).__name__}."
        ) from None
    return [t.train if not isinstance(t, Task) and isinstance(getattr(t, "train", None), Task)
            else t for t in tasks]


class HybridSelector(SelectorMixin, RegressorMixin, BaseEstimator):
    """Rank extractors for tasks: known-task neighbours, LogME where the task is new.

    Parameters
    ----------
    embedder : Task2VecEmbedder, optional
        How tasks are embedded (cloned at :meth:`fit`). Default ``Task2VecEmbedder()``.
    selector : ExtractorSelector, optional
        The knowledge-based selector (cloned at :meth:`fit`). Default
        ``ExtractorSelector()`` (nearest known tasks, Hellinger distance).
    transferability : TransferabilitySelector, optional
        The score computed on novel tasks (cloned; its ``extractors`` are set to the
        selector's). Default ``TransferabilitySelector(measure="logme")``.
    novelty_center, novelty_steepness : float
        The gate of :func:`~t2v_automl.estimators.blend_with_transferability`.
    min_gate : float, default=0.1
        Tasks whose gate is below this keep the selector's ranking and cost no
        transferability pass (one forward pass per candidate extractor).
    domain_screen : float or None, default=4.0
        Domain novelty (:meth:`ExtractorSelector.novelty` of the domain embedding, with the
        normalised cosine distance) at or above which a task's images count as unknown:
        its Fisher embedding is skipped and the transferability ranking alone orders the
        extractors (gate 1). None: no screen (every task is embedded). Needs the known
        tasks' domain embeddings: computed at :meth:`fit`, or the knowledge base's
        ``"domain"`` set in :meth:`from_knowledge` (a base without one disables the screen).
    evidence_half : float or None, default=None
        When given, a computed transferability score is first mixed with the known tasks'
        best-on-average ranking (:attr:`global_prior_`) by
        :func:`~t2v_automl.estimators.evidence_blend`: the task's own ranking weighs
        ``n / (n + evidence_half)`` for ``n`` training images per class, so small tasks
        lean on what was best on average. None (default): the transferability ranking
        alone. Off by default because on the shipped knowledge base, leaving one source
        dataset out, every value above 2 did worse than LogME alone at 5 and 10 images per
        class (and no better beyond the CIs at 20-50), the best-on-average extractor
        worse still
        (``benchmarks/results/small_tasks.md``); a knowledge base whose sources resemble
        your tasks may differ.
    transfer_ranks : bool, default=True
        Mix the transferability score's ranks (robust to its scale) rather than its
        standardised values.
    prescreen : int or None, default=None
        Compute the transferability score for only this many candidates, those with the
        best :attr:`global_prior_` (the others rank below them on the transferability
        side): fewer forward passes on novel tasks. None: every candidate. On the shipped
        base it cut the cost on small unseen tasks by more than half and raised the regret
        (``benchmarks/results/small_tasks.md``).

    Attributes
    ----------
    embedder_ : Task2VecEmbedder
    selector_ : ExtractorSelector
    transferability_ : TransferabilitySelector
    extractor_names_ : list of str
    screen_embedder_ : Task2VecEmbedder or None
        The domain embedder of the screen (None: no screen).
    screen_selector_ : ExtractorSelector or None
        Nearest known tasks by domain embedding (None: no screen).
    embedding_meta_ : EmbeddingMeta
        How the known tasks' Fisher embeddings were made (``selector_.embedding_meta_``).
    global_prior_ : ndarray of shape (n_extractors,)
        The known tasks' mean score per extractor (:class:`BestOnAverage`).

    What a prediction computed on the way (novelty, gate, domain novelty, screened tasks,
    transferability scores, the embeddings) is returned by :meth:`explain`; nothing is
    stored on the estimator at predict time. The attributes ``novelty_``, ``gate_``,
    ``domain_novelty_``, ``screened_`` and ``transfer_scores_`` of earlier releases remain
    one release as deprecated properties (the last :meth:`explain` of this selector).

    Notes
    -----
    :meth:`predict_scores` orders the extractors by the mixed ranking and puts them on the
    accuracy scale of the neighbours' prediction (``selector_.predict_scores``): the
    differences are an estimate, not a measurement.

    Examples
    --------
    >>> from t2v_automl.estimators import HybridSelector
    >>> sel = HybridSelector.from_knowledge(kb)  # doctest: +SKIP
    >>> sel.select([my_task])  # doctest: +SKIP
    array(['efficientnet_lite2'], dtype=object)
    >>> ex = sel.explain([my_task])  # doctest: +SKIP
    >>> ex.novelty, ex.gate, ex.screened  # doctest: +SKIP
    """

    def __init__(self, embedder: Task2VecEmbedder | None = None,
                 selector: ExtractorSelector | None = None, transferability: Any = None,
                 novelty_center: float = NOVELTY_CENTER,
                 novelty_steepness: float = NOVELTY_STEEPNESS, min_gate: float = 0.1,
                 domain_screen: float | None = 4.0,
                 evidence_half: float | None = None, transfer_ranks: bool = True,
                 prescreen: int | None = None) -> None:
        self.embedder = embedder
        self.selector = selector
        self.transferability = transferability
        self.novelty_center = novelty_center
        self.novelty_steepness = novelty_steepness
        self.min_gate = min_gate
        self.domain_screen = domain_screen
        self.evidence_half = evidence_half
        self.transfer_ranks = transfer_ranks
        self.prescreen = prescreen

    def _check_params(self) -> None:
        check_float(self.novelty_center, "novelty_center", positive=None)
        check_float(self.novelty_steepness, "novelty_steepness")
        check_float(self.min_gate, "min_gate", positive=False)
        if self.domain_screen is not None:
            check_float(self.domain_screen, "domain_screen", positive=False)
        if self.evidence_half is not None:
            check_float(self.evidence_half, "evidence_half", positive=False)
        if self.prescreen is not None:
            check_int(self.prescreen, "prescreen", 1)

    def _fit_global_prior(self) -> None:
        scores = self.selector_.scores_
        self.global_prior_ = BestOnAverage(extractor_names=self.extractor_names_).fit(
            np.arange(scores.shape[0]), scores).mean_scores_

    def _screen_embedder(self) -> Task2VecEmbedder:
        """The domain embedder matching ``embedder_`` (same probe, size, subsample)."""
        return clone(self.embedder_).set_params(method="domain").fit()

    def _fit_transferability(self, input_size: int | None = None) -> None:
        from t2v_automl.exceptions import T2VError
        from t2v_automl.extractors import check_available

        base = TransferabilitySelector() if self.transferability is None \
            else clone(self.transferability)

        def available(name: str) -> bool:  # registered, built-in and scheme names alike
            try:
                check_available(name)
            except T2VError:
                return False
            return True

        usable = [n for n in self.extractor_names_ if available(n)]
        missing = [n for n in self.extractor_names_ if n not in usable]
        if missing:
            logger.warning("extractor(s) %s are not installed: they get no transferability "
                           "score (ranked last on novel tasks). Install or register them "
                           "first: a zoo file with t2v_automl.extractors.read_zoo(path); the "
                           "experts of the 'experts' base with t2v_automl.experts."
                           "build_experts(out_dir), then read_zoo(out_dir / 'zoo.toml').", missing)
        params: dict[str, Any] = {"extractors": usable}
        if input_size is not None and base.get_params()["input_size"] is None:
            params["input_size"] = int(input_size)
        self.transferability_ = base.set_params(**params).fit()

    def fit(self, X: Any, y: Any) -> HybridSelector:
        """Embed the known tasks and fit the selector on their scores.

        Parameters
        ----------
        X : sequence of tasks
            Known tasks (anything :class:`Task2VecEmbedder` accepts).
        y : DataFrame or array-like of shape (n_tasks, n_extractors)
            Their extractors' scores (see :meth:`ExtractorSelector.fit`).

        Returns
        -------
        self
        """
        self._check_params()
        tasks = _as_task_list(X)
        self.embedder_ = (Task2VecEmbedder() if self.embedder is None
                          else clone(self.embedder)).fit()
        embs = self.embedder_.embed(tasks)
        self.selector_ = (ExtractorSelector() if self.selector is None
                          else clone(self.selector)).fit(embs, y)
        self.extractor_names_ = list(self.selector_.extractor_names_)
        self.embedding_meta_ = self.selector_.embedding_meta_
        self.screen_embedder_, self.screen_selector_ = None, None
        if self.domain_screen is not None:
            self.screen_embedder_ = self._screen_embedder()
            self.screen_selector_ = ExtractorSelector(
                metric="normalized_cosine",
                extractor_names=self.extractor_names_).fit(
                    self.screen_embedder_.embed(tasks), self.selector_.scores_)
        self._fit_global_prior()
        self._fit_transferability()
        return self

    @classmethod
    def from_knowledge(cls, kb: KnowledgeBase, *, device: str = "auto",
                       **params: Any) -> HybridSelector:
        """A hybrid selector whose known tasks are a knowledge base's.

        The embedder reproduces the base's embeddings (same probe, method, input size,
        layers and settings); the transferability features use the base's evaluation
        input size.

        Parameters
        ----------
        kb : KnowledgeBase
        device : str, default="auto"
            Device of the embedder and of the transferability features.
        **params
            Parameters of :class:`HybridSelector`; a given ``selector`` gives its
            parameters to :meth:`ExtractorSelector.from_knowledge`.

        Returns
        -------
        HybridSelector
            Fitted.

        Raises
        ------
        IncompatibleEmbeddingError
            This installation embeds differently from the base (other probe weights).
        """
        emb_params = embedder_params_from_meta(kb.meta)
        params.setdefault("embedder", Task2VecEmbedder(**emb_params, device=device))
        params.setdefault("transferability", TransferabilitySelector(device=device))
        hyb = cls(**params)
        hyb._check_params()
        hyb.embedder_ = clone(hyb.embedder).fit()
        if hyb.embedder_.embedding_meta_.compat_key() != kb.meta.compat_key():
            raise IncompatibleEmbeddingError(
                "the knowledge base holds embeddings made differently from what this "
                f"installation makes ({kb.meta.describe_difference(hyb.embedder_.embedding_meta_)}"
                "; stored first). Rebuild it with `t2v-automl knowledge build`."
            )
        sel_params = {} if hyb.selector is None else {
            k: v for k, v in hyb.selector.get_params().items() if k != "extractor_names"}
        hyb.selector_ = ExtractorSelector.from_knowledge(kb, **sel_params)
        hyb.extractor_names_ = list(hyb.selector_.extractor_names_)
        hyb.embedding_meta_ = hyb.selector_.embedding_meta_
        hyb.screen_embedder_, hyb.screen_selector_ = None, None
        if hyb.domain_screen is not None:
            stored, values = kb.extra_embeddings("domain") if "domain" in kb.extra_names \
                else (None, None)
            if stored is not None and values is not None and np.isfinite(values).all():
                screen_emb = hyb._screen_embedder()
                made = screen_emb.embedding_meta_
                if made.compat_key() != stored.compat_key():
                    raise IncompatibleEmbeddingError(
                        "the knowledge base's domain embeddings were made differently from "
                        f"what this installation makes ({stored.describe_difference(made)}; "
                        "stored first). Pass domain_screen=None, or rebuild the base."
                    )
                hyb.screen_embedder_ = screen_emb
                hyb.screen_selector_ = ExtractorSelector.from_knowledge(
                    kb, embedding="domain", metric="normalized_cosine")
            else:
                logger.info("the knowledge base has no complete 'domain' embedding set: "
                            "the domain screen is off (every task gets a Fisher embedding)")
        evaluation = kb.provenance[0].get("evaluation", {}) if len(kb) else {}
        size = evaluation.get("input_size")
        hyb._fit_global_prior()
        hyb._fit_transferability(int(size) if size else None)
        return hyb

    @classmethod
    def default(cls, **params: Any) -> HybridSelector:
        """A hybrid selector on the knowledge base shipped with the package.

        Parameters
        ----------
        **params
            As :meth:`from_knowledge` (``device`` included).

        Returns
        -------
        HybridSelector
        """
        from t2v_automl.knowledge import KnowledgeBase

        return cls.from_knowledge(KnowledgeBase.default(), **params)

    def screen(self, X: Any = None, domain_embeddings: Sequence[Embedding] | None = None
               ) -> tuple[list[Embedding], np.ndarray, np.ndarray] | None:
        """The domain screen: which tasks have images unlike every known task's.

        Parameters
        ----------
        X : sequence of tasks, optional
            Needed unless ``domain_embeddings`` is given.
        domain_embeddings : sequence of Embedding, optional
            Their domain embeddings, when already made with :attr:`screen_embedder_`.

        Returns
        -------
        (domain_embeddings, domain_novelty, screened) or None
            The tasks' domain embeddings, their domain novelty and whether it reaches
            ``domain_screen``; None when this selector has no screen.

        Raises
        ------
        InvalidInputTypeError
            Neither tasks nor domain embeddings, or ``domain_embeddings`` of another
            length than ``X``.
        """
        check_is_fitted(self, "selector_")
        sel = getattr(self, "screen_selector_", None)
        emb = getattr(self, "screen_embedder_", None)
        if sel is None or emb is None or self.domain_screen is None:
            return None
        if domain_embeddings is None:
            if X is None:
                raise InvalidInputTypeError(
                    "the domain screen needs the tasks X or their domain_embeddings.")
            dom = emb.embed(_as_task_list(X))
        else:
            dom = list(domain_embeddings)
            if X is not None and len(dom) != len(_as_task_list(X)):
                raise InvalidInputTypeError(
                    f"domain_embeddings must hold one Embedding per task: "
                    f"{len(_as_task_list(X))} task(s), {len(dom)} embedding(s)."
                )
        novelty = sel.novelty(dom) if dom else np.zeros(0)
        return dom, novelty, novelty >= float(self.domain_screen)

    def _images_per_class(self, task: Any) -> float:
        """Training images per class the transferability score sees (after its subsample)."""
        t = task if isinstance(task, Task) else as_task(task)
        cap = self.transferability_.get_params().get("max_images")
        n = t.n_images if cap is None else min(t.n_images, int(cap))
        return n / max(t.n_classes, 1)

    def _prescreened(self) -> TransferabilitySelector:
        """The transferability estimator, restricted to the ``prescreen`` best on average."""
        names = list(self.transferability_.extractor_names_)
        if self.prescreen is None or int(self.prescreen) >= len(names):
            return self.transferability_
        prior = np.asarray(self.global_prior_)
        order = sorted(names, key=lambda e: -prior[self.extractor_names_.index(e)])
        keep = set(order[: int(self.prescreen)])
        return clone(self.transferability_).set_params(
            extractors=[e for e in names if e in keep]).fit()

    def explain(self, X: Any = None, embeddings: Sequence[Embedding] | None = None,
                domain_embeddings: Sequence[Embedding] | None = None) -> HybridExplanation:
        """Predict, and say how: the screen, the neighbours, the novelty, the gate, LogME.

        Parameters
        ----------
        X : sequence of tasks, optional
            The tasks' images and labels. Needed to embed them and to compute their
            transferability scores; may be None when ``embeddings`` are given, and then
            a novel task is ranked by the knowledge base alone (with a warning: the
            transferability score needs the images).
        embeddings : sequence of Embedding, optional
            The tasks' Fisher embeddings, when already made with :attr:`embedder_` (saves
            the probe pass). Given without ``domain_embeddings``, the domain screen does
            not run: the Fisher is already paid for.
        domain_embeddings : sequence of Embedding, optional
            The tasks' domain embeddings, when already made with
            :attr:`screen_embedder_`: the screen runs on them.

        Returns
        -------
        HybridExplanation
            ``scores`` is what :meth:`predict` returns: the mixed, standardised scores of
            :func:`~t2v_automl.estimators.blend_with_transferability` put back on the
            accuracy scale of the knowledge-based prediction (its mean and spread over
            extractors, per task).

        Raises
        ------
        InvalidInputTypeError
            Nothing to predict from (no tasks and no embeddings), or inputs of different
            lengths.
        """
        check_is_fitted(self, "selector_")
        tasks = None if X is None else _as_task_list(X)
        given = None if embeddings is None else list(embeddings)
        dom_given = None if domain_embeddings is None else list(domain_embeddings)
        sizes = {what: len(v) for what, v in (("X", tasks), ("embeddings", given),
                                              ("domain_embeddings", dom_given))
                 if v is not None}
        if not sizes:
            raise InvalidInputTypeError(
                "explain needs the tasks X, or their embeddings / domain_embeddings.")
        if len(set(sizes.values())) > 1:
            raise InvalidInputTypeError(
                f"X, embeddings and domain_embeddings must hold one entry per task; got "
                f"{sizes}."
            )
        n = next(iter(sizes.values()))
        m = len(self.extractor_names_)
        screened = np.zeros(n, dtype=bool)
        domain_novelty = np.full(n, np.nan)
        prior = np.full((n, m), np.nan)
        novelty = np.full(n, np.nan)
        embs: list[Embedding | None] = [None] * n
        doms: list[Embedding | None] = [None] * n
        if (dom_given is not None or given is None) \
                and (screen := self.screen(tasks, dom_given)) is not None:
            dom, domain_novelty, screened = screen
            doms = list(dom)
            if screened.any():
                rows = np.flatnonzero(screened)
                prior[rows] = cast(ExtractorSelector, self.screen_selector_).predict_scores(
                    [dom[i] for i in rows])
                logger.info("%d of %d task(s) have images unlike every known task "
                            "(domain novelty %s): no Fisher embedding, %s alone ranks",
                            rows.size, n, np.round(domain_novelty[rows], 2).tolist(),
                            self.transferability_.measure)
        keep = np.flatnonzero(~screened)
        if keep.size:
            if given is not None:
                kept = [given[i] for i in keep]
            elif tasks is not None:
                kept = self.embedder_.embed([tasks[i] for i in keep])
            else:
                raise InvalidInputTypeError(
                    f"{keep.size} task(s) pass the domain screen and need their Fisher "
                    f"embedding: pass the tasks X or their embeddings."
                )
            for i, e in zip(keep, kept, strict=True):
                embs[i] = e
            prior[keep] = self.selector_.predict_scores(kept)
            novelty[keep] = self.selector_.novelty(kept)
        # a screened task: infinite novelty = the transferability ranking alone
        gate_novelty = np.where(screened, np.inf, novelty)
        gate = novelty_gate(gate_novelty, center=float(self.novelty_center),
                            steepness=float(self.novelty_steepness))
        transfer = np.full_like(prior, np.nan)
        seconds = np.zeros_like(prior)
        rows = np.flatnonzero(gate >= float(self.min_gate))
        if rows.size and tasks is None:
            warnings.warn(
                f"{rows.size} task(s) are unlike the known ones (novelty "
                f"{np.round(np.where(screened, domain_novelty, novelty)[rows], 2).tolist()}"
                f"{', domain novelty of screened tasks' if screened[rows].any() else ''}) "
                f"but only their embeddings were "
                f"given: ranking them by the knowledge base alone. Pass the tasks to add "
                f"the {self.transferability_.measure} score.", UserWarning, stacklevel=2)
        elif rows.size:
            logger.info("%d of %d task(s) are novel (novelty %s): computing %s on %d "
                        "candidate(s)", rows.size, n,
                        np.round(novelty[rows], 2).tolist(), self.transferability_.measure,
                        len(self.transferability_.extractor_names_))
            measurer = self._prescreened()
            t_scores, t_seconds = measurer.predict_scores(
                [tasks[i] for i in rows], return_times=True)
            cols = np.array([self.extractor_names_.index(name)
                             for name in measurer.extractor_names_], dtype=np.intp)
            transfer[np.ix_(rows, cols)] = t_scores
            seconds[np.ix_(rows, cols)] = t_seconds
        side, weight = transfer, None
        global_prior = getattr(self, "global_prior_", None)
        if self.evidence_half is not None and global_prior is not None:
            weight = np.full(n, np.nan)
            side = np.full_like(transfer, np.nan)
            if rows.size and tasks is not None:
                side[rows], weight[rows] = evidence_blend(
                    transfer[rows], global_prior,
                    [self._images_per_class(tasks[i]) for i in rows],
                    half=float(self.evidence_half), ranks=bool(self.transfer_ranks))
        scores, gate = hybrid_scores(prior, side, gate_novelty,
                                     center=float(self.novelty_center),
                                     steepness=float(self.novelty_steepness))
        result = HybridExplanation(
            extractor_names=list(self.extractor_names_), scores=scores, prior=prior,
            novelty=novelty, gate=gate, domain_novelty=domain_novelty, screened=screened,
            transfer_scores=transfer, transfer_seconds=seconds, embeddings=embs,
            domain_embeddings=doms,
            global_prior=None if global_prior is None else np.array(global_prior),
            evidence_weight=weight)
        _LAST[self] = result
        return result

    def predict_scores(self, X: Any = None, embeddings: Sequence[Embedding] | None = None,
                       domain_embeddings: Sequence[Embedding] | None = None) -> np.ndarray:
        """Predicted score of every extractor for every task: ``explain(...).scores``.

        Parameters
        ----------
        X, embeddings, domain_embeddings
            As :meth:`explain`.

        Returns
        -------
        ndarray of shape (n_tasks, n_extractors)
            Columns in :attr:`extractor_names_` order; higher = better.
        """
        return self.explain(X, embeddings=embeddings,
                            domain_embeddings=domain_embeddings).scores

    novelty_ = _deprecated_last("novelty", "novelty of the last call's tasks")
    gate_ = _deprecated_last("gate", "weight of the transferability ranking")
    domain_novelty_ = _deprecated_last("domain_novelty", "domain novelty")
    screened_ = _deprecated_last("screened", "tasks screened to the transferability score")
    transfer_scores_ = _deprecated_last("transfer_scores", "transferability scores")

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags
