//! The real services sync-server's tests and the benchmark run it against,
//! on loopback: a fresh PostgreSQL database per server ([`PgDatabase`]),
//! and Garage, the S3-compatible object store for photos ([`Garage`], one
//! per process, a [`Bucket`] per server). Test support: a service that
//! cannot be started panics with what to install.

mod garage;
mod pg;

pub use garage::{Bucket, Garage};
pub use pg::PgDatabase;
