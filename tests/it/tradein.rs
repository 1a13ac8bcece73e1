//! Trade-in credit through its services, on both backends: warehouses' files read by a fixed
//! dialect (a file it cannot read refused whole, a bad row refused alone, with its code), each
//! valuation recorded once per trade-in id and credited once, revaluations posted as the
//! difference (a claw-back taking at most the balance and recording the rest as owed), credits
//! above a price band or a warehouse's daily amount held for a second person, the API's rows
//! and uploads, and erasure of the devices. After every test the books check clean, every
//! valuation's credit is the net of its postings, and the audit trail verifies.

use std::io::Cursor;

use tender::config::TradeInDailyAmount;
use tender::domain::{Actor, HeldFor, PageRows, RowCounts, RowOutcome, TradeInState, TransferKind};
use tender::error::Classify;
use tender::formats::tradein_csv;
use tender::service::ledger::SpendForm;
use tender::service::tradein::{
    FileReport, Posted, ROWS_PER_REQUEST_MAX, RowReport, ValuationForm,
};
use tender::store::Store;
use tender::store::tradein::{FileState, TradeInRow};

use crate::helpers::{TestApp, actor, both_backends, open_account};

/// The columns every file here has, in the documented order.
const HEADER: &str = "trade_in_id,account_id,warehouse_id,device_model,device_id,grade,value,\
                      currency,assessed_at";
const WAREHOUSE: &str = "WH-EAST";
const ASSESSED: &str = "2026-03-01T14:30:00Z";
/// A valid IMEI (the standard example): its Luhn check digit is right.
const IMEI: &str = "490154203237518";
/// The same IMEI with its last digit mistyped.
const BAD_IMEI: &str = "490154203237519";

fn alice() -> Actor {
    Actor::cli("alice", None).unwrap()
}

fn bob() -> Actor {
    Actor::cli("bob", None).unwrap()
}

/// The posting job's actor.
fn job() -> Actor {
    Actor::job("post-trade-ins")
}

/// A distinct device serial for each `n`.
fn serial(n: u64) -> String {
    format!("SN{n:010}")
}

/// One line of a file in [`HEADER`]'s order: warehouse WH-EAST, grade good, USD.
fn line(trade_in: &str, account: &str, model: &str, device: &str, value: &str) -> String {
    format!("{trade_in},{account},{WAREHOUSE},{model},{device},good,{value},USD,{ASSESSED}")
}

/// A file of [`HEADER`] and `lines`, LF line ends.
fn csv_file(lines: &[String]) -> Vec<u8> {
    format!("{HEADER}\n{}\n", lines.join("\n")).into_bytes()
}

/// One valuation as the API takes it: warehouse WH-EAST, an iPhone 13 graded good, USD.
fn form(trade_in: &str, account: &str, device: &str, value: &str) -> ValuationForm {
    ValuationForm {
        trade_in_id: trade_in.into(),
        account_id: account.into(),
        warehouse_id: WAREHOUSE.into(),
        device_model: "iPhone 13".into(),
        device_id: device.into(),
        grade: "good".into(),
        value: value.into(),
        currency: "USD".into(),
        assessed_at: ASSESSED.into(),
        revaluation: String::new(),
        region: String::new(),
    }
}

/// The same valuation marked as a revaluation.
fn revaluation(form: ValuationForm) -> ValuationForm {
    ValuationForm {
        revaluation: "true".into(),
        ..form
    }
}

async fn import<S: Store>(env: &TestApp<S>, bytes: impl Into<Vec<u8>>) -> FileReport {
    env.app
        .services()
        .trade_ins()
        .import(Cursor::new(bytes.into()), Some("valuations.csv"), &actor())
        .await
        .unwrap()
}

/// Every row result of an upload, by line.
async fn results<S: Store>(env: &TestApp<S>, file_id: i64) -> Vec<RowReport> {
    env.app
        .services()
        .trade_ins()
        .file_rows(file_id, 0, PageRows::MAX)
        .await
        .unwrap()
}

/// Each row's line, outcome and code.
fn outcomes(rows: &[RowReport]) -> Vec<(i64, RowOutcome, Option<&str>)> {
    rows.iter()
        .map(|r| (r.row, r.outcome, r.code.as_deref()))
        .collect()
}

async fn submit<S: Store>(env: &TestApp<S>, forms: &[ValuationForm]) -> Vec<RowReport> {
    env.app
        .services()
        .trade_ins()
        .submit(forms, &actor())
        .await
        .unwrap()
}

async fn submit_one<S: Store>(env: &TestApp<S>, form: ValuationForm) -> RowReport {
    submit(env, &[form]).await.remove(0)
}

/// Runs the posting job's body; (posted, held).
async fn post<S: Store>(env: &TestApp<S>) -> (u64, u64) {
    let run = env
        .app
        .services()
        .trade_ins()
        .post_queued(&job())
        .await
        .unwrap();
    (run.posted, run.held)
}

async fn show<S: Store>(env: &TestApp<S>, id: i64) -> TradeInRow {
    env.app.services().trade_ins().show(id).await.unwrap()
}

/// The valuation a trade-in id of WH-EAST names.
async fn by_ref<S: Store>(env: &TestApp<S>, trade_in: &str) -> TradeInRow {
    let id = env
        .count(&format!(
            "SELECT trade_in_pk FROM trade_in WHERE warehouse_id = '{WAREHOUSE}' \
             AND trade_in_ref = '{trade_in}'"
        ))
        .await;
    show(env, id).await
}

/// A dollar amount in cents: `cents("215.00")` is 21500.
fn cents(amount: &str) -> i64 {
    let currency = tender::domain::Currency::parse("USD").unwrap();
    tender::domain::Money::parse(amount, currency)
        .unwrap()
        .minor()
}

async fn balance<S: Store>(env: &TestApp<S>, account: &str) -> i64 {
    let account = env.app.services().ledger().account(account).await.unwrap();
    account.balance.minor()
}

async fn transfers<S: Store>(env: &TestApp<S>, kind: TransferKind) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM transfer WHERE kind = '{}'",
        kind.as_str()
    ))
    .await
}

/// What every trade-in test ends with: `ledger check` finds nothing, the audit trail verifies,
/// each valuation's `credited` is the net of the customer legs of its postings, a posted
/// valuation's credited less owed is its value, and every trade-in credit and claw-back
/// transfer is one valuation's posting.
pub(crate) async fn assert_whole<S: Store>(env: &TestApp<S>) {
    let report = env.app.services().ledger().check().await.unwrap();
    assert_eq!(report.discrepancy, None, "{report:?}");
    let verified = env.verify().await;
    assert!(verified.is_intact(), "{verified:?}");
    assert_eq!(
        env.count(
            "SELECT count(*) FROM trade_in t WHERE t.credited_minor <> COALESCE((\
             SELECT SUM(e.amount_minor) FROM trade_in_posting p \
             JOIN entry e ON e.transfer_id = p.transfer_id AND e.account_id IS NOT NULL \
             WHERE p.trade_in_pk = t.trade_in_pk), 0)"
        )
        .await,
        0,
        "a valuation's credited amount is the net of its postings"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM trade_in \
             WHERE state = 'posted' AND credited_minor - owed_minor <> value_minor"
        )
        .await,
        0,
        "a posted valuation's credited less owed is its value"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM transfer t WHERE t.kind IN ('trade_in', 'clawback') \
             AND NOT EXISTS (SELECT 1 FROM trade_in_posting p WHERE p.transfer_id = t.transfer_id)"
        )
        .await,
        0,
        "every trade-in transfer is a valuation's posting"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM trade_in_posting p JOIN transfer t \
             ON t.transfer_id = p.transfer_id WHERE t.kind NOT IN ('trade_in', 'clawback')"
        )
        .await,
        0,
        "a posting is a trade-in credit or a claw-back"
    );
}

