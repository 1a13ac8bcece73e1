//! The integration suite, one binary: every module reads as a part of the specification.
//! Library-level tests run each body on SQLite and on PostgreSQL, each on its own database.

mod api;
mod api_accounts;
mod api_cards;
mod api_idempotency;
mod api_keys;
mod api_metrics;
mod api_tradein;
mod audit;
mod bank;
mod browser_harness;
mod cards;
mod cli;
mod codes;
mod domain;
mod expiry;
mod floors;
mod hardening;
mod helpers;
mod issuance;
mod jobs;
mod ledger;
mod page;
mod redeem;
mod retailers;
mod schedules;
mod sessions;
mod settlement;
mod settlement_runs;
mod store;
mod tradein;
mod tradein_workers;
