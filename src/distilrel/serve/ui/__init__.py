"""The relevance explorer and judging page served at ``/ui`` by ``distilrel serve``: a query's candidates
ranked by BM25, the student and the teacher side by side, judging with a click or a key, related
documents, and the agreement view (where to spend the next judging budget).

Templates (``templates/*.html``) and the page's own script and style (``static/``) ship inside this
package; the page loads nothing from the internet.
"""

from __future__ import annotations

from distilrel.serve.ui.explorer import Explorer, JudgingDisabled
from distilrel.serve.ui.routes import ui_router

__all__ = ["Explorer", "JudgingDisabled", "ui_router"]