/// Whether a cell a spreadsheet opens is inert: it does not begin with `=`, `+`, `-`, `@`, a
/// tab or a carriage return, unless it is a plain decimal number.
fn inert(cell: &str) -> bool {
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let plain_number = all_digits(whole) && all_digits(fraction);
    plain_number || !cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// An upload's rejects file, read back: its header and its rows.
async fn rejects<S: Store>(env: &TestApp<S>, file_id: i64) -> (Vec<String>, Vec<Vec<String>>) {
    let (bytes, written) = env
        .app
        .services()
        .trade_ins()
        .write_rejects(file_id, Vec::new())
        .await
        .unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice());
    let mut records = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect::<Vec<_>>());
    let header = records.next().expect("the rejects file has a header");
    let rows: Vec<_> = records.collect();
    assert_eq!(rows.len() as u64, written);
    for cell in header.iter().chain(rows.iter().flatten()) {
        assert!(
            inert(cell),
            "a rejects cell a spreadsheet would run: {cell:?}"
        );
    }
    (header, rows)
}

// ---------------------------------------------------------------------------------------------
// Files: the dialect, whole-file refusals, row refusals, and each file's bytes taken once.

/// A file the dialect cannot read is refused as a whole, with its documented code and a
/// message naming the fault (and, for a fault of the header or a row's shape, quoting the
/// expected header): a semicolon or a tab file, a missing, duplicate or unknown column, a
/// ragged row, bytes that are not UTF-8, an empty file, and a field so large its line passes
/// the line limit. Nothing of it is recorded, even the good rows before the fault: no
/// valuation, no staged row, no posting queued; its audit record says it was refused. The same
/// bad bytes again are refused again, not answered as a repeat. (A NUL byte is text the
/// dialect reads: it refuses its row alone, below. A header alone is, as the dialect says, a
/// file of no rows: imported, with nothing recorded.)
async fn a_file_the_dialect_cannot_read_is_refused_whole<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let good = line("TI-1", &account, "iPhone 13", IMEI, "215.00");
    let second = line("TI-2", &account, "Pixel 7", &serial(2), "99.00");
    let with = |header: String, rows: &[String]| {
        let mut bytes = header.into_bytes();
        for row in rows {
            bytes.push(b'\n');
            bytes.extend_from_slice(row.as_bytes());
        }
        bytes.push(b'\n');
        bytes
    };
    // A Latin-1 é: not UTF-8.
    let mut not_utf8 = csv_file(std::slice::from_ref(&good));
    not_utf8.extend_from_slice(format!("TI-2,{account},WH-EAST,Caf").as_bytes());
    not_utf8.push(0xe9);
    not_utf8
        .extend_from_slice(format!(" phone,{},good,1.00,USD,{ASSESSED}\n", serial(2)).as_bytes());
    let mut gigantic = csv_file(std::slice::from_ref(&good));
    gigantic.extend_from_slice(format!("TI-2,{account},WH-EAST,").as_bytes());
    gigantic.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    gigantic.extend_from_slice(format!(",{},good,1.00,USD,{ASSESSED}\n", serial(2)).as_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "tradein_file.separator",
            with(HEADER.replace(',', ";"), &[good.replace(',', ";")]),
            "semicolons",
        ),
        (
            "tradein_file.separator",
            with(HEADER.replace(',', "\t"), &[good.replace(',', "\t")]),
            "tabs",
        ),
        (
            "tradein_file.missing_column",
            with(HEADER.replace(",grade", ""), &[good.replace(",good", "")]),
            "`grade`",
        ),
        (
            "tradein_file.duplicate_column",
            with(format!("{HEADER},grade"), &[format!("{good},good")]),
            "`grade` twice",
        ),
        (
            "tradein_file.unknown_column",
            with(format!("{HEADER},colour"), &[format!("{good},blue")]),
            "column 10",
        ),
        (
            "tradein_file.ragged",
            with(HEADER.into(), &[good.clone(), format!("{second},extra")]),
            "line 3 has 10 fields where the header has 9",
        ),
        ("tradein_file.not_utf8", not_utf8, "line 3"),
        ("tradein_file.empty", Vec::new(), "empty"),
        ("tradein_file.empty", b"\n\n".to_vec(), "empty"),
        ("tradein_file.line_too_long", gigantic, "line 3"),
    ];
    let outbox = env.count("SELECT count(*) FROM outbox").await;
    for (code, bytes, says) in &cases {
        let report = import(&env, bytes.clone()).await;
        let file = &report.file;
        assert_eq!(file.state, FileState::Refused, "{code}: {file:?}");
        assert!(!report.repeated);
        let (got, message) = file.error.clone().expect("a refusal has its error");
        assert_eq!(got, *code, "{message}");
        assert!(message.contains(says), "{code}: {message}");
        if !matches!(
            *code,
            "tradein_file.not_utf8" | "tradein_file.line_too_long"
        ) {
            assert!(
                message.contains(&tradein_csv::expected()),
                "{code}: the message quotes the expected header: {message}"
            );
        }
        assert_eq!(file.rows, RowCounts::default());
        assert!(results(&env, file.file_id).await.is_empty());
        assert_eq!(
            env.count(&format!(
                "SELECT count(*) FROM trade_in_row WHERE file_id = {}",
                file.file_id
            ))
            .await,
            0
        );
        // Refused bytes claim nothing: sent again, they are refused again.
        let again = import(&env, bytes.clone()).await;
        assert!(!again.repeated);
        assert_ne!(again.file.file_id, file.file_id);
        assert_eq!(again.file.error.map(|e| e.0).as_deref(), Some(*code));
    }
    assert_eq!(env.count("SELECT count(*) FROM trade_in").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM trade_in_upload").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, outbox);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'tradein.file_refused'")
            .await,
        2 * i64::try_from(cases.len()).unwrap()
    );
    assert_eq!(post(&env).await, (0, 0));
    assert_eq!(balance(&env, &account).await, 0);

    // A header alone: a file of no rows, imported, nothing recorded, no posting queued.
    let empty = import(&env, format!("\u{feff}{HEADER}\r\n")).await;
    assert_eq!(empty.file.state, FileState::Imported);
    assert_eq!(empty.file.error, None);
    assert_eq!(empty.file.rows, RowCounts::default());
    assert_eq!(env.count("SELECT count(*) FROM trade_in").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, outbox);
    assert_whole(&env).await;
}
both_backends!(
    unreadable_files,
    a_file_the_dialect_cannot_read_is_refused_whole
);

