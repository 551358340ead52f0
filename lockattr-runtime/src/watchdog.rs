//! One renewal task per client. It keeps every held lease on a timeline, renews all leases that are due
//! in one batched, owner-checked call per backend round trip, and tells a holder the moment its lease is
//! gone: when a renewal answers "not yours", or when the lease's local deadline (send time of the last
//! confirmed renewal + validity - safety margin, on the monotonic clock) passes without confirmation.
//!
//! It never renews a lease after it was released, dropped or cancelled: unregistering is synchronous and
//! happens before the release command is sent, and a renewal already in flight is owner-checked on the
//! server, so it cannot extend a key that was deleted or taken over.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backend::{Backend, RenewItem, Renewed};
use crate::error::{BackendError, LostReason};
use crate::lease::{LeaseCore, Local};

/// Most leases renewed by one backend call.
const MAX_BATCH: usize = 512;

/// A fast hasher for small integer keys (lease ids, task ids) and short strings: a multiply-rotate
/// mix in the style of rustc's FxHash. Not DoS-resistant, which is fine for keys this process makes.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

struct Entry {
    core: Arc<LeaseCore>,
    gen: u32,
    renew_at: Option<Instant>,
    in_flight: bool,
    /// How early its renewal may go out (see [`coalesce_window`]); kept here so that scanning the
    /// timeline does not read the lease itself.
    window: Duration,
}

impl Entry {
    fn next_event(&self) -> Instant {
        let deadline = self.core.deadline();
        match (self.renew_at, self.in_flight) {
            (Some(r), false) if r < deadline => r,
            _ => deadline,
        }
    }
}

/// The watched leases, in a slab: a lease's index travels with its events and its renewal batch, so
/// neither scanning the timeline nor answering a batch hashes a lease id (with 100,000 leases each
/// probe of a hash map read cold cache lines). A freed index is reused; the generation of an entry
/// put in a reused index continues after its predecessor's, so the predecessor's stale events and
/// batches never match it.
#[derive(Default)]
struct Slab {
    /// Per index: the last generation used there, and the entry (`None` while free).
    slots: Vec<(u32, Option<Entry>)>,
    free: Vec<usize>,
    len: usize,
}

impl Slab {
    /// Store `entry`; returns its index.
    fn insert(&mut self, mut entry: Entry) -> u64 {
        let idx = match self.free.pop() {
            Some(idx) => idx,
            None => {
                self.slots.push((0, None));
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[idx];
        entry.gen = slot.0.wrapping_add(1);
        slot.1 = Some(entry);
        self.len += 1;
        idx as u64
    }

    fn get_mut(&mut self, idx: u64) -> Option<&mut Entry> {
        self.slots.get_mut(idx as usize)?.1.as_mut()
    }

    fn remove(&mut self, idx: u64) -> Option<Entry> {
        let slot = self.slots.get_mut(idx as usize)?;
        let entry = slot.1.take()?;
        slot.0 = entry.gen;
        self.free.push(idx as usize);
        self.len -= 1;
        Some(entry)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, (_, e))| Some((i as u64, e.as_ref()?)))
    }
}

/// A lease event: when, the lease's index in the [`Slab`], generation (an event whose generation is
/// not the entry's is stale).
type Event = (Instant, u64, u32);

/// Lease events by time, in slots of one millisecond: a sorted map of slots, each an unsorted list of
/// events. With 100,000 leases a binary heap of events spans megabytes, and each pop walks its height
/// through cold cache lines; here the due events are read slot by slot, in order. A new event is
/// first appended to a list of recent events and sorted into its slot when the watchdog task next
/// looks: registering a lease (often released long before its first event) stays one `push`.
struct Timeline {
    origin: Instant,
    slots: BTreeMap<u64, Vec<Event>>,
    /// Events not sorted into their slots yet.
    recent: Vec<Event>,
    len: usize,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            origin: Instant::now(),
            slots: BTreeMap::new(),
            recent: Vec::new(),
            len: 0,
        }
    }
}

impl Timeline {
    /// The slot of `at`: whole milliseconds since the origin (no 128-bit division on this path).
    fn slot(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        since.as_secs() * 1000 + u64::from(since.subsec_millis())
    }

    fn push(&mut self, event: Event) {
        self.recent.push(event);
        self.len += 1;
    }

    /// Sort the recent events into their slots.
    fn settle(&mut self) {
        let mut recent = std::mem::take(&mut self.recent);
        for event in recent.drain(..) {
            let slot = self.slot(event.0);
            self.slots.entry(slot).or_default().push(event);
        }
        // Keep the list's buffer for the next events.
        self.recent = recent;
    }

