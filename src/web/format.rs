//! Money and dates as a customer reads them on the storefront page, by the account's region.
//!
//! Amounts are formatted from their integer minor units digit by digit, never through a float or
//! a decimal type, so the page shows exactly what the ledger holds. Symbols and numbers are
//! joined with a no-break space (U+00A0), so a line break in the page never parts them.

use chrono::{DateTime, Utc};

use crate::domain::{Currency, Money, Region};

/// The minus sign (U+2212): a hyphen is shorter and reads as a dash in most fonts.
const MINUS: char = '\u{2212}';
/// Between a symbol and its number, so the two stay on one line.
const NBSP: char = '\u{a0}';

/// How a region writes a number and where the currency goes.
#[derive(Clone, Copy)]
struct Layout {
    group: char,
    decimal: char,
    grouping: Grouping,
    symbol: Place,
}

#[derive(Clone, Copy)]
enum Grouping {
    /// 1,234,567
    Thousands,
    /// 12,34,567: lakh and crore, as India reads them.
    Indian,
}

#[derive(Clone, Copy)]
enum Place {
    /// `$1`
    Before,
    /// `CHF 1`
    BeforeSpaced,
    /// `1 €`
    AfterSpaced,
}

/// `$1,234.56`
const EN: Layout = Layout {
    group: ',',
    decimal: '.',
    grouping: Grouping::Thousands,
    symbol: Place::Before,
};
/// `₹1,23,456.78`
const IN: Layout = Layout {
    grouping: Grouping::Indian,
    ..EN
};
/// `1.234,56 €`
const DE: Layout = Layout {
    group: '.',
    decimal: ',',
    grouping: Grouping::Thousands,
    symbol: Place::AfterSpaced,
};
/// `1 234,56 €`, grouped with a narrow no-break space (U+202F).
const FR: Layout = Layout {
    group: '\u{202f}',
    ..DE
};
/// `CHF 1’234.56`, grouped with U+2019.
const CH: Layout = Layout {
    group: '\u{2019}',
    decimal: '.',
    grouping: Grouping::Thousands,
    symbol: Place::BeforeSpaced,
};
/// `€ 1.234,56`
const NL: Layout = Layout {
    symbol: Place::BeforeSpaced,
    ..DE
};
/// `$1.234,56`
const CL: Layout = Layout {
    symbol: Place::Before,
    ..DE
};
/// `1,234.56 USD`: a region outside [`LOCALES`] gets English numbers and the ISO code after
/// them, in the order `Money`'s own `Display` uses.
const FALLBACK: Layout = Layout {
    symbol: Place::AfterSpaced,
    ..EN
};

/// Regions, their layout, and their own currency with its local symbol.
type Locale = (
    &'static [&'static str],
    Layout,
    Option<(Currency, &'static str)>,
);

