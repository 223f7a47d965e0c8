"""Exception types of npresnet."""


class WeightsError(ValueError):
    """A weight file or state dict is unreadable, malformed, unsafe or does not fit the model."""
