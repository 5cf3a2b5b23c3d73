//! The planner for cryptolake's logical nodes: each becomes its physical node, with tables
//! opened through the FileIO of the process that plans (the driver in-process, the scheduler
//! on a cluster).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::Result as DfResult;
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use iceberg::io::FileIO;

use super::common::{df_err, one_input};
use super::silver_normalize::{SilverNormalizeExec, SilverNormalizeNode};
use super::silver_sink::{SilverSinkExec, SilverSinkNode};
use super::source::SourceNode;
use super::table_write::{TableWriteExec, TableWriteNode};

/// Plans cryptolake's logical nodes; opens tables with the FileIO of the process it runs in.
#[derive(Debug, Clone)]
pub struct CryptolakePlanner {
    file_io: FileIO,
}

impl CryptolakePlanner {
    pub fn new(file_io: FileIO) -> Self {
        Self { file_io }
    }
}

#[async_trait]
impl ExtensionPlanner for CryptolakePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _state: &SessionState,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let any = node.as_any();
        let input = || one_input(node.name(), physical_inputs.to_vec());
        if let Some(source) = any.downcast_ref::<SourceNode>() {
            return Ok(Some(source.spec.exec()));
        }
        if let Some(write) = any.downcast_ref::<TableWriteNode>() {
            let table = write.table.open(self.file_io.clone()).map_err(df_err)?;
            return Ok(Some(Arc::new(TableWriteExec::new(
                input()?,
                write.table.clone(),
                table,
                write.target_file_size,
                write.single_task,
            ))));
        }
        if let Some(n) = any.downcast_ref::<SilverNormalizeNode>() {
            return Ok(Some(Arc::new(SilverNormalizeExec::new(
                input()?,
                n.spec.clone(),
            ))));
        }
        if let Some(n) = any.downcast_ref::<SilverSinkNode>() {
            let exec = SilverSinkExec::new(input()?, n.spec.clone(), &self.file_io)?;
            return Ok(Some(Arc::new(exec)));
        }
        Ok(None)
    }
}

#[async_trait]
impl QueryPlanner for CryptolakePlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &SessionState,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(self.clone())])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}
