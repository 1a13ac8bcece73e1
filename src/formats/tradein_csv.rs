//! The trade-in CSV dialect warehouses send, read as a stream so that memory stays flat
//! however large the file.
//!
//! The dialect is fixed, never guessed: comma-separated, RFC 4180 quoting (a quoted field may
//! hold commas, quotes doubled, and line breaks), UTF-8 with or without a byte-order mark, LF
//! or CRLF line ends (mixed is fine), a trailing blank line ignored. The first line is a header
//! naming the columns in any order: [`COLUMNS`] are required, [`OPTIONAL_COLUMNS`] may be left
//! out. What makes the file unreadable refuses it as a whole ([`FileError`], each message with
//! the expected header): a semicolon or tab file, a missing, duplicate or unknown column, a row
//! with another number of fields than the header, text that is not UTF-8, broken quoting, a
//! line over [`LINE_BYTES_MAX`], more than [`FILE_ROWS_MAX`] rows or [`FILE_BYTES_MAX`] bytes.
//! What is wrong with one row's values is that row's result, found by
//! [`crate::domain::Valuation::parse`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::rc::Rc;

use csv::{ByteRecord, ReaderBuilder};

use crate::domain::ValuationText;
use crate::error::{Classify, Kind};

/// The columns every file has, in the order the rejects file and the documentation list them.
pub const COLUMNS: [&str; 9] = [
    "trade_in_id",
    "account_id",
    "warehouse_id",
    "device_model",
    "device_id",
    "grade",
    "value",
    "currency",
    "assessed_at",
];

/// Columns a file may leave out: `revaluation` (empty or absent is false) and `region` (the
/// storefront country the trade-in was quoted in; when given, the account's must match).
pub const OPTIONAL_COLUMNS: [&str; 2] = ["revaluation", "region"];

/// The most rows one file holds: a large warehouse's month, and the figure the import is
/// measured at. Larger files are split by the sender.
pub const FILE_ROWS_MAX: u64 = 1_000_000;

/// The most bytes one file holds: [`FILE_ROWS_MAX`] rows of about 150 bytes, with room.
pub const FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// The longest line (a row, quoted line breaks included) read: ten fields of at most
/// [`crate::domain::FIELD_MAX_BYTES`] fit many times over. A longer one cannot be a row of
/// ours, and refusing it bounds the memory one row takes.
pub const LINE_BYTES_MAX: u64 = 64 * 1024;

/// Why a file was refused as a whole; no row of it is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// No header at all.
    #[error("the file is empty; the first line is the header: {expected}", expected = expected())]
    Empty,
    /// The header is one field holding semicolons or tabs.
    #[error(
        "the file is separated by {0}, not commas; the first line is the header: {expected}",
        expected = expected()
    )]
    Separator(&'static str),
    /// A required column is not in the header.
    #[error("the header has no `{0}` column; the header is: {expected}", expected = expected())]
    MissingColumn(&'static str),
    /// A column is named twice.
    #[error("the header names `{0}` twice; the header is: {expected}", expected = expected())]
    DuplicateColumn(&'static str),
    /// A column tender does not read (its name is not repeated: it could be anything).
    #[error("the header's column {0} is not one of ours; the header is: {expected}", expected = expected())]
    UnknownColumn(usize),
    /// A row with another number of fields than the header.
    #[error("line {line} has {found} fields where the header has {wanted}; the header is: {expected}", expected = expected())]
    Ragged {
        /// Its line.
        line: u64,
        /// Fields it has.
        found: usize,
        /// Fields the header has.
        wanted: usize,
    },
    /// Bytes that are not UTF-8.
    #[error("line {0} is not UTF-8 text; save the file as UTF-8 (with or without a BOM)")]
    NotUtf8(u64),
    /// Broken quoting or another fault the CSV parser cannot read past.
    #[error("line {0} cannot be read as CSV; the header is: {expected}", expected = expected())]
    Unreadable(u64),
    /// A line over [`LINE_BYTES_MAX`].
    #[error("line {0} is longer than {LINE_BYTES_MAX} bytes: no row of ours is")]
    LineTooLong(u64),
    /// More than [`FILE_ROWS_MAX`] rows.
    #[error("the file has more than {FILE_ROWS_MAX} rows; split it")]
    TooManyRows,
    /// More than [`FILE_BYTES_MAX`] bytes.
    #[error("the file is larger than {FILE_BYTES_MAX} bytes; split it")]
    TooLarge,
    /// The file could not be read (the upload broke off).
    #[error("the file could not be read to its end")]
    Io,
}

impl Classify for FileError {
    fn code(&self) -> &'static str {
        match self {
            FileError::Empty => "tradein_file.empty",
            FileError::Separator(_) => "tradein_file.separator",
            FileError::MissingColumn(_) => "tradein_file.missing_column",
            FileError::DuplicateColumn(_) => "tradein_file.duplicate_column",
            FileError::UnknownColumn(_) => "tradein_file.unknown_column",
            FileError::Ragged { .. } => "tradein_file.ragged",
            FileError::NotUtf8(_) => "tradein_file.not_utf8",
            FileError::Unreadable(_) => "tradein_file.unreadable",
            FileError::LineTooLong(_) => "tradein_file.line_too_long",
            FileError::TooManyRows => "tradein_file.too_many_rows",
            FileError::TooLarge => "tradein_file.too_large",
            FileError::Io => "tradein_file.io",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            FileError::Io => Kind::Transient,
            _ => Kind::Invalid,
        }
    }
}

/// The header a file must have, as the messages quote it.
pub fn expected() -> String {
    format!(
        "{},{} (any order; {} optional)",
        COLUMNS.join(","),
        OPTIONAL_COLUMNS.join(","),
        OPTIONAL_COLUMNS.join(", ")
    )
}

/// Which limit a [`Bounded`] reader hit.
#[derive(Debug)]
enum Limit {
    File,
    Line,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::File => "file limit",
            Limit::Line => "line limit",
        })
    }
}