/// The fixture file, as a warehouse sends it: each good row is accepted and credited once;
/// each bad row is refused alone with its code (a mistyped IMEI check digit, a currency
/// symbol, a thousands separator, more decimals than the currency has, a date that is not ISO
/// 8601, a trade-in id or a device an earlier line of the file already named, naming that
/// line, a region other than the account's). The rejects file holds each refused row as sent,
/// its device restored and every cell a spreadsheet would run guarded by a leading `'`. The
/// same bytes imported again are answered with the first import's report and post nothing.
async fn the_fixture_posts_its_good_rows_once_and_refuses_each_bad_one<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    assert_eq!(account, "1", "the fixture credits account 1");
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/tradeins.csv"
    ))
    .unwrap();
    let report = import(&env, bytes.clone()).await;
    assert!(!report.repeated);
    assert_eq!(report.file.state, FileState::Imported);
    assert_eq!(report.file.file_name.as_deref(), Some("valuations.csv"));
    assert_eq!(
        report.file.rows,
        RowCounts {
            total: 12,
            accepted: 4,
            unchanged: 0,
            revalued: 0,
            rejected: 8,
        }
    );
    let rows = results(&env, report.file.file_id).await;
    use RowOutcome::{Accepted, Rejected};
    assert_eq!(
        outcomes(&rows),
        [
            (2, Accepted, None),
            (3, Accepted, None),
            (4, Accepted, None),
            (5, Accepted, None),
            (6, Rejected, Some("tradein.bad_imei")),
            (7, Rejected, Some("money.malformed")),
            (8, Rejected, Some("money.malformed")),
            (9, Rejected, Some("money.too_precise")),
            (10, Rejected, Some("tradein.bad_time")),
            (11, Rejected, Some("tradein.repeated_in_file")),
            (12, Rejected, Some("tradein.device_repeated_in_file")),
            (13, Rejected, Some("tradein.region_mismatch")),
        ]
    );
    let reason = |line: i64| {
        rows.iter()
            .find(|r| r.row == line)
            .and_then(|r| r.reason.clone())
            .unwrap()
    };
    assert!(reason(6).starts_with("device_id: "), "{}", reason(6));
    assert!(reason(7).starts_with("value: "), "{}", reason(7));
    assert!(reason(10).starts_with("assessed_at: "), "{}", reason(10));
    assert_eq!(reason(11), "the trade-in id repeats line 2");
    assert_eq!(reason(12), "the device repeats line 2");
    assert!(reason(13).contains("GB"), "{}", reason(13));
    assert_eq!(
        rows.iter()
            .map(|r| r.trade_in_id.as_deref())
            .collect::<Vec<_>>()[..3],
        [Some("TI-1001"), Some("TI-1002"), Some("TI-1003")]
    );

    // Nothing moves until the posting job runs; then each good row is credited once.
    assert_eq!(balance(&env, &account).await, 0);
    assert_eq!(post(&env).await, (4, 0));
    assert_eq!(post(&env).await, (0, 0));
    let total = cents("215.00") + cents("310.00") + cents("1450.00") + cents("95.50");
    assert_eq!(balance(&env, &account).await, total);
    assert_eq!(transfers(&env, TransferKind::TradeIn).await, 4);
    assert_eq!(env.count("SELECT count(*) FROM trade_in_posting").await, 4);
    let galaxy = by_ref(&env, "TI-1004").await;
    assert_eq!(galaxy.device_model.as_deref(), Some("Galaxy S22, 256GB"));
    assert_eq!(
        (galaxy.state, galaxy.value.minor(), galaxy.credited_minor),
        (TradeInState::Posted, cents("95.50"), cents("95.50"))
    );
    assert_eq!(galaxy.file_id, Some(report.file.file_id));

    // The rejects file: the upload's header after line and reason, each refused row as sent.
    let (header, refused) = rejects(&env, report.file.file_id).await;
    assert_eq!(
        header.join(","),
        format!("line,reason,{HEADER},region"),
        "the upload's own header"
    );
    assert_eq!(
        refused.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["6", "7", "8", "9", "10", "11", "12", "13"]
    );
    let of = |line: &str| refused.iter().find(|r| r[0] == line).unwrap();
    assert_eq!(
        of("6")[6],
        BAD_IMEI,
        "the device is restored in the rejects"
    );
    assert!(of("6")[1].starts_with("tradein.bad_imei: device_id: "));
    assert_eq!(
        of("7")[5],
        "'=HYPERLINK(\"http://evil.example\")",
        "a formula is guarded"
    );
    assert_eq!(of("7")[8], "$40.00");
    assert_eq!(of("8")[8], "1,200.00");
    assert_eq!(
        of("11")[1],
        "tradein.repeated_in_file: the trade-in id repeats line 2"
    );

    // The same bytes again: the first report, marked repeated; nothing new anywhere.
    let before = (
        balance(&env, &account).await,
        env.count("SELECT count(*) FROM transfer").await,
        env.count("SELECT count(*) FROM trade_in").await,
        env.count("SELECT count(*) FROM trade_in_file").await,
        env.count("SELECT count(*) FROM trade_in_row").await,
        env.count("SELECT count(*) FROM outbox").await,
        env.count("SELECT count(*) FROM audit_record").await,
    );
    let again = import(&env, bytes).await;
    assert!(again.repeated);
    assert_eq!(again.file, report.file);
    assert_eq!(post(&env).await, (0, 0));
    let after = (
        balance(&env, &account).await,
        env.count("SELECT count(*) FROM transfer").await,
        env.count("SELECT count(*) FROM trade_in").await,
        env.count("SELECT count(*) FROM trade_in_file").await,
        env.count("SELECT count(*) FROM trade_in_row").await,
        env.count("SELECT count(*) FROM outbox").await,
        env.count("SELECT count(*) FROM audit_record").await,
    );
    assert_eq!(after, before);
    assert_whole(&env).await;
}
both_backends!(
    fixture_file,
    the_fixture_posts_its_good_rows_once_and_refuses_each_bad_one
);

/// What the dialect accepts, and each row's own refusal: a UTF-8 byte-order mark, CRLF and LF
/// line ends mixed, a trailing blank line, a quoted comma, and a quoted line break (the file
/// reads on, the line numbers after it stay right; the break is a control character in that
/// row's model); formula-looking models are accepted and kept as written. A field longer than
/// `FIELD_MAX_BYTES`, a control character, a NUL byte, more decimals than JPY has, a
/// valuation in another currency than the account's each refuse their row alone. In the
/// rejects file every formula-looking cell starts with `'`. A trade-in id that a row refused
/// for its own field named first is not a repeat of that row.
async fn the_dialect_accepts_what_it_documents_and_refuses_rows_alone<S: Store>(env: TestApp<S>) {
    let usd = open_account(&env, "US", "USD").await;
    let jpy = open_account(&env, "JP", "JPY").await;
    let long = "m".repeat(tender::domain::FIELD_MAX_BYTES + 1);
    let mut text = format!("\u{feff}{HEADER}\r\n");
    let lines = [
        // 2: CRLF.
        format!(
            "{}\r\n",
            line("TI-1", &usd, "iPhone 13", &serial(1), "215.00")
        ),
        // 3-4: a quoted line break.
        format!(
            "{}\n",
            line(
                "TI-2",
                &usd,
                "\"Galaxy S21, 5G\nrefurb\"",
                &serial(2),
                "99.50"
            )
        ),
        // 5: a quoted comma, LF.
        format!(
            "{}\n",
            line("TI-3", &usd, "\"Pixel 7, 128GB\"", &serial(3), "120.00")
        ),
        // 6-8: formula-looking models, accepted as written.
        format!("{}\r\n", line("TI-4", &usd, "=1+2", &serial(4), "10.00")),
        format!("{}\n", line("TI-5", &usd, "@SUM(A1)", &serial(5), "20.00")),
        format!(
            "{}\r\n",
            line("TI-6", &usd, "+44 edition", &serial(6), "30.00")
        ),
        // 9: a field over its length.
        format!("{}\n", line("TI-7", &usd, &long, &serial(7), "1.00")),
        // 10: a control character.
        format!(
            "{}\n",
            line("TI-8", &usd, "iPhone\u{7}13", &serial(8), "1.00")
        ),
        // 11: a NUL byte.
        format!(
            "{}\n",
            line("TI-9", &usd, "iPhone\u{0}13", &serial(9), "1.00")
        ),
        // 12: 1.5 JPY.
        format!(
            "TI-10,{jpy},{WAREHOUSE},Xperia 1,{},good,1.5,JPY,{ASSESSED}\n",
            serial(10)
        ),
        // 13: EUR for a USD account.
        format!(
            "TI-11,{usd},{WAREHOUSE},Xperia 5,{},good,12.50,EUR,{ASSESSED}\n",
            serial(11)
        ),
        // 14-15: formula-looking models in refused rows.
        format!(
            "{}\n",
            line(
                "TI-12",
                &usd,
                "\"=HYPERLINK(\"\"x\"\")\"",
                &serial(12),
                "$5"
            )
        ),
        format!(
            "TI-13,{usd},{WAREHOUSE},-1+2,{},good,5.00,USD,01/03/2026\r\n",
            serial(13)
        ),
        // 16-17: a trade-in id a refused row named first is not a repeat of it.
        format!("{}\n", line("TI-15", &usd, "Pixel 8", &serial(15), "1.2.3")),
        format!("{}\n", line("TI-15", &usd, "Pixel 8", &serial(15), "40.00")),
        // 18: a good JPY row; then a trailing blank line.
        format!(
            "TI-14,{jpy},{WAREHOUSE},Xperia 10,{},good,1500,JPY,{ASSESSED}\r\n\r\n",
            serial(14)
        ),
    ];
    for l in &lines {
        text.push_str(l);
    }
    let report = import(&env, text).await;
    assert_eq!(report.file.state, FileState::Imported, "{report:?}");
    let rows = results(&env, report.file.file_id).await;
    use RowOutcome::{Accepted, Rejected};
    assert_eq!(
        outcomes(&rows),
        [
            (2, Accepted, None),
            (3, Rejected, Some("tradein.control_character")),
            (5, Accepted, None),
            (6, Accepted, None),
            (7, Accepted, None),
            (8, Accepted, None),
            (9, Rejected, Some("tradein.field_too_long")),
            (10, Rejected, Some("tradein.control_character")),
            (11, Rejected, Some("tradein.control_character")),
            (12, Rejected, Some("money.too_precise")),
            (13, Rejected, Some("tradein.currency_mismatch")),
            (14, Rejected, Some("money.malformed")),
            (15, Rejected, Some("tradein.bad_time")),
            (16, Rejected, Some("money.malformed")),
            (17, Accepted, None),
            (18, Accepted, None),
        ]
    );
    for (line, field) in [(3, "device_model"), (9, "device_model"), (12, "value")] {
        let reason = rows.iter().find(|r| r.row == line).unwrap().reason.clone();
        assert!(
            reason
                .as_deref()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "line {line}: {reason:?}"
        );
    }
    assert_eq!(
        report.file.rows,
        RowCounts {
            total: 16,
            accepted: 7,
            unchanged: 0,
            revalued: 0,
            rejected: 9,
        }
    );
    assert_eq!(post(&env).await, (7, 0));
    // 215 + 120 + 10 + 20 + 30 + 40.
    assert_eq!(balance(&env, &usd).await, cents("435.00"));
    assert_eq!(balance(&env, &jpy).await, 1_500);
    assert_eq!(transfers(&env, TransferKind::TradeIn).await, 7);
    assert_eq!(
        by_ref(&env, "TI-3").await.device_model.as_deref(),
        Some("Pixel 7, 128GB")
    );
    assert_eq!(
        by_ref(&env, "TI-4").await.device_model.as_deref(),
        Some("=1+2")
    );
    assert_eq!(
        by_ref(&env, "TI-5").await.device_model.as_deref(),
        Some("@SUM(A1)")
    );

    let (_, refused) = rejects(&env, report.file.file_id).await;
    let of = |line: &str| refused.iter().find(|r| r[0] == line).unwrap();
    assert_eq!(of("3")[5], "Galaxy S21, 5G\nrefurb", "the row as sent");
    assert_eq!(of("9")[5], long);
    assert_eq!(of("14")[5], "'=HYPERLINK(\"x\")");
    assert_eq!(of("15")[5], "'-1+2");
    assert_eq!(of("11")[5], "iPhone\u{0}13");
    assert_whole(&env).await;
}
both_backends!(
    dialect,
    the_dialect_accepts_what_it_documents_and_refuses_rows_alone
);

