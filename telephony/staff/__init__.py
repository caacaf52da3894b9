"""The staff triage pages under ``/calls``: routes, queries, login/CSRF/headers, and the
Jinja2 templates and stylesheet they render with."""
