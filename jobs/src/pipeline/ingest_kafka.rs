//! `ingest-kafka`: everything in the configured topics when the run starts lands in their bronze
//! tables, exactly once, with no checkpoint directory ("available now", as Spark's trigger).
//!
//! The table is the truth: each topic's next offsets per partition are a bookmark in the
//! summary of the snapshot that holds the rows (key [`crate::bookmarks::kafka_offsets_key`], carried forward by every
//! later commit). A run reads the bookmark, freezes every partition's high watermark, reads
//! `[bookmark, watermark)` of each partition as its own plan partition, writes files, and
//! commits rows and new offsets in one snapshot, requiring that the bookmark has not moved. A
//! crash before the commit leaves only unreferenced files; the next run reads the same range.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use cryptolake_catalog::SnapshotCommit;
use cryptolake_catalog::layout;
use iceberg::spec::TableMetadata;
use serde::Serialize;

use crate::bookmarks::{JOB_PROPERTY, kafka_offsets, kafka_offsets_key};
use crate::engine;
use crate::iceberg::TableRef;
use crate::iceberg::writer::arrow_schema;
use crate::job::context::JobContext;
use crate::job::fault::maybe_crash;
use crate::job::summary::{RunSummary, SourceCounts, TableRun};
use crate::physical_plan::{
    SourceNode, SourceSpec, TableWriteNode, WrittenFile, records_read_total,
};
use crate::sources::kafka::{self, OffsetRange, TopicScan};
use crate::sources::kafka_config::{KafkaConfig, OnMissingOffsets, TopicConfig};
use crate::{Error, Result};

const JOB: &str = "ingest-kafka";

/// The topic's offsets bookmark as raw text in this metadata (in the newest snapshot
/// cryptolake committed): what the commit requires unchanged.
fn current_bookmark(metadata: &TableMetadata, topic: &str) -> Result<Option<String>, String> {
    cryptolake_catalog::commit::bookmark_text(metadata, &kafka_offsets_key(topic))
}

/// One partition's part of the run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionPlan {
    pub partition: i32,
    /// The table's offset for the partition; none for a partition never read.
    pub committed: Option<i64>,
    /// The first offset retention kept.
    pub earliest: i64,
    pub start: i64,
    /// The high watermark frozen at plan time: the run reads `[start, end)`.
    pub end: i64,
    /// Messages deleted by retention before they were read (`--on-missing-offsets earliest`).
    pub skipped: i64,
}

impl PartitionPlan {
    /// Where to start, from what the table committed and what the broker still has.
    fn resolve(self, topic: &str, policy: OnMissingOffsets) -> Result<Self> {
        let (partition, earliest, end) = (self.partition, self.earliest, self.end);
        let (start, skipped) = match self.committed {
            // A partition never read (new topic or added partition) starts at its first offset.
            None => (earliest, 0),
            Some(c) if c > end => {
                return Err(Error::Kafka(format!(
                    "{topic}/{partition}: the table's offset {c} is past the end {end}: \
                     was the topic deleted and created again?"
                )));
            }
            Some(c) if c < earliest => match policy {
                OnMissingOffsets::Fail => {
                    return Err(Error::OffsetsMissing {
                        topic: topic.to_string(),
                        partition,
                        committed: c,
                        earliest,
                        missing: earliest - c,
                    });
                }
                OnMissingOffsets::Earliest => (earliest, earliest - c),
            },
            Some(c) => (c, 0),
        };
        Ok(Self {
            start,
            skipped,
            ..self
        })
    }
}

/// One topic's part of the run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TopicPlan {
    pub topic: String,
    pub table: String,
    pub format: String,
    pub partitions: Vec<PartitionPlan>,
    pub messages: i64,
    pub skipped: i64,
    /// The bookmark as planned from: the commit requires it unchanged.
    #[serde(skip)]
    bookmark: Option<String>,
    #[serde(skip)]
    committed: BTreeMap<i32, i64>,
}

impl TopicPlan {
    /// The offsets after this run: the old ones, advanced to every partition's frozen end.
    pub fn next_offsets(&self) -> BTreeMap<i32, i64> {
        let mut next = self.committed.clone();
        next.extend(self.partitions.iter().map(|p| (p.partition, p.end)));
        next
    }
}

/// The plan of an `ingest-kafka` run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IngestKafkaPlan {
    pub brokers: String,
    pub topics: Vec<TopicPlan>,
}

/// Builder for an `ingest-kafka` run.
#[derive(Debug, Clone)]
pub struct IngestKafka {
    ctx: JobContext,
    kafka: Arc<KafkaConfig>,
}

impl IngestKafka {
    pub fn new(ctx: JobContext, kafka: KafkaConfig) -> Self {
        Self {
            ctx,
            kafka: Arc::new(kafka),
        }
    }

