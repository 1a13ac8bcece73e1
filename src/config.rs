//! Settings: where the data, keys and printer files live, and which database to use. The CLI
//! fills them from flags and environment variables; keys never come from flags.

use std::path::{Path, PathBuf};

use crate::error::{Classify, Kind};

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "tender-data";

/// Resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Holds the SQLite file and, unless overridden, the keys and printer files.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; `None` for the SQLite file in the data directory.
    pub database_url: Option<String>,
    /// Where the key files are; default `<data_dir>/keys`.
    pub key_dir: Option<PathBuf>,
    /// Where printer files are written; default `<data_dir>/exports`.
    pub export_dir: Option<PathBuf>,
    /// Where settlement reports are written; default `<data_dir>/reports`.
    pub report_dir: Option<PathBuf>,
    /// Where job definitions that replace the built-in ones are; `None` for the built-in ones.
    pub jobs_dir: Option<PathBuf>,
    /// The witness file this host's seals are appended to; default `<data_dir>/audit.witness`.
    pub witness_file: Option<PathBuf>,
    /// The oldest the newest witnessed seal may be when the trail is verified.
    pub seal_age_max: SealAgeMax,
    /// The largest support adjustment posted without a second person's approval.
    pub approval_over: ApprovalThreshold,
    /// How many redemption attempts an account and a caller may make per hour and per day.
    pub redeem_limits: RedeemLimits,
    /// Whether every refusal a customer can meet reads as one `redeem.not_redeemable` (the
    /// attempt log keeps the real reason), for operators who prefer not to reveal a card's
    /// state.
    pub redeem_generic: bool,
    /// The time zone whose midnight ends a business day: per-day amounts count in it.
    pub business_time_zone: BusinessTimeZone,
    /// The most a warehouse's trade-in credits come to in a business day before the rest wait
    /// for finance.
    pub tradein_daily_amount: TradeInDailyAmount,
    /// The US state the issuer is incorporated in: owed an expired card's funds, under its
    /// unclaimed-property law, when the purchaser's address state is unknown or claims none.
    pub issuer_state: IssuerState,
    /// How long the job runner keeps finished jobs before the purge removes them.
    pub finished_jobs_keep: KeepDays,
    /// Where customers reach tender's page: sign-in links are built on it, and an `https` one
    /// marks the session cookie Secure.
    pub public_url: PublicUrl,
    /// The header a trusted proxy in front of tender puts the customer's address in; `None`
    /// when customers reach tender directly and the socket's peer is the customer.
    pub client_address_header: Option<ClientAddressHeader>,
}

impl Settings {
    /// Settings that keep everything in `data_dir`.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            data_dir: data_dir.into(),
            database_url: None,
            key_dir: None,
            export_dir: None,
            report_dir: None,
            jobs_dir: None,
            witness_file: None,
            seal_age_max: SealAgeMax::default(),
            approval_over: ApprovalThreshold::default(),
            redeem_limits: RedeemLimits::default(),
            redeem_generic: false,
            business_time_zone: BusinessTimeZone::default(),
            tradein_daily_amount: TradeInDailyAmount::default(),
            issuer_state: IssuerState::default(),
            finished_jobs_keep: KeepDays::default(),
            public_url: PublicUrl::default(),
            client_address_header: None,
        }
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tender.db").display()))
    }

    /// Which database the URL names; refuses any scheme but the two tender speaks.
    pub fn database(&self) -> Result<Database, ConfigError> {
        Database::parse(&self.database_url())
    }

    /// The key directory in force.
    pub fn key_dir(&self) -> PathBuf {
        self.key_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys"))
    }

    /// The printer file directory in force.
    pub fn export_dir(&self) -> PathBuf {
        self.export_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("exports"))
    }

    /// The settlement report directory in force.
    pub fn report_dir(&self) -> PathBuf {
        self.report_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("reports"))
    }

    /// The witness file in force.
    pub fn witness_file(&self) -> PathBuf {
        self.witness_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit.witness"))
    }

    /// The jobs directory, if any.
    pub fn jobs_dir(&self) -> Option<&Path> {
        self.jobs_dir.as_deref()
    }
}

