//! How commands print: JSON for scripts, text for people; tables, one batch, progress bars.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use super::CliError;
use crate::domain::{Batch, BatchId};
use crate::formats::printer_file;
use crate::jobs::ProgressFn;

/// Output format of read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Format {
    Text,
    Json,
}

/// Prints `value` as JSON, or as text through `text`.
pub(super) fn show<T: Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce(&T),
) -> Result<(), CliError> {
    match format {
        Format::Json => {
            let json = serde_json::to_string_pretty(value)
                .map_err(|_| CliError::new("cli.json", "the result could not be shown as JSON"))?;
            println!("{json}");
        }
        Format::Text => text(value),
    }
    Ok(())
}

/// Prints rows under a header, each column as wide as its widest cell.
pub(super) fn print_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// One batch, field by field.
pub(super) fn print_batch(b: &Batch) {
    println!("batch {}", b.id);
    println!("  retailer     {}", b.retailer_id);
    println!("  state        {}", b.state.as_str());
    println!(
        "  progress     {} of {} cards ({} codes redrawn after collisions)",
        b.generated, b.count, b.collisions
    );
    println!("  value        {}", b.value);
    println!("  region       {}", b.region);
    println!(
        "  serials      {} to {}",
        b.first_serial,
        b.serial_at(b.count - 1)
    );
    println!(
        "  expires      {}",
        b.expires_at.map_or("never".into(), |at| at.to_rfc3339())
    );
    println!("  lookup key   {}", b.lookup_key_id);
    println!(
        "  requested    {} by {}",
        b.requested_at.to_rfc3339(),
        b.requested_by
    );
    println!(
        "  printer file {}",
        b.export_mac
            .as_deref()
            .map_or("not complete".into(), |mac| format!(
                "{} (MAC {mac})",
                printer_file::file_name(b.id)
            ))
    );
    if let Some(failure) = &b.failure {
        println!("  failed       {failure}");
    }
}

/// Progress bars per batch when stderr is a terminal; nothing otherwise.
pub(super) fn progress_bars() -> ProgressFn {
    if !std::io::stderr().is_terminal() {
        return Arc::new(|_: &Batch| {});
    }
    let multi = MultiProgress::new();
    let bars: Mutex<HashMap<BatchId, ProgressBar>> = Mutex::new(HashMap::new());
    Arc::new(move |batch: &Batch| {
        let mut bars = bars.lock().expect("progress bars lock");
        let bar = bars.entry(batch.id).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(batch.count));
            bar.set_style(
                ProgressStyle::with_template(
                    "batch {msg} [{bar:40}] {pos}/{len} cards ({per_sec}, eta {eta})",
                )
                .expect("valid template"),
            );
            bar.set_message(batch.id.to_string());
            bar
        });
        bar.set_position(batch.generated);
        if batch.generated >= batch.count {
            bar.finish();
        }
    })
}
