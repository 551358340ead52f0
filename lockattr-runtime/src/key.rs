//! Lock keys: how a key is validated, how template arguments are escaped, and the Redis names derived
//! from it.
//!
//! A lock key `K` of a client with prefix `P` lives at the Redis key `P:{K}` and its release notices are
//! published on the channel `P:{K}:released`. Its fencing counter is `P:{K}:fence` on Redis Cluster and
//! Redlock; a single node (and Sentinel) keeps one counter for the whole prefix, `P:fence`. The braces
//! are a Redis Cluster hash tag (Redis hashes what lies between the first `{` and the next `}`), so the
//! lock, its counter and its channel always share one hash slot; a key may therefore not start with `}`,
//! which would leave the tag empty. Lock names always end in `}` and counter names in `:fence`, so no
//! key can ever name another key's counter.
//!
//! Keys rendered by `#[distributed_lock(key = "...")]` escape every argument value with
//! [`escape_component`]: `%` becomes `%25`, `:` becomes `%3A`, `{` becomes `%7B` and `}` becomes `%7D`
//! (so argument values can never shape the hash tag). The attribute requires a `:` between
//! any two placeholders, so distinct argument values always render distinct keys
//! (`"{a}:{b}"` with `a = "1:2", b = "3"` renders `1%3A2:3`, never `1:2:3`).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use crate::error::LockError;

/// Longest accepted lock key, in bytes (Redis allows more; very long keys are almost always a bug).
pub const MAX_KEY_LEN: usize = 4096;

/// Escape one rendered template argument: `%` -> `%25`, `:` -> `%3A`, `{` -> `%7B`, `}` -> `%7D`.
/// Everything else is kept.
///
/// ```
/// use lockattr_runtime::key::escape_component;
/// assert_eq!(escape_component("a:b%c"), "a%3Ab%25c");
/// assert_eq!(escape_component("{x}"), "%7Bx%7D");
/// assert_eq!(escape_component("plain"), "plain");
/// ```
pub fn escape_component(value: &str) -> Cow<'_, str> {
    if !needs_escape(value) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `value` holds a character [`escape_component`] rewrites. A byte scan: the four characters
/// are ASCII, and UTF-8 never uses ASCII bytes inside a multi-byte character.
#[inline]
fn needs_escape(value: &str) -> bool {
    value
        .bytes()
        .any(|b| matches!(b, b':' | b'%' | b'{' | b'}'))
}

/// Builds a key from literal template parts and escaped argument values (what the attribute generates).
#[derive(Debug, Default)]
pub struct KeyBuf {
    buf: String,
}

impl KeyBuf {
    /// An empty key.
    pub fn new() -> Self {
        KeyBuf {
            buf: String::with_capacity(32),
        }
    }
    /// Append literal template text verbatim.
    pub fn lit(&mut self, s: &str) {
        self.buf.push_str(s);
    }
    /// Append an argument's `Display` output, escaped with [`escape_component`].
    pub fn arg<T: ?Sized + fmt::Display>(&mut self, v: &T) {
        // The value is written in place and escaped afterwards, only when it holds a character to
        // escape (rare: ids, names, numbers need none). Writing into a String cannot fail; a Display
        // impl that returns Err leaves a partial value, which is still deterministic for the same
        // value.
        let start = self.buf.len();
        let _ = write!(self.buf, "{v}");
        if needs_escape(&self.buf[start..]) {
            let escaped = escape_component(&self.buf[start..]).into_owned();
            self.buf.truncate(start);
            self.buf.push_str(&escaped);
        }
    }

    /// The rendered key.
    pub fn finish(self) -> String {
        self.buf
    }
}

