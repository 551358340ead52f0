//! Redis-specific behaviour under faults: pauses, restarts with data loss, unreachable servers, a
//! blackholed connection, wrong-type keys, malformed URLs, and several OS processes contending.

use std::time::Duration;

use lockattr_runtime::{LockClient, LockError, LostReason};
use lockattr_tests::{client, cmd, get, raw, FaultProxy, RedisServer};
use tokio::time::Instant;

/// Redis stalls (SIGSTOP) longer than the TTL: the holder is told before its deadline, i.e. before the
/// key could have expired on the server and been granted to someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_longer_than_ttl_holder_told_before_deadline() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let ttl = Duration::from_millis(600);
    let g = a
        .lock("stall")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await; // at least one renewal confirmed
    let paused_at = Instant::now();
    server.pause();
    let reason = tokio::time::timeout(Duration::from_secs(3), g.lost())
        .await
        .expect("told");
    let detected = paused_at.elapsed();
    server.resume();
    assert_eq!(reason, LostReason::DeadlineExpired);
    // The last confirmed renewal was sent before the pause, so the server-side expiry is at least
    // that send time + ttl; being told within `ttl` of the pause means before it.
    assert!(
        detected < ttl,
        "told {detected:?} after the stall began (ttl {ttl:?})"
    );
    assert!(!g.is_held());
    assert!(g.release().await.unwrap_err().is_lost());
}

/// The run call cancels the body when Redis stalls, and returns Lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_body_cancelled() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let pid = server.pid();
    let t0 = Instant::now();
    let err = a
        .lock("stall-run")
        .ttl(Duration::from_millis(450))
        .auto_renew(true)
        .run(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::process::Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status()
                .unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
        .await
        .unwrap_err();
    server.resume();
    assert!(
        matches!(
            err,
            LockError::Lost {
                reason: LostReason::DeadlineExpired,
                cancelled: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

/// Fences keep increasing across a Redis restart that lost all data, and the scripts are reloaded
/// (NOSCRIPT) by the same client over its reconnected connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_increase_across_restart_with_data_loss() {
    let mut server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let mut last = 0;
    for _ in 0..50 {
        let g = a
            .lock("f")
            .ttl(Duration::from_secs(5))
            .acquire()
            .await
            .unwrap();
        assert!(g.fence().await.unwrap() > last);
        last = g.fence().await.unwrap();
        g.release().await.unwrap();
    }
    let held = a
        .lock("held-over-restart")
        .ttl(Duration::from_secs(5))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    server.restart();
    assert_eq!(server.cli(&["EXISTS", "t:fence"]), "0", "restart kept data");
    // The first command after the restart may fail while reconnecting; it succeeds soon after.
    let start = Instant::now();
    let g = loop {
        match a.lock("f").ttl(Duration::from_secs(5)).acquire().await {
            Ok(g) => break g,
            Err(e) if e.is_unavailable() && start.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("no recovery after restart: {e}"),
        }
    };
    assert!(
        g.fence().await.unwrap() > last,
        "fence went backwards after data loss: {} <= {last}",
        g.fence().await.unwrap()
    );
    // The lock held across the restart was lost with the data: its holder is told.
    let reason = tokio::time::timeout(Duration::from_secs(5), held.lost())
        .await
        .expect("told");
    assert_eq!(reason, LostReason::NotOwner);
}

/// An idle client takes a free lock without a fence and issues it when the holder asks: once (asking
/// again costs nothing), above every earlier holder's, and never to a holder that lost the lock, so a
/// holder that stalled past its TTL cannot get a fence above its successor's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_are_issued_on_request_and_owner_checked() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let b = client(&server.url()).await;
    let mut conn = raw(&server.url()).await;

    let g = a
        .lock("z")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    assert_eq!(
        server.cli(&["EXISTS", "t:fence"]),
        "0",
        "fence issued before it was asked for"
    );
    let first = g.fence().await.unwrap();
    assert_eq!(get(&mut conn, "t:fence").await, Some(first.to_string()));
    assert_eq!(
        g.fence().await.unwrap(),
        first,
        "a second call issues another fence"
    );
    assert_eq!(get(&mut conn, "t:fence").await, Some(first.to_string()));
    g.release().await.unwrap();

    // A holder whose lease ran out (no auto-renew, stalled past the TTL) while another client took the
    // lock: its late request for a fence is refused, and it learns that it lost the lock.
    let zombie = a
        .lock("z")
        .ttl(Duration::from_millis(200))
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = b
        .lock("z")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    // (Here the holder's own deadline told it first; the deleted lock below is caught by the server.)
    let err = zombie.fence().await.unwrap_err();
    assert!(matches!(err, LockError::Lost { fence: None, .. }), "{err}");
    assert!(zombie.lost_reason().is_some());
    assert_eq!(
        get(&mut conn, "t:fence").await,
        Some(first.to_string()),
        "a fence was issued"
    );
    let second = next.fence().await.unwrap();
    assert!(second > first, "fence {second} after {first}");

    // The same for a lock deleted behind its holder's back (no other holder).
    let g = a
        .lock("y")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    cmd(&mut conn, &["DEL", "t:{y}"]).await;
    assert!(matches!(
        g.fence().await.unwrap_err(),
        LockError::Lost {
            reason: LostReason::NotOwner,
            ..
        }
    ));
    assert!(!g.is_held());
    drop(next);

    // Outside a lock there is no fence to give.
    assert!(matches!(
        lockattr_runtime::current_fence().await.unwrap_err(),
        LockError::NotLocked
    ));
}

/// An unreachable server fails within the command timeout with an error naming the server.
#[tokio::test]
async fn unreachable_redis_fails_within_timeout() {
    let port = lockattr_runtime::testing::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let t0 = Instant::now();
    let err = LockClient::builder()
        .url(&url)
        .command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    // A lazily built client fails on acquire, just as fast.
    let lazy = LockClient::builder()
        .url(&url)
        .command_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let err = lazy.lock("k").acquire().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2));
}

