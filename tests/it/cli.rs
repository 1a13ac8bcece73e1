//! The `tender` binary as operators and cron run it: exit codes, crash recovery, several
//! workers on one database, and no plaintext code anywhere but the printer file.

use std::cell::RefCell;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use tender::clock::{Clock, SystemClock};
use tender::domain::Serial;

use crate::helpers::{Reaped, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_tender");

/// Runs a blocking test body, which takes its own database, on SQLite and on PostgreSQL.
macro_rules! both_backends_cli {
    ($body:ident) => {
        mod $body {
            #[test]
            fn sqlite() {
                super::$body(super::TestDb::sqlite());
            }

            #[tokio::test]
            async fn postgres() {
                let db = super::TestDb::postgres().await;
                tokio::task::spawn_blocking(move || super::$body(db))
                    .await
                    .unwrap();
            }
        }
    };
}

/// A `tender` command against `db`, with keys and printer files in its directory.
fn tender(db: &TestDb) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("TENDER_LOOKUP_KEYS")
        .env_remove("TENDER_AUDIT_KEYS")
        .env_remove("TENDER_ACTOR")
        .env("TENDER_DATA_DIR", db.path())
        .env("TENDER_DATABASE_URL", &db.url)
        .env("TENDER_JOBS_DIR", db.path().join("jobs"));
    command
}

fn run(db: &TestDb, args: &[&str]) -> Output {
    tender(db).args(args).output().unwrap()
}

fn ok(db: &TestDb, args: &[&str]) -> String {
    let out = run(db, args);
    assert!(
        out.status.success(),
        "tender {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Initialises the database with fast-failover job definitions and adds retailer Acme.
fn setup(db: &TestDb, chunk_cards: usize) {
    let jobs = db.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let definition = include_str!("../../jobs/generate-batch.toml")
        .replace("heartbeat_secs = 10", "heartbeat_secs = 1")
        .replace("missed_heartbeats = 3", "missed_heartbeats = 2")
        .replace("poll_interval_ms = 500", "poll_interval_ms = 100")
        .replace(
            "chunk_cards = 50000",
            &format!("chunk_cards = {chunk_cards}"),
        );
    std::fs::write(jobs.join("generate-batch.toml"), definition).unwrap();
    ok(db, &["init"]);
    ok(
        db,
        &["retailer", "add", "--name", "Acme", "--commission", "2.5"],
    );
}

fn create(db: &TestDb, count: u64) {
    ok(
        db,
        &[
            "batch",
            "create",
            "--retailer",
            "Acme",
            "--count",
            &count.to_string(),
            "--value",
            "25.00",
            "--currency",
            "USD",
            "--region",
            "US",
        ],
    );
}

/// The arguments of a one-card batch for Acme.
const ONE_CARD: &[&str] = &[
    "batch",
    "create",
    "--retailer",
    "Acme",
    "--count",
    "1",
    "--value",
    "25.00",
    "--currency",
    "USD",
    "--region",
    "US",
];

/// Runs `sql` with text `binds` on the test's database behind tender's back and returns the
/// first column of its rows as text. Its own thread and runtime: the PostgreSQL variants of
/// the tests already run inside a runtime.
fn sql(db: &TestDb, sql: &'static str, binds: &[&str]) -> Vec<String> {
    let url = db.url.clone();
    let binds: Vec<String> = binds.iter().map(|b| b.to_string()).collect();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                // A query is typed by its database: one body, spelled for each.
                macro_rules! on {
                    ($conn:ty) => {{
                        let mut conn = <$conn>::connect(&url).await.unwrap();
                        let mut query = sqlx::query_scalar::<_, String>(sql);
                        for bind in &binds {
                            query = query.bind(bind);
                        }
                        query.fetch_all(&mut conn).await.unwrap()
                    }};
                }
                if url.starts_with("sqlite:") {
                    on!(sqlx::SqliteConnection)
                } else {
                    on!(sqlx::PgConnection)
                }
            })
    })
    .join()
    .unwrap()
}

/// The actors of the records with `action`, in the order they were written.
fn actors_of(db: &TestDb, action: &str) -> Vec<String> {
    sql(
        db,
        "SELECT actor FROM audit_record WHERE action = $1 ORDER BY recorded_at, chain, seq",
        &[action],
    )
}

/// The passwd name of the user the tests run as: the one tender must record.
fn os_user() -> String {
    let uid = nix::unistd::Uid::effective();
    nix::unistd::User::from_uid(uid).unwrap().unwrap().name
}

fn batch_json(db: &TestDb, id: u64) -> serde_json::Value {
    serde_json::from_str(&ok(
        db,
        &["batch", "show", &id.to_string(), "--format", "json"],
    ))
    .unwrap()
}

fn export_path(db: &TestDb, id: u64) -> std::path::PathBuf {
    db.path().join("exports").join(format!("batch-{id}.csv"))
}

fn printer_codes(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect()
}

/// Starts `command` with `input` written to its standard input, the only way a code reaches
/// `tender redeem`, which is then closed: the command reads one line and ends.
fn with_input(mut command: Command, input: &[u8]) -> std::process::Child {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A command refuses a line longer than a code's without reading the rest: the rest of a long
    // input meets a closed pipe.
    let _ = stdin.write_all(input);
    child
}

/// Waits for the next hour if less than a minute of this one is left: the limits' hourly
/// windows are clock hours, and attempts a test counts in one window must not straddle two.
fn clear_of_the_hours_end() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = 3_600 - now % 3_600;
    if left < 60 {
        std::thread::sleep(Duration::from_secs(left + 1));
    }
}

