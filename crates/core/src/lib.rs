//! edgeward's pure layer: the protocol rules (`protocol`), the storage contracts (`store`), the
//! route table (`routes`) and the pages (`pages`). Nothing here does I/O, reads the clock or
//! draws randomness: time and random values are parameters. This crate does not depend on
//! `worker`, so the compiler keeps it that way. See ARCHITECTURE.md for the map.

// Outside tests, a panic is a bug: errors travel as values to one wire mapping.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::disallowed_methods
    )
)]

pub mod pages;
pub mod protocol;
pub mod routes;
pub mod store;
