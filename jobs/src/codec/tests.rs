//! Round trips of cryptolake's codecs: every node encodes, decodes to the same plan, and the
//! decoded physical plans run.

use arrow::datatypes::Schema;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::displayable;
use datafusion::prelude::SessionContext;
use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use iceberg::table::Table;

use super::*;
use crate::job::context::Engine;
use crate::physical_plan::TableWriteNode;
use crate::sources::kafka::OffsetRange;
use crate::sources::kafka_config::KafkaConfig;

struct Fixture {
    lake: cryptolake_catalog::Lake,
    table: Table,
    _dir: tempfile::TempDir,
}

/// A lake with silver.trades holding three files of two rows each.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = cryptolake_catalog::config::CatalogConfig {
        path: dir.path().join("catalog.db"),
        warehouse: dir.path().join("warehouse").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let lake = cryptolake_catalog::Lake::open(&config).await.unwrap();
    let table = lake
        .ensure_table(&cryptolake_catalog::layout::silver_trades())
        .await
        .unwrap();
    let ctx = SessionContext::new();
    let mut files = Vec::new();
    for i in 0..3 {
        let sql = format!(
            "SELECT 'gen' AS source, 'T{i}' AS trade_id, 'u1' AS user_id, 'BTC-USD' AS symbol, \
             'buy' AS side, arrow_cast(1, 'Decimal128(38, 16)') AS quantity, \
             arrow_cast(100.5, 'Decimal128(38, 16)') AS price, \
             arrow_cast(TIMESTAMP '2026-01-0{d} 00:00:00', 'Timestamp(Microsecond, None)') AS event_time, \
             arrow_cast(TIMESTAMP '2026-01-05 00:00:00', 'Timestamp(Microsecond, None)') AS ingest_time, \
             DATE '2026-01-0{d}' AS date, 2026 AS year, 1 AS month, {d} AS day, 0 AS hour, \
             'f' AS bronze_file, arrow_cast({i}, 'Int64') AS bronze_record \
             UNION ALL SELECT 'gen', 'T{i}b', 'u2', 'BTC-USD', 'sell', \
             arrow_cast(2, 'Decimal128(38, 16)'), arrow_cast(101, 'Decimal128(38, 16)'), \
             arrow_cast(TIMESTAMP '2026-01-0{d} 00:01:00', 'Timestamp(Microsecond, None)'), \
             arrow_cast(TIMESTAMP '2026-01-05 00:00:00', 'Timestamp(Microsecond, None)'), \
             DATE '2026-01-0{d}', 2026 AS y, 1 AS m, {d} AS dd, 0 AS h, 'f' AS bf, \
             arrow_cast({i} + 10, 'Int64') AS br",
            d = i + 1
        );
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let mut writer = crate::iceberg::writer::TableWriter::new(&table, 1 << 20).unwrap();
        let schema = writer.schema().clone();
        for b in &batches {
            writer
                .write(crate::iceberg::writer::conform(b, &schema).unwrap())
                .await
                .unwrap();
        }
        files.extend(writer.close().await.unwrap());
    }
    let commit =
        cryptolake_catalog::SnapshotCommit::append(table.identifier().clone()).add_files(files);
    lake.commit(&commit).await.unwrap();
    let table = lake.load_table(table.identifier()).await.unwrap();
    Fixture {
        lake,
        table,
        _dir: dir,
    }
}

fn write_plan(table: &Table, provider: IcebergProvider) -> LogicalPlan {
    let scan = LogicalPlanBuilder::scan(
        table.identifier().to_string(),
        provider_as_source(Arc::new(provider)),
        None,
    )
    .unwrap()
    .build()
    .unwrap();
    TableWriteNode::new(scan, Arc::new(TableRef::of(table)), 4096).into_plan()
}

