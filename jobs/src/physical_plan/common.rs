//! What every cryptolake plan node shares, written once: plan properties, the one-input check,
//! logical-node identity, the records-read metric scans report and the write node returns,
//! the writer's identity, and the size packer that makes task groups.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result as DfResult};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_plan::{ExecutionPlan, Partitioning, PlanProperties};

use crate::Error;

/// Equality, order and hashing of a logical node with one `input`, by its `key()` (what its
/// spec is) and its input; ordered by the key alone. DataFusion needs all three of every
/// `UserDefinedLogicalNodeCore`.
macro_rules! keyed_node_identity {
    ($node:ty) => {
        impl PartialEq for $node {
            fn eq(&self, other: &Self) -> bool {
                self.key() == other.key() && self.input == other.input
            }
        }

        impl Eq for $node {}

        impl PartialOrd for $node {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                self.key().partial_cmp(&other.key())
            }
        }

        impl std::hash::Hash for $node {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.key().hash(state);
                self.input.hash(state);
            }
        }
    };
}
pub(crate) use keyed_node_identity;

/// The `UserDefinedLogicalNodeCore` methods every one-input logical node of ours answers the
/// same way: its name, its `input` field, its `schema` field and no expressions. Used inside
/// `impl UserDefinedLogicalNodeCore for ...`.
macro_rules! logical_node_common {
    ($name:literal) => {
        fn name(&self) -> &str {
            $name
        }

        fn inputs(&self) -> Vec<&datafusion::logical_expr::LogicalPlan> {
            vec![&self.input]
        }

        fn schema(&self) -> &datafusion::common::DFSchemaRef {
            &self.schema
        }

        fn expressions(&self) -> Vec<datafusion::logical_expr::Expr> {
            Vec::new()
        }
    };
}
pub(crate) use logical_node_common;

/// A logical node of ours as a plan.
pub fn into_plan(
    node: impl datafusion::logical_expr::UserDefinedLogicalNodeCore,
) -> datafusion::logical_expr::LogicalPlan {
    datafusion::logical_expr::LogicalPlan::Extension(datafusion::logical_expr::Extension {
        node: Arc::new(node),
    })
}

/// The `ExecutionPlan` methods every node of ours answers the same way: its name, itself as
/// `Any`, its `properties` field, and its children: none for a leaf (`leaf`, which also keeps
/// itself when given new children), else its `input` field (`input`). Used inside
/// `impl ExecutionPlan for ...`.
macro_rules! exec_node_common {
    ($name:literal, leaf) => {
        $crate::physical_plan::common::exec_node_common!($name);

        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            Vec::new()
        }

        fn with_new_children(
            self: std::sync::Arc<Self>,
            _children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
        ) -> datafusion::common::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
        {
            Ok(self)
        }
    };
    ($name:literal, input) => {
        $crate::physical_plan::common::exec_node_common!($name);

        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            vec![&self.input]
        }
    };
    ($name:literal) => {
        fn name(&self) -> &str {
            $name
        }

        fn as_any(&self) -> &dyn std::any::Any {
            self
        }

        fn properties(&self) -> &std::sync::Arc<datafusion::physical_plan::PlanProperties> {
            &self.properties
        }
    };
}
pub(crate) use exec_node_common;

/// Our error inside DataFusion's, with its kind; [`Error::from_datafusion`] takes it out
/// again, in-process or from a cluster.
pub fn df_err(e: Error) -> DataFusionError {
    e.into_datafusion()
}

/// Properties of a bounded node with `partitions` output partitions (at least one).
pub fn plan_properties(
    schema: SchemaRef,
    partitions: usize,
    emission: EmissionType,
) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions.max(1)),
        emission,
        Boundedness::Bounded,
    ))
}

/// The single input of a one-input node (a logical plan or a physical child), for
/// `with_exprs_and_inputs` and `with_new_children`.
pub fn one_input<T>(node: &str, children: Vec<T>) -> DfResult<T> {
    let mut children = children.into_iter();
    match (children.next(), children.next()) {
        (Some(input), None) => Ok(input),
        _ => Err(DataFusionError::Plan(format!(
            "{node} needs exactly one input"
        ))),
    }
}

/// A static Arrow schema as DataFusion's logical schema.
pub fn df_schema(schema: &Schema) -> DFSchemaRef {
    Arc::new(DFSchema::try_from(schema.clone()).expect("static schemas are valid"))
}

/// The metric a source scan counts its records in, per plan partition (shown by
/// `EXPLAIN ANALYZE`).
pub const RECORDS_READ: &str = "records_read";

/// The records-read counter of one plan partition of a scan.
pub fn records_read_counter(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Count {
    MetricBuilder::new(metrics).counter(RECORDS_READ, partition)
}

/// Source records a plan partition read, from the first node down a chain of single inputs
/// (DataFusion puts a `CooperativeExec` over leaf scans) that reports [`RECORDS_READ`];
/// `None` when no scan below counts records.
pub fn records_read(plan: &dyn ExecutionPlan, partition: usize) -> Option<u64> {
    if let Some(metrics) = plan.metrics() {
        let counted: Vec<usize> = metrics
            .iter()
            .filter(|m| m.value().name() == RECORDS_READ)
            .filter(|m| m.partition() == Some(partition))
            .map(|m| m.value().as_usize())
            .collect();
        let reports = metrics.iter().any(|m| m.value().name() == RECORDS_READ);
        if reports {
            return Some(counted.iter().sum::<usize>() as u64);
        }
    }
    match plan.children().as_slice() {
        [only] => records_read(only.as_ref(), partition),
        _ => None,
    }
}

/// `host:pid` of this process: who wrote a file.
pub fn writer_id() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// Splits items into at most `n` groups of about equal total `size` (largest first, each to
/// the lightest group so far).
pub fn pack_by_size<T>(mut items: Vec<T>, n: usize, size: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
    let n = n.min(items.len()).max(1);
    items.sort_by_key(|t| std::cmp::Reverse(size(t)));
    let mut groups: Vec<(u64, Vec<T>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for item in items {
        let lightest = groups
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("n >= 1");
        lightest.0 += size(&item);
        lightest.1.push(item);
    }
    groups.into_iter().map(|(_, g)| g).collect()
}
