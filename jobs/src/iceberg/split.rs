//! Splits record batches by a table's partition spec, column-wise.
//!
//! iceberg's `RecordBatchPartitionSplitter` turns every row's partition values into an
//! iceberg `Struct` (a heap value per row, a string cloned per row for `symbol`), hashes those
//! with SipHash, and then filters the whole batch once per partition: silver's sink spent more
//! time there than in Parquet encoding. Here the values are computed by iceberg's own
//! calculator (the spec's transforms, as arrays), rows are grouped by the values' Arrow row
//! encoding (runs of equal rows, as time-ordered input has, are grouped without hashing), each
//! group is taken from the batch once, and a partition's `Struct` is built once a group.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::row::{OwnedRow, RowConverter, SortField};
use iceberg::arrow::{PartitionValueCalculator, arrow_struct_to_literal};
use iceberg::spec::{
    Literal, PartitionKey, PartitionSpecRef, SchemaRef, StructType, TableMetadata,
};

use crate::{Error, Result};

/// Partitions in a batch up to which a row's group is found by comparing rows, not hashing.
const FEW_GROUPS: usize = 32;

/// Splits batches of one table's rows by its default partition spec.
pub struct PartitionSplitter {
    /// `None` for an unpartitioned table: every row is in the one partition.
    values: Option<Values>,
    spec: PartitionSpecRef,
    schema: SchemaRef,
}

/// How a partitioned table's rows get their partition values.
struct Values {
    calculator: PartitionValueCalculator,
    converter: RowConverter,
    partition_type: StructType,
}

impl std::fmt::Debug for PartitionSplitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionSplitter")
            .field("spec", &self.spec)
            .finish()
    }
}

impl PartitionSplitter {
    /// A splitter for the table's current schema and default spec.
    pub fn new(metadata: &TableMetadata) -> Result<Self> {
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().clone();
        if spec.is_unpartitioned() {
            return Ok(Self {
                values: None,
                spec,
                schema,
            });
        }
        let calculator = PartitionValueCalculator::try_new(&spec, &schema)?;
        let fields = match calculator.partition_arrow_type() {
            arrow::datatypes::DataType::Struct(fields) => fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
            other => {
                return Err(Error::Internal(format!(
                    "partition values are {other}, not a struct"
                )));
            }
        };
        Ok(Self {
            values: Some(Values {
                converter: RowConverter::new(fields)?,
                partition_type: calculator.partition_type().clone(),
                calculator,
            }),
            spec,
            schema,
        })
    }

