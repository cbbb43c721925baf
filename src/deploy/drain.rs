//! `--drain auto`: after the switch, the drain ends as soon as the routers demonstrably stopped
//! sending the old version traffic, instead of always waiting the fixed `--drain` time (which
//! stays the maximum).
//!
//! The drain ends when all of these hold:
//!
//! 1. the floor ([`FLOOR`]) has passed since the drain began;
//! 2. the route change is visible: for every production route the old app was unmapped from,
//!    a request with `X-Cf-App-Instance: <old app guid>:<index>` is refused by the router
//!    (`X-Cf-Routererror: unknown_route`, 404 or 400 depending on the gorouter version) for
//!    every instance index, in [`REFUSED_ROUNDS`] consecutive rounds of probes;
//! 3. the old app is quiet: no new gorouter request record (log-cache `http` timers) reached
//!    the old app for [`QUIET`].
//!
//! Why a floor, and why these numbers. A foundation runs several gorouters behind a load
//! balancer; they all learn of the unmap from the same route-emitter / NATS message, usually
//! within 1–3 s of the Cloud Controller change. One probe reaches one router, so even several
//! refused probes in a row prove only that the routers we happened to reach dropped the old
//! app. The floor covers the routers the probes did not see: 2 s after the unmap, which
//! together with the probes (the first router to drop the app is seldom much earlier than
//! the last) and the quiet period (no router at all sent the old app a request for 1 s, as
//! the log-cache records of every router show) is enough in practice. Without log-cache
//! (absent or forbidden) nothing shows what the other routers do: the floor is then
//! [`FLOOR_WITHOUT_LOGS`] (4 s). An app with no traffic at all is quiet at once: the floor alone
//! then covers route propagation. The quiet period cannot see a request still in progress
//! (gorouter writes its record when the request ends): those are the app's graceful shutdown
//! to finish (Cloud Foundry gives a stopped instance 10 s after SIGTERM).
//!
//! Fallback: when a route cannot be probed (a TCP route, a wildcard host, the router does not
//! answer, it rejects the header), the drain is the fixed maximum, and the reason is said.
//!
//! This module holds the decision ([`Gauge`]), the classification of a probe's answer
//! ([`classify`]) and the probe itself ([`Prober`]); the step handler is in
//! `execute/drain.rs`.
//!
//! Depends on: reqwest, deploy::{request, step}. Must not: print.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::api::AppGuid;
use super::request::ProbeConfig;
use super::step::fmt_duration;

/// The shortest auto drain when log-cache shows the old app's requests.
pub const FLOOR: Duration = Duration::from_secs(2);
/// The shortest auto drain when log-cache is unavailable (nothing shows what the routers the
/// probes did not reach are doing).
pub const FLOOR_WITHOUT_LOGS: Duration = Duration::from_secs(4);
/// How long no request may have reached the old app.
pub const QUIET: Duration = Duration::from_secs(1);
/// Consecutive rounds in which every probe must be refused (each round may reach another
/// router behind the load balancer).
pub const REFUSED_ROUNDS: u32 = 3;
/// The pause between two rounds of probes and log reads.
pub const ROUND_PAUSE: Duration = Duration::from_millis(250);
/// At most this many instance indices of one old app are probed per round.
pub const MAX_PROBED_INSTANCES: u32 = 16;
/// The timeout of one probe request: a refusal is immediate, an answer from the old app that
/// takes longer still means the router sent the request there.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The router header that pins a request to one instance of one app.
pub const APP_INSTANCE_HEADER: &str = "X-Cf-App-Instance";

/// What one probe with [`APP_INSTANCE_HEADER`] showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// The router no longer has that instance for the route.
    Refused,
    /// The router still sent the request to the old instance (any other answer).
    Routed,
    /// The probe cannot tell (the router is unreachable, rejects the header): why.
    Unusable(String),
}

/// Classifies a router's answer to a probe by its status and `X-Cf-Routererror` header.
pub fn classify(status: u16, router_error: Option<&str>) -> ProbeAnswer {
    match router_error.map(str::trim) {
        Some("unknown_route") if status == 404 || status == 400 => ProbeAnswer::Refused,
        Some(e @ "invalid_cf_app_instance_header") => ProbeAnswer::Unusable(format!(
            "the router rejected the {APP_INSTANCE_HEADER} header ({status}, {e})"
        )),
        _ => ProbeAnswer::Routed,
    }
}

/// What the log-cache reads showed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logs {
    /// Not read yet.
    Unknown,
    /// Readable: the newest request record seen, and when (drain time) it last changed.
    Read {
        newest: Option<SystemTime>,
        traffic_at: Option<Duration>,
    },
    /// log-cache is absent or forbidden.
    Unavailable,
}