#[tokio::test]
async fn a_write_over_grouped_files_round_trips_as_a_logical_plan() {
    let f = fixture().await;
    let files = crate::iceberg::scan::live_data_files(&f.table)
        .await
        .unwrap();
    // Two whole files, then the third in two byte ranges.
    let groups = vec![
        files[..2].iter().cloned().map(FileRange::whole).collect(),
        FileRange::split(files[2].clone(), 2),
    ];
    let provider = IcebergProvider::with_ranges(f.table.clone(), groups.clone()).unwrap();
    let plan = write_plan(&f.table, provider);
    let codec = CryptolakeLogicalCodec::new(f.lake.file_io().clone());
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &codec).unwrap();
    let ctx = SessionContext::new();
    let back =
        logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
    assert_eq!(
        back.display_indent().to_string(),
        plan.display_indent().to_string()
    );
    let LogicalPlan::Extension(ext) = &back else {
        panic!("not an extension: {back}");
    };
    let write = ext.node.as_any().downcast_ref::<TableWriteNode>().unwrap();
    assert_eq!(write.table.as_ref(), &TableRef::of(&f.table));
    assert_eq!(write.target_file_size, 4096);
    let LogicalPlan::TableScan(scan) = &write.input else {
        panic!("not a scan");
    };
    let source = datafusion::datasource::source_as_provider(&scan.source).unwrap();
    let decoded = source.as_any().downcast_ref::<IcebergProvider>().unwrap();
    let ranges = |gs: &[Vec<FileRange>]| -> Vec<Vec<(String, u64, u64)>> {
        gs.iter()
            .map(|g| {
                g.iter()
                    .map(|r| (r.file.file_path().to_string(), r.start, r.length))
                    .collect()
            })
            .collect()
    };
    assert_eq!(ranges(decoded.groups().unwrap()), ranges(&groups));
    let size = files[2].file_size_in_bytes();
    assert_eq!(ranges(&groups)[1][1].1 + ranges(&groups)[1][1].2, size);
    assert_eq!(decoded.groups().unwrap()[0][0].file, groups[0][0].file);
}

#[tokio::test]
async fn scan_and_write_nodes_round_trip_as_a_physical_plan() {
    let f = fixture().await;
    let files = crate::iceberg::scan::live_data_files(&f.table)
        .await
        .unwrap();
    let provider = IcebergProvider::with_files(f.table.clone(), files).unwrap();
    let ctx = crate::engine::engine_session(&Engine::InProcess, f.lake.file_io(), 2, 1024)
        .await
        .unwrap();
    let logical = write_plan(&f.table, provider);
    let plan = ctx.state().create_physical_plan(&logical).await.unwrap();
    let codec = CryptolakePhysicalCodec::new(f.lake.file_io().clone());
    let bytes = physical_plan_to_bytes_with_extension_codec(plan.clone(), &codec).unwrap();
    let back =
        physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
    let shown = |p: &Arc<dyn ExecutionPlan>| displayable(p.as_ref()).indent(true).to_string();
    assert_eq!(shown(&back), shown(&plan));
    assert!(shown(&plan).contains("TableWriteExec: table=silver.trades"));
    assert!(shown(&plan).contains("IcebergScanExec: table=silver.trades, partitions=2, files=3"));
    let scan_of = |p: &Arc<dyn ExecutionPlan>| -> Vec<Vec<(String, u64, Vec<i32>)>> {
        fn find(p: &Arc<dyn ExecutionPlan>) -> Option<&IcebergScanExec> {
            p.as_any()
                .downcast_ref::<IcebergScanExec>()
                .or_else(|| p.children().into_iter().find_map(find))
        }
        let scan = find(p).unwrap_or_else(|| panic!("no scan in {}", shown(p)));
        scan.groups()
            .iter()
            .map(|g| {
                g.iter()
                    .map(|t| {
                        (
                            t.data_file_path.clone(),
                            t.length,
                            t.project_field_ids.clone(),
                        )
                    })
                    .collect()
            })
            .collect()
    };
    assert_eq!(scan_of(&back), scan_of(&plan));
    assert_eq!(back.schema(), plan.schema());
    // The decoded plan runs: it writes the six rows again, as two new files.
    let rows = datafusion::physical_plan::collect(back, ctx.task_ctx())
        .await
        .unwrap();
    let written = crate::physical_plan::written_files(&TableRef::of(&f.table), &rows).unwrap();
    assert_eq!(
        written.iter().map(|w| w.file.record_count()).sum::<u64>(),
        6
    );
    let mut parts: Vec<u32> = written.iter().map(|w| w.partition).collect();
    parts.sort();
    parts.dedup();
    assert_eq!(parts, [0, 1]);
}

