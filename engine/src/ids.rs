//! Validated identifiers: `Sku` and `ReservationId`. A value of either type
//! has passed the checks in `limits`; nothing inside the engine re-parses
//! client strings. Both are `SmolStr`: up to 23 bytes live inline (no
//! allocation to create or clone, no pointer to chase when a reservation
//! record compares its id); longer ones are shared, so a clone is a count.

use crate::limits::{RESERVATION_ID_LEN_MAX, SKU_LEN_MAX};
use crate::rejection::Rejection;
use smol_str::SmolStr;
use std::fmt;

/// A SKU id: 1..=64 bytes of `[A-Za-z0-9._:/-]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sku(SmolStr);

impl Sku {
    pub fn new(text: &str) -> Result<Sku, Rejection> {
        let valid_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-');
        if text.is_empty() || text.len() > SKU_LEN_MAX || !text.bytes().all(valid_byte) {
            return Err(Rejection::SkuInvalid);
        }
        Ok(Sku(SmolStr::new(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A reservation id, the client's idempotency key: 1..=128 bytes of printable
/// ASCII (0x20..=0x7e).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservationId(SmolStr);

impl ReservationId {
    pub fn new(text: &str) -> Result<ReservationId, Rejection> {
        let printable = |b: u8| (0x20..=0x7e).contains(&b);
        if text.is_empty() || text.len() > RESERVATION_ID_LEN_MAX || !text.bytes().all(printable) {
            return Err(Rejection::ReservationIdInvalid);
        }
        Ok(ReservationId(SmolStr::new(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }
    )*};
}
display_as_str!(Sku, ReservationId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_accepts_the_documented_alphabet_and_lengths() {
        assert!(Sku::new("a").is_ok());
        assert!(Sku::new("Shoe-42_red.eu:size/9").is_ok());
        assert!(Sku::new(&"x".repeat(SKU_LEN_MAX)).is_ok());
    }

    #[test]
    fn sku_refuses_empty_long_and_foreign_bytes() {
        for bad in ["", "a b", "a\n", "é", "a*b"] {
            assert_eq!(Sku::new(bad), Err(Rejection::SkuInvalid), "{bad:?}");
        }
        assert_eq!(Sku::new(&"x".repeat(SKU_LEN_MAX + 1)), Err(Rejection::SkuInvalid));
    }

    #[test]
    fn reservation_id_accepts_printable_ascii_only() {
        assert!(ReservationId::new("order 17 / try #2").is_ok());
        assert!(ReservationId::new(&"i".repeat(RESERVATION_ID_LEN_MAX)).is_ok());
        for bad in ["", "tab\there", "nul\0", "ümlaut", "\x7f"] {
            assert_eq!(ReservationId::new(bad), Err(Rejection::ReservationIdInvalid), "{bad:?}");
        }
        assert_eq!(ReservationId::new(&"i".repeat(RESERVATION_ID_LEN_MAX + 1)), Err(Rejection::ReservationIdInvalid));
    }
}
