"""Every query of the application, one module per area: services call these and never build a select()."""
