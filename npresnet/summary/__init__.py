"""A per-layer summary of a model: shapes, parameters, multiply-accumulates, receptive fields, memory.

>>> from npresnet.summary import summarize, format_table
>>> summarize("resnet18").total_params
11689512

Modules, one job each:

* ``formulas`` — each layer's receptive field (the MAC counts and the recurrence live in ``npresnet.formulas``);
* ``trace`` — the recorder of one shape-only pass through the real ``forward`` code;
* ``rows`` — the table rows, folded by depth;
* ``memory`` — peak activation memory from the tensors' lifetimes;
* ``working_memory`` — one pass's working memory and the limit ``predict`` and ``embed`` hold it to;
* ``formats`` — the plain-text and Markdown tables;
* ``html`` — the self-contained HTML page with pictures;
* ``api`` — :func:`summarize` and its :class:`Summary` record (JSON via ``Summary.to_dict``).
"""

from .api import Summary, parse_input_size, summarize
from .formats import format_markdown, format_table
from .formulas import ReceptiveField, conv2d_macs, linear_macs
from .html import format_html
from .rows import LayerRow

__all__ = [
    "ReceptiveField",
    "LayerRow",
    "Summary",
    "summarize",
    "conv2d_macs",
    "linear_macs",
    "format_table",
    "format_markdown",
    "format_html",
    "parse_input_size",
]