/// The oldest the newest witnessed seal may be: from one minute to a year, written as a
/// number and a unit (`90m`, `25h`, `7d`). A longer bound would let a stale witness (or a
/// sealer that stopped) pass for years; a shorter one would fail between two seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealAgeMax(chrono::Duration);

impl SealAgeMax {
    /// The default: a day and an hour, for a daily seal with slack.
    pub const DEFAULT_TEXT: &'static str = "25h";
    const MIN_SECONDS: i64 = 60;
    const MAX_SECONDS: i64 = 366 * 86_400;

    /// Parses `<number><s|m|h|d>`.
    pub fn parse(text: &str) -> Result<SealAgeMax, ConfigError> {
        let bad = || ConfigError::BadSealAgeMax(text.chars().take(32).collect());
        let unit = text.chars().last().ok_or_else(bad)?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let number: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        let seconds = number.checked_mul(scale).ok_or_else(bad)?;
        if !(Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&seconds) {
            return Err(bad());
        }
        Ok(SealAgeMax(chrono::Duration::seconds(seconds)))
    }

    /// The bound.
    pub fn get(self) -> chrono::Duration {
        self.0
    }
}

impl Default for SealAgeMax {
    fn default() -> Self {
        SealAgeMax::parse(Self::DEFAULT_TEXT).expect("the default parses")
    }
}

impl std::str::FromStr for SealAgeMax {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SealAgeMax::parse(text)
    }
}

/// The largest support adjustment posted without a second person's approval, in major units
/// of the account's currency (`100` is 100.00 USD, or 100 JPY); from 0 (every adjustment
/// waits) to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalThreshold(rust_decimal::Decimal);

impl ApprovalThreshold {
    /// The default: 100 major units.
    pub const DEFAULT_TEXT: &'static str = "100";
    const MAX: i64 = 1_000_000;

    /// Parses a plain decimal number from 0 to 1,000,000.
    pub fn parse(text: &str) -> Result<ApprovalThreshold, ConfigError> {
        let bad = || ConfigError::BadApprovalThreshold(text.chars().take(32).collect());
        let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let value: rust_decimal::Decimal =
            plain.then(|| text.parse().ok()).flatten().ok_or_else(bad)?;
        if value > rust_decimal::Decimal::from(Self::MAX) {
            return Err(bad());
        }
        Ok(ApprovalThreshold(value))
    }

    /// The threshold.
    pub fn get(self) -> rust_decimal::Decimal {
        self.0
    }
}

impl Default for ApprovalThreshold {
    fn default() -> Self {
        ApprovalThreshold::parse(Self::DEFAULT_TEXT).expect("the default parses")
    }
}

impl std::str::FromStr for ApprovalThreshold {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ApprovalThreshold::parse(text)
    }
}

/// The US state of the issuer's incorporation, ISO 3166-2: the second priority rule for which
/// state is owed an expired card's funds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerState(crate::domain::Jurisdiction);

impl IssuerState {
    /// The default: Delaware, where most US issuers are incorporated.
    pub const DEFAULT_TEXT: &'static str = "US-DE";

    /// Parses a US state code such as `US-DE`.
    pub fn parse(text: &str) -> Result<IssuerState, ConfigError> {
        crate::domain::Jurisdiction::parse(text)
            .ok()
            .filter(|state| state.country().as_str() == "US")
            .map(IssuerState)
            .ok_or_else(|| ConfigError::BadIssuerState(text.chars().take(16).collect()))
    }

    /// The state.
    pub fn get(&self) -> &crate::domain::Jurisdiction {
        &self.0
    }
}

impl Default for IssuerState {
    fn default() -> Self {
        IssuerState::parse(Self::DEFAULT_TEXT).expect("the default parses")
    }
}

impl std::str::FromStr for IssuerState {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        IssuerState::parse(text)
    }
}

/// A retention in whole days, `<n>d`, from 1 to 3,650 (ten years: beyond it a slip of digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepDays(u32);

impl KeepDays {
    /// The default for finished jobs: two weeks, long enough to look into last week's runs.
    pub const DEFAULT_TEXT: &'static str = "14d";
    const MAX: u32 = 3_650;