/// bronze.trades with one file: two good trades, the first again (a duplicate), one
/// record with a bad price and one that was not JSON; plus the silver plan over it.
async fn silver_fixture() -> (Fixture, LogicalPlan, Arc<crate::physical_plan::SinkSpec>) {
    use crate::sources::bronze::BronzeBuilder;
    use crate::sources::records::Record;
    let f = fixture().await;
    let bronze = f
        .lake
        .ensure_table(&cryptolake_catalog::layout::bronze("trades").unwrap())
        .await
        .unwrap();
    let schema = crate::iceberg::writer::arrow_schema(&bronze).unwrap();
    let fields = cryptolake_catalog::layout::bronze_source_fields("trades").unwrap();
    let mut rows = BronzeBuilder::new(schema, fields, 1_767_225_600_000_000);
    let trade = |id: &'static str, price: &'static str| {
        let values = [
            id,
            "u1",
            "BTC/USD",
            "buy",
            "0.5",
            price,
            "2026-01-01T00:00:01Z",
        ];
        Record::fields(
            values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i, v.into()))
                .collect(),
        )
    };
    rows.push("f.json", 0, &trade("t1", "100.5"));
    rows.push("f.json", 1, &trade("t2", "101"));
    rows.push("f.json", 2, &trade("t1", "100.5"));
    rows.push("f.json", 3, &trade("t3", "lots"));
    rows.push("f.json", 4, &Record::Raw("{not json".into()));
    let mut writer = crate::iceberg::writer::TableWriter::new(&bronze, 1 << 20).unwrap();
    writer.write(rows.finish().unwrap()).await.unwrap();
    let files = writer.close().await.unwrap();
    let scan = LogicalPlanBuilder::scan(
        "bronze.trades",
        provider_as_source(Arc::new(
            IcebergProvider::with_groups(bronze, vec![files]).unwrap(),
        )),
        None,
    )
    .unwrap()
    .build()
    .unwrap();
    let normalize = SilverNormalizeNode::new(
        scan,
        NormalizeSpec {
            source: "trades".into(),
            format: "trades".into(),
            takes: vec![
                crate::transform::silver::Output::Trades,
                crate::transform::silver::Output::Quarantine,
            ],
            now_us: 1_767_225_700_000_000,
        },
    );
    let mut tables = Vec::new();
    for layout in [
        cryptolake_catalog::layout::silver_quotes(),
        cryptolake_catalog::layout::silver_trades(),
        cryptolake_catalog::layout::silver_quarantine(),
    ] {
        tables.push(TableRef::of(&f.lake.ensure_table(&layout).await.unwrap()));
    }
    let spec = Arc::new(SinkSpec {
        tables,
        target_file_size: 1 << 20,
        batch_size: 1024,
    });
    let plan = SilverSinkNode::new(normalize.into_plan(), spec.clone()).into_plan();
    (f, plan, spec)
}

#[tokio::test]
async fn silver_nodes_round_trip_as_a_logical_plan() {
    let (f, plan, spec) = silver_fixture().await;
    let codec = CryptolakeLogicalCodec::new(f.lake.file_io().clone());
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &codec).unwrap();
    let ctx = SessionContext::new();
    let back =
        logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
    assert_eq!(back, plan);
    assert_eq!(
        back.display_indent().to_string(),
        plan.display_indent().to_string()
    );
    let LogicalPlan::Extension(ext) = &back else {
        panic!("not an extension: {back}");
    };
    let sink = ext.node.as_any().downcast_ref::<SilverSinkNode>().unwrap();
    assert_eq!(sink.spec.tables, spec.tables);
    let LogicalPlan::Extension(inner) = &sink.input else {
        panic!("not an extension: {}", sink.input);
    };
    let normalize = inner
        .node
        .as_any()
        .downcast_ref::<SilverNormalizeNode>()
        .unwrap();
    assert_eq!(normalize.spec.takes.len(), 2);
    assert_eq!(normalize.spec.now_us, 1_767_225_700_000_000);
}

#[tokio::test]
async fn silver_nodes_round_trip_as_a_physical_plan_and_the_decoded_plan_runs() {
    let (f, plan, spec) = silver_fixture().await;
    let ctx = crate::engine::engine_session(&Engine::InProcess, f.lake.file_io(), 2, 1024)
        .await
        .unwrap();
    let physical = ctx.state().create_physical_plan(&plan).await.unwrap();
    let shown = |p: &Arc<dyn ExecutionPlan>| displayable(p.as_ref()).indent(true).to_string();
    // The sink asked for its input hash-partitioned: the planner put the shuffle in.
    assert!(
        shown(&physical).contains("RepartitionExec: partitioning=Hash([_shuffle@1], 2)"),
        "{}",
        shown(&physical)
    );
    let codec = CryptolakePhysicalCodec::new(f.lake.file_io().clone());
    let bytes = physical_plan_to_bytes_with_extension_codec(physical.clone(), &codec).unwrap();
    let back =
        physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
    assert_eq!(shown(&back), shown(&physical));
    assert!(shown(&back).contains("SilverNormalizeExec: source=trades"));
    let rows = datafusion::physical_plan::collect(back, ctx.task_ctx())
        .await
        .unwrap();
    let result = crate::physical_plan::sink_result(&spec, &rows).unwrap();
    // One task per hash partition reported its counts (the rows whose `counts` is set).
    let count_rows: usize = rows
        .iter()
        .map(|b| b.num_rows() - b.column(4).null_count())
        .sum();
    assert_eq!(count_rows, 2);
    let c = &result.counts.sources["trades"];
    assert_eq!(
        (c.records, c.good, c.duplicates_dropped, c.quarantined),
        (5, 2, 1, 2)
    );
    let count = |i: usize| {
        result.files[i]
            .iter()
            .map(|f| f.record_count())
            .sum::<u64>()
    };
    assert_eq!((count(0), count(1), count(2)), (0, 2, 2));
}

