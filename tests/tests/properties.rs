//! Bad input: property tests of key rendering, escaping and validation, of the client builder and
//! request options (arbitrary URLs, prefixes, durations), and tests against a real `redis-server` with
//! binary, unicode and very long keys, keys of the wrong type under a held lock (renew and release
//! paths), and Redis answering with errors mid-operation (`SCRIPT FLUSH`, out of memory, killed
//! connections, a busy script). Each must give a clear error, never a panic, and lose nothing.

use std::time::Duration;

use lockattr_runtime::key::{escape_component, validate_key, KeyBuf, LockName, MAX_KEY_LEN};
use lockattr_runtime::{LockClient, LockError, LostReason};
use lockattr_tests::{client, cmd, get, raw, RedisServer};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------------
// Pure properties.

/// Undo [`escape_component`]; `None` if `s` is not something it can produce.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find([':', '%', '{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("%3A") {
            out.push(':');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("%25") {
            out.push('%');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("%7B") {
            out.push('{');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("%7D") {
            out.push('}');
            rest = t;
        } else {
            return None; // a bare ':'/brace or another '%' escape never comes out of escape_component
        }
    }
    out.push_str(rest);
    Some(out)
}

/// Render a template: `lits[0] {a0} lits[1] {a1} .. lits[n]`, as the attribute's generated code does.
fn render(lits: &[String], args: &[String]) -> String {
    let mut k = KeyBuf::new();
    k.lit(&lits[0]);
    for (a, lit) in args.iter().zip(&lits[1..]) {
        k.arg(a);
        k.lit(lit);
    }
    k.finish()
}

/// Recover the arguments from a rendered key, knowing only the template. That this always succeeds
/// proves rendering is injective for templates with a `:` between placeholders.
fn decode(lits: &[String], rendered: &str) -> Option<Vec<String>> {
    let n = lits.len() - 1;
    let mut rest = rendered.strip_prefix(lits[0].as_str())?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let escaped = if i + 1 < n {
            // The escaped value holds no ':', so the first ':' left is the separator's first ':'.
            let sep = &lits[i + 1];
            let before_colon = sep.find(':')?;
            let colon = rest.find(':')?;
            let end = colon.checked_sub(before_colon)?;
            let escaped = rest.get(..end)?;
            rest = rest.get(end..)?.strip_prefix(sep.as_str())?;
            escaped
        } else {
            let e = rest.strip_suffix(lits[n].as_str())?;
            rest = "";
            e
        };
        out.push(unescape(escaped)?);
    }
    rest.is_empty().then_some(out)
}

/// The Redis Cluster hash tag of a key (what its slot is computed from).
fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

fn arg_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[:%3A25a{}]{0,8}",
        Just(String::new()),
        Just("%3A".to_owned()),
        Just(":".to_owned()),
    ]
}