    /// Parses `<n>d`.
    pub fn parse(text: &str) -> Result<KeepDays, ConfigError> {
        text.strip_suffix('d')
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=Self::MAX).contains(n))
            .map(KeepDays)
            .ok_or_else(|| ConfigError::BadKeepDays(text.chars().take(16).collect()))
    }

    /// The retention.
    pub fn get(self) -> chrono::TimeDelta {
        chrono::TimeDelta::days(i64::from(self.0))
    }
}

impl Default for KeepDays {
    fn default() -> Self {
        KeepDays::parse(Self::DEFAULT_TEXT).expect("the default parses")
    }
}

impl std::str::FromStr for KeepDays {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        KeepDays::parse(text)
    }
}

/// The IANA time zone (`America/New_York`) whose midnight ends tender's business day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessTimeZone(chrono_tz::Tz);

impl BusinessTimeZone {
    /// The default: UTC.
    pub const DEFAULT_TEXT: &'static str = "UTC";

    /// Parses an IANA zone name.
    pub fn parse(text: &str) -> Result<BusinessTimeZone, ConfigError> {
        text.parse()
            .map(BusinessTimeZone)
            .map_err(|_| ConfigError::BadTimeZone(text.chars().take(64).collect()))
    }

    /// The zone.
    pub fn get(self) -> chrono_tz::Tz {
        self.0
    }

    /// The business day `at` falls in.
    pub fn day_of(self, at: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDate {
        at.with_timezone(&self.0).date_naive()
    }
}

impl Default for BusinessTimeZone {
    fn default() -> Self {
        BusinessTimeZone(chrono_tz::UTC)
    }
}

impl std::str::FromStr for BusinessTimeZone {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        BusinessTimeZone::parse(text)
    }
}

/// The most one warehouse's trade-in credits come to in one business day, per currency, in
/// major units of the credit's currency (`10000` is 10,000.00 USD); credits past it wait for
/// finance. From 0 (every credit waits) to 100,000,000: a ceiling on a compromised or broken
/// warehouse feed, not a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeInDailyAmount(rust_decimal::Decimal);

impl TradeInDailyAmount {
    /// The default: 10,000 major units.
    pub const DEFAULT_TEXT: &'static str = "10000";
    const MAX: i64 = 100_000_000;

    /// Parses a plain decimal number from 0 to 100,000,000.
    pub fn parse(text: &str) -> Result<TradeInDailyAmount, ConfigError> {
        let bad = || ConfigError::BadDailyAmount(text.chars().take(32).collect());
        let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let value: rust_decimal::Decimal =
            plain.then(|| text.parse().ok()).flatten().ok_or_else(bad)?;
        if value > rust_decimal::Decimal::from(Self::MAX) {
            return Err(bad());
        }
        Ok(TradeInDailyAmount(value))
    }

    /// The amount.
    pub fn get(self) -> rust_decimal::Decimal {
        self.0
    }
}

impl Default for TradeInDailyAmount {
    fn default() -> Self {
        TradeInDailyAmount::parse(Self::DEFAULT_TEXT).expect("the default parses")
    }
}

impl std::str::FromStr for TradeInDailyAmount {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TradeInDailyAmount::parse(text)
    }
}

/// Attempts allowed in an hour and in a day (fixed windows aligned to the Unix epoch, UTC),
/// written `HOURLY/DAILY` (`5/20`); each from 1 to 1,000,000, the daily at least the hourly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Attempts per hour.
    pub hour: u32,
    /// Attempts per day.
    pub day: u32,
}

impl WindowLimits {
    const MAX: u32 = 1_000_000;

    /// Parses `HOURLY/DAILY`.
    pub fn parse(text: &str) -> Result<WindowLimits, ConfigError> {
        let bad = || ConfigError::BadWindowLimits(text.chars().take(32).collect());
        let (hour, day) = text.split_once('/').ok_or_else(bad)?;
        let number = |t: &str| -> Result<u32, ConfigError> {
            let plain = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            let n: u32 = plain.then(|| t.parse().ok()).flatten().ok_or_else(bad)?;
            (1..=Self::MAX).contains(&n).then_some(n).ok_or_else(bad)
        };
        let (hour, day) = (number(hour)?, number(day)?);
        if day < hour {
            return Err(bad());
        }
        Ok(WindowLimits { hour, day })
    }
}

