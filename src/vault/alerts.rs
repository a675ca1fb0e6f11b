//! Failed-access alerts and anomalies. Four rules:
//!
//! - `auth_failures`: more than `ALERT_AUTH_FAILURES` refused authentications
//!   (401 and 429) for one claimed service, or from one client address, in
//!   one `ALERT_WINDOW`;
//! - `denials`: more than `ALERT_DENIALS` authorisation denials (403) of one
//!   service in one window;
//! - `new_address`: a service read a secret from an address it has not read
//!   from in the last `ALERT_BASELINE_DAYS`, when it already read from another
//!   one in that time (its first address starts the baseline);
//! - `read_rate`: a service read more than `ALERT_RATE_FACTOR` × its usual
//!   reads per minute within one minute, and at least
//!   `ALERT_RATE_MIN_PER_MINUTE`. Usual: the mean over the minutes in which
//!   it read at all during the previous 24 hours (this minute left out); a
//!   service with no such minute has no usual rate yet and does not alert.
//!
//! Windows are aligned to the clock (`[k × window, (k + 1) × window)`).
//!
//! The request path only counts, in memory: one lock, one map entry. Every
//! second a task flushes what this replica counted to MongoDB with one `$inc`
//! upsert per key (`store::alerts`) and gets back the total of every replica.
//! The replica that sees a total over the threshold claims the window (an
//! insert of a unique `_id`); only the claim's winner raises the alert, so it
//! is audited, published and logged once per window across the replicas, not
//! once per request. Raising means: one audit record (action `alert`, outcome
//! `success`, channel `system`, no actor, the rule and subject in `alert`),
//! one event of kind `alert` (NATS `vault.events.alert`, the webhook), one
//! warning in the log and `secret_manager_alerts_total{rule}`. An alert names
//! a rule, a service or address and counts: never a token or value.
//!
//! Best effort, like the events: a flush that cannot reach MongoDB drops its
//! counts with a warning; the audit trail of the requests themselves stays.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{TimeZone as _, Utc};
use mongodb::bson::DateTime;

use super::events::{AlertFields, Event};
use super::{Op, RequestMeta, Scope, Vault};
use crate::auth::limiter::{clip, ACTOR_MAX_CHARS, FIELD_MAX_CHARS};
use crate::error::Outcome;
use crate::store::alerts as store;
use crate::store::audit::AlertDetail;

/// The thresholds (`ALERT_*`); a zero turns its rule off.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// `ALERT_AUTH_FAILURES`: refused authentications per subject and window tolerated.
    pub auth_failures: u32,
    /// `ALERT_DENIALS`: denials per service and window tolerated.
    pub denials: u32,
    /// `ALERT_WINDOW`.
    pub window: Duration,
    /// `ALERT_BASELINE_DAYS`: how long an address stays known for a service.
    pub baseline_days: u32,
    /// `ALERT_RATE_FACTOR`: how many times the usual per-minute reads is an anomaly.
    pub rate_factor: f64,
    /// `ALERT_RATE_MIN_PER_MINUTE`: fewer reads in a minute never alert.
    pub rate_min_per_minute: u32,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            auth_failures: 20,
            denials: 20,
            window: Duration::from_secs(300),
            baseline_days: 30,
            rate_factor: 10.0,
            rate_min_per_minute: 60,
        }
    }
}

/// The rules, as events, audit records and the metric name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    AuthFailures,
    Denials,
    NewAddress,
    ReadRate,
}

impl Rule {
    pub const ALL: [Rule; 4] = [
        Rule::AuthFailures,
        Rule::Denials,
        Rule::NewAddress,
        Rule::ReadRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AuthFailures => "auth_failures",
            Rule::Denials => "denials",
            Rule::NewAddress => "new_address",
            Rule::ReadRate => "read_rate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Service,
    Address,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Address => "address",
        }
    }
}

/// One counter: a rule's count for one subject in one window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CountKey {
    rule: Rule,
    window_ms: i64,
    kind: Kind,
    subject: String,
}

