//! How specs travel inside plans: Arrow schemas in serde-encoded plan nodes, as IPC flatbuffer
//! bytes (field metadata, such as Iceberg field ids, included). Use with
//! `#[serde(with = "crate::job::wire")]`.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use serde::{Deserialize, Deserializer, Serializer};

/// An Arrow schema as IPC flatbuffer bytes.
pub fn to_bytes(schema: &Schema) -> Vec<u8> {
    arrow::ipc::convert::IpcSchemaEncoder::new()
        .schema_to_fb(schema)
        .finished_data()
        .to_vec()
}

/// The schema [`to_bytes`] encoded.
pub fn from_bytes(bytes: &[u8]) -> Result<SchemaRef, arrow::error::ArrowError> {
    let fb = arrow::ipc::root_as_schema(bytes)
        .map_err(|e| arrow::error::ArrowError::IpcError(e.to_string()))?;
    Ok(Arc::new(arrow::ipc::convert::fb_to_schema(fb)))
}

pub fn serialize<S: Serializer>(schema: &SchemaRef, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(&to_bytes(schema))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SchemaRef, D::Error> {
    let bytes = Vec::<u8>::deserialize(deserializer)?;
    from_bytes(&bytes).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn a_schema_with_field_ids_survives_json() {
        let id = HashMap::from([("PARQUET:field_id".to_string(), "7".to_string())]);
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false).with_metadata(id),
            Field::new("n", DataType::Int64, true),
        ]));
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Holder(#[serde(with = "super")] SchemaRef);
        let json = serde_json::to_string(&Holder(schema.clone())).unwrap();
        let back: Holder = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, schema);
    }
}
