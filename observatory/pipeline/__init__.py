"""The wiring of the pipeline: which stage follows which (docs/architecture.md)."""
