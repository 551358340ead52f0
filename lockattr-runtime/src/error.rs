//! The one error type of lockattr, [`LockError`], and what a backend reports, [`BackendError`].

use std::fmt;
use std::time::Duration;

/// Why a held lock stopped being ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// A renewal (or the release) found another token under the key, or no key at all: the key was
    /// deleted, overwritten or expired behind the holder's back.
    NotOwner,
    /// The local deadline (last confirmed renewal + ttl - safety margin, on a monotonic clock) passed
    /// without a confirmed renewal: Redis was unreachable, stalled or too slow for the TTL.
    DeadlineExpired,
    /// The lock was taken without `auto_renew` and its TTL ran out while the body was still running.
    TtlElapsed,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::NotOwner => "the key no longer holds our token (deleted, overwritten or expired)",
            LostReason::DeadlineExpired => {
                "no renewal was confirmed before the lease deadline (backend unreachable or too slow)"
            }
            LostReason::TtlElapsed => "the TTL elapsed and auto-renew is off",
        })
    }
}

/// Everything that can go wrong when taking, keeping or releasing a lock.
///
/// Every message names the key involved (where there is one) and what to change. A function guarded by
/// `#[distributed_lock]` must return `Result<T, E>` with `E: From<LockError>`; `std::io::Error`,
/// `anyhow::Error` and `Box<dyn Error + Send + Sync>` all qualify.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock is held by someone else and the caller did not wait.
    #[error(
        "lock `{key}` is busy: another owner holds it{}; retry later, or wait for it with `wait = \"2s\"` / `.wait(..)`",
        fmt_remaining(*.remaining)
    )]
    Busy {
        /// The lock key (as given, without the client prefix).
        key: String,
        /// How long the current owner's lease still runs, when the backend reported it.
        remaining: Option<Duration>,
    },
    /// The caller waited for the lock for the whole `wait` budget without getting it.
    #[error("timed out after {:?} waiting for lock `{key}`; raise `wait`, or shorten what the holder does under the lock", Duration::from_millis(.waited.as_millis() as u64))]
    Timeout {
        /// The lock key.
        key: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The lock was ours and stopped being ours while the guarded work was running.
    #[error("lock `{key}`{} was lost while held: {reason}; the guarded work was {}",
        fmt_fence(*.fence),
        if *.cancelled { "cancelled" } else { "not protected for its whole run" })]
    Lost {
        /// The lock key.
        key: String,
        /// The fencing token the lost lease carried, if one was issued (see
        /// [`LockGuard::fence`](crate::LockGuard::fence)).
        fence: Option<u64>,
        /// Why the lease ended.
        reason: LostReason,
        /// Whether the guarded future was cancelled (dropped) because of the loss.
        cancelled: bool,
    },
    /// The lock key is not acceptable.
    #[error("invalid lock key `{key}`: {reason}")]
    InvalidKey {
        /// The offending key (shortened if very long).
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A TTL, wait, margin or other option is out of range.
    #[error("invalid lock option: {0}")]
    InvalidOption(String),
    /// The backend URL could not be understood.
    #[error("invalid lock backend URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given (password masked).
        url: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The backend could not be reached or did not answer in time.
    #[error("lock backend {backend} unavailable{}: {message}; check that it is running and reachable, or raise the command timeout", fmt_key(.key))]
    Unavailable {
        /// Which backend (e.g. `redis://127.0.0.1:6379`).
        backend: String,
        /// The key being worked on, if any.
        key: Option<String>,
        /// The underlying error.
        message: String,
    },
    /// The Redis key that should hold the lock holds something else.
    #[error("Redis key `{redis_key}` (lock `{key}`) {found}; it is not a lockattr lock: delete it, or use another key or client prefix")]
    WrongType {
        /// The lock key.
        key: String,
        /// The full Redis key name.
        redis_key: String,
        /// What was found there.
        found: String,
    },
    /// The backend answered something unexpected.
    #[error("lock backend {backend} failed{}: {message}", fmt_key(.key))]
    Backend {
        /// Which backend.
        backend: String,
        /// The key being worked on, if any.
        key: Option<String>,
        /// The underlying error.
        message: String,
    },
    /// There is no process-wide default client.
    #[error("no default lock client: {0}")]
    NoDefaultClient(String),
    /// lockattr was used outside a Tokio runtime.
    #[error("lockattr needs a Tokio runtime: call it from within `#[tokio::main]`, `#[tokio::test]` or `Runtime::block_on`")]
    NoRuntime,
    /// [`current_fence`](crate::current_fence) was called where no lock is held.
    #[error("no lock is held here: call `current_fence()` inside a `#[distributed_lock]` fn or `LockRequest::run(..)`, or use `LockGuard::fence()` on an acquired guard")]
    NotLocked,
}

