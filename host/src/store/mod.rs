//! The host's durable store (redb): drivers' own state, and the front
//! ends' records beside it under namespaces no driver can name.

pub mod records;
pub mod state;
