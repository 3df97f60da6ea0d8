//! Records and storage contracts: what lives where, what must be atomic, what may be stale.
//!
//! - The partner registry's source of truth is the `Registry` Durable Object (SQLite): admin
//!   writes are serialized there, so "one origin, one partner" holds under concurrent writes.
//! - The edge reads a published copy in KV (`PARTNERS`): `origin:{origin}` → [`GateEntry`],
//!   `partner:{id}` → [`Partner`]. KV is eventually consistent (up to ~60 s between locations), so
//!   nothing that must be used once or atomically is ever decided from KV.
//! - Publication goes through an outbox in the same SQLite transaction as the change: a KV write
//!   that fails is retried (on the next command and by an alarm) until it lands.
//!
//! [`GateEntry`]: crate::protocol::partner::GateEntry
//! [`Partner`]: crate::protocol::partner::Partner

pub mod audit;
pub mod grants;
pub mod limits;
pub mod links;
pub mod registry;
pub mod replay;
pub mod usage;
pub mod users;