    async fn plan_impl(&self) -> Result<IngestKafkaPlan> {
        self.kafka.validate()?;
        let client = kafka::connect(&self.kafka).await?;
        let on_brokers = kafka::list_topics(&client).await?;
        let mut topics = Vec::new();
        for t in &self.kafka.topics {
            let partitions = on_brokers.get(&t.topic).ok_or_else(|| {
                Error::Kafka(format!(
                    "topic {} does not exist on {}",
                    t.topic, self.kafka.brokers
                ))
            })?;
            topics.push(self.plan_topic(&client, t, partitions).await?);
        }
        Ok(IngestKafkaPlan {
            brokers: self.kafka.brokers.clone(),
            topics,
        })
    }

    async fn plan_topic(
        &self,
        client: &rskafka::client::Client,
        t: &TopicConfig,
        partitions: &[i32],
    ) -> Result<TopicPlan> {
        let ident = cryptolake_catalog::lake::parse_ident(&t.table())?;
        let (committed, bookmark) = match self.ctx.lake.table_if_exists(&ident).await? {
            Some(table) => kafka_offsets(&table, &t.topic)?,
            None => (BTreeMap::new(), None),
        };
        let offsets = futures::future::try_join_all(
            partitions
                .iter()
                .map(|p| kafka::partition_offsets(client, &t.topic, *p)),
        )
        .await?;
        let mut plans = Vec::new();
        for (&partition, (earliest, end)) in partitions.iter().zip(offsets) {
            let found = PartitionPlan {
                partition,
                committed: committed.get(&partition).copied(),
                earliest,
                start: earliest,
                end,
                skipped: 0,
            };
            plans.push(found.resolve(&t.topic, self.kafka.on_missing_offsets)?);
        }
        Ok(TopicPlan {
            topic: t.topic.clone(),
            table: ident.to_string(),
            format: t.format.clone(),
            messages: plans.iter().map(|p| p.end - p.start).sum(),
            skipped: plans.iter().map(|p| p.skipped).sum(),
            partitions: plans,
            bookmark,
            committed,
        })
    }

    async fn execute_impl(&self, plan: IngestKafkaPlan) -> Result<RunSummary> {
        let started = Instant::now();
        let ingest_us = chrono::Utc::now().timestamp_micros();
        let messages = plan.topics.iter().map(|t| t.messages as u64).sum();
        self.ctx.progress.start("ingest-kafka: messages", messages);
        let mut summary = RunSummary::new(JOB);
        for topic in plan.topics {
            if topic.messages == 0 && topic.skipped == 0 {
                continue;
            }
            let (counts, run) = self.ingest_topic(&topic, ingest_us).await?;
            summary.sources.insert(topic.topic.clone(), counts);
            summary.tables.insert(topic.table.clone(), run);
        }
        Ok(summary.finish(started.elapsed()))
    }

    /// Reads one topic's ranges into its bronze table and commits rows and offsets together.
    /// The scan of the plan's non-empty partition ranges.
    fn topic_scan(
        &self,
        plan: &TopicPlan,
        table: &iceberg::table::Table,
        ingest_us: i64,
    ) -> Result<TopicScan> {
        Ok(TopicScan {
            config: self.kafka.as_ref().clone(),
            topic: plan.topic.clone(),
            format: plan.format.clone(),
            ranges: plan
                .partitions
                .iter()
                .filter(|p| p.end > p.start)
                .map(|p| OffsetRange {
                    partition: p.partition,
                    start: p.start,
                    end: p.end,
                })
                .collect(),
            schema: arrow_schema(table)?,
            ingest_us,
            batch_size: self.ctx.settings.batch_size,
        })
    }

    async fn ingest_topic(
        &self,
        plan: &TopicPlan,
        ingest_us: i64,
    ) -> Result<(SourceCounts, TableRun)> {
        let ident = cryptolake_catalog::lake::parse_ident(&plan.table)?;
        let layout = layout::kafka_bronze(ident.name(), &plan.format)?;
        let table = self.ctx.lake.ensure_table(&layout).await?;
        let scan = self.topic_scan(plan, &table, ingest_us)?;
        // One task per Kafka partition, each writing its own data files.
        let session = engine::session(&self.ctx).await?;
        let table_ref = TableRef::of(&table);
        let write = TableWriteNode::new(
            SourceNode::new(SourceSpec::Kafka(Box::new(scan)))?.into_plan(),
            Arc::new(table_ref.clone()),
            self.ctx.settings.target_file_size,
        );
        let written =
            engine::write(&self.ctx.engine, &session, &table_ref, write.into_plan()).await?;
        let messages = messages_read(&plan.topic, &written)?;
        self.ctx.progress.advance(messages);
        let rows: u64 = written.iter().map(|w| w.file.record_count()).sum();
        let writers: std::collections::BTreeSet<String> =
            written.iter().map(|w| w.writer.clone()).collect();
        let data_files: Vec<iceberg::spec::DataFile> =
            written.into_iter().map(|w| w.file).collect();
        maybe_crash(JOB, "after-write");

        let files_written = data_files.len() as u64;
        let bytes_written = data_files.iter().map(|f| f.file_size_in_bytes()).sum();
        let next = serde_json::to_string(&plan.next_offsets())
            .map_err(|e| Error::Internal(format!("kafka offsets: {e}")))?;
        let commit = SnapshotCommit::append(ident)
            .add_files(data_files)
            .set_property(kafka_offsets_key(&plan.topic), next)
            .set_property(JOB_PROPERTY, JOB)
            .require(offsets_unchanged(&plan.topic, plan.bookmark.clone()));
        let outcome = self.ctx.lake.commit(&commit).await?;
        tracing::info!(
            topic = %plan.topic,
            messages,
            rows,
            skipped = plan.skipped,
            snapshot = outcome.snapshot_id,
            "kafka messages ingested"
        );
        maybe_crash(JOB, "after-commit");
        if plan.skipped > 0 {
            tracing::warn!(
                topic = %plan.topic,
                skipped = plan.skipped,
                "messages deleted by retention before they were ingested were skipped"
            );
        }
        let counts = SourceCounts {
            records: messages,
            good: rows,
            files: plan.partitions.len() as u64,
            skipped: plan.skipped as u64,
            ..Default::default()
        };
        let run = TableRun {
            rows_in: messages,
            rows_out: rows,
            files_written,
            bytes_written,
            snapshot_id: Some(outcome.snapshot_id),
            commit_attempts: outcome.attempts,
            writers,
            ..Default::default()
        };
        Ok((counts, run))
    }
}

