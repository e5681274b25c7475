//! Host CPU and memory, measured with sysinfo only when the database runs on this machine.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sysinfo::System;

use super::metrics::Host;

/// What the host reading says when the server is elsewhere: this machine's CPU would mislead.
pub const REMOTE_HOST: &str = "remote host: not measured";

/// sysinfo needs this much time between two CPU refreshes for a meaningful figure.
const MIN_CPU_INTERVAL: Duration = Duration::from_millis(200);

/// True when the connection goes to this machine: a unix socket, localhost or a loopback address.
pub fn is_local(options: &PgConnectOptions) -> bool {
    if options.get_socket().is_some() {
        return true;
    }
    let host = options.get_host();
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Measures this machine's CPU and memory between calls.
#[derive(Debug)]
pub struct HostSampler {
    system: System,
    last_cpu_refresh: Instant,
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl HostSampler {
    pub fn new() -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        HostSampler {
            system,
            last_cpu_refresh: Instant::now(),
        }
    }

    /// How long until a CPU figure is meaningful (zero once 200 ms passed since the last).
    pub fn ready_in(&self) -> Duration {
        MIN_CPU_INTERVAL.saturating_sub(self.last_cpu_refresh.elapsed())
    }

    /// CPU use since the previous call (coarse when that was under 200 ms ago: wait
    /// [`HostSampler::ready_in`] before the first call), memory now.
    pub fn sample(&mut self) -> Host {
        self.system.refresh_cpu_usage();
        self.last_cpu_refresh = Instant::now();
        self.system.refresh_memory();
        Host {
            cpu_percent: f64::from(self.system.global_cpu_usage()),
            memory_used_bytes: self.system.used_memory(),
            memory_total_bytes: self.system.total_memory(),
            load_average_1m: System::load_average().one,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> PgConnectOptions {
        url.parse().expect("valid url")
    }

    #[test]
    fn only_loopback_and_sockets_are_local() {
        assert!(is_local(&options("postgres://u@localhost/db")));
        assert!(is_local(&options("postgres://u@127.0.0.1:5432/db")));
        assert!(is_local(&options("postgres://u@[::1]:5432/db")));
        assert!(is_local(&options(
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db"
        )));
        assert!(!is_local(&options("postgres://u@db.example.com/db")));
        assert!(!is_local(&options("postgres://u@10.0.0.5/db")));
    }

    #[test]
    fn the_host_sampler_reports_this_machine() {
        let mut sampler = HostSampler::new();
        assert!(sampler.ready_in() > Duration::ZERO);
        std::thread::sleep(sampler.ready_in());
        assert_eq!(sampler.ready_in(), Duration::ZERO);
        let host = sampler.sample();
        assert!(host.memory_total_bytes > 0);
        assert!((0.0..=100.0).contains(&host.cpu_percent), "{host:?}");
    }
}