/// A blackholed connection (nothing comes back) fails the acquire within the command timeout; a
/// held lock behind it is reported lost before its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_connection() {
    let server = RedisServer::spawn();
    let proxy = FaultProxy::start(server.addr());
    let a = client(&proxy.url()).await;
    let ttl = Duration::from_millis(600);
    let g = a
        .lock("bh")
        .ttl(ttl)
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let t0 = Instant::now();
    proxy.set_blackhole(true);
    let reason = tokio::time::timeout(Duration::from_secs(3), g.lost())
        .await
        .expect("told");
    assert_eq!(reason, LostReason::DeadlineExpired);
    assert!(t0.elapsed() < ttl);
    let t0 = Instant::now();
    let err = a.lock("bh2").acquire().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // Healing: the client reconnects and works again.
    proxy.heal();
    proxy.close_all();
    let start = Instant::now();
    loop {
        match a.lock("bh3").acquire().await {
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
}

/// A slow link (delay) within the TTL keeps the lock; renewals still confirm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_link_within_ttl_keeps_lock() {
    let server = RedisServer::spawn();
    let proxy = FaultProxy::start(server.addr());
    let a = client(&proxy.url()).await;
    proxy.set_delay(Duration::from_millis(30));
    let out = a
        .lock("slow")
        .ttl(Duration::from_millis(600))
        .auto_renew(true)
        .run(async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            lockattr_runtime::current_lock().unwrap().is_held()
        })
        .await
        .unwrap();
    assert!(out);
}