/// A write into bronze.trades over a landing scan of two groups: a.json (two good lines and
/// one that is not JSON) and b.json (an array of two).
async fn landing_write(f: &Fixture, landing: &std::path::Path) -> (LogicalPlan, TableRef) {
    let bronze = f
        .lake
        .ensure_table(&cryptolake_catalog::layout::bronze("trades").unwrap())
        .await
        .unwrap();
    let src = landing.join("trades");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("a.json"),
        "{\"trade_id\":\"t1\"}\n{\"trade_id\":\"t2\"}\nnot json\n",
    )
    .unwrap();
    std::fs::write(
        src.join("b.json"),
        "[{\"trade_id\":\"t3\"},{\"trade_id\":\"t4\"}]",
    )
    .unwrap();
    let files = crate::sources::landing::list_source(landing, "trades").unwrap();
    let scan = LandingScan {
        landing: crate::job::landing::Landing::Local(landing.to_path_buf()),
        source: "trades".into(),
        groups: files.into_iter().map(|f| vec![f]).collect(),
        schema: crate::iceberg::writer::arrow_schema(&bronze).unwrap(),
        ingest_us: 1_767_225_600_000_000,
        batch_size: 100,
    };
    let table = TableRef::of(&bronze);
    let source = SourceNode::new(SourceSpec::Landing(Box::new(scan))).unwrap();
    let plan = TableWriteNode::new(source.into_plan(), Arc::new(table.clone()), 4096);
    (plan.into_plan(), table)
}

#[tokio::test]
async fn a_landing_write_round_trips_and_its_decoded_plan_returns_files_and_counts() {
    let f = fixture().await;
    let landing = tempfile::tempdir().unwrap();
    let (plan, table) = landing_write(&f, landing.path()).await;
    let logical = CryptolakeLogicalCodec::new(f.lake.file_io().clone());
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &logical).unwrap();
    let ctx = SessionContext::new();
    let back =
        logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &logical).unwrap();
    assert_eq!(back, plan);

    let ctx = crate::engine::engine_session(&Engine::InProcess, f.lake.file_io(), 2, 1024)
        .await
        .unwrap();
    let physical = ctx.state().create_physical_plan(&plan).await.unwrap();
    let shown = |p: &Arc<dyn ExecutionPlan>| displayable(p.as_ref()).indent(true).to_string();
    // The write sits straight on the scan (DataFusion's cooperative-scheduling wrapper
    // aside): one task per group, no repartition between.
    assert_eq!(
        shown(&physical),
        "TableWriteExec: table=bronze.trades, target_file_size=4096\n  \
         CooperativeExec\n    \
         LandingScanExec: source=trades, groups=2, files=2\n"
    );
    let codec = CryptolakePhysicalCodec::new(f.lake.file_io().clone());
    let bytes = physical_plan_to_bytes_with_extension_codec(physical.clone(), &codec).unwrap();
    let back =
        physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
    assert_eq!(shown(&back), shown(&physical));
    let rows = datafusion::physical_plan::collect(back, ctx.task_ctx())
        .await
        .unwrap();
    let written = crate::physical_plan::written_files(&table, &rows).unwrap();
    let mut per_task: Vec<(u32, u64, Option<u64>)> = written
        .iter()
        .map(|w| (w.partition, w.file.record_count(), w.records_read))
        .collect();
    per_task.sort();
    assert_eq!(per_task, [(0, 3, Some(3)), (1, 2, Some(2))]);
    assert_eq!(crate::physical_plan::records_read_total(&written), Some(5));
}