/// The messages a write's tasks read. Every message is at least one row, so a write that wrote
/// files read messages: one that does not say how many is refused, never counted as 0.
fn messages_read(topic: &str, written: &[WrittenFile]) -> Result<u64> {
    match records_read_total(written) {
        Some(n) => Ok(n),
        None if written.is_empty() => Ok(0),
        None => Err(Error::Internal(format!(
            "{topic}: the write did not report the messages it read: refusing to commit"
        ))),
    }
}

/// The commit's requirement: the topic's offsets are still those the run planned from.
fn offsets_unchanged(topic: &str, planned: Option<String>) -> cryptolake_catalog::Requirement {
    let topic = topic.to_string();
    Arc::new(move |metadata| {
        let now = current_bookmark(metadata, &topic)?;
        if now == planned {
            Ok(())
        } else {
            Err(format!(
                "{topic}'s offsets moved from {planned:?} to {now:?}: another run committed first"
            ))
        }
    })
}

impl crate::Job for IngestKafka {
    type Plan = IngestKafkaPlan;
    const NAME: &'static str = "ingest-kafka";

    async fn plan(&self) -> Result<IngestKafkaPlan> {
        self.plan_impl().await
    }

    async fn execute(&self, plan: IngestKafkaPlan) -> Result<RunSummary> {
        self.execute_impl(plan).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic_plan(committed: &[(i32, i64)], ends: &[(i32, i64)]) -> TopicPlan {
        TopicPlan {
            topic: "t".into(),
            table: "bronze.t".into(),
            format: "trades".into(),
            partitions: ends
                .iter()
                .map(|&(partition, end)| PartitionPlan {
                    partition,
                    committed: None,
                    earliest: 0,
                    start: 0,
                    end,
                    skipped: 0,
                })
                .collect(),
            messages: 0,
            skipped: 0,
            bookmark: None,
            committed: committed.iter().copied().collect(),
        }
    }

    #[test]
    fn a_partition_starts_at_its_committed_offset_or_its_first_one() {
        let at = |committed, earliest, end| PartitionPlan {
            partition: 1,
            committed,
            earliest,
            start: earliest,
            end,
            skipped: 0,
        };
        let fail = OnMissingOffsets::Fail;
        assert_eq!(at(None, 4, 10).resolve("t", fail).unwrap().start, 4);
        assert_eq!(at(Some(6), 4, 10).resolve("t", fail).unwrap().start, 6);
        assert_eq!(at(Some(10), 4, 10).resolve("t", fail).unwrap().start, 10);
        let gone = at(Some(1), 4, 10)
            .resolve("t", fail)
            .unwrap_err()
            .to_string();
        assert!(
            gone.contains(
                "t/1: the table's offset 1 is older than the first kept offset 4: 3 messages"
            ),
            "{gone}"
        );
        let skip = at(Some(1), 4, 10)
            .resolve("t", OnMissingOffsets::Earliest)
            .unwrap();
        assert_eq!((skip.start, skip.skipped), (4, 3));
        let past = at(Some(11), 0, 10)
            .resolve("t", fail)
            .unwrap_err()
            .to_string();
        assert!(past.contains("past the end 10"), "{past}");
    }

    #[test]
    fn next_offsets_keep_partitions_not_read_and_advance_the_rest() {
        let plan = topic_plan(&[(0, 5), (7, 9)], &[(0, 12), (1, 3)]);
        let next = serde_json::to_string(&plan.next_offsets()).unwrap();
        assert_eq!(next, r#"{"0":12,"1":3,"7":9}"#);
        let back: BTreeMap<i32, i64> = serde_json::from_str(&next).unwrap();
        assert_eq!(back[&7], 9);
    }
}
