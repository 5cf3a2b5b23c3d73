//! Reading Kafka topics with rskafka, a pure-Rust client: explicit offsets per partition and no
//! consumer-group machinery, which is what "available now" needs. The table holds the offsets;
//! a run reads fixed `[start, end)` ranges.
//!
//! [`crate::physical_plan::KafkaScanExec`] is a DataFusion node with one plan partition per
//! Kafka partition, each read by a [`PartitionReader`]. Every message becomes at least
//! one bronze row: its value's JSON records, or one row with only `_raw` set when the value is
//! not usable JSON (silver quarantines it with the reason), so no message is ever dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use cryptolake_catalog::layout::{self, KAFKA_META};
use datafusion::physical_plan::metrics::Count;
use rskafka::BackoffConfig;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::RecordAndOffset;
use serde::Serialize;

use super::bronze::BronzeBuilder;
use super::kafka_config::KafkaConfig;
use super::landing::split_values;
use super::records::{Record, RecordDecoder};
use crate::{Error, Result};

/// Bytes asked for per fetch: large enough to amortise round trips, small enough that a task's
/// memory stays bounded whatever the backlog.
const FETCH_MAX_BYTES: i32 = 4 * 1024 * 1024;

fn kafka_err(context: impl fmt::Display, e: rskafka::client::error::Error) -> Error {
    Error::Kafka(format!("{context}: {e}"))
}

/// Connects to the brokers with the config's TLS and SASL settings. Requests retry an
/// unreachable broker for `timeout_secs`, then fail.
pub async fn connect(config: &KafkaConfig) -> Result<Client> {
    let backoff = BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        base: 2.0,
        deadline: Some(Duration::from_secs(config.timeout_secs)),
    };
    let mut builder = ClientBuilder::new(config.broker_list())
        .client_id(config.client_id.as_str())
        .backoff_config(backoff);
    if config.uses_tls() {
        builder = builder.tls_config(tls_config(config)?);
    }
    if let Some(sasl) = config.sasl()? {
        let credentials = Credentials::new(sasl.username, sasl.password);
        builder = builder.sasl_config(match sasl.mechanism.as_str() {
            "PLAIN" => SaslConfig::Plain(credentials),
            "SCRAM-SHA-256" => SaslConfig::ScramSha256(credentials),
            _ => SaslConfig::ScramSha512(credentials),
        });
    }
    builder
        .build()
        .await
        .map_err(|e| kafka_err(format_args!("connecting to {}", config.brokers), e))
}

/// TLS with the configured CA bundle, or the system's roots.
fn tls_config(config: &KafkaConfig) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &config.ssl_ca_location {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::Usage(format!("kafka.ssl_ca_location {path}: {e}")))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| Error::Usage(format!("kafka.ssl_ca_location {path}: {e}")))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    // Both ring and aws-lc-rs are linked (rskafka, the AWS SDK): name the provider.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("kafka TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(tls))
}

/// A partition's offsets now: the first one retention kept, and the high watermark.
pub async fn partition_offsets(client: &Client, topic: &str, partition: i32) -> Result<(i64, i64)> {
    let pc = partition_client(client, topic, partition).await?;
    let earliest = pc
        .get_offset(OffsetAt::Earliest)
        .await
        .map_err(|e| kafka_err(format_args!("{topic}/{partition}: earliest offset"), e))?;
    let latest = pc
        .get_offset(OffsetAt::Latest)
        .await
        .map_err(|e| kafka_err(format_args!("{topic}/{partition}: latest offset"), e))?;
    Ok((earliest, latest))
}

async fn partition_client(client: &Client, topic: &str, partition: i32) -> Result<PartitionClient> {
    client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .map_err(|e| kafka_err(format_args!("{topic}/{partition}"), e))
}

/// The partitions of every topic on the brokers.
pub async fn list_topics(client: &Client) -> Result<BTreeMap<String, Vec<i32>>> {
    let topics = client
        .list_topics()
        .await
        .map_err(|e| kafka_err("listing topics", e))?;
    Ok(topics
        .into_iter()
        .map(|t| (t.name, t.partitions.into_iter().collect()))
        .collect())
}

/// Produces `messages` to `topic`, round-robin over its partitions, a thousand at a time.
/// Returns how many went to each partition. (`gen --kafka`: the test harness's producer is an
/// independent client, so this never checks itself.)
pub async fn produce(
    config: &KafkaConfig,
    topic: &str,
    messages: &[String],
) -> Result<BTreeMap<i32, u64>> {
    produce_from(config, topic, messages, 0).await
}

