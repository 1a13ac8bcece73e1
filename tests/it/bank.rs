//! The bank test (issue 11): several OS processes move money at random against one database
//! while one of them is killed with SIGKILL, and afterwards the books prove that nothing was
//! lost, made up or left half done.
//!
//! The test re-executes its own binary as the workers, each running the `#[ignore]`d
//! [`worker`] test with a plan (the database, the key directory, the printer files to read
//! codes from, the accounts and the serials it may sell) named by an environment variable: no
//! code ever travels on a command line. Each worker runs two tasks that activate, redeem,
//! spend, refund, void, adjust and retry at random for a fixed time, accepting only the
//! business refusals each request can meet under any interleaving; anything else fails it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use tender::app::{App, Launch};
use tender::clock::FixedClock;
use tender::codegen::CodeGenerator;
use tender::config::{RedeemLimits, Settings, WindowLimits};
use tender::domain::{Actor, Batch, PageRows, Serial};
use tender::error::Classify;
use tender::keys::KeyNeeds;
use tender::service::batches::BatchForm;
use tender::service::cards::{ActivateForm, PosForm, StoreForm, VoidForm};
use tender::service::ledger::{AdjustForm, Adjusted, Posted, RefundForm, SpendForm};
use tender::service::redemption::Redeemed;
use tender::store::Store;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, actor, both_backends, epoch, open_account, usd_form};

/// Worker processes; the first is the one killed.
const WORKERS: usize = 3;
/// Concurrent tasks in each worker process.
const TASKS: usize = 2;
/// How long each worker moves money, from the moment it is ready.
const RUN: Duration = Duration::from_millis(3_500);
/// How much longer a task runs past [`RUN`] while it has not yet done every kind of request.
const OVERTIME: Duration = Duration::from_secs(20);
/// When the victim is killed, after every worker is ready: well inside its run.
const KILL_AFTER: Duration = Duration::from_millis(1_500);
/// How long a worker may take to open the app, and to finish after its run, before the test
/// gives up on it (a hang is a failure, not a wait).
const GRACE: Duration = Duration::from_secs(60);
/// The plan file a worker reads; unset, the worker test does nothing.
const PLAN_VAR: &str = "TENDER_BANK_PLAN";
/// The worker's number.
const WORKER_VAR: &str = "TENDER_BANK_WORKER";
/// Fixes the traffic's random seed, to replay a run; by default each run draws its own.
const SEED_VAR: &str = "TENDER_BANK_SEED";
/// What a worker prints once its app is open, and before its tally.
const READY: &str = "bank-worker-ready";
const TALLY: &str = "bank-worker-tally ";
const STORE: &str = "S1";
/// Limits high enough that no redemption here is refused for them: this test is about money,
/// the guessing limits have their own.
const LIMITS: RedeemLimits = RedeemLimits {
    account: WindowLimits {
        hour: 1_000_000,
        day: 1_000_000,
    },
    caller: WindowLimits {
        hour: 1_000_000,
        day: 1_000_000,
    },
    address: WindowLimits {
        hour: 1_000_000,
        day: 1_000_000,
    },
};

/// What the parent hands each worker, as a file in the test's directory.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    database_url: String,
    data_dir: PathBuf,
    /// The batches' printer files: the only place the codes are.
    printer_files: Vec<PathBuf>,
    /// Each account's id and currency.
    accounts: Vec<(String, String)>,
    /// Cards the parent sold before the run.
    sold: Vec<String>,
    /// Cards every worker sells under one shared POS key: one sale, the other copies replayed.
    shared: Vec<String>,
    /// Cards only worker `n` sells, `own[n]`.
    own: Vec<Vec<String>>,
    seed: u64,
    run_ms: u64,
}

/// What one worker did: what succeeded (and for how much), what was answered as a replay, and
/// each refusal by its code.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    activated: i64,
    voided: i64,
    redeemed: i64,
    redeemed_minor: i64,
    spent: i64,
    spent_minor: i64,
    refunded: i64,
    refunded_minor: i64,
    adjusted: i64,
    adjusted_minor: i64,
    replays: i64,
    refusals: BTreeMap<String, i64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.activated += other.activated;
        self.voided += other.voided;
        self.redeemed += other.redeemed;
        self.redeemed_minor += other.redeemed_minor;
        self.spent += other.spent;
        self.spent_minor += other.spent_minor;
        self.refunded += other.refunded;
        self.refunded_minor += other.refunded_minor;
        self.adjusted += other.adjusted;
        self.adjusted_minor += other.adjusted_minor;
        self.replays += other.replays;
        for (code, n) in other.refusals {
            *self.refusals.entry(code).or_default() += n;
        }
    }

    /// Counts a refusal, which must be one of `expected`: any other error fails the worker.
    fn refused(
        &mut self,
        op: &str,
        error: &(impl Classify + std::fmt::Display),
        expected: &[&str],
    ) {
        let code = error.code();
        assert!(
            expected.contains(&code),
            "{op}: unexpected error {code}: {error}"
        );
        *self.refusals.entry(code.to_string()).or_default() += 1;
    }
}