impl std::str::FromStr for WindowLimits {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        WindowLimits::parse(text)
    }
}

/// The guessing limits on redemption (security.md 1.3): every attempt with a well-formed code
/// takes a slot in its account's windows and in its caller's, and a success gives it back, so
/// the limits count failures. An account is one customer: 5 an hour and 20 a day leave room for
/// typos and make guessing a 16-digit code hopeless. A caller (`cli:<user>`, later an API key or
/// the store's redeem service) may serve many customers, so it gets far more: it is throttled,
/// never a global lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeemLimits {
    /// Per customer account.
    pub account: WindowLimits,
    /// Per caller.
    pub caller: WindowLimits,
    /// Per end-user address, for the customer's page: an IPv4 address or an IPv6 /64.
    pub address: WindowLimits,
}

impl RedeemLimits {
    /// The default per account: 5 an hour, 20 a day.
    pub const ACCOUNT_DEFAULT_TEXT: &'static str = "5/20";
    /// The default per caller: 1,000 an hour, 10,000 a day.
    pub const CALLER_DEFAULT_TEXT: &'static str = "1000/10000";
    /// The default per end-user address: 20 an hour, 100 a day. A household or an office
    /// shares one address, so it is a few accounts' worth; one guesser opening many accounts
    /// behind one address is held to it.
    pub const ADDRESS_DEFAULT_TEXT: &'static str = "20/100";
}

impl Default for RedeemLimits {
    fn default() -> Self {
        RedeemLimits {
            account: WindowLimits::parse(Self::ACCOUNT_DEFAULT_TEXT).expect("the default parses"),
            caller: WindowLimits::parse(Self::CALLER_DEFAULT_TEXT).expect("the default parses"),
            address: WindowLimits::parse(Self::ADDRESS_DEFAULT_TEXT).expect("the default parses"),
        }
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// `sqlite://PATH`: the embedded default.
    Sqlite,
    /// `postgres://…` or `postgresql://…`: production, shared by many processes.
    Postgres,
}

impl Database {
    /// The database a URL names, from its scheme.
    pub fn parse(url: &str) -> Result<Database, ConfigError> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("sqlite") => Ok(Database::Sqlite),
            Some("postgres" | "postgresql") => Ok(Database::Postgres),
            _ => Err(ConfigError::UnknownScheme),
        }
    }
}

/// Why the settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The database URL's scheme is neither SQLite's nor PostgreSQL's.
    #[error("the database URL must start with sqlite:// or postgres://")]
    UnknownScheme,
    /// The approval threshold is not a plain number within its range.
    #[error("approval threshold {0:?} is not a plain number from 0 to 1000000")]
    BadApprovalThreshold(String),
    /// The seal age bound is not a number and a unit within its range.
    #[error(
        "seal age bound {0:?} is not a number and a unit (s, m, h, d) from 1 minute to 366 days"
    )]
    BadSealAgeMax(String),
    /// A redemption limit is not `HOURLY/DAILY` within its range.
    #[error(
        "redemption limit {0:?} is not HOURLY/DAILY, each from 1 to 1000000 and the daily at least the hourly"
    )]
    BadWindowLimits(String),
    /// The business time zone is not an IANA zone name.
    #[error("time zone {0:?} is not an IANA zone name such as America/New_York or UTC")]
    BadTimeZone(String),
    /// The trade-in daily amount is not a plain number within its range.
    #[error("trade-in daily amount {0:?} is not a plain number from 0 to 100000000")]
    BadDailyAmount(String),
    /// The issuer's state is not a US state.
    #[error("issuer state {0:?} is not a US state, ISO 3166-2, such as US-DE")]
    BadIssuerState(String),
    /// A retention is not a number of days within its range.
    #[error("retention {0:?} is not a number of days and d, from 1d to 3650d, such as 14d")]
    BadKeepDays(String),
    /// The public URL is not an http or https origin.
    #[error(
        "public URL {0:?} is not an http:// or https:// origin such as https://gifts.example.com, without path, query or fragment"
    )]
    BadPublicUrl(String),
    /// The client address header is not a header name.
    #[error("client address header {0:?} is not an HTTP header name such as X-Forwarded-For")]
    BadClientAddressHeader(String),
}