/// Whether the drain may end, and if not, what it still waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep draining; what is still missing (a `Waiting` detail).
    Wait(String),
    /// The drain may end: why (the reason reported).
    Done(String),
}

/// The decision of an auto drain, fed with the probe rounds and log reads (times are since the
/// drain began, on the client's clock; record times are only compared with each other, so a
/// skewed platform clock does not matter).
#[derive(Debug, Clone)]
pub struct Gauge {
    max: Duration,
    refused_rounds: u32,
    /// No route to probe: the route condition holds by itself.
    nothing_to_probe: bool,
    logs: Logs,
}

impl Gauge {
    /// A drain of at most `max`; `probed` says whether any route is probed at all.
    pub fn new(max: Duration, probed: bool) -> Self {
        Gauge {
            max,
            refused_rounds: 0,
            nothing_to_probe: !probed,
            logs: Logs::Unknown,
        }
    }

    /// One round of probes ended: every probe refused, or not.
    pub fn probe_round(&mut self, all_refused: bool) {
        self.refused_rounds = if all_refused {
            self.refused_rounds.saturating_add(1)
        } else {
            0
        };
    }

    /// One log read at drain time `at` found `newest` as the newest request record of the old
    /// app(s). The first read, and every read that finds a newer record, counts as traffic at
    /// `at` (the client cannot place the platform's timestamps on its own clock).
    pub fn log_read(&mut self, at: Duration, newest: Option<SystemTime>) {
        self.logs = match self.logs {
            Logs::Unavailable => Logs::Unavailable,
            Logs::Unknown => Logs::Read {
                newest,
                traffic_at: newest.map(|_| at),
            },
            Logs::Read {
                newest: seen,
                traffic_at,
            } => {
                if newest.is_some() && newest > seen {
                    Logs::Read {
                        newest,
                        traffic_at: Some(at),
                    }
                } else {
                    Logs::Read {
                        newest: seen,
                        traffic_at,
                    }
                }
            }
        };
    }

    /// log-cache is absent or forbidden: rely on the probes and the longer floor.
    pub fn logs_unavailable(&mut self) {
        self.logs = Logs::Unavailable;
    }

    /// Whether log-cache was found unavailable.
    pub fn without_logs(&self) -> bool {
        self.logs == Logs::Unavailable
    }

    /// The floor that applies now (never above the maximum).
    pub fn floor(&self) -> Duration {
        let f = if self.without_logs() {
            FLOOR_WITHOUT_LOGS
        } else {
            FLOOR
        };
        f.min(self.max)
    }

    fn routes_dropped(&self) -> bool {
        self.nothing_to_probe || self.refused_rounds >= REFUSED_ROUNDS
    }

    /// `Some(quiet time)` once the old app has had no request for [`QUIET`]; `None` while it
    /// has (or before the first read). Without log-cache: `Some(ZERO)`.
    fn quiet_for(&self, elapsed: Duration) -> Option<Duration> {
        match self.logs {
            Logs::Unknown => None,
            Logs::Unavailable => Some(Duration::ZERO),
            Logs::Read { traffic_at, .. } => {
                let q = elapsed.saturating_sub(traffic_at.unwrap_or(Duration::ZERO));
                (q >= QUIET).then_some(q)
            }
        }
    }

    /// The verdict at drain time `elapsed`.
    pub fn verdict(&self, elapsed: Duration) -> Verdict {
        let floor = self.floor();
        let dropped = self.routes_dropped();
        let quiet = self.quiet_for(elapsed);
        let routers = if self.nothing_to_probe {
            "no HTTP route to probe".to_string()
        } else {
            format!("routers dropped it ({REFUSED_ROUNDS} refused probe rounds in a row)")
        };
        if elapsed >= floor && dropped {
            match (quiet, self.logs) {
                (Some(_), Logs::Unavailable) => {
                    return Verdict::Done(format!(
                        "{routers}; log-cache unavailable, so after the longer floor of {}",
                        fmt_duration(floor)
                    ));
                }
                (Some(q), _) => {
                    let traffic = match self.logs {
                        Logs::Read {
                            traffic_at: None, ..
                        } => "old app had no requests".to_string(),
                        _ => format!("old app quiet for {}", fmt_duration(q)),
                    };
                    return Verdict::Done(format!("{traffic}, {routers}"));
                }
                (None, _) => {}
            }
        }
        if elapsed >= self.max {
            let mut missing = Vec::new();
            if !dropped {
                missing.push("routers still sent probes to the old app");
            }
            if quiet.is_none() {
                missing.push("the old app still got requests");
            }
            return Verdict::Done(format!(
                "reached the maximum of {} ({})",
                fmt_duration(self.max),
                if missing.is_empty() {
                    "floor".to_string()
                } else {
                    missing.join(", ")
                }
            ));
        }
        let mut waiting = Vec::new();
        if !dropped {
            waiting.push(format!(
                "routers to drop the old app ({} of {REFUSED_ROUNDS} refused rounds)",
                self.refused_rounds
            ));
        }
        if quiet.is_none() {
            waiting.push(format!(
                "no request to the old app for {}",
                fmt_duration(QUIET)
            ));
        }
        if elapsed < floor {
            waiting.push(format!("the floor of {}", fmt_duration(floor)));
        }
        Verdict::Wait(format!(
            "draining (at most {}): waiting for {}",
            fmt_duration(self.max),
            waiting.join(", ")
        ))
    }
}

