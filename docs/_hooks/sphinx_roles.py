"""MkDocs hook: the docstrings cross-reference with reST roles (:func:`dice`,
:class:`~clinloop.data.sample.MultiRaterSample`), which Markdown renders as
":func:" followed by inline code. Drop the role marker, and for ``~a.b.C``
show ``C``, as Sphinx would. Applied to the rendered HTML of every page."""
from __future__ import annotations

import re

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const):<code>(~?)([^<]*)</code>")


def _render(m: re.Match) -> str:
    tilde, target = m.group(1), m.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub(_render, html)
