"""What the tests of the Optuna integration share: stand-in selectors, embeddings, trials."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from t2v_automl.embedding import Embedding, EmbeddingMeta

optuna.logging.set_verbosity(optuna.logging.WARNING)

META = EmbeddingMeta(probe="tiny_random", weights_sha256="0" * 64, method="exact",
                     input_size=16, layers="test layers", dim=4)
OTHER_META = EmbeddingMeta(probe="mobilenet_v2", weights_sha256="1" * 64, method="exact",
                           input_size=64, layers="test layers", dim=4)
NAMES = ["a", "b", "c", "d"]
PREDICTED = (0.90, 0.80, 0.85, 0.60)  # ranking: a, c, b, d


class StubSelector:
    """Stand-in with the fitted interface of ExtractorSelector (constant predictions)."""

    def __init__(self, names=NAMES, scores=PREDICTED, meta=META):
        self.extractor_names_ = list(names)
        self.embedding_meta_ = meta
        self.n_features_in_ = meta.dim if meta is not None else 4
        self._scores = np.asarray(scores, dtype=np.float64)

    def _matrix(self, E):
        if isinstance(E, list) and E and isinstance(E[0], Embedding):
            for e in E:
                if self.embedding_meta_ is not None:
                    e.check_compatible(self.embedding_meta_)
            return np.vstack([e.values for e in E])
        return np.atleast_2d(np.asarray(E, dtype=np.float64))

    def predict_scores(self, E):
        X = self._matrix(E)
        return np.tile(self._scores, (X.shape[0], 1))

    def predict(self, E):  # the selectors' contract: the tasks x extractors score matrix
        return self.predict_scores(E)

    def rank(self, E, candidates=None):
        s = self.predict_scores(E)
        return np.array([[self.extractor_names_[j] for j in np.argsort(-row, kind="stable")]
                         for row in s], dtype=object)

    def select(self, E, candidates=None):
        return self.rank(E, candidates)[:, 0]


def emb(values=(1.0, 2.0, 3.0, 4.0), meta=META, name="new-task"):
    return Embedding(np.asarray(values, dtype=np.float64), meta, task_name=name,
                     task_fingerprint="f" * 16)


def waiting_params(study):
    return [t.system_attrs["fixed_params"] for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.WAITING]


def cat_trial(ext, value, state=TrialState.COMPLETE, choices=tuple(NAMES), **other):
    params = {"extractor": ext, **other}
    dists = {"extractor": CategoricalDistribution(list(choices)),
             **{k: FloatDistribution(1e-3, 1e3, log=True) for k in other}}
    return create_trial(state=state, params=params, distributions=dists,
                        value=value if state != TrialState.FAIL else None)
