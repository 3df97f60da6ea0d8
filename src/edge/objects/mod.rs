//! The Durable Object classes. Each runs in its own isolate and uses only the runtime layer: an
//! object never calls another object.

pub mod audit;
pub mod audit_buffer;
pub mod grants;
pub mod limits;
pub mod links;
pub mod registry;
pub mod replay;
pub mod usage;
pub mod users;