    /// Events queued, stale ones included.
    fn len(&self) -> usize {
        self.len
    }

    /// The time of the earliest event.
    fn first(&mut self) -> Option<Instant> {
        self.settle();
        let (_, events) = self.slots.first_key_value()?;
        events.iter().map(|e| e.0).min()
    }

    /// Take the events of the earliest slot if it begins at or before `until` (its events may be up to
    /// one slot later than `until`).
    fn take_first(&mut self, until: Instant) -> Option<Vec<Event>> {
        self.settle();
        let (&slot, _) = self.slots.first_key_value()?;
        if slot > self.slot(until) {
            return None;
        }
        let events = self.slots.pop_first()?.1;
        self.len -= events.len();
        Some(events)
    }

    /// Replace every event with `events`.
    fn rebuild(&mut self, events: impl Iterator<Item = Event>) {
        self.slots.clear();
        self.recent.clear();
        self.len = 0;
        for e in events {
            self.push(e);
        }
    }
}

#[derive(Default)]
struct State {
    entries: Slab,
    /// Events by time. Events of leases that were unregistered (or rescheduled: older `gen`) stay until
    /// their time comes or the timeline is compacted.
    timeline: Timeline,
    /// When the task will next look at the timeline by itself (`None`: it waits for a wake-up). A new lease
    /// whose first event comes later needs no wake-up: registering stays off the task's path.
    next_wake: Option<Instant>,
}

/// Queue the next event of entry `id`; returns its time.
fn push_event(timeline: &mut Timeline, id: u64, e: &mut Entry) -> Instant {
    e.gen = e.gen.wrapping_add(1);
    let at = e.next_event();
    timeline.push((at, id, e.gen));
    at
}

impl State {
    /// Queue the next event of `id`; returns its time.
    fn schedule(&mut self, id: u64) -> Option<Instant> {
        let e = self.entries.get_mut(id)?;
        Some(push_event(&mut self.timeline, id, e))
    }