/// One route to probe: its URL and the old app's instances behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// `scheme://host.domain/path`.
    pub url: String,
    /// The old app's GUID.
    pub app_guid: AppGuid,
    /// How many instance indices to probe (`0..instances`).
    pub instances: u32,
}

/// Why a route cannot be probed, `None` when it can: `host`, `port` and `protocol` of the
/// route and its old destination.
pub fn unprobeable(host: &str, port: Option<u16>, protocol: Option<&str>) -> Option<String> {
    if port.is_some() || protocol == Some("tcp") {
        Some("a TCP route cannot be probed through the HTTP router".into())
    } else if host.contains('*') {
        Some("a wildcard route has no host to probe".into())
    } else {
        None
    }
}

/// Sends the drain's probes: one HTTP client dialling the routes (or `connect_to`).
pub struct Prober {
    client: reqwest::Client,
}

impl Prober {
    /// A prober for `targets` under the smoke test's probe settings.
    ///
    /// # Errors
    /// The HTTP client could not be built (the reason).
    pub fn new(cfg: &ProbeConfig, targets: &[ProbeTarget]) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.request_timeout.min(PROBE_TIMEOUT))
            .connect_timeout(cfg.request_timeout.min(PROBE_TIMEOUT))
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(cfg.skip_tls_verify);
        if let Some(addr) = cfg.connect_to {
            for t in targets {
                if let Ok(u) = url::Url::parse(&t.url)
                    && let Some(host) = u.host_str()
                {
                    builder = builder.resolve(host, addr);
                }
            }
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Prober { client })
    }

    /// Probes instance `index` of `target`'s old app; cancellation wins.
    pub async fn probe(
        &self,
        target: &ProbeTarget,
        index: u32,
        cancel: &CancellationToken,
    ) -> Option<ProbeAnswer> {
        let req = self
            .client
            .get(&target.url)
            .header(APP_INSTANCE_HEADER, format!("{}:{index}", target.app_guid));
        let res = tokio::select! {
            () = cancel.cancelled() => return None,
            r = req.send() => r,
        };
        Some(match res {
            Ok(r) => {
                let e = r
                    .headers()
                    .get("x-cf-routererror")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                classify(r.status().as_u16(), e.as_deref())
            }
            // The router took the request and the old instance answered late: still routed.
            Err(e) if e.is_timeout() && !e.is_connect() => ProbeAnswer::Routed,
            Err(e) if e.is_connect() => ProbeAnswer::Unusable(format!(
                "could not connect to the router for {}",
                target.url
            )),
            Err(e) => ProbeAnswer::Unusable(format!("probe of {} failed: {e}", target.url)),
        })
    }

    /// One round: every instance of every target. `None` when cancelled; else whether all
    /// were refused, or why probing is not possible.
    pub async fn round(
        &self,
        targets: &[ProbeTarget],
        cancel: &CancellationToken,
    ) -> Option<Result<bool, String>> {
        let probes = targets.iter().flat_map(|t| {
            (0..t.instances.min(MAX_PROBED_INSTANCES)).map(move |i| self.probe(t, i, cancel))
        });
        let answers = futures::future::join_all(probes).await;
        let mut all_refused = true;
        for a in answers {
            match a? {
                ProbeAnswer::Refused => {}
                ProbeAnswer::Routed => all_refused = false,
                ProbeAnswer::Unusable(why) => return Some(Err(why)),
            }
        }
        Some(Ok(all_refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_millis;

    fn done(v: Verdict) -> String {
        match v {
            Verdict::Done(r) => r,
            Verdict::Wait(w) => panic!("still waiting: {w}"),
        }
    }

    fn waits(v: &Verdict) -> bool {
        matches!(v, Verdict::Wait(_))
    }

    #[test]
    fn router_answers_are_classified() {
        assert_eq!(classify(404, Some("unknown_route")), ProbeAnswer::Refused);
        assert_eq!(classify(400, Some("unknown_route")), ProbeAnswer::Refused);
        assert_eq!(classify(200, None), ProbeAnswer::Routed);
        // The app itself answering 404, or the router failing to reach the old instance:
        // the router still has it.
        assert_eq!(classify(404, None), ProbeAnswer::Routed);
        assert_eq!(classify(502, Some("endpoint_failure")), ProbeAnswer::Routed);
        assert!(matches!(
            classify(400, Some("invalid_cf_app_instance_header")),
            ProbeAnswer::Unusable(_)
        ));
    }

    #[test]
    fn ends_after_floor_refusals_and_quiet() {
        let mut g = Gauge::new(S(10_000), true);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        g.log_read(S(0), Some(t0));
        g.probe_round(false);
        assert!(waits(&g.verdict(S(300))));
        // Traffic still arrives at 1.5 s (a newer record).
        g.log_read(S(1500), Some(t0 + S(1400)));
        for _ in 0..REFUSED_ROUNDS {
            g.probe_round(true);
        }
        // Floor passed and routers dropped it, but quiet only since 1.5 s.
        assert!(waits(&g.verdict(S(2000))));
        // The same newest record again: no new traffic.
        g.log_read(S(2400), Some(t0 + S(1400)));
        let r = done(g.verdict(S(2500)));
        assert!(r.starts_with("old app quiet for 1s"), "{r}");
        assert!(r.contains("routers dropped it"), "{r}");
    }

    #[test]
    fn refusals_must_be_consecutive() {
        let mut g = Gauge::new(S(10_000), true);
        g.log_read(S(0), None);
        g.probe_round(true);
        g.probe_round(true);
        g.probe_round(false);
        g.probe_round(true);
        g.probe_round(true);
        assert!(waits(&g.verdict(S(5000))));
        g.probe_round(true);
        let r = done(g.verdict(S(5000)));
        assert!(r.starts_with("old app had no requests"), "{r}");
    }

    #[test]
    fn never_before_the_floor_even_without_traffic() {
        let mut g = Gauge::new(S(10_000), false);
        g.log_read(S(0), None);
        assert!(waits(&g.verdict(S(1999))));
        let r = done(g.verdict(FLOOR));
        assert!(r.contains("no HTTP route to probe"), "{r}");
    }

    #[test]
    fn without_logs_the_floor_is_longer() {
        let mut g = Gauge::new(S(10_000), true);
        g.logs_unavailable();
        // A later read cannot bring them back by accident.
        g.log_read(S(100), None);
        assert!(g.without_logs());
        for _ in 0..REFUSED_ROUNDS {
            g.probe_round(true);
        }
        assert!(waits(&g.verdict(S(3999))));
        let r = done(g.verdict(FLOOR_WITHOUT_LOGS));
        assert!(r.contains("log-cache unavailable"), "{r}");
    }

    #[test]
    fn the_maximum_bounds_everything() {
        let mut g = Gauge::new(S(3000), true);
        g.log_read(S(0), Some(SystemTime::UNIX_EPOCH));
        g.probe_round(false);
        assert!(waits(&g.verdict(S(2999))));
        let r = done(g.verdict(S(3000)));
        assert!(r.starts_with("reached the maximum of 3s"), "{r}");
        assert!(r.contains("routers still sent probes"), "{r}");
        // A maximum below the floor lowers the floor.
        let mut g = Gauge::new(S(500), false);
        g.log_read(S(0), None);
        assert_eq!(g.floor(), S(500));
        assert!(matches!(g.verdict(S(500)), Verdict::Done(_)));
    }

    #[test]
    fn no_verdict_before_the_first_log_read() {
        let mut g = Gauge::new(S(10_000), false);
        assert!(waits(&g.verdict(S(5000))));
        g.log_read(S(5000), None);
        assert!(matches!(g.verdict(S(5000)), Verdict::Done(_)));
    }

    #[test]
    fn tcp_and_wildcard_routes_are_not_probed() {
        assert!(unprobeable("web", None, None).is_none());
        assert!(unprobeable("web", None, Some("http2")).is_none());
        assert!(unprobeable("", Some(1024), None).is_some());
        assert!(unprobeable("web", None, Some("tcp")).is_some());
        assert!(unprobeable("*", None, None).is_some());
    }
}
