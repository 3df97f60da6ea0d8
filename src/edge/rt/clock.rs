//! The clock.

/// The one place the Worker reads the clock; everything below takes the time as a parameter.
/// `Date.now()` itself: no `Date` object per reading.
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> u64 {
    // Milliseconds since the epoch, a whole number well inside u64.
    js_sys::Date::now() as u64
}