/// The regions' layouts and, where the region has its own currency, the symbol it reads it by.
///
/// Only the region's own currency gets its local symbol: every other currency is shown by its
/// ISO code, so US dollars in Canada can never pass for Canadian ones. Regions listed without a
/// currency of their own (one this service does not hold) still get their way of writing
/// numbers, since `1,234.56` and `1.234,56` mean different things.
const LOCALES: &[Locale] = &[
    (&["US"], EN, Some((Currency::Usd, "$"))),
    (&["CA"], EN, Some((Currency::Cad, "$"))),
    (&["AU"], EN, Some((Currency::Aud, "$"))),
    (&["NZ"], EN, Some((Currency::Nzd, "$"))),
    (&["GB"], EN, Some((Currency::Gbp, "£"))),
    (&["IE", "MT"], EN, Some((Currency::Eur, "€"))),
    (&["JP"], EN, Some((Currency::Jpy, "¥"))),
    (&["CN"], EN, Some((Currency::Cny, "¥"))),
    (&["HK"], EN, Some((Currency::Hkd, "HK$"))),
    (&["SG"], EN, Some((Currency::Sgd, "$"))),
    (&["KR"], EN, Some((Currency::Krw, "₩"))),
    (&["MX"], EN, Some((Currency::Mxn, "$"))),
    (&["ZA"], EN, Some((Currency::Zar, "R"))),
    (&["IN"], IN, Some((Currency::Inr, "₹"))),
    (
        &[
            "DE", "AT", "ES", "IT", "BE", "LU", "GR", "PT", "HR", "SI", "CY", "SM", "VA", "AD",
            "ME",
        ],
        DE,
        Some((Currency::Eur, "€")),
    ),
    (&["DK"], DE, Some((Currency::Dkk, "kr"))),
    (&["IS"], DE, Some((Currency::Isk, "kr"))),
    (&["VN"], DE, Some((Currency::Vnd, "₫"))),
    (&["RO", "RS"], DE, None),
    (
        &["FR", "FI", "SK", "EE", "LV", "LT", "MC"],
        FR,
        Some((Currency::Eur, "€")),
    ),
    (&["SE"], FR, Some((Currency::Sek, "kr"))),
    (&["NO"], FR, Some((Currency::Nok, "kr"))),
    (&["PL"], FR, Some((Currency::Pln, "zł"))),
    (&["CZ"], FR, Some((Currency::Czk, "Kč"))),
    (&["HU", "BG", "UA"], FR, None),
    (&["CH", "LI"], CH, Some((Currency::Chf, "CHF"))),
    (&["NL"], NL, Some((Currency::Eur, "€"))),
    (&["BR"], NL, Some((Currency::Brl, "R$"))),
    (&["AR", "CO"], NL, None),
    (&["CL"], CL, Some((Currency::Clp, "$"))),
    (&["TR", "ID"], CL, None),
];

/// The amount as a customer in `region` reads it: `$1,234.56` in the US, `1.234,56 €` in
/// Germany, `USD 25.00` for dollars in Canada, `1,234.56 USD` in a region without a layout.
#[must_use]
pub fn money(amount: Money, region: Region) -> String {
    let currency = amount.currency();
    let (layout, symbol) = match LOCALES
        .iter()
        .find(|(codes, ..)| codes.contains(&region.as_str()))
    {
        Some(&(_, layout, Some((own, symbol)))) if own == currency => (layout, symbol),
        Some(&(_, layout, _)) => (layout, currency.code()),
        None => (FALLBACK, currency.code()),
    };
    let place = match layout.symbol {
        // Letters run into the digits otherwise: `USD25.00`.
        Place::Before if symbol == currency.code() => Place::BeforeSpaced,
        place => place,
    };
    let number = number(amount, layout);

    let mut text = String::new();
    if amount.is_negative() {
        text.push(MINUS);
    }
    match place {
        Place::Before => {
            text.push_str(symbol);
            text.push_str(&number);
        }
        Place::BeforeSpaced => {
            text.push_str(symbol);
            text.push(NBSP);
            text.push_str(&number);
        }
        Place::AfterSpaced => {
            text.push_str(&number);
            text.push(NBSP);
            text.push_str(symbol);
        }
    }
    text
}

/// As [`money`], with a `+` before a positive amount, for history lines: `+$25.00`, `−$5.00`.
#[must_use]
pub fn signed_money(amount: Money, region: Region) -> String {
    let text = money(amount, region);
    if amount.is_positive() {
        format!("+{text}")
    } else {
        text
    }
}

/// The digits of the amount's magnitude, grouped, with the currency's decimals.
fn number(amount: Money, layout: Layout) -> String {
    // unsigned_abs: i64::MIN has no positive i64.
    let magnitude = amount.minor().unsigned_abs();
    let scale = 10_u64.pow(amount.currency().minor_units());
    let whole = (magnitude / scale).to_string();

    let mut text = String::new();
    for (i, digit) in whole.char_indices() {
        let left = whole.len() - i;
        let boundary = match layout.grouping {
            Grouping::Thousands => left.is_multiple_of(3),
            Grouping::Indian => left == 3 || (left > 3 && !left.is_multiple_of(2)),
        };
        if i > 0 && boundary {
            text.push(layout.group);
        }
        text.push(digit);
    }
    if scale > 1 {
        text.push(layout.decimal);
        // scale + fraction has one digit too many, the leading 1: 100 + 5 is "105", so "05".
        let fraction = (scale + magnitude % scale).to_string();
        text.push_str(&fraction[1..]);
    }
    text
}