#[test]
fn a_kafka_source_round_trips_as_a_logical_plan() {
    let schema = cryptolake_catalog::layout::kafka_bronze("coinbase_trades", "trades")
        .unwrap()
        .schema()
        .unwrap();
    let scan = TopicScan {
        config: KafkaConfig::default(),
        topic: "coinbase-trades".into(),
        format: "trades".into(),
        ranges: vec![OffsetRange {
            partition: 1,
            start: 4,
            end: 9,
        }],
        schema: Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap()),
        ingest_us: 3,
        batch_size: 64,
    };
    let plan = SourceNode::new(SourceSpec::Kafka(Box::new(scan.clone())))
        .unwrap()
        .into_plan();
    let codec = CryptolakeLogicalCodec::new(FileIO::new_with_fs());
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &codec).unwrap();
    let ctx = SessionContext::new();
    let back =
        logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec).unwrap();
    assert_eq!(back, plan);
    let LogicalPlan::Extension(ext) = &back else {
        panic!("not an extension: {back}");
    };
    let node = ext.node.as_any().downcast_ref::<SourceNode>().unwrap();
    assert_eq!(node.spec, SourceSpec::Kafka(Box::new(scan)));
}

#[test]
fn a_kafka_scan_round_trips_without_its_password() {
    let config = KafkaConfig {
        brokers: "b1:9092,b2:9092".into(),
        sasl_password_env: "KAFKA_PASSWORD".into(),
        ..Default::default()
    };
    let schema = cryptolake_catalog::layout::kafka_bronze("coinbase_trades", "trades")
        .unwrap()
        .schema()
        .unwrap();
    let arrow: SchemaRef = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
    let scan = KafkaScanExec::new(TopicScan {
        config: config.clone(),
        topic: "coinbase-trades".into(),
        format: "trades".into(),
        ranges: vec![
            OffsetRange {
                partition: 0,
                start: 5,
                end: 9,
            },
            OffsetRange {
                partition: 2,
                start: 0,
                end: 3,
            },
        ],
        schema: arrow.clone(),
        ingest_us: 1_700_000_000_000_000,
        batch_size: 512,
    });
    let plan: Arc<dyn ExecutionPlan> = Arc::new(scan);
    let codec = CryptolakePhysicalCodec::new(FileIO::new_with_fs());
    let mut buf = Vec::new();
    codec.try_encode(plan.clone(), &mut buf).unwrap();
    assert_eq!(buf[0], TAG_CRYPTOLAKE);
    assert!(!String::from_utf8_lossy(&buf).contains("password\":\""));
    let ctx = SessionContext::new();
    let back = codec.try_decode(&buf, &[], &ctx.task_ctx()).unwrap();
    let back = back.as_any().downcast_ref::<KafkaScanExec>().unwrap();
    assert_eq!(back.scan().ranges, plan_ranges(&plan));
    assert_eq!(back.scan().config, config);
    assert_eq!(back.scan().schema, arrow);
    assert_eq!(back.scan().ingest_us, 1_700_000_000_000_000);
    assert_eq!(back.properties().partitioning.partition_count(), 2);
}

fn plan_ranges(plan: &Arc<dyn ExecutionPlan>) -> Vec<OffsetRange> {
    plan.as_any()
        .downcast_ref::<KafkaScanExec>()
        .unwrap()
        .scan()
        .ranges
        .clone()
}

#[test]
fn ballistas_own_nodes_are_delegated_and_tagged() {
    use ballista_core::execution_plans::UnresolvedShuffleExec;
    use datafusion::physical_plan::Partitioning;
    let schema = Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
        "a",
        arrow::datatypes::DataType::Int64,
        false,
    )]));
    let node: Arc<dyn ExecutionPlan> = Arc::new(UnresolvedShuffleExec::new(
        3,
        schema.clone(),
        Partitioning::UnknownPartitioning(4),
    ));
    let codec = CryptolakePhysicalCodec::new(FileIO::new_with_fs());
    let mut buf = Vec::new();
    codec.try_encode(node.clone(), &mut buf).unwrap();
    assert_eq!(buf[0], TAG_BALLISTA);
    let ctx = SessionContext::new();
    let back = codec.try_decode(&buf, &[], &ctx.task_ctx()).unwrap();
    let back = back
        .as_any()
        .downcast_ref::<UnresolvedShuffleExec>()
        .unwrap();
    assert_eq!(back.stage_id, 3);
    assert_eq!(back.schema(), schema);
    assert_eq!(back.properties().partitioning.partition_count(), 4);
}
