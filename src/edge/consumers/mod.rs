//! Queue consumers: the Worker's entry points for batches of messages, as `endpoints` are for
//! requests. One module per queue family; a consumer acks what it stored (or found already
//! stored: messages carry an id, delivery is at least once) and retries the rest.

pub mod audit;
pub mod usage;