/// The settings every process opens the database with: the test's keys, and limits no
/// redemption here reaches.
fn settings(data_dir: &Path, database_url: &str) -> Settings {
    Settings {
        database_url: Some(database_url.to_string()),
        redeem_limits: LIMITS,
        ..Settings::in_dir(data_dir)
    }
}

/// `1234` as `12.34`, `-5` as `-0.05`.
fn cents(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.abs();
    format!("{sign}{}.{:02}", minor / 100, minor % 100)
}

fn card(batch: &Batch, n: u64) -> Serial {
    Serial::from_sequence(batch.first_serial.sequence() + n).unwrap()
}

/// Many processes and tasks activate, redeem, spend, refund, void, adjust and retry at random
/// against one database for a fixed time; one process is killed with SIGKILL mid-run. Then:
/// the survivors met only business refusals and each did some of every kind; everything every
/// survivor was told succeeded is in the books, exactly (and the victim's work before it died
/// is there too); every transfer balances and is whole with its business record and audit
/// record; no balance is negative; each account's balance is the sum of its history; value is
/// conserved per currency (activations − voids + adjustments − spends + refunds = card
/// balances + account balances), from the ledger's entries and from the business tables
/// alike; `ledger check` finds nothing and the audit trail verifies.
async fn money_survives_many_processes_and_a_kill<S: Store>(env: TestApp<S>) {
    let began = Instant::now();
    let plan = setup(&env).await;
    let plan_path = env.db.path().join("bank-plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(&plan).unwrap()).unwrap();
    eprintln!("bank: seed {} ({SEED_VAR} replays it)", plan.seed);

    let mut workers: Vec<Worker> = (0..WORKERS).map(|n| Worker::start(n, &plan_path)).collect();
    for worker in &mut workers {
        worker.ready().await;
    }
    tokio::time::sleep(KILL_AFTER).await;
    let (victim, survivors) = workers.split_first_mut().unwrap();
    victim.child.start_kill().unwrap();
    let (status, _) = victim.finish().await;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the victim was killed mid-run, not finished: {status}"
    );
    let mut tallies = Vec::new();
    for worker in survivors {
        let (status, lines) = worker.finish().await;
        assert!(
            status.success(),
            "worker {} failed ({status}); its output:\n{}",
            worker.n,
            lines.join("\n")
        );
        let tally = lines
            .iter()
            .find_map(|line| line.split_once(TALLY).map(|(_, tally)| tally))
            .unwrap_or_else(|| panic!("worker {} printed no tally", worker.n));
        let tally: Tally = serde_json::from_str(tally).unwrap();
        eprintln!("bank: worker {} {tally:?}", worker.n);
        tallies.push((worker.n, tally));
    }
    let run = began.elapsed();

    for (n, tally) in &tallies {
        // Every kind of request succeeded some of the time: the traffic was real.
        for (kind, done) in [
            ("activations", tally.activated),
            ("voids", tally.voided),
            ("redemptions", tally.redeemed),
            ("spends", tally.spent),
            ("refunds", tally.refunded),
            ("adjustments", tally.adjusted),
            ("replays", tally.replays),
        ] {
            assert!(done > 0, "worker {n} made no {kind}: {tally:?}");
        }
        // What the worker was told succeeded is in the books, exactly: no success lost, no
        // write the worker was not told of.
        assert_eq!(done_by(&env, *n).await, booked(tally), "worker {n}");
    }
    // The victim did work before it died (its committed part stays, as checked below).
    let victim_did = done_by(&env, 0).await;
    assert!(victim_did.iter().any(|&n| n > 0), "{victim_did:?}");

    assert_books_hold(&env, &plan).await;
    eprintln!(
        "bank: setup and run {:.1} s, with the checks {:.1} s",
        run.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}
both_backends!(many_processes, money_survives_many_processes_and_a_kill);

/// Acme with its Texas store, two batches of fixed-value cards (25.00 and 10.00 USD), eight
/// accounts each funded 50.00 (six US in USD, one US in EUR, one Canadian in USD: redemptions
/// into the last two are refused), some cards sold before the run; the rest split between
/// the workers, a few shared by all.
async fn setup<S: Store>(env: &TestApp<S>) -> Plan {
    let services = env.app.services();
    let twenty_fives = env.request(150).await;
    let tens = services
        .batches()
        .request(
            &BatchForm {
                value: Some("10.00".into()),
                ..usd_form(60)
            },
            &actor(),
        )
        .await
        .unwrap();
    let mut batches = Vec::new();
    for (batch, count) in [(twenty_fives, 150), (tens, 60)] {
        let batch = env
            .generate(batch.id, &mut CodeGenerator::from_os_rng(), count)
            .await;
        batches.push(batch);
    }
    let store = StoreForm {
        retailer: "Acme".into(),
        store: STORE.into(),
        jurisdiction: "US-TX".into(),
    };
    services.cards().add_store(&store, &actor()).await.unwrap();

    let mut accounts = Vec::new();
    for (region, currency) in [
        ("US", "USD"),
        ("US", "USD"),
        ("US", "USD"),
        ("US", "USD"),
        ("US", "USD"),
        ("US", "USD"),
        ("US", "EUR"),
        ("CA", "USD"),
    ] {
        let id = open_account(env, region, currency).await;
        let form = AdjustForm {
            account: id.clone(),
            amount: "50.00".into(),
            currency: currency.into(),
            reason: "goodwill".into(),
        };
        services.ledger().adjust(&form, &actor()).await.unwrap();
        accounts.push((id, currency.to_string()));
    }

    // The first 30 and 10 cards are sold as boxes before the run: codes any worker may redeem
    // from its first moment.
    let mut sold = Vec::new();
    let mut rest = Vec::new();
    for (batch, presold) in batches.iter().zip([30, 10]) {
        let form = ActivateForm {
            pos: PosForm {
                retailer: "Acme".into(),
                store: STORE.into(),
                terminal: "till-0".into(),
                pos_txn: format!("box-{}", batch.id),
                pos_time: None,
            },
            serial: card(batch, 0).to_string(),
            to_serial: Some(card(batch, presold - 1).to_string()),
            value: None,
            purchaser_state: None,
        };
        services.cards().activate(&form, &actor()).await.unwrap();
        sold.extend((0..presold).map(|n| card(batch, n).to_string()));
        rest.extend((presold..batch.count).map(|n| card(batch, n).to_string()));
    }
    let shared = rest.split_off(rest.len() - 12);
    let mut own = vec![Vec::new(); WORKERS];
    for (i, serial) in rest.into_iter().enumerate() {
        own[i % WORKERS].push(serial);
    }
    let seed = match std::env::var(SEED_VAR) {
        Ok(seed) => seed.parse().unwrap(),
        Err(_) => ChaCha8Rng::from_os_rng().next_u64(),
    };
    Plan {
        database_url: env.db.url.clone(),
        data_dir: env.db.path().to_path_buf(),
        printer_files: batches.iter().map(|b| env.export_file(b.id)).collect(),
        accounts,
        sold,
        shared,
        own,
        seed,
        run_ms: u64::try_from(RUN.as_millis()).unwrap(),
    }
}

/// A worker process as the parent sees it: the child, its stdout lines as they come, and
/// whether it said it is ready.
struct Worker {
    n: usize,
    child: Child,
    ready: Option<tokio::sync::oneshot::Receiver<()>>,
    output: tokio::task::JoinHandle<Vec<String>>,
}

impl Worker {
    /// Starts worker `n`: this test binary again, running only the worker test, with the
    /// plan's path in its environment (never a code in its arguments).
    fn start(n: usize, plan: &Path) -> Worker {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "bank::worker",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(PLAN_VAR, plan)
            .env(WORKER_VAR, n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready, ready_rx) = tokio::sync::oneshot::channel();
        let output = tokio::spawn(async move {
            let mut ready = Some(ready);
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                // libtest prints the test's name before it, on the same line.
                if line.ends_with(READY)
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
                seen.push(line);
            }
            seen
        });
        Worker {
            n,
            child,
            ready: Some(ready_rx),
            output,
        }
    }

    /// Waits until the worker's app is open and its run has begun.
    async fn ready(&mut self) {
        let ready = self.ready.take().unwrap();
        if !matches!(tokio::time::timeout(GRACE, ready).await, Ok(Ok(()))) {
            let (status, lines) = self.finish().await;
            panic!(
                "worker {} never got ready ({status}):\n{}",
                self.n,
                lines.join("\n")
            );
        }
    }

    /// Its exit status and everything it printed.
    async fn finish(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = match tokio::time::timeout(RUN + OVERTIME + GRACE, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                self.child.kill().await.unwrap();
                panic!("worker {} did not finish", self.n);
            }
        };
        let lines = (&mut self.output).await.unwrap();
        (status, lines)
    }
}

