//! Settlement's report files: CSV with a header row, `\n` line ends and quoting only where a
//! cell needs it, so the same rows always give the same bytes; every cell passes through
//! [`report_cell`], so nothing a retailer, a warehouse or a customer typed runs as a
//! spreadsheet formula.

use crate::domain::report_cell;

/// One report: its header and rows, each row as long as the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file's name.
    pub name: &'static str,
    /// The column names.
    pub header: &'static [&'static str],
    /// The rows.
    pub rows: Vec<Vec<String>>,
}

impl Report {
    /// An empty report.
    pub fn new(name: &'static str, header: &'static [&'static str]) -> Report {
        Report {
            name,
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len(), "{}", self.name);
        self.rows.push(row);
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        // Writing to memory fails only on a row of the wrong length, which `push` rules out.
        writer
            .write_record(self.header)
            .expect("a header writes to memory");
        for row in &self.rows {
            writer
                .write_record(row.iter().map(|cell| report_cell(cell).into_owned()))
                .expect("a row writes to memory");
        }
        writer.into_inner().expect("a memory writer flushes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_plain_csv_with_formulas_defused() {
        let mut report = Report::new("x.csv", &["name", "amount"]);
        report.push(vec!["=cmd|' /C calc'!A0".into(), "-12.50".into()]);
        report.push(vec!["Acme, Inc.".into(), "3".into()]);
        assert_eq!(
            String::from_utf8(report.to_bytes()).unwrap(),
            "name,amount\n'=cmd|' /C calc'!A0,-12.50\n\"Acme, Inc.\",3\n"
        );
    }
}