fn template_strategy() -> impl Strategy<Value = Vec<String>> {
    (1usize..4).prop_flat_map(|n| {
        (
            "[a-z:{}% ]{0,6}",
            proptest::collection::vec("[a-z{}% ]{0,3}:[a-z:{}% ]{0,3}", n - 1),
            "[a-z:{}%]{0,4}",
        )
            .prop_map(|(first, seps, last)| {
                let mut v = vec![first];
                v.extend(seps);
                v.push(last);
                v
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// `escape_component` is undone by `unescape`, never leaves a `:` or a brace, and keeps plain values
    /// as they are.
    #[test]
    fn escaping_round_trips(s in any::<String>()) {
        let e = escape_component(&s);
        prop_assert!(!e.contains([':', '{', '}']), "escaped value {:?} kept a separator", e);
        prop_assert_eq!(unescape(&e), Some(s.clone()));
        if !s.contains([':', '%', '{', '}']) {
            prop_assert_eq!(e.as_ref(), s.as_str());
        }
    }

    /// For any template with a `:` between placeholders, the arguments can be read back from the key:
    /// distinct arguments never render the same key.
    #[test]
    fn rendering_is_injective_on_separated_templates(
        (lits, args) in template_strategy().prop_flat_map(|lits| {
            let n = lits.len() - 1;
            (Just(lits), proptest::collection::vec(arg_strategy(), n))
        })
    ) {
        let key = render(&lits, &args);
        prop_assert_eq!(decode(&lits, &key), Some(args.clone()), "key {:?}", key);
    }

    /// Near-collisions: moving a `:` from one argument to the next changes the key.
    #[test]
    fn moving_a_colon_between_arguments_changes_the_key(a in "[a-z:%]{0,6}", b in "[a-z:%]{0,6}") {
        let lits = vec!["o:".to_owned(), ":".to_owned(), String::new()];
        let k1 = render(&lits, &[format!("{a}:"), b.clone()]);
        let k2 = render(&lits, &[a.clone(), format!(":{b}")]);
        prop_assert_ne!(k1, k2);
    }

    /// `validate_key` never panics, accepts exactly the non-blank keys of at most MAX_KEY_LEN bytes
    /// without control characters, and its error message stays short and names the fix.
    #[test]
    fn validate_key_never_panics(s in prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<char>(), 0..6000).prop_map(|v| v.into_iter().collect::<String>()),
        (4000usize..4200).prop_map(|n| "é".repeat(n / 2) + &"x".repeat(n % 2)),
    ]) {
        let expected_ok = !s.trim().is_empty() && s.len() <= MAX_KEY_LEN && !s.chars().any(char::is_control) && !s.starts_with('}');
        match validate_key(&s) {
            Ok(()) => prop_assert!(expected_ok),
            Err(e) => {
                prop_assert!(!expected_ok);
                let msg = e.to_string();
                let is_invalid_key = matches!(e, LockError::InvalidKey { .. });
                prop_assert!(is_invalid_key, "{:?}", e);
                prop_assert!(msg.len() < 700, "message too long: {} bytes", msg.len());
            }
        }
    }

    /// The names of distinct keys never collide: no lock key equals another lock's key or counter.
    #[test]
    fn lock_names_never_collide(a in any::<String>(), b in any::<String>(), prefix in "[a-z:]{1,8}") {
        let na = LockName::new(&prefix, &a);
        let nb = LockName::new(&prefix, &b);
        prop_assert_ne!(&na.lock_key, &nb.fence_key);
        prop_assert_ne!(&na.lock_key, &na.fence_key);
        if a != b {
            prop_assert_ne!(&na.lock_key, &nb.lock_key);
            prop_assert_ne!(&na.fence_key, &nb.fence_key);
            prop_assert_ne!(&na.channel, &nb.channel);
        }
    }

    /// A lock and its fence counter share a Redis Cluster hash slot (their hash tags are equal), for
    /// every key that does not start with `}` (see `lock_and_counter_share_a_slot_for_every_key`).
    #[test]
    fn lock_and_counter_share_a_slot(key in any::<String>().prop_filter("not `}`-first", |k| !k.starts_with('}') && !k.is_empty())) {
        let n = LockName::new("app", &key);
        prop_assert_eq!(hash_tag(&n.lock_key), hash_tag(&n.fence_key));
        prop_assert_ne!(hash_tag(&n.lock_key), n.lock_key.as_str(), "no hash tag in {:?}", n.lock_key);
    }

    /// The builder never panics, whatever it is given: it builds, or returns a clear error.
    #[test]
    fn builder_never_panics(
        url in prop_oneof![
            any::<String>(),
            ("(redis|rediss|unix|redis\\+unix|http|)", "(://)?", "[a-z0-9:@%/.\\[\\]?=&-]{0,30}")
                .prop_map(|(s, sep, rest)| format!("{s}{sep}{rest}")),
        ],
        prefix in prop_oneof![any::<String>(), "[a-z:{}]{0,5}"],
        ttl_s in any::<u64>(), ttl_n in 0u32..1_000_000_000,
        timeout_ms in any::<u64>(),
        drift in prop_oneof![any::<f64>(), 0.0f64..0.3],
        margin_ms in 0u64..100_000,
    ) {
        // Inside a runtime (outside one, see `build_outside_a_runtime_is_an_error_not_a_panic`).
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _entered = rt.enter();
        let r = LockClient::builder()
            .url(url.clone())
            .prefix(prefix)
            .default_ttl(Duration::new(ttl_s, ttl_n))
            .command_timeout(Duration::from_millis(timeout_ms))
            .drift_factor(drift)
            .safety_margin(Duration::from_millis(margin_ms))
            .build();
        if let Err(e) = r {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty());
            let expected = matches!(e, LockError::InvalidUrl { .. } | LockError::InvalidOption(_) | LockError::Unavailable { .. });
            prop_assert!(expected, "{:?}", e);
        }
        // The URL alone (all other settings default) never panics either, and never echoes a password.
        if let Err(e) = LockClient::builder().url(url.clone()).build() {
            if let Some(at) = url.find('@') {
                let secret = &url[..at];
                if let Some((_, pw)) = secret.rsplit_once(':') {
                    if pw.len() >= 4 && !pw.contains('/') && url.starts_with("redis://") {
                        prop_assert!(!e.to_string().contains(&format!(":{pw}@")), "password shown: {e}");
                    }
                }
            }
        }
    }

    /// Request options (TTL, wait, min hold) never panic: out-of-range values are clear errors.
    #[test]
    fn request_options_never_panic(
        ttl_ms in prop_oneof![any::<u64>(), 0u64..2000],
        wait_ms in prop_oneof![any::<u64>(), 0u64..50],
        hold_ms in prop_oneof![any::<u64>(), 0u64..50],
        key in prop_oneof![any::<String>(), "[a-z]{1,4}"],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let c = LockClient::memory();
            let r = c
                .lock(key)
                .ttl(Duration::from_millis(ttl_ms))
                .wait(Duration::from_millis(wait_ms))
                .min_hold(Duration::from_millis(hold_ms))
                .auto_renew(true)
                .acquire()
                .await;
            match r {
                Ok(g) => {
                    let _ = g.release().await;
                }
                Err(e) => assert!(
                    matches!(e, LockError::InvalidKey { .. } | LockError::InvalidOption(_)),
                    "{e:?}"
                ),
            }
        });
    }
}

