//! Schedules: cron-triggered jobs ("duties") that run once per period however many runners
//! (`tender work` processes) share one database.
//!
//! - A period runs once: runners that pass at the same instant race to claim it in the
//!   database; one runs it, the others find it taken, and the duty's effect is applied once.
//! - Catch-up: with `catch_up = "each"` a runner back after missing periods runs every one,
//!   oldest first, each as of its own tick; with `"latest"` it runs once, as of now. A job
//!   that never ran starts with the newest due period, not with its history.
//! - A run whose runner died is taken over once its lease (`heartbeat_secs` ×
//!   `missed_heartbeats`) has run out: the next runner runs it again as its next attempt, as
//!   of the instant it was first claimed as of. Under `each` the periods after it wait for it.
//!   A `tender work` killed with SIGKILL in the middle of expiring cards leaves its run to the
//!   next one, and no card is expired twice.
//! - Periods are wall-clock ticks in the schedule's time zone: a daily job fires once on every
//!   local day, the 23-hour and the 25-hour ones included (02:30 on the spring-forward day runs
//!   at 03:30; 01:30 on the fall-back day runs at the first); an hourly one fires 23 times on
//!   the short day and 24 on the long one (the repeated hour is one period).
//! - The definition a runner started with is recorded; a later start with a changed definition
//!   makes its own the one in force, and a runner on another claims nothing until restarted.
//!   Every run records the hash of the definition it ran under.
//! - A failed run records its error and is tried again after its backoff (doubling up to its
//!   maximum) while attempts remain, then is given up; under `each` later periods wait behind
//!   a period not done.
//! - Only a process that holds the seal key ever claims seal-audit.
//! - `tender jobs runs --job J` lists J's runs, newest first.
//! - The purge removes idempotency records past their retention and finished jobs older than
//!   `TENDER_FINISHED_JOBS_KEEP` (in batches), and keeps everything younger or unfinished.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::America::New_York;
use serde_json::json;
use tender::clock::{Clock, SystemClock};
use tender::codegen::CodeGenerator;
use tender::config::{KeepDays, Settings};
use tender::domain::{Batch, CardState, PageRows};
use tender::error::{Classify, Kind};
use tender::jobs::definitions::{DefinitionSource, JobDefinition, JobPolicy};
use tender::jobs::expire::ExpireDuty;
use tender::jobs::schedule::{Duty, Pass, Scheduler, scheduled_definition};
use tender::jobs::{Catalog, RunMode, status};
use tender::keys::SealKey;
use tender::service::Services;
use tender::service::api_keys::ApiKeyForm;
use tender::service::batches::BatchForm;
use tender::service::cards::{ActivateForm, PosForm, StoreForm};
use tender::service::idempotency::{Claimed, IdemRequest};
use tender::service::schedules::{Claim, Claimant, JobRun};
use tender::store::{DbPool, Store};

use crate::helpers::{TestApp, actor, both_backends, epoch, tender_command, tender_process};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// A test duty

/// The probe's definition file, in a directory of its own per probe.
const PROBE: DefinitionSource = DefinitionSource {
    file: "probe.toml",
    builtin: "",
};

/// A probe's definition: `schedule` in `zone`, catching up as `catch_up` says; three attempts
/// per period, retried after 60 s and then 90 s; a lease of two hours (so that a run's lease is
/// renewed by no timer during a test: only the clock decides).
fn probe_toml(name: &str, schedule: &str, zone: &str, catch_up: &str) -> String {
    format!(
        r#"name = "{name}"
description = "Records each instant it is run as of"

[trigger]
kind = "cron"
schedule = "{schedule}"
timezone = "{zone}"
catch_up = "{catch_up}"

[run]
concurrency = 1
timeout_secs = 60
max_attempts = 3
retries = 0
backoff_min_ms = 60000
backoff_max_ms = 90000

[worker]
poll_interval_ms = 1000
heartbeat_secs = 3600
missed_heartbeats = 2
"#
    )
}

/// A duty that records each instant it is run as of, and fails as often as it is told to.
#[derive(Clone)]
struct Probe {
    definition: Arc<JobDefinition<toml::Table>>,
    ran: Arc<Mutex<Vec<DateTime<Utc>>>>,
    failures: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct ProbeFailed;

impl std::fmt::Display for ProbeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the probe failed as it was told to")
    }
}

impl std::error::Error for ProbeFailed {}

impl Classify for ProbeFailed {
    fn code(&self) -> &'static str {
        "probe.failed"
    }

    fn kind(&self) -> Kind {
        Kind::Internal
    }
}

impl Duty for Probe {
    type Error = ProbeFailed;

    fn definition(&self) -> (&JobPolicy, &str) {
        (&self.definition.policy, &self.definition.sha)
    }

    async fn run(&self, as_of: DateTime<Utc>) -> Result<serde_json::Value, ProbeFailed> {
        self.ran.lock().unwrap().push(as_of);
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(ProbeFailed);
        }
        Ok(json!({ "as_of": as_of }))
    }
}

