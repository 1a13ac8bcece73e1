//! The demo: the whole flow on a fresh SQLite database in a new directory, through the same
//! services every command uses, with a summary. It grows with each capability.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::CliError;
use super::cards::{expiry, expiry_law, print_card, transfer};
use super::output::{progress_bars, visible};
use crate::app::{self, App, Launch};
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::domain::{Actor, Batch, PageRows};
use crate::formats::printer_file;
use crate::jobs::{Catalog, RunMode};
use crate::keys::{KeyNeeds, KeyPurpose, SealKey};
use crate::service::batches::BatchForm;
use crate::service::cards::{ActivateForm, PosForm, StoreForm, VoidForm};
use crate::service::ledger::{AccountForm, AdjustForm, Adjusted, RefundForm, SpendForm};
use crate::service::trail::VerifyRequest;
use crate::store::Store;

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// The new directory (default: tender-demo-<timestamp>).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Cards in the demo batch (at least 5: it sells the first five).
    #[arg(long, default_value_t = 10_000)]
    cards: u64,
}

/// Cards the demo sells, as one box at one till.
const DEMO_SOLD: u64 = 5;
/// The demo retailer's one store.
const DEMO_STORE: &str = "S-0001";

pub(super) async fn run(args: DemoArgs, actor: Actor) -> Result<(), CliError> {
    let clock = SystemClock::shared();
    let dir = args.dir.unwrap_or_else(|| {
        PathBuf::from(format!(
            "tender-demo-{}",
            clock.now().format("%Y%m%d-%H%M%S")
        ))
    });
    if args.cards < DEMO_SOLD {
        return Err(CliError::new(
            "demo.too_few_cards",
            format!("the demo sells {DEMO_SOLD} cards, so its batch holds at least {DEMO_SOLD}"),
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
    app::init(&settings, clock.clone(), &actor).await?;
    let demo = Demo {
        cards: args.cards,
        actor,
    };
    app::launch(&settings, clock, demo).await??;
    println!(
        "demo finished in {:.2} s; everything is in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    println!("try: tender --data-dir {} batch show 1", dir.display());
    Ok(())
}

struct Demo {
    cards: u64,
    actor: Actor,
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
        let form = BatchForm {
            retailer: retailer.name.to_string(),
            count: self.cards,
            value: Some("25.00".into()),
            currency: "USD".into(),
            region: "US".into(),
            expires_in_days: Some(5 * 365),
            ..BatchForm::default()
        };
        let requested = services.batches().request(&form, &self.actor).await?;
        println!(
            "2. batch {} requested: {} cards of {}",
            requested.id, requested.count, requested.value
        );
        let generation = Instant::now();
        Catalog::load(None)?
            .runtime(&app, progress_bars())
            .run(RunMode::Drain)
            .await?;
        let batch = services.batches().show(requested.id).await?;
        println!(
            "3. job runner drained in {:.2} s: batch {} is {}, {} cards, {} collisions redrawn",
            generation.elapsed().as_secs_f64(),
            batch.id,
            batch.state.as_str(),
            batch.generated,
            batch.collisions
        );
        let file = app
            .settings()
            .export_dir()
            .join(printer_file::file_name(batch.id));
        let check = services.printer_check().verify(&file, &self.actor).await?;
        println!(
            "4. printer file {} verified: {} codes match their digests (MAC {})",
            file.display(),
            check.rows,
            &check.mac[..16]
        );
        self.point_of_sale(&app, &batch, retailer.name.as_str())
            .await?;
        self.money_moves(&app).await?;
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
            "11. audit trail sealed under seal key {} (seal {}, witnessed in {}) and verified: {} records in {} chains, every record's hash and tag, the seal's signature and the witness checked",
            seal_key.public().short(),
            sealed.seal.seal_id,
            sealed.witness.display(),
            report.records,
            report.chains_used
        );
        Ok(())
    }
}

impl Demo {
    /// A store sells the batch's first cards as one box; one is voided, another blocked, and
    /// the support desk's view of the blocked one is printed.
    async fn point_of_sale<S: Store>(
        &self,
        app: &App<S>,
        batch: &Batch,
        retailer: &str,
    ) -> Result<(), CliError> {
        let pos = app.services().cards();
        let form = StoreForm {
            retailer: retailer.into(),
            store: DEMO_STORE.into(),
            jurisdiction: "US-TX".into(),
        };
        let store = pos.add_store(&form, &self.actor).await?;
        let till = |pos_txn: &str| PosForm {
            retailer: retailer.into(),
            store: DEMO_STORE.into(),
            terminal: "till-1".into(),
            pos_txn: pos_txn.into(),
            pos_time: None,
        };
        let (first, last) = (batch.first_serial, batch.serial_at(DEMO_SOLD - 1));
        let sale = ActivateForm {
            pos: till("sale-1"),
            serial: first.to_string(),
            to_serial: Some(last.to_string()),
            value: None,
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
        let void = VoidForm {
            pos: till("return-1"),
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
    /// approves; a spend and a partial refund; balance, history and the ledger check.
    async fn money_moves<S: Store>(&self, app: &App<S>) -> Result<(), CliError> {
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
            "9. account {} spent 39.99 USD at app-store and got 9.99 USD back: balance {}; its history, newest first:",
            alice.id, after.balance_after
        );
        let id = alice.id.to_string();
        for line in ledger.history(&id, None, PageRows::MAX).await? {
            println!(
                "     {:<10} {:>12}  balance {:>12}  {}",
                line.kind.as_str(),
                line.amount.to_string(),
                line.balance_after.to_string(),
                line.reference.as_deref().unwrap_or("")
            );
        }
        let check = ledger.check().await?;
        if let Some(discrepancy) = check.discrepancy {
            return Err(CliError::new(
                "ledger.discrepancy",
                format!("the demo's ledger check failed: {discrepancy}"),
            ));
        }
        println!(
            "10. ledger check: {} transfers balance, {} account balances equal their entries, every card's state agrees with its entries",
            check.transfers, check.accounts
        );
        Ok(())
    }
}