// ---------------------------------------------------------------------------------------------
// Exactly once: one valuation per trade-in id, credited once, revalued by its difference.

/// A trade-in id is recorded once: the same values again are `unchanged` and post nothing;
/// other values are refused as `tradein.conflict` and post nothing, unless the row is marked
/// a revaluation, which posts the difference: up as a credit, down as a claw-back. A
/// claw-back larger than the balance takes the balance and records the rest as owed, on the
/// valuation and on the history line; a later revaluation up first settles what is owed. A
/// device credited under one trade-in id cannot be credited under another; a revaluation may
/// not change the account or the device, and there is no revaluation of what was never
/// valued. A region or a currency other than the account's is the row's refusal.
async fn each_trade_in_is_credited_once_and_revalued_by_its_difference<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let other = open_account(&env, "US", "USD").await;
    let ledger = env.app.services().ledger();
    let first = form("TI-1", &account, IMEI, "100.00");

    let accepted = submit_one(&env, first.clone()).await;
    assert_eq!(
        (accepted.outcome, accepted.code.as_deref()),
        (RowOutcome::Accepted, None)
    );
    let id = accepted.id.unwrap();
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(balance(&env, &account).await, cents("100.00"));

    // The same values: unchanged, nothing posted.
    let unchanged = submit_one(&env, first.clone()).await;
    assert_eq!(
        (unchanged.outcome, unchanged.id),
        (RowOutcome::Unchanged, Some(id))
    );
    let file = import(
        &env,
        csv_file(&[line("TI-1", &account, "iPhone 13", IMEI, "100.00")]),
    )
    .await;
    assert_eq!(file.file.rows.unchanged, 1);
    assert_eq!(post(&env).await, (0, 0));
    assert_eq!(transfers(&env, TransferKind::TradeIn).await, 1);

    // Other values, not a revaluation: a conflict naming the field; nothing changes.
    for (changed, field) in [
        (form("TI-1", &account, IMEI, "120.00"), "value"),
        (
            ValuationForm {
                grade: "fair".into(),
                ..first.clone()
            },
            "grade",
        ),
        (form("TI-1", &other, IMEI, "100.00"), "account_id"),
    ] {
        let conflict = submit_one(&env, changed).await;
        assert_eq!(
            (conflict.outcome, conflict.code.as_deref()),
            (RowOutcome::Rejected, Some("tradein.conflict"))
        );
        assert!(
            conflict.reason.as_deref().unwrap().contains(field),
            "{conflict:?}"
        );
    }
    let kept = show(&env, id).await;
    assert_eq!((kept.value.minor(), kept.revision), (cents("100.00"), 1));
    assert_eq!(post(&env).await, (0, 0));
    assert_eq!(balance(&env, &account).await, cents("100.00"));

    // What a revaluation may not change, and what it cannot revalue.
    let moved = submit_one(&env, revaluation(form("TI-1", &other, IMEI, "150.00"))).await;
    assert_eq!(moved.code.as_deref(), Some("tradein.revaluation_conflict"));
    let swapped = submit_one(
        &env,
        revaluation(form("TI-1", &account, &serial(1), "150.00")),
    )
    .await;
    assert_eq!(
        swapped.code.as_deref(),
        Some("tradein.revaluation_conflict")
    );
    let nothing = submit_one(
        &env,
        revaluation(form("TI-404", &account, &serial(2), "1.00")),
    )
    .await;
    assert_eq!(nothing.code.as_deref(), Some("tradein.nothing_to_revalue"));

    // Up: the difference is credited.
    let up = submit_one(&env, revaluation(form("TI-1", &account, IMEI, "150.00"))).await;
    assert_eq!((up.outcome, up.id), (RowOutcome::Revalued, Some(id)));
    assert_eq!(show(&env, id).await.state, TradeInState::Queued);
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(balance(&env, &account).await, cents("150.00"));
    assert_eq!(transfers(&env, TransferKind::TradeIn).await, 2);
    let history = ledger.history(&account, None, PageRows::MAX).await.unwrap();
    assert_eq!(
        (history[0].kind, history[0].amount.minor()),
        (TransferKind::TradeIn, cents("50.00"))
    );
    assert_eq!(history[0].reference.as_deref(), Some("TI-1"));
    let note = history[0]
        .trade_in
        .clone()
        .expect("a trade-in line shows its device");
    assert_eq!(note.device_model.as_deref(), Some("iPhone 13"));
    assert_eq!(note.device_last4.as_deref(), Some("7518"));
    assert_eq!(note.owed.minor(), 0);

    // Down, from a file whose header names the columns in its own order: the difference is
    // taken back.
    let down = import(
        &env,
        format!(
            "revaluation,value,trade_in_id,account_id,warehouse_id,device_model,device_id,grade,\
             currency,assessed_at,region\n\
             true,130.00,TI-1,{account},{WAREHOUSE},iPhone 13,{IMEI},good,USD,{ASSESSED},US\n"
        ),
    )
    .await;
    assert_eq!((down.file.rows.revalued, down.file.rows.total), (1, 1));
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(balance(&env, &account).await, cents("130.00"));
    assert_eq!(transfers(&env, TransferKind::Clawback).await, 1);
    let valued = show(&env, id).await;
    assert_eq!(
        (valued.credited_minor, valued.owed_minor, valued.revision),
        (cents("130.00"), 0, 3)
    );

    // Down by more than the balance: the balance is taken, the rest owed.
    ledger
        .spend(
            &SpendForm {
                account: account.clone(),
                amount: "120.00".into(),
                currency: "USD".into(),
                order: "order-1".into(),
                service: "app-store".into(),
                effective_at: None,
            },
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(balance(&env, &account).await, cents("10.00"));
    submit_one(&env, revaluation(form("TI-1", &account, IMEI, "40.00"))).await;
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(balance(&env, &account).await, 0);
    let owing = show(&env, id).await;
    assert_eq!(
        (owing.state, owing.credited_minor, owing.owed_minor),
        (TradeInState::Posted, cents("120.00"), cents("80.00"))
    );
    let history = ledger.history(&account, None, PageRows::MAX).await.unwrap();
    assert_eq!(
        (history[0].kind, history[0].amount.minor()),
        (TransferKind::Clawback, -cents("10.00"))
    );
    assert_eq!(
        history[0].trade_in.as_ref().unwrap().owed.minor(),
        cents("80.00")
    );

    // Up again: what is owed is settled first, and only the rest is credited.
    submit_one(&env, revaluation(form("TI-1", &account, IMEI, "100.00"))).await;
    let transfers_before = env.count("SELECT count(*) FROM transfer").await;
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(
        env.count("SELECT count(*) FROM transfer").await,
        transfers_before
    );
    assert_eq!(balance(&env, &account).await, 0);
    let settling = show(&env, id).await;
    assert_eq!(
        (settling.credited_minor, settling.owed_minor),
        (cents("120.00"), cents("20.00"))
    );
    submit_one(&env, revaluation(form("TI-1", &account, IMEI, "150.00"))).await;
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(balance(&env, &account).await, cents("30.00"));
    let settled = show(&env, id).await;
    assert_eq!(
        (
            settled.credited_minor,
            settled.owed_minor,
            settled.value.minor()
        ),
        (cents("150.00"), 0, cents("150.00"))
    );
    // Each revision posted at most once.
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM trade_in_posting WHERE trade_in_pk = {id}"
        ))
        .await,
        5
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(DISTINCT revision) FROM trade_in_posting WHERE trade_in_pk = {id}"
        ))
        .await,
        5
    );

    // The device is taken: not again under another trade-in id, in either case of a serial.
    let taken = submit_one(&env, form("TI-2", &account, IMEI, "100.00")).await;
    assert_eq!(taken.code.as_deref(), Some("tradein.device_taken"));
    assert!(taken.reason.as_deref().unwrap().contains("TI-1"));
    submit_one(&env, form("TI-3", &other, "c02xg0fdh7jy", "10.00")).await;
    let upper = submit_one(&env, form("TI-4", &other, "C02XG0FDH7JY", "10.00")).await;
    assert_eq!(upper.code.as_deref(), Some("tradein.device_taken"));

    // Region and currency are the account's, or the row is refused.
    let region = submit_one(
        &env,
        ValuationForm {
            region: "GB".into(),
            ..form("TI-5", &account, &serial(5), "10.00")
        },
    )
    .await;
    assert_eq!(region.code.as_deref(), Some("tradein.region_mismatch"));
    let same_region = submit_one(
        &env,
        ValuationForm {
            region: "US".into(),
            ..form("TI-6", &account, &serial(6), "10.00")
        },
    )
    .await;
    assert_eq!(same_region.outcome, RowOutcome::Accepted);
    let currency = submit_one(
        &env,
        ValuationForm {
            currency: "EUR".into(),
            ..form("TI-7", &account, &serial(7), "10.00")
        },
    )
    .await;
    assert_eq!(currency.code.as_deref(), Some("tradein.currency_mismatch"));
    let nobody = submit_one(&env, form("TI-8", "999", &serial(8), "10.00")).await;
    assert_eq!(nobody.code.as_deref(), Some("account.not_found"));
    assert_eq!(post(&env).await, (2, 0));
    assert_eq!(balance(&env, &account).await, cents("40.00"));
    assert_eq!(balance(&env, &other).await, cents("10.00"));
    assert_whole(&env).await;
}
both_backends!(
    exactly_once,
    each_trade_in_is_credited_once_and_revalued_by_its_difference
);