impl Probe {
    /// A probe loaded, as every definition is, from its file (`text`) in a jobs directory.
    fn new<S>(env: &TestApp<S>, text: &str) -> Probe {
        let dir = env
            .db
            .path()
            .join(format!("jobs-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(PROBE.file), text).unwrap();
        Probe {
            definition: Arc::new(scheduled_definition(&PROBE, Some(&dir)).unwrap()),
            ran: Arc::default(),
            failures: Arc::default(),
        }
    }

    fn job(&self) -> &str {
        &self.definition.policy.name
    }

    /// Every instant it was run as of, in order.
    fn ran(&self) -> Vec<DateTime<Utc>> {
        self.ran.lock().unwrap().clone()
    }

    /// Its next `n` runs fail.
    fn fail_next(&self, n: usize) {
        self.failures.store(n, Ordering::SeqCst);
    }

    /// Its scheduler, as runner `runner` over `services`.
    fn scheduler<S: Store>(&self, services: &Services<S>, runner: &str) -> Scheduler<S, Probe> {
        Scheduler::new(services.clone(), self.clone(), runner).unwrap()
    }

    /// What runner `runner` claims with, as the scheduler builds it from the definition.
    fn claimant(&self, runner: &str) -> Claimant {
        let policy = &self.definition.policy;
        Claimant {
            job: policy.name.clone(),
            definition_sha: self.definition.sha.clone(),
            runner: runner.into(),
            lease: Duration::from_secs(policy.worker.heartbeat_secs)
                * policy.worker.missed_heartbeats,
            max_attempts: policy.run.max_attempts,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The job's runs, oldest first.
async fn runs<S: Store>(env: &TestApp<S>, job: &str) -> Vec<JobRun> {
    let mut runs = env
        .app
        .services()
        .schedules()
        .runs(Some(job), PageRows::MAX)
        .await
        .unwrap();
    runs.reverse();
    runs
}

fn periods(runs: &[JobRun]) -> Vec<DateTime<Utc>> {
    runs.iter().map(|r| r.period).collect()
}

fn ran(pass: Pass) -> (usize, usize) {
    (pass.ran, pass.succeeded)
}

/// The expire duty of `definition` as runner `runner` over `services`.
fn expire_scheduler<S: Store>(
    services: &Services<S>,
    definition: &JobDefinition<tender::jobs::expire::ExpireParams>,
    runner: &str,
) -> Scheduler<S, ExpireDuty<S>> {
    let duty = ExpireDuty::new(services.clone(), definition.clone());
    Scheduler::new(services.clone(), duty, runner).unwrap()
}

/// Acme's store in England, where expiry follows the printed date.
const UK_STORE: &str = "S-UK";

/// `count` 20.00 GBP cards for the UK storefront, printed to expire the day after they were
/// requested, generated and sold now at Acme's store in England (boxes of up to 1,000): their
/// funds expire a day from now.
async fn uk_cards_sold<S: Store>(env: &TestApp<S>, count: u64) -> Batch {
    let services = env.app.services();
    services
        .retailers()
        .add("Acme", "2.5", &actor())
        .await
        .unwrap();
    let form = BatchForm {
        retailer: "Acme".into(),
        count,
        value: Some("20.00".into()),
        currency: "GBP".into(),
        region: "GB".into(),
        expires_in_days: Some(1),
        ..BatchForm::default()
    };
    let batch = services.batches().request(&form, &actor()).await.unwrap();
    let batch = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), count as usize)
        .await;
    let store = StoreForm {
        retailer: "Acme".into(),
        store: UK_STORE.into(),
        jurisdiction: "GB-ENG".into(),
    };
    services.cards().add_store(&store, &actor()).await.unwrap();
    for (n, first) in (0..count).step_by(1_000).enumerate() {
        let last = (first + 999).min(count - 1);
        let sale = ActivateForm {
            pos: PosForm {
                retailer: "Acme".into(),
                store: UK_STORE.into(),
                terminal: "till-1".into(),
                pos_txn: format!("sale-{n}"),
                pos_time: None,
            },
            serial: batch.serial_at(first).to_string(),
            to_serial: Some(batch.serial_at(last).to_string()),
            value: None,
            purchaser_state: None,
        };
        let sold = services.cards().activate(&sale, &actor()).await.unwrap();
        assert!(sold.cards.iter().all(|c| c.message.is_none()));
    }
    assert_eq!(
        env.count("SELECT count(*) FROM card_activation").await,
        i64::try_from(count).unwrap()
    );
    batch
}

async fn expired_cards<S: Store>(env: &TestApp<S>) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM card WHERE state = {}",
        CardState::Expired.code()
    ))
    .await
}

/// `cards` cards are expired, each by exactly one breakage leg; the books check clean and the
/// audit trail verifies.
async fn assert_expired_once<S: Store>(env: &TestApp<S>, cards: i64) {
    assert_eq!(expired_cards(env).await, cards);
    let legs = "FROM entry e JOIN transfer t ON t.transfer_id = e.transfer_id \
                WHERE t.kind = 'breakage' AND e.ledger_account LIKE 'card:%'";
    assert_eq!(
        env.count(&format!("SELECT count(*) {legs}")).await,
        cards,
        "one breakage leg per expired card"
    );
    assert_eq!(
        env.count(&format!("SELECT count(DISTINCT e.ledger_account) {legs}"))
            .await,
        cards,
        "no card expired twice"
    );
    let report = env.app.services().ledger().check().await.unwrap();
    assert_eq!(report.discrepancy, None, "{report:?}");
    let verified = env.verify().await;
    assert!(verified.is_intact(), "{verified:?}");
}

/// `text` with each `(from, to)` replaced, each found exactly once.
pub(crate) fn edited(text: &str, edits: &[(&str, &str)]) -> String {
    edits.iter().fold(text.to_string(), |text, (from, to)| {
        assert_eq!(text.matches(from).count(), 1, "{from:?} in the definition");
        text.replace(from, to)
    })
}

// ---------------------------------------------------------------------------------------------
// 1. Two runners, one period

/// Two runners of one duty over one database pass at the same instant, period after period:
/// each period has one run, recorded once, run by one of them, as of that instant.
async fn two_runners_run_each_period_once<S: Store>(env: TestApp<S>) {
    let probe = Probe::new(&env, &probe_toml("probe", "0 0 6 * * *", "UTC", "latest"));
    // The second runner has its own connections, as another process would.
    let other = env.reopen(&env.db.settings()).await;
    let a = probe.scheduler(env.app.services(), "runner-a");
    let b = probe.scheduler(other.services(), "runner-b");
    a.adopt().await.unwrap();
    b.adopt().await.unwrap();
    let mut instants = Vec::new();
    for day in 0..5 {
        if day > 0 {
            env.clock.advance(TimeDelta::days(1));
        }
        let (pa, pb) = tokio::join!(a.pass(), b.pass());
        let (pa, pb) = (pa.unwrap(), pb.unwrap());
        assert_eq!(pa.ran + pb.ran, 1, "day {day}: {pa:?} {pb:?}");
        assert_eq!(pa.succeeded + pb.succeeded, 1, "day {day}");
        instants.push(env.clock.now());
    }
    // Passing again at the same instant finds the period done.
    let (pa, pb) = tokio::join!(a.pass(), b.pass());
    assert_eq!(
        (pa.unwrap(), pb.unwrap()),
        (Pass::default(), Pass::default())
    );
    assert_eq!(probe.ran(), instants, "the duty ran once per period");
    let runs = runs(&env, "probe").await;
    assert_eq!(
        periods(&runs),
        (1..=5)
            .map(|d| at(&format!("2026-03-0{d}T06:00:00Z")))
            .collect::<Vec<_>>()
    );
    assert!(
        runs.iter()
            .all(|r| r.status == "succeeded" && r.attempts == 1),
        "{runs:?}"
    );
}
both_backends!(two_runners, two_runners_run_each_period_once);

