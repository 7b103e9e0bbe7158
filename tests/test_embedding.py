from __future__ import annotations

import numpy as np
import pytest

from t2v_automl.embedding import Embedding, EmbeddingMeta, check_compatible, stack_embeddings
from t2v_automl.exceptions import IncompatibleEmbeddingError


def _meta(**kw):
    base = dict(probe="mobilenet_v2", weights_sha256="b0353104", method="exact", input_size=64,
                layers="all", dim=3, n_images=10)
    base.update(kw)
    return EmbeddingMeta(**base)


def test_meta_round_trip_and_n_images_ignored():
    m = _meta(settings={"seed": 1})
    assert EmbeddingMeta.from_dict(m.to_dict()) == m
    a = Embedding(np.ones(3), m)
    a.check_compatible(Embedding(np.ones(3), _meta(n_images=99)))


@pytest.mark.parametrize("field, value", [("probe", "resnet18"), ("weights_sha256", "ff"),
                                          ("method", "montecarlo"), ("input_size", 112),
                                          ("layers", "stages[4:]")])
def test_different_metadata_refuses_comparison(field, value):
    a = Embedding(np.ones(3), _meta())
    b = Embedding(np.ones(3), _meta(**{field: value}))
    with pytest.raises(IncompatibleEmbeddingError, match=field):
        a.check_compatible(b)
    with pytest.raises(IncompatibleEmbeddingError):
        stack_embeddings([a, b])


def test_values_must_match_dim():
    with pytest.raises(IncompatibleEmbeddingError, match="dim=3"):
        Embedding(np.ones(4), _meta())
    assert check_compatible([]) is None
