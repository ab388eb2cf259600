"""The Spark engine of a link run (`joinedup link --engine spark`).

The run is the DuckDB run's (linkage.run), stage for stage: the records are stacked, the
blocking rules chosen under the comparisons budget and the model trained (u, EM, prior) as
ever, on the driver. The stages that grow with the records and the pairs then run on
Spark, with the same trained model and the same decisions:

- scoring: Splink's own predict SQL on Splink's Spark backend (`SparkAPI`), over the rules
  the run chose, with the model the run trained (linkage.predict builds the SQL for both
  engines). The Dice comparison is Spark SQL built-ins: each CLK is a struct of its
  popcount and 64-bit words, and a pair's Dice is `bit_count(l.w_i & r.w_i)` summed
  (`spark_dice_sql`), computed once per pair as in DuckDB;
- clustering: the pairs at or above the cluster threshold (and the must-link labels) are
  split into connected components on Spark; each component is then clustered by the same
  guarded merge as the DuckDB run (linkage.clustering: strongest pair first, the
  identifier guard, the join-groups guard, cannot-link labels) in a grouped Arrow UDF.
  A component's merges depend only on its own pairs, so this is the DuckDB clustering
  exactly, one component per task.

The calibrated prior, the "auto" threshold, the labels, stable entity ids, links, model,
summary and report are the DuckDB run's code, on the pairs Spark scored (read back from
parquet). Splink internals stay in linkage.predict and linkage.model.

Spark runs in local mode by default (`local[2]`), bound to loopback with no UI; the scratch
directory (Spark's parquet checkpoints) is beside the run and removed with it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb

from linkage.clk import WORD_BYTES

SPARK_WORD_BITS = 64  # Spark has no 128-bit integer: a CLK is 64-bit words there
DEFAULT_MASTER = "local[2]"
DRIVER_MEMORY = "4g"


class SparkEngineError(Exception):
    """The Spark engine is not available (pyspark or Java missing) or failed."""


def spark_conf(master: str, scratch: Path) -> dict[str, str]:
    """The session's configuration: loopback only, no UI, shuffles sized for the cores."""
    cores = _local_cores(master)
    conf = {
        "spark.master": master,
        "spark.app.name": "joinedup-link",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.local.dir": str(scratch / "local"),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        # Splink's SQL is written for Spark's default (non-ANSI) semantics: log of 0,
        # division by zero and casts give NULL rather than failing the job.
        "spark.sql.ansi.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    if cores:
        # A few tasks per core: Spark's default of 200 shuffle partitions is for clusters.
        conf["spark.sql.shuffle.partitions"] = str(4 * cores)
        conf["spark.default.parallelism"] = str(4 * cores)
    return conf


def _local_cores(master: str) -> int | None:
    if master == "local":
        return 1
    if master.startswith("local[") and master.endswith("]"):
        inner = master[6:-1].split(",")[0]
        if inner == "*":
            import os

            return os.cpu_count() or 1
        return int(inner)
    return None


def start_session(master: str, scratch: Path, driver_memory: str = DRIVER_MEMORY) -> Any:
    """A SparkSession for one run (pyspark and Java 17+ are needed: scripts/java.sh)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkEngineError(
            "the Spark engine needs pyspark: pip install 'joinedup[spark]' "
            "(and Java 17+, scripts/java.sh)") from exc
    if not shutil.which("java") and not _java_home_java():
        raise SparkEngineError("the Spark engine needs Java 17+ (bash scripts/java.sh installs it)")
    scratch.mkdir(parents=True, exist_ok=True)
    import os
    import sys

    # Spark's Python workers (the clustering UDF) run this interpreter, which has linkage.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Loopback only (also stops Spark resolving the host name to an outside address).
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in spark_conf(master, scratch).items():
        builder = builder.config(key, value)
    if _local_cores(master):
        builder = builder.config("spark.driver.memory", driver_memory)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(str(scratch / "checkpoints"))
    return spark


def duckdb_memory_limit(master: str, driver_memory: str = DRIVER_MEMORY,
                        total_bytes: int | None = None) -> int | None:
    """DuckDB's memory limit (bytes) for a run whose Spark is local: DuckDB's own default
    (80% of RAM) less the JVM's heap and a quarter more for its overheads, so the driver's
    DuckDB spills before the two together exhaust the machine. None for a cluster master
    (the JVM doing the work is elsewhere)."""
    if not _local_cores(master):
        return None
    if total_bytes is None:
        import os

        total_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    heap = int(driver_memory[:-1]) * units[driver_memory[-1].lower()]
    return max(1 << 30, int(0.8 * total_bytes - 1.25 * heap))


def _java_home_java() -> bool:
    import os

    home = os.environ.get("JAVA_HOME")
    return bool(home) and Path(home, "bin", "java").exists()


def spark_words(clk_words: int) -> int:
    """64-bit words per CLK on Spark for a CLK held as `clk_words` 128-bit words."""
    return clk_words * (8 * WORD_BYTES) // SPARK_WORD_BITS


def spark_dice_sql(left: str, right: str, words64: int) -> str:
    """Dice of two CLK structs (n, w0..w<k-1> as BIGINT) in Spark SQL built-ins; NULL when
    either is NULL. Computed in double as DuckDB's `jup_dice` is (2c / (n_l + n_r), each an
    exact integer), so the levels' thresholds cut at the same pairs."""
    common = " + ".join(f"bit_count({left}.w{i} & {right}.w{i})" for i in range(words64))
    return (f"CAST(2 * ({common}) AS DOUBLE) / "
            f"CAST(nullif({left}.n + {right}.n, 0) AS DOUBLE)")