    /// Drop the stale events once they outnumber the live ones (long-held locks would otherwise keep
    /// every short-lived lock's event behind them). Amortised O(1) per event.
    fn compact_if_needed(&mut self) {
        if self.timeline.len() <= 2 * self.entries.len() + 1024 {
            return;
        }
        let entries = &self.entries;
        self.timeline
            .rebuild(entries.iter().map(|(id, e)| (e.next_event(), id, e.gen)));
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    backend: Arc<dyn Backend>,
    /// The client's local bookkeeping, told of every loss (see [`Local::mark_lost`]).
    local: Arc<Local>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The per-client renewal watchdog (see the module docs).
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
}

impl Watchdog {
    pub(crate) fn new(backend: Arc<dyn Backend>, local: Arc<Local>) -> Watchdog {
        Watchdog {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                backend,
                local,
                task: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shared.state().entries.len()
    }

    /// Track a freshly acquired lease: renew it every ttl/3 when `auto_renew`, and signal loss at its
    /// deadline. Returns the lease's index, for [`unregister`](Self::unregister).
    pub(crate) fn register(&self, core: Arc<LeaseCore>, rt: &tokio::runtime::Handle) -> u64 {
        let renew_at = core
            .auto_renew
            .then(|| core.acquired_at + core.renew_every());
        let (id, wake) = {
            let mut st = self.shared.state();
            let id = st.entries.insert(Entry {
                window: coalesce_window(core.ttl),
                core,
                gen: 0,
                renew_at,
                in_flight: false,
            });
            st.compact_if_needed();
            let at = st.schedule(id);
            // Wake the task only when this lease's first event comes before the task looks anyway.
            let wake = match (at, st.next_wake) {
                (Some(at), Some(next)) if at >= next => false,
                (Some(at), _) => {
                    st.next_wake = Some(at);
                    true
                }
                (None, _) => false,
            };
            (id, wake)
        };
        if self.ensure_task(rt) || wake {
            self.shared.wake.notify_one();
        }
        id
    }

    /// Stop tracking the lease `lease_id` that [`register`](Self::register) put at `index` (release,
    /// drop, loss). Synchronous: after this returns no new renewal of it is sent.
    pub(crate) fn unregister(&self, index: u64, lease_id: u64) {
        let mut st = self.shared.state();
        if st
            .entries
            .get_mut(index)
            .is_some_and(|e| e.core.id == lease_id)
        {
            st.entries.remove(index);
        }
    }

    /// Start the task if it is not running (first lease, or its runtime has gone). Returns whether it
    /// was started.
    fn ensure_task(&self, rt: &tokio::runtime::Handle) -> bool {
        let mut task = self.shared.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return false;
        }
        *task = Some(rt.spawn(run(self.shared.clone())));
        true
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(t) = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

/// Retry delay after a failed renewal round trip (still well inside the deadline).
fn retry_delay(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// The widest [`coalesce_window`].
const MAX_WINDOW: Duration = Duration::from_millis(50);

/// Renewals due within this window are sent together (early by at most this much).
fn coalesce_window(ttl: Duration) -> Duration {
    (ttl / 20).min(MAX_WINDOW)
}

/// Leases to renew in one call, each with its index in the [`Slab`].
type Batch = Vec<(u64, Arc<LeaseCore>)>;

/// The task holds the shared state; [`Watchdog`]'s `Drop` aborts it.
async fn run(shared: Arc<Shared>) {
    loop {
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (batches, next) = collect_due(&shared);
        for batch in batches {
            let shared2 = shared.clone();
            tokio::spawn(renew_batch(shared2, batch));
        }
        match next {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = &mut notified => {}
                }
            }
            None => notified.await,
        }
    }
}

/// Take every due event: leases past their deadline are told they are lost; leases due for renewal
/// are grouped into batches. Returns the batches and the time of the next event.
///
/// A lease whose renewal is in flight has no event on the timeline: its batch ends (answered, failed,
/// or cut off at the earliest deadline of the batch, see [`renew_batch`]) and queues it again. That
/// keeps renewal at one event per lease and period.
fn collect_due(shared: &Shared) -> (Vec<Batch>, Option<Instant>) {
    let now = Instant::now();
    let mut guard = shared.state();
    let st = &mut *guard;
    let mut due: Batch = Vec::new();
    let mut requeue = Vec::new();
    let mut lost = Vec::new();
    // No event later than the widest coalescing window can be due.
    let horizon = now + MAX_WINDOW;
    while let Some(events) = st.timeline.take_first(horizon) {
        let mut kept = false;
        for (when, id, gen) in events {
            let Some(e) = st
                .entries
                .get_mut(id)
                .filter(|e| e.gen == gen && !e.in_flight)
            else {
                // Stale: unregistered, rescheduled, or in flight.
                continue;
            };
            if when > now + e.window {
                st.timeline.push((when, id, gen));
                kept = true;
                continue;
            }
            if e.core.deadline() <= now {
                lost.push(id);
                continue;
            }
            match e.renew_at {
                Some(r) if r <= now + e.window => {
                    e.in_flight = true;
                    due.push((id, e.core.clone()));
                }
                _ => requeue.push(id),
            }
        }
        if kept {
            // An event of this slot is not due yet: later slots wait for the next look.
            break;
        }
    }
    for id in lost {
        if let Some(e) = st.entries.remove(id) {
            let reason = if e.core.auto_renew {
                LostReason::DeadlineExpired
            } else {
                LostReason::TtlElapsed
            };
            shared.local.mark_lost(&e.core, reason);
        }
    }
    for id in requeue {
        st.schedule(id);
    }
    let next = st.timeline.first();
    st.next_wake = next;
    drop(guard);
    let mut batches = Vec::with_capacity(due.len().div_ceil(MAX_BATCH));
    let mut due = due.into_iter();
    while due.len() > 0 {
        batches.push(due.by_ref().take(MAX_BATCH).collect());
    }
    (batches, next)
}

/// Renew one batch and queue its leases again. The call is cut off at the earliest deadline of the batch
/// (the leases are not on the timeline meanwhile), so a stalled backend still ends in a loss signal on time.
async fn renew_batch(shared: Arc<Shared>, batch: Batch) {
    let sent = Instant::now();
    let cutoff = batch
        .iter()
        .map(|(_, c)| c.deadline())
        .min()
        .unwrap_or(sent);
    let items: Vec<RenewItem<'_>> = batch
        .iter()
        .map(|(_, c)| RenewItem {
            name: &c.name,
            token: c.token.as_str(),
            ttl: c.ttl,
        })
        .collect();
    let result = match tokio::time::timeout_at(cutoff, shared.backend.renew(&items)).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::unavailable(
            "no renewal answer before the earliest lease deadline of the batch",
        )),
    };
    drop(items);
    let mut guard = shared.state();
    let st = &mut *guard;
    match result {
        Ok(outcomes) => {
            for ((idx, core), outcome) in batch.iter().zip(outcomes) {
                let Some(e) = st
                    .entries
                    .get_mut(*idx)
                    .filter(|e| Arc::ptr_eq(&e.core, core))
                else {
                    continue;
                };
                e.in_flight = false;
                match outcome {
                    Renewed::Extended(validity) => {
                        core.extend(sent + validity);
                        e.renew_at = Some(sent + core.renew_every());
                        tracing::trace!(key = %core.name.key, fence = ?core.issued_fence(), "lockattr: renewed");
                    }
                    Renewed::NotHeld => {
                        st.entries.remove(*idx);
                        shared.local.mark_lost(core, LostReason::NotOwner);
                        continue;
                    }
                }
                push_event(&mut st.timeline, *idx, e);
            }
        }
        Err(err) => {
            let now = Instant::now();
            for (idx, core) in &batch {
                let Some(e) = st
                    .entries
                    .get_mut(*idx)
                    .filter(|e| Arc::ptr_eq(&e.core, core))
                else {
                    continue;
                };
                e.in_flight = false;
                e.renew_at = Some(now + retry_delay(core.ttl));
                tracing::debug!(key = %core.name.key, error = %err, "lockattr: renewal failed; retrying inside the deadline");
                push_event(&mut st.timeline, *idx, e);
            }
        }
    }
    drop(guard);
    shared.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::{Entry, Slab, Timeline};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn slab_reuses_an_index_with_a_later_generation() {
        let client = crate::LockClient::memory();
        let a = client.lock("a").acquire().await.unwrap();
        let b = client.lock("b").acquire().await.unwrap();
        let entry = |g: &crate::LockGuard| Entry {
            core: g.core().clone(),
            gen: 0,
            renew_at: None,
            in_flight: false,
            window: Duration::ZERO,
        };
        let mut slab = Slab::default();
        let i = slab.insert(entry(&a));
        let gen_a = slab.get_mut(i).unwrap().gen;
        assert!(slab.remove(i).is_some());
        assert!(slab.get_mut(i).is_none());
        assert!(slab.remove(i).is_none(), "removed once");
        assert_eq!(slab.len(), 0);
        // The freed index is reused, with a generation after the one its predecessor had: events
        // queued for `a` do not match `b`.
        let j = slab.insert(entry(&b));
        assert_eq!(i, j);
        let e = slab.get_mut(j).unwrap();
        assert!(e.gen > gen_a, "{} after {gen_a}", e.gen);
        assert!(Arc::ptr_eq(&e.core, b.core()));
        let k = slab.insert(entry(&a));
        assert_ne!(k, j);
        assert_eq!(slab.len(), 2);
        let mut live: Vec<u64> = slab.iter().map(|(i, _)| i).collect();
        live.sort_unstable();
        assert_eq!(live, vec![j.min(k), j.max(k)]);
    }

