//! Sources: landing files (local directories) and their record formats.

pub mod bronze;
pub mod landing;
pub mod records;