/// A key of the wrong type under the lock's name (or its counter's) gives a clear error, and nothing is
/// taken or overwritten.
#[tokio::test]
async fn wrong_type_keys() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let mut conn = raw(&server.url()).await;
    cmd(&mut conn, &["HSET", "t:{h}", "f", "v"]).await;
    let err = a.lock("h").acquire().await.unwrap_err();
    assert!(matches!(err, LockError::WrongType { .. }), "{err}");
    assert!(
        err.to_string().contains("hash") && err.to_string().contains("t:{h}"),
        "{err}"
    );
    cmd(&mut conn, &["SET", "t:{plain}", "forever"]).await;
    let err = a.lock("plain").acquire().await.unwrap_err();
    assert!(err.to_string().contains("without a TTL"), "{err}");
    assert_eq!(
        get(&mut conn, "t:{plain}").await.as_deref(),
        Some("forever")
    );
    // A free lock is granted without a fence; the bad counter is reported when the holder asks for
    // its fence, and no fence is issued. The lock stays held and releases normally.
    cmd(&mut conn, &["LPUSH", "t:fence", "x"]).await;
    let g = a.lock("c").acquire().await.unwrap();
    let err = g.fence().await.unwrap_err();
    assert!(
        matches!(err, LockError::WrongType { .. }) && err.to_string().contains("fence"),
        "{err}"
    );
    assert!(g.is_held());
    assert_eq!(server.cli(&["LLEN", "t:fence"]), "1");
    g.release().await.unwrap();
    assert_eq!(server.cli(&["EXISTS", "t:{c}"]), "0", "lock left behind");
    // A counter that holds a string but no fence is refused too, and left as it was.
    for bad in ["not-a-number", "-5", "1.5", "9007199254740993"] {
        cmd(&mut conn, &["DEL", "t:fence"]).await;
        cmd(&mut conn, &["SET", "t:fence", bad]).await;
        let g = a.lock("c").acquire().await.unwrap();
        let err = g.fence().await.unwrap_err();
        assert!(
            matches!(err, LockError::WrongType { .. }) && err.to_string().contains("whole number"),
            "{bad}: {err}"
        );
        assert_eq!(get(&mut conn, "t:fence").await.as_deref(), Some(bad));
        g.release().await.unwrap();
        assert_eq!(
            server.cli(&["EXISTS", "t:{c}"]),
            "0",
            "{bad}: lock left behind"
        );
    }
    // Repaired (here: ahead of the server clock, as after a failover from a server whose clock ran
    // ahead), the counter issues fences again, each one above the last.
    let ahead: u64 = 5_000_000_000_000_000;
    cmd(&mut conn, &["SET", "t:fence", &ahead.to_string()]).await;
    for n in 1..=3 {
        let g = a.lock("c").acquire().await.unwrap();
        assert_eq!(g.fence().await.unwrap(), ahead + n);
        g.release().await.unwrap();
    }
    assert_eq!(
        get(&mut conn, "t:fence").await.as_deref(),
        Some((ahead + 3).to_string().as_str())
    );
}

/// Malformed URLs are refused with the fix.
#[tokio::test]
async fn malformed_urls() {
    for (url, needle) in [
        ("", "empty"),
        ("localhost:6379", "missing scheme"),
        ("http://127.0.0.1:6379", "unsupported scheme"),
        ("redis://127.0.0.1:notaport", "redis://"),
        ("rediss://127.0.0.1:6380", "tls"),
    ] {
        let err = LockClient::builder().url(url).build().unwrap_err();
        assert!(matches!(err, LockError::InvalidUrl { .. }), "{url}: {err}");
        assert!(err.to_string().contains(needle), "{url}: {err}");
    }
    let err = LockClient::builder()
        .url("redis://user:secret@127.0.0.1:1/")
        .prefix("bad{")
        .build()
        .unwrap_err();
    assert!(matches!(err, LockError::InvalidOption(_)), "{err}");
    let err = LockClient::builder()
        .url("redis://user:secret@nohost.invalid:1/")
        .command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert!(
        !err.to_string().contains("secret"),
        "password leaked: {err}"
    );
}

/// Unix sockets work.
#[tokio::test]
async fn unix_socket_url() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("redis.sock");
    let sock_s = sock.to_str().unwrap().to_owned();
    let server = RedisServer::spawn_with(&["--unixsocket", &sock_s, "--unixsocketperm", "700"]);
    let a = LockClient::connect(&format!("unix://{sock_s}"))
        .await
        .unwrap();
    let g = a.lock("u").acquire().await.unwrap();
    assert_eq!(server.cli(&["EXISTS", "lockattr:{u}"]), "1");
    g.release().await.unwrap();
}

/// Four OS processes contend for one key: their hold intervals never overlap and fences increase in
/// the order the holds happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_never_overlap() {
    let server = RedisServer::spawn();
    let url = server.url();
    let args: Vec<&str> = [&url, "xproc", "15", "3"].to_vec();
    let holds =
        lockattr_tests::run_contenders_and_check(env!("CARGO_BIN_EXE_contender"), &args, 4).await;
    assert_eq!(holds, 60);
}

