//! The `RateLimiter` Durable Object: one window counter per key (or shard of a key), handing out
//! leases, and forgetting the counter once its windows have passed.

use crate::edge::rt::{clock, objects};
use crate::protocol::error::ApiError;
use crate::protocol::ratelimit::Counter;
use crate::store::limits::{GiveBack, Granted, LimitCommand, LimitHandler, Take};
use std::cell::{Cell, RefCell};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

/// The `RateLimiter` Durable Object: one counter (one row that cannot grow), kept in memory and
/// in storage (so an object that is evicted and recreated within a window does not start the
/// count again), and an alarm at the end of the last window it counts, which deletes it: the
/// object of a key never used again holds nothing.
#[durable_object(alarm)]
pub struct RateLimiter {
    state: State,
    counter: RefCell<Option<Counter>>,
    /// The end the alarm is set for, as far as this instance knows.
    alarm_ms: Cell<Option<u64>>,
}

const COUNTER: &str = "counter";

fn storage_err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("limiter storage: {e}"))
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter {
            state,
            counter: RefCell::new(None),
            alarm_ms: Cell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve_commands(req, "rate limiter", |cmd: LimitCommand| self.handle(cmd)).await
    }

    /// The counted windows have ended: the counter goes. If a take moved the counter on since
    /// the alarm was set, the alarm is set again for the new end instead.
    async fn alarm(&self) -> Result<Response> {
        let loaded = *self.counter.borrow();
        let counter = match loaded {
            Some(c) => Some(c),
            None => self.state.storage().get::<Counter>(COUNTER).await?,
        };
        let now = clock::now_ms();
        match counter {
            Some(c) if c.ends_ms() > now => {
                self.alarm_ms.set(None);
                self.set_alarm(c.ends_ms())
                    .await
                    .map_err(|e| worker::Error::RustError(e.description))?;
            }
            _ => {
                // A failure is an error, so the runtime tries the alarm again.
                self.state.storage().delete_all().await?;
                *self.counter.borrow_mut() = None;
                self.alarm_ms.set(None);
            }
        }
        Response::ok("")
    }
}

impl LimitHandler for RateLimiter {
    async fn take(
        &self,
        Take {
            window,
            want,
            ahead,
        }: Take,
    ) -> std::result::Result<Granted, ApiError> {
        self.update(|counter| {
            let (n, ahead_n) = counter.take_ahead(window, want, ahead);
            Granted { n, ahead_n }
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
    /// Applies `change` to the counter, stored (with its alarm) before the answer goes out.
    async fn update<T>(
        &self,
        change: impl FnOnce(&mut Counter) -> T,
    ) -> std::result::Result<T, ApiError> {
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
        // Set once a window (and again by an instance that does not know it was set).
        if self.alarm_ms.get() != Some(counter.ends_ms()) {
            self.set_alarm(counter.ends_ms()).await?;
        }
        Ok(reply)
    }

    async fn set_alarm(&self, at_ms: u64) -> std::result::Result<(), ApiError> {
        let offset_ms = i64::try_from(at_ms)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(clock::now_ms()).unwrap_or(0))
            .max(1);
        self.state
            .storage()
            .set_alarm(offset_ms)
            .await
            .map_err(storage_err)?;
        self.alarm_ms.set(Some(at_ms));
        Ok(())
    }
}
