//! The binary's allocator (the library leaves the choice to whoever links it): mimalloc, and
//! giving back to the system what a burst of connections freed.
//!
//! With glibc's allocator the server's memory grew steadily under connection churn (5 to 9 MiB a
//! minute with 10 000 churning connections, even with `malloc_trim` every 5 s); with mimalloc it
//! stays flat. But mimalloc returns a thread's free pages only when that thread collects, and a
//! worker that goes idle after a burst never does: the RSS stayed at the peak (113 MiB after 10 000
//! connections had closed, against 18 MiB before). So after the number of connections has
//! dropped by a burst's worth, each tokio worker collects its heap once, the next time it parks
//! (it has nothing to do then). Not on a timer: collecting while a steady load goes on would give
//! back pages that are taken again at once.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often the number of connections is looked at (an atomic load): often enough to see the
/// peak of any burst worth collecting after.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// A drop of at least this many connections (and a quarter of the peak) is a burst's end.
const BURST: usize = 256;

/// Bumped when a burst has ended; a worker that has not collected in this epoch does so when
/// it parks.
static EPOCH: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COLLECTED: Cell<u64> = const { Cell::new(0) };
}

/// The multi-threaded runtime, with its workers collecting when they park.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(|| {
            let epoch = EPOCH.load(Ordering::Relaxed);
            if COLLECTED.get() != epoch {
                COLLECTED.set(epoch);
                // SAFETY: collects the calling thread's own heap; callable at any time.
                unsafe { libmimalloc_sys::mi_collect(true) };
            }
        })
        .build()
}

/// Starts an epoch whenever the connections (`gauge`) fell by a burst since the last one.
/// Runs for the life of the runtime.
pub async fn collect_after_bursts(gauge: impl Fn() -> usize) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut high = 0;
    loop {
        tick.tick().await;
        let now = gauge();
        high = high.max(now);
        if high - now < BURST.max(high / 4) {
            continue;
        }
        high = now;
        EPOCH.fetch_add(1, Ordering::Relaxed);
        // Idle workers sleep until there is work: a few empty tasks wake them, and each parks
        // (and collects) again once they are done.
        for _ in 0..4 {
            tokio::spawn(async {});
        }
    }
}