/// [`produce`], the round-robin starting at message number `first` (a poller producing one
/// answer at a time spreads them over the partitions).
pub async fn produce_from(
    config: &KafkaConfig,
    topic: &str,
    messages: &[String],
    first: usize,
) -> Result<BTreeMap<i32, u64>> {
    let client = connect(config).await?;
    let partitions = list_topics(&client)
        .await?
        .remove(topic)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Error::Kafka(format!(
                "topic {topic} does not exist on {}",
                config.brokers
            ))
        })?;
    let mut per_partition: Vec<Vec<rskafka::record::Record>> = vec![Vec::new(); partitions.len()];
    let now = chrono::Utc::now();
    for (i, m) in messages.iter().enumerate() {
        per_partition[(first + i) % partitions.len()].push(rskafka::record::Record {
            key: None,
            value: Some(m.as_bytes().to_vec()),
            headers: BTreeMap::new(),
            timestamp: now,
        });
    }
    let mut sent = BTreeMap::new();
    for (&partition, records) in partitions.iter().zip(per_partition) {
        let pc = partition_client(&client, topic, partition).await?;
        sent.insert(partition, records.len() as u64);
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<_> = records.by_ref().take(1000).collect();
            pc.produce(
                chunk,
                rskafka::client::partition::Compression::NoCompression,
            )
            .await
            .map_err(|e| kafka_err(format_args!("{topic}/{partition}: produce"), e))?;
        }
    }
    Ok(sent)
}

/// Offsets `[start, end)` of one partition to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OffsetRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// What a topic scan reads and how its rows look. Travels inside plans as JSON: the config
/// carries no secret (the password is read from the environment where the scan runs).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TopicScan {
    pub config: KafkaConfig,
    pub topic: String,
    /// The values' record format (a landing source's fields).
    pub format: String,
    /// One plan partition per range.
    pub ranges: Vec<OffsetRange>,
    /// The bronze table's Arrow schema ([`layout::kafka_bronze`]).
    #[serde(with = "crate::job::wire")]
    pub schema: SchemaRef,
    pub ingest_us: i64,
    pub batch_size: usize,
}

/// Reads one partition's range in fetches, yielding batches of about `batch_size` rows and
/// counting the messages it read in `messages`.
pub struct PartitionReader {
    scan: TopicScan,
    range: OffsetRange,
    next: i64,
    client: Option<PartitionClient>,
    rows: MessageRows,
    messages: Count,
}

impl PartitionReader {
    pub fn new(scan: TopicScan, range: OffsetRange, messages: Count) -> Self {
        let rows = MessageRows::new(&scan, range.partition);
        Self {
            scan,
            range,
            next: range.start,
            client: None,
            rows,
            messages,
        }
    }

    /// The next batch, `None` once the range is read.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while self.next < self.range.end && self.rows.len() < self.scan.batch_size {
            let records = self.fetch().await?;
            if records.is_empty() {
                // Only a control record (a transaction marker) or a compacted gap sits here:
                // it holds no message, so step over it.
                self.next += 1;
                continue;
            }
            for r in records {
                if r.offset >= self.range.end {
                    self.next = self.range.end;
                    break;
                }
                self.rows.push(&r);
                self.messages.add(1);
                self.next = r.offset + 1;
            }
        }
        if self.rows.len() == 0 {
            return Ok(None);
        }
        self.rows.finish().map(Some)
    }

    async fn fetch(&mut self) -> Result<Vec<RecordAndOffset>> {
        let (topic, partition) = (&self.scan.topic, self.range.partition);
        // Each task connects on its own: on a cluster, tasks run in different processes.
        let pc = match self.client.take() {
            Some(pc) => pc,
            None => partition_client(&connect(&self.scan.config).await?, topic, partition).await?,
        };
        let fetched = pc
            .fetch_records(self.next, 1..FETCH_MAX_BYTES, 500)
            .await
            .map_err(|e| {
                kafka_err(
                    format_args!("{topic}/{partition}: fetch at {}", self.next),
                    e,
                )
            });
        self.client = Some(pc);
        let (records, _high_watermark) = fetched?;
        Ok(records)
    }
}

/// Turns messages into bronze rows: the value's records plus the Kafka columns.
struct MessageRows {
    bronze: BronzeBuilder,
    decoder: RecordDecoder,
    schema: SchemaRef,
    file: String,
    partition: i32,
    partitions: Int32Builder,
    offsets: Int64Builder,
    timestamps: TimestampMicrosecondBuilder,
    keys: StringBuilder,
    headers: StringBuilder,
    len: usize,
}