// ---------------------------------------------------------------------------------------------
// The worker process.

/// One worker process of the bank test; started by it with a plan, it does nothing otherwise
/// (so `cargo test -- --ignored` passes through it). It opens the app as the binary does, runs
/// its tasks until the plan's time is up, and prints its tally.
#[test]
#[ignore = "a worker process of the bank test, which starts it with a plan"]
fn worker() {
    let Some(plan) = std::env::var_os(PLAN_VAR) else {
        return;
    };
    let n: usize = std::env::var(WORKER_VAR).unwrap().parse().unwrap();
    let plan: Plan = serde_json::from_slice(&std::fs::read(plan).unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let settings = settings(&plan.data_dir, &plan.database_url);
    let clock = Arc::new(FixedClock::at(epoch()));
    let tally = runtime
        .block_on(tender::app::launch(&settings, clock, Traffic { plan, n }))
        .unwrap();
    println!("{TALLY}{}", serde_json::to_string(&tally).unwrap());
}

/// A worker's run, over whichever backend the plan's database URL names.
struct Traffic {
    plan: Plan,
    n: usize,
}

/// What a worker's tasks share: the accounts, every card's code, the cards sold before the run
/// and the shared ones.
struct Context {
    accounts: Vec<(String, String)>,
    codes: BTreeMap<Serial, String>,
    sold: Vec<Serial>,
    shared: Vec<Serial>,
    actor: Actor,
    n: usize,
    deadline: Instant,
}

impl Launch for Traffic {
    type Output = Tally;

    fn needs(&self) -> KeyNeeds {
        KeyNeeds::ALL
    }

    async fn run<S: Store>(self, app: App<S>) -> Tally {
        let plan = self.plan;
        let mut codes = BTreeMap::new();
        for file in &plan.printer_files {
            let mut reader = csv::Reader::from_path(file).unwrap();
            for record in reader.records() {
                let record = record.unwrap();
                codes.insert(Serial::parse(&record[0]).unwrap(), record[1].to_string());
            }
        }
        let serials = |list: &[String]| -> Vec<Serial> {
            list.iter().map(|s| Serial::parse(s).unwrap()).collect()
        };
        println!("{READY}");
        let ctx = Arc::new(Context {
            accounts: plan.accounts.clone(),
            codes,
            sold: serials(&plan.sold),
            shared: serials(&plan.shared),
            actor: Actor::cli(&format!("bank-w{}", self.n), None).unwrap(),
            n: self.n,
            deadline: Instant::now() + Duration::from_millis(plan.run_ms),
        });
        let own = serials(&plan.own[self.n]);
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let mine = own.iter().skip(t).step_by(TASKS).copied().collect();
                let seed = plan.seed ^ ((self.n * TASKS + t) as u64).wrapping_mul(0x9e37_79b9);
                let task = Task::new(app.clone(), Arc::clone(&ctx), t, mine, seed);
                tokio::spawn(task.run())
            })
            .collect();
        let mut tally = Tally::default();
        for task in tasks {
            tally.add(
                task.await
                    .expect("a worker task met only expected outcomes"),
            );
        }
        tally
    }
}