fn fmt_fence(fence: Option<u64>) -> String {
    match fence {
        Some(f) => format!(" (fence {f})"),
        None => String::new(),
    }
}

fn fmt_remaining(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!(
            " for about {:?} more",
            Duration::from_millis(d.as_millis() as u64)
        ),
        None => String::new(),
    }
}

fn fmt_key(k: &Option<String>) -> String {
    match k {
        Some(k) => format!(" (lock `{k}`)"),
        None => String::new(),
    }
}

impl LockError {
    /// The lock key this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            LockError::Busy { key, .. }
            | LockError::Timeout { key, .. }
            | LockError::Lost { key, .. }
            | LockError::InvalidKey { key, .. }
            | LockError::WrongType { key, .. } => Some(key),
            LockError::Unavailable { key, .. } | LockError::Backend { key, .. } => key.as_deref(),
            _ => None,
        }
    }

    /// True for [`LockError::Busy`] and [`LockError::Timeout`]: someone else holds the lock.
    pub fn is_contention(&self) -> bool {
        matches!(self, LockError::Busy { .. } | LockError::Timeout { .. })
    }

    /// True for [`LockError::Lost`].
    pub fn is_lost(&self) -> bool {
        matches!(self, LockError::Lost { .. })
    }

    /// True when the backend could not be reached or failed; retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            LockError::Unavailable { .. } | LockError::Backend { .. }
        )
    }
}

impl From<LockError> for std::io::Error {
    fn from(e: LockError) -> Self {
        let kind = match &e {
            LockError::Busy { .. } => std::io::ErrorKind::WouldBlock,
            LockError::Timeout { .. } => std::io::ErrorKind::TimedOut,
            LockError::InvalidKey { .. }
            | LockError::InvalidOption(_)
            | LockError::InvalidUrl { .. } => std::io::ErrorKind::InvalidInput,
            LockError::Unavailable { .. } => std::io::ErrorKind::ConnectionRefused,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// What kind of failure a backend reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// Not reachable, timed out, connection dropped: transient, retry inside the deadline.
    Unavailable,
    /// The key holds a value that is not a lock (the message says what).
    WrongType,
    /// Any other error reply.
    Other,
}

/// An error reported by a [`Backend`](crate::backend::Backend) implementation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// The kind of failure.
    pub kind: BackendErrorKind,
    /// A human-readable description.
    pub message: String,
}

impl BackendError {
    /// A transient failure (unreachable, timeout, dropped connection).
    pub fn unavailable(message: impl Into<String>) -> Self {
        BackendError {
            kind: BackendErrorKind::Unavailable,
            message: message.into(),
        }
    }
    /// The key holds something that is not a lock.
    pub fn wrong_type(message: impl Into<String>) -> Self {
        BackendError {
            kind: BackendErrorKind::WrongType,
            message: message.into(),
        }
    }
    /// Any other failure.
    pub fn other(message: impl Into<String>) -> Self {
        BackendError {
            kind: BackendErrorKind::Other,
            message: message.into(),
        }
    }

    /// Turn into a [`LockError`] about `key` (the user-facing key) stored at `redis_key`.
    pub(crate) fn into_lock_error(self, backend: &str, key: &str, redis_key: &str) -> LockError {
        match self.kind {
            BackendErrorKind::Unavailable => LockError::Unavailable {
                backend: backend.to_owned(),
                key: Some(key.to_owned()),
                message: self.message,
            },
            BackendErrorKind::WrongType => LockError::WrongType {
                key: key.to_owned(),
                redis_key: redis_key.to_owned(),
                found: self.message,
            },
            BackendErrorKind::Other => LockError::Backend {
                backend: backend.to_owned(),
                key: Some(key.to_owned()),
                message: self.message,
            },
        }
    }
}