/// A revaluation to zero takes back the whole credit; a claw-back when the balance is empty
/// moves nothing and records it all as owed, with no transfer.
async fn a_revaluation_to_zero_takes_back_all_or_records_it_owed<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let ledger = env.app.services().ledger();
    submit_one(&env, form("TI-1", &account, &serial(1), "25.00")).await;
    submit_one(&env, form("TI-2", &account, &serial(2), "75.00")).await;
    assert_eq!(post(&env).await, (2, 0));
    submit_one(&env, revaluation(form("TI-1", &account, &serial(1), "0"))).await;
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(balance(&env, &account).await, cents("75.00"));
    let zero = by_ref(&env, "TI-1").await;
    assert_eq!((zero.credited_minor, zero.owed_minor), (0, 0));
    ledger
        .spend(
            &SpendForm {
                account: account.clone(),
                amount: "75.00".into(),
                currency: "USD".into(),
                order: "order-1".into(),
                service: "app-store".into(),
                effective_at: None,
            },
            &actor(),
        )
        .await
        .unwrap();
    let clawbacks = transfers(&env, TransferKind::Clawback).await;
    submit_one(
        &env,
        revaluation(form("TI-2", &account, &serial(2), "0.00")),
    )
    .await;
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(transfers(&env, TransferKind::Clawback).await, clawbacks);
    let owed = by_ref(&env, "TI-2").await;
    assert_eq!(
        (owed.state, owed.credited_minor, owed.owed_minor),
        (TradeInState::Posted, cents("75.00"), cents("75.00"))
    );
    assert_eq!(balance(&env, &account).await, 0);
    assert_whole(&env).await;
}
both_backends!(
    revaluation_to_zero,
    a_revaluation_to_zero_takes_back_all_or_records_it_owed
);

// ---------------------------------------------------------------------------------------------
// Approvals.

