"""chromodesk-train: the bundled training tool (data sources, splits, models, loops, reports)."""