/// The expire duty in two runners at once: one run, and each due card expired once.
async fn two_runners_expire_each_card_once<S: Store>(env: TestApp<S>) {
    uk_cards_sold(&env, 40).await;
    env.clock.advance(TimeDelta::days(3));
    let expire = Catalog::load(None).unwrap().expire;
    let other = env.reopen(&env.db.settings()).await;
    let a = expire_scheduler(env.app.services(), &expire, "runner-a");
    let b = expire_scheduler(other.services(), &expire, "runner-b");
    a.adopt().await.unwrap();
    b.adopt().await.unwrap();
    let (pa, pb) = tokio::join!(a.pass(), b.pass());
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert_eq!((pa.ran + pb.ran, pa.succeeded + pb.succeeded), (1, 1));
    let (pa, pb) = tokio::join!(a.pass(), b.pass());
    assert_eq!(
        (pa.unwrap(), pb.unwrap()),
        (Pass::default(), Pass::default())
    );
    let runs = runs(&env, "expire").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].period, at("2026-03-04T00:05:00Z"));
    assert_eq!(runs[0].as_of, env.clock.now(), "latest runs as of now");
    assert_eq!(runs[0].status, "succeeded");
    assert_eq!(runs[0].totals.as_ref().unwrap()["cards"], 40);
    assert_expired_once(&env, 40).await;
}
both_backends!(two_runners_expire, two_runners_expire_each_card_once);

// ---------------------------------------------------------------------------------------------
// 2. Catch-up

/// A daily job that never ran runs only its newest due period; back after three missed
/// periods, `each` runs the three, oldest first, each as of its own tick, and `latest` runs
/// once, as of now.
async fn catch_up_each_runs_every_missed_period_and_latest_once<S: Store>(env: TestApp<S>) {
    let services = env.app.services();
    let each = Probe::new(&env, &probe_toml("each", "0 0 6 * * *", "UTC", "each"));
    let latest = Probe::new(&env, &probe_toml("latest", "0 0 6 * * *", "UTC", "latest"));
    let e = each.scheduler(services, "runner");
    let l = latest.scheduler(services, "runner");
    e.adopt().await.unwrap();
    l.adopt().await.unwrap();

    // Never run, at 09:00 on 1 March: today's 06:00 only, not the days before.
    assert_eq!(ran(e.pass().await.unwrap()), (1, 1));
    assert_eq!(each.ran(), [at("2026-03-01T06:00:00Z")]);
    assert_eq!(ran(l.pass().await.unwrap()), (1, 1));
    assert_eq!(latest.ran(), [epoch()]);

    // Down for three periods: back at 09:00 on 4 March.
    env.clock.advance(TimeDelta::days(3));
    assert_eq!(ran(e.pass().await.unwrap()), (3, 3));
    let missed = [
        at("2026-03-02T06:00:00Z"),
        at("2026-03-03T06:00:00Z"),
        at("2026-03-04T06:00:00Z"),
    ];
    assert_eq!(each.ran()[1..], missed, "oldest first, each as of its tick");
    let each_runs = runs(&env, "each").await;
    assert_eq!(periods(&each_runs)[1..], missed);
    assert!(each_runs.iter().all(|r| r.as_of == r.period));

    assert_eq!(ran(l.pass().await.unwrap()), (1, 1));
    assert_eq!(latest.ran(), [epoch(), env.clock.now()], "once, as of now");
    let latest_runs = runs(&env, "latest").await;
    assert_eq!(
        periods(&latest_runs),
        [at("2026-03-01T06:00:00Z"), at("2026-03-04T06:00:00Z")]
    );
    assert_eq!(latest_runs[1].as_of, env.clock.now());

    // Nothing else is due.
    assert_eq!(e.pass().await.unwrap(), Pass::default());
    assert_eq!(l.pass().await.unwrap(), Pass::default());
}
both_backends!(
    catch_up,
    catch_up_each_runs_every_missed_period_and_latest_once
);

// ---------------------------------------------------------------------------------------------
// 3. A killed run

