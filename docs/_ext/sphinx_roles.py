"""A griffe extension for the API pages: the docstrings cross-reference with Sphinx roles (:class:`X`,
:func:`~a.b.f`), which Markdown would show as raw text; render each as a code span of the name Sphinx would show
(the last component after ``~``)."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|obj|data|exc):`(~?)([^`]+)`")


def _code(m: re.Match) -> str:
    name = m.group(2)
    return f"`{name.rsplit('.', 1)[-1] if m.group(1) else name}`"


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
