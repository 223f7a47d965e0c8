"""Hypothesis helper shared by the layer tests."""

from hypothesis import example


def with_examples(configs, **extra):
    """Decorator: add every config in ``configs`` as an explicit ``@example(config=..., **extra)``,
    so the edge cases that break naive implementations run on every test run."""

    def decorate(test):
        for config in configs:
            test = example(config=config, **extra)(test)
        return test

    return decorate