    /// The batch's rows by partition, in the order partitions first appear.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<(PartitionKey, RecordBatch)>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let Some(v) = &self.values else {
            let key = PartitionKey::new(
                self.spec.as_ref().clone(),
                self.schema.clone(),
                iceberg::spec::Struct::empty(),
            );
            return Ok(vec![(key, batch.clone())]);
        };
        let values = v.calculator.calculate(batch)?;
        let rows = v.converter.convert_columns(values.as_struct().columns())?;
        // `(first row, rows)` per partition; found by comparing first rows while there are
        // few (a batch of silver rows holds about as many partitions as symbols), by hash
        // past that.
        let mut groups: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut by_row: HashMap<OwnedRow, usize, foldhash::fast::RandomState> = HashMap::default();
        let mut current = 0;
        for i in 0..rows.num_rows() {
            let row = rows.row(i);
            if i > 0 && row == rows.row(i - 1) {
                groups[current].1.push(i as u32);
                continue;
            }
            let found = if groups.len() <= FEW_GROUPS {
                groups.iter().position(|(first, _)| rows.row(*first) == row)
            } else {
                by_row.get(&row.owned()).copied()
            };
            current = match found {
                Some(g) => g,
                None => {
                    groups.push((i, Vec::new()));
                    if groups.len() > FEW_GROUPS {
                        if by_row.is_empty() {
                            for (g, (first, _)) in groups.iter().enumerate() {
                                by_row.insert(rows.row(*first).owned(), g);
                            }
                        } else {
                            by_row.insert(row.owned(), groups.len() - 1);
                        }
                    }
                    groups.len() - 1
                }
            };
            groups[current].1.push(i as u32);
        }
        groups
            .into_iter()
            .map(|(first, rows)| {
                let key = self.key(v, &values, first)?;
                let part = if rows.len() == batch.num_rows() {
                    batch.clone()
                } else {
                    take_record_batch(batch, &UInt32Array::from(rows))?
                };
                Ok((key, part))
            })
            .collect()
    }

    /// The partition key of row `row` of the computed partition values.
    fn key(&self, v: &Values, values: &ArrayRef, row: usize) -> Result<PartitionKey> {
        let one = values.slice(row, 1);
        let literal = arrow_struct_to_literal(&one, &v.partition_type)?
            .into_iter()
            .next()
            .flatten();
        match literal {
            Some(Literal::Struct(data)) => Ok(PartitionKey::new(
                self.spec.as_ref().clone(),
                self.schema.clone(),
                data,
            )),
            _ => Err(Error::Internal(
                "a row's partition values are not a struct".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::compute::concat_batches;
    use iceberg::arrow::RecordBatchPartitionSplitter;
    use iceberg::spec::TableMetadataBuilder;

    use super::*;

    /// silver.quotes' metadata (identity symbol, day of event_time).
    fn metadata() -> TableMetadata {
        let mut creation = cryptolake_catalog::layout::silver_quotes()
            .creation()
            .unwrap();
        creation.location = Some("file:///tmp/quotes".into());
        TableMetadataBuilder::from_table_creation(creation)
            .unwrap()
            .build()
            .unwrap()
            .metadata
    }

    /// `(symbol, event time)` rows under the table's Arrow schema, other columns null.
    fn batch_of(metadata: &TableMetadata, rows: &[(String, i64)]) -> RecordBatch {
        let schema = iceberg::arrow::schema_to_arrow_schema(metadata.current_schema()).unwrap();
        // Nullable, so the columns the split does not read can be null (field ids stay).
        let fields: Vec<arrow::datatypes::Field> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        let columns = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "symbol" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
                    "event_time" => Arc::new(TimestampMicrosecondArray::from_iter_values(
                        rows.iter().map(|r| r.1),
                    )),
                    _ => arrow::array::new_null_array(f.data_type(), rows.len()),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    const DAY: i64 = 86_400_000_000;

    /// Rows of three partitions, two of them interleaved.
    fn batch(metadata: &TableMetadata) -> RecordBatch {
        let rows = [
            ("BTC-USD", 0),
            ("BTC-USD", 1),
            ("ETH-USD", 2),
            ("BTC-USD", DAY),
        ];
        batch_of(metadata, &rows.map(|(s, t)| (s.to_string(), t)))
    }

    fn symbols(b: &RecordBatch) -> Vec<String> {
        let c = b.column_by_name("symbol").unwrap().as_string::<i32>();
        c.iter().map(|s| s.unwrap().to_string()).collect()
    }

    /// Our split has the same partitions, each with the same rows, as iceberg's.
    fn same_as_icebergs(metadata: &TableMetadata, batch: &RecordBatch) -> Vec<RecordBatch> {
        let ours = PartitionSplitter::new(metadata)
            .unwrap()
            .split(batch)
            .unwrap();
        let theirs = RecordBatchPartitionSplitter::try_new_with_computed_values(
            metadata.current_schema().clone(),
            metadata.default_partition_spec().clone(),
        )
        .unwrap()
        .split(batch)
        .unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (key, rows) in &ours {
            let (_, same) = theirs.iter().find(|(k, _)| k.data() == key.data()).unwrap();
            assert_eq!(rows, same);
        }
        ours.into_iter().map(|(_, b)| b).collect()
    }

    #[test]
    fn splits_as_icebergs_own_splitter_does_in_order_of_first_row() {
        let metadata = metadata();
        let batch = batch(&metadata);
        let parts = same_as_icebergs(&metadata, &batch);
        let parts: Vec<Vec<String>> = parts.iter().map(symbols).collect();
        assert_eq!(
            parts,
            [vec!["BTC-USD"; 2], vec!["ETH-USD"], vec!["BTC-USD"]]
        );
    }

    #[test]
    fn many_partitions_interleaved_split_exactly() {
        let metadata = metadata();
        // 100 symbols, each in two days, rows cycling through all 200 partitions three times.
        let rows: Vec<(String, i64)> = (0..600)
            .map(|i| (format!("S{}-USD", i % 100), (i / 100 % 2) * DAY + i))
            .collect();
        let batch = batch_of(&metadata, &rows);
        let parts = same_as_icebergs(&metadata, &batch);
        assert_eq!(parts.len(), 200);
        assert!(parts.iter().all(|p| p.num_rows() == 3));
        assert_eq!(symbols(&parts[0]), ["S0-USD"; 3]);
        assert_eq!(symbols(&parts[199]), ["S99-USD"; 3]);
        let all = concat_batches(&batch.schema(), &parts).unwrap();
        assert_eq!(all.num_rows(), 600);
    }

    #[test]
    fn one_partition_is_the_batch_itself() {
        let metadata = metadata();
        let batch = batch(&metadata).slice(0, 2);
        let parts = PartitionSplitter::new(&metadata)
            .unwrap()
            .split(&batch)
            .unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1, batch);
    }
}