/// A credit above its model's price band waits for finance (`held`, for `price_band`), as
/// does one in a frozen account; its submitter may not decide it, even under another note;
/// another person's approval posts it once, and approving it again is a no-op answered as a
/// replay. A rejection records the reason and posts nothing; a rejected valuation can be
/// neither approved, rejected again, nor revalued.
async fn a_credit_above_its_band_waits_for_a_second_person<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let trade_ins = env.app.services().trade_ins();
    let band = trade_ins
        .set_band("iPhone  15", "500.00", "USD", &alice())
        .await
        .unwrap();
    assert_eq!(band.model_key, "iphone 15");
    assert_eq!(trade_ins.bands().await.unwrap(), [band]);
    let refused = trade_ins
        .set_band("iPhone 15", "-1.00", "USD", &alice())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "amount.not_positive");
    let model = |f: ValuationForm, model: &str| ValuationForm {
        device_model: model.into(),
        ..f
    };
    let reports = submit(
        &env,
        &[
            model(form("TI-1", &account, &serial(1), "520.00"), "IPHONE 15"),
            model(form("TI-2", &account, &serial(2), "500.00"), "iPhone 15"),
            model(form("TI-3", &account, &serial(3), "600.00"), "iPhone 15"),
            model(
                form("TI-4", &account, &serial(4), "900.00"),
                "iPhone 15 Pro",
            ),
        ],
    )
    .await;
    let ids: Vec<i64> = reports.iter().map(|r| r.id.unwrap()).collect();
    assert_eq!(post(&env).await, (2, 2));
    let held = show(&env, ids[0]).await;
    assert_eq!(
        (held.state, held.held_for, held.credited_minor),
        (TradeInState::Held, Some(HeldFor::PriceBand), 0)
    );
    assert_eq!(
        balance(&env, &account).await,
        cents("500.00") + cents("900.00")
    );
    let listed = trade_ins
        .list(Some(TradeInState::Held), None, PageRows::MAX)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[2], ids[0]]
    );
    // Another posting run leaves it waiting.
    assert_eq!(post(&env).await, (0, 0));

    // Its submitter may not decide it, whatever note they add.
    for submitter in [actor(), Actor::cli("test", Some("TICKET-9")).unwrap()] {
        let approve = trade_ins.approve(ids[0], &submitter).await.unwrap_err();
        assert_eq!(approve.code(), "tradein.self_approval");
        let reject = trade_ins.reject(ids[0], "overvalued", &submitter).await;
        assert_eq!(reject.unwrap_err().code(), "tradein.self_approval");
    }
    assert_eq!(show(&env, ids[0]).await.state, TradeInState::Held);

    // Another person's approval posts it.
    let credits = transfers(&env, TransferKind::TradeIn).await;
    let approved = trade_ins.approve(ids[0], &alice()).await.unwrap();
    assert!(!approved.replayed);
    let Some(Posted::Posted {
        transfer_id: Some(_),
        amount,
        owed,
    }) = approved.posted
    else {
        panic!("the approval posts the credit: {approved:?}");
    };
    assert_eq!((amount.minor(), owed.minor()), (cents("520.00"), 0));
    assert_eq!(balance(&env, &account).await, cents("1920.00"));
    let decided = show(&env, ids[0]).await;
    assert_eq!(
        (
            decided.state,
            decided.held_for,
            decided.decided_by.as_deref()
        ),
        (TradeInState::Posted, None, Some("cli:alice"))
    );
    // Again, by anyone: a replay, nothing new.
    for again in [alice(), bob()] {
        let replay = trade_ins.approve(ids[0], &again).await.unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.posted, None);
    }
    assert_eq!(transfers(&env, TransferKind::TradeIn).await, credits + 1);
    assert_eq!(balance(&env, &account).await, cents("1920.00"));

    // A rejection: the reason kept, nothing posted, and final.
    let rejected = trade_ins
        .reject(ids[2], "overvalued", &bob())
        .await
        .unwrap();
    assert_eq!(
        (
            rejected.state,
            rejected.reason.as_deref(),
            rejected.decided_by.as_deref()
        ),
        (TradeInState::Rejected, Some("overvalued"), Some("cli:bob"))
    );
    assert_eq!(rejected.credited_minor, 0);
    assert_eq!(
        trade_ins
            .approve(ids[2], &alice())
            .await
            .unwrap_err()
            .code(),
        "tradein.was_rejected"
    );
    assert_eq!(
        trade_ins
            .reject(ids[2], "again", &alice())
            .await
            .unwrap_err()
            .code(),
        "tradein.was_rejected"
    );
    let revalued = submit_one(
        &env,
        revaluation(model(
            form("TI-3", &account, &serial(3), "450.00"),
            "iPhone 15",
        )),
    )
    .await;
    assert_eq!(revalued.code.as_deref(), Some("tradein.was_rejected"));
    assert_eq!(
        trade_ins
            .reject(ids[1], "Bad Reason!", &bob())
            .await
            .unwrap_err()
            .code(),
        "ledger.bad_name"
    );
    assert_eq!(post(&env).await, (0, 0));
    assert_eq!(balance(&env, &account).await, cents("1920.00"));

    // What was never held is not approved, nor what does not exist.
    assert_eq!(
        trade_ins
            .approve(ids[1], &alice())
            .await
            .unwrap_err()
            .code(),
        "tradein.not_held"
    );
    assert_eq!(
        trade_ins.approve(9_999, &alice()).await.unwrap_err().code(),
        "tradein.not_found"
    );

    // A frozen account's credit waits too, and is approved once the account is unfrozen.
    let ledger = env.app.services().ledger();
    ledger
        .freeze(&account, true, "fraud-check", &alice())
        .await
        .unwrap();
    let frozen = submit_one(&env, form("TI-5", &account, &serial(5), "10.00")).await;
    assert_eq!(post(&env).await, (0, 1));
    let waiting = show(&env, frozen.id.unwrap()).await;
    assert_eq!(waiting.held_for, Some(HeldFor::AccountFrozen));
    assert_eq!(
        trade_ins
            .approve(waiting.id, &alice())
            .await
            .unwrap_err()
            .code(),
        "account.frozen"
    );
    ledger
        .freeze(&account, false, "cleared", &alice())
        .await
        .unwrap();
    assert!(
        !trade_ins
            .approve(waiting.id, &alice())
            .await
            .unwrap()
            .replayed
    );
    assert_eq!(balance(&env, &account).await, cents("1930.00"));
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'tradein.held'")
            .await,
        3
    );
    assert_whole(&env).await;
}
both_backends!(
    price_band,
    a_credit_above_its_band_waits_for_a_second_person
);

/// Each warehouse's credits of a business day are posted up to the daily amount (reaching it
/// exactly is allowed); the credit that would pass it waits for finance (`daily_amount`),
/// another warehouse's credits do not count, and another person's approval posts it.
async fn the_daily_amount_holds_the_credit_that_would_pass_it<S: Store>(mut env: TestApp<S>) {
    let settings = tender::config::Settings {
        tradein_daily_amount: TradeInDailyAmount::parse("1000").unwrap(),
        ..env.db.settings()
    };
    env.app = env.reopen(&settings).await;
    let account = open_account(&env, "US", "USD").await;
    let elsewhere = |f: ValuationForm| ValuationForm {
        warehouse_id: "WH-WEST".into(),
        ..f
    };
    let reports = submit(
        &env,
        &[
            form("TI-1", &account, &serial(1), "400.00"),
            form("TI-2", &account, &serial(2), "500.00"),
            form("TI-3", &account, &serial(3), "100.00"),
            form("TI-4", &account, &serial(4), "0.01"),
            elsewhere(form("TI-5", &account, &serial(5), "900.00")),
        ],
    )
    .await;
    assert!(reports.iter().all(|r| r.outcome == RowOutcome::Accepted));
    assert_eq!(post(&env).await, (4, 1));
    let held = show(&env, reports[3].id.unwrap()).await;
    assert_eq!(
        (held.state, held.held_for),
        (TradeInState::Held, Some(HeldFor::DailyAmount))
    );
    assert_eq!(balance(&env, &account).await, cents("1900.00"));
    // It waits while the day lasts, however often the job runs.
    assert_eq!(post(&env).await, (0, 0));
    let trade_ins = env.app.services().trade_ins();
    assert_eq!(
        trade_ins
            .approve(held.id, &actor())
            .await
            .unwrap_err()
            .code(),
        "tradein.self_approval"
    );
    let approved = trade_ins.approve(held.id, &bob()).await.unwrap();
    assert!(!approved.replayed);
    assert_eq!(balance(&env, &account).await, cents("1900.01"));
    assert!(trade_ins.approve(held.id, &alice()).await.unwrap().replayed);
    assert_eq!(transfers(&env, TransferKind::TradeIn).await, 5);
    assert_whole(&env).await;
}
both_backends!(
    daily_amount,
    the_daily_amount_holds_the_credit_that_would_pass_it
);

// ---------------------------------------------------------------------------------------------
// The API's rows and uploads.