/// The lock and its counter always share a Redis Cluster slot: a `}`-first key (whose hash tag
/// `prefix:{}x}` would be empty) is refused, and rendered values escape braces.
#[test]
fn lock_and_counter_share_a_slot_for_every_key() {
    for key in ["}", "}x", "}}", "}{a}", "a}", "a}b", "{", "{}", "x{y}z"] {
        if let Err(e) = lockattr_runtime::key::validate_key(key) {
            // Keys that would leave the hash tag empty are refused, naming why.
            assert!(key.starts_with('}'), "{key:?} refused: {e}");
            assert!(e.to_string().contains("hash tag"), "{e}");
            continue;
        }
        let n = LockName::new("app", key);
        assert_eq!(
            hash_tag(&n.lock_key),
            hash_tag(&n.fence_key),
            "{key:?}: {} vs {}",
            n.lock_key,
            n.fence_key
        );
        assert_ne!(hash_tag(&n.lock_key), n.lock_key.as_str(), "{key:?}");
    }
    // Rendered template values never contain braces, so data cannot shape the tag.
    let mut k = lockattr_runtime::key::KeyBuf::new();
    k.arg("}evil{");
    assert!(lockattr_runtime::key::validate_key(&k.finish()).is_ok());
}

/// A very large safety margin is refused with `InvalidOption` (it once overflowed in `build()`).
#[test]
fn huge_safety_margin_is_an_error_not_a_panic() {
    for margin in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let r = std::panic::catch_unwind(|| {
            LockClient::builder().memory().safety_margin(margin).build()
        });
        match r {
            Ok(Err(LockError::InvalidOption(msg))) => {
                assert!(msg.contains("safety margin"), "{msg}")
            }
            Ok(other) => panic!("{margin:?}: expected InvalidOption, got {other:?}"),
            Err(_) => panic!("{margin:?}: build() panicked"),
        }
    }
}