/// A request that succeeded, kept to be sent again: its copy must be answered as the first.
enum Retry {
    Activate(ActivateForm),
    Void(VoidForm, Option<i64>),
    Spend(SpendForm, Posted),
    Refund(RefundForm, Posted),
    Redeem {
        account: String,
        code: String,
        key: Option<String>,
        first: Redeemed,
    },
}

/// One task of a worker: its own random choices and what it has done so far.
struct Task<S> {
    app: App<S>,
    ctx: Arc<Context>,
    t: usize,
    rng: ChaCha8Rng,
    /// Its own cards not sold yet.
    unsold: Vec<Serial>,
    /// Cards it knows are sold: redemption targets.
    known: Vec<Serial>,
    /// Cards it sold (or whose shared sale it was answered), not yet voided by it.
    voidable: Vec<Serial>,
    /// Its orders: (account, order, amount).
    orders: Vec<(usize, String, i64)>,
    retries: Vec<Retry>,
    tally: Tally,
    /// A number for each request, for its ids.
    i: u64,
}

impl<S: Store> Task<S> {
    fn new(app: App<S>, ctx: Arc<Context>, t: usize, unsold: Vec<Serial>, seed: u64) -> Self {
        let known = ctx.sold.clone();
        Task {
            app,
            ctx,
            t,
            rng: ChaCha8Rng::seed_from_u64(seed),
            unsold,
            known,
            voidable: Vec::new(),
            orders: Vec::new(),
            retries: Vec::new(),
            tally: Tally::default(),
            i: 0,
        }
    }

    /// A random number below `n`.
    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// A random amount of minor units below `n`.
    fn minor_below(&mut self, n: i64) -> i64 {
        let n = u64::try_from(n).unwrap();
        i64::try_from(self.rng.next_u64() % n).unwrap()
    }

    /// An id unique to this request of this task of this worker.
    fn id(&self, what: &str) -> String {
        format!("w{}-t{}-{what}{}", self.ctx.n, self.t, self.i)
    }

    fn pos(&self, pos_txn: String) -> PosForm {
        PosForm {
            retailer: "Acme".into(),
            store: STORE.into(),
            terminal: format!("till-{}-{}", self.ctx.n, self.t),
            pos_txn,
            pos_time: None,
        }
    }

    /// Whether this task has done every kind of request at least once, as the test demands
    /// of each worker.
    fn did_each_kind(&self) -> bool {
        let t = &self.tally;
        [
            t.activated,
            t.voided,
            t.redeemed,
            t.spent,
            t.refunded,
            t.adjusted,
            t.replays,
        ]
        .iter()
        .all(|&n| n > 0)
    }

