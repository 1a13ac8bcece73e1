//! The demo: the whole flow on a fresh SQLite database in a new directory, through the same
//! services every command uses, with a summary. It grows with each capability.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use clap::Args;
use zeroize::Zeroizing;

use super::CliError;
use super::cards::{expiry, expiry_law, print_card, transfer};
use super::output::{progress_bars, visible};
use crate::app::{self, App, Launch};
use crate::clock::{AdvancedClock, SharedClock};
use crate::config::Settings;
use crate::domain::{
    AccountId, Actor, Batch, BusinessDate, CardState, Code, PageRows, Serial, TradeInState,
};
use crate::error::Classify;
use crate::formats::printer_file::{self, PrinterFileReader};
use crate::jobs::{Catalog, RunMode};
use crate::keys::{KeyNeeds, KeyPurpose, SealKey};
use crate::service::batches::BatchForm;
use crate::service::cards::{ActivateForm, PosForm, StoreForm, VoidForm};
use crate::service::ledger::{AccountForm, AdjustForm, Adjusted, RefundForm, SpendForm};
use crate::service::redemption::{RedeemError, Redeemed};
use crate::service::settlement::{PaymentForm, SETTLEMENT_GRACE};
use crate::service::trail::VerifyRequest;
use crate::store::Store;

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// The new directory (default: tender-demo-<timestamp>).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Cards in the demo batch (at least 6: it sells a box of five and one more over HTTP).
    #[arg(long, default_value_t = 10_000)]
    cards: u64,
}

/// Cards the demo sells, as one box at one till.
const DEMO_SOLD: u64 = 5;
/// The demo retailer's store in Texas.
const DEMO_STORE: &str = "S-0001";
/// Its store in England, where tender's expiry table has no rule, so the printed expiry stands.
const UK_STORE: &str = "S-0002";
/// Cards in the UK batch: two sold, one left on the shelf.
const UK_CARDS: u64 = 3;
/// The demo retailer's store in Ontario, where gift card funds may not expire.
const ONTARIO_STORE: &str = "S-0003";
/// How far the demo moves its clock to show an expired card: past the UK batch's printed
/// expiry, a day after it was requested. Nothing else can show it honestly: the shortest expiry
/// a batch takes is a day, and the expiry job that would mark the card comes later.
const A_DAY_LATER: Duration = Duration::from_secs(25 * 3_600);
/// The warehouse file the demo imports: good rows and a few bad ones of different kinds.
const TRADE_INS_CSV: &str = include_str!("../../fixtures/tradeins.csv");
/// The idempotency key of the demo's first redemption.
const DEMO_KEY: &str = "demo-redeem-1";

pub(super) async fn run(args: DemoArgs, actor: Actor) -> Result<(), CliError> {
    // The system clock until the demo moves it ahead to show an expired card.
    let clock = AdvancedClock::default();
    let shared: SharedClock = Arc::new(clock.clone());
    let dir = args.dir.unwrap_or_else(|| {
        PathBuf::from(format!(
            "tender-demo-{}",
            shared.now().format("%Y%m%d-%H%M%S")
        ))
    });
    if args.cards <= DEMO_SOLD {
        return Err(CliError::new(
            "demo.too_few_cards",
            format!(
                "the demo sells a box of {DEMO_SOLD} cards and one more over HTTP, so its batch holds at least {}",
                DEMO_SOLD + 1
            ),
        ));
    }
    if dir.exists() {
        return Err(CliError::new(
            "demo.dir_exists",
            format!(
                "{} already exists; the demo starts from a new directory",
                dir.display()
            ),
        ));
    }
    for purpose in [KeyPurpose::Lookup, KeyPurpose::Audit] {
        if std::env::var_os(purpose.env_var()).is_some() {
            return Err(CliError::new(
                "demo.keys_in_environment",
                format!(
                    "unset {} for the demo: it creates its own keys",
                    purpose.env_var()
                ),
            ));
        }
    }
    let started = Instant::now();
    let settings = Settings::in_dir(&dir);
    app::init(&settings, shared.clone(), &actor).await?;
    let first_day = BusinessDate::of(shared.now(), settings.business_time_zone.get())
        .ok_or_else(|| CliError::new("demo.clock", "the system clock is out of range"))?;
    let demo = Demo {
        cards: args.cards,
        actor,
        clock,
        first_day,
    };
    app::launch(&settings, shared, demo).await??;
    println!(
        "demo finished in {:.2} s; everything is in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    println!(
        "try: tender --data-dir {} batch show 1 | attempts --account 5 | history --account 1",
        dir.display()
    );
    Ok(())
}

struct Demo {
    cards: u64,
    actor: Actor,
    clock: AdvancedClock,
    /// The business day the demo started on: the first it settles.
    first_day: BusinessDate,
}