/// The calendar date in English: `Dec 3, 2026` in the US, Canada and the Philippines, `3 Dec
/// 2026` elsewhere.
///
/// The date is the UTC one: the page does not know the customer's time zone, and a region can
/// span several, so no local date would be right for everyone.
#[must_use]
pub fn date(at: DateTime<Utc>, region: Region) -> String {
    // chrono's %b is English unless its unstable-locales feature is on, which it is not here.
    let pattern = match region.as_str() {
        "US" | "CA" | "PH" => "%b %-d, %Y",
        _ => "%-d %b %Y",
    };
    at.format(pattern).to_string()
}

/// The English short name of the region's country, or its two-letter code for a country not in
/// [`COUNTRIES`].
#[must_use]
pub fn country_name(region: Region) -> String {
    COUNTRIES
        .iter()
        .find(|(code, _)| *code == region.as_str())
        .map_or_else(|| region.to_string(), |&(_, name)| name.to_string())
}

/// The most common storefront countries, by code.
const COUNTRIES: &[(&str, &str)] = &[
    ("AE", "United Arab Emirates"),
    ("AR", "Argentina"),
    ("AT", "Austria"),
    ("AU", "Australia"),
    ("BE", "Belgium"),
    ("BG", "Bulgaria"),
    ("BH", "Bahrain"),
    ("BR", "Brazil"),
    ("CA", "Canada"),
    ("CH", "Switzerland"),
    ("CL", "Chile"),
    ("CN", "China"),
    ("CO", "Colombia"),
    ("CY", "Cyprus"),
    ("CZ", "Czechia"),
    ("DE", "Germany"),
    ("DK", "Denmark"),
    ("EE", "Estonia"),
    ("EG", "Egypt"),
    ("ES", "Spain"),
    ("FI", "Finland"),
    ("FR", "France"),
    ("GB", "United Kingdom"),
    ("GR", "Greece"),
    ("HK", "Hong Kong"),
    ("HR", "Croatia"),
    ("HU", "Hungary"),
    ("ID", "Indonesia"),
    ("IE", "Ireland"),
    ("IL", "Israel"),
    ("IN", "India"),
    ("IS", "Iceland"),
    ("IT", "Italy"),
    ("JO", "Jordan"),
    ("JP", "Japan"),
    ("KE", "Kenya"),
    ("KR", "South Korea"),
    ("KW", "Kuwait"),
    ("LI", "Liechtenstein"),
    ("LT", "Lithuania"),
    ("LU", "Luxembourg"),
    ("LV", "Latvia"),
    ("MA", "Morocco"),
    ("MT", "Malta"),
    ("MX", "Mexico"),
    ("MY", "Malaysia"),
    ("NG", "Nigeria"),
    ("NL", "Netherlands"),
    ("NO", "Norway"),
    ("NZ", "New Zealand"),
    ("OM", "Oman"),
    ("PE", "Peru"),
    ("PH", "Philippines"),
    ("PK", "Pakistan"),
    ("PL", "Poland"),
    ("PT", "Portugal"),
    ("QA", "Qatar"),
    ("RO", "Romania"),
    ("RS", "Serbia"),
    ("SA", "Saudi Arabia"),
    ("SE", "Sweden"),
    ("SG", "Singapore"),
    ("SI", "Slovenia"),
    ("SK", "Slovakia"),
    ("TH", "Thailand"),
    ("TN", "Tunisia"),
    ("TR", "Türkiye"),
    ("TW", "Taiwan"),
    ("UA", "Ukraine"),
    ("US", "United States"),
    ("VN", "Vietnam"),
    ("ZA", "South Africa"),
];

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn region(code: &str) -> Region {
        Region::parse(code).unwrap()
    }

    fn shown(minor: i64, currency: Currency, code: &str) -> String {
        money(Money::from_minor(minor, currency), region(code))
    }

    /// Every officially assigned region.
    fn all_regions() -> Vec<Region> {
        (b'A'..=b'Z')
            .flat_map(|a| (b'A'..=b'Z').map(move |b| [a, b]))
            .filter_map(|pair| Region::parse(std::str::from_utf8(&pair).unwrap()).ok())
            .collect()
    }

    #[test]
    fn english_style_regions_put_the_symbol_first_and_group_with_commas() {
        use Currency::*;
        for (code, currency, expected) in [
            ("US", Usd, "$1,234.56"),
            ("CA", Cad, "$1,234.56"),
            ("AU", Aud, "$1,234.56"),
            ("NZ", Nzd, "$1,234.56"),
            ("GB", Gbp, "£1,234.56"),
            ("IE", Eur, "€1,234.56"),
            ("MX", Mxn, "$1,234.56"),
            ("HK", Hkd, "HK$1,234.56"),
        ] {
            assert_eq!(shown(123_456, currency, code), expected, "{code}");
        }
    }

    #[test]
    fn india_groups_in_lakhs_and_crores() {
        assert_eq!(shown(123_456, Currency::Inr, "IN"), "₹1,234.56");
        assert_eq!(shown(12_345_678, Currency::Inr, "IN"), "₹1,23,456.78");
        assert_eq!(shown(1_234_567_890, Currency::Inr, "IN"), "₹1,23,45,678.90");
    }

    #[test]
    fn german_style_regions_group_with_dots_and_put_the_symbol_after() {
        for code in ["DE", "AT", "ES", "IT", "BE", "PT", "GR"] {
            assert_eq!(
                shown(123_456, Currency::Eur, code),
                "1.234,56\u{a0}€",
                "{code}"
            );
        }
        assert_eq!(shown(123_456, Currency::Dkk, "DK"), "1.234,56\u{a0}kr");
    }

    #[test]
    fn french_style_regions_group_with_a_narrow_no_break_space() {
        use Currency::*;
        for (code, currency, expected) in [
            ("FR", Eur, "1\u{202f}234,56\u{a0}€"),
            ("FI", Eur, "1\u{202f}234,56\u{a0}€"),
            ("SE", Sek, "1\u{202f}234,56\u{a0}kr"),
            ("NO", Nok, "1\u{202f}234,56\u{a0}kr"),
            ("PL", Pln, "1\u{202f}234,56\u{a0}zł"),
            ("CZ", Czk, "1\u{202f}234,56\u{a0}Kč"),
        ] {
            assert_eq!(shown(123_456, currency, code), expected, "{code}");
        }
    }

    #[test]
    fn switzerland_puts_the_code_first_and_groups_with_an_apostrophe() {
        assert_eq!(
            shown(123_456, Currency::Chf, "CH"),
            "CHF\u{a0}1\u{2019}234.56"
        );
        assert_eq!(
            shown(123_456, Currency::Chf, "LI"),
            "CHF\u{a0}1\u{2019}234.56"
        );
    }

    #[test]
    fn the_netherlands_and_brazil_put_the_symbol_first_with_a_space() {
        assert_eq!(shown(123_456, Currency::Eur, "NL"), "€\u{a0}1.234,56");
        assert_eq!(shown(123_456, Currency::Brl, "BR"), "R$\u{a0}1.234,56");
    }

    #[test]
    fn a_foreign_currency_is_shown_by_its_code_in_the_regions_style() {
        use Currency::*;
        for (minor, currency, code, expected) in [
            (2_500, Usd, "CA", "USD\u{a0}25.00"),
            (2_500, Cad, "US", "CAD\u{a0}25.00"),
            (2_500, Eur, "US", "EUR\u{a0}25.00"),
            (2_500, Usd, "GB", "USD\u{a0}25.00"),
            (123_456, Usd, "DE", "1.234,56\u{a0}USD"),
            (123_456, Usd, "FR", "1\u{202f}234,56\u{a0}USD"),
            (123_456, Eur, "CH", "EUR\u{a0}1\u{2019}234.56"),
            (123_456, Usd, "NL", "USD\u{a0}1.234,56"),
            (123_456, Usd, "CL", "USD\u{a0}1.234,56"),
            (123_456, Usd, "HU", "1\u{202f}234,56\u{a0}USD"),
        ] {
            assert_eq!(
                shown(minor, currency, code),
                expected,
                "{currency} in {code}"
            );
        }
    }

    #[test]
    fn no_region_shows_a_currency_not_its_own_without_the_code() {
        for region in all_regions() {
            let own = LOCALES
                .iter()
                .find(|(codes, ..)| codes.contains(&region.as_str()))
                .and_then(|&(_, _, own)| own);
            for currency in Currency::ALL {
                let text = money(Money::from_minor(100, currency), region);
                match own {
                    Some((own, symbol)) if own == currency => {
                        assert!(text.contains(symbol), "{text} in {region}");
                    }
                    _ => assert!(text.contains(currency.code()), "{text} in {region}"),
                }
            }
        }
    }

    #[test]
    fn a_region_without_a_layout_gets_english_numbers_and_the_code_after() {
        assert_eq!(shown(123_456, Currency::Usd, "KE"), "1,234.56\u{a0}USD");
        assert_eq!(shown(123_456, Currency::Eur, "AQ"), "1,234.56\u{a0}EUR");
        assert_eq!(shown(-500, Currency::Usd, "KE"), "\u{2212}5.00\u{a0}USD");
    }

    #[test]
    fn zero_and_small_amounts_keep_every_decimal() {
        assert_eq!(shown(0, Currency::Usd, "US"), "$0.00");
        assert_eq!(shown(0, Currency::Eur, "DE"), "0,00\u{a0}€");
        assert_eq!(shown(0, Currency::Jpy, "JP"), "¥0");
        assert_eq!(shown(0, Currency::Kwd, "KW"), "0.000\u{a0}KWD");
        assert_eq!(shown(5, Currency::Usd, "US"), "$0.05");
        assert_eq!(shown(1, Currency::Kwd, "US"), "KWD\u{a0}0.001");
        assert_eq!(shown(99, Currency::Eur, "FR"), "0,99\u{a0}€");
    }

    #[test]
    fn a_negative_amount_has_a_minus_sign_before_everything() {
        assert_eq!(shown(-500, Currency::Usd, "US"), "\u{2212}$5.00");
        assert_eq!(shown(-500, Currency::Eur, "DE"), "\u{2212}5,00\u{a0}€");
        assert_eq!(shown(-500, Currency::Eur, "NL"), "\u{2212}€\u{a0}5,00");
        assert_eq!(shown(-500, Currency::Chf, "CH"), "\u{2212}CHF\u{a0}5.00");
        assert_eq!(shown(-500, Currency::Usd, "CA"), "\u{2212}USD\u{a0}5.00");
        assert_eq!(shown(-1, Currency::Usd, "US"), "\u{2212}$0.01");
    }

    #[test]
    fn signed_money_marks_credits_with_a_plus() {
        let signed =
            |minor, currency, code| signed_money(Money::from_minor(minor, currency), region(code));
        assert_eq!(signed(2_500, Currency::Usd, "US"), "+$25.00");
        assert_eq!(signed(-500, Currency::Usd, "US"), "\u{2212}$5.00");
        assert_eq!(signed(2_500, Currency::Eur, "DE"), "+25,00\u{a0}€");
        assert_eq!(signed(0, Currency::Usd, "US"), "$0.00");
    }

    #[test]
    fn zero_decimal_currencies_have_no_decimal_part() {
        assert_eq!(shown(1_234_567, Currency::Jpy, "JP"), "¥1,234,567");
        assert_eq!(shown(1_234_567, Currency::Jpy, "US"), "JPY\u{a0}1,234,567");
        assert_eq!(shown(1_234_567, Currency::Jpy, "DE"), "1.234.567\u{a0}JPY");
        assert_eq!(shown(50_000, Currency::Krw, "KR"), "₩50,000");
        assert_eq!(shown(1_234, Currency::Clp, "CL"), "$1.234");
    }

    #[test]
    fn three_decimal_currencies_show_three_decimals() {
        assert_eq!(shown(1_234_567, Currency::Kwd, "US"), "KWD\u{a0}1,234.567");
        assert_eq!(shown(1_234_567, Currency::Kwd, "DE"), "1.234,567\u{a0}KWD");
        assert_eq!(shown(1_500, Currency::Bhd, "BH"), "1.500\u{a0}BHD");
    }

    #[test]
    fn millions_are_grouped() {
        assert_eq!(
            shown(123_456_789_012, Currency::Usd, "US"),
            "$1,234,567,890.12"
        );
        assert_eq!(
            shown(123_456_789_012, Currency::Eur, "FR"),
            "1\u{202f}234\u{202f}567\u{202f}890,12\u{a0}€"
        );
        assert_eq!(
            shown(123_456_789_012, Currency::Chf, "CH"),
            "CHF\u{a0}1\u{2019}234\u{2019}567\u{2019}890.12"
        );
        assert_eq!(shown(100_000_000, Currency::Usd, "US"), "$1,000,000.00");
    }

    #[test]
    fn the_i64_extremes_are_formatted_without_overflow() {
        assert_eq!(
            shown(i64::MAX, Currency::Usd, "US"),
            "$92,233,720,368,547,758.07"
        );
        assert_eq!(
            shown(i64::MIN, Currency::Usd, "US"),
            "\u{2212}$92,233,720,368,547,758.08"
        );
        assert_eq!(
            shown(i64::MAX, Currency::Jpy, "JP"),
            "¥9,223,372,036,854,775,807"
        );
        assert_eq!(
            shown(i64::MIN, Currency::Kwd, "KW"),
            "\u{2212}9,223,372,036,854,775.808\u{a0}KWD"
        );
        assert_eq!(
            shown(i64::MAX, Currency::Inr, "IN"),
            "₹92,23,37,20,36,85,47,758.07"
        );
    }

    #[test]
    fn the_us_canada_and_the_philippines_put_the_month_first() {
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        for code in ["US", "CA", "PH"] {
            assert_eq!(date(at, region(code)), "Dec 3, 2026", "{code}");
        }
        for code in ["GB", "DE", "JP", "AU", "KE"] {
            assert_eq!(date(at, region(code)), "3 Dec 2026", "{code}");
        }
    }

    #[test]
    fn dates_use_english_month_abbreviations() {
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for (month, name) in (1..=12).zip(months) {
            let at = Utc.with_ymd_and_hms(2026, month, 25, 0, 0, 0).unwrap();
            assert_eq!(date(at, region("FR")), format!("25 {name} 2026"));
        }
    }

    #[test]
    fn the_date_is_the_utc_date() {
        let last_second = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(date(last_second, region("JP")), "31 Dec 2026");
        assert_eq!(date(last_second, region("US")), "Dec 31, 2026");
    }

    #[test]
    fn common_countries_have_english_names() {
        for (code, name) in [
            ("US", "United States"),
            ("GB", "United Kingdom"),
            ("DE", "Germany"),
            ("KR", "South Korea"),
            ("CZ", "Czechia"),
            ("CH", "Switzerland"),
        ] {
            assert_eq!(country_name(region(code)), name);
        }
    }

    #[test]
    fn other_countries_are_named_by_their_code() {
        for code in ["AQ", "GL", "ZW"] {
            assert_eq!(country_name(region(code)), code);
        }
        for region in all_regions() {
            assert!(!country_name(region).is_empty());
        }
    }

    #[test]
    fn the_tables_name_assigned_regions_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (codes, ..) in LOCALES {
            for code in *codes {
                assert!(Region::parse(code).is_ok(), "{code}");
                assert!(seen.insert(*code), "{code} twice in LOCALES");
            }
        }
        assert!(COUNTRIES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (code, _) in COUNTRIES {
            assert_eq!(
                Region::parse(code).map(|r| r.to_string()).as_deref(),
                Ok(*code)
            );
        }
    }

    #[test]
    fn nothing_needs_escaping_in_html() {
        for region in all_regions() {
            for currency in Currency::ALL {
                let text = signed_money(Money::from_minor(-123_456, currency), region);
                assert!(!text.contains(['<', '>', '&', '"', '\'']), "{text}");
            }
        }
    }
}
