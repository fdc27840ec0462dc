"""Exception types raised by layer_sim; every one is a ``ValueError`` subclass."""


class LayerSimError(ValueError):
    """Base class of all layer_sim errors about bad input, data or configuration."""


class InputError(LayerSimError):
    """An array/tensor given to a measure or comparison is unusable (shape, NaN/Inf, too few rows)."""


class DegenerateInputError(InputError):
    """A representation has no variance (constant features) or no usable rank."""


class UnknownNameError(LayerSimError):
    """An unknown measure, statistic, layer or option name; the message lists the valid ones."""


class DataError(LayerSimError):
    """A dataset file is missing, truncated, has a wrong magic number or a checksum mismatch."""


class ConfigError(LayerSimError):
    """A model, training or experiment configuration is invalid."""


class TrainingDivergedError(LayerSimError):
    """The training loss (or the weights) became NaN or infinite; the message names epoch, step and learning rate."""


class IncompleteError(DataError):
    """A result was asked of a results store that does not hold every unit it needs (yet)."""


class UnitsFailedError(LayerSimError):
    """Units of an experiment failed every attempt; the message names how many, the first error and how to see all."""
