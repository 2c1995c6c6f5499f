"""Lineage in the tools ML teams already use: OpenLineage run events
(:mod:`consentry.integrations.openlineage`) and MLflow (:mod:`consentry.integrations.mlflow`,
the ``[mlflow]`` extra)."""