impl Classify for ConfigError {
    fn code(&self) -> &'static str {
        match self {
            ConfigError::UnknownScheme => "config.unknown_scheme",
            ConfigError::BadSealAgeMax(_) => "config.bad_seal_age_max",
            ConfigError::BadApprovalThreshold(_) => "config.bad_approval_threshold",
            ConfigError::BadWindowLimits(_) => "config.bad_redeem_limit",
            ConfigError::BadTimeZone(_) => "config.bad_time_zone",
            ConfigError::BadDailyAmount(_) => "config.bad_daily_amount",
            ConfigError::BadIssuerState(_) => "config.bad_issuer_state",
            ConfigError::BadKeepDays(_) => "config.bad_retention",
            ConfigError::BadPublicUrl(_) => "config.bad_public_url",
            ConfigError::BadClientAddressHeader(_) => "config.bad_client_address_header",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// Where customers reach tender's page, as `scheme://host[:port]`: sign-in links are this plus
/// `/account/sign-in`. An https URL marks the session cookie
/// Secure (TLS usually ends at a proxy, so tender cannot tell from its own socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// The longest URL accepted: room for any real host and path prefix; a sign-in link is
    /// this plus about 150 characters, under the 2,000 that every browser and mail client
    /// keeps whole.
    pub const MAX_CHARS: usize = 200;
    /// The default: `tender serve`'s own default address.
    pub const DEFAULT_TEXT: &'static str = "http://127.0.0.1:8080";

    /// Parses an http or https URL without query, fragment or credentials.
    pub fn parse(text: &str) -> Result<PublicUrl, ConfigError> {
        let bad = || ConfigError::BadPublicUrl(text.chars().take(64).collect());
        let trimmed = text.trim().trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .ok_or_else(bad)?;
        // An origin only: the page's own links are absolute paths under `/account`, so a
        // proxy must pass that path through as it is.
        let fine = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
        if trimmed.len() > Self::MAX_CHARS || rest.is_empty() || !rest.chars().all(fine) {
            return Err(bad());
        }
        Ok(PublicUrl(trimmed.to_string()))
    }

    /// The origin, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether customers reach it over TLS.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl Default for PublicUrl {
    fn default() -> Self {
        PublicUrl::parse(Self::DEFAULT_TEXT).expect("the default parses")
    }
}

impl std::str::FromStr for PublicUrl {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PublicUrl::parse(text)
    }
}

/// The header a trusted proxy writes the customer's address into (`X-Forwarded-For`,
/// `X-Real-IP`), lower-cased. Its last address is the one the proxy itself added; anything
/// before it the client could have written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddressHeader(String);

impl ClientAddressHeader {
    /// Parses a header name: 1 to 64 of `A-Z a-z 0-9 -`.
    pub fn parse(text: &str) -> Result<ClientAddressHeader, ConfigError> {
        let name = text.trim();
        let fine = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !fine {
            return Err(ConfigError::BadClientAddressHeader(
                text.chars().take(64).collect(),
            ));
        }
        Ok(ClientAddressHeader(name.to_ascii_lowercase()))
    }

    /// The header's name, lower-cased.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ClientAddressHeader {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ClientAddressHeader::parse(text)
    }
}

/// The URL with any password replaced by `***`, for messages and logs: the one in the authority
/// and a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the first '/', '?' or '#'; its credentials end at its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let tail = redact_query(tail);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => format!("{scheme}://{authority}{tail}"),
        },
        None => format!("{scheme}://{authority}{tail}"),
    }
}