def export_records(con: duckdb.DuckDBPyConnection, table: str, clk_columns: list[str],
                   clk_words: int, path: Path) -> None:
    """Write the stacked records for Spark: the same rows and unique ids, each CLK's
    128-bit words split into two signed 64-bit words (the same bits, so the same
    popcounts)."""
    all_cols = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
    selects = []
    two64 = "(1::HUGEINT << 64)"
    for col in all_cols:
        if col not in clk_columns:
            selects.append(col)
            continue
        fields = [f"n := {col}.n"]
        for i in range(clk_words):
            w = f"{col}.w{i}"
            low = f"({w} & ({two64} - 1))"
            fields.append(f"w{2 * i} := CASE WHEN {low} >= (1::HUGEINT << 63) "
                          f"THEN ({low} - {two64})::BIGINT ELSE {low}::BIGINT END")
            fields.append(f"w{2 * i + 1} := ({w} >> 64)::BIGINT")
        selects.append(f"CASE WHEN {col} IS NULL THEN NULL ELSE struct_pack({', '.join(fields)}) "
                       f"END AS {col}")
    con.execute(f"COPY (SELECT {', '.join(selects)} FROM {table} ORDER BY unique_id) "
                f"TO '{_q(str(path))}' (FORMAT parquet)")


def _q(value: str) -> str:
    return value.replace("'", "''")


