//! How commands print: JSON for scripts, text for people; tables, one batch, progress bars.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::CliError;
use crate::domain::{Batch, BatchId};
use crate::formats::printer_file;
use crate::jobs::ProgressFn;

/// Output format: text for people, JSON for scripts.
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

/// Text from storage made safe to print in a terminal: control characters (ESC and the rest of
/// Cc), format characters (bidi overrides and isolates, zero-width characters) and line or
/// paragraph separators are shown as escapes such as `\u{1b}`, so a stored escape sequence
/// cannot drive the reader's terminal or reorder the columns after it. JSON escapes on its own.
pub(super) fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unprintable) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if is_unprintable(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

fn is_unprintable(c: char) -> bool {
    use GeneralCategory as G;
    matches!(
        c.general_category(),
        G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator | G::Surrogate
    )
}

/// Prints rows under a header, each column as wide as its widest cell; every cell goes through
/// [`visible`], since cells hold text from storage.
pub(super) fn print_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows
        .map(|row| row.iter().map(|cell| visible(cell).into_owned()).collect())
        .collect();
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
        visible(&b.requested_by)
    );
    println!(
        "  printer file {}",
        b.export_mac
            .as_deref()
            .map_or("not complete".into(), |mac| format!(
                "{} (MAC {})",
                printer_file::file_name(b.id),
                visible(mac)
            ))
    );
    if let Some(failure) = &b.failure {
        println!("  failed       {}", visible(failure));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escape_sequence_is_shown_not_sent_to_the_terminal() {
        assert_eq!(
            visible("cli:\u{1b}]0;owned\u{7}\u{1b}[2J"),
            "cli:\\u{1b}]0;owned\\u{7}\\u{1b}[2J"
        );
    }

    #[test]
    fn bidi_zero_width_and_line_breaking_characters_are_shown_as_escapes() {
        assert_eq!(
            visible("a\u{202e}b\u{2066}c\u{200b}d\u{feff}e\u{2028}f\ng\th\u{85}"),
            "a\\u{202e}b\\u{2066}c\\u{200b}d\\u{feff}e\\u{2028}f\\ng\\th\\u{85}"
        );
    }

    #[test]
    fn printable_text_is_left_as_it_is() {
        for text in [
            "Acme",
            "Caf\u{e9} B\u{fc}cher",
            "\u{410}cme",
            "cli:ren\u{e9}e",
            "",
        ] {
            assert!(
                matches!(visible(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }
}