impl CountKey {
    /// The subject last: no subject can make another key's `_id`.
    fn id(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.rule.as_str(),
            self.window_ms,
            self.kind.as_str(),
            self.subject
        )
    }
}

/// What this replica counted since its last flush.
#[derive(Debug, Default)]
struct Pending {
    counts: HashMap<CountKey, i64>,
    /// Reads per (service, minute start in ms).
    reads: HashMap<(String, i64), i64>,
    /// (service, address) pairs to record in the baseline.
    pairs: Vec<(String, String)>,
    /// Counted nowhere because the maps were full.
    dropped: u64,
}

/// Most distinct keys (or pairs) one flush carries; more in one second are
/// dropped (and said so), so a flood of forged names cannot grow memory.
const MAX_PENDING: usize = 10_000;
/// Most (service, address) pairs whose refresh time a replica remembers.
const MAX_REFRESHED: usize = 10_000;
/// A replica records a known (service, address) pair again after this long.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// How often counts go to MongoDB.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The past a service's usual read rate is computed over.
const RATE_BASELINE_HOURS: i64 = 24;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// The counting half of the alerts, shared by the request path and the flush task.
#[derive(Debug)]
pub(crate) struct Alerts {
    settings: AlertSettings,
    pending: Mutex<Pending>,
    refreshed: Mutex<HashMap<(String, String), Instant>>,
}

