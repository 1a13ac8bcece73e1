//! Generated codes: format, the first-digit rule, and uniformity of every digit position.

use tender::codegen::{CodeGenerator, CodeSource};
use tender::domain::Code;

const SAMPLES: usize = 1_000_000;

/// Chi-square critical values at p = 1e-6 / 16 each, so a true uniform source fails the whole
/// test (16 positions) about once in a million runs: a flaky check trains people to rerun CI.
/// A biased source is still caught by a wide margin (`byte % 10` scores about 370).
const CRITICAL_9_DOF: f64 = 51.26;
const CRITICAL_5_DOF: f64 = 41.87;

#[test]
fn a_million_codes_are_16_ascii_digits_never_card_like_and_uniform_per_position() {
    let mut generator = CodeGenerator::from_os_rng();
    let mut counts = [[0u64; 10]; 16];
    for _ in 0..SAMPLES {
        let code = generator.next_code();
        let digits = code.as_bytes();
        assert!(digits.iter().all(u8::is_ascii_digit));
        assert!(
            !code.has_forbidden_first_digit(),
            "a code starts like a payment card"
        );
        assert_eq!(Code::parse(code.expose_secret()).unwrap(), code);
        for (position, digit) in digits.iter().enumerate() {
            counts[position][(digit - b'0') as usize] += 1;
        }
    }
    // The first digit is uniform over the six allowed digits; the others over all ten.
    let first: Vec<u64> = [0, 1, 2, 7, 8, 9].iter().map(|&d| counts[0][d]).collect();
    assert!(counts[0][3..=6].iter().all(|&c| c == 0));
    let chi = chi_square(&first);
    assert!(chi < CRITICAL_5_DOF, "first digit: chi-square {chi:.2}");
    for (position, row) in counts.iter().enumerate().skip(1) {
        let chi = chi_square(row);
        assert!(
            chi < CRITICAL_9_DOF,
            "position {}: chi-square {chi:.2}",
            position + 1
        );
    }
}

#[test]
fn the_chi_square_check_rejects_a_biased_source() {
    // The same check on `byte % 10` digits over many samples must fail: the test can fail.
    let mut counts = [0u64; 10];
    for byte in 0..=255u32 {
        counts[(byte % 10) as usize] += 4_000;
    }
    assert!(chi_square(&counts) > CRITICAL_9_DOF);
}

fn chi_square(observed: &[u64]) -> f64 {
    let total: u64 = observed.iter().sum();
    let expected = total as f64 / observed.len() as f64;
    observed
        .iter()
        .map(|&o| (o as f64 - expected).powi(2) / expected)
        .sum()
}
