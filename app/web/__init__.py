"""Server-rendered pages for QA reviewers and auditors (Jinja2; the core flows need no
JavaScript)."""