    /// Runs until the deadline, and past it (up to [`OVERTIME`] more) until it has done every
    /// kind of request: on a slow, loaded machine the random mix may not reach every kind in
    /// the run's time.
    async fn run(mut self) -> Tally {
        let overtime = self.ctx.deadline + OVERTIME;
        while Instant::now() < self.ctx.deadline
            || (!self.did_each_kind() && Instant::now() < overtime)
        {
            self.i += 1;
            match self.below(100) {
                0..18 => self.activate().await,
                18..43 => self.redeem().await,
                43..61 => self.spend().await,
                61..73 if !self.orders.is_empty() => self.refund().await,
                73..81 if !self.voidable.is_empty() => self.void().await,
                81..93 => self.adjust().await,
                93..100 if !self.retries.is_empty() => self.retry().await,
                _ => self.adjust().await,
            }
        }
        self.tally
    }

    /// Sells one of its own cards, or a shared one under the key every worker uses for it.
    async fn activate(&mut self) {
        let shared = self.unsold.is_empty() || self.below(4) == 0;
        let (serial, pos) = if shared {
            let i = self.below(self.ctx.shared.len());
            let serial = self.ctx.shared[i];
            let pos = PosForm {
                terminal: "till-shared".into(),
                ..self.pos(format!("shared-{serial}"))
            };
            (serial, pos)
        } else {
            let i = self.below(self.unsold.len());
            let serial = self.unsold.swap_remove(i);
            (serial, self.pos(self.id("a")))
        };
        let form = ActivateForm {
            pos,
            serial: serial.to_string(),
            to_serial: None,
            value: None,
            purchaser_state: None,
        };
        let cards = self.app.services().cards();
        match cards.activate(&form, &self.ctx.actor).await {
            Ok(result) => {
                assert_eq!(result.cards.len(), 1, "{result:?}");
                assert_eq!(result.cards[0].outcome, "activated", "{result:?}");
                if result.replayed {
                    // Only a shared card's sale is answered as another's.
                    assert!(shared, "{result:?}");
                    self.tally.replays += 1;
                } else {
                    self.tally.activated += 1;
                }
                if !self.known.contains(&serial) {
                    self.known.push(serial);
                    self.voidable.push(serial);
                }
                self.retries.push(Retry::Activate(form));
            }
            // A code tried before its card was sold exposes the card.
            Err(e) => self.tally.refused("activate", &e, &["card.exposed"]),
        }
    }

    /// Redeems a code into a random account: mostly of a card it knows was sold, sometimes of
    /// any card (perhaps not sold yet, or redeemed or voided by another), sometimes of none.
    async fn redeem(&mut self) {
        let code = match self.below(20) {
            0 => format!("7000 0000 0000 {:04}", self.below(10_000)),
            1..4 => {
                let n = self.below(self.ctx.codes.len());
                self.ctx.codes.values().nth(n).unwrap().clone()
            }
            _ => {
                let i = self.below(self.known.len());
                let serial = self.known[i];
                self.ctx.codes[&serial].clone()
            }
        };
        let a = self.below(self.ctx.accounts.len());
        let account = self.ctx.accounts[a].0.clone();
        let key = (self.below(2) == 0).then(|| self.id("k"));
        let redemption = self.app.services().redemption();
        match redemption
            .redeem(&account, &code, key.as_deref(), &self.ctx.actor)
            .await
        {
            Ok(redeemed) => {
                if redeemed.replayed {
                    // This account redeemed the card before: answered with that success.
                    self.tally.replays += 1;
                } else {
                    self.tally.redeemed += 1;
                    self.tally.redeemed_minor += redeemed.amount.minor();
                }
                let first = Redeemed {
                    replayed: false,
                    ..redeemed
                };
                self.retries.push(Retry::Redeem {
                    account,
                    code,
                    key,
                    first,
                });
            }
            Err(e) => self.tally.refused(
                "redeem",
                &e,
                &[
                    "redeem.not_found",
                    "redeem.not_activated",
                    "redeem.already_redeemed",
                    "redeem.region_mismatch",
                    "redeem.currency_mismatch",
                ],
            ),
        }
    }

    /// Spends 1.00 to 30.00 from a random account under a new order id.
    async fn spend(&mut self) {
        let a = self.below(self.ctx.accounts.len());
        let minor = 100 + self.minor_below(2_901);
        let form = SpendForm {
            account: self.ctx.accounts[a].0.clone(),
            amount: cents(minor),
            currency: self.ctx.accounts[a].1.clone(),
            order: self.id("o"),
            service: "app-store".into(),
            effective_at: None,
        };
        match self
            .app
            .services()
            .ledger()
            .spend(&form, &self.ctx.actor)
            .await
        {
            Ok(posted) => {
                assert!(!posted.replayed, "a new order is no replay");
                self.tally.spent += 1;
                self.tally.spent_minor += minor;
                self.orders.push((a, form.order.clone(), minor));
                self.retries.push(Retry::Spend(form, posted));
            }
            Err(e) => self
                .tally
                .refused("spend", &e, &["ledger.insufficient_funds"]),
        }
    }

