"""A griffe extension for the API pages: the docstrings are written for Sphinx as much as for a terminal, and
Markdown would show two reST habits raw: roles (:class:`X`, :func:`~a.b.f`) become a code span of the name Sphinx
would show (the last component after ``~``), and a paragraph ending in ``::`` before a literal block ends in ``:``
(the indented block itself is already a Markdown code block)."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|obj|data|exc):`(~?)([^`]+)`")
LITERAL = re.compile(r"(?<=\S)::$", re.M)


def _code(m: re.Match) -> str:
    name = m.group(2)
    return f"`{name.rsplit('.', 1)[-1] if m.group(1) else name}`"


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = LITERAL.sub(":", ROLE.sub(_code, obj.docstring.value))
