//! silver's stage one: `SilverNormalizeNode` (logical) and `SilverNormalizeExec` turn each
//! bronze scan partition (a group of bronze files) into wide rows: quotes, trades or
//! quarantine records with their dedup fingerprint and shuffle key.

use std::fmt;
use std::sync::Arc;

use datafusion::common::{DFSchemaRef, DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{StreamExt, TryStreamExt};

use super::common::{df_err, df_schema, one_input, plan_properties};
use crate::transform::silver::stage::{NormalizeSpec, wide_schema, widen};

/// Parses and normalizes bronze rows into wide rows.
#[derive(Debug, Clone)]
pub struct SilverNormalizeNode {
    pub input: LogicalPlan,
    pub spec: NormalizeSpec,
    schema: DFSchemaRef,
}

impl SilverNormalizeNode {
    fn key(&self) -> &NormalizeSpec {
        &self.spec
    }

    pub fn new(input: LogicalPlan, spec: NormalizeSpec) -> Self {
        Self {
            input,
            spec,
            schema: df_schema(&wide_schema()),
        }
    }

    pub fn into_plan(self) -> LogicalPlan {
        super::common::into_plan(self)
    }
}

crate::physical_plan::common::keyed_node_identity!(SilverNormalizeNode);

impl UserDefinedLogicalNodeCore for SilverNormalizeNode {
    crate::physical_plan::common::logical_node_common!("SilverNormalize");

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SilverNormalize: source={}", self.spec.source)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let input = one_input("SilverNormalize", inputs)?;
        Ok(Self::new(input, self.spec.clone()))
    }
}

/// Stage one: each input partition's bronze batches become wide rows.
#[derive(Debug)]
pub struct SilverNormalizeExec {
    input: Arc<dyn ExecutionPlan>,
    spec: NormalizeSpec,
    properties: Arc<PlanProperties>,
}

impl SilverNormalizeExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, spec: NormalizeSpec) -> Self {
        let partitions = input.properties().partitioning.partition_count();
        Self {
            input,
            spec,
            properties: plan_properties(wide_schema(), partitions, EmissionType::Incremental),
        }
    }

    pub fn spec(&self) -> &NormalizeSpec {
        &self.spec
    }
}

impl DisplayAs for SilverNormalizeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SilverNormalizeExec: source={}, format={}, takes={:?}",
            self.spec.source, self.spec.format, self.spec.takes
        )
    }
}

impl ExecutionPlan for SilverNormalizeExec {
    crate::physical_plan::common::exec_node_common!("SilverNormalizeExec", input);

    // One task per bronze file group: no round-robin in front of the parse.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = one_input("SilverNormalizeExec", children)?;
        Ok(Arc::new(Self::new(input, self.spec.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let spec = self.spec.clone();
        let rows = self
            .input
            .execute(partition, context)?
            .map(move |batch| {
                let wide = widen(&spec, batch?).map_err(df_err)?;
                Ok::<_, DataFusionError>(futures::stream::iter(wide.into_iter().map(Ok)))
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(wide_schema(), rows)))
    }
}
