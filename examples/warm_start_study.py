"""Warm-start an Optuna study's extractor choice from the task's embedding.

A small, self-contained run (about a minute on one CPU core, no downloads):

1. known tasks (subsets of scikit-learn's digits) are embedded with the tiny test probe
   and every "extractor" is scored on each of them: that is the knowledge base;
2. a selector is fitted on it;
3. a study on a new task searches (extractor, logistic-regression C): ``warm_start``
   enqueues the extractors ranked best for the new task, ``Task2VecSampler`` keeps drawing
   the extractor from the ranking blended with the study's results, TPE tunes C, and
   ``KnowledgeCallback`` writes every finished trial back into the knowledge base file,
   so the next study starts from more knowledge.

The "extractors" here are cheap feature maps written below so that the example runs
anywhere; with real data, use the names of the extractor zoo
(:func:`t2v_automl.list_extractors`) and :func:`t2v_automl.evaluation.evaluate_extractor`
as the objective, and a real probe (``probe="mobilenet_v2"``) for the embeddings.

Run: ``python examples/warm_start_study.py``
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import optuna
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from t2v_automl import KnowledgeBase, Task, Task2VecEmbedder
from t2v_automl.estimators import ExtractorSelector
from t2v_automl.integration.optuna import KnowledgeCallback, Task2VecSampler, warm_start

rng = np.random.default_rng(0)
_PROJ = rng.normal(size=(64, 12))


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def raw_pixels(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _flat(tr), _flat(te)


def pca6(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pca = PCA(n_components=6, random_state=0).fit(_flat(tr))
    return pca.transform(_flat(tr)), pca.transform(_flat(te))


def row_col_means(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    def f(x: np.ndarray) -> np.ndarray:
        return np.hstack([x.mean(axis=1), x.mean(axis=2)])
    return f(tr), f(te)


def random_projection(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.tanh(_flat(tr) @ _PROJ), np.tanh(_flat(te) @ _PROJ)


EXTRACTORS = {"raw_pixels": raw_pixels, "pca6": pca6, "row_col_means": row_col_means,
              "random_projection": random_projection}


def accuracy(extractor: str, C: float, split: tuple[np.ndarray, ...]) -> float:
    """Validation accuracy of a logistic-regression probe on frozen features."""
    x_tr, x_te, y_tr, y_te = split
    f_tr, f_te = EXTRACTORS[extractor](x_tr, x_te)
    clf = LogisticRegression(C=C, max_iter=500).fit(f_tr, y_tr)
    return float(clf.score(f_te, y_te))


def make_task(images: np.ndarray, target: np.ndarray, classes: tuple[int, ...],
              name: str) -> tuple[Task, tuple[np.ndarray, ...]]:
    idx = np.concatenate([rng.choice(np.flatnonzero(target == c), 40, replace=False)
                          for c in classes])
    x, y = images[idx], target[idx]
    split = train_test_split(x, y, test_size=0.5, stratify=y, random_state=0)
    return Task.from_arrays(split[0], split[2], name=name), split


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    digits = load_digits()
    images, target = (digits.images / 16.0).astype(np.float32), digits.target
    embedder = Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=60,
                                head_epochs=3).fit()
    workdir = Path(tempfile.mkdtemp(prefix="t2v-warm-start-"))
    kb_path = workdir / "knowledge.npz"

    # 1. The knowledge base: known tasks, their embeddings, every extractor's score.
    known = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (1, 7), (3, 8), (0, 6, 9)]
    kb = KnowledgeBase.empty(embedder.embedding_meta_, list(EXTRACTORS))
    for classes in known:
        name = "digits" + "".join(map(str, classes))
        task, split = make_task(images, target, classes, name)
        scores = {e: accuracy(e, 1.0, split) for e in EXTRACTORS}
        kb.add(name, embedder.embed([task])[0], scores, provenance={"classes": list(classes)})
    kb.save(kb_path)

    # 2. The selector.
    selector = ExtractorSelector.from_knowledge(kb, strategy="nearest", n_neighbors=3)

    # 3. A new task and its study (SQLite storage: workers may join with load_study).
    task, split = make_task(images, target, (2, 5, 9), "digits259")
    embedding = embedder.embed([task])[0]
    study = optuna.create_study(
        study_name="digits259", direction="maximize",
        storage=f"sqlite:///{workdir / 'studies.db'}",
        sampler=Task2VecSampler(selector, embedding, seed=0))
    enqueued = warm_start(study, embedding, selector, top_k=2, knowledge=kb_path,
                          extra_params={"C": 1.0})
    # predict: the predicted score of every extractor (a tasks x extractors matrix, as the
    # knowledge base's scores); rank / select: the extractor names, best first
    predicted = selector.predict([embedding])[0]
    print("predicted:", {e: round(float(s), 3)
                         for e, s in zip(selector.extractor_names_, predicted, strict=True)})
    print("ranking:", list(selector.rank([embedding])[0]))
    print("enqueued:", enqueued)

    def objective(trial: optuna.Trial) -> float:
        extractor = trial.suggest_categorical("extractor", list(EXTRACTORS))
        C = trial.suggest_float("C", 1e-3, 1e2, log=True)
        return accuracy(extractor, C, split)

    study.optimize(objective, n_trials=12,
                   callbacks=[KnowledgeCallback(kb_path, embedding)])
    print("best trial:", study.best_trial.number, study.best_params,
          f"accuracy {study.best_value:.3f}")
    print("trials per extractor:",
          {e: sum(t.params.get("extractor") == e for t in study.trials) for e in EXTRACTORS})

    kb = KnowledgeBase.load(kb_path)
    row = kb.index("digits259")
    print("knowledge base now has", len(kb), "tasks; new row:",
          {e: round(float(s), 3) for e, s in zip(kb.extractor_names, kb.scores[row],
                                                  strict=True) if not np.isnan(s)})
    print("files in", workdir)


if __name__ == "__main__":
    main()
