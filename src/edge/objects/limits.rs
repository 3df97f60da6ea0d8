//! The `RateLimiter` Durable Object: one window counter per key, handing out leases.

use crate::edge::rt::objects;
use crate::protocol::error::ApiError;
use crate::protocol::ratelimit::Counter;
use crate::store::limits::{GiveBack, Granted, LimitCommand, LimitHandler, Take};
use std::cell::RefCell;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

/// The `RateLimiter` Durable Object: one counter, kept in memory and in storage (so an object
/// that is evicted and recreated within a window does not start the count again).
#[durable_object(fetch)]
pub struct RateLimiter {
    state: State,
    counter: RefCell<Option<Counter>>,
}

const COUNTER: &str = "counter";

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter {
            state,
            counter: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve_commands(req, "rate limiter", |cmd: LimitCommand| self.handle(cmd)).await
    }
}

impl LimitHandler for RateLimiter {
    async fn take(&self, Take { window, want }: Take) -> std::result::Result<Granted, ApiError> {
        self.update(|counter| Granted {
            n: counter.take(window, want),
        })
        .await
    }

    async fn give_back(
        &self,
        GiveBack { window, n }: GiveBack,
    ) -> std::result::Result<(), ApiError> {
        self.update(|counter| counter.give_back(window, n)).await
    }
}

impl RateLimiter {
    /// Applies `change` to the counter, stored before the answer goes out.
    async fn update<T>(
        &self,
        change: impl FnOnce(&mut Counter) -> T,
    ) -> std::result::Result<T, ApiError> {
        let storage_err = |e: worker::Error| ApiError::unavailable(format!("limiter storage: {e}"));
        let loaded = *self.counter.borrow();
        let mut counter = match loaded {
            Some(c) => c,
            None => self
                .state
                .storage()
                .get::<Counter>(COUNTER)
                .await
                .map_err(storage_err)?
                .unwrap_or_default(),
        };
        let reply = change(&mut counter);
        // Stored before answering: a grant is never handed out twice.
        self.state
            .storage()
            .put(COUNTER, counter)
            .await
            .map_err(storage_err)?;
        *self.counter.borrow_mut() = Some(counter);
        Ok(reply)
    }
}
