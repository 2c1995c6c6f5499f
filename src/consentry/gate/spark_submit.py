"""Run the ``consentry`` CLI as a Spark application, for ``spark-submit``::

    SUBMIT=$(python -c "import consentry.gate.spark_submit as m; print(m.__file__)")
    spark-submit --master spark://master:7077 "$SUBMIT" \\
        gate manifest.parquet --purpose ai.training --out /shared/datasets/run-42 --engine spark

``spark-submit`` starts the driver and the SparkSession's settings (master, executors, memory);
``consentry gate --engine spark`` then uses that session. See ``docs/spark.md``.
"""

from __future__ import annotations


def main() -> None:
    from consentry.cli import app

    app(prog_name="consentry")


if __name__ == "__main__":
    main()
