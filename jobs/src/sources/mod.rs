//! Sources: landing files (local directories) and their record formats, and the Kafka
//! topics' settings.

pub mod bronze;
pub mod kafka_config;
pub mod landing;
pub mod records;