/// `build()` outside a Tokio runtime with a Redis URL returns `LockError::NoRuntime` (the connection's
/// driver task needs a runtime); it once panicked with "no reactor running".
#[test]
fn build_outside_a_runtime_is_an_error_not_a_panic() {
    for url in ["redis://127.0.0.1:1", "unix:///tmp/lockattr-none.sock"] {
        let r = std::panic::catch_unwind(|| LockClient::builder().url(url).build().map(|_| ()));
        match r {
            Ok(Ok(())) | Ok(Err(LockError::NoRuntime)) => {}
            Ok(Err(e)) => panic!("{url}: unexpected error {e}"),
            Err(_) => panic!("{url}: build() panicked outside a runtime"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Against a real redis-server.

/// Binary-looking, unicode and very long keys are stored under exactly the documented Redis name,
/// renewed, fenced and released like any other; keys that are too long or contain control characters
/// are refused before anything reaches Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_binary_and_long_keys_against_redis() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let mut conn = raw(&server.url()).await;
    let mut keys: Vec<String> = vec![
        "ünïcødé:🔒".into(),
        "{braces}".into(),
        "a{b}c".into(),
        "%3A:%25".into(),
        "key with spaces".into(),
        "\u{feff}bom\u{200d}zwj\u{202e}rtl".into(),
        "\u{fffd}\u{fffd}".into(),
        "日本語のキー".into(),
        "x".repeat(MAX_KEY_LEN),
        "é".repeat(MAX_KEY_LEN / 2),
    ];
    // Random valid unicode keys (deterministic seed).
    let mut rng_state = 0x5eed_u64;
    for _ in 0..40 {
        let mut s = String::new();
        for _ in 0..1 + (rng_state % 24) {
            rng_state = rng_state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let c = char::from_u32((rng_state >> 33) as u32 % 0x2_FFFF).unwrap_or('?');
            if !c.is_control() {
                s.push(c);
            }
        }
        if !s.trim().is_empty() {
            keys.push(s);
        }
    }
    for key in &keys {
        let name = a.backend_key(key);
        let g = a
            .lock(key.as_str())
            .ttl(Duration::from_millis(300))
            .auto_renew(true)
            .acquire()
            .await
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!(g.backend_key(), name);
        let token = get(&mut conn, &name).await;
        assert!(
            token.as_deref().is_some_and(|t| t.len() >= 32),
            "{key:?}: {token:?}"
        );
        let fence = g.fence().await.unwrap();
        g.release().await.unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!(get(&mut conn, &name).await, None, "{key:?} not deleted");
        let g2 = a.lock(key.as_str()).acquire().await.unwrap();
        assert!(
            g2.fence().await.unwrap() > fence,
            "{key:?}: fence did not increase"
        );
        g2.release().await.unwrap();
    }
    // One long unicode key survives renewals past its TTL.
    let long = "é".repeat(MAX_KEY_LEN / 2);
    let held = a
        .lock(long.as_str())
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .run(async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            lockattr_runtime::current_lock().map(|l| l.is_held())
        })
        .await
        .unwrap();
    assert_eq!(held, Some(true));

    let before = server.cli(&["DBSIZE"]);
    for bad in [
        "x".repeat(MAX_KEY_LEN + 1),
        "é".repeat(MAX_KEY_LEN / 2 + 1),
        "nul\0byte".into(),
        "new\nline".into(),
        "\u{7f}".into(),
        String::new(),
        " \t ".into(),
    ] {
        let err = a.lock(bad.as_str()).acquire().await.unwrap_err();
        assert!(
            matches!(err, LockError::InvalidKey { .. }),
            "{bad:?}: {err}"
        );
        assert!(
            err.to_string().len() < 700,
            "error too long for {} bytes",
            bad.len()
        );
    }
    assert_eq!(
        server.cli(&["DBSIZE"]),
        before,
        "a refused key reached Redis"
    );
}

/// While a lock is held, its key is replaced by a hash behind the library's back: the renewal and the
/// release both see "not ours" and touch nothing; the holder is told; the next acquire says what is
/// wrong. Same for the fence counter replaced while the lock is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_under_a_held_lock_renew_and_release() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let mut conn = raw(&server.url()).await;

    // Renewal path.
    let g = a
        .lock("wt-renew")
        .ttl(Duration::from_millis(400))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    cmd(&mut conn, &["DEL", "t:{wt-renew}"]).await;
    cmd(&mut conn, &["HSET", "t:{wt-renew}", "f", "v"]).await;
    let reason = tokio::time::timeout(Duration::from_secs(2), g.lost())
        .await
        .expect("holder told");
    assert_eq!(reason, LostReason::NotOwner);
    assert!(g.release().await.unwrap_err().is_lost());
    assert_eq!(
        server.cli(&["HGET", "t:{wt-renew}", "f"]),
        "v",
        "hash touched"
    );
    assert_eq!(
        server.cli(&["PTTL", "t:{wt-renew}"]),
        "-1",
        "hash got a TTL"
    );
    let err = a.lock("wt-renew").acquire().await.unwrap_err();
    assert!(matches!(err, LockError::WrongType { .. }), "{err}");

    // Release path (no renewal in between).
    let g = a
        .lock("wt-release")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    cmd(&mut conn, &["DEL", "t:{wt-release}"]).await;
    cmd(&mut conn, &["RPUSH", "t:{wt-release}", "x"]).await;
    let err = g.release().await.unwrap_err();
    assert!(
        matches!(
            err,
            LockError::Lost {
                reason: LostReason::NotOwner,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(server.cli(&["LRANGE", "t:{wt-release}", "0", "-1"]), "x");

    // Release on drop (a cancelled body) with the key replaced: nothing touched either.
    let g = a
        .lock("wt-drop")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    cmd(&mut conn, &["DEL", "t:{wt-drop}"]).await;
    cmd(&mut conn, &["SADD", "t:{wt-drop}", "m"]).await;
    drop(g);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.cli(&["SISMEMBER", "t:{wt-drop}", "m"]), "1");

    // The fence counter replaced while held: holding, renewing and releasing are unaffected; the next
    // holder's request for a fence is refused with a clear error and issues nothing.
    let g = a
        .lock("wt-fence")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    cmd(&mut conn, &["DEL", "t:fence"]).await;
    cmd(&mut conn, &["HSET", "t:fence", "n", "1"]).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(g.is_held(), "renewal broken by a bad counter");
    g.release().await.unwrap();
    let g = a.lock("wt-fence").acquire().await.unwrap();
    let err = g.fence().await.unwrap_err();
    assert!(
        matches!(err, LockError::WrongType { .. }) && err.to_string().contains("fence"),
        "{err}"
    );
    assert_eq!(server.cli(&["HGET", "t:fence", "n"]), "1");
    g.release().await.unwrap();
    assert_eq!(server.cli(&["EXISTS", "t:{wt-fence}"]), "0");
}

/// `SCRIPT FLUSH` between operations: the scripts are reloaded (NOSCRIPT) transparently, for the
/// renewal of a held lock, its release, and new acquires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_between_operations() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let g = a
        .lock("sf")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    let fence = g.fence().await.unwrap();
    for _ in 0..3 {
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(g.is_held(), "renewal failed after SCRIPT FLUSH");
    assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
    g.release().await.unwrap();
    assert_eq!(server.cli(&["EXISTS", "t:{sf}"]), "0");
    assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
    let g = a.lock("sf").acquire().await.unwrap();
    assert!(g.fence().await.unwrap() > fence);
    g.release().await.unwrap();
}

/// Out of memory (`maxmemory 1`, `noeviction`): a new acquire fails with an error naming the cause,
/// takes nothing and issues no fence; a lock already held keeps being renewed and is released normally;
/// once memory is back, fences continue upwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_mid_operation() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let held = a
        .lock("oom-held")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    let g = a.lock("oom-new").acquire().await.unwrap();
    let fence = g.fence().await.unwrap();
    g.release().await.unwrap();
    assert_eq!(
        server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]),
        "OK"
    );
    assert_eq!(server.cli(&["CONFIG", "SET", "maxmemory", "1"]), "OK");
    let counter = server.cli(&["GET", "t:fence"]);
    let err = a.lock("oom-new").acquire().await.unwrap_err();
    assert!(err.to_string().contains("OOM"), "unclear error: {err}");
    assert!(!err.is_contention() && !err.is_lost(), "{err:?}");
    assert_eq!(
        server.cli(&["EXISTS", "t:{oom-new}"]),
        "0",
        "taken despite OOM"
    );
    assert_eq!(
        server.cli(&["GET", "t:fence"]),
        counter,
        "fence issued despite OOM"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(held.is_held(), "renewal failed under OOM");
    held.release().await.unwrap();
    assert_eq!(server.cli(&["EXISTS", "t:{oom-held}"]), "0");
    assert_eq!(server.cli(&["CONFIG", "SET", "maxmemory", "0"]), "OK");
    let g = a.lock("oom-new").acquire().await.unwrap();
    assert!(g.fence().await.unwrap() > fence);
    g.release().await.unwrap();
}

/// `CLIENT KILL TYPE normal` while a lock is held: the client reconnects, renewals continue, the holder
/// is not told anything, and the release works. `CLIENT KILL TYPE pubsub` while someone waits: the
/// waiter still gets the lock soon after the release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_mid_hold_and_mid_wait() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let b = client(&server.url()).await;
    let ttl = Duration::from_millis(600);
    let g = a
        .lock("ck")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    for _ in 0..3 {
        server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        tokio::time::sleep(ttl / 2).await;
    }
    assert!(
        g.is_held(),
        "lost after a killed connection: {:?}",
        g.lost_reason()
    );
    let waiter = tokio::spawn({
        let b = b.clone();
        async move {
            let t0 = tokio::time::Instant::now();
            let g = b
                .lock("ck")
                .ttl(ttl)
                .wait(Duration::from_secs(10))
                .acquire()
                .await;
            (
                match g {
                    Ok(g) => Ok(g.fence().await.unwrap()),
                    Err(e) => Err(e),
                },
                t0.elapsed(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fence = g.fence().await.unwrap();
    g.release().await.unwrap();
    let released_at = tokio::time::Instant::now();
    let (got, _) = waiter.await.unwrap();
    let waited_after_release = released_at.elapsed();
    assert!(got.unwrap() > fence);
    assert!(
        waited_after_release < Duration::from_secs(2),
        "waiter took {waited_after_release:?} after the release"
    );
}

/// A busy script on the server (`BUSY` errors to everyone else): the holder is told before its deadline
/// and an acquire fails with `Unavailable`, within the command timeout; after `SCRIPT KILL` everything
/// works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_server_mid_hold() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    assert_eq!(
        server.cli(&["CONFIG", "SET", "busy-reply-threshold", "50"]),
        "OK"
    );
    let ttl = Duration::from_millis(600);
    let g = a
        .lock("busy")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let url = server.url();
    let spinner = std::thread::spawn(move || {
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let r: redis::RedisResult<()> = redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query(&mut c);
        r.err().map(|e| e.to_string())
    });
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reason = tokio::time::timeout(Duration::from_secs(3), g.lost())
        .await
        .expect("holder told");
    assert_eq!(reason, LostReason::DeadlineExpired);
    assert!(
        t0.elapsed() < ttl,
        "told {:?} after the stall began",
        t0.elapsed()
    );
    let t1 = tokio::time::Instant::now();
    let err = a.lock("busy-2").acquire().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(t1.elapsed() < Duration::from_secs(2));
    assert_eq!(server.cli(&["SCRIPT", "KILL"]), "OK");
    let spun = spinner.join().unwrap();
    assert!(spun.is_some_and(|e| e.contains("killed")));
    let start = tokio::time::Instant::now();
    loop {
        match a.lock("busy-2").acquire().await {
            Ok(g) => {
                g.release().await.unwrap();
                break;
            }
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(5), "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let _ = g.release().await;
}
