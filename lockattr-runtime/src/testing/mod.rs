//! Test harness: real `redis-server` processes and a fault-injecting TCP proxy.
//!
//! Compiled only with the crate feature `test-util`. Everything here is meant for tests: failures
//! panic with a clear message that includes the server log, and the few blocking calls (spawning a
//! server, waiting for readiness, running `redis-cli`) block the calling thread for a short time.
//!
//! - [`RedisServer`] starts a real `redis-server` child on a free loopback port in its own temporary
//!   directory, waits until it answers `PING`, and kills it on drop. It can be paused (`SIGSTOP`),
//!   resumed, killed and restarted on the same port with all data lost.
//! - [`RedisCluster`] (3 primaries, 3 replicas) and [`RedisSentinels`] (a primary, a replica, 3
//!   Sentinels) start replicated deployments with short failover timeouts, for the Cluster and
//!   Sentinel backends.
//! - [`TlsCert`] makes a throw-away certificate; servers, clusters and Sentinel groups started with it
//!   also listen on TLS ports, for `rediss://` tests.
//! - [`FaultProxy`] sits between a client and a server and can delay, blackhole, refuse or cut
//!   connections. It runs on its own thread with its own tokio runtime, so it keeps working even
//!   when the test's runtime is blocked.
//!
//! The binaries are taken from the environment variables `LOCKATTR_REDIS_SERVER` and
//! `LOCKATTR_REDIS_CLI`, or else `redis-server` and `redis-cli` on `PATH`.
//!
//! ```no_run
//! use lockattr_runtime::testing::{FaultProxy, RedisServer};
//! use std::time::Duration;
//!
//! let server = RedisServer::spawn();
//! assert_eq!(server.cli(&["PING"]), "PONG");
//! let proxy = FaultProxy::start(server.addr());
//! proxy.set_delay(Duration::from_millis(50));
//! // connect the client under test to `proxy.url()` ...
//! ```

mod proxy;
mod replicated;
mod server;
mod tls;

pub use proxy::FaultProxy;
pub use replicated::{RedisCluster, RedisSentinels};
pub use server::{free_port, redis_server_available, RedisServer};
pub use tls::TlsCert;
