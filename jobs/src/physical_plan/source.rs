//! Bronze sources as a logical leaf: [`SourceNode`] plans into
//! [`super::LandingScanExec`] (one task per group of whole landing files) or
//! [`super::KafkaScanExec`] (one task per Kafka partition range). Both travel to a cluster as
//! JSON specs without secrets.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::{DFSchema, DFSchemaRef, Result as DfResult};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::ExecutionPlan;
use serde::{Deserialize, Serialize};

use super::kafka_scan::KafkaScanExec;
use super::landing_scan::LandingScanExec;
use crate::sources::kafka::TopicScan;
use crate::sources::landing::LandingScan;
use crate::{Error, Result};

/// What a source node reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceSpec {
    Landing(Box<LandingScan>),
    Kafka(Box<TopicScan>),
}

impl SourceSpec {
    fn schema(&self) -> &SchemaRef {
        match self {
            SourceSpec::Landing(s) => &s.schema,
            SourceSpec::Kafka(s) => &s.schema,
        }
    }

    /// The physical scan.
    pub fn exec(&self) -> Arc<dyn ExecutionPlan> {
        match self {
            SourceSpec::Landing(s) => Arc::new(LandingScanExec::new((**s).clone())),
            SourceSpec::Kafka(s) => Arc::new(KafkaScanExec::new(s.as_ref().clone())),
        }
    }
}

/// A bronze source as a logical leaf.
#[derive(Debug, Clone)]
pub struct SourceNode {
    pub spec: SourceSpec,
    /// The spec's JSON: what equality, order and hashing compare.
    key: String,
    schema: DFSchemaRef,
}

impl SourceNode {
    pub fn new(spec: SourceSpec) -> Result<Self> {
        let key = serde_json::to_string(&spec)
            .map_err(|e| Error::Internal(format!("source spec: {e}")))?;
        let schema = Arc::new(DFSchema::try_from(spec.schema().as_ref().clone())?);
        Ok(Self { spec, key, schema })
    }

    pub fn into_plan(self) -> LogicalPlan {
        super::common::into_plan(self)
    }
}

impl PartialEq for SourceNode {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for SourceNode {}

impl PartialOrd for SourceNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.key.partial_cmp(&other.key)
    }
}

impl Hash for SourceNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl UserDefinedLogicalNodeCore for SourceNode {
    fn name(&self) -> &str {
        "Source"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.spec {
            SourceSpec::Landing(s) => write!(f, "Source: landing={}", s.source),
            SourceSpec::Kafka(s) => write!(f, "Source: topic={}", s.topic),
        }
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use cryptolake_catalog::layout;

    use super::*;
    use crate::sources::landing::LandingFile;

    fn scan(files: &[&str], ingest_us: i64) -> SourceSpec {
        let table = layout::bronze("trades").unwrap().schema().unwrap();
        SourceSpec::Landing(Box::new(LandingScan {
            landing: crate::job::landing::Landing::S3 {
                bucket: "lake".into(),
                prefix: "raw".into(),
                settings: Default::default(),
            },
            source: "trades".into(),
            groups: vec![
                files
                    .iter()
                    .map(|f| LandingFile {
                        rel_path: f.to_string(),
                        location: format!("raw/trades/{f}"),
                        size: 10,
                        version: "\"etag\"".into(),
                    })
                    .collect(),
            ],
            schema: Arc::new(iceberg::arrow::schema_to_arrow_schema(&table).unwrap()),
            ingest_us,
            batch_size: 2,
        }))
    }

    fn hash(node: &SourceNode) -> u64 {
        let mut h = DefaultHasher::new();
        node.hash(&mut h);
        h.finish()
    }

    #[test]
    fn nodes_are_equal_exactly_when_their_specs_are() {
        // Built twice from equal specs (not clones of one node): equal, with equal hashes.
        let a = SourceNode::new(scan(&["a.json", "b.json"], 5)).unwrap();
        let b = SourceNode::new(scan(&["a.json", "b.json"], 5)).unwrap();
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        // Another file, or another ingest time: another node.
        for other in [scan(&["a.json"], 5), scan(&["a.json", "b.json"], 6)] {
            let c = SourceNode::new(other).unwrap();
            assert_ne!(a, c);
            assert_ne!(hash(&a), hash(&c));
        }
        assert_eq!(
            UserDefinedLogicalNodeCore::schema(&a).fields().len(),
            7 + 4 + 1
        );
        let plan = a.into_plan();
        assert_eq!(plan.display().to_string(), "Source: landing=trades");
    }
}
