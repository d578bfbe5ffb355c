"""KPIs: a registry of definitions, rollups with quantile sketches, a brute-force twin."""
