//! The typed calls to each Durable Object kind: how an object is named and reached lives here and
//! nowhere else. Calls use only the runtime layer.

pub mod audit;
pub mod grants;
pub mod limits;
pub mod links;
pub mod registry;
pub mod replay;
pub mod usage;
pub mod users;