fn bad_input_gets_a_clear_error_and_writes_nothing(db: TestDb) {
    setup(&db, 1000);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--count", "0", "--value", "25.00", "--currency", "USD"],
            "1 to 10000000 cards",
        ),
        (
            &[
                "--count",
                "10000001",
                "--value",
                "25.00",
                "--currency",
                "USD",
            ],
            "1 to 10000000 cards",
        ),
        (
            &["--count", "5", "--value", "-1.00", "--currency", "USD"],
            "more than zero",
        ),
        (
            &["--count", "5", "--value", "25.001", "--currency", "USD"],
            "USD",
        ),
        (
            &["--count", "5", "--value", "25.00", "--currency", "ABC"],
            "currency",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["batch", "create", "--retailer", "Acme", "--region", "US"];
        full.extend_from_slice(args);
        let out = run(&db, &full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{full:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{full:?}: {stderr}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "one sentence, no backtrace: {stderr}"
        );
    }
    let out = run(
        &db,
        &[
            "batch",
            "create",
            "--retailer",
            "Nobody",
            "--count",
            "5",
            "--value",
            "1.00",
            "--currency",
            "USD",
            "--region",
            "US",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no retailer is named Nobody"));
    // A usage error (missing --count) exits 2.
    let out = run(
        &db,
        &[
            "batch",
            "create",
            "--retailer",
            "Acme",
            "--value",
            "1.00",
            "--currency",
            "USD",
            "--region",
            "US",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    // A printer row whose code was typed with letters is refused, naming the line, not the code.
    create(&db, 3);
    ok(&db, &["work", "--drain"]);
    let path = export_path(&db, 1);
    let code = printer_codes(&path)[0].clone();
    let typed = format!("{}O{}", &code[..4], &code[5..]);
    let bad = db.path().join("typed.csv");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace(&code, &typed),
    )
    .unwrap();
    let out = run(&db, &["batch", "verify-export", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("line 2") && !stderr.contains(&code[5..]),
        "{stderr}"
    );
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&db, &["batch", "list", "--format", "json"])).unwrap();
    assert_eq!(listed.len(), 1, "only the valid batch was recorded");
    ok(&db, &["audit", "verify"]);
}

/// Starts `tender work`, kills it with SIGKILL once the batch shows progress, restarts it, and
/// expects exactly `count` cards and a printer file that matches them one to one.
fn killed_worker_resumes_to_exactly_n_cards(db: TestDb) {
    let count = 150_000;
    setup(&db, 3_000);
    create(&db, count);
    let mut worker = tender(&db)
        .args(["work"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let generated = batch_json(&db, 1)["generated"].as_u64().unwrap();
        if generated > 0 && generated < count {
            break;
        }
        assert!(
            generated < count,
            "the batch finished before the worker could be killed"
        );
        assert!(Instant::now() < deadline, "the worker made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.kill().unwrap(); // SIGKILL
    worker.wait().unwrap();
    let partial = batch_json(&db, 1);
    assert_eq!(partial["state"], "generating");
    let out = tender(&db).args(["work", "--drain"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batch = batch_json(&db, 1);
    assert_eq!(batch["state"], "completed");
    assert_eq!(batch["generated"].as_u64(), Some(count));
    let verified = ok(
        &db,
        &[
            "batch",
            "verify-export",
            export_path(&db, 1).to_str().unwrap(),
        ],
    );
    assert!(verified.contains(&format!("{count} cards")), "{verified}");
    assert_eq!(printer_codes(&export_path(&db, 1)).len() as u64, count);
    ok(&db, &["audit", "verify"]);
}

both_backends_cli!(bad_input_gets_a_clear_error_and_writes_nothing);

both_backends_cli!(killed_worker_resumes_to_exactly_n_cards);

/// Claiming a reserved form, or a suffix that carries an escape sequence, is refused with its
/// code before anything opens: no database, no key file, no record.
fn an_actor_suffix_that_is_not_a_plain_note_is_refused_and_writes_nothing(db: TestDb) {
    let claim_the_job = |args: &[&str]| {
        let mut command = tender(&db);
        command.env("TENDER_ACTOR", "job:generate-batch").args(args);
        command
    };
    let retitle = |args: &[&str]| {
        let mut command = tender(&db);
        command.arg("--actor").arg("x\u{1b}]0;owned").args(args);
        command
    };
    let refused = |mut command: Command| {
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.ends_with("[actor.invalid_suffix]\n"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            !stderr.contains('\u{1b}'),
            "the input is not echoed: {stderr:?}"
        );
    };
    refused(claim_the_job(&["init"]));
    refused(retitle(&["init"]));
    assert_eq!(
        std::fs::read_dir(db.path()).unwrap().count(),
        0,
        "no database, key file or directory was created"
    );
    setup(&db, 1000);
    let trail = || {
        sql(
            &db,
            "SELECT action || ' ' || subject FROM audit_record ORDER BY chain, seq",
            &[],
        )
    };
    let before = trail();
    refused(claim_the_job(ONE_CARD));
    refused(retitle(ONE_CARD));
    refused(retitle(&[
        "retailer",
        "add",
        "--name",
        "Bolt",
        "--commission",
        "1",
    ]));
    assert_eq!(trail(), before);
    assert!(sql(&db, "SELECT requested_by FROM batch", &[]).is_empty());
    ok(&db, &["audit", "verify"]);
}
both_backends_cli!(an_actor_suffix_that_is_not_a_plain_note_is_refused_and_writes_nothing);

/// The user part of the actor is the passwd name of the process's user, whatever `$USER`
/// says; `--actor` and TENDER_ACTOR only add a note after it.
fn the_recorded_actor_is_the_os_user_and_the_callers_note(db: TestDb) {
    let user = os_user();
    let plain = format!("cli:{user}");
    let noted = format!("cli:{user}/ticket-42");
    let as_mallory = |args: &[&str]| {
        let out = tender(&db)
            .env("USER", "mallory")
            .env("LOGNAME", "mallory")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    setup(&db, 1000);
    assert_eq!(actors_of(&db, "key.recorded"), [plain.as_str(); 2]);
    assert_eq!(actors_of(&db, "retailer.added"), [plain.as_str()]);
    let mut args = vec!["--actor", "ticket-42"];
    args.extend_from_slice(ONE_CARD);
    as_mallory(&args);
    as_mallory(ONE_CARD);
    let out = tender(&db)
        .env("TENDER_ACTOR", "ticket-42")
        .args(ONE_CARD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        actors_of(&db, "batch.requested"),
        [noted.as_str(), plain.as_str(), noted.as_str()]
    );
    assert_eq!(batch_json(&db, 1)["requested_by"], noted);
    assert_eq!(batch_json(&db, 2)["requested_by"], plain);
    let shown = ok(&db, &["batch", "show", "1"]);
    assert!(shown.contains(&format!(" by {noted}\n")), "{shown}");
    ok(&db, &["work", "--drain"]);
    assert_eq!(actors_of(&db, "batch.completed"), ["job:generate-batch"; 3]);
    let every = sql(&db, "SELECT actor FROM audit_record", &[]);
    assert!(!every.iter().any(|a| a.contains("mallory")), "{every:?}");
    ok(&db, &["audit", "verify"]);
}
both_backends_cli!(the_recorded_actor_is_the_os_user_and_the_callers_note);

/// An actor that retitles the reader's terminal and clears the screen.
const HOSTILE_ACTOR: &str = "cli:\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}";

/// What tender can no longer store (a row written before actors were checked, or by hand) is
/// still shown escaped, never replayed in the reader's terminal.
fn a_stored_escape_sequence_is_shown_not_replayed(db: TestDb) {
    setup(&db, 1000);
    create(&db, 1);
    sql(&db, "UPDATE batch SET requested_by = $1", &[HOSTILE_ACTOR]);
    let shown = ok(&db, &["batch", "show", "1"]);
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(!shown.contains('\u{7}'), "{shown:?}");
    assert!(!shown.contains('\u{202e}'), "{shown:?}");
    assert!(
        shown.contains("by cli:\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{202e}"),
        "{shown}"
    );
    // JSON escapes on its own, and gives scripts the actor exactly as stored.
    assert_eq!(batch_json(&db, 1)["requested_by"], HOSTILE_ACTOR);
}
both_backends_cli!(a_stored_escape_sequence_is_shown_not_replayed);

#[tokio::test]
async fn two_workers_on_one_postgres_generate_each_batch_once() {
    let db = TestDb::postgres().await;
    tokio::task::spawn_blocking(move || {
        setup(&db, 1_000);
        let batches = 8;
        for _ in 0..batches {
            create(&db, 4_000);
        }
        let workers: Vec<_> = (0..2)
            .map(|_| {
                tender(&db)
                    .args(["work", "--drain"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for worker in workers {
            let out = worker.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for id in 1..=batches {
            let batch = batch_json(&db, id);
            assert_eq!(batch["state"], "completed", "batch {id}");
            assert_eq!(batch["generated"].as_u64(), Some(4_000));
            ok(
                &db,
                &[
                    "batch",
                    "verify-export",
                    export_path(&db, id).to_str().unwrap(),
                ],
            );
        }
        // Each batch's chunks and completion were recorded exactly once.
        let dump = pg_dump(&db);
        for id in 1..=batches {
            let completed = dump
                .matches(&format!("batch.completed\tbatch:{id}\t"))
                .count();
            let chunks = dump
                .matches(&format!("batch.chunk_generated\tbatch:{id}\t"))
                .count();
            assert_eq!((completed, chunks), (1, 4), "batch {id}");
        }
        let jobs = ok(&db, &["jobs", "list", "--format", "json"]);
        let jobs: Vec<serde_json::Value> = serde_json::from_str(&jobs).unwrap();
        assert_eq!(jobs.len(), batches as usize);
        ok(&db, &["audit", "verify"]);
    })
    .await
    .unwrap();
}

fn pg_dump(db: &TestDb) -> String {
    let out = Command::new("pg_dump")
        .arg("--dbname")
        .arg(&db.url)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A command whose standard error and output are kept in `logs`, with logging at debug level.
fn logged(db: &TestDb, args: &[&str], input: Option<&[u8]>, logs: &RefCell<Vec<u8>>) -> Output {
    let mut command = tender(db);
    command.env("TENDER_LOG", "debug").args(args);
    let out = match input {
        Some(input) => with_input(command, input).wait_with_output().unwrap(),
        None => command.output().unwrap(),
    };
    let mut logs = logs.borrow_mut();
    logs.extend_from_slice(&out.stderr);
    logs.extend_from_slice(&out.stdout);
    out
}

/// A code as a person types it: bare, or in four groups split by spaces or hyphens.
fn typed_forms(code: &str) -> [String; 3] {
    let groups = [&code[..4], &code[4..8], &code[8..12], &code[12..]];
    [code.to_string(), groups.join(" "), groups.join("-")]
}

/// Generates a batch, then runs everything a code passes through with debug logging captured:
/// the job runner, `batch verify-export`, the point of sale, and `tender redeem` with every
/// outcome (a success in each typed form, a replay, and each refusal: invalid_format by a
/// letter and by a megabyte, not_found, not_activated for a card never sold and a voided one,
/// already_redeemed, expired, blocked, region_mismatch, currency_mismatch, account_frozen,
/// rate_limited, key_conflict), `tender attempts`, `card show` and the history. No code of the
/// printer file, in any typed form, and no card's digest (hex) is in the logs. Returns every
/// code in every typed form, to search the database for.
fn no_code_in_plaintext_outside_the_printer_file(db: &TestDb) -> Vec<String> {
    setup(db, 500);
    create(db, 2_000);
    let logs = RefCell::new(Vec::new());
    assert!(
        logged(db, &["work", "--drain"], None, &logs)
            .status
            .success()
    );
    let file = export_path(db, 1);
    let verify = logged(
        db,
        &["batch", "verify-export", file.to_str().unwrap()],
        None,
        &logs,
    );
    assert!(verify.status.success());
    let codes = printer_codes(&file);
    assert_eq!(codes.len(), 2_000);
    assert!(
        String::from_utf8_lossy(&logs.borrow()).contains("generating batch"),
        "debug logs were captured"
    );

    // Cards 0-5 sold as a box; 0 voided, 1 blocked, 4 made to expire; 6 never sold.
    let s = serials(db, 1, 7);
    let code = |n: usize| codes[n].as_str();
    let run_ok = |args: &[&str]| {
        let out = logged(db, args, None, &logs);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run_ok(&[
        "store",
        "add",
        "--retailer",
        "Acme",
        "--id",
        "S-1",
        "--jurisdiction",
        "US-TX",
    ]);
    let mut sale = at_till("activate", "S-1", "t-1", &s[0]);
    sale.extend(["--to-serial", &s[5]]);
    run_ok(&sale);
    run_ok(&at_till("void", "S-1", "r-1", &s[0]));
    run_ok(&["block", "--serial", &s[1], "--reason", "lost_in_transit"]);
    // Accounts 1 and 2 redeem; 3 is in Canada, 4 holds euros, 5 is frozen, 6 guesses.
    for (region, currency) in [
        ("US", "USD"),
        ("US", "USD"),
        ("CA", "USD"),
        ("US", "EUR"),
        ("US", "USD"),
        ("US", "USD"),
    ] {
        run_ok(&[
            "account",
            "create",
            "--region",
            region,
            "--currency",
            currency,
        ]);
    }
    run_ok(&["account", "freeze", "5", "--reason", "fraud_review"]);
    // Card 4's funds expired a second ago: no command sets the clock, so the row is edited.
    let expired = Serial::parse(&s[4]).unwrap().sequence().to_string();
    sql(
        db,
        "UPDATE card SET funds_expire_ms = CAST($1 AS BIGINT) WHERE serial = CAST($2 AS BIGINT)",
        &[
            &(SystemClock.now().timestamp_millis() - 1_000).to_string(),
            &expired,
        ],
    );

    let redeem = |account: &str, key: Option<&str>, input: &[u8], expected: &str| {
        let mut args = vec!["redeem", "--account", account];
        if let Some(key) = key {
            args.extend(["--idempotency-key", key]);
        }
        let out = logged(db, &args, Some(input), &logs);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if expected == "ok" {
            assert!(out.status.success(), "{stderr}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.trim_end().ends_with(&format!("[{expected}]")),
                "{expected}: {stderr}"
            );
        }
    };
    let line = |text: &str| format!("{text}\n").into_bytes();
    let [_, spaced, hyphened] = typed_forms(code(2));
    redeem("1", Some("k-1"), &line(&spaced), "ok");
    redeem("1", Some("k-1"), &line(&hyphened), "ok");
    redeem("1", Some("k-1"), &line(code(5)), "redeem.key_conflict");
    redeem("2", None, &line(&typed_forms(code(3))[2]), "ok");
    redeem("2", None, &line(code(2)), "redeem.already_redeemed");
    redeem("2", None, &line(code(1)), "redeem.blocked");
    redeem("2", None, &line(code(0)), "redeem.not_activated");
    redeem("3", None, &line(code(6)), "redeem.not_activated");
    redeem("3", None, &line(code(5)), "redeem.region_mismatch");
    redeem("4", None, &line(code(5)), "redeem.currency_mismatch");
    redeem("5", None, &line(code(5)), "redeem.account_frozen");
    redeem("1", None, &line(code(4)), "redeem.expired");
    let letter = format!("{}O", &code(5)[..15]);
    redeem("1", None, &line(&letter), "redeem.invalid_format");
    let megabyte = code(5).repeat((1 << 20) / 16).into_bytes();
    redeem("1", None, &megabyte, "redeem.invalid_format");
    clear_of_the_hours_end();
    for n in 0..5 {
        redeem(
            "6",
            None,
            &line(&format!("7000 0000 0000 000{n}")),
            "redeem.not_found",
        );
    }
    redeem("6", None, &line(code(5)), "redeem.rate_limited");
    run_ok(&["attempts", "--account", "6"]);
    run_ok(&["attempts", "--serial", &s[5]]);
    run_ok(&["card", "show", &s[5]]);
    run_ok(&["history", "--account", "1"]);

    let logs = logs.into_inner();
    let typed: Vec<String> = codes.iter().flat_map(|c| typed_forms(c)).collect();
    assert_eq!(
        codes_found_in(&logs, &typed),
        0,
        "a code appears in the logs"
    );
    let digests = sql(
        db,
        if db.url.starts_with("sqlite:") {
            "SELECT lower(hex(digest)) FROM card"
        } else {
            "SELECT encode(digest, 'hex') FROM card"
        },
        &[],
    );
    assert_eq!(digests.len(), 2_000);
    assert_eq!(digests[0].len(), 64);
    let lower = logs.to_ascii_lowercase();
    assert_eq!(
        codes_found_in(&lower, &digests),
        0,
        "a digest appears in the logs"
    );
    let text = String::from_utf8_lossy(&logs);
    assert!(text.contains("DEBUG"), "debug logs were captured");
    assert!(
        text.contains("redeem.rate_limited"),
        "refusals were captured"
    );
    typed
}

/// How many of `needles` appear anywhere in `haystack`: one pass over its windows of each
/// needle length, each looked up in a set (a search per needle took most of the suite's time).
fn codes_found_in(haystack: &[u8], needles: &[String]) -> usize {
    let mut lengths: Vec<usize> = needles.iter().map(String::len).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let wanted: std::collections::HashSet<&[u8]> = needles.iter().map(|c| c.as_bytes()).collect();
    let mut found = std::collections::HashSet::new();
    for length in lengths {
        found.extend(haystack.windows(length).filter(|w| wanted.contains(w)));
    }
    found.len()
}

/// After a batch and every redemption outcome on SQLite, no code in any typed form is in the
/// logs, the database file or its write-ahead log; the search finds one planted there.
#[test]
fn sqlite_holds_no_code_in_plaintext() {
    let db = TestDb::sqlite();
    let path = db.path().to_path_buf();
    let codes = no_code_in_plaintext_outside_the_printer_file(&db);
    let mut bytes = Vec::new();
    for file in ["tender.db", "tender.db-wal"] {
        if let Ok(b) = std::fs::read(path.join(file)) {
            bytes.extend(b);
        }
    }
    assert!(bytes.len() > 100_000);
    assert_eq!(
        codes_found_in(&bytes, &codes),
        0,
        "a code appears in the SQLite file"
    );
    // The search itself finds a code where one is, in each typed form.
    let mut planted = bytes.clone();
    for code in &codes[21..24] {
        planted.extend_from_slice(code.as_bytes());
    }
    assert_eq!(codes_found_in(&planted, &codes), 3);
}

/// After a batch and every redemption outcome on PostgreSQL, no code in any typed form is in the
/// logs or in `pg_dump` of the database.
#[tokio::test]
async fn postgres_holds_no_code_in_plaintext() {
    let db = TestDb::postgres().await;
    tokio::task::spawn_blocking(move || {
        let url = db.url.clone();
        let codes = no_code_in_plaintext_outside_the_printer_file(&db);
        let dump = pg_dump(&db);
        assert!(
            dump.contains("COPY public.card"),
            "the dump holds the card table"
        );
        assert_eq!(
            codes_found_in(dump.as_bytes(), &codes),
            0,
            "a code appears in pg_dump of {url}"
        );
    })
    .await
    .unwrap();
}

/// Read commands hold no secret: with the key directory gone they still work, and a change
/// that needs a key says which one is missing.
fn read_commands_load_no_key(db: TestDb) {
    setup(&db, 1000);
    create(&db, 10);
    let keys = db.path().join("keys");
    std::fs::rename(&keys, db.path().join("keys-elsewhere")).unwrap();
    for args in [
        &["batch", "list"][..],
        &["batch", "show", "1"],
        &["retailer", "list"],
        &["jobs", "list"],
        &["keys", "list"],
        &["store", "list"],
    ] {
        ok(&db, args);
    }
    let out = run(
        &db,
        &["retailer", "add", "--name", "Bolt", "--commission", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no audit key"));
}
both_backends_cli!(read_commands_load_no_key);

/// Rotation from the command line: add (pending, nothing uses it), copy, activate.
fn keys_rotate_in_two_steps(db: TestDb) {
    setup(&db, 1000);
    let added = ok(&db, &["keys", "add", "lookup"]);
    assert!(added.contains("tender keys activate lookup 2"), "{added}");
    let listed = ok(&db, &["keys", "list", "--format", "json"]);
    let keys: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let states: Vec<(String, u64, String)> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["purpose"].as_str().unwrap().to_string(),
                k["id"].as_u64().unwrap(),
                k["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(states.contains(&("lookup".into(), 2, "pending".into())));
    ok(&db, &["keys", "activate", "lookup", "2"]);
    create(&db, 10);
    assert_eq!(batch_json(&db, 1)["lookup_key_id"], 2);
    let retired = run(&db, &["keys", "activate", "lookup", "1"]);
    assert_eq!(retired.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&retired.stderr).contains("was retired"));
}
both_backends_cli!(keys_rotate_in_two_steps);

/// Only `init` migrates: any other command on a database it never ran on says what to run.
#[test]
fn only_init_migrates() {
    let db = TestDb::sqlite();
    let out = run(&db, &["batch", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run `tender init`"), "{stderr}");
    ok(&db, &["init"]);
    ok(&db, &["batch", "list"]);
    // What tender creates is its user's alone: the database holds the digests and the trail.
    for file in ["tender.db", "keys", "keys/lookup.keys"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(db.path().join(file))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{file} is {mode:o}");
    }
}

/// The sealing host creates its seal key and seals; finance, holding only `seal.pub` and a copy
/// of the witness, verifies and is told which proofs ran. A deleted seal fails with the stable
/// code, and `seal.key` is never overwritten.
fn finance_verifies_with_the_public_key_and_the_witness(db: TestDb) {
    setup(&db, 1000);
    create(&db, 10);
    let created = ok(&db, &["audit", "seal-key"]);
    assert!(created.contains("seal.pub"), "{created}");
    let again = run(&db, &["audit", "seal-key"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let sealed = ok(&db, &["audit", "seal"]);
    assert!(sealed.starts_with("seal 1 made at"), "{sealed}");
    ok(
        &db,
        &["retailer", "add", "--name", "Bolt", "--commission", "1"],
    );
    ok(&db, &["audit", "seal"]);
    // Finance's host: the public key and a copy of the witness, no key ring at all.
    let finance = db.path().join("finance");
    std::fs::create_dir(&finance).unwrap();
    let public = finance.join("seal.pub");
    let witness = finance.join("copy.witness");
    std::fs::copy(db.path().join("keys/seal.pub"), &public).unwrap();
    std::fs::copy(db.path().join("audit.witness"), &witness).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec!["--key-dir", finance.to_str().unwrap(), "audit", "verify"];
        args.extend_from_slice(extra);
        run(&db, &args)
    };
    let full = [
        "--seal-public-key",
        public.to_str().unwrap(),
        "--witness",
        witness.to_str().unwrap(),
    ];
    let out = verify(&full);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("audit trail intact"), "{stdout}");
    assert!(stdout.contains("not checked: record tags"), "{stdout}");
    assert!(stdout.contains("checked:     seal signatures"), "{stdout}");
    assert!(stdout.contains("checked:     witness (1 file)"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&verify(&[&full[..], &["--format", "json"]].concat()).stdout)
            .unwrap();
    assert_eq!(json["proofs"]["record_tags"], false);
    assert_eq!(json["newest_seal"]["seal_id"], 2);
    sql(&db, "DELETE FROM audit_seal WHERE seal_id = 2", &[]);
    let out = verify(&full);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failed verification"), "{stderr}");
    assert!(stderr.contains("the witness holds seal 2"), "{stderr}");
}
both_backends_cli!(finance_verifies_with_the_public_key_and_the_witness);

/// Runs `tender` and expects it to fail with exit code 1 and one line on stderr ending in
/// `[code]`; returns that line.
fn refused(db: &TestDb, args: &[&str], code: &str) -> String {
    let out = run(db, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "tender {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.ends_with(&format!("[{code}]\n")), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

/// How many rows `table` has, counted behind tender's back.
fn rows_in(db: &TestDb, table: &str) -> u64 {
    let query = match table {
        "transfer" => "SELECT CAST(count(*) AS TEXT) FROM transfer",
        "entry" => "SELECT CAST(count(*) AS TEXT) FROM entry",
        "audit_record" => "SELECT CAST(count(*) AS TEXT) FROM audit_record",
        "adjustment" => "SELECT CAST(count(*) AS TEXT) FROM adjustment",
        "pos_request" => "SELECT CAST(count(*) AS TEXT) FROM pos_request",
        "card_activation" => "SELECT CAST(count(*) AS TEXT) FROM card_activation",
        "card_event" => "SELECT CAST(count(*) AS TEXT) FROM card_event",
        other => panic!("no count for {other}"),
    };
    sql(db, query, &[])[0].parse().unwrap()
}

const LEDGER_TABLES: [&str; 4] = ["transfer", "entry", "audit_record", "adjustment"];

/// The ledger as an operator drives it: an account is created and funded by an adjustment, an
/// order is spent (a second spend under the same order id says it is a repeat and spends
/// nothing), part of it refunded; history pages newest first with a cursor, the balance reads as
/// JSON, and `ledger check` exits 0 with the system accounts' balances.
fn the_ledger_from_the_command_line(db: TestDb) {
    ok(&db, &["init"]);
    let created = ok(
        &db,
        &[
            "account",
            "create",
            "--region",
            "US",
            "--currency",
            "USD",
            "--external-id",
            "cust-1",
        ],
    );
    assert_eq!(created, "account 1 created: US USD, balance 0.00 USD\n");
    let funded = ok(
        &db,
        &[
            "adjust",
            "--account",
            "1",
            "--amount",
            "50.00",
            "--currency",
            "USD",
            "--reason",
            "goodwill",
        ],
    );
    assert_eq!(
        funded,
        "adjustment 1 posted as transfer 1: balance 50.00 USD\n"
    );
    let spend = [
        "spend",
        "--account",
        "1",
        "--amount",
        "10.00",
        "--currency",
        "USD",
        "--order",
        "o-1",
        "--service",
        "app-store",
    ];
    assert_eq!(ok(&db, &spend), "spent: transfer 2, balance 40.00 USD\n");
    let written = LEDGER_TABLES.map(|t| rows_in(&db, t));
    assert_eq!(
        ok(&db, &spend),
        "spent: transfer 2, balance 40.00 USD (a repeat: nothing new was written)\n"
    );
    assert_eq!(LEDGER_TABLES.map(|t| rows_in(&db, t)), written);
    let refunded = ok(
        &db,
        &[
            "refund",
            "--account",
            "1",
            "--order",
            "o-1",
            "--refund",
            "r-1",
            "--amount",
            "4.00",
            "--currency",
            "USD",
        ],
    );
    // The refund's id follows the spend's, with a gap on PostgreSQL, whose identity sequence
    // the replay's rolled-back insert consumed.
    let refund_id = refunded
        .strip_prefix("refunded: transfer ")
        .and_then(|r| r.strip_suffix(", balance 44.00 USD\n"))
        .unwrap_or_else(|| panic!("{refunded}"));
    assert!(refund_id.parse::<u64>().unwrap() > 2, "{refunded}");
    let history = ok(&db, &["history", "--account", "1"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 4, "{history}");
    assert!(lines[0].starts_with("transfer  type"), "{history}");
    for (line, (id, kind, amount, after)) in lines[1..].iter().zip([
        (refund_id, "refund", "4.00 USD", "44.00 USD"),
        ("2", "spend", "-10.00 USD", "40.00 USD"),
        ("1", "adjustment", "50.00 USD", "50.00 USD"),
    ]) {
        let cells: Vec<&str> = line.split("  ").filter(|c| !c.is_empty()).collect();
        assert_eq!(
            cells[..4].iter().map(|c| c.trim()).collect::<Vec<_>>(),
            [id, kind, amount, after],
            "{history}"
        );
    }
    let page = ok(&db, &["history", "--account", "1", "--limit", "2"]);
    assert!(page.ends_with("more: --after 2\n"), "{page}");
    let rest: serde_json::Value = serde_json::from_str(&ok(
        &db,
        &[
            "history",
            "--account",
            "1",
            "--after",
            "2",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let rest = rest.as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["transfer_id"], 1);
    assert_eq!(rest[0]["kind"], "adjustment");
    let balance: serde_json::Value =
        serde_json::from_str(&ok(&db, &["balance", "--account", "1", "--format", "json"])).unwrap();
    assert_eq!(balance["id"], 1);
    assert_eq!(balance["balance"]["amount"], "44.00");
    assert_eq!(balance["balance"]["currency"], "USD");
    assert_eq!(balance["external_id"], "cust-1");
    let checked = ok(&db, &["ledger", "check"]);
    assert!(
        checked.starts_with("ledger balanced: 3 transfers, 6 entries, 1 accounts\n"),
        "{checked}"
    );
    assert!(checked.contains("  adjustment USD: -5000\n"), "{checked}");
    assert!(
        checked.contains("  spent:app-store USD: 600\n"),
        "{checked}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&ok(&db, &["ledger", "check", "--format", "json"])).unwrap();
    assert_eq!(report["discrepancy"], serde_json::Value::Null);
    ok(&db, &["audit", "verify"]);
}
both_backends_cli!(the_ledger_from_the_command_line);

/// What the command line refuses, it refuses with the code in brackets and writes nothing: an
/// adjustment above the threshold approved by the user who asked for it (under any `--actor`
/// note), and an amount in scientific notation. `--approval-over` and TENDER_APPROVAL_OVER move
/// the threshold. A balance altered behind tender's back makes `ledger check` exit 1 naming the
/// account.
fn the_ledger_refuses_from_the_command_line(db: TestDb) {
    ok(&db, &["init"]);
    ok(
        &db,
        &["account", "create", "--region", "US", "--currency", "USD"],
    );
    let adjust = |amount: &'static str| {
        [
            "adjust",
            "--account",
            "1",
            "--amount",
            amount,
            "--currency",
            "USD",
            "--reason",
            "goodwill",
        ]
    };
    ok(&db, &adjust("50.00"));
    let pending = ok(&db, &adjust("150.00"));
    assert!(
        pending.starts_with("adjustment 2 waits for approval"),
        "{pending}"
    );
    let before = LEDGER_TABLES.map(|t| rows_in(&db, t));
    refused(&db, &["adjust", "approve", "2"], "adjustment.self_approval");
    refused(
        &db,
        &["--actor", "t-2", "adjust", "approve", "2"],
        "adjustment.self_approval",
    );
    refused(
        &db,
        &[
            "spend",
            "--account",
            "1",
            "--amount",
            "1e3",
            "--currency",
            "USD",
            "--order",
            "o-1",
            "--service",
            "app-store",
        ],
        "money.malformed",
    );
    refused(&db, &adjust("-60.00"), "ledger.insufficient_funds");
    assert_eq!(LEDGER_TABLES.map(|t| rows_in(&db, t)), before);
    let raised = ok(
        &db,
        &[&["--approval-over", "200"][..], &adjust("150.00")].concat(),
    );
    assert!(raised.contains("posted as transfer 2"), "{raised}");
    let out = tender(&db)
        .env("TENDER_APPROVAL_OVER", "200")
        .args(adjust("-150.00"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("posted as transfer 3"), "{stdout}");
    ok(&db, &["ledger", "check"]);
    sql(
        &db,
        "UPDATE account SET balance_minor = 1 WHERE account_id = 1",
        &[],
    );
    let stderr = refused(&db, &["ledger", "check"], "ledger.discrepancy");
    assert!(stderr.contains("account 1 "), "{stderr}");
    let out = run(&db, &["ledger", "check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["discrepancy"]["discrepancy"], "balance_drift");
    assert_eq!(report["discrepancy"]["account_id"], 1);
    assert_eq!(report["discrepancy"]["stored_minor"], 1);
    assert_eq!(report["discrepancy"]["summed_minor"], 5_000);
}
both_backends_cli!(the_ledger_refuses_from_the_command_line);

const POS_TABLES: [&str; 5] = [
    "pos_request",
    "card_activation",
    "card_event",
    "transfer",
    "audit_record",
];

/// The serials of batch `id`'s first `n` cards.
fn serials(db: &TestDb, id: u64, n: u64) -> Vec<String> {
    let first: Serial = batch_json(db, id)["first_serial"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (0..n)
        .map(|i| {
            Serial::from_sequence(first.sequence() + i)
                .unwrap()
                .to_string()
        })
        .collect()
}

/// A POS request from Acme's `store`, till-1, as transaction `pos_txn`, for `serial`.
fn at_till<'a>(
    command: &'a str,
    store: &'a str,
    pos_txn: &'a str,
    serial: &'a str,
) -> Vec<&'a str> {
    vec![
        command,
        "--retailer",
        "Acme",
        "--store",
        store,
        "--terminal",
        "till-1",
        "--pos-txn",
        pos_txn,
        "--serial",
        serial,
    ]
}

/// A store's POS and the support desk, from the command line. A store is added; a POS time
/// that is not RFC 3339 and a store never added are refused with their codes, writing nothing.
/// One card is sold alone, then the box it is in: one line per card, the card sold before
/// refused with its code and reason, the others activated in one transfer, and the retry
/// replays the answer and writes nothing. One card is voided, another blocked (a blocked card
/// cannot be voided), a third marked exposed (a live sale of it is refused) and cleared. `card
/// show` reads as a support agent needs it, in text and JSON; no output holds a code, and
/// `ledger check` shows every card's balance as one line.
fn cards_at_the_point_of_sale_from_the_command_line(db: TestDb) {
    setup(&db, 1000);
    ok(
        &db,
        &[
            "batch",
            "create",
            "--retailer",
            "Acme",
            "--count",
            "10",
            "--value",
            "25.00",
            "--currency",
            "USD",
            "--region",
            "US",
            "--expires-in-days",
            "365",
        ],
    );
    ok(&db, &["work", "--drain"]);
    let s = serials(&db, 1, 6);
    let mut printed = String::new();
    // Every output is kept, to be searched for codes at the end.
    let mut run_ok = |args: &[&str]| {
        let out = ok(&db, args);
        printed.push_str(&out);
        out
    };
    let added = run_ok(&[
        "store",
        "add",
        "--retailer",
        "Acme",
        "--id",
        "S-1",
        "--jurisdiction",
        "us-tx",
    ]);
    assert_eq!(
        added,
        "store S-1 of retailer 1 added in US-TX: card funds sold here expire no sooner than 5 \
         years after the sale\n"
    );
    let listed = run_ok(&["store", "list", "--retailer", "Acme"]);
    let row: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["1", "S-1", "US-TX"], "{listed}");

    let before = POS_TABLES.map(|t| rows_in(&db, t));
    let late = [
        &at_till("activate", "S-1", "t-0", &s[0])[..],
        &["--pos-time", "yesterday"],
    ];
    let stderr = refused(&db, &late.concat(), "pos.time_malformed");
    assert!(stderr.contains("RFC 3339"), "{stderr}");
    let stderr = refused(
        &db,
        &at_till("activate", "S-9", "t-0", &s[0]),
        "pos.unknown_store",
    );
    assert!(stderr.contains("has no store S-9"), "{stderr}");
    assert_eq!(POS_TABLES.map(|t| rows_in(&db, t)), before);

    let single = run_ok(&at_till("activate", "S-1", "t-0", &s[2]));
    assert!(
        single.ends_with("activated 1 of 1 card in transfer 1\n"),
        "{single}"
    );
    let range = [
        &at_till("activate", "S-1", "t-1", &s[0])[..],
        &["--to-serial", &s[4]],
    ]
    .concat();
    let sold = run_ok(&range);
    let lines: Vec<&str> = sold.lines().collect();
    assert_eq!(
        lines.len(),
        7,
        "a header, a line per card, a summary: {sold}"
    );
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["serial", "outcome", "value", "funds", "expire", "review"]
    );
    for (line, serial) in lines[1..6].iter().zip(&s) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], serial, "{sold}");
        if *serial == s[2] {
            assert_eq!(cells[1], "card.already_active", "{sold}");
            assert!(
                line.ends_with(&format!("card {serial} is already active")),
                "{sold}"
            );
        } else {
            assert_eq!(cells[1..4], ["activated", "25.00", "USD"], "{sold}");
            assert_ne!(cells[4], "never", "Texas lets funds expire: {sold}");
        }
    }
    assert_eq!(lines[6], "activated 4 of 5 cards in transfer 2");
    let written = POS_TABLES.map(|t| rows_in(&db, t));
    let again = run_ok(&range);
    assert_eq!(
        again,
        sold.replace(
            "in transfer 2\n",
            "in transfer 2 (replayed: the first answer to this POS transaction; nothing new \
             was written)\n"
        )
    );
    assert_eq!(POS_TABLES.map(|t| rows_in(&db, t)), written);

    let voided = run_ok(&at_till("void", "S-1", "r-1", &s[0]));
    assert_eq!(
        voided,
        format!("card {} voided: transfer 3 reverses its sale\n", s[0])
    );
    let blocked = run_ok(&["block", "--serial", &s[1], "--reason", "lost_in_transit"]);
    assert_eq!(
        blocked,
        format!("card {} blocked (lost_in_transit); it is active\n", s[1])
    );
    let before = POS_TABLES.map(|t| rows_in(&db, t));
    refused(&db, &at_till("void", "S-1", "r-2", &s[1]), "card.blocked");
    let exposed = run_ok(&["card", "expose", &s[5], "--reason", "code_on_social_media"]);
    assert_eq!(
        exposed,
        format!(
            "card {} marked exposed (code_on_social_media); it is issued\n",
            s[5]
        )
    );
    let stderr = refused(
        &db,
        &at_till("activate", "S-1", "t-2", &s[5]),
        "card.exposed",
    );
    assert!(stderr.contains("take it off the shelf"), "{stderr}");
    run_ok(&["card", "clear-exposure", &s[5], "--reason", "reprinted"]);
    let after = POS_TABLES.map(|t| rows_in(&db, t));
    let [requests, activations, events, transfers, records] = before;
    assert_eq!(
        after,
        [requests, activations, events + 2, transfers, records + 2],
        "only the exposure and its clearing were written"
    );

    let shown = run_ok(&["card", "show", &s[1]]);
    let (fields, history) = shown.split_once("history, oldest first:\n").unwrap();
    let fields: Vec<&str> = fields.lines().collect();
    assert_eq!(fields[0], format!("card {}", s[1]));
    for expected in [
        "  state         active (blocked: lost_in_transit)",
        "  retailer      1 Acme (2.50% commission)",
        "  store         S-1 in US-TX",
        "  terminal      till-1",
        "  POS txn       t-1",
        "  value         25.00 USD (transfer 2)",
        "  commission    0.63 USD",
        "  review        none",
    ] {
        assert!(fields.contains(&expected), "{expected:?} in {shown}");
    }
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("  batch         1: 25.00 USD, region US, printed expiry 20")),
        "{shown}"
    );
    let events: Vec<Vec<&str>> = history
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let actor = format!("cli:{}", os_user());
    assert_eq!(events[0], ["time", "action", "reason", "actor"]);
    assert_eq!(events[1][1..], ["activated", actor.as_str()]);
    assert_eq!(
        events[2][1..],
        ["blocked", "lost_in_transit", actor.as_str()]
    );
    assert_eq!(events.len(), 3, "{shown}");

    let card: serde_json::Value =
        serde_json::from_str(&run_ok(&["card", "show", &s[0], "--format", "json"])).unwrap();
    assert_eq!(card["serial"], s[0].as_str());
    assert_eq!(card["state"], "voided");
    assert_eq!(card["blocked"], serde_json::Value::Null);
    assert_eq!(card["batch"]["id"], 1);
    assert_eq!(card["retailer"]["name"], "Acme");
    let sale = &card["activation"];
    assert_eq!(sale["store"], "S-1");
    assert_eq!(sale["jurisdiction"], "US-TX");
    assert_eq!(sale["pos_txn"], "t-1");
    assert_eq!(sale["value"]["amount"], "25.00");
    assert_eq!(sale["commission"]["amount"], "0.63");
    assert_eq!(sale["void_pos_txn"], "r-1");
    assert_eq!(sale["void_transfer_id"], 3);
    let time =
        |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    // Printed a year out, sold in Texas: the federal five years from the sale win.
    assert_eq!(
        time(&sale["funds_expire_at"]),
        time(&sale["activated_at"])
            .checked_add_months(chrono::Months::new(60))
            .unwrap()
    );
    let actions: Vec<&str> = card["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["activated", "voided"]);

    let checked = run_ok(&["ledger", "check"]);
    for line in [
        "  card:* USD: 10000\n",
        "  commission USD: -252\n",
        "  receivable:1 USD: -9748\n",
    ] {
        assert!(checked.contains(line), "{line:?} in {checked}");
    }
    assert!(
        !checked.contains("card:0"),
        "one line for all cards: {checked}"
    );
    run_ok(&["audit", "verify"]);
    let codes = printer_codes(&export_path(&db, 1));
    assert_eq!(codes_found_in(printed.as_bytes(), &codes), 0, "{printed}");
}
both_backends_cli!(cards_at_the_point_of_sale_from_the_command_line);

/// The demo runs the whole flow on a fresh directory: the point of sale, two accounts credited
/// by redeeming codes read from the printer files (a retry replayed), one refusal of each kind
/// with its stable code (the expired card once the demo has moved its clock a day ahead), the
/// nightly expiry run by the job runner's schedules (the UK cards into breakage, the Ontario card
/// kept), both accounts' balances and histories, the ledger checked and the audit trail verified. It prints
/// no code of either printer file in any typed form. A batch too small to sell a box is refused.
#[test]
fn the_demo_runs_the_whole_flow() {
    let db = TestDb::sqlite();
    let dir = db.path().join("demo");
    let demo = |cards: &str| {
        tender(&db)
            .args(["demo", "--dir", dir.to_str().unwrap(), "--cards", cards])
            .output()
            .unwrap()
    };
    let out = demo("5");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).ends_with("[demo.too_few_cards]\n"));
    assert!(!dir.exists(), "nothing was created");
    let out = demo("6");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "cards 000000000013 to 000000000059 sold there as one box: 5 of 5 activated",
        "card 000000000013 returned and voided",
        "card 000000000021 blocked (lost_in_transit)",
        "  state         active (blocked: lost_in_transit)\n",
        "store S-0002 added in GB-ENG",
        "account 1 redeems card ••••••••0037 under idempotency key demo-redeem-1: 25.00 USD credited, balance 145.00 USD",
        "the first answer (transfer",
        "account 2 redeems card ••••••••0045: 25.00 USD credited, balance 25.00 USD",
        "     account 1: balance 2215.50 USD\n       trade_in    1450.00 USD  balance  2215.50 USD  TI-1003 MacBook Pro 14 M3 ...MD6T\n",
        "       redemption    25.00 USD  balance   145.00 USD  ••••••••0037\n",
        "trade-in file 1 imported: 12 rows, 4 accepted, 0 unchanged, 0 revalued, 8 rejected",
        "line 13: tradein.region_mismatch:",
        "1 held for finance: trade-in 3 (TI-1003, 1450.00 USD, price_band)",
        "trade-in 3 approved by demo:finance",
        "     account 2: balance 25.00 USD\n       redemption    25.00 USD  balance    25.00 USD  ••••••••0045\n",
        "card ••••••••0059 is still active",
        "12. a day later `tender expire --dry-run` would expire 2 cards (2 cards' 40.00 GBP to breakage)",
        "succeeded in ",
        " is now expired; Ontario card ",
        " is still active with its 30.00 CAD: its jurisdiction forbids expiry",
        "15. ledger check:",
        "16. over HTTP: `tender serve` on http://127.0.0.1:",
        "/v1/activations -H \"Authorization: Bearer $POS_KEY\"",
        "       201 {",
        "the same request again: 201 with the first answer and Idempotent-Replayed: true",
        "       tender_redemptions_total{outcome=\"ok\"} ",
        "17. audit trail sealed",
        "18. ",
        " settled after its cut-off and grace: 7 files in ",
        "difference                   0.00 USD\n",
        "Demo Books  0.00 USD  5     125.00 USD  3.15 USD    1       97.48 USD  0.00 USD  97.48 USD\n",
        "19. Demo Books paid 97.48 USD (`tender settle record-payment --reference DEMO-REMIT-0001`): transfer ",
        "entered again, recorded once",
        "20. `tender settle verify --date ",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }
    // One line per refusal, each starting with its stable code.
    let refusals: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("redeem."))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        refusals,
        [
            "invalid_format",
            "not_found",
            "not_activated",
            "not_activated",
            "already_redeemed",
            "blocked",
            "region_mismatch",
            "currency_mismatch",
            "account_frozen",
            "key_conflict",
            "not_found",
            "rate_limited",
            "expired",
        ]
    );
    let mut codes = printer_codes(&dir.join("exports/batch-1.csv"));
    codes.extend(printer_codes(&dir.join("exports/batch-2.csv")));
    codes.extend(printer_codes(&dir.join("exports/batch-3.csv")));
    assert_eq!(codes.len(), 10);
    assert!(!stdout.contains("tdr_live_"), "no API key is printed");
    let typed: Vec<String> = codes.iter().flat_map(|c| typed_forms(c)).collect();
    assert_eq!(codes_found_in(stdout.as_bytes(), &typed), 0, "{stdout}");
    assert_eq!(codes_found_in(&out.stderr, &typed), 0);
    // Every day the demo ran on closed, its files written and verified.
    let closed = std::fs::read_dir(dir.join("reports")).unwrap().count();
    assert!(closed >= 2, "{closed} days closed");
    // What the demo wrote holds no code either: only the printer files do.
    let mut bytes = Vec::new();
    for file in ["tender.db", "tender.db-wal"] {
        if let Ok(b) = std::fs::read(dir.join(file)) {
            bytes.extend(b);
        }
    }
    assert_eq!(codes_found_in(&bytes, &typed), 0);
}

/// A batch of `count` cards generated, its first card sold at Acme's Texas store `S-1`, and
/// account 1 opened (US, USD): the sold card's serial, and the printer file's codes in its
/// order.
fn first_card_sold_and_an_account(db: &TestDb, count: u64) -> (String, Vec<String>) {
    setup(db, 1000);
    create(db, count);
    ok(db, &["work", "--drain"]);
    let s = serials(db, 1, 1);
    ok(
        db,
        &[
            "store",
            "add",
            "--retailer",
            "Acme",
            "--id",
            "S-1",
            "--jurisdiction",
            "US-TX",
        ],
    );
    ok(db, &at_till("activate", "S-1", "t-0", &s[0]));
    ok(
        db,
        &["account", "create", "--region", "US", "--currency", "USD"],
    );
    (s[0].clone(), printer_codes(&export_path(db, 1)))
}

/// `tender redeem` with the code on standard input, as a script pipes it: the card's value lands
/// in the account; a wrong code exits 1 with its code and one sentence, and `tender attempts`
/// shows it to support. No output holds a code.
fn redeeming_from_the_command_line(db: TestDb) {
    let (sold, codes) = first_card_sold_and_an_account(&db, 2);
    let piped = |args: &[&str], input: &str| -> Output {
        let mut command = tender(&db);
        command.args(args);
        with_input(command, input.as_bytes())
            .wait_with_output()
            .unwrap()
    };
    let code = &codes[0];
    let out = piped(
        &["redeem", "--account", "1", "--idempotency-key", "r-1"],
        &format!("{code}\n"),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last4 = &sold[8..];
    assert_eq!(
        stdout,
        format!(
            "redeemed 25.00 USD from card ••••••••{last4} into account 1: balance 25.00 USD \
             (transfer 2)\n"
        )
    );
    let again = piped(
        &["redeem", "--account", "1", "--idempotency-key", "r-1"],
        &format!("{code}\n"),
    );
    assert!(
        String::from_utf8(again.stdout)
            .unwrap()
            .ends_with("(already done: the first answer)\n")
    );
    assert!(ok(&db, &["balance", "--account", "1"]).contains("25.00 USD"));

    let wrong = piped(&["redeem", "--account", "1"], "7000 0000 0000 0001\n");
    let stderr = String::from_utf8(wrong.stderr).unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "error: no gift card has this code; check it and try again [redeem.not_found]\n"
    );
    let malformed = piped(&["redeem", "--account", "1"], "1234\n");
    let stderr = String::from_utf8(malformed.stderr).unwrap();
    assert!(stderr.ends_with("[redeem.invalid_format]\n"), "{stderr}");
    // The code is never an argument.
    let out = run(&db, &["redeem", "--account", "1", code]);
    assert_eq!(out.status.code(), Some(2));

    let attempts = ok(&db, &["attempts", "--account", "1"]);
    assert!(attempts.contains("redeem.not_found"), "{attempts}");
    assert_eq!(attempts.lines().count(), 2, "{attempts}");
    ok(&db, &["ledger", "check"]);
    for printed in [&stdout, &attempts] {
        assert_eq!(codes_found_in(printed.as_bytes(), &codes), 0);
    }
}
both_backends_cli!(redeeming_from_the_command_line);

/// The guessing limit holds across processes, because its counters live in the database:
/// eight `tender redeem` processes started together with wrong codes for one account evaluate
/// exactly five of them (`redeem.not_found`) and refuse the other three
/// (`redeem.rate_limited`). Then another process brings the valid code of an active card: it is
/// refused `redeem.rate_limited` with the time to try again, the card stays active and the
/// account is credited nothing. Every code goes through standard input.
fn the_sixth_attempt_in_an_hour_is_refused_across_processes(db: TestDb) {
    let (sold, codes) = first_card_sold_and_an_account(&db, 1);
    let code = &codes[0];
    let redeem = |input: String| {
        let mut command = tender(&db);
        command.args(["redeem", "--account", "1"]);
        with_input(command, input.as_bytes())
    };
    let refusal = |out: Output| -> String {
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let (_, code) = stderr.trim_end().rsplit_once('[').expect("a stable code");
        code.trim_end_matches(']').to_string()
    };

    clear_of_the_hours_end();
    let guesses: Vec<_> = (0..8)
        .map(|n| redeem(format!("7000 0000 0000 000{n}\n")))
        .collect();
    let mut outcomes: Vec<String> = guesses
        .into_iter()
        .map(|child| refusal(child.wait_with_output().unwrap()))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [vec!["redeem.not_found"; 5], vec!["redeem.rate_limited"; 3]].concat()
    );

    let out = redeem(format!("{code}\n")).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(refusal(out), "redeem.rate_limited");
    assert!(stderr.contains("try again after"), "{stderr}");
    let card: serde_json::Value =
        serde_json::from_str(&ok(&db, &["card", "show", &sold, "--format", "json"])).unwrap();
    assert_eq!(card["state"], "active");
    assert!(ok(&db, &["balance", "--account", "1"]).contains("0.00 USD"));
    let attempts = ok(&db, &["attempts", "--account", "1"]);
    assert_eq!(attempts.lines().count(), 1 + 9, "{attempts}");
    assert_eq!(attempts.matches("redeem.rate_limited").count(), 4);
    ok(&db, &["ledger", "check"]);
}
both_backends_cli!(the_sixth_attempt_in_an_hour_is_refused_across_processes);

/// `tender api-key`: create prints the key once, list shows no secret, revoke is final.
fn api_keys_from_the_command_line(db: TestDb) {
    ok(&db, &["init"]);
    ok(
        &db,
        &["retailer", "add", "--name", "Acme", "--commission", "2.5"],
    );
    let store = [
        "store",
        "add",
        "--retailer",
        "Acme",
        "--id",
        "S-1",
        "--jurisdiction",
        "US-CA",
    ];
    ok(&db, &store);
    let till: serde_json::Value = serde_json::from_str(&ok(
        &db,
        &[
            "api-key",
            "create",
            "--role",
            "pos",
            "--name",
            "acme-till",
            "--retailer",
            "Acme",
            "--store",
            "S-1",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let till_key = till["key"].as_str().unwrap().to_string();
    assert!(till_key.starts_with("tdr_live_"), "{till_key}");
    assert_eq!(till["client"]["role"], "pos");
    assert_eq!(till["client"]["store"], "S-1");
    // As text, the key is on a line of its own, for a person to copy.
    let ops = ok(
        &db,
        &["api-key", "create", "--role", "admin", "--name", "ops"],
    );
    let ops_key = ops.lines().nth(1).unwrap();
    assert!(ops_key.starts_with("tdr_live_"), "{ops}");

    let refused = run(
        &db,
        &[
            "api-key", "create", "--role", "admin", "--name", "x", "--store", "S-1",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("[api_key.binding_not_allowed]"));

    let listed = ok(&db, &["api-key", "list", "--format", "json"]);
    let text = ok(&db, &["api-key", "list"]);
    for secret in [&till_key, ops_key] {
        let secret = secret.rsplit_once('_').unwrap().1;
        assert!(!listed.contains(secret) && !text.contains(secret));
    }
    let clients: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = clients
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-till", "ops"]);
    assert!(text.contains("acme-till") && text.contains("retailer 1, store S-1"));

    assert!(ok(&db, &["api-key", "revoke", "acme-till"]).contains("revoked"));
    let again = run(&db, &["api-key", "revoke", "acme-till"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("[api_key.already_revoked]"));
    let clients: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&db, &["api-key", "list", "--format", "json"])).unwrap();
    assert!(clients[0]["revoked_at"].is_string());
    assert!(clients[1]["revoked_at"].is_null());

    let cli = format!("cli:{}", os_user());
    assert_eq!(actors_of(&db, "api_key.created"), [cli.as_str(); 2]);
    assert_eq!(actors_of(&db, "api_key.revoked"), [cli.as_str()]);
}
both_backends_cli!(api_keys_from_the_command_line);

/// A `tender serve` process on a free port, logging at `log` to a channel (so it never blocks
/// on a full pipe), and the address it named in its log.
fn spawn_server(
    db: &TestDb,
    log: &str,
) -> (
    Reaped,
    std::net::SocketAddr,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::{BufRead, BufReader};

    let mut server = Reaped(
        tender(db)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-jobs"])
            .env("TENDER_LOG", log)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines, logged) = std::sync::mpsc::channel();
    let stderr = BufReader::new(server.stderr.take().unwrap());
    std::thread::spawn(move || {
        stderr.lines().map_while(Result::ok).for_each(|line| {
            let _ = lines.send(line);
        })
    });
    let addr = loop {
        let line = logged
            .recv_timeout(Duration::from_secs(30))
            .expect("tender serve logs the address it listens on");
        if let Some((_, rest)) = line.split_once("listening on http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    (server, addr, logged)
}

/// Sends SIGTERM and waits for the exit status, which must come within the grace period.
fn stop_server(server: &mut std::process::Child) -> std::process::ExitStatus {
    let sent = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(server),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            return status;
        }
        assert!(
            sent.elapsed() < tender::api::REQUEST_GRACE,
            "tender serve still runs {:?} after SIGTERM",
            tender::api::REQUEST_GRACE
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request on a new connection: the status line and the rest of the response.
fn http(addr: std::net::SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// `tender serve` as an orchestrator runs it: it names its port in the log, answers, and on
/// SIGTERM stops within the grace period with status 0.
#[test]
fn serve_answers_and_stops_cleanly_on_sigterm() {
    let db = TestDb::sqlite();
    ok(&db, &["init"]);
    let (mut server, addr, _log) = spawn_server(&db, "info");

    let response = http(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: tender\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");

    let status = stop_server(&mut server);
    assert!(status.success(), "{status:?}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is released"
    );
}

/// Two `tender serve` processes on one database share the guessing limits, since the windows
/// live in the database: eight wrong codes for one account sent at once, alternating between
/// the servers, are evaluated five times (404 `redeem.not_found`) and refused three (429 with
/// `Retry-After`); the valid code of an active card is then refused by either server. With both
/// logging at debug level, no code sent appears in their logs.
fn two_servers_share_one_rate_limit(db: TestDb) {
    let (sold, codes) = first_card_sold_and_an_account(&db, 1);
    let created = ok(
        &db,
        &["api-key", "create", "--role", "redeem", "--name", "web"],
    );
    let key = created
        .split_whitespace()
        .find(|word| word.starts_with("tdr_live_"))
        .expect("the key is printed once")
        .to_string();
    let servers = [spawn_server(&db, "debug"), spawn_server(&db, "debug")];
    let addrs = [servers[0].1, servers[1].1];
    let redeem = |addr: std::net::SocketAddr, code: &str, idempotency_key: &str| {
        let body = format!(r#"{{"code": "{code}"}}"#);
        http(
            addr,
            &format!(
                "POST /v1/accounts/1/redemptions HTTP/1.1\r\nHost: tender\r\n\
                 Authorization: Bearer {key}\r\nIdempotency-Key: {idempotency_key}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let guesses: Vec<String> = (0..8).map(|n| format!("7000 0000 0000 000{n}")).collect();

    clear_of_the_hours_end();
    let mut statuses: Vec<String> = std::thread::scope(|scope| {
        let sent: Vec<_> = guesses
            .iter()
            .enumerate()
            .map(|(n, guess)| {
                let redeem = &redeem;
                scope.spawn(move || redeem(addrs[n % 2], guess, &format!("guess-{n}")))
            })
            .collect();
        sent.into_iter()
            .map(|reply| {
                let reply = reply.join().unwrap();
                let status = reply.split(' ').nth(1).unwrap().to_string();
                if status == "429" {
                    assert!(reply.to_lowercase().contains("retry-after: "), "{reply}");
                }
                status
            })
            .collect()
    });
    statuses.sort();
    assert_eq!(statuses, [vec!["404"; 5], vec!["429"; 3]].concat());
    for (n, addr) in addrs.iter().enumerate() {
        let reply = redeem(*addr, &codes[0], &format!("valid-{n}"));
        assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
        assert!(reply.contains("redeem.rate_limited"), "{reply}");
    }
    let card: serde_json::Value =
        serde_json::from_str(&ok(&db, &["card", "show", &sold, "--format", "json"])).unwrap();
    assert_eq!(card["state"], "active");

    let mut logs = String::new();
    for (mut server, _, log) in servers {
        assert!(stop_server(&mut server).success());
        logs.extend(log.try_iter().map(|line| line + "\n"));
    }
    assert!(logs.contains("DEBUG"), "the servers logged at debug level");
    let mut typed: Vec<String> = codes.iter().flat_map(|c| typed_forms(c)).collect();
    typed.extend(
        guesses
            .iter()
            .flat_map(|g| typed_forms(&g.replace(' ', ""))),
    );
    assert_eq!(codes_found_in(logs.as_bytes(), &typed), 0, "{logs}");
}
both_backends_cli!(two_servers_share_one_rate_limit);
