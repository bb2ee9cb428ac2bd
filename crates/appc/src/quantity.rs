//! Resource quantities (`"500M"`, `"1Gi"`, `"250m"`, `"1e3"`), read the way
//! the spec's reference does it (`schema/types/resource`, a copy of the
//! Kubernetes quantity code) so that an isolator actool accepts, berth
//! accepts too, and with the same meaning.
//!
//! Grammar: optional sign, digits with an optional `.` fraction, then one
//! suffix: none; decimal SI `n u m k M G T P E`; binary `Ki Mi Gi Ti Pi Ei`;
//! or a decimal exponent `e3`/`E-3`. Surrounding white space is ignored. As
//! in the reference, an upper-case `K` is *not* a suffix (the spec text lists
//! it, the code never accepted it; we side with the code, use `k`).
//!
//! The original text is kept so that a manifest re-serialises exactly as it
//! was written; the numeric value is computed on demand with overflow checks
//! (a quantity may be far larger than any machine integer).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ValueError;

/// What a suffix multiplies the number by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantitySuffix {
    /// `× 10^exp`: none (0), `n` (-9), `u` (-6), `m` (-3), `k` (3), `M` (6),
    /// `G` (9), `T` (12), `P` (15), `E` (18), or an explicit `e<exp>`.
    Decimal(i32),
    /// `× 2^exp`: `Ki` (10), `Mi` (20), `Gi` (30), `Ti` (40), `Pi` (50),
    /// `Ei` (60).
    Binary(u32),
}

/// A parsed quantity. Construct with `FromStr`/`TryFrom<&str>` or serde.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quantity {
    original: String,
    /// Was written as a JSON number rather than a string.
    json_number: bool,
    negative: bool,
    int_digits: String,
    frac_digits: String,
    suffix: QuantitySuffix,
}

fn suffix_of(s: &str) -> Option<QuantitySuffix> {
    use QuantitySuffix::{Binary, Decimal};
    Some(match s {
        "" => Decimal(0),
        "n" => Decimal(-9),
        "u" => Decimal(-6),
        "m" => Decimal(-3),
        "k" => Decimal(3),
        "M" => Decimal(6),
        "G" => Decimal(9),
        "T" => Decimal(12),
        "P" => Decimal(15),
        "E" => Decimal(18),
        "Ki" => Binary(10),
        "Mi" => Binary(20),
        "Gi" => Binary(30),
        "Ti" => Binary(40),
        "Pi" => Binary(50),
        "Ei" => Binary(60),
        _ => {
            let rest = s.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Decimal(rest.parse().ok()?)
        }
    })
}

impl Quantity {
    fn parse(original: &str, json_number: bool) -> Result<Quantity, ValueError> {
        let bad = |why: &str| {
            Err(ValueError::new(format!(
                "{original:?} is not a quantity ({why}; e.g. \"500m\", \"128Mi\", \"1G\")"
            )))
        };
        let s = original.trim();
        if s.is_empty() {
            return bad("empty");
        }
        let (negative, body) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(num_end);
        let (int_digits, frac_digits) = match number.split_once('.') {
            Some((i, f)) => {
                if f.contains('.') {
                    return bad("more than one decimal point");
                }
                (i, f)
            }
            None => (number, ""),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return bad("no digits");
        }
        let Some(suffix) = suffix_of(suffix) else {
            let hint = if suffix == "K" { "; use \"k\"" } else { "" };
            return bad(&format!("unknown suffix {suffix:?}{hint}"));
        };
        Ok(Quantity {
            original: original.to_owned(),
            json_number,
            negative,
            int_digits: int_digits.to_owned(),
            frac_digits: frac_digits.to_owned(),
            suffix,
        })
    }