/// Path, query and fragment with the value of every `password` parameter replaced by `***`.
fn redact_query(tail: &str) -> String {
    let Some((path, after)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let (query, fragment) = match after.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (after, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_password_key(key) => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    let fragment = fragment.map_or(String::new(), |f| format!("#{f}"));
    format!("{path}?{}{fragment}", pairs.join("&"))
}

/// Whether a query key is `password` once percent-decoded, as the driver decodes it (so
/// `pass%77ord` counts), in any case.
fn is_password_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    decoded.eq_ignore_ascii_case(b"password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_url_is_an_http_or_https_origin() {
        let url = PublicUrl::parse("https://gifts.example.com/").unwrap();
        assert_eq!(url.as_str(), "https://gifts.example.com");
        assert!(url.is_https());
        assert!(!PublicUrl::parse("http://[::1]:8080").unwrap().is_https());
        for bad in [
            "gifts.example.com",
            "ftp://gifts.example.com",
            "https://",
            "https://gifts.example.com/shop",
            "https://gifts.example.com?x=1",
            "https://user@gifts.example.com",
            "https://gifts.example.com#top",
        ] {
            assert_eq!(
                PublicUrl::parse(bad).unwrap_err().code(),
                "config.bad_public_url",
                "{bad}"
            );
        }
        assert_eq!(
            ClientAddressHeader::parse("X-Forwarded-For")
                .unwrap()
                .as_str(),
            "x-forwarded-for"
        );
        assert!(ClientAddressHeader::parse("X Forwarded").is_err());
        assert!(ClientAddressHeader::parse("").is_err());
    }

    #[test]
    fn only_the_two_schemes_are_accepted() {
        assert_eq!(Database::parse("sqlite://x.db"), Ok(Database::Sqlite));
        assert_eq!(Database::parse("postgres://u@h/db"), Ok(Database::Postgres));
        assert_eq!(
            Database::parse("postgresql://u@h/db"),
            Ok(Database::Postgres)
        );
        for url in ["mysql://u@h/db", "sqlite:x.db", "x.db", ""] {
            let error = Database::parse(url).unwrap_err();
            assert!(
                error.to_string().contains("sqlite:// or postgres://"),
                "{url}"
            );
        }
    }

    #[test]
    fn the_seal_age_bound_is_a_number_and_a_unit_within_range() {
        assert_eq!(SealAgeMax::parse("90m").unwrap().get().num_seconds(), 5_400);
        assert_eq!(SealAgeMax::parse("7d").unwrap().get().num_hours(), 168);
        for bad in [
            "",
            "h",
            "25",
            "59s",
            "367d",
            "-5m",
            "1.5h",
            "9999999999999999999d",
        ] {
            assert!(SealAgeMax::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redemption_limits_are_hourly_over_daily_within_range() {
        assert_eq!(
            WindowLimits::parse("5/20").unwrap(),
            WindowLimits { hour: 5, day: 20 }
        );
        for bad in [
            "5",
            "0/20",
            "20/5",
            "5/",
            "/20",
            "+5/20",
            "5/2000001",
            "5 /20",
        ] {
            assert_eq!(
                WindowLimits::parse(bad).unwrap_err().code(),
                "config.bad_redeem_limit",
                "{bad}"
            );
        }
        assert_eq!(RedeemLimits::default().account.hour, 5);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss:w@rd@h/db?sslmode=require"),
            "postgres://u:***@h/db?sslmode=require"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("sqlite:///tmp/a@b/t.db"),
            "sqlite:///tmp/a@b/t.db"
        );
    }

    #[test]
    fn a_password_query_parameter_is_redacted() {
        assert_eq!(
            redact_url("postgres://u@h/db?password=x&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://h/db?sslmode=require&password=s3cr%26t#frag"),
            "postgres://h/db?sslmode=require&password=***#frag"
        );
        assert_eq!(
            redact_url("postgres://u@h?PASSWORD=x"),
            "postgres://u@h?PASSWORD=***"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?pass%77ord=x"),
            "postgres://u@h/db?pass%77ord=***"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?passwordless=1&user=password"),
            "postgres://u@h/db?passwordless=1&user=password"
        );
    }

    #[test]
    fn both_passwords_are_redacted_and_the_authority_ends_at_its_last_at_sign() {
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db?password=p@ss"),
            "postgres://u:***@h/db?password=***"
        );
    }
}