/// Check a user key: non-empty, at most [`MAX_KEY_LEN`] bytes, no control characters.
pub fn validate_key(key: &str) -> Result<(), LockError> {
    let bad = |reason: &str| LockError::InvalidKey {
        key: shorten(key),
        reason: reason.to_owned(),
    };
    if key.is_empty() {
        return Err(bad(
            "the key is empty; give every lock a name, e.g. \"order:42\"",
        ));
    }
    if key.trim().is_empty() {
        return Err(bad(
            "the key is only whitespace; give every lock a name, e.g. \"order:42\"",
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(bad(&format!(
            "the key is {} bytes long, more than the {MAX_KEY_LEN} allowed; hash long values (e.g. a digest of the payload) into the key",
            key.len()
        )));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(bad(
            "the key contains control characters; render values with Display, not raw bytes",
        ));
    }
    if key.starts_with('}') {
        return Err(bad(
            "the key starts with `}`, which would leave the Redis Cluster hash tag `prefix:{...}` empty and put the lock and its fence counter in different slots; start it with another character, e.g. \"k:}...\"",
        ));
    }
    Ok(())
}

/// Check a client key prefix: non-empty, no braces (they would break the Cluster hash tag), no control
/// characters, at most 256 bytes.
pub fn validate_prefix(prefix: &str) -> Result<(), LockError> {
    if prefix.is_empty()
        || prefix.len() > 256
        || prefix.contains(['{', '}'])
        || prefix.chars().any(char::is_control)
    {
        return Err(LockError::InvalidOption(format!(
            "key prefix `{prefix}` must be 1..=256 bytes without braces or control characters, e.g. \"lockattr\" or \"myapp:locks\""
        )));
    }
    Ok(())
}

pub(crate) fn shorten(key: &str) -> String {
    if key.len() <= 120 {
        return key.to_owned();
    }
    let mut end = 100;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &key[..end], key.len())
}

/// The backend-level names of one lock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockName {
    /// The key as the user gave it.
    pub key: String,
    /// Where the lock lives: `prefix:{key}`.
    pub lock_key: String,
    /// Where the fencing counter lives on Redis Cluster and Redlock: `prefix:{key}:fence` (a single
    /// node keeps one counter per prefix, `prefix:fence`).
    pub fence_key: String,
    /// Where release notices are published: `prefix:{key}:released`.
    pub channel: String,
}

impl LockName {
    /// Derive the names of `key` under `prefix` (both already validated).
    pub fn new(prefix: &str, key: &str) -> LockName {
        Self::from_key(prefix, key.to_owned())
    }

    /// Like [`LockName::new`], taking the key by value (one allocation fewer).
    pub(crate) fn from_key(prefix: &str, key: String) -> LockName {
        let with_suffix = |suffix: &str| {
            let mut s = String::with_capacity(prefix.len() + key.len() + 3 + suffix.len());
            s.push_str(prefix);
            s.push_str(":{");
            s.push_str(&key);
            s.push('}');
            s.push_str(suffix);
            s
        };
        let lock_key = with_suffix("");
        let fence_key = with_suffix(":fence");
        let channel = with_suffix(":released");
        LockName {
            key,
            lock_key,
            fence_key,
            channel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_injective_on_separated_templates() {
        let render = |a: &str, b: &str| {
            let mut k = KeyBuf::new();
            k.lit("order:");
            k.arg(a);
            k.lit(":");
            k.arg(b);
            k.finish()
        };
        assert_ne!(render("1:2", "3"), render("1", "2:3"));
        assert_ne!(render("1%3A2", "3"), render("1:2", "3"));
        assert_eq!(render("1:2", "3"), "order:1%3A2:3");
        assert_eq!(render("{x}", "é"), "order:%7Bx%7D:é");
    }

    #[test]
    fn names_share_the_hash_tag() {
        let n = LockName::new("app", "order:{42}");
        assert_eq!(n.lock_key, "app:{order:{42}}");
        assert_eq!(n.fence_key, "app:{order:{42}}:fence");
        assert!(n.channel.starts_with("app:{order:{42}"));
    }

    #[test]
    fn bad_keys_are_rejected_with_the_fix() {
        let e = validate_key("").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        assert!(validate_key("   ").is_err());
        assert!(validate_key(&"x".repeat(MAX_KEY_LEN + 1))
            .unwrap_err()
            .to_string()
            .contains("hash long values"));
        assert!(validate_key("a\nb").is_err());
        assert!(validate_key("ünïcødé:🔒").is_ok());
        assert!(validate_prefix("a{b").is_err());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("myapp:locks").is_ok());
    }
}
