//! Trade-in posting across processes: several `tender` processes post one database's queued
//! valuations at once while one of them is killed with SIGKILL, and each valuation is still
//! credited exactly once.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tender::store::Store;
use tokio::process::Command;

use crate::helpers::{TestApp, actor, both_backends, open_account, tender_command};
use crate::tradein::assert_whole;

/// Valuations imported before the workers start: enough that posting them takes a while.
const VALUATIONS: i64 = 2_000;
/// Accounts they are spread over, so that workers on PostgreSQL do not all wait on one row.
const ACCOUNTS: i64 = 10;
/// How long the workers may take before the test gives up on them (a hang is a failure).
const GRACE: Duration = Duration::from_secs(120);

/// A `tender` command on the test's database, with its keys, the built-in job definitions and
/// a daily amount no warehouse here reaches.
fn tender<S: Store>(env: &TestApp<S>, args: &[&str]) -> Command {
    let mut command = Command::from(tender_command(env, args));
    command
        .env("TENDER_TRADEIN_DAILY_AMOUNT", "100000000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Waits for a process to end, and says how and what it printed on stderr.
async fn finish(child: tokio::process::Child, what: &str) -> (std::process::ExitStatus, String) {
    let out = tokio::time::timeout(GRACE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A few thousand valuations are imported with posting not yet run; two `tender tradein post`
/// processes post them at once, and one is killed with SIGKILL once posting is under way; the
/// other finishes, and `tender work --drain` runs the posting job the import queued. Then every
/// valuation is posted, with exactly one credit transfer, one posting record and one audit
/// record each; each account's balance is the sum of its valuations; the books check clean and
/// the audit trail verifies.
async fn each_valuation_is_credited_once_across_workers_and_a_kill<S: Store>(env: TestApp<S>) {
    let began = Instant::now();
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(open_account(&env, "US", "USD").await);
    }
    let mut file = String::from(
        "trade_in_id,account_id,warehouse_id,device_model,device_id,grade,value,currency,\
         assessed_at\n",
    );
    for n in 0..VALUATIONS {
        let account = &accounts[(n % ACCOUNTS) as usize];
        file.push_str(&format!(
            "TI-{n},{account},WH-{},iPhone 13,SN{n:010},good,{}.{:02},USD,2026-03-01T14:30:00Z\n",
            n % 3,
            1 + n % 97,
            n % 100
        ));
    }
    let report = env
        .app
        .services()
        .trade_ins()
        .import(std::io::Cursor::new(file.into_bytes()), None, &actor())
        .await
        .unwrap();
    assert_eq!(report.file.rows.accepted, VALUATIONS);
    let imported = began.elapsed();

    let posted = || env.count("SELECT count(*) FROM trade_in WHERE state = 'posted'");
    assert_eq!(posted().await, 0);
    let mut victim = tender(&env, &["tradein", "post"]).spawn().unwrap();
    let survivor = tender(&env, &["tradein", "post"]).spawn().unwrap();
    let deadline = Instant::now() + GRACE;
    loop {
        let done = posted().await;
        assert!(
            done < VALUATIONS,
            "every valuation was posted before a worker could be killed"
        );
        if done > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the workers posted nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.start_kill().unwrap(); // SIGKILL
    let (status, _) = finish(victim, "the victim").await;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the victim was killed while posting, not finished: {status}"
    );
    let at_kill = posted().await;
    let (status, stderr) = finish(survivor, "the surviving worker").await;
    assert!(status.success(), "the surviving worker failed: {stderr}");
    let survived = began.elapsed();
    let drained = tender(&env, &["work", "--drain"]).spawn().unwrap();
    let (status, stderr) = finish(drained, "tender work --drain").await;
    assert!(status.success(), "tender work --drain failed: {stderr}");
    eprintln!(
        "trade-in workers: imported {VALUATIONS} in {imported:.1?}, {at_kill} posted at the \
         kill, the survivor done at {survived:.1?}, drained at {:.1?}",
        began.elapsed()
    );

    assert_eq!(
        env.count("SELECT count(*) FROM trade_in WHERE state <> 'posted'")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind = 'trade_in'")
            .await,
        VALUATIONS
    );
    assert_eq!(
        env.count("SELECT count(*) FROM transfer WHERE kind <> 'trade_in'")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM trade_in_posting").await,
        VALUATIONS
    );
    assert_eq!(
        env.count("SELECT count(DISTINCT trade_in_pk) FROM trade_in_posting")
            .await,
        VALUATIONS
    );
    assert_eq!(
        env.count("SELECT count(*) FROM trade_in WHERE credited_minor <> value_minor")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'ledger.trade_in_credited'")
            .await,
        VALUATIONS
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM account a WHERE a.balance_minor <> \
             (SELECT COALESCE(SUM(t.value_minor), 0) FROM trade_in t \
              WHERE t.account_id = a.account_id)"
        )
        .await,
        0,
        "each account's balance is the sum of its valuations"
    );
    assert_whole(&env).await;
}
both_backends!(
    killed_worker,
    each_valuation_is_credited_once_across_workers_and_a_kill
);