impl MessageRows {
    fn new(scan: &TopicScan, partition: i32) -> Self {
        // The bronze builder takes every column but the Kafka ones; `finish` puts them back in
        // the table's order (`_extra` comes after them, and is absent from older tables).
        let bronze_schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            scan.schema
                .fields()
                .iter()
                .filter(|f| !is_kafka_column(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
            scan.schema.metadata().clone(),
        ));
        let fields = layout::bronze_source_fields(&scan.format).unwrap_or(&[]);
        Self {
            bronze: BronzeBuilder::new(bronze_schema, fields, scan.ingest_us),
            decoder: RecordDecoder::new(&scan.format, fields),
            schema: scan.schema.clone(),
            file: format!("{}/{partition}", scan.topic),
            partition,
            partitions: Int32Builder::new(),
            offsets: Int64Builder::new(),
            timestamps: TimestampMicrosecondBuilder::new(),
            keys: StringBuilder::new(),
            headers: StringBuilder::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Appends one message: one row per record of its value, at least one.
    fn push(&mut self, message: &RecordAndOffset) {
        let record = &message.record;
        let value = record.value.as_deref().unwrap_or_default();
        let mut records: Vec<Record<'_>> = Vec::new();
        for piece in split_values(value) {
            self.decoder.decode(&piece, &mut records);
        }
        if records.is_empty() {
            // A null, empty or `[]` value: kept as raw text for silver to quarantine.
            records.push(Record::Raw(String::from_utf8_lossy(value)));
        }
        let key = record.key.as_deref().map(String::from_utf8_lossy);
        let headers = (!record.headers.is_empty()).then(|| {
            let map: serde_json::Map<String, serde_json::Value> = record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into()))
                .collect();
            serde_json::Value::Object(map).to_string()
        });
        let timestamp_us = record.timestamp.timestamp_micros();
        for r in &records {
            self.bronze.push(&self.file, message.offset, r);
            self.partitions.append_value(self.partition);
            self.offsets.append_value(message.offset);
            self.timestamps.append_value(timestamp_us);
            self.keys.append_option(key.as_deref());
            self.headers.append_option(headers.as_deref());
            self.len += 1;
        }
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let bronze = self.bronze.finish()?;
        let mut kafka: Vec<ArrayRef> = vec![
            Arc::new(self.partitions.finish()),
            Arc::new(self.offsets.finish()),
            Arc::new(self.timestamps.finish()),
            Arc::new(self.keys.finish()),
            Arc::new(self.headers.finish()),
        ];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let name = field.name();
            let column = match KAFKA_META.iter().position(|c| c.name == name) {
                Some(i) => std::mem::replace(
                    &mut kafka[i],
                    arrow::array::new_null_array(field.data_type(), 0),
                ),
                None => bronze
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("no bronze column {name}")))?,
            };
            columns.push(column);
        }
        self.len = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn is_kafka_column(name: &str) -> bool {
    KAFKA_META.iter().any(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::Int64Type;
    use chrono::TimeZone;
    use rskafka::record::Record as KafkaRecord;

    use super::*;

    fn scan() -> TopicScan {
        let layout = layout::kafka_bronze("coinbase_trades", "trades").unwrap();
        let schema = iceberg::arrow::schema_to_arrow_schema(&layout.schema().unwrap()).unwrap();
        TopicScan {
            config: KafkaConfig::default(),
            topic: "coinbase-trades".into(),
            format: "trades".into(),
            ranges: vec![OffsetRange {
                partition: 2,
                start: 0,
                end: 10,
            }],
            schema: Arc::new(schema),
            ingest_us: 7,
            batch_size: 100,
        }
    }

    fn message(offset: i64, value: Option<&str>) -> RecordAndOffset {
        RecordAndOffset {
            record: KafkaRecord {
                key: Some(b"BTC".to_vec()),
                value: value.map(|v| v.as_bytes().to_vec()),
                headers: [("source".to_string(), b"sim".to_vec())].into(),
                timestamp: chrono::Utc.timestamp_millis_opt(1_767_225_600_123).unwrap(),
            },
            offset,
        }
    }

    #[test]
    fn every_message_becomes_at_least_one_row_with_its_kafka_columns() {
        let scan = scan();
        let mut rows = MessageRows::new(&scan, 2);
        rows.push(&message(
            40,
            Some(r#"{"trade_id":"t1","symbol":"BTC","price":43000.5}"#),
        ));
        rows.push(&message(41, Some("not json")));
        rows.push(&message(42, None));
        rows.push(&message(
            43,
            Some(r#"[{"trade_id":"t2"},{"trade_id":"t3"}]"#),
        ));
        assert_eq!(rows.len(), 5);
        let batch = rows.finish().unwrap();
        let text = |name: &str, row: usize| {
            let c = batch.column_by_name(name).unwrap().as_string::<i32>();
            c.is_valid(row).then(|| c.value(row).to_string())
        };
        assert_eq!(text("trade_id", 0).as_deref(), Some("t1"));
        assert_eq!(text("price", 0).as_deref(), Some("43000.5"));
        assert_eq!(text("_raw", 1).as_deref(), Some("not json"));
        assert_eq!(text("_raw", 2).as_deref(), Some(""));
        assert_eq!(text("trade_id", 4).as_deref(), Some("t3"));
        assert_eq!(text("_file", 0).as_deref(), Some("coinbase-trades/2"));
        assert_eq!(text("_kafka_key", 0).as_deref(), Some("BTC"));
        assert_eq!(
            text("_kafka_headers", 0).as_deref(),
            Some(r#"{"source":"sim"}"#)
        );
        let offsets = batch
            .column_by_name("_kafka_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(offsets, &Int64Array::from(vec![40, 41, 42, 43, 43]));
        let record = batch
            .column_by_name("_record")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(record, offsets);
        let ts = batch.column_by_name("_kafka_timestamp").unwrap();
        assert_eq!(
            ts.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
            1_767_225_600_123_000
        );
        assert_eq!(rows.len(), 0);
    }
}
