//! File formats: bytes to and from domain values, with no database. Each format's layout is
//! known in one file, reader and writer side by side.

pub mod printer_file;
pub mod settlement_csv;
pub mod tradein_csv;
