//! Scenario 4's worker: hold many locks at once with auto-renewal, in a process of its own so its CPU
//! time and resident memory are its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use distributed_lock_core::traits::{DistributedLock, LockProvider};
use tokio::sync::watch;

use crate::contenders::Contender;

/// Locks held until dropped (or, for rslock, until `stop` is sent).
pub enum Held {
    /// lockattr guards (the client's one watchdog renews them).
    Guards(Vec<lockattr_runtime::LockGuard>),
    /// distributed-lock handles (each runs its own extension task).
    DLock(Vec<distributed_lock_redis::RedisLockHandle>),
    /// rslock `using(..)` calls, one task each (rslock extends inside `using`).
    Rslock {
        /// The tasks.
        tasks: Vec<tokio::task::JoinHandle<()>>,
        /// Ends the routines (and so the locks).
        stop: watch::Sender<bool>,
    },
}

impl Held {
    /// How many locks.
    pub fn len(&self) -> usize {
        match self {
            Held::Guards(g) => g.len(),
            Held::DLock(h) => h.len(),
            Held::Rslock { tasks, .. } => tasks.len(),
        }
    }

    /// True when none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Take `n` locks named `{prefix}:{i}` with `ttl` and auto-renewal, `concurrency` acquisitions at a time.
pub async fn hold_many(
    contender: &Contender,
    prefix: &str,
    n: usize,
    ttl: Duration,
    concurrency: usize,
) -> Result<Held, String> {
    let concurrency = concurrency.clamp(1, n.max(1));
    match contender {
        Contender::Lockattr(_, client, _) => {
            let mut tasks = Vec::new();
            for j in 0..concurrency {
                let client = client.clone();
                let prefix = prefix.to_owned();
                tasks.push(tokio::spawn(async move {
                    let mut out = Vec::with_capacity(n / concurrency + 1);
                    for i in (j..n).step_by(concurrency) {
                        let g = client
                            .lock(format!("{prefix}:{i}"))
                            .ttl(ttl)
                            .auto_renew(true)
                            .acquire()
                            .await
                            .map_err(|e| e.to_string())?;
                        out.push(g);
                    }
                    Ok::<_, String>(out)
                }));
            }
            let mut all = Vec::with_capacity(n);
            for t in tasks {
                all.extend(t.await.map_err(|e| e.to_string())??);
            }
            Ok(Held::Guards(all))
        }
        Contender::DLock(provider) => {
            let provider = Arc::new(provider);
            let mut all = Vec::with_capacity(n);
            let futs = (0..concurrency).map(|j| {
                let provider = provider.clone();
                async move {
                    let mut out = Vec::with_capacity(n / concurrency + 1);
                    for i in (j..n).step_by(concurrency) {
                        // The key is free, but distributed-lock reports "not acquired" when the
                        // grant came back with less than its minimum validity left (a slow round
                        // trip on a loaded machine): try again until the key's TTL has surely run
                        // out.
                        let give_up = std::time::Instant::now() + ttl * 3;
                        let h = loop {
                            let lock = provider.create_lock(&format!("{prefix}:{i}"));
                            if let Some(h) = lock.try_acquire().await.map_err(|e| e.to_string())? {
                                break h;
                            }
                            if std::time::Instant::now() > give_up {
                                return Err(format!("{prefix}:{i} was busy"));
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        };
                        out.push(h);
                    }
                    Ok::<_, String>(out)
                }
            });
            for r in futures::future::join_all(futs).await {
                all.extend(r?);
            }
            Ok(Held::DLock(all))
        }
        Contender::Rslock(manager) => {
            let (stop, stop_rx) = watch::channel(false);
            let started = Arc::new(AtomicUsize::new(0));
            let (all_in, mut all_in_rx) = watch::channel(false);
            let all_in = Arc::new(all_in);
            let mut tasks = Vec::with_capacity(n);
            let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
            for i in 0..n {
                let manager = manager.clone();
                let mut stop_rx = stop_rx.clone();
                let started = started.clone();
                let all_in = all_in.clone();
                let key = format!("{prefix}:{i}");
                let permit = gate
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| e.to_string())?;
                tasks.push(tokio::spawn(async move {
                    let mut permit = Some(permit);
                    let routine = || async move {
                        drop(permit.take());
                        if started.fetch_add(1, Ordering::AcqRel) + 1 == n {
                            let _ = all_in.send(true);
                        }
                        let _ = stop_rx.wait_for(|s| *s).await;
                    };
                    let _ = manager.using(key.as_bytes(), ttl, routine).await;
                }));
            }
            all_in_rx
                .wait_for(|v| *v)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Held::Rslock { tasks, stop })
        }
        Contender::Floor { .. } | Contender::FloorWire(_) => Err("the floor has no renewal".into()),
    }
}