impl std::error::Error for Limit {}

/// The source, cut off at [`FILE_BYTES_MAX`], and at [`LINE_BYTES_MAX`] beyond the end of the
/// last row the parser finished (plus what one read may hold), so a gigantic field never
/// fills memory.
struct Bounded<R> {
    inner: R,
    read: u64,
    /// Where the parser's last complete row ended, in bytes.
    row_end: Rc<Cell<u64>>,
    /// The offsets of the line feeds read and not yet passed by the parser: the parser's own
    /// line count is off by one after a CRLF, so lines are counted here.
    newlines: Rc<RefCell<VecDeque<u64>>>,
}

/// The most one read hands the parser: its buffer's size.
const READ_CHUNK: u64 = 64 * 1024;

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > FILE_BYTES_MAX {
            return Err(io::Error::other(Limit::File));
        }
        if self.read - self.row_end.get() > LINE_BYTES_MAX + READ_CHUNK {
            return Err(io::Error::other(Limit::Line));
        }
        let n = self.inner.read(buf)?;
        let mut newlines = self.newlines.borrow_mut();
        let start = self.read;
        newlines.extend(
            buf[..n]
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| start + i as u64),
        );
        self.read += n as u64;
        Ok(n)
    }
}

/// Where each field of a row is, by the header: how a row's cells, read from the file or
/// stored, are taken apart by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    columns: [usize; COLUMNS.len()],
    revaluation: Option<usize>,
    region: Option<usize>,
    width: usize,
}

impl Positions {
    /// The positions a header gives, or why it is refused.
    pub fn of(header: &[String]) -> Result<Positions, FileError> {
        positions(header)
    }

    /// Where the device column is.
    pub fn device(&self) -> usize {
        self.columns[4]
    }

    /// A row's fields by name from its cells, in the header's order.
    pub fn text<'a>(&self, cells: &'a [String]) -> ValuationText<'a> {
        let field = |i: usize| cells.get(i).map_or("", String::as_str);
        let [
            trade_in_id,
            account_id,
            warehouse_id,
            device_model,
            device_id,
            grade,
            value,
            currency,
            assessed_at,
        ] = self.columns.map(field);
        ValuationText {
            trade_in_id,
            account_id,
            warehouse_id,
            device_model,
            device_id,
            grade,
            value,
            currency,
            assessed_at,
            revaluation: self.revaluation.map_or("", field),
            region: self.region.map_or("", field),
        }
    }
}

/// One row as the file holds it: its line and its fields, each checked as UTF-8.
#[derive(Debug, Clone)]
pub struct Row {
    line: u64,
    record: ByteRecord,
    positions: Positions,
}

