//! The clock.

use worker::Date;

/// The one place the Worker reads the clock; everything below takes the time as a parameter.
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> u64 {
    Date::now().as_millis()
}