/// Runner A claims the 09:00 period of an hourly `each` job and dies (never renews, never
/// ends). Until its lease runs out the run is A's, and the periods after it wait; then runner B
/// takes it over as its second attempt, as of the same instant, and runs the periods that
/// waited, in order. A, were it to come back, holds nothing.
async fn a_dead_runners_run_is_taken_over_and_later_periods_wait<S: Store>(env: TestApp<S>) {
    let services = env.app.services();
    let schedules = services.schedules();
    let probe = Probe::new(&env, &probe_toml("hourly", "0 0 * * * *", "UTC", "each"));
    let dead = probe.claimant("runner-a");
    assert_eq!(dead.lease, Duration::from_secs(2 * 3600));
    env.clock.set(at("2026-03-01T09:20:00Z"));
    schedules.adopt(&dead).await.unwrap();
    let nine = at("2026-03-01T09:00:00Z");
    let Claim::Run(ticket) = schedules.claim(&dead, nine, nine).await.unwrap() else {
        panic!("the first claim on a period runs it");
    };
    assert_eq!((ticket.attempt, ticket.as_of), (1, nine));

    let b = probe.scheduler(services, "runner-b");
    b.adopt().await.unwrap();
    assert_eq!(b.pass().await.unwrap(), Pass::default(), "A holds 09:00");
    // 10:00 is due, but waits behind 09:00.
    env.clock.set(at("2026-03-01T10:30:00Z"));
    assert_eq!(b.pass().await.unwrap(), Pass::default());
    // The lease holds through its last instant: 09:20 + 2 h.
    env.clock.set(at("2026-03-01T11:20:00Z"));
    assert_eq!(b.pass().await.unwrap(), Pass::default());
    assert_eq!(
        runs(&env, "hourly").await.len(),
        1,
        "no later period claimed"
    );

    env.clock.advance(TimeDelta::milliseconds(1));
    assert_eq!(ran(b.pass().await.unwrap()), (3, 3));
    assert_eq!(
        probe.ran(),
        [nine, at("2026-03-01T10:00:00Z"), at("2026-03-01T11:00:00Z")]
    );
    let taken = runs(&env, "hourly").await;
    assert_eq!(
        (taken[0].period, taken[0].as_of, taken[0].attempts),
        (nine, nine, 2)
    );
    assert_eq!(
        (&*taken[0].status, &*taken[0].runner),
        ("succeeded", "runner-b")
    );
    assert!(
        taken[1..]
            .iter()
            .all(|r| r.attempts == 1 && r.status == "succeeded")
    );

    // A's renewal and its record come too late: B's stands.
    assert!(!schedules.renew(&dead, &ticket).await.unwrap());
    assert!(
        !schedules
            .succeed(&dead, &ticket, &json!({ "late": true }))
            .await
            .unwrap()
    );
    let first = &runs(&env, "hourly").await[0];
    assert_eq!(
        (&*first.runner, &first.totals),
        (&*taken[0].runner, &taken[0].totals)
    );
}
both_backends!(
    takeover_each,
    a_dead_runners_run_is_taken_over_and_later_periods_wait
);

/// Under `latest` too, one run at a time per job: a newer period waits while a run is held.
/// Once the holder's lease has run out, its run is taken over as of the instant it was first
/// claimed as of, not as of now; then the newest period runs, as of now.
async fn a_taken_over_latest_run_keeps_its_first_as_of<S: Store>(env: TestApp<S>) {
    let services = env.app.services();
    let schedules = services.schedules();
    let probe = Probe::new(&env, &probe_toml("hourly", "0 0 * * * *", "UTC", "latest"));
    let dead = probe.claimant("runner-a");
    let (nine, claimed_at) = (at("2026-03-01T09:00:00Z"), at("2026-03-01T09:20:00Z"));
    env.clock.set(claimed_at);
    schedules.adopt(&dead).await.unwrap();
    let Claim::Run(_) = schedules.claim(&dead, nine, claimed_at).await.unwrap() else {
        panic!("the first claim on a period runs it");
    };
    let b = probe.scheduler(services, "runner-b");
    b.adopt().await.unwrap();
    env.clock.set(at("2026-03-01T10:30:00Z"));
    assert_eq!(
        ran(b.pass().await.unwrap()),
        (0, 0),
        "10:00 waits for 09:00"
    );
    let past_lease = at("2026-03-01T11:20:00.001Z");
    env.clock.set(past_lease);
    assert_eq!(ran(b.pass().await.unwrap()), (2, 2));
    assert_eq!(probe.ran(), [claimed_at, past_lease]);
    let runs = runs(&env, "hourly").await;
    let taken = runs.iter().find(|r| r.period == nine).unwrap();
    assert_eq!((taken.as_of, taken.attempts), (claimed_at, 2));
    assert!(
        runs.iter().all(|r| r.period != at("2026-03-01T10:00:00Z")),
        "the missed 10:00 is covered by the newest run"
    );
}
both_backends!(
    takeover_latest,
    a_taken_over_latest_run_keeps_its_first_as_of
);

/// The killed-process test's time limit: a hang is a failure.
const PROCESS_GRACE: Duration = Duration::from_secs(25);
/// Cards due when the runners start: enough that expiring them 5 at a time takes a while.
const DUE_CARDS: i64 = 3_000;

