//! CPU time per thread of this process, from Linux's `/proc/self/task/<tid>/schedstat` (time on
//! a CPU, nanoseconds) and `comm` (the thread's name): where a benchmark's CPU time went —
//! the caller, the component actor, the io actor.
//!
//! Take a [`Snapshot`] once every thread to be measured is running and another before any of
//! them stops; [`Snapshot::since`] matches threads by id, so threads started or stopped between
//! the two are left out. Where `/proc` has no schedstat (not Linux, or a kernel without
//! scheduler statistics), snapshots are empty and every figure is zero.

use std::collections::BTreeMap;
use std::fs;

/// CPU time of every thread of the process at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// (thread id, name, nanoseconds on a CPU)
    threads: Vec<(u32, String, u64)>,
}

impl Snapshot {
    pub fn take() -> Snapshot {
        let Ok(tasks) = fs::read_dir("/proc/self/task") else {
            return Snapshot::default();
        };
        let threads = tasks
            .flatten()
            .filter_map(|task| {
                let tid: u32 = task.file_name().to_str()?.parse().ok()?;
                let schedstat = fs::read_to_string(task.path().join("schedstat")).ok()?;
                let nanoseconds: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
                let name = fs::read_to_string(task.path().join("comm")).ok()?;
                Some((tid, name.trim().to_string(), nanoseconds))
            })
            .collect();
        Snapshot { threads }
    }

    /// CPU time (ns) each thread name used since `earlier`, summed over the threads of that name
    /// alive in both snapshots.
    pub fn since(&self, earlier: &Snapshot) -> BTreeMap<String, u64> {
        let mut used = BTreeMap::new();
        for (tid, name, nanoseconds) in &self.threads {
            let Some((_, _, before)) = earlier
                .threads
                .iter()
                .find(|(t, n, _)| t == tid && n == name)
            else {
                continue;
            };
            *used.entry(name.clone()).or_insert(0) += nanoseconds.saturating_sub(*before);
        }
        used
    }
}

/// The name of the calling thread as `/proc` shows it (the process's name for the main thread).
pub fn current_thread_name() -> String {
    fs::read_to_string("/proc/thread-self/comm")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_shows_its_cpu_time_under_its_name() {
        let before = Snapshot::take();
        if before.threads.is_empty() {
            return; // no schedstat here
        }
        let name = current_thread_name();
        let start = std::time::Instant::now();
        let mut spin = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(30) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let used = Snapshot::take().since(&before);
        assert!(
            used.get(&name).copied().unwrap_or(0) >= 10_000_000,
            "{used:?}"
        );
    }
}