    /// Refunds part or all of one of its orders, under a new refund id: more than the order
    /// has left is refused.
    async fn refund(&mut self) {
        let i = self.below(self.orders.len());
        let (a, order, minor) = self.orders[i].clone();
        let amount = 1 + self.minor_below(minor);
        let form = RefundForm {
            account: self.ctx.accounts[a].0.clone(),
            order,
            refund: self.id("r"),
            amount: cents(amount),
            currency: self.ctx.accounts[a].1.clone(),
            effective_at: None,
        };
        match self
            .app
            .services()
            .ledger()
            .refund(&form, &self.ctx.actor)
            .await
        {
            Ok(posted) => {
                assert!(!posted.replayed, "a new refund is no replay");
                self.tally.refunded += 1;
                self.tally.refunded_minor += amount;
                self.retries.push(Retry::Refund(form, posted));
            }
            Err(e) => self
                .tally
                .refused("refund", &e, &["ledger.refund_exceeds_order"]),
        }
    }

    /// Voids the sale of a card it sold: refused once the card is redeemed, or voided by
    /// another worker (a shared card).
    async fn void(&mut self) {
        let i = self.below(self.voidable.len());
        let serial = self.voidable.swap_remove(i);
        let form = VoidForm {
            pos: self.pos(self.id("v")),
            serial: serial.to_string(),
        };
        match self
            .app
            .services()
            .cards()
            .void(&form, &self.ctx.actor)
            .await
        {
            Ok(result) => {
                assert!(!result.replayed, "a new void is no replay");
                assert_eq!(result.cards[0].outcome, "voided", "{result:?}");
                self.tally.voided += 1;
                self.known.retain(|s| *s != serial);
                let transfer = result.transfer_id.map(|t| t.0);
                self.retries.push(Retry::Void(form, transfer));
            }
            Err(e) => self
                .tally
                .refused("void", &e, &["card.already_redeemed", "card.voided"]),
        }
    }

    /// Credits or debits a random account by up to 50.00: under the approval threshold, so it
    /// posts at once; a debit the balance cannot take is refused.
    async fn adjust(&mut self) {
        let a = self.below(self.ctx.accounts.len());
        let size = 1 + self.minor_below(5_000);
        let minor = if self.below(2) == 0 { size } else { -size };
        let form = AdjustForm {
            account: self.ctx.accounts[a].0.clone(),
            amount: cents(minor),
            currency: self.ctx.accounts[a].1.clone(),
            reason: "goodwill".into(),
        };
        match self
            .app
            .services()
            .ledger()
            .adjust(&form, &self.ctx.actor)
            .await
        {
            Ok(Adjusted::Posted { posted, .. }) => {
                assert!(!posted.replayed);
                self.tally.adjusted += 1;
                self.tally.adjusted_minor += minor;
            }
            Ok(pending) => panic!(
                "{} is under the approval threshold: {pending:?}",
                form.amount
            ),
            Err(e) if minor < 0 => self
                .tally
                .refused("adjust", &e, &["ledger.insufficient_funds"]),
            Err(e) => panic!("a credit of {} was refused: {e}", form.amount),
        }
    }