fn logs(paths: &[&PathBuf]) -> String {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {}\n{}", p.display(), tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A few thousand cards are past their funds-expiry (sold in March; the processes run on the
/// system clock). `tender work`, with an expire job due every 2 seconds that expires 5 cards
/// per transaction and renews a 2-second lease every second, is killed with SIGKILL in the
/// middle of its run. A second `tender work`, started once that run's lease has run out, takes
/// the run over (its second attempt, as of the instant of the first) and expires every card the
/// killed one did not. Every card is then expired exactly once, the runs' totals account for
/// every card the killed one did not, the books check clean and the trail verifies.
async fn a_killed_work_process_leaves_its_run_to_the_next<S: Store>(env: TestApp<S>) {
    let began = Instant::now();
    uk_cards_sold(&env, DUE_CARDS as u64).await;
    let sold = began.elapsed();
    let jobs = env.db.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let expire = edited(
        tender::jobs::expire::SOURCE.builtin,
        &[
            ("schedule = \"0 5 0 * * *\"", "schedule = \"*/2 * * * * *\""),
            ("heartbeat_secs = 10", "heartbeat_secs = 1"),
            ("missed_heartbeats = 3", "missed_heartbeats = 2"),
            ("poll_interval_ms = 30000", "poll_interval_ms = 200"),
            ("chunk_cards = 2000", "chunk_cards = 5"),
        ],
    );
    std::fs::write(jobs.join("expire.toml"), expire).unwrap();
    let (victim_log, survivor_log) = (
        env.db.path().join("victim.log"),
        env.db.path().join("survivor.log"),
    );
    let logs = || logs(&[&victim_log, &survivor_log]);

    let mut victim = tender_process(&env, &["work"], &jobs, &victim_log);
    let deadline = Instant::now() + PROCESS_GRACE;
    loop {
        let done = expired_cards(&env).await;
        assert!(
            done < DUE_CARDS,
            "every card expired before the runner could be killed\n{}",
            logs()
        );
        let running = env
            .count("SELECT count(*) FROM job_run WHERE job = 'expire' AND status = 'running'")
            .await;
        if done > 0 && running == 1 {
            break;
        }
        assert!(
            victim.try_wait().unwrap().is_none(),
            "tender work ended\n{}",
            logs()
        );
        assert!(Instant::now() < deadline, "nothing expired\n{}", logs());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let at_kill = expired_cards(&env).await;
    let killed = "FROM job_run WHERE job = 'expire' AND status = 'running'";
    assert_eq!(
        env.count(&format!("SELECT count(*) {killed}")).await,
        1,
        "the kill left its run running\n{}",
        logs()
    );
    let period_ms = env.count(&format!("SELECT period_ms {killed}")).await;
    let as_of_ms = env.count(&format!("SELECT as_of_ms {killed}")).await;
    let lease_until_ms = env.count(&format!("SELECT lease_until_ms {killed}")).await;
    let killed_at = began.elapsed();
    // The second process starts once the lease has run out, so its first pass takes the run
    // over (before it looks at newer periods, which under `latest` need not wait for it).
    while SystemClock.now().timestamp_millis() <= lease_until_ms {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut survivor = tender_process(&env, &["work"], &jobs, &survivor_log);
    let finished = format!(
        "SELECT count(*) FROM job_run WHERE job = 'expire' AND period_ms = {period_ms} \
         AND status = 'succeeded' AND attempts >= 2"
    );
    while env.count(&finished).await == 0 {
        assert!(
            survivor.try_wait().unwrap().is_none(),
            "the second tender work ended\n{}",
            logs()
        );
        assert!(
            Instant::now() < deadline,
            "the killed run was not finished\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let taken_over = began.elapsed();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&survivor),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    while survivor.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop tender work"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = survivor.wait().unwrap();
    assert!(status.success(), "{status}\n{}", logs());
    let runs = runs(&env, "expire").await;
    let run = runs
        .iter()
        .find(|r| r.period.timestamp_millis() == period_ms)
        .unwrap();
    assert_eq!(
        run.as_of.timestamp_millis(),
        as_of_ms,
        "taken over as of its first claim"
    );
    let cards = |r: &JobRun| r.totals.as_ref().unwrap()["cards"].as_i64().unwrap();
    let counted: i64 = runs
        .iter()
        .filter(|r| r.status == "succeeded")
        .map(cards)
        .sum();
    assert_eq!(
        counted + at_kill,
        DUE_CARDS,
        "the runs' totals count each card the killed run did not: {runs:?}"
    );
    assert_eq!(
        (run.attempts, cards(run)),
        (2, DUE_CARDS - at_kill),
        "the second attempt expired the rest"
    );
    eprintln!(
        "killed work: {DUE_CARDS} cards sold in {sold:.1?}, {at_kill} expired at the kill \
         ({killed_at:.1?}), the killed run finished by the second process at {taken_over:.1?} \
         (attempt {}, {} cards; {} runs in all)",
        run.attempts,
        cards(run),
        runs.len()
    );
    assert_expired_once(&env, DUE_CARDS).await;
}
both_backends!(
    killed_work_process,
    a_killed_work_process_leaves_its_run_to_the_next
);

// ---------------------------------------------------------------------------------------------
// 4. Daylight saving time

/// The local date and time of `at` in New York, as a person reads it.
fn new_york(at: DateTime<Utc>) -> String {
    at.with_timezone(&New_York)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

fn local_midnight(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    New_York
        .with_ymd_and_hms(year, month, day, 0, 0, 0)
        .single()
        .unwrap()
        .to_utc()
}

/// Steps the clock from `from` to `until` (local midnights) in 15-minute steps with the three
/// schedules of `season` passing at each step; the local times of each one's periods from
/// `from` on.
async fn step_through<S: Store>(
    env: &TestApp<S>,
    season: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> [Vec<String>; 3] {
    let services = env.app.services();
    let probes = [
        ("0 30 2 * * *", "each"),
        ("0 30 1 * * *", "each"),
        ("0 0 * * * *", "latest"),
    ]
    .map(|(cron, catch_up)| {
        let name = format!("{season}-{}", cron.replace(' ', "_").replace('*', "x"));
        Probe::new(env, &probe_toml(&name, cron, "America/New_York", catch_up))
    });
    let schedulers = probes
        .each_ref()
        .map(|probe| probe.scheduler(services, "runner"));
    for scheduler in &schedulers {
        scheduler.adopt().await.unwrap();
    }
    env.clock.set(from);
    while env.clock.now() < until {
        let (a, b, c) = tokio::join!(
            schedulers[0].pass(),
            schedulers[1].pass(),
            schedulers[2].pass()
        );
        for pass in [a, b, c] {
            assert!(pass.unwrap().ran <= 1, "one period at most per step");
        }
        env.clock.advance(TimeDelta::minutes(15));
    }
    let mut local = [Vec::new(), Vec::new(), Vec::new()];
    for (n, probe) in probes.iter().enumerate() {
        let runs = runs(env, probe.job()).await;
        assert!(runs.iter().all(|r| r.status == "succeeded"));
        if n < 2 {
            assert!(runs.iter().all(|r| r.as_of == r.period));
            assert_eq!(probe.ran(), periods(&runs), "each period run once");
        }
        local[n] = runs
            .iter()
            .filter(|r| r.period >= from)
            .map(|r| new_york(r.period))
            .collect();
    }
    local
}

/// Daily jobs at 02:30 and 01:30 New York time and an hourly one, passed every 15 minutes
/// through the days around each change of the clocks in 2026 (8 March: 02:00 EST becomes
/// 03:00 EDT; 1 November: 02:00 EDT becomes 01:00 EST). Each daily job fires once every local
/// day: 02:30, which does not exist on 8 March, at 03:30; 01:30, which happens twice on
/// 1 November, at the first. The hourly job fires once per wall-clock hour: 23 times on the
/// 23-hour day and 24 on the 25-hour one.
async fn daily_and_hourly_jobs_across_daylight_saving<S: Store>(env: TestApp<S>) {
    let per_day =
        |hourly: &[String], day: &str| hourly.iter().filter(|t| t.starts_with(day)).count();
    let [late, early, hourly] = step_through(
        &env,
        "spring",
        local_midnight(2026, 3, 7),
        local_midnight(2026, 3, 11),
    )
    .await;
    assert_eq!(
        late,
        [
            "2026-03-07 02:30 EST",
            "2026-03-08 03:30 EDT",
            "2026-03-09 02:30 EDT",
            "2026-03-10 02:30 EDT"
        ]
    );
    assert_eq!(
        early,
        [
            "2026-03-07 01:30 EST",
            "2026-03-08 01:30 EST",
            "2026-03-09 01:30 EDT",
            "2026-03-10 01:30 EDT"
        ]
    );
    assert_eq!(per_day(&hourly, "2026-03-07"), 24);
    assert_eq!(per_day(&hourly, "2026-03-08"), 23, "{hourly:?}");
    assert_eq!(per_day(&hourly, "2026-03-09"), 24);
    assert_eq!(per_day(&hourly, "2026-03-10"), 24);
    assert_eq!(hourly.len(), 24 + 23 + 24 + 24);
    assert!(!hourly.iter().any(|t| t.starts_with("2026-03-08 02:")));

    let [late, early, hourly] = step_through(
        &env,
        "autumn",
        local_midnight(2026, 10, 31),
        local_midnight(2026, 11, 4),
    )
    .await;
    assert_eq!(
        late,
        [
            "2026-10-31 02:30 EDT",
            "2026-11-01 02:30 EST",
            "2026-11-02 02:30 EST",
            "2026-11-03 02:30 EST"
        ]
    );
    assert_eq!(
        early,
        [
            "2026-10-31 01:30 EDT",
            "2026-11-01 01:30 EDT",
            "2026-11-02 01:30 EST",
            "2026-11-03 01:30 EST"
        ]
    );
    assert_eq!(per_day(&hourly, "2026-10-31"), 24);
    assert_eq!(per_day(&hourly, "2026-11-01"), 24, "{hourly:?}");
    assert_eq!(per_day(&hourly, "2026-11-02"), 24);
    assert_eq!(per_day(&hourly, "2026-11-03"), 24);
    assert!(hourly.contains(&"2026-11-01 01:00 EDT".to_string()));
    assert!(!hourly.contains(&"2026-11-01 01:00 EST".to_string()));
}
both_backends!(
    daylight_saving,
    daily_and_hourly_jobs_across_daylight_saving
);

// ---------------------------------------------------------------------------------------------
// 5. A changed definition

/// Runner A runs the built-in expire definition. Runner B starts with a jobs directory whose
/// expire.toml has another schedule, and adopts it: A's next pass claims nothing and says why
/// (`refused`); B's claims. Each run records the hash of the definition it ran under, and
/// `tender jobs runs --format json` shows its first 12 hex digits. A restarted A adopts its own again, and
/// then B is the one refused.
async fn a_runner_on_a_replaced_definition_claims_nothing<S: Store>(env: TestApp<S>) {
    let services = env.app.services();
    let builtin = Catalog::load(None).unwrap().expire;
    let dir = env.db.path().join("jobs-b");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("expire.toml"),
        edited(
            tender::jobs::expire::SOURCE.builtin,
            &[("schedule = \"0 5 0 * * *\"", "schedule = \"0 10 0 * * *\"")],
        ),
    )
    .unwrap();
    let changed = Catalog::load(Some(&dir)).unwrap().expire;
    assert_ne!(builtin.sha, changed.sha);
    let a = expire_scheduler(services, &builtin, "runner-a");
    let b = expire_scheduler(services, &changed, "runner-b");
    let in_force = || async {
        let env = &env;
        let adopted = |sha: &str| {
            let sql = format!(
                "SELECT count(*) FROM job_definition WHERE job = 'expire' AND definition_sha = '{sha}'"
            );
            async move { env.count(&sql).await }
        };
        match (adopted(&builtin.sha).await, adopted(&changed.sha).await) {
            (1, 0) => "builtin",
            (0, 1) => "changed",
            other => panic!("{other:?}"),
        }
    };

    a.adopt().await.unwrap();
    assert_eq!(in_force().await, "builtin");
    assert_eq!(ran(a.pass().await.unwrap()), (1, 1));

    env.clock.advance(TimeDelta::days(1));
    b.adopt().await.unwrap();
    assert_eq!(in_force().await, "changed");
    let refused = a.pass().await.unwrap();
    assert_eq!(
        refused,
        Pass {
            ran: 0,
            succeeded: 0,
            refused: true
        }
    );
    assert_eq!(runs(&env, "expire").await.len(), 1, "A claimed nothing");
    assert_eq!(ran(b.pass().await.unwrap()), (1, 1));
    let runs = runs(&env, "expire").await;
    assert_eq!(
        periods(&runs),
        [at("2026-03-01T00:05:00Z"), at("2026-03-02T00:10:00Z")]
    );
    assert_eq!(runs[0].definition, builtin.sha[..12]);
    assert_eq!(runs[1].definition, changed.sha[..12]);

    // `tender jobs runs` shows which definition ran each (the text table leaves it out).
    let out = tender_command(
        &env,
        &["jobs", "runs", "--job", "expire", "--format", "json"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let definitions: Vec<&str> = listed
        .iter()
        .map(|r| r["definition"].as_str().unwrap())
        .collect();
    assert_eq!(definitions, [&changed.sha[..12], &builtin.sha[..12]]);

    // A restart of A adopts the definition it read: then B refuses.
    a.adopt().await.unwrap();
    assert_eq!(in_force().await, "builtin");
    env.clock.advance(TimeDelta::days(1));
    assert!(b.pass().await.unwrap().refused);
    assert_eq!(ran(a.pass().await.unwrap()), (1, 1));
}
both_backends!(
    changed_definition,
    a_runner_on_a_replaced_definition_claims_nothing
);

// ---------------------------------------------------------------------------------------------
// 6. Failure and retry

/// An hourly `each` job allowed three attempts, retried after 60 s and then 90 s (its
/// maximum). A failed attempt records its error and is retried once the backoff has passed
/// (not before); a retry that succeeds clears the error. A period that fails three times is
/// given up, and the periods after it wait.
async fn a_failed_run_is_retried_after_its_backoff_then_given_up<S: Store>(env: TestApp<S>) {
    let services = env.app.services();
    let probe = Probe::new(&env, &probe_toml("hourly", "0 0 * * * *", "UTC", "each"));
    let scheduler = probe.scheduler(services, "runner");
    scheduler.adopt().await.unwrap();
    let pass = || async { ran(scheduler.pass().await.unwrap()) };
    let last = || async { runs(&env, "hourly").await.pop().unwrap() };
    let (nine, ten) = (at("2026-03-01T09:00:00Z"), at("2026-03-01T10:00:00Z"));

    // 09:00 fails once, then succeeds on its retry.
    probe.fail_next(1);
    assert_eq!(pass().await, (1, 0));
    let run = last().await;
    assert_eq!((&*run.status, run.attempts), ("failed", 1));
    assert_eq!(
        run.error.as_deref(),
        Some("probe.failed: the probe failed as it was told to")
    );
    assert_eq!(pass().await, (0, 0), "not before its backoff");
    env.clock.advance(TimeDelta::seconds(59));
    assert_eq!(pass().await, (0, 0));
    env.clock.advance(TimeDelta::seconds(1));
    assert_eq!(pass().await, (1, 1));
    let run = last().await;
    assert_eq!(
        (&*run.status, run.attempts, run.error.as_deref()),
        ("succeeded", 2, None)
    );

    // 10:00 fails on every attempt.
    probe.fail_next(3);
    env.clock.set(ten);
    assert_eq!(pass().await, (1, 0));
    env.clock.advance(TimeDelta::seconds(60));
    assert_eq!(pass().await, (1, 0), "the second attempt after 60 s");
    env.clock.advance(TimeDelta::seconds(89));
    assert_eq!(pass().await, (0, 0), "the third waits 90 s, the maximum");
    env.clock.advance(TimeDelta::seconds(1));
    assert_eq!(pass().await, (1, 0));
    let run = last().await;
    assert_eq!((run.period, &*run.status, run.attempts), (ten, "failed", 3));
    assert!(run.error.is_some());

    // Given up: hours later, 11:00 and 12:00 still wait behind it.
    env.clock.set(at("2026-03-01T12:30:00Z"));
    assert_eq!(pass().await, (0, 0));
    assert_eq!(periods(&runs(&env, "hourly").await), [nine, ten]);
    let gave_up = services
        .schedules()
        .claim(&probe.claimant("other"), ten, ten)
        .await
        .unwrap();
    assert!(
        matches!(
            gave_up,
            Claim::GaveUp {
                attempts: 3,
                error: Some(_)
            }
        ),
        "{gave_up:?}"
    );
    assert_eq!(probe.ran(), [nine, nine, ten, ten, ten]);
}
both_backends!(
    failure_and_retry,
    a_failed_run_is_retried_after_its_backoff_then_given_up
);

// ---------------------------------------------------------------------------------------------
// 7. The seal key

/// The job runtime of a process without the seal key runs expire and purge and never claims
/// seal-audit or settle (nor records a definition of them). With the seal key in its key
/// directory, the next runtime claims both: seal-audit seals, and settle closes the day before
/// and seals again after it.
async fn only_a_process_with_the_seal_key_claims_seal_audit<S: Store>(env: TestApp<S>) {
    let catalog = Catalog::load(None).unwrap();
    let env = &env;
    let count = |job: &str| {
        let sql = format!("SELECT count(*) FROM job_run WHERE job = '{job}'");
        async move { env.count(&sql).await }
    };
    catalog
        .runtime(&env.app, Arc::new(|_| {}))
        .run(RunMode::Drain)
        .await
        .unwrap();
    assert_eq!((count("expire").await, count("purge").await), (1, 1));
    assert_eq!((count("seal-audit").await, count("settle").await), (0, 0));
    assert_eq!(
        env.count("SELECT count(*) FROM job_definition WHERE job IN ('seal-audit', 'settle')")
            .await,
        0
    );
    assert_eq!(env.count("SELECT count(*) FROM audit_seal").await, 0);

    let settings = env.app.settings();
    SealKey::create_files(&settings.key_dir()).unwrap();
    catalog
        .runtime(&env.app, Arc::new(|_| {}))
        .run(RunMode::Drain)
        .await
        .unwrap();
    let sealed = runs(env, "seal-audit").await;
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].status, "succeeded", "{sealed:?}");
    let settled = runs(env, "settle").await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].status, "succeeded", "{settled:?}");
    assert_eq!(env.count("SELECT count(*) FROM settlement").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM audit_seal").await, 2);
    assert!(settings.witness_file().exists());
    // Expire and purge ran for today already.
    assert_eq!((count("expire").await, count("purge").await), (1, 1));
}
both_backends!(seal_key, only_a_process_with_the_seal_key_claims_seal_audit);

// ---------------------------------------------------------------------------------------------
// 8. `tender jobs runs`

/// `tender jobs runs --job expire` lists expire's runs, newest first (period, status, attempts,
/// totals), and no other job's; `--format json` gives each field.
async fn jobs_runs_lists_a_jobs_runs<S: Store>(env: TestApp<S>) {
    let services = env.app.services();
    uk_cards_sold(&env, 3).await;
    let catalog = Catalog::load(None).unwrap();
    let expire = expire_scheduler(services, &catalog.expire, "runner");
    expire.adopt().await.unwrap();
    assert_eq!(ran(expire.pass().await.unwrap()), (1, 1));
    env.clock.advance(TimeDelta::days(2));
    assert_eq!(ran(expire.pass().await.unwrap()), (1, 1));
    let purge = Scheduler::new(
        services.clone(),
        tender::jobs::purge::PurgeDuty::new(
            services.clone(),
            catalog.purge.clone(),
            TimeDelta::days(14),
        ),
        "runner",
    )
    .unwrap();
    assert_eq!(ran(purge.pass().await.unwrap()), (1, 1));

    let out = tender_command(&env, &["jobs", "runs", "--job", "expire"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two runs:\n{stdout}");
    for column in ["job", "period", "status", "attempts", "totals", "error"] {
        assert!(lines[0].contains(column), "{stdout}");
    }
    for (line, period, cards) in [
        (lines[1], "2026-03-03T00:05:00Z", "\"cards\":3"),
        (lines[2], "2026-03-01T00:05:00Z", "\"cards\":0"),
    ] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[..2], ["expire", period], "{stdout}");
        assert!(
            cells.contains(&"succeeded") && cells.contains(&"1"),
            "{stdout}"
        );
        assert!(line.contains(cards), "{stdout}");
    }
    assert!(!stdout.contains("purge"), "{stdout}");

    let out = tender_command(
        &env,
        &["jobs", "runs", "--job", "expire", "--format", "json"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["job"], "expire");
    assert_eq!(runs[0]["period"], "2026-03-03T00:05:00Z");
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["attempts"], 1);
    assert_eq!(runs[0]["definition"], catalog.expire.sha[..12]);
    assert_eq!(runs[0]["totals"]["cards"], 3);
    assert_eq!(runs[1]["totals"]["cards"], 0);
}
both_backends!(jobs_runs_cli, jobs_runs_lists_a_jobs_runs);

// ---------------------------------------------------------------------------------------------
// 9. The purge

/// `count` rows in the job runner's own table, of `queue`, with `status`, `attempts` of
/// `max_attempts`, due at `run_at` and finished at `done_at`.
async fn insert_jobs<S: Store>(
    env: &TestApp<S>,
    queue: &str,
    status: &str,
    (attempts, max_attempts): (i32, i32),
    count: i64,
    run_at: DateTime<Utc>,
    done_at: Option<DateTime<Utc>>,
) {
    let (table, time): (&str, fn(i64) -> String) = match env.store().db_pool() {
        // SQLite's apalis keeps Unix seconds; PostgreSQL's, timestamps.
        DbPool::Sqlite(_) => ("Jobs", |s| s.to_string()),
        DbPool::Postgres(_) => ("apalis.jobs", |s| format!("to_timestamp({s})")),
    };
    let job = env.blob(b"{}");
    let done = done_at.map_or("NULL".to_string(), |d| time(d.timestamp()));
    let rows: Vec<String> = (0..count)
        .map(|_| {
            format!(
                "({job}, '{}', '{queue}', '{status}', {attempts}, {max_attempts}, {}, {done})",
                ulid::Ulid::generate(),
                time(run_at.timestamp())
            )
        })
        .collect();
    for chunk in rows.chunks(500) {
        env.exec(&format!(
            "INSERT INTO {table} (job, id, job_type, status, attempts, max_attempts, run_at, \
             done_at) VALUES {}",
            chunk.join(", ")
        ))
        .await;
    }
}

/// Idempotency records older than the purge definition's 30 days are deleted and younger ones
/// kept. Finished jobs (done, killed, failed with no attempt left) that finished longer ago
/// than TENDER_FINISHED_JOBS_KEEP (7 days here) are deleted, several batches' worth; younger
/// ones and unfinished ones (pending, failed with attempts left) are kept whatever their age.
async fn the_purge_removes_only_what_is_past_its_retention<S: Store>(env: TestApp<S>) {
    let services = env.app.services();
    let form = ApiKeyForm {
        name: "web".into(),
        role: "redeem".into(),
        retailer: None,
        store: None,
    };
    let client = services
        .api_keys()
        .create(&form, &actor())
        .await
        .unwrap()
        .client;
    let claim = |key: &'static str| {
        let client_key_id = client.key_id.clone();
        async move {
            let request = IdemRequest {
                client_key_id: &client_key_id,
                idem_key: key,
                method: "POST",
                path: "/v1/accounts/1/redemptions",
                body: b"{}",
            };
            let claimed = services
                .idempotency()
                .claim(&request, Duration::from_secs(30))
                .await
                .unwrap();
            assert!(matches!(claimed, Claimed::Run(_)));
        }
    };
    claim("old-1").await;
    claim("old-2").await;
    env.clock.advance(TimeDelta::days(20));
    claim("recent").await;
    env.clock.advance(TimeDelta::days(11));
    let now = env.clock.now();

    let (old, young) = (now - TimeDelta::days(8), now - TimeDelta::days(6));
    let (served, retired) = ("tender.generate-batch.v1", "tender.retired.v1");
    let old_done = 2 * status::PURGE_BATCH_JOBS + 500;
    insert_jobs(&env, served, "Done", (1, 10), old_done, old, Some(old)).await;
    insert_jobs(&env, served, "Killed", (1, 10), 7, old, Some(old)).await;
    insert_jobs(&env, served, "Failed", (10, 10), 5, old, Some(old)).await;
    insert_jobs(&env, served, "Done", (1, 10), 6, young, Some(young)).await;
    insert_jobs(&env, retired, "Failed", (2, 10), 3, old, Some(old)).await;
    insert_jobs(&env, retired, "Pending", (0, 10), 4, old, None).await;
    let env = &env;
    let jobs = |status: &str| {
        let sql = match env.store().db_pool() {
            DbPool::Sqlite(_) => format!("SELECT count(*) FROM Jobs WHERE status = '{status}'"),
            DbPool::Postgres(_) => {
                format!("SELECT count(*) FROM apalis.jobs WHERE status = '{status}'")
            }
        };
        async move { env.count(&sql).await }
    };
    assert_eq!(jobs("Done").await, old_done + 6);

    let settings = Settings {
        finished_jobs_keep: KeepDays::parse("7d").unwrap(),
        ..env.db.settings()
    };
    let app = env.reopen(&settings).await;
    Catalog::load(None)
        .unwrap()
        .runtime(&app, Arc::new(|_| {}))
        .run(RunMode::Drain)
        .await
        .unwrap();

    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record").await,
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM idempotency_record WHERE idem_key = 'recent'")
            .await,
        1
    );
    assert_eq!(jobs("Done").await, 6, "the young finished jobs stay");
    assert_eq!(jobs("Killed").await, 0);
    assert_eq!(jobs("Failed").await, 3, "failed with attempts left stay");
    assert_eq!(jobs("Pending").await, 4);
    let purged = runs(env, "purge").await;
    assert_eq!(purged.len(), 1);
    let totals = purged[0].totals.as_ref().unwrap();
    assert_eq!(totals["idempotency_records"], 2);
    assert_eq!(totals["finished_jobs"], old_done + 7 + 5);
}
both_backends!(purge, the_purge_removes_only_what_is_past_its_retention);