    #[tokio::test]
    async fn unregister_leaves_a_reused_index_to_its_new_lease() {
        let client = crate::LockClient::memory();
        let a = client.lock("a").auto_renew(true).acquire().await.unwrap();
        let watchdog = &client.inner.watchdog;
        assert_eq!(watchdog.len(), 1);
        // An unregister that names another lease at that index does nothing.
        watchdog.unregister(0, a.core().id + 1000);
        assert_eq!(watchdog.len(), 1);
        a.release().await.unwrap();
        assert_eq!(watchdog.len(), 0);
        let b = client.lock("b").acquire().await.unwrap();
        assert_eq!(watchdog.len(), 1);
        assert!(b.is_held());
    }

    #[test]
    fn timeline_hands_out_slots_in_time_order() {
        let mut t = Timeline::default();
        let o = t.origin;
        let ms = Duration::from_millis;
        for (i, at) in [
            ms(30),
            ms(5),
            ms(5) + Duration::from_micros(500),
            ms(12),
            ms(5),
        ]
        .into_iter()
        .enumerate()
        {
            t.push((o + at, i as u64, 0));
        }
        assert_eq!(t.len(), 5);
        assert_eq!(t.first(), Some(o + ms(5)));
        // Nothing begins before 5 ms.
        assert!(t.take_first(o + ms(4)).is_none());
        // The 5 ms slot holds three events (one half a slot later).
        let mut first = t.take_first(o + ms(5)).unwrap();
        first.sort();
        assert_eq!(first.iter().map(|e| e.1).collect::<Vec<_>>(), vec![1, 4, 2]);
        assert_eq!(t.len(), 2);
        assert!(t.take_first(o + ms(11)).is_none());
        assert_eq!(t.take_first(o + ms(100)).unwrap(), vec![(o + ms(12), 3, 0)]);
        assert_eq!(t.first(), Some(o + ms(30)));
        // An event before the origin goes to the first slot.
        t.push((o - ms(1), 9, 1));
        assert_eq!(t.first(), Some(o - ms(1)));
        t.rebuild([(o + ms(7), 1, 2)].into_iter());
        assert_eq!(t.len(), 1);
        assert_eq!(t.take_first(o + ms(7)).unwrap(), vec![(o + ms(7), 1, 2)]);
        assert!(t.first().is_none() && t.len() == 0);
    }
}