impl Row {
    /// The line the row starts on (the header is line 1).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Its fields by name, as [`crate::domain::Valuation::parse`] reads them.
    pub fn text(&self) -> ValuationText<'_> {
        let field = |i: usize| {
            std::str::from_utf8(&self.record[i]).expect("the reader checked the row as UTF-8")
        };
        let [
            trade_in_id,
            account_id,
            warehouse_id,
            device_model,
            device_id,
            grade,
            value,
            currency,
            assessed_at,
        ] = self.positions.columns.map(field);
        ValuationText {
            trade_in_id,
            account_id,
            warehouse_id,
            device_model,
            device_id,
            grade,
            value,
            currency,
            assessed_at,
            revaluation: self.positions.revaluation.map_or("", field),
            region: self.positions.region.map_or("", field),
        }
    }

    /// Its fields in the file's own order, as owned strings, for staging.
    pub fn cells(&self) -> Vec<String> {
        self.fields().map(str::to_string).collect()
    }

    /// Its fields in the file's own order, for the rejects file.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.record
            .iter()
            .map(|f| std::str::from_utf8(f).expect("the reader checked the row as UTF-8"))
    }
}

/// A file's rows, one at a time.
pub struct Reader<R: Read> {
    csv: csv::Reader<Bounded<R>>,
    row_end: Rc<Cell<u64>>,
    newlines: Rc<RefCell<VecDeque<u64>>>,
    /// Line feeds passed so far.
    lines_passed: u64,
    positions: Positions,
    /// The file's header in its own order, for the rejects file.
    header: Vec<String>,
    rows: u64,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header.
    pub fn new(source: R) -> Result<Reader<R>, FileError> {
        let row_end = Rc::new(Cell::new(0));
        let newlines = Rc::new(RefCell::new(VecDeque::new()));
        let bounded = Bounded {
            inner: source,
            read: 0,
            row_end: Rc::clone(&row_end),
            newlines: Rc::clone(&newlines),
        };
        let csv = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(READ_CHUNK as usize)
            .from_reader(bounded);
        let mut reader = Reader {
            csv,
            row_end,
            newlines,
            lines_passed: 0,
            positions: Positions {
                columns: [0; COLUMNS.len()],
                revaluation: None,
                region: None,
                width: 0,
            },
            header: Vec::new(),
            rows: 0,
        };
        let mut record = ByteRecord::new();
        if !reader.read_record(&mut record)? {
            return Err(FileError::Empty);
        }
        reader.header = header_names(&record)?;
        reader.positions = positions(&reader.header)?;
        Ok(reader)
    }

    /// The header as the file wrote it.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Where the header puts each field.
    pub fn positions(&self) -> Positions {
        self.positions
    }

    /// The next row, or `None` at the end. Blank lines (a trailing one, say) are skipped by
    /// the parser; a line of spaces is a row of one field, and so ragged.
    pub fn next_row(&mut self) -> Result<Option<Row>, FileError> {
        let mut record = ByteRecord::new();
        if !self.read_record(&mut record)? {
            return Ok(None);
        }
        let line = self.line_at(record.position().map_or(0, |p| p.byte()));
        if record.len() != self.positions.width {
            return Err(FileError::Ragged {
                line,
                found: record.len(),
                wanted: self.positions.width,
            });
        }
        if record
            .iter()
            .any(|field| std::str::from_utf8(field).is_err())
        {
            return Err(FileError::NotUtf8(line));
        }
        self.rows += 1;
        if self.rows > FILE_ROWS_MAX {
            return Err(FileError::TooManyRows);
        }
        Ok(Some(Row {
            line,
            record,
            positions: self.positions,
        }))
    }

    /// The line (from 1) of the byte at `offset`: one more than the line feeds before it. A
    /// line feed at the offset itself is the tail of a CRLF the parser ended a row at.
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut newlines = self.newlines.borrow_mut();
        while newlines.front().is_some_and(|at| *at <= offset) {
            newlines.pop_front();
            self.lines_passed += 1;
        }
        self.lines_passed + 1
    }

    /// Reads one record, mapping the parser's faults and the limits to [`FileError`].
    fn read_record(&mut self, record: &mut ByteRecord) -> Result<bool, FileError> {
        let last_line = self.line_at(self.csv.position().byte());
        match self.csv.read_byte_record(record) {
            Ok(more) => {
                self.row_end.set(self.csv.position().byte());
                Ok(more)
            }
            Err(error) => Err(match error.into_kind() {
                csv::ErrorKind::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref()) {
                    Some(Limit::File) => FileError::TooLarge,
                    Some(Limit::Line) => FileError::LineTooLong(last_line),
                    None => FileError::Io,
                },
                _ => FileError::Unreadable(last_line),
            }),
        }
    }
}