/// `submit` takes 1 to 100 valuations: none or 101 is `tradein.too_many_rows` and writes
/// nothing; each row gets its own result, a trade-in id or a device an earlier row of the
/// request named is refused naming that row, and the good rows are recorded and posted. The
/// same request again is all `unchanged` and posts nothing.
async fn submit_takes_one_to_a_hundred_rows_each_with_its_result<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let trade_ins = env.app.services().trade_ins();
    let audit = env.count("SELECT count(*) FROM audit_record").await;
    let many: Vec<ValuationForm> = (0..=ROWS_PER_REQUEST_MAX as u64)
        .map(|n| form(&format!("TI-{n}"), &account, &serial(n), "1.00"))
        .collect();
    for forms in [&many[..0], &many[..]] {
        let error = trade_ins.submit(forms, &actor()).await.unwrap_err();
        assert_eq!(error.code(), "tradein.too_many_rows");
    }
    assert_eq!(env.count("SELECT count(*) FROM trade_in").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM audit_record").await, audit);

    let full = submit(&env, &many[..ROWS_PER_REQUEST_MAX]).await;
    assert_eq!(full.len(), ROWS_PER_REQUEST_MAX);
    assert!(full.iter().all(|r| r.outcome == RowOutcome::Accepted));
    assert_eq!(
        full.iter().map(|r| r.row).collect::<Vec<_>>(),
        (1..=i64::try_from(ROWS_PER_REQUEST_MAX).unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(post(&env).await, (100, 0));
    assert_eq!(balance(&env, &account).await, cents("100.00"));

    let mixed = submit(
        &env,
        &[
            form("TI-A", &account, "a0b1c2d3", "5.00"),
            form("TI-A", &account, &serial(900), "6.00"),
            form("TI-B", &account, "A0B1C2D3", "7.00"),
            form("TI-C", &account, BAD_IMEI, "8.00"),
            form("TI-D", &account, &serial(901), "9.00"),
            form("TI-0", &account, &serial(0), "1.00"),
        ],
    )
    .await;
    use RowOutcome::{Accepted, Rejected, Unchanged};
    assert_eq!(
        outcomes(&mixed),
        [
            (1, Accepted, None),
            (2, Rejected, Some("tradein.repeated_in_file")),
            (3, Rejected, Some("tradein.device_repeated_in_file")),
            (4, Rejected, Some("tradein.bad_imei")),
            (5, Accepted, None),
            (6, Unchanged, None),
        ]
    );
    assert_eq!(
        mixed[1].reason.as_deref(),
        Some("the trade-in id repeats row 1 of this request")
    );
    assert_eq!(
        mixed[2].reason.as_deref(),
        Some("the device repeats row 1 of this request")
    );
    assert_eq!(mixed[1].trade_in_id.as_deref(), Some("TI-A"));
    assert_eq!((mixed[1].id, mixed[5].id), (None, full[0].id));
    assert_eq!(post(&env).await, (2, 0));
    assert_eq!(balance(&env, &account).await, cents("114.00"));

    let again = submit(&env, &many[..ROWS_PER_REQUEST_MAX]).await;
    assert!(again.iter().all(|r| r.outcome == RowOutcome::Unchanged));
    let outbox = env.count("SELECT count(*) FROM outbox").await;
    assert_eq!(post(&env).await, (0, 0));
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, outbox);
    assert_eq!(transfers(&env, TransferKind::TradeIn).await, 102);
    assert_whole(&env).await;
}
both_backends!(
    submit_rows,
    submit_takes_one_to_a_hundred_rows_each_with_its_result
);

/// An upload through the API streams in pieces (cut anywhere, even inside a character), is
/// stored, and its import job reads it as the CLI reads a file; running the job again changes
/// nothing. The same bytes uploaded again are answered with the first upload's report; an
/// upload whose stream breaks off keeps nothing.
async fn an_api_upload_is_stored_then_imported_once<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let trade_ins = env.app.services().trade_ins();
    let body = csv_file(&[
        line("TI-1", &account, "Café phone", &serial(1), "10.00"),
        line("TI-2", &account, "iPhone 13", BAD_IMEI, "20.00"),
        line("TI-3", &account, "iPhone 13", &serial(3), "30.00"),
    ]);
    let cut = body.iter().position(|&b| b == 0xc3).unwrap() + 1;
    let pieces = |body: &[u8]| {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
            [&body[..7], &body[7..cut], &body[cut..]]
                .into_iter()
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
        futures::stream::iter(chunks)
    };
    let received = trade_ins
        .receive(pieces(&body), &actor())
        .await
        .unwrap()
        .unwrap();
    assert!(!received.repeated);
    assert_eq!(received.file.state, FileState::Received);
    assert_eq!(received.file.bytes, i64::try_from(body.len()).unwrap());
    let file_id = received.file.file_id;
    assert_eq!(
        trade_ins.file(file_id).await.unwrap().file.state,
        FileState::Received
    );
    // Nothing is recorded until the import job runs.
    assert_eq!(env.count("SELECT count(*) FROM trade_in").await, 0);

    let imported = trade_ins.import_received(file_id, &job()).await.unwrap();
    assert_eq!(imported.file.state, FileState::Imported);
    assert_eq!(
        (imported.file.rows.accepted, imported.file.rows.rejected),
        (2, 1)
    );
    assert_eq!(
        by_ref(&env, "TI-1").await.device_model.as_deref(),
        Some("Café phone")
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM trade_in_upload WHERE file_id = {file_id}"
        ))
        .await,
        0,
        "the body is gone once imported"
    );
    let rerun = trade_ins.import_received(file_id, &job()).await.unwrap();
    assert_eq!(rerun.file, imported.file);

    let repeat = trade_ins
        .receive(pieces(&body), &actor())
        .await
        .unwrap()
        .unwrap();
    assert!(repeat.repeated);
    assert_eq!(repeat.file.file_id, file_id);
    // The same bytes through the CLI: the same answer.
    let via_cli = import(&env, body.clone()).await;
    assert!(via_cli.repeated);
    assert_eq!(via_cli.file.file_id, file_id);

    let broken = futures::stream::iter(vec![
        Ok(bytes::Bytes::from_static(b"trade_in_id,")),
        Err("the connection dropped"),
    ]);
    let files = env.count("SELECT count(*) FROM trade_in_file").await;
    let dropped = trade_ins.receive(broken, &actor()).await.unwrap();
    assert_eq!(dropped.unwrap_err(), "the connection dropped");
    assert_eq!(env.count("SELECT count(*) FROM trade_in_file").await, files);
    assert_eq!(env.count("SELECT count(*) FROM trade_in_upload").await, 0);

    assert_eq!(post(&env).await, (2, 0));
    assert_eq!(balance(&env, &account).await, cents("40.00"));
    assert_eq!(
        trade_ins.file(9_999).await.unwrap_err().code(),
        "tradein.file_not_found"
    );
    assert_whole(&env).await;
}
both_backends!(api_upload, an_api_upload_is_stored_then_imported_once);

/// Uploads, their staged rows and rejects are kept for 90 days, then purged; the valuations
/// they recorded stay, credited as before.
async fn uploads_are_purged_after_their_retention_and_valuations_stay<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let trade_ins = env.app.services().trade_ins();
    let report = import(
        &env,
        csv_file(&[
            line("TI-1", &account, "iPhone 13", &serial(1), "10.00"),
            line("TI-2", &account, "iPhone 13", BAD_IMEI, "10.00"),
        ]),
    )
    .await;
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(trade_ins.purge_files().await.unwrap(), 0);
    env.clock.advance(chrono::TimeDelta::days(91));
    assert_eq!(trade_ins.purge_files().await.unwrap(), 1);
    assert_eq!(env.count("SELECT count(*) FROM trade_in_file").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM trade_in_row").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM trade_in_file_sha").await, 0);
    assert_eq!(
        trade_ins
            .file(report.file.file_id)
            .await
            .unwrap_err()
            .code(),
        "tradein.file_not_found"
    );
    let kept = by_ref(&env, "TI-1").await;
    assert_eq!((kept.state, kept.file_id), (TradeInState::Posted, None));
    assert_eq!(balance(&env, &account).await, cents("10.00"));
    assert_whole(&env).await;
}
both_backends!(
    purge,
    uploads_are_purged_after_their_retention_and_valuations_stay
);

// ---------------------------------------------------------------------------------------------
// Erasure.

/// `account erase` blanks the device model and id of every valuation and staged row of the
/// account (refused rows too, and the model in a staged row's cells), and nothing of another
/// account's; the history still shows each trade-in line, without its device; the rejects file
/// no longer holds it; no audit record ever held it. The device's digest survives: it is still
/// taken, and the same valuation again is still `unchanged`.
async fn erasure_blanks_the_devices_and_keeps_the_books<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let other = open_account(&env, "US", "USD").await;
    let ledger = env.app.services().ledger();
    let model = "Private Phone X1";
    let device = "QX7PRIVATE9";
    let report = import(
        &env,
        csv_file(&[
            line("TI-1", &account, model, device, "50.00"),
            line("TI-2", &account, model, BAD_IMEI, "10.00"),
            line("TI-3", &other, model, &serial(3), "20.00"),
        ]),
    )
    .await;
    assert_eq!(report.file.rows.accepted, 2);
    submit_one(
        &env,
        ValuationForm {
            device_model: model.into(),
            ..form("TI-4", &account, &serial(4), "5.00")
        },
    )
    .await;
    assert_eq!(post(&env).await, (3, 0));
    let history = ledger.history(&account, None, PageRows::MAX).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[1]
            .trade_in
            .as_ref()
            .unwrap()
            .device_last4
            .as_deref(),
        Some("ATE9")
    );

    ledger.erase(&account, &actor()).await.unwrap();
    let id = account.parse::<i64>().unwrap();
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM trade_in WHERE account_id = {id} \
             AND (device_model IS NOT NULL OR device_id IS NOT NULL)"
        ))
        .await,
        0
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM trade_in_row WHERE account_id = {id} AND device IS NOT NULL"
        ))
        .await,
        0
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM trade_in_row WHERE account_id = {id} \
             AND (cells LIKE '%{model}%' OR cells LIKE '%{device}%' OR cells LIKE '%{BAD_IMEI}%')"
        ))
        .await,
        0,
        "no staged row's cells keep the model or the device"
    );
    // The other account keeps its own.
    let theirs = by_ref(&env, "TI-3").await;
    assert_eq!(theirs.device_model.as_deref(), Some(model));
    assert_eq!(theirs.device_id.as_deref(), Some(serial(3).as_str()));

    let erased = by_ref(&env, "TI-1").await;
    assert_eq!((erased.device_model, erased.device_id), (None, None));
    assert_eq!(
        (erased.state, erased.credited_minor),
        (TradeInState::Posted, cents("50.00"))
    );
    let after = ledger.history(&account, None, PageRows::MAX).await.unwrap();
    assert_eq!(after.len(), 2);
    for (line, was) in after.iter().zip(&history) {
        assert_eq!(
            (line.transfer_id, line.kind, line.amount),
            (was.transfer_id, was.kind, was.amount)
        );
        let note = line.trade_in.as_ref().expect("still a trade-in line");
        assert_eq!(
            (note.device_model.as_deref(), note.device_last4.as_deref()),
            (None, None)
        );
    }
    let (_, refused) = rejects(&env, report.file.file_id).await;
    assert_eq!(refused.len(), 1);
    assert!(
        !refused[0]
            .iter()
            .any(|cell| cell.contains(model) || cell.contains(BAD_IMEI)),
        "{refused:?}"
    );
    for secret in [model, device, BAD_IMEI] {
        assert_eq!(
            env.count(&format!(
                "SELECT count(*) FROM audit_record WHERE details LIKE '%{secret}%' \
                 OR subject LIKE '%{secret}%'"
            ))
            .await,
            0
        );
    }

    // The digest still knows the device.
    let taken = submit_one(&env, form("TI-9", &other, device, "50.00")).await;
    assert_eq!(taken.code.as_deref(), Some("tradein.device_taken"));
    let same = submit_one(
        &env,
        ValuationForm {
            device_model: model.into(),
            ..form("TI-1", &account, device, "50.00")
        },
    )
    .await;
    assert_eq!(same.outcome, RowOutcome::Unchanged);
    assert_eq!(post(&env).await, (0, 0));
    assert_eq!(balance(&env, &account).await, cents("55.00"));
    assert_whole(&env).await;
}
both_backends!(erasure, erasure_blanks_the_devices_and_keeps_the_books);