/// A password (with or without an ACL user) and a database number in the URL reach every command:
/// the lock calls' own connections authenticate and select the database as the shared one does. A
/// wrong password fails with the server's answer, and never shows the password.
#[tokio::test]
async fn password_user_and_database_reach_every_command() {
    let server = RedisServer::spawn_with(&[
        "--requirepass",
        "s3cret",
        "--user",
        "alice",
        "on",
        ">wonder",
        "~*",
        "&*",
        "+@all",
    ]);
    let port = server.port();
    let in_db = |db: &str, args: &[&str]| {
        let mut all = vec!["-a", "s3cret", "--no-auth-warning", "-n", db];
        all.extend_from_slice(args);
        server.cli(&all)
    };
    for (url, db) in [
        (format!("redis://:s3cret@127.0.0.1:{port}/3"), "3"),
        (format!("redis://alice:wonder@127.0.0.1:{port}/5"), "5"),
    ] {
        let a = LockClient::connect(&url).await.unwrap();
        let b = LockClient::connect(&url).await.unwrap();
        // Plain acquire and release, fence on request, the busy path through the lock script.
        let g = a.lock("auth").acquire().await.unwrap();
        assert_eq!(in_db(db, &["EXISTS", "lockattr:{auth}"]), "1", "{db}");
        assert_eq!(in_db("0", &["EXISTS", "lockattr:{auth}"]), "0", "{db}");
        let fence = g.fence().await.unwrap();
        assert!(fence > 0, "{db}");
        let busy = b.lock("auth").acquire().await.unwrap_err();
        assert!(matches!(busy, LockError::Busy { .. }), "{db}: {busy}");
        g.release().await.unwrap();
        assert_eq!(in_db(db, &["EXISTS", "lockattr:{auth}"]), "0", "{db}");
        // Many at once: the coalesced calls.
        let keys: Vec<String> = (0..64).map(|i| format!("auth:{i}")).collect();
        let guards = futures::future::join_all(keys.iter().map(|k| a.lock(k).acquire())).await;
        let guards: Vec<_> = guards.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            in_db(db, &["DBSIZE"]),
            "65",
            "{db}: 64 locks and the fence counter"
        );
        for r in futures::future::join_all(guards.into_iter().map(|g| g.release())).await {
            r.unwrap();
        }
        assert_eq!(in_db(db, &["DBSIZE"]), "1", "{db}: the fence counter");
    }
    let err = LockClient::connect(&format!("redis://:wrong-pw@127.0.0.1:{port}/3"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LockError::Backend { .. }), "{text}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("running and reachable"), "{text}");
    assert!(!text.contains("wrong-pw"), "password leaked: {text}");
}

/// The server drops every client connection (`CLIENT KILL TYPE normal`, as an idle-client `timeout`,
/// a proxy or a failover would) while the client sits idle: the next acquire, fence request, release
/// and renewal all succeed at their first try, on new connections, and a lock held with auto-renew
/// across it is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_while_idle_are_replaced_without_a_failed_call() {
    let server = RedisServer::spawn();
    let a = client(&server.url()).await;
    let held = a
        .lock("kept")
        .ttl(Duration::from_millis(900))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    for round in 0..3 {
        // Use every connection: the lock calls' own, and the shared one (fence, renewals).
        let g = a.lock("k").acquire().await.unwrap();
        g.fence().await.unwrap();
        g.release().await.unwrap();
        let killed: i64 = server
            .cli(&["CLIENT", "KILL", "TYPE", "normal"])
            .parse()
            .unwrap();
        assert!(killed >= 2, "round {round}: killed {killed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let g = a
            .lock("k")
            .acquire()
            .await
            .unwrap_or_else(|e| panic!("round {round}: first acquire after the kill: {e}"));
        g.fence()
            .await
            .unwrap_or_else(|e| panic!("round {round}: first fence after the kill: {e}"));
        g.release()
            .await
            .unwrap_or_else(|e| panic!("round {round}: first release after the kill: {e}"));
    }
    // Three renewal periods of the held lock passed across the kills.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(held.is_held(), "the auto-renewed lock was lost");
    assert_eq!(server.cli(&["EXISTS", "t:{kept}"]), "1");
    held.release().await.unwrap();
}