/// The header's names, the byte-order mark dropped; a header of one field holding semicolons
/// or tabs is the wrong separator.
fn header_names(record: &ByteRecord) -> Result<Vec<String>, FileError> {
    let mut names = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let field = if i == 0 {
            field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
        } else {
            field
        };
        let name = std::str::from_utf8(field).map_err(|_| FileError::NotUtf8(1))?;
        names.push(name.to_string());
    }
    if let [only] = names.as_slice() {
        if only.contains(';') {
            return Err(FileError::Separator("semicolons"));
        }
        if only.contains('\t') {
            return Err(FileError::Separator("tabs"));
        }
    }
    Ok(names)
}

/// Where each column is: every required one once, optional ones at most once, nothing else.
fn positions(names: &[String]) -> Result<Positions, FileError> {
    let mut columns = [None; COLUMNS.len()];
    let mut optional = [None; OPTIONAL_COLUMNS.len()];
    for (i, name) in names.iter().enumerate() {
        let slot = if let Some(c) = COLUMNS.iter().position(|c| c == name) {
            (&mut columns[c], COLUMNS[c])
        } else if let Some(o) = OPTIONAL_COLUMNS.iter().position(|c| c == name) {
            (&mut optional[o], OPTIONAL_COLUMNS[o])
        } else {
            return Err(FileError::UnknownColumn(i + 1));
        };
        if slot.0.replace(i).is_some() {
            return Err(FileError::DuplicateColumn(slot.1));
        }
    }
    let mut found = [0; COLUMNS.len()];
    for (c, position) in columns.iter().enumerate() {
        found[c] = position.ok_or(FileError::MissingColumn(COLUMNS[c]))?;
    }
    Ok(Positions {
        columns: found,
        revaluation: optional[0],
        region: optional[1],
        width: names.len(),
    })
}

/// A cell as a report writes it, so that no spreadsheet runs it as a formula: a plain decimal
/// number (`-?[0-9]+(\.[0-9]+)?`) as it is; any other text that begins with `=`, `+`, `-`, `@`,
/// a tab or a carriage return behind a leading single quote (OWASP's CSV injection rule).
pub fn guarded(cell: &str) -> std::borrow::Cow<'_, str> {
    let plain_number = {
        let digits = cell.strip_prefix('-').unwrap_or(cell);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
        let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        all_digits(whole) && all_digits(fraction)
    };
    if !plain_number && cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// Writes the rejects file: the file's own header with a `reason` column, then each refused row
/// as the file held it with its line and reason, every cell [`guarded`].
pub struct RejectsWriter<W: std::io::Write> {
    csv: csv::Writer<W>,
}

impl<W: std::io::Write> RejectsWriter<W> {
    /// Starts the file with `header` (the upload's own) and `line` and `reason` columns.
    pub fn new(out: W, header: &[String]) -> csv::Result<RejectsWriter<W>> {
        let mut csv = csv::Writer::from_writer(out);
        let names = header.iter().map(|name| guarded(name));
        csv.write_record(
            ["line", "reason"]
                .into_iter()
                .map(std::borrow::Cow::Borrowed)
                .chain(names)
                .map(|cell| cell.into_owned()),
        )?;
        Ok(RejectsWriter { csv })
    }

    /// Goes on with a rejects file whose header an earlier writer wrote (a streamed page).
    pub fn continuing(out: W) -> RejectsWriter<W> {
        RejectsWriter {
            csv: csv::Writer::from_writer(out),
        }
    }