impl Alerts {
    pub fn new(settings: AlertSettings) -> Self {
        Self {
            settings,
            pending: Mutex::new(Pending::default()),
            refreshed: Mutex::new(HashMap::new()),
        }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.settings.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    fn window_start(&self, now_ms: i64) -> i64 {
        now_ms - now_ms.rem_euclid(self.window_ms())
    }

    fn count(&self, rule: Rule, kind: Kind, subject: &str) {
        let max = match kind {
            Kind::Service => ACTOR_MAX_CHARS,
            Kind::Address => FIELD_MAX_CHARS,
        };
        let key = CountKey {
            rule,
            window_ms: self.window_start(Utc::now().timestamp_millis()),
            kind,
            subject: clip(subject, max).to_string(),
        };
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.counts.len() >= MAX_PENDING && !p.counts.contains_key(&key) {
            p.dropped += 1;
            return;
        }
        *p.counts.entry(key).or_default() += 1;
    }

    /// A refused authentication (401 or 429), for the claimed service and the address.
    pub fn auth_failed(&self, service: Option<&str>, address: Option<&str>) {
        if self.settings.auth_failures == 0 {
            return;
        }
        if let Some(service) = service {
            self.count(Rule::AuthFailures, Kind::Service, service);
        }
        if let Some(address) = address {
            self.count(Rule::AuthFailures, Kind::Address, address);
        }
    }

    /// An authorisation denial (403) of an authenticated service.
    pub fn denied(&self, service: &str) {
        if self.settings.denials > 0 {
            self.count(Rule::Denials, Kind::Service, service);
        }
    }

    /// A successful secret read (fetch, read) by `service` from `address`.
    pub fn read(&self, service: &str, address: Option<&str>) {
        let service = clip(service, ACTOR_MAX_CHARS);
        let pair = address
            .filter(|_| self.settings.baseline_days > 0)
            .map(|a| (service.to_string(), clip(a, FIELD_MAX_CHARS).to_string()))
            .filter(|pair| self.due_for_refresh(pair));
        let rate = self.settings.rate_factor > 0.0;
        if !rate && pair.is_none() {
            return;
        }
        let now_ms = Utc::now().timestamp_millis();
        let minute = now_ms - now_ms.rem_euclid(MINUTE_MS);
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if rate {
            let key = (service.to_string(), minute);
            if p.reads.len() < MAX_PENDING || p.reads.contains_key(&key) {
                *p.reads.entry(key).or_default() += 1;
            } else {
                p.dropped += 1;
            }
        }
        if let Some(pair) = pair {
            if p.pairs.len() < MAX_PENDING {
                p.pairs.push(pair);
            } else {
                p.dropped += 1;
            }
        }
    }

    /// Whether this replica should record the pair again (and notes that it will).
    fn due_for_refresh(&self, pair: &(String, String)) -> bool {
        let now = Instant::now();
        let mut seen = self.refreshed.lock().unwrap_or_else(|e| e.into_inner());
        if seen
            .get(pair)
            .is_some_and(|at| now.duration_since(*at) < REFRESH_EVERY)
        {
            return false;
        }
        if seen.len() >= MAX_REFRESHED && !seen.contains_key(pair) {
            // Forget everything rather than grow: the next reads record their
            // pairs once more, which costs a write each and changes no result.
            seen.clear();
        }
        seen.insert(pair.clone(), now);
        true
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// An alert about to be raised.
#[derive(Debug, Clone)]
struct Fired {
    rule: Rule,
    kind: Kind,
    subject: String,
    address: Option<String>,
    count: i64,
    threshold: i64,
    window_start_ms: i64,
    window_end_ms: i64,
}

/// What the flush task remembers between flushes: each service's usual
/// per-minute reads, computed once per minute.
#[derive(Default)]
struct FlushState {
    usual: HashMap<String, (i64, Option<f64>)>,
}

fn at(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

fn chrono_at(ms: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Vault {
    /// Starts the task that flushes this replica's alert counts every second.
    pub fn spawn_alerts(&self) {
        let vault = self.clone();
        tokio::spawn(async move {
            let mut state = FlushState::default();
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                vault.flush_alerts(&mut state).await;
            }
        });
    }

    async fn flush_alerts(&self, state: &mut FlushState) {
        let pending = self.alerts.take();
        if pending.dropped > 0 {
            tracing::warn!(
                dropped = pending.dropped,
                "alert counters were full this second; some requests were not counted"
            );
        }
        for (key, delta) in pending.counts {
            self.flush_count(key, delta).await;
        }
        for ((service, minute), delta) in pending.reads {
            self.flush_reads(state, &service, minute, delta).await;
        }
        for (service, address) in pending.pairs {
            self.record_address(&service, &address).await;
        }
    }

    async fn flush_count(&self, key: CountKey, delta: i64) {
        let settings = &self.alerts.settings;
        let threshold = i64::from(match key.rule {
            Rule::AuthFailures => settings.auth_failures,
            Rule::Denials => settings.denials,
            Rule::NewAddress | Rule::ReadRate => return,
        });
        let window = self.alerts.window_ms();
        let end = key.window_ms.saturating_add(window);
        let expires = at(end.saturating_add(window).saturating_add(MINUTE_MS));
        let id = key.id();
        let total = match store::add(self.db(), &id, delta, expires).await {
            Ok(total) => total,
            Err(e) => {
                tracing::warn!(error = %e, rule = key.rule.as_str(), "could not flush alert counts");
                return;
            }
        };
        if total <= threshold {
            return;
        }
        let fired = Fired {
            rule: key.rule,
            kind: key.kind,
            subject: key.subject,
            address: None,
            count: total,
            threshold,
            window_start_ms: key.window_ms,
            window_end_ms: end,
        };
        self.raise_once(&format!("fired|{id}"), expires, fired)
            .await;
    }

    /// Adds a minute's reads, and raises `read_rate` when the minute is far
    /// above the service's usual rate.
    async fn flush_reads(&self, state: &mut FlushState, service: &str, minute: i64, delta: i64) {
        let settings = &self.alerts.settings;
        let hour = minute - minute.rem_euclid(HOUR_MS);
        let hour_expires = at(hour + (RATE_BASELINE_HOURS + 1) * HOUR_MS);
        let db = self.db();
        let minute_id = format!("read_minute|{minute}|{service}");
        let added = async {
            let total = store::add(db, &minute_id, delta, at(minute + 2 * MINUTE_MS)).await?;
            let hour_id = format!("read_hour|{hour}|{service}");
            store::add_hour(db, &hour_id, delta, total == delta, hour_expires).await?;
            Ok::<_, crate::store::StoreError>(total)
        };
        let total = match added.await {
            Ok(total) => total,
            Err(e) => {
                tracing::warn!(error = %e, "could not flush read counts");
                return;
            }
        };
        if total < i64::from(settings.rate_min_per_minute) {
            return;
        }
        let usual = match state.usual.get(service) {
            Some((m, usual)) if *m == minute => *usual,
            _ => {
                let usual = match self.usual_reads(service, hour, total).await {
                    Ok(usual) => usual,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the usual read rate");
                        return;
                    }
                };
                if state.usual.len() >= MAX_PENDING {
                    state.usual.clear();
                }
                state.usual.insert(service.to_string(), (minute, usual));
                usual
            }
        };
        let Some(usual) = usual else { return };
        let threshold = ((settings.rate_factor * usual).floor() as i64)
            .max(i64::from(settings.rate_min_per_minute) - 1);
        if total <= threshold {
            return;
        }
        let window = self.alerts.window_start(minute);
        let expires = at(window + 2 * self.alerts.window_ms() + MINUTE_MS);
        let fired = Fired {
            rule: Rule::ReadRate,
            kind: Kind::Service,
            subject: service.to_string(),
            address: None,
            count: total,
            threshold,
            window_start_ms: minute,
            window_end_ms: minute + MINUTE_MS,
        };
        let claim = format!("fired|read_rate|{window}|service|{service}");
        self.raise_once(&claim, expires, fired).await;
    }

    /// The mean reads per minute over the minutes with reads in the previous
    /// 24 hours, this minute (`this_minute` reads) left out; `None` without any.
    async fn usual_reads(
        &self,
        service: &str,
        hour: i64,
        this_minute: i64,
    ) -> Result<Option<f64>, crate::store::StoreError> {
        let ids: Vec<String> = (0..=RATE_BASELINE_HOURS)
            .map(|h| format!("read_hour|{}|{service}", hour - h * HOUR_MS))
            .collect();
        let (reads, minutes) = store::hours(self.db(), &ids).await?;
        let (reads, minutes) = ((reads - this_minute).max(0), minutes - 1);
        Ok((minutes > 0).then(|| reads as f64 / minutes as f64))
    }

    /// Records that `service` read from `address`; raises `new_address` when
    /// the address is new for a service that already has a baseline.
    async fn record_address(&self, service: &str, address: &str) {
        let days = i64::from(self.alerts.settings.baseline_days);
        let now_ms = Utc::now().timestamp_millis();
        let horizon = now_ms - days * DAY_MS;
        let (now, expires) = (at(now_ms), at(now_ms + days * DAY_MS));
        let fresh = |seen: Option<DateTime>| seen.is_some_and(|t| t.timestamp_millis() > horizon);
        // The length first: no service name can make another pair's `_id`.
        let pair_id = format!("pair|{}|{service}|{address}", service.len());
        let service_id = format!("service|{service}");
        let seen = async {
            let pair = store::touch(self.db(), &pair_id, now, expires).await?;
            // Every pair keeps its service's baseline alive too.
            let service = store::touch(self.db(), &service_id, now, expires).await?;
            Ok::<_, crate::store::StoreError>((pair, service))
        };
        let (pair, service_seen) = match seen.await {
            Ok(seen) => seen,
            Err(e) => {
                tracing::warn!(error = %e, "could not record a read address");
                return;
            }
        };
        if fresh(pair) || !fresh(service_seen) {
            // Known, or the service's first address: the baseline starts.
            return;
        }
        self.raise(Fired {
            rule: Rule::NewAddress,
            kind: Kind::Service,
            subject: service.to_string(),
            address: Some(address.to_string()),
            count: 1,
            threshold: 0,
            window_start_ms: horizon,
            window_end_ms: now_ms,
        })
        .await;
    }

    /// Raises `fired` if this replica is the first to claim `claim`.
    async fn raise_once(&self, claim: &str, expires: DateTime, fired: Fired) {
        match store::claim(self.db(), claim, expires).await {
            Ok(true) => self.raise(fired).await,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, rule = fired.rule.as_str(), "could not claim an alert")
            }
        }
    }

    /// One log line, one audit record, one event, one count.
    async fn raise(&self, fired: Fired) {
        let rule = fired.rule.as_str();
        crate::metrics::METRICS
            .alerts
            .get_or_create(&crate::metrics::RuleLabels { rule })
            .inc();
        let (start, end) = (
            chrono_at(fired.window_start_ms),
            chrono_at(fired.window_end_ms),
        );
        tracing::warn!(
            alert = rule,
            subject_kind = fired.kind.as_str(),
            subject = %fired.subject,
            address = fired.address.as_deref(),
            count = fired.count,
            threshold = fired.threshold,
            window_start = %start.to_rfc3339(),
            window_end = %end.to_rfc3339(),
            "alert: {rule}"
        );
        let address = match fired.kind {
            Kind::Address => Some(fired.subject.clone()),
            Kind::Service => fired.address.clone(),
        };
        let meta = RequestMeta {
            actor: None,
            client_ip: address,
            user_agent: None,
            request_id: None,
            channel: "system",
        };
        if self.limits.audit_enabled {
            let mut record =
                self.audit_record(&meta, &Scope::new(Op::Alert), Outcome::Success, None, None);
            record.alert = Some(AlertDetail {
                rule: rule.to_string(),
                subject_kind: fired.kind.as_str().to_string(),
                subject: fired.subject.clone(),
                address: record.client_ip.clone().filter(|_| fired.address.is_some()),
                count: fired.count,
                threshold: fired.threshold,
                window_start: at(fired.window_start_ms),
                window_end: at(fired.window_end_ms),
            });
            if let Err(e) = self.store_audit(record).await {
                tracing::warn!(error = %e, rule, "could not audit an alert");
            }
        }
        crate::metrics::METRICS
            .events_published
            .get_or_create(&crate::metrics::KindLabels { kind: "alert" })
            .inc();
        let _ = self.events.send(Event {
            kind: "alert",
            ts: Utc::now(),
            actor: match fired.kind {
                Kind::Service => fired.subject.clone(),
                Kind::Address => "anonymous".into(),
            },
            project: None,
            path: None,
            secret_id: None,
            version: None,
            request_id: None,
            alert: Some(AlertFields {
                rule,
                subject_kind: fired.kind.as_str(),
                subject: fired.subject,
                address: fired.address,
                count: fired.count,
                threshold: fired.threshold,
                window_start: start,
                window_end: end,
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_keyed_by_window_and_bounded() {
        let alerts = Alerts::new(AlertSettings::default());
        let long = "s".repeat(1000);
        for _ in 0..3 {
            alerts.auth_failed(Some(&long), Some("10.0.0.1"));
        }
        alerts.denied("svc");
        let p = alerts.take();
        assert_eq!(p.counts.len(), 3);
        for (key, n) in &p.counts {
            assert!(key.subject.chars().count() <= ACTOR_MAX_CHARS);
            assert_eq!(key.window_ms % 300_000, 0);
            let expected = if key.rule == Rule::Denials { 1 } else { 3 };
            assert_eq!(*n, expected, "{key:?}");
        }
        assert!(alerts.take().counts.is_empty(), "taken");
    }

    #[test]
    fn a_known_pair_is_recorded_once_per_hour_per_replica() {
        let alerts = Alerts::new(AlertSettings::default());
        for _ in 0..5 {
            alerts.read("svc", Some("10.0.0.1"));
        }
        alerts.read("svc", Some("10.0.0.2"));
        let p = alerts.take();
        assert_eq!(p.pairs.len(), 2);
        assert_eq!(p.reads.values().sum::<i64>(), 6);
    }

    #[test]
    fn the_metric_serves_every_rule() {
        let names: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, crate::metrics::ALERT_RULES);
    }

    #[test]
    fn a_zero_turns_a_rule_off() {
        let alerts = Alerts::new(AlertSettings {
            auth_failures: 0,
            denials: 0,
            baseline_days: 0,
            rate_factor: 0.0,
            ..AlertSettings::default()
        });
        alerts.auth_failed(Some("a"), Some("10.0.0.1"));
        alerts.denied("a");
        alerts.read("a", Some("10.0.0.1"));
        let p = alerts.take();
        assert!(p.counts.is_empty() && p.reads.is_empty() && p.pairs.is_empty());
    }
}
