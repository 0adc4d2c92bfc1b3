"""Every query of the application, one module per area.

Services call these and never build a ``select()``; nothing here commits.
"""
