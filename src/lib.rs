//! tender issues and settles stored value: gift card codes, account balances and trade-in credit.
//!
//! Layers, each depending only on those above it:
//! - [`domain`]: values that can only be valid (codes, serials, money, regions, batches).
//! - [`keys`], [`codegen`], [`audit`], [`export`]: secrets, code generation and digests, the
//!   tamper-evident trail, the printer file. They depend on `domain` only.
//! - [`store`]: storage in domain terms, one implementation per database.
//! - [`jobs`]: job definitions, the queue and the worker runtime.
//! - [`issuance`], [`trail`]: the use cases; the CLI (and later the HTTP API) are thin adapters over them.
#![warn(missing_docs)]

pub mod audit;
pub mod codegen;
pub mod config;
pub mod domain;
pub mod export;
pub mod issuance;
pub mod jobs;
pub mod keys;
pub mod store;
pub mod trail;