/// A valuation is at most what one transfer may move (50,000.00 USD): above it the row is
/// refused as `amount.too_large`, whatever the daily amount, so the posting job never meets a
/// credit (or, after revaluations, a claw-back) it cannot post, and the valuations queued
/// beside it are posted.
async fn a_valuation_above_the_transfer_ceiling_is_refused_and_blocks_nothing<S: Store>(
    mut env: TestApp<S>,
) {
    let settings = tender::config::Settings {
        tradein_daily_amount: TradeInDailyAmount::parse("1000000").unwrap(),
        ..env.db.settings()
    };
    env.app = env.reopen(&settings).await;
    let account = open_account(&env, "US", "USD").await;
    let reports = submit(
        &env,
        &[
            form("TI-1", &account, &serial(1), "10.00"),
            form("TI-2", &account, &serial(2), "50000.01"),
            form("TI-3", &account, &serial(3), "50000.00"),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&reports),
        [
            (1, RowOutcome::Accepted, None),
            (2, RowOutcome::Rejected, Some("amount.too_large")),
            (3, RowOutcome::Accepted, None),
        ]
    );
    let up = submit_one(
        &env,
        revaluation(form("TI-3", &account, &serial(3), "50000.01")),
    )
    .await;
    assert_eq!(up.code.as_deref(), Some("amount.too_large"));
    assert_eq!(post(&env).await, (2, 0));
    assert_eq!(balance(&env, &account).await, cents("50010.00"));
    // Down to zero: the whole credit is taken back in one transfer.
    submit_one(&env, revaluation(form("TI-3", &account, &serial(3), "0"))).await;
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(balance(&env, &account).await, cents("10.00"));
    assert_whole(&env).await;
}
both_backends!(
    transfer_ceiling,
    a_valuation_above_the_transfer_ceiling_is_refused_and_blocks_nothing
);

/// The same file imported twice at once (a retry while the first import still runs): one
/// import claims the bytes, the other is answered with its report and helps finish it; each
/// row keeps the result it first had, each valuation is recorded and credited once, and the
/// report counts every row as accepted.
async fn the_same_file_imported_twice_at_once_is_applied_once<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let rows: Vec<String> = (0..1_000)
        .map(|n| {
            line(
                &format!("TI-{n}"),
                &account,
                "iPhone 13",
                &serial(n),
                "1.00",
            )
        })
        .collect();
    let bytes = csv_file(&rows);
    let imports = (0..2).map(|_| {
        let app = env.app.clone();
        let bytes = bytes.clone();
        tokio::spawn(async move {
            app.services()
                .trade_ins()
                .import(Cursor::new(bytes), None, &actor())
                .await
                .unwrap()
        })
    });
    let reports: Vec<FileReport> = futures::future::join_all(imports)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(reports.iter().filter(|r| r.repeated).count(), 1);
    assert_eq!(reports[0].file.file_id, reports[1].file.file_id);
    let file_id = reports[0].file.file_id;
    let file = env.app.services().trade_ins().file(file_id).await.unwrap();
    assert_eq!(
        file.file.rows,
        RowCounts {
            total: 1_000,
            accepted: 1_000,
            unchanged: 0,
            revalued: 0,
            rejected: 0,
        }
    );
    assert_eq!(env.count("SELECT count(*) FROM trade_in_file").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM trade_in").await, 1_000);
    assert_eq!(post(&env).await, (1_000, 0));
    assert_eq!(balance(&env, &account).await, cents("1000.00"));
    assert_whole(&env).await;
}
both_backends!(
    concurrent_imports,
    the_same_file_imported_twice_at_once_is_applied_once
);

/// Two people approving one held credit at the same moment post it once: one approval posts
/// it, the other is answered as a replay, and posting runs beside them do not touch it.
async fn concurrent_approvals_post_a_held_credit_once<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    env.app
        .services()
        .trade_ins()
        .set_band("iPhone 13", "100.00", "USD", &alice())
        .await
        .unwrap();
    let held = submit_one(&env, form("TI-1", &account, IMEI, "150.00")).await;
    let id = held.id.unwrap();
    assert_eq!(post(&env).await, (0, 1));
    let racers = [alice(), bob(), alice(), bob()].map(|approver| {
        let app = env.app.clone();
        tokio::spawn(async move {
            let services = app.services();
            let trade_ins = services.trade_ins();
            let job = job();
            let (approved, run) = tokio::join!(
                trade_ins.approve(id, &approver),
                trade_ins.post_queued(&job)
            );
            (approved.unwrap(), run.unwrap())
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(outcomes.iter().filter(|(a, _)| !a.replayed).count(), 1);
    assert!(outcomes.iter().all(|(_, run)| run.posted + run.held == 0));
    assert_eq!(transfers(&env, TransferKind::TradeIn).await, 1);
    assert_eq!(balance(&env, &account).await, cents("150.00"));
    assert_eq!(
        env.count("SELECT count(*) FROM audit_record WHERE action = 'tradein.approved'")
            .await,
        1
    );
    assert_whole(&env).await;
}
both_backends!(
    concurrent_approvals,
    concurrent_approvals_post_a_held_credit_once
);

/// A device finance rejected under one trade-in id may come again under another: the rejection
/// frees it. While a valuation of it stands (queued, held or posted), another id is refused
/// `tradein.device_taken`.
async fn a_rejected_valuation_frees_its_device<S: Store>(env: TestApp<S>) {
    let account = open_account(&env, "US", "USD").await;
    let trade_ins = env.app.services().trade_ins();
    trade_ins
        .set_band("iPhone 13", "300.00", "USD", &alice())
        .await
        .unwrap();
    let first = submit_one(&env, form("TI-1", &account, &serial(1), "500.00")).await;
    assert_eq!(first.outcome, RowOutcome::Accepted);
    assert_eq!(post(&env).await, (0, 1));
    let again = submit_one(&env, form("TI-2", &account, &serial(1), "250.00")).await;
    assert_eq!(again.code.as_deref(), Some("tradein.device_taken"));
    trade_ins
        .reject(first.id.unwrap(), "overvalued", &bob())
        .await
        .unwrap();
    let after = submit_one(&env, form("TI-3", &account, &serial(1), "250.00")).await;
    assert_eq!(after.outcome, RowOutcome::Accepted, "{after:?}");
    assert_eq!(post(&env).await, (1, 0));
    assert_eq!(balance(&env, &account).await, cents("250.00"));
    assert_whole(&env).await;
}

both_backends!(rejected_device, a_rejected_valuation_frees_its_device);