class SparkRun:
    """One run's Spark session, its records and Splink's Spark backend."""

    def __init__(self, master: str, scratch: Path) -> None:
        self.scratch = Path(scratch)
        self.spark = start_session(master, self.scratch)
        self.duckdb_memory_limit = duckdb_memory_limit(master)

    def share_memory(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bound the driver's DuckDB so it and a local JVM fit the machine together; what
        DuckDB cannot hold spills to the run's scratch directory."""
        if self.duckdb_memory_limit is not None:
            con.execute(f"SET memory_limit = '{self.duckdb_memory_limit // (1 << 20)}MB'")
            con.execute(f"SET temp_directory = '{_q(str(self.scratch / 'duckdb-spill'))}'")

    def _splink_api(self) -> Any:
        """Splink's Spark backend on this session (none of Splink's Scala UDFs: the
        comparisons use Spark built-ins). Intermediate tables are broken from their
        lineage by writing parquet under the checkpoint directory, as on a cluster."""
        from splink import SparkAPI

        return SparkAPI(spark_session=self.spark, register_udfs_automatically=False,
                        break_lineage_method="parquet")

    def describe(self) -> dict[str, Any]:
        """What the summary records about the engine."""
        conf = self.spark.sparkContext.getConf()
        return {"master": conf.get("spark.master"), "spark_version": self.spark.version,
                "shuffle_partitions": int(self.spark.conf.get("spark.sql.shuffle.partitions"))}

    def close(self) -> None:
        try:
            self.spark.stop()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def load_records(self, con: duckdb.DuckDBPyConnection, table: str, clk_columns: list[str],
                     clk_words: int) -> int:
        path = self.scratch / "records.parquet"
        export_records(con, table, clk_columns, clk_words, path)
        self.words64 = spark_words(clk_words)
        records = self.spark.read.parquet(str(path))
        records.createOrReplaceTempView("records")
        return records.count()

    def score(self, trained_model: dict[str, Any], out_path: Path,
              records: int) -> dict[int, int]:
        """Score every pair the model's blocking rules block (Splink's predict SQL on
        Spark, linkage.predict) and write them to `out_path` (parquet, the columns of the
        DuckDB run's predictions); returns the pairs per blocking rule (match_key)."""
        from linkage.model import linker_for_trained_model
        from linkage.predict import score_blocked_pairs

        linker = linker_for_trained_model(self._splink_api(), "records", trained_model, "spark")
        blocked = linker.inference.compute_blocked_pairs_for_predict()
        try:
            predictions = score_blocked_pairs(
                linker, blocked, None,
                dice=lambda c: spark_dice_sql(f"l.{c}", f"r.{c}", self.words64))
            counts = {int(r[0]): int(r[1]) for r in self.spark.sql(
                f"SELECT CAST(match_key AS INT), count(*) FROM {blocked.physical_name} GROUP BY 1"
            ).collect()}
            self.spark.table(predictions.physical_name).write.mode("overwrite").parquet(str(out_path))
        finally:
            blocked.drop_table_from_database_and_remove_from_cache()
        return counts

    def guarded_clusters(
        self,
        con: duckdb.DuckDBPyConnection,
        predictions_table: str,
        records_table: str,
        threshold: float,
        one_record_per_source: bool = False,
        join_groups_threshold: float | None = None,
        must_link: list[tuple[int, int]] = (),
        cannot_link: list[tuple[int, int]] = (),
        identifiers_across_sources: bool = False,
    ) -> tuple[str, int]:
        """linkage.clustering.cluster_with_identifier_guard, on Spark: the same table
        (unique_id, cluster_id) over every record, and the merges refused.

        The pairs at or above `threshold` and the must-link pairs are split into
        connected components (Splink's, on Spark); each task then merges whole
        components with `guarded_merge`, their pairs strongest first as in the DuckDB
        run. Components are bucketed by id so that one task merges many of them."""
        edges_path = self.scratch / "edges.parquet"
        con.execute(
            f"""COPY (SELECT unique_id_l, unique_id_r, match_probability FROM {predictions_table}
                      WHERE match_probability >= {float(threshold)})
                TO '{_q(str(edges_path))}' (FORMAT parquet)""")
        must = [(int(a), int(b)) for a, b in must_link]
        cannot = [(int(a), int(b)) for a, b in cannot_link]
        spark = self.spark
        cc_edges = spark.read.parquet(str(edges_path)).select("unique_id_l", "unique_id_r")
        if must:
            cc_edges = cc_edges.unionByName(spark.createDataFrame(
                [(min(a, b), max(a, b)) for a, b in must if a != b],
                "unique_id_l long, unique_id_r long"))
        cc_path = self.scratch / "edges_cc.parquet"
        cc_edges.write.mode("overwrite").parquet(str(cc_path))
        components_path = self.scratch / "components.parquet"
        self.components(cc_path, components_path)
        buckets = int(spark.conf.get("spark.sql.shuffle.partitions"))
        spark.read.parquet(str(edges_path)).createOrReplaceTempView("jup_cluster_edges")
        spark.read.parquet(str(components_path)).createOrReplaceTempView("jup_components")
        nodes = spark.sql(
            f"""SELECT pmod(c.component, {buckets}) AS bucket, r.unique_id, r.source, r.tk_nhs,
                       r.tk_nino
                FROM records r JOIN jup_components c ON c.unique_id = r.unique_id""")
        pair_edges = spark.sql(
            f"""SELECT pmod(c.component, {buckets}) AS bucket, e.unique_id_l, e.unique_id_r,
                       e.match_probability
                FROM jup_cluster_edges e JOIN jup_components c ON c.unique_id = e.unique_id_l""")
        merge = _bucket_merger(one_record_per_source, join_groups_threshold, must, cannot,
                               identifiers_across_sources)
        out_path = self.scratch / "clusters.parquet"
        (nodes.groupBy("bucket").cogroup(pair_edges.groupBy("bucket"))
         .applyInArrow(merge, "unique_id long, cluster_id long, refused long")
         .write.mode("overwrite").parquet(str(out_path)))
        name = "guarded_clusters"
        con.execute(
            f"""CREATE OR REPLACE TABLE {name} AS
                SELECT r.unique_id, coalesce(c.cluster_id, r.unique_id) AS cluster_id
                FROM {records_table} r
                LEFT JOIN read_parquet('{_q(str(out_path))}/*.parquet') c USING (unique_id)""")
        refused = con.execute(
            f"SELECT coalesce(sum(refused), 0) FROM read_parquet('{_q(str(out_path))}/*.parquet')"
        ).fetchall()[0][0]
        return name, int(refused)

    def components(self, edges_path: Path, out_path: Path) -> None:
        """Connected components of the edges (unique_id_l, unique_id_r) at
        `edges_path`: writes (unique_id, component) for every node on an edge, the
        component being its smallest unique_id (Splink's Spark connected components)."""
        from linkage.predict import connected_components

        edges = self.spark.read.parquet(str(edges_path))
        edges.createOrReplaceTempView("jup_edges")
        nodes = self.spark.sql(
            "SELECT unique_id_l AS unique_id FROM jup_edges UNION "
            "SELECT unique_id_r AS unique_id FROM jup_edges")
        nodes.createOrReplaceTempView("jup_nodes")
        result = connected_components(self._splink_api(), "jup_nodes", "jup_edges")
        self.spark.sql(
            f"SELECT unique_id, cluster_id AS component FROM {result.physical_name}"
        ).write.mode("overwrite").parquet(str(out_path))


def _bucket_merger(one_record_per_source: bool, join_groups_threshold: float | None,
                   must: list[tuple[int, int]], cannot: list[tuple[int, int]],
                   identifiers_across_sources: bool = False) -> Any:
    """The function each Spark task runs on one bucket of whole components: its records
    and pairs (Arrow tables) -> (unique_id, cluster_id, refused). The bucket's records
    are merged in one `guarded_merge` call: components are disjoint, so merging their
    union with the pairs in the global order is merging each one on its own."""

    def merge(nodes: Any, edges: Any) -> Any:
        import pyarrow as pa

        from linkage.clustering import guarded_merge

        schema = pa.schema([("unique_id", pa.int64()), ("cluster_id", pa.int64()),
                            ("refused", pa.int64())])
        if nodes.num_rows == 0:
            return pa.table({n: [] for n in schema.names}, schema=schema)
        cols = nodes.to_pydict()
        records = sorted(zip(cols["unique_id"], cols["source"], cols["tk_nhs"], cols["tk_nino"],
                             strict=True))
        e = edges.to_pydict()
        pairs = sorted(zip(e.get("unique_id_l", []), e.get("unique_id_r", []),
                           e.get("match_probability", []), strict=True),
                       key=lambda x: (-x[2], x[0], x[1]))
        present = set(cols["unique_id"])
        cluster_of, refused = guarded_merge(
            records, pairs, one_record_per_source, join_groups_threshold,
            [(a, b) for a, b in must if a in present and b in present],
            [(a, b) for a, b in cannot if a in present and b in present],
            identifiers_across_sources)
        uids = [r[0] for r in records]
        return pa.table({"unique_id": uids, "cluster_id": [cluster_of[u] for u in uids],
                         "refused": [refused] + [0] * (len(uids) - 1)}, schema=schema)

    return merge