    /// Adds a refused row: its line, the reason, and its fields as the file held them.
    pub fn reject<'a>(
        &mut self,
        line: u64,
        reason: &str,
        fields: impl Iterator<Item = &'a str>,
    ) -> csv::Result<()> {
        self.csv.write_field(line.to_string())?;
        self.csv.write_field(guarded(reason).as_bytes())?;
        for field in fields {
            self.csv.write_field(guarded(field).as_bytes())?;
        }
        self.csv.write_record(None::<&[u8]>)
    }

    /// Flushes and returns the output.
    pub fn finish(self) -> std::io::Result<W> {
        self.csv.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Valuation;

    const HEADER: &str = "trade_in_id,account_id,warehouse_id,device_model,device_id,grade,value,currency,assessed_at";
    const GOOD: &str =
        "TI-1,42,WH-1,iPhone 13,490154203237518,good,215.00,USD,2026-03-01T14:30:00Z";

    fn rows(bytes: &[u8]) -> Result<Vec<Row>, FileError> {
        let mut reader = Reader::new(bytes)?;
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row()? {
            rows.push(row);
        }
        Ok(rows)
    }

    fn refused(bytes: &[u8]) -> FileError {
        rows(bytes).expect_err("the file is refused")
    }

    #[test]
    fn a_clean_file_with_a_bom_mixed_line_ends_and_a_trailing_blank_line_reads_every_row() {
        let file = format!(
            "\u{feff}{HEADER}\r\n{GOOD}\n\"TI-2\",7,WH-1,\"Galaxy S21, 5G\nrefurb\",R58N123ABC,fair,99.5,USD,2026-03-01T09:00:00-05:00\r\n\n"
        );
        let rows = rows(file.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line(), 2);
        assert_eq!(rows[0].text().trade_in_id, "TI-1");
        assert_eq!(rows[1].line(), 3);
        assert_eq!(rows[1].text().device_model, "Galaxy S21, 5G\nrefurb");
        assert_eq!(rows[1].text().revaluation, "");
        // The quoted line break keeps the file readable, and is a control character in the
        // row's model: that row's error alone.
        let error = Valuation::parse(&rows[1].text()).unwrap_err();
        assert_eq!(
            (error.field, error.code()),
            ("device_model", "tradein.control_character")
        );
        let quoted_comma = rows[1].text().device_model.replace('\n', " ");
        assert_eq!(quoted_comma, "Galaxy S21, 5G refurb");
    }

    #[test]
    fn the_header_is_matched_by_name_in_any_order() {
        let file = "revaluation,currency,value,grade,device_id,device_model,warehouse_id,account_id,trade_in_id,assessed_at\n\
                    true,USD,10.00,poor,490154203237518,Pixel 6,WH-1,3,TI-9,2026-03-01T00:00:00Z\n";
        let rows = rows(file.as_bytes()).unwrap();
        let text = rows[0].text();
        assert_eq!(
            (text.trade_in_id, text.account_id, text.revaluation),
            ("TI-9", "3", "true")
        );
        assert_eq!(
            rows[0].fields().next(),
            Some("true"),
            "the file's own order"
        );
    }

    #[test]
    fn a_header_alone_is_a_file_of_no_rows_and_nothing_is_an_empty_file() {
        assert!(rows(format!("{HEADER}\n").as_bytes()).unwrap().is_empty());
        assert_eq!(refused(b""), FileError::Empty);
        assert_eq!(refused(b"\n\n"), FileError::Empty);
    }

    #[test]
    fn another_separator_is_refused_with_the_expected_header() {
        let semicolons = HEADER.replace(',', ";");
        let error = refused(format!("{semicolons}\n").as_bytes());
        assert_eq!(error, FileError::Separator("semicolons"));
        assert!(error.to_string().contains(HEADER), "{error}");
        let tabs = HEADER.replace(',', "\t");
        assert_eq!(
            refused(format!("{tabs}\n").as_bytes()),
            FileError::Separator("tabs")
        );
    }

    #[test]
    fn missing_duplicate_and_unknown_columns_are_refused() {
        let missing = HEADER.replace(",grade", "");
        assert_eq!(
            refused(missing.as_bytes()),
            FileError::MissingColumn("grade")
        );
        let duplicate = format!("{HEADER},grade");
        assert_eq!(
            refused(duplicate.as_bytes()),
            FileError::DuplicateColumn("grade")
        );
        let unknown = format!("{HEADER},=cmd|' /C calc'!A0");
        let error = refused(unknown.as_bytes());
        assert_eq!(error, FileError::UnknownColumn(10));
        assert!(
            !error.to_string().contains("calc"),
            "an unknown name is not repeated"
        );
        let case = HEADER.replace("grade", "Grade");
        assert_eq!(refused(case.as_bytes()), FileError::UnknownColumn(6));
    }

    #[test]
    fn a_ragged_row_refuses_the_file_naming_its_line() {
        let file = format!("{HEADER}\n{GOOD}\n{GOOD},extra\n");
        assert_eq!(
            refused(file.as_bytes()),
            FileError::Ragged {
                line: 3,
                found: 10,
                wanted: 9
            }
        );
        let short = format!("{HEADER}\nTI-1,42\n");
        assert!(matches!(
            refused(short.as_bytes()),
            FileError::Ragged { line: 2, .. }
        ));
        let spaces = format!("{HEADER}\n{GOOD}\n   \n");
        assert!(matches!(
            refused(spaces.as_bytes()),
            FileError::Ragged { line: 3, .. }
        ));
    }

    #[test]
    fn text_that_is_not_utf8_refuses_the_file() {
        let mut file = format!("{HEADER}\n{GOOD}\n").into_bytes();
        file.extend_from_slice(
            b"TI-2,42,WH-1,Caf\xe9 phone,490154203237518,good,1.00,USD,2026-03-01T00:00:00Z\n",
        );
        assert_eq!(refused(&file), FileError::NotUtf8(3));
        let latin1_header = b"trade_in_id\xe9,account_id\n";
        assert_eq!(refused(latin1_header), FileError::NotUtf8(1));
    }

    #[test]
    fn a_nul_byte_and_formula_text_reach_the_row_and_its_rules() {
        let file = format!(
            "{HEADER}\nTI-1,42,WH-1,iPhone\u{0}13,490154203237518,good,1.00,USD,2026-03-01T00:00:00Z\nTI-2,42,WH-1,=1+2,490154203237518,good,1.00,USD,2026-03-01T00:00:00Z\n"
        );
        let rows = rows(file.as_bytes()).unwrap();
        let error = Valuation::parse(&rows[0].text()).unwrap_err();
        assert_eq!(
            (error.field, error.code()),
            ("device_model", "tradein.control_character")
        );
        assert_eq!(
            Valuation::parse(&rows[1].text()).unwrap().model.as_str(),
            "=1+2"
        );
    }

    #[test]
    fn a_gigantic_field_stops_the_read_before_it_fills_memory() {
        let mut file = format!("{HEADER}\n{GOOD}\nTI-2,42,WH-1,").into_bytes();
        file.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        file.extend_from_slice(b",490154203237518,good,1.00,USD,2026-03-01T00:00:00Z\n");
        assert_eq!(refused(&file), FileError::LineTooLong(3));
    }

    #[test]
    fn a_field_over_its_length_within_the_line_limit_is_the_rows_error() {
        let model = "m".repeat(crate::domain::FIELD_MAX_BYTES + 1);
        let file = format!(
            "{HEADER}\nTI-1,42,WH-1,{model},490154203237518,good,1.00,USD,2026-03-01T00:00:00Z\n"
        );
        let rows = rows(file.as_bytes()).unwrap();
        let error = Valuation::parse(&rows[0].text()).unwrap_err();
        assert_eq!(
            (error.field, error.code()),
            ("device_model", "tradein.field_too_long")
        );
    }

    #[test]
    fn a_cell_that_a_spreadsheet_would_run_is_quoted_and_numbers_are_not() {
        for (cell, written) in [
            ("=1+2", "'=1+2"),
            ("+1", "'+1"),
            ("-1+2", "'-1+2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("-25.00", "-25.00"),
            ("25", "25"),
            ("-", "'-"),
            ("-.5", "'-.5"),
            ("iPhone 13", "iPhone 13"),
            ("", ""),
        ] {
            assert_eq!(guarded(cell), written, "{cell:?}");
        }
    }

    #[test]
    fn the_rejects_file_holds_each_refused_row_as_sent_with_its_line_and_reason() {
        let file = format!(
            "{HEADER}\nTI-1,42,WH-1,=HYPERLINK(\"x\"),490154203237519,good,1.00,USD,2026-03-01T00:00:00Z\n"
        );
        let mut reader = Reader::new(file.as_bytes()).unwrap();
        let row = reader.next_row().unwrap().unwrap();
        let error = Valuation::parse(&row.text()).unwrap_err();
        let mut rejects = RejectsWriter::new(Vec::new(), reader.header()).unwrap();
        rejects
            .reject(row.line(), &error.to_string(), row.fields())
            .unwrap();
        let written = String::from_utf8(rejects.finish().unwrap()).unwrap();
        assert_eq!(
            written,
            format!(
                "line,reason,{HEADER}\n2,device_id: the IMEI's check digit is wrong: a digit was mistyped,TI-1,42,WH-1,\"'=HYPERLINK(\"\"x\"\")\",490154203237519,good,1.00,USD,2026-03-01T00:00:00Z\n"
            )
        );
    }
}
