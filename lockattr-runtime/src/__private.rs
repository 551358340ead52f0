//! What `#[distributed_lock]` expands to. Not public API: names may change in any release.

use std::future::Future;
use std::time::Duration;

pub use crate::client::AsLockClient;
pub use crate::error::LockError;
pub use crate::key::KeyBuf;
pub use crate::LockClient;

use crate::lease::{LockRequest, OnLost};

/// The attribute's options, built in a `const`.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    ttl_ms: u64,
    auto_renew: bool,
    wait_ms: u64,
    finish_on_lost: bool,
    min_hold_ms: u64,
}

impl Options {
    /// Options with this TTL and defaults for the rest.
    pub const fn new(ttl_ms: u64) -> Self {
        Options {
            ttl_ms,
            auto_renew: false,
            wait_ms: 0,
            finish_on_lost: false,
            min_hold_ms: 0,
        }
    }
    /// `auto_renew`.
    pub const fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }
    /// `wait = ".."`.
    pub const fn wait_ms(mut self, ms: u64) -> Self {
        self.wait_ms = ms;
        self
    }
    /// `on_lost = "finish"`.
    pub const fn on_lost_finish(mut self) -> Self {
        self.finish_on_lost = true;
        self
    }
    /// `min_hold = ".."`.
    pub const fn min_hold_ms(mut self, ms: u64) -> Self {
        self.min_hold_ms = ms;
        self
    }
}

/// A key computed by `key_expr = ..` (not escaped).
pub fn key_from_expr<K: std::fmt::Display>(k: K) -> String {
    k.to_string()
}

/// The process-wide default client.
pub fn default_client() -> Result<LockClient, LockError> {
    crate::client::default_client()
}

/// The client given with `client = ..`.
pub fn client<C: AsLockClient + ?Sized>(c: &C) -> Result<LockClient, LockError> {
    c.lock_client()
}

/// Error types a locked fn may return: anything `From<LockError>`.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` cannot report a busy, timed-out or lost lock",
    label = "a `#[distributed_lock]` fn must return `Result<T, E>` where `E: From<lockattr_runtime::LockError>`",
    note = "implement `From<lockattr_runtime::LockError> for {Self}` (or use `std::io::Error`, `anyhow::Error`, `Box<dyn Error + Send + Sync>`)"
)]
pub trait LockFailure: From<LockError> {}
impl<E: From<LockError>> LockFailure for E {}

/// Acquire, run `body` under the lock, release; lock failures become `E`.
///
/// A plain fn returning the request's own future, as `client.lock(..).run_result(..)` written by
/// hand does: no `async` layer of its own, whose state would keep the client, the key and the
/// options beside the request's (scenario 5 of the benchmarks compares the two). A client that could
/// not be resolved makes a request that fails when run. Inlined so the returned future is built in
/// place in the caller's state rather than copied into it.
#[inline(always)]
pub fn run_locked<T, E, F>(
    client: Result<LockClient, LockError>,
    key: String,
    opts: Options,
    body: F,
) -> impl Future<Output = Result<T, E>>
where
    F: Future<Output = Result<T, E>>,
    E: LockFailure,
{
    let req = match client {
        Ok(client) => LockRequest::new(client, key)
            .ttl(Duration::from_millis(opts.ttl_ms))
            .auto_renew(opts.auto_renew)
            .wait(Duration::from_millis(opts.wait_ms))
            .min_hold(Duration::from_millis(opts.min_hold_ms))
            .on_lost(if opts.finish_on_lost {
                OnLost::Finish
            } else {
                OnLost::Cancel
            }),
        Err(e) => LockRequest::failed(e),
    };
    req.run_result(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn run_locked_future_is_send() {
        let fut = run_locked::<u8, LockError, _>(
            Ok(LockClient::memory()),
            "k".into(),
            Options::new(1000),
            async { Ok(1) },
        );
        assert_send(&fut);
    }

    #[tokio::test]
    async fn options_map_to_the_request() {
        let client = LockClient::memory();
        let opts = Options::new(200)
            .auto_renew(true)
            .wait_ms(0)
            .min_hold_ms(300);
        let fence = run_locked::<_, LockError, _>(Ok(client.clone()), "job".into(), opts, async {
            Ok(crate::current_fence().await.unwrap())
        })
        .await
        .unwrap();
        assert!(fence > 0);
        // min_hold kept the key after the body.
        let err = client.lock("job").acquire().await.unwrap_err();
        assert!(err.is_contention(), "{err}");
        // A client error becomes the fn's error.
        let err = run_locked::<(), LockError, _>(
            Err(LockError::NoDefaultClient("x".into())),
            "k".into(),
            Options::new(1000),
            async { Ok(()) },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, LockError::NoDefaultClient(_)));
    }
}
