"""Errors raised by t2v-automl.

Every error derives from :class:`T2VError`, so ``except T2VError`` catches all of
them; each also derives from the builtin a caller would naturally catch
(``ValueError``, ``TypeError``, ``FileNotFoundError``, ``KeyError``...).
"""

from __future__ import annotations

__all__ = [
    "T2VError",
    "InvalidTaskError",
    "InvalidInputTypeError",
    "UnknownNameError",
    "WeightsNotFoundError",
    "IncompatibleEmbeddingError",
    "KnowledgeBaseError",
    "ImageFolderError",
    "DatasetNotFoundError",
    "DatasetFormatError",
    "InvalidParameterError",
    "DeviceFallbackWarning",
    "InvalidWeightsError",
]


class T2VError(Exception):
    """Base class of every error raised by t2v-automl."""


class InvalidTaskError(T2VError, ValueError):
    """A task's images or labels are unusable (empty, one class, NaN pixels...)."""


class InvalidInputTypeError(T2VError, TypeError):
    """An argument has a type t2v-automl cannot turn into what it needs."""


class UnknownNameError(T2VError, ValueError):
    """A registry name (probe, extractor, suite) is not known."""


class WeightsNotFoundError(T2VError, FileNotFoundError):
    """Pre-trained weights are not installed; the message says what to install."""


class IncompatibleEmbeddingError(T2VError, ValueError):
    """Embeddings made with different probes or settings were compared."""


class KnowledgeBaseError(T2VError, ValueError):
    """A knowledge base file is missing, truncated, tampered with or incompatible."""


class ImageFolderError(T2VError, ValueError):
    """An image folder has no usable images or is not laid out by class."""


class DatasetNotFoundError(T2VError, FileNotFoundError):
    """A source of images is not installed; the message says what to install."""


class DatasetFormatError(T2VError, ValueError):
    """An installed data file does not hold what its format promises (truncated, altered)."""


class InvalidParameterError(T2VError, ValueError):
    """A setting (size, count, strategy...) is out of range or of the wrong kind."""


class DeviceFallbackWarning(UserWarning):
    """A device was asked for that is not there (CUDA on a CPU-only machine); the CPU is used."""


class InvalidWeightsError(T2VError, ValueError):
    """A weight file exists but holds no usable state dict.

    It is truncated, was not written by ``torch.save``, holds objects other than tensors
    (refused without running them), or does not fit the architecture.
    """


class ImageFolderWarning(UserWarning):
    """Files or class folders of an image folder were skipped (bad images, non-image files,
    unreadable or symlinked-back folders); the message gives the count and the first names."""


class PixelRangeWarning(UserWarning):
    """Images whose pixel values have no fixed range (float or 32-bit integer images outside
    ``[0, 1]`` / ``0..65535``) were scaled to ``[0, 1]`` by each image's own minimum and maximum."""


class SlowEmbeddingWarning(UserWarning):
    """A task and a setting make the embedding far slower than usual (e.g. the exact Fisher
    with many classes); the message gives the cost and the faster setting."""