    /// Sends one of its successful requests again, as a client whose answer was lost would:
    /// it is answered with the first outcome, and nothing moves.
    async fn retry(&mut self) {
        let n = self.below(self.retries.len());
        let services = self.app.services();
        let actor = &self.ctx.actor;
        match &self.retries[n] {
            Retry::Activate(form) => {
                let again = services.cards().activate(form, actor).await.unwrap();
                assert!(again.replayed, "{again:?}");
                assert_eq!(again.cards[0].outcome, "activated");
            }
            Retry::Void(form, transfer) => {
                let again = services.cards().void(form, actor).await.unwrap();
                assert!(again.replayed, "{again:?}");
                assert_eq!(again.transfer_id.map(|t| t.0), *transfer);
            }
            Retry::Spend(form, first) => {
                let again = services.ledger().spend(form, actor).await.unwrap();
                assert_eq!(
                    again,
                    Posted {
                        replayed: true,
                        ..*first
                    }
                );
            }
            Retry::Refund(form, first) => {
                let again = services.ledger().refund(form, actor).await.unwrap();
                assert_eq!(
                    again,
                    Posted {
                        replayed: true,
                        ..*first
                    }
                );
            }
            Retry::Redeem {
                account,
                code,
                key,
                first,
            } => {
                let again = services
                    .redemption()
                    .redeem(account, code, key.as_deref(), actor)
                    .await
                    .unwrap();
                assert_eq!(
                    again,
                    Redeemed {
                        replayed: true,
                        ..first.clone()
                    }
                );
            }
        }
        self.tally.replays += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// The books afterwards.

/// What a worker's tally says it booked, in the order [`done_by`] counts it: activations,
/// voids, redemptions and their value, spends and their value, refunds and their value,
/// adjustments and their value, and one audit record for each.
fn booked(tally: &Tally) -> [i64; 11] {
    [
        tally.activated,
        tally.voided,
        tally.redeemed,
        tally.redeemed_minor,
        tally.spent,
        tally.spent_minor,
        tally.refunded,
        tally.refunded_minor,
        tally.adjusted,
        tally.adjusted_minor,
        tally.activated
            + tally.voided
            + tally.redeemed
            + tally.spent
            + tally.refunded
            + tally.adjusted,
    ]
}

/// What the database holds of worker `n`'s doing, from the records that name it (its actor,
/// its caller, its ids), and the audit records it signed.
async fn done_by<S: Store>(env: &TestApp<S>, n: usize) -> [i64; 11] {
    let actor = format!("cli:bank-w{n}");
    let ids = format!("w{n}-%");
    let sold = format!("pos_request WHERE actor = '{actor}' AND operation = 'activate'");
    let voided = format!("pos_request WHERE actor = '{actor}' AND operation = 'void'");
    let redeemed = format!("redemption WHERE caller = '{actor}'");
    let spent = format!("spend_order WHERE order_ref LIKE '{ids}'");
    let refunded = format!("refund WHERE refund_ref LIKE '{ids}'");
    let adjusted = format!("adjustment WHERE requested_by = '{actor}' AND state = 'posted'");
    let audited = format!(
        "audit_record WHERE actor = '{actor}' AND action IN ('card.activated', 'card.voided', \
         'card.redeemed', 'ledger.spent', 'ledger.refunded', 'ledger.adjusted')"
    );
    [
        total(env, "1", &sold).await,
        total(env, "1", &voided).await,
        total(env, "1", &redeemed).await,
        total(env, "value_minor", &redeemed).await,
        total(env, "1", &spent).await,
        total(env, "amount_minor", &spent).await,
        total(env, "1", &refunded).await,
        total(env, "amount_minor", &refunded).await,
        total(env, "1", &adjusted).await,
        total(env, "amount_minor", &adjusted).await,
        total(env, "1", &audited).await,
    ]
}

/// The value movements of one currency, by transfer kind, as positive totals, and where the
/// value is now.
#[derive(Debug, PartialEq, Eq)]
struct Books {
    activations: i64,
    voids: i64,
    adjustments: i64,
    spends: i64,
    refunds: i64,
    redemptions: i64,
    cards: i64,
    accounts: i64,
}

impl Books {
    /// Value in less value out equals value held: activations − voids + adjustments − spends +
    /// refunds = card balances + account balances.
    fn conserved(&self) -> bool {
        self.activations - self.voids + self.adjustments - self.spends + self.refunds
            == self.cards + self.accounts
    }
}

/// A currency's books from the ledger alone: the legs of the value holders (cards, by their
/// serial, and customers, by their account) summed by transfer kind, and over all kinds.
async fn books_from_entries<S: Store>(env: &TestApp<S>, currency: &str) -> Books {
    let legs = |kind: Option<&str>, holder: &str| {
        let kind = kind.map_or(String::new(), |k| format!("AND t.kind = '{k}' "));
        format!(
            "SELECT CAST(COALESCE(SUM(e.amount_minor), 0) AS BIGINT) FROM entry e \
             JOIN transfer t ON t.transfer_id = e.transfer_id \
             WHERE t.currency = '{currency}' {kind}AND e.{holder} IS NOT NULL"
        )
    };
    let card_redeemed = env.count(&legs(Some("redemption"), "serial")).await;
    let customer_redeemed = env.count(&legs(Some("redemption"), "account_id")).await;
    // A redemption only moves value from a card to an account.
    assert_eq!(card_redeemed, -customer_redeemed, "{currency}");
    // Value holders' legs appear only where their kinds put them.
    for (kind, holder) in [
        ("activation", "account_id"),
        ("void", "account_id"),
        ("spend", "serial"),
        ("refund", "serial"),
        ("adjustment", "serial"),
    ] {
        assert_eq!(env.count(&legs(Some(kind), holder)).await, 0, "{kind}");
    }
    Books {
        activations: env.count(&legs(Some("activation"), "serial")).await,
        voids: -env.count(&legs(Some("void"), "serial")).await,
        adjustments: env.count(&legs(Some("adjustment"), "account_id")).await,
        spends: -env.count(&legs(Some("spend"), "account_id")).await,
        refunds: env.count(&legs(Some("refund"), "account_id")).await,
        redemptions: customer_redeemed,
        cards: env.count(&legs(None, "serial")).await,
        accounts: env.count(&legs(None, "account_id")).await,
    }
}

/// The sum of `column` (`1` counts) over the rows of `from`, with its joins and conditions.
async fn total<S: Store>(env: &TestApp<S>, column: &str, from: &str) -> i64 {
    env.count(&format!(
        "SELECT CAST(COALESCE(SUM({column}), 0) AS BIGINT) FROM {from}"
    ))
    .await
}

/// The same books from the rows the services keep beside the ledger, which `ledger check`
/// proves nothing of by summing entries: each card's activation and its void, the posted
/// adjustments, the orders, the refunds, the redemptions, the value of the cards still
/// active, and the accounts' stored balances.
async fn books_from_records<S: Store>(env: &TestApp<S>, currency: &str) -> Books {
    let sold = format!("card_activation WHERE currency = '{currency}'");
    let of_accounts =
        format!("account_id IN (SELECT account_id FROM account WHERE currency = '{currency}')");
    Books {
        activations: total(env, "value_minor", &sold).await,
        voids: total(
            env,
            "value_minor",
            &format!("{sold} AND void_transfer_id IS NOT NULL"),
        )
        .await,
        adjustments: total(
            env,
            "amount_minor",
            &format!("adjustment WHERE currency = '{currency}' AND state = 'posted'"),
        )
        .await,
        spends: total(
            env,
            "amount_minor",
            &format!("spend_order WHERE {of_accounts}"),
        )
        .await,
        refunds: total(env, "amount_minor", &format!("refund WHERE {of_accounts}")).await,
        redemptions: total(
            env,
            "value_minor",
            &format!("redemption WHERE currency = '{currency}'"),
        )
        .await,
        cards: total(
            env,
            "a.value_minor",
            &format!(
                "card_activation a JOIN card c ON c.serial = a.serial \
                 WHERE a.currency = '{currency}' AND c.state = 1"
            ),
        )
        .await,
        accounts: total(
            env,
            "balance_minor",
            &format!("account WHERE currency = '{currency}'"),
        )
        .await,
    }
}

async fn assert_books_hold<S: Store>(env: &TestApp<S>, plan: &Plan) {
    // Every transfer has two legs or more, summing to zero.
    assert_eq!(
        env.count(
            "SELECT count(*) FROM transfer t WHERE \
             (SELECT count(*) FROM entry e WHERE e.transfer_id = t.transfer_id) < 2 \
             OR (SELECT SUM(e.amount_minor) FROM entry e WHERE e.transfer_id = t.transfer_id) <> 0"
        )
        .await,
        0,
        "unbalanced transfers"
    );
    // No balance is negative: no account's, no history line's, no card's.
    assert_eq!(
        env.count("SELECT count(*) FROM account WHERE balance_minor < 0")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM entry WHERE balance_after < 0")
            .await,
        0
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM (SELECT serial FROM entry WHERE serial IS NOT NULL \
             GROUP BY serial HAVING SUM(amount_minor) < 0) s"
        )
        .await,
        0
    );
    // Each transfer is whole with its business record and its audit record: a process killed
    // mid-request left none of them without the others.
    for (kind, records, action) in [
        (
            "activation",
            "SELECT count(*) FROM pos_request WHERE operation = 'activate'",
            "card.activated",
        ),
        (
            "void",
            "SELECT count(*) FROM pos_request WHERE operation = 'void'",
            "card.voided",
        ),
        (
            "redemption",
            "SELECT count(*) FROM redemption",
            "card.redeemed",
        ),
        ("spend", "SELECT count(*) FROM spend_order", "ledger.spent"),
        ("refund", "SELECT count(*) FROM refund", "ledger.refunded"),
        (
            "adjustment",
            "SELECT count(*) FROM adjustment WHERE state = 'posted'",
            "ledger.adjusted",
        ),
    ] {
        let transfers = env
            .count(&format!(
                "SELECT count(*) FROM transfer WHERE kind = '{kind}'"
            ))
            .await;
        assert!(transfers > 0, "{kind}");
        assert_eq!(env.count(records).await, transfers, "{kind}");
        let audited = env
            .count(&format!(
                "SELECT count(*) FROM audit_record WHERE action = '{action}'"
            ))
            .await;
        assert_eq!(audited, transfers, "{kind}");
    }
    // Each account's balance is the sum of its history, and its history reads back line by
    // line to the balance, through the service.
    let ledger = env.app.services().ledger();
    for (id, _) in &plan.accounts {
        let account = ledger.account(id).await.unwrap();
        let mut lines = Vec::new();
        let mut after = None;
        loop {
            let page = ledger.history(id, after, PageRows::MAX).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.transfer_id);
            lines.extend(page);
        }
        let summed: i64 = lines.iter().map(|l| l.amount.minor()).sum();
        assert_eq!(account.balance.minor(), summed, "account {id}");
        assert_eq!(
            lines.first().map(|l| l.balance_after),
            Some(account.balance),
            "account {id}"
        );
        for pair in lines.windows(2) {
            assert_eq!(
                pair[0].balance_after.minor() - pair[0].amount.minor(),
                pair[1].balance_after.minor(),
                "account {id}, transfer {}",
                pair[0].transfer_id
            );
        }
    }
    // Value is conserved in each currency, from the ledger and from the records alike.
    let currencies: BTreeSet<&str> = plan.accounts.iter().map(|(_, c)| c.as_str()).collect();
    for currency in currencies {
        let ledger_books = books_from_entries(env, currency).await;
        eprintln!("bank: {currency} {ledger_books:?}");
        assert!(ledger_books.conserved(), "{currency}: {ledger_books:?}");
        assert_eq!(
            books_from_records(env, currency).await,
            ledger_books,
            "{currency}"
        );
    }
    let report = ledger.check().await.unwrap();
    assert_eq!(report.discrepancy, None, "{report:?}");
    let verified = env.verify().await;
    assert!(verified.is_intact(), "{:?}", verified.problem);
}
