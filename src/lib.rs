//! tender issues and settles stored value: gift card codes, account balances and trade-in credit.
//!
//! The crate is built in floors; each module imports only modules on its own floor or below,
//! never in a cycle (a test reads the `use crate::…` lines and enforces it):
//!
//! | floor | modules | what they are |
//! | --- | --- | --- |
//! | 0 | [`error`], [`clock`] | how errors are classified; the one place time is read |
//! | 1 | [`domain`], [`config`] | values that can only be valid; settings |
//! | 2 | [`keys`], [`codegen`], [`formats`] | secrets, codes and digests, file formats |
//! | 3 | [`audit`] | the tamper-evident trail |
//! | 4 | [`store`] | persistence in domain terms, SQL written once for both backends |
//! | 5 | [`service`] | use cases; each owns its transaction |
//! | 6 | [`app`] | the composition root |
//! | 7 | [`api`], [`jobs`] | thin callers of the services: the HTTP API, the job runtime |
//! | 8 | [`cli`] | the `tender` command |
#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod codegen;
pub mod config;
pub mod domain;
pub mod error;
pub mod formats;
pub mod jobs;
pub mod keys;
pub mod service;
pub mod store;
pub mod web;