/// The demo's two batches, generated.
struct Batches {
    us: Batch,
    uk: Batch,
    ca: Batch,
}

/// The accounts the demo redeems into, and those it shows refusals on.
struct Accounts {
    alice: AccountId,
    bob: AccountId,
}

impl Launch for Demo {
    type Output = Result<(), CliError>;

    fn needs(&self) -> KeyNeeds {
        KeyNeeds::ALL
    }

    async fn run<S: Store>(self, app: App<S>) -> Result<(), CliError> {
        let services = app.services();
        let retailer = services
            .retailers()
            .add("Demo Books", "2.5", &self.actor)
            .await?;
        println!(
            "1. retailer {} added: {} with {}% commission",
            retailer.id,
            visible(retailer.name.as_str()),
            retailer.commission_bp.percent()
        );
        let us_form = BatchForm {
            retailer: retailer.name.to_string(),
            count: self.cards,
            value: Some("25.00".into()),
            currency: "USD".into(),
            region: "US".into(),
            expires_in_days: Some(5 * 365),
            ..BatchForm::default()
        };
        let uk_form = BatchForm {
            count: UK_CARDS,
            value: Some("20.00".into()),
            currency: "GBP".into(),
            region: "GB".into(),
            expires_in_days: Some(1),
            ..us_form.clone()
        };
        let ca_form = BatchForm {
            count: 1,
            value: Some("30.00".into()),
            currency: "CAD".into(),
            region: "CA".into(),
            ..uk_form.clone()
        };
        let us = services.batches().request(&us_form, &self.actor).await?;
        let uk = services.batches().request(&uk_form, &self.actor).await?;
        let ca = services.batches().request(&ca_form, &self.actor).await?;
        println!(
            "2. batch {} requested: {} cards of {} for the US storefront, printed expiry in 5 years; batch {}: {} cards of {} for the UK one and batch {}: {} card of {} for the Canadian one, printed expiry tomorrow",
            us.id, us.count, us.value, uk.id, uk.count, uk.value, ca.id, ca.count, ca.value
        );
        let generation = Instant::now();
        Catalog::load(None)?
            .runtime(&app, progress_bars())
            .run(RunMode::Drain)
            .await?;
        let batches = Batches {
            us: services.batches().show(us.id).await?,
            uk: services.batches().show(uk.id).await?,
            ca: services.batches().show(ca.id).await?,
        };
        println!(
            "3. job runner drained in {:.2} s: {}",
            generation.elapsed().as_secs_f64(),
            [&batches.us, &batches.uk, &batches.ca]
                .iter()
                .map(|b| format!(
                    "batch {} is {}, {} cards, {} collisions redrawn",
                    b.id,
                    b.state.as_str(),
                    b.generated,
                    b.collisions
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let mut files = Vec::new();
        for batch in [&batches.us, &batches.uk, &batches.ca] {
            let file = app
                .settings()
                .export_dir()
                .join(printer_file::file_name(batch.id));
            let check = services.printer_check().verify(&file, &self.actor).await?;
            println!(
                "{} printer file {} verified: {} codes match their digests (MAC {})",
                if files.is_empty() { "4." } else { "  " },
                file.display(),
                check.rows,
                &check.mac[..16]
            );
            files.push(file);
        }
        self.point_of_sale(&app, &batches, retailer.name.as_str())
            .await?;
        let accounts = self.money_moves(&app).await?;
        let codes = Codes::read(&files, &self.codes_needed(&batches))?;
        self.redemptions(&app, &batches, &accounts, &codes).await?;
        self.refusals(&app, &batches, &accounts, &codes).await?;
        self.expiry(&app, &batches).await?;
        self.trade_ins(&app).await?;
        self.statements(&app, &accounts).await?;
        let web_card = batches.us.serial_at(DEMO_SOLD);
        super::demo_http::OverHttp {
            retailer: retailer.name.as_str(),
            store: DEMO_STORE,
            card: web_card,
            code: codes.of(web_card),
            account: accounts.alice,
            actor: &self.actor,
        }
        .run(&app)
        .await?;
        let settings = app.settings();
        let seal_key = SealKey::create_files(&settings.key_dir())?;
        let sealed = services
            .trail()
            .seal(&seal_key, &settings.witness_file())
            .await?;
        // The public key comes from the witness's header, never from the database.
        let report = services
            .trail()
            .verify(&VerifyRequest {
                public_key: None,
                witness_files: vec![sealed.witness.clone()],
                seal_age_max: settings.seal_age_max.get(),
            })
            .await?;
        if let Some(problem) = report.problem {
            return Err(CliError::new(
                "audit.broken",
                format!("the demo's audit trail failed verification: {problem}"),
            ));
        }
        println!(
            "17. audit trail sealed under seal key {} (seal {}, witnessed in {}) and verified: {} records in {} chains, every record's hash and tag, the seal's signature and the witness checked",
            seal_key.public().short(),
            sealed.seal.seal_id,
            sealed.witness.display(),
            report.records,
            report.chains_used
        );
        self.settlement(&app, &seal_key, self.first_day).await?;
        let link = services
            .sessions()
            .mint(&accounts.alice.to_string(), &self.actor)
            .await?;
        let dir = settings.data_dir.display();
        println!(
            "21. the customer's page for account {}: serve it with `tender --data-dir {dir} serve`, then open {} (`xdg-open '{}'`; the link works once; `tender --data-dir {dir} account link {}` mints another)",
            link.account_id, link.url, link.url, link.account_id
        );
        Ok(())
    }
}

impl Demo {
    /// Nightly settlement: the clock moves past the last day's cut-off and grace, each day
    /// since the demo began closes in order (reconciled, signed, written, the trail sealed);
    /// the first day's roll-forward and statements are printed; the retailer pays what it
    /// owes (entered twice, recorded once); and the reports verify against their manifest.
    async fn settlement<S: Store>(
        &self,
        app: &App<S>,
        key: &SealKey,
        first: BusinessDate,
    ) -> Result<(), CliError> {
        let settings = app.settings();
        let zone = settings.business_time_zone.get();
        let now = app.services().clock().now();
        let last =
            BusinessDate::of(now, zone).ok_or_else(|| unexpected("the clock is out of range"))?;
        let ready = last.cutoff(zone)
            + chrono::TimeDelta::from_std(SETTLEMENT_GRACE).expect("the grace fits");
        if let Ok(wait) = (ready - now).to_std() {
            self.clock.advance(wait + Duration::from_secs(1));
        }
        let settlement = app.services().settlement();
        let mut day = first;
        let mut shown = None;
        loop {
            let settled = settlement
                .settle(
                    day,
                    key,
                    &settings.witness_file(),
                    &settings.report_dir(),
                    &self.actor,
                )
                .await?;
            let closings: Vec<String> = settled
                .roll_forward
                .iter()
                .filter_map(|r| {
                    r.line("closing")
                        .map(|c| crate::domain::Money::from_minor(c, r.currency).to_string())
                })
                .collect();
            println!(
                "{} {day} settled after its cut-off and grace: {} files in {}, liability at the cut-off {}, audit seal {}",
                if day == first { "18." } else { "   " },
                settled.files.len() + 2,
                settled.dir.display(),
                closings.join(", "),
                settled.seal_id.map_or("-".into(), |id| id.to_string())
            );
            if shown.is_none() {
                shown = Some(settled);
            }
            if day >= last {
                break;
            }
            day = day
                .next()
                .ok_or_else(|| unexpected("a day past the range"))?;
        }
        if let Some(settled) = &shown {
            super::settle::print_settled(settled);
        }
        // The US statement, where the demo sold most.
        let owed = shown
            .iter()
            .flat_map(|s| &s.statements)
            .filter(|s| s.closing > 0)
            .max_by_key(|s| s.activated_cards);
        if let Some(statement) = owed {
            let amount = crate::domain::Money::from_minor(statement.closing, statement.currency);
            let form = PaymentForm::parse(
                &statement.retailer,
                &amount.to_decimal().to_string(),
                statement.currency.code(),
                "DEMO-REMIT-0001",
            )?;
            let first_entry = settlement.record_payment(&form, &self.actor).await?;
            let again = settlement.record_payment(&form, &self.actor).await?;
            println!(
                "19. {} paid {amount} (`tender settle record-payment --reference DEMO-REMIT-0001`): transfer {}; entered again, {} (tomorrow's statement shows it)",
                visible(&statement.retailer),
                first_entry.transfer_id,
                if again.replayed && again.transfer_id == first_entry.transfer_id {
                    "recorded once"
                } else {
                    "RECORDED TWICE"
                }
            );
        }
        let public = key.public();
        for (n, verified) in [first, last].into_iter().enumerate() {
            let check = settlement
                .verify(verified, &public, &settings.report_dir())
                .await?;
            if !check.ok() {
                return Err(unexpected("the settlement reports failed verification"));
            }
            println!(
                "{} `tender settle verify --date {verified}`: the manifest's signature and {} files match",
                if n == 0 { "20." } else { "   " },
                check.files.len()
            );
        }
        Ok(())
    }

    /// A store in Texas sells the US batch's first cards as one box; one is voided, another
    /// blocked, and the support desk's view of the blocked one is printed. A store in England
    /// sells the UK batch's first card.
    async fn point_of_sale<S: Store>(
        &self,
        app: &App<S>,
        batches: &Batches,
        retailer: &str,
    ) -> Result<(), CliError> {
        let pos = app.services().cards();
        let batch = &batches.us;
        let form = StoreForm {
            retailer: retailer.into(),
            store: DEMO_STORE.into(),
            jurisdiction: "US-TX".into(),
        };
        let store = pos.add_store(&form, &self.actor).await?;
        let till = |store: &str, pos_txn: &str| PosForm {
            retailer: retailer.into(),
            store: store.into(),
            terminal: "till-1".into(),
            pos_txn: pos_txn.into(),
            pos_time: None,
        };
        let (first, last) = (batch.first_serial, batch.serial_at(DEMO_SOLD - 1));
        let sale = ActivateForm {
            pos: till(DEMO_STORE, "sale-1"),
            serial: first.to_string(),
            to_serial: Some(last.to_string()),
            value: None,
            purchaser_state: None,
        };
        let sold = pos.activate(&sale, &self.actor).await?;
        let activated: Vec<_> = sold.cards.iter().filter(|c| c.message.is_none()).collect();
        println!(
            "5. store {DEMO_STORE} added in {} ({}); cards {first} to {last} sold there as one box: {} of {} activated at {} each in transfer {}, funds expire {}",
            store.jurisdiction,
            expiry_law(&store),
            activated.len(),
            sold.cards.len(),
            batch.value,
            transfer(&sold),
            expiry(activated.first().and_then(|c| c.funds_expire_at)),
        );
        let form = StoreForm {
            retailer: retailer.into(),
            store: UK_STORE.into(),
            jurisdiction: "GB-ENG".into(),
        };
        let uk_store = pos.add_store(&form, &self.actor).await?;
        let (uk_card, uk_last) = (batches.uk.first_serial, batches.uk.serial_at(1));
        let sale = ActivateForm {
            pos: till(UK_STORE, "sale-1"),
            serial: uk_card.to_string(),
            to_serial: Some(uk_last.to_string()),
            value: None,
            purchaser_state: None,
        };
        let sold = pos.activate(&sale, &self.actor).await?;
        println!(
            "   store {UK_STORE} added in {} ({}); cards {uk_card} to {uk_last} sold there for {} each in transfer {}, funds expire {}",
            uk_store.jurisdiction,
            expiry_law(&uk_store),
            batches.uk.value,
            transfer(&sold),
            expiry(sold.cards.first().and_then(|c| c.funds_expire_at)),
        );
        let form = StoreForm {
            retailer: retailer.into(),
            store: ONTARIO_STORE.into(),
            jurisdiction: "CA-ON".into(),
        };
        let ontario = pos.add_store(&form, &self.actor).await?;
        let ca_card = batches.ca.first_serial;
        let sale = ActivateForm {
            pos: till(ONTARIO_STORE, "sale-1"),
            serial: ca_card.to_string(),
            to_serial: None,
            value: None,
            purchaser_state: None,
        };
        let sold = pos.activate(&sale, &self.actor).await?;
        println!(
            "   store {ONTARIO_STORE} added in {} ({}); card {ca_card} sold there for {} in transfer {}, funds expire {} though its printed expiry is tomorrow",
            ontario.jurisdiction,
            expiry_law(&ontario),
            batches.ca.value,
            transfer(&sold),
            expiry(sold.cards.first().and_then(|c| c.funds_expire_at)),
        );
        let void = VoidForm {
            pos: till(DEMO_STORE, "return-1"),
            serial: first.to_string(),
        };
        let voided = pos.void(&void, &self.actor).await?;
        let blocked = batch.serial_at(1).to_string();
        pos.block(&blocked, "lost_in_transit", &self.actor).await?;
        println!(
            "6. card {first} returned and voided (transfer {} reverses its sale); card {blocked} blocked (lost_in_transit)",
            transfer(&voided),
        );
        println!("7. the support desk's view (`tender card show {blocked}`):");
        print_card(&pos.show(&blocked).await?);
        Ok(())
    }

    /// Two accounts; one credited by an adjustment that a second (in-process) person
    /// approves; a spend and a partial refund.
    async fn money_moves<S: Store>(&self, app: &App<S>) -> Result<Accounts, CliError> {
        let ledger = app.services().ledger();
        let new_account = |external_id: &str| AccountForm {
            region: "US".into(),
            currency: "USD".into(),
            external_id: Some(external_id.into()),
        };
        let alice = ledger
            .create_account(&new_account("demo-alice"), &self.actor)
            .await?;
        let bob = ledger
            .create_account(&new_account("demo-bob"), &self.actor)
            .await?;
        let credit = AdjustForm {
            account: alice.id.to_string(),
            amount: "150.00".into(),
            currency: "USD".into(),
            reason: "goodwill".into(),
        };
        let Adjusted::Pending { adjustment_id } = ledger.adjust(&credit, &self.actor).await? else {
            return Err(CliError::new(
                "demo.no_approval",
                "the demo's adjustment was posted without approval; is --approval-over above 150?",
            ));
        };
        let supervisor = Actor::demo("supervisor");
        ledger.approve(adjustment_id, &supervisor).await?;
        println!(
            "8. accounts {} and {} created; adjustment {adjustment_id} of 150.00 USD to account {} requested by {} and approved by {}",
            alice.id, bob.id, alice.id, self.actor, supervisor
        );
        let spend = SpendForm {
            account: alice.id.to_string(),
            amount: "39.99".into(),
            currency: "USD".into(),
            order: "demo-order-1".into(),
            service: "app-store".into(),
            effective_at: None,
        };
        ledger.spend(&spend, &self.actor).await?;
        let refund = RefundForm {
            account: alice.id.to_string(),
            order: "demo-order-1".into(),
            refund: "demo-refund-1".into(),
            amount: "9.99".into(),
            currency: "USD".into(),
            effective_at: None,
        };
        let after = ledger.refund(&refund, &self.actor).await?;
        println!(
            "9. account {} spent 39.99 USD at app-store and got 9.99 USD back: balance {}",
            alice.id, after.balance_after
        );
        Ok(Accounts {
            alice: alice.id,
            bob: bob.id,
        })
    }

    /// The cards whose codes the demo types: the US box (voided, blocked, two to redeem, one
    /// that stays active), the card sold and redeemed over HTTP, and both UK cards.
    fn codes_needed(&self, batches: &Batches) -> Vec<Serial> {
        let mut serials: Vec<Serial> = (0..=DEMO_SOLD).map(|n| batches.us.serial_at(n)).collect();
        serials.extend((0..UK_CARDS).map(|n| batches.uk.serial_at(n)));
        serials
    }

    /// Tries `code` into `account`, as `tender redeem` does with the line it read.
    async fn redeem<S: Store>(
        &self,
        app: &App<S>,
        account: AccountId,
        code: &str,
        key: Option<&str>,
    ) -> Result<Redeemed, RedeemError> {
        app.services()
            .redemption()
            .redeem(&account.to_string(), code, key, &self.actor)
            .await
    }

    /// Two cards of the box redeemed into the two accounts, and a retry answered with the
    /// first success.
    async fn redemptions<S: Store>(
        &self,
        app: &App<S>,
        batches: &Batches,
        accounts: &Accounts,
        codes: &Codes,
    ) -> Result<(), CliError> {
        println!(
            "10. redemptions of codes read from the printer files, passed to the service in-process as `tender redeem` passes the line it reads; no code is printed:"
        );
        let (for_alice, for_bob) = (batches.us.serial_at(2), batches.us.serial_at(3));
        let first = self
            .redeem(app, accounts.alice, codes.of(for_alice), Some(DEMO_KEY))
            .await?;
        println!(
            "     account {} redeems card {} under idempotency key {DEMO_KEY}: {} credited, balance {} (transfer {})",
            first.account_id, first.card, first.amount, first.balance_after, first.transfer_id
        );
        let again = self
            .redeem(app, accounts.alice, codes.of(for_alice), Some(DEMO_KEY))
            .await?;
        if !again.replayed || again.transfer_id != first.transfer_id {
            return Err(unexpected("a retry under the same key credited again"));
        }
        println!(
            "     account {} sends it again under the same key: the first answer (transfer {}), nothing credited twice",
            again.account_id, again.transfer_id
        );
        let second = self
            .redeem(app, accounts.bob, codes.of(for_bob), None)
            .await?;
        println!(
            "     account {} redeems card {}: {} credited, balance {} (transfer {})",
            second.account_id, second.card, second.amount, second.balance_after, second.transfer_id
        );
        Ok(())
    }

    /// One refusal of each kind, each checked to be the one shown. Three more accounts: one in
    /// the UK storefront, one holding euros (then frozen), one that guesses.
    async fn refusals<S: Store>(
        &self,
        app: &App<S>,
        batches: &Batches,
        accounts: &Accounts,
        codes: &Codes,
    ) -> Result<(), CliError> {
        let services = app.services();
        let ledger = services.ledger();
        let open = |region: &str, currency: &str| AccountForm {
            region: region.into(),
            currency: currency.into(),
            external_id: None,
        };
        let carol = ledger
            .create_account(&open("GB", "GBP"), &self.actor)
            .await?
            .id;
        let dave = ledger
            .create_account(&open("US", "EUR"), &self.actor)
            .await?
            .id;
        let mallory = ledger
            .create_account(&open("US", "USD"), &self.actor)
            .await?
            .id;
        println!(
            "11. accounts {carol} (UK storefront, GBP), {dave} (US, EUR) and {mallory} (US, USD) created; one refusal of each kind, with its stable code:"
        );
        let (alice, bob) = (accounts.alice, accounts.bob);
        let us = &batches.us;
        let (voided, blocked, redeemed, live) = (
            us.serial_at(0),
            us.serial_at(1),
            us.serial_at(2),
            us.serial_at(4),
        );
        let (uk_sold, uk_shelf) = (batches.uk.serial_at(0), batches.uk.serial_at(UK_CARDS - 1));
        let live_code = codes.of(live);
        let last_digit = live_code.as_bytes()[Code::LEN - 1] - b'0';
        // Mistyped forms of a real code, wiped when dropped like the codes themselves.
        let typo = |text: String| Zeroizing::new(text);
        let with_last = |digit: u8| typo(format!("{}{}", &live_code[..Code::LEN - 1], digit % 10));

        let letter = typo(format!("{}O", &live_code[..Code::LEN - 1]));
        let outcome = self.redeem(app, alice, &letter, None).await;
        refused(
            "redeem.invalid_format",
            &format!("account {alice} types a letter O for the last digit (nothing counted)"),
            outcome,
        )?;
        let outcome = self
            .redeem(app, alice, &with_last(last_digit + 1), None)
            .await;
        refused(
            "redeem.not_found",
            &format!("account {alice} types a code with its last digit wrong"),
            outcome,
        )?;
        let outcome = self.redeem(app, alice, codes.of(voided), None).await;
        refused(
            "redeem.not_activated",
            &format!(
                "account {alice}, card {}, voided at the store",
                voided.masked()
            ),
            outcome,
        )?;
        let outcome = self.redeem(app, carol, codes.of(uk_shelf), None).await;
        refused(
            "redeem.not_activated",
            &format!(
                "account {carol}, UK card {}, still on the shelf (now marked exposed)",
                uk_shelf.masked()
            ),
            outcome,
        )?;
        let outcome = self.redeem(app, bob, codes.of(redeemed), None).await;
        refused(
            "redeem.already_redeemed",
            &format!(
                "account {bob}, card {}, redeemed by account {alice}",
                redeemed.masked()
            ),
            outcome,
        )?;
        let outcome = self.redeem(app, bob, codes.of(blocked), None).await;
        refused(
            "redeem.blocked",
            &format!("account {bob}, card {}, lost in transit", blocked.masked()),
            outcome,
        )?;
        let outcome = self.redeem(app, carol, live_code, None).await;
        refused(
            "redeem.region_mismatch",
            &format!("account {carol}, US card {}", live.masked()),
            outcome,
        )?;
        let outcome = self.redeem(app, dave, live_code, None).await;
        refused(
            "redeem.currency_mismatch",
            &format!("account {dave}, card {}", live.masked()),
            outcome,
        )?;
        ledger
            .freeze(&dave.to_string(), true, "fraud_review", &self.actor)
            .await?;
        let outcome = self.redeem(app, dave, live_code, None).await;
        refused(
            "redeem.account_frozen",
            &format!(
                "account {dave}, frozen for fraud_review, card {}",
                live.masked()
            ),
            outcome,
        )?;
        let outcome = self.redeem(app, alice, live_code, Some(DEMO_KEY)).await;
        refused(
            "redeem.key_conflict",
            &format!(
                "account {alice}, card {} under key {DEMO_KEY} again",
                live.masked()
            ),
            outcome,
        )?;

        // The account's six attempts must fall in one hourly window: this close to the end of
        // the hour, wait for the next one.
        let into_hour = services.clock().now().timestamp().rem_euclid(3_600);
        if into_hour > 3_590 {
            tokio::time::sleep(Duration::from_secs((3_601 - into_hour).unsigned_abs())).await;
        }
        for wrong in 1..=5 {
            let outcome = self
                .redeem(app, mallory, &with_last(last_digit + wrong), None)
                .await;
            match outcome {
                Err(error) if error.code() == "redeem.not_found" => {}
                other => return Err(unexpected_outcome("redeem.not_found", "a guess", other)),
            }
        }
        println!(
            "     {:<26} account {mallory} guesses the last digit of card {}: five wrong codes, five refusals",
            "redeem.not_found (5×)",
            live.masked()
        );
        let outcome = self.redeem(app, mallory, live_code, None).await;
        refused(
            "redeem.rate_limited",
            &format!(
                "account {mallory} then types the card's real code, its sixth attempt this hour"
            ),
            outcome,
        )?;
        let card = services.cards().show(&live.to_string()).await?;
        let attempts = services
            .redemption()
            .attempts(Some(&mallory.to_string()), None, PageRows::MAX)
            .await?;
        if card.state != CardState::Active {
            return Err(unexpected("a rate-limited code moved its card"));
        }
        println!(
            "     {:<26} card {} is still active; support sees account {mallory}'s {} refused attempts (`tender attempts --account {mallory}`)",
            "",
            live.masked(),
            attempts.len()
        );

        self.clock.advance(A_DAY_LATER);
        let outcome = self.redeem(app, carol, codes.of(uk_sold), None).await;
        refused(
            "redeem.expired",
            &format!(
                "account {carol}, UK card {}, 25 hours later (the demo moves its clock past the printed expiry)",
                uk_sold.masked()
            ),
            outcome,
        )?;
        Ok(())
    }

    /// The nightly expiry, a day on (the demo's clock moved past the printed expiry): a
    /// preview, then the job runner's schedules, which claim today's periods of expire and
    /// purge (seal-audit waits for a process with the seal key); the UK cards' funds go to
    /// breakage, the Ontario card keeps its value, and the runs are listed.
    async fn expiry<S: Store>(&self, app: &App<S>, batches: &Batches) -> Result<(), CliError> {
        let services = app.services();
        let preview = services.expiry().preview(services.clock().now()).await?;
        let lines = |lines: &[crate::service::expiry::ExpiryLine]| {
            lines
                .iter()
                .map(|l| format!("{} cards' {} to {}", l.cards, l.amount, l.destination))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "12. a day later `tender expire --dry-run` would expire {} cards ({}); the job runner's schedules run what is due (never seal-audit here: this process holds no seal key):",
            preview.cards,
            lines(&preview.lines)
        );
        Catalog::load(None)?
            .runtime(app, progress_bars())
            .run(RunMode::Drain)
            .await?;
        let runs = services.schedules().runs(None, PageRows::new(10)?).await?;
        for run in runs.iter().rev() {
            println!(
                "     `tender jobs runs`: {:<8} period {} {} in {} ms, attempt {}: {}",
                run.job,
                run.period.to_rfc3339_opts(SecondsFormat::Secs, true),
                run.status,
                run.duration_ms.unwrap_or_default(),
                run.attempts,
                run.totals
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
        }
        let expired = services
            .cards()
            .show(&batches.uk.first_serial.to_string())
            .await?;
        let kept = services
            .cards()
            .show(&batches.ca.first_serial.to_string())
            .await?;
        if expired.state != CardState::Expired || kept.state != CardState::Active {
            return Err(unexpected("the nightly expiry moved the wrong cards"));
        }
        println!(
            "     card {} is now {}; Ontario card {} is still {} with its {}: its jurisdiction forbids expiry",
            expired.serial,
            expired.state.as_str(),
            kept.serial,
            kept.state.as_str(),
            batches.ca.value
        );
        Ok(())
    }

    /// A warehouse's file of valuations, with a few bad rows of different kinds: imported with
    /// its per-row report and rejects file, posted by the job runner, the large one held by its
    /// price band and approved by finance.
    async fn trade_ins<S: Store>(&self, app: &App<S>) -> Result<(), CliError> {
        let trade_ins = app.services().trade_ins();
        let finance = Actor::demo("finance");
        let band = trade_ins
            .set_band("MacBook Pro 14 M3", "1200.00", "USD", &finance)
            .await?;
        let file = app.settings().data_dir.join("tradeins.csv");
        std::fs::write(&file, TRADE_INS_CSV).map_err(|e| {
            CliError::new("demo.io", format!("cannot write {}: {e}", file.display()))
        })?;
        let source = std::fs::File::open(&file).map_err(|e| {
            CliError::new("demo.io", format!("cannot read {}: {e}", file.display()))
        })?;
        let report = trade_ins
            .import(source, Some("tradeins.csv"), &self.actor)
            .await?;
        println!(
            "13. finance set the price band of {} to {}; warehouse file {} imported (`tender tradein import`):",
            visible(&band.model_key),
            band.max,
            file.display()
        );
        print!("    ");
        super::tradein::print_report(&report);
        let id = report.file.file_id;
        for row in trade_ins
            .file_rows(id, 0, PageRows::MAX)
            .await?
            .iter()
            .filter(|r| r.code.is_some())
        {
            println!(
                "      line {:>2}: {}: {}",
                row.row,
                row.code.as_deref().unwrap_or_default(),
                visible(row.reason.as_deref().unwrap_or_default())
            );
        }
        let rejects = super::tradein::rejects_path(&file);
        let (out, _) = trade_ins
            .write_rejects(
                id,
                std::fs::File::create(&rejects).map_err(|e| {
                    CliError::new(
                        "demo.io",
                        format!("cannot write {}: {e}", rejects.display()),
                    )
                })?,
            )
            .await?;
        drop(out);
        println!(
            "    rejects file (each row as sent, with its line and reason): {}",
            rejects.display()
        );
        // The import queued the posting job through the outbox; the runner posts it.
        Catalog::load(None)?
            .runtime(app, progress_bars())
            .run(RunMode::Drain)
            .await?;
        let held = trade_ins
            .list(Some(TradeInState::Held), None, PageRows::MAX)
            .await?;
        let posted = trade_ins
            .list(Some(TradeInState::Posted), None, PageRows::MAX)
            .await?;
        println!(
            "    the post-trade-ins job credited {} valuations; {} held for finance: {}",
            posted.len(),
            held.len(),
            held.iter()
                .map(|h| format!(
                    "trade-in {} ({}, {}, {})",
                    h.id,
                    visible(&h.trade_in_ref),
                    h.value,
                    h.held_for.map_or("", |f| f.as_str())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for h in &held {
            trade_ins.approve(h.id, &finance).await?;
            println!(
                "    trade-in {} approved by {finance} (it was sent by {}) and posted",
                h.id, self.actor
            );
        }
        Ok(())
    }

    /// Both accounts' balances and histories, then the ledger check.
    async fn statements<S: Store>(
        &self,
        app: &App<S>,
        accounts: &Accounts,
    ) -> Result<(), CliError> {
        let ledger = app.services().ledger();
        println!("14. balances and histories, newest first:");
        for id in [accounts.alice, accounts.bob] {
            let id = id.to_string();
            let account = ledger.account(&id).await?;
            println!("     account {id}: balance {}", account.balance);
            for line in ledger.history(&id, None, PageRows::MAX).await? {
                let shown = format!(
                    "       {:<10} {:>12}  balance {:>12}  {}",
                    line.kind.as_str(),
                    line.amount.to_string(),
                    line.balance_after.to_string(),
                    super::ledger::reference(&line)
                );
                println!("{}", shown.trim_end());
            }
        }
        let check = ledger.check().await?;
        if let Some(discrepancy) = check.discrepancy {
            return Err(CliError::new(
                "ledger.discrepancy",
                format!("the demo's ledger check failed: {discrepancy}"),
            ));
        }
        println!(
            "15. ledger check: {} transfers balance, {} account balances equal their entries, every card's state agrees with its entries",
            check.transfers, check.accounts
        );
        Ok(())
    }
}

/// The codes of the cards the demo redeems, read from the printer files in-process, as a
/// person reads one off a card: they go to the service as text and are never printed. Each is
/// wiped when dropped.
struct Codes(HashMap<Serial, Code>);

impl Codes {
    /// The codes of `wanted` from `files`; the other rows are read and dropped.
    fn read(files: &[PathBuf], wanted: &[Serial]) -> Result<Codes, CliError> {
        let mut codes = HashMap::new();
        for file in files {
            let unreadable = |reason: String| {
                CliError::new(
                    "demo.printer_file",
                    format!("cannot read {}: {reason}", file.display()),
                )
            };
            for row in PrinterFileReader::open(file).map_err(unreadable)? {
                let row = row.map_err(unreadable)?;
                if wanted.contains(&row.serial) {
                    codes.insert(row.serial, row.code);
                }
            }
        }
        match wanted.iter().find(|s| !codes.contains_key(*s)) {
            Some(missing) => Err(CliError::new(
                "demo.printer_file",
                format!("no printer file holds card {missing}"),
            )),
            None => Ok(Codes(codes)),
        }
    }

    /// The code of `serial`, as typed.
    fn of(&self, serial: Serial) -> &str {
        self.0[&serial].expose_secret()
    }
}

/// Prints a refusal's line, its stable code first; `Err` unless `outcome` is that refusal.
fn refused(
    expected: &'static str,
    situation: &str,
    outcome: Result<Redeemed, RedeemError>,
) -> Result<(), CliError> {
    match outcome {
        Err(error) if error.code() == expected => {
            println!("     {expected:<26} {situation}: {error}");
            Ok(())
        }
        other => Err(unexpected_outcome(expected, situation, other)),
    }
}

fn unexpected_outcome(
    expected: &str,
    situation: &str,
    outcome: Result<Redeemed, RedeemError>,
) -> CliError {
    let got = match outcome {
        Ok(redeemed) => format!("{} was credited", redeemed.amount),
        Err(error) => format!("{} ({error})", error.code()),
    };
    unexpected(&format!("{situation}: expected {expected}, but {got}"))
}

fn unexpected(what: &str) -> CliError {
    CliError::new("demo.unexpected", format!("the demo went wrong: {what}"))
}