    /// A quantity written as a JSON number (`"limit": 100`), which the
    /// reference also accepts.
    pub fn from_json_number(n: &serde_json::Number) -> Result<Quantity, ValueError> {
        Quantity::parse(&n.to_string(), true)
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    pub fn suffix(&self) -> QuantitySuffix {
        self.suffix
    }

    pub fn is_negative(&self) -> bool {
        self.negative
            && self
                .int_digits
                .chars()
                .chain(self.frac_digits.chars())
                .any(|c| c != '0')
    }

    pub fn is_zero(&self) -> bool {
        !self
            .int_digits
            .chars()
            .chain(self.frac_digits.chars())
            .any(|c| c != '0')
    }

    /// The value × 10^`scale`, rounded up (away from zero) to an integer, as
    /// the reference's `ScaledValue` does; `None` if it does not fit an i128.
    /// `scaled(0)` is the value in base units (bytes, cores), `scaled(3)` in
    /// milli-units.
    pub fn scaled(&self, scale: i32) -> Option<i128> {
        let digits = format!("{}{}", self.int_digits, self.frac_digits);
        let digits = digits.trim_start_matches('0');
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let frac_len = i32::try_from(self.frac_digits.len()).ok()?;
        let mut exp10 = scale.checked_sub(frac_len)?;
        match self.suffix {
            QuantitySuffix::Decimal(e) => exp10 = exp10.checked_add(e)?,
            QuantitySuffix::Binary(b) => mantissa = mantissa.checked_mul(1i128.checked_shl(b)?)?,
        }
        let magnitude = if mantissa == 0 {
            0
        } else if exp10 >= 0 {
            mantissa.checked_mul(10i128.checked_pow(u32::try_from(exp10).ok()?)?)?
        } else {
            match 10i128.checked_pow(exp10.unsigned_abs()) {
                Some(div) => {
                    let q = mantissa / div;
                    if mantissa % div == 0 {
                        q
                    } else {
                        q + 1
                    }
                }
                // Dividing by more than i128 can hold: a non-zero fraction
                // below one, rounded up.
                None => 1,
            }
        };
        Some(if self.negative { -magnitude } else { magnitude })
    }

    /// The value in base units (bytes, cores...), rounded up.
    pub fn value(&self) -> Option<i128> {
        self.scaled(0)
    }

    /// The value in thousandths of the base unit (e.g. millicores), rounded up.
    pub fn milli_value(&self) -> Option<i128> {
        self.scaled(3)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl FromStr for Quantity {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Quantity::parse(s, false)
    }
}

impl TryFrom<&str> for Quantity {
    type Error = ValueError;
    fn try_from(s: &str) -> Result<Self, ValueError> {
        Quantity::parse(s, false)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.json_number {
            if let Ok(n) = self.original.parse::<serde_json::Number>() {
                return n.serialize(s);
            }
        }
        s.serialize_str(&self.original)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Quantity::parse(&s, false).map_err(D::Error::custom),
            serde_json::Value::Number(n) => {
                Quantity::from_json_number(&n).map_err(D::Error::custom)
            }
            _ => Err(D::Error::custom("a quantity must be a string or a number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap()
    }

    #[test]
    fn values() {
        assert_eq!(q("500M").value(), Some(500_000_000));
        assert_eq!(q("1G").value(), Some(1_000_000_000));
        assert_eq!(q("1Gi").value(), Some(1 << 30));
        assert_eq!(q("123Mi").value(), Some(128_974_848));
        assert_eq!(q("125952Ki").value(), Some(128_974_848));
        assert_eq!(q("100").value(), Some(100));
        assert_eq!(q("250m").milli_value(), Some(250));
        assert_eq!(q("250m").value(), Some(1), "rounds up");
        assert_eq!(q("0.3").milli_value(), Some(300));
        assert_eq!(q("1e3").value(), Some(1000));
        assert_eq!(q("1E-3").milli_value(), Some(1));
        assert_eq!(q("1.5Gi").value(), Some(3 << 29));
        assert_eq!(q("2k").value(), Some(2000));
        assert_eq!(q("-1").value(), Some(-1));
        assert_eq!(q(" 7 ").value(), Some(7));
        assert_eq!(q(".5").milli_value(), Some(500));
        assert_eq!(q("1.").value(), Some(1));
        assert_eq!(q("1n").value(), Some(1));
        assert_eq!(q("1e100").value(), None, "too large for i128");
        assert_eq!(q("1e-100").value(), Some(1));
        assert!(q("0").is_zero() && !q("-0").is_negative() && q("-1m").is_negative());
    }

    #[test]
    fn rejects() {
        for bad in [
            "", " ", "1K", "1Mi5", "M", "1.2.3", "1 G", "1e", "1x", "0x10", "--1", ".",
        ] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?}");
        }
        let e = "1K".parse::<Quantity>().unwrap_err();
        assert!(e.message().contains("use \"k\""), "{e}");
    }

    #[test]
    fn keeps_original_text_and_json_type() {
        let v: Quantity = serde_json::from_str("\"1.50Gi\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"1.50Gi\"");
        let n: Quantity = serde_json::from_str("100").unwrap();
        assert_eq!(n.value(), Some(100));
        assert_eq!(serde_json::to_string(&n).unwrap(), "100");
        assert!(serde_json::from_str::<Quantity>("true").is_err());
    }
}
