//! tracer's own CPU use, for the header: the cost of watching must be visible.

use std::time::Instant;

/// Measures this process's CPU time (user + system, all threads) between calls.
pub struct CpuMeter {
    last_cpu_ns: u64,
    last_wall: Instant,
}

fn process_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn new() -> Self {
        Self {
            last_cpu_ns: process_cpu_ns(),
            last_wall: Instant::now(),
        }
    }

    /// CPU use since the last call, in percent of one core; `None` when too
    /// little time has passed to say.
    pub fn sample(&mut self) -> Option<f64> {
        let wall_ns = self.last_wall.elapsed().as_nanos() as u64;
        if wall_ns < 200_000_000 {
            return None;
        }
        let cpu_ns = process_cpu_ns();
        let percent = cpu_ns.saturating_sub(self.last_cpu_ns) as f64 * 100.0 / wall_ns as f64;
        self.last_cpu_ns = cpu_ns;
        self.last_wall = Instant::now();
        Some(percent)
    }
}
