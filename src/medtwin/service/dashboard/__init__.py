"""The clinician dashboard: server-rendered pages (Jinja2 + htmx), plotly charts, live updates by SSE.

:func:`install` adds the pages (:mod:`~medtwin.service.dashboard.pages`), their static files and error
handling to the service app; :mod:`~medtwin.service.dashboard.views` assembles what a page shows,
:mod:`~medtwin.service.dashboard.charts` builds the plotly figures.  See ``docs/service-dashboard.md``.
"""

from medtwin.service.dashboard.pages import install

__all__ = ["install"]
