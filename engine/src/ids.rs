//! Validated identifiers: `Sku` and `ReservationId`. A value of either type
//! has passed the checks in `limits`; nothing inside the engine re-parses
//! client strings. Each carries its XXH3 hash, computed once at the edge:
//! routing, the shard's tables and the WAL decoder all reuse it instead of
//! hashing the same bytes again (measured: re-hashing was half of the bare
//! state machine's time). The text is a `SmolStr`: up to 23 bytes live inline
//! (no allocation to create or clone); longer ones are shared, so a clone is
//! a reference count.

use crate::hash::key_hash;
use crate::limits::{RESERVATION_ID_LEN_MAX, SKU_LEN_MAX};
use crate::rejection::Rejection;
use smol_str::SmolStr;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A SKU id: 1..=64 bytes of `[A-Za-z0-9._:/-]`.
#[derive(Clone)]
pub struct Sku(Key);

impl Sku {
    pub fn new(text: &str) -> Result<Sku, Rejection> {
        if !Sku::is_valid(text.as_bytes()) {
            return Err(Rejection::SkuInvalid);
        }
        Ok(Sku(Key::new(text)))
    }

    /// Whether `bytes` are a SKU: 1..=64 bytes of `[A-Za-z0-9._:/-]` (so
    /// also ASCII, hence UTF-8).
    pub(crate) fn is_valid(bytes: &[u8]) -> bool {
        let valid_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-');
        !bytes.is_empty() && bytes.len() <= SKU_LEN_MAX && bytes.iter().all(valid_byte)
    }

    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// `hash::key_hash` of the text, computed once.
    pub fn key_hash(&self) -> u64 {
        self.0.hash
    }
}

/// A reservation id, the client's idempotency key: 1..=128 bytes of printable
/// ASCII (0x20..=0x7e).
#[derive(Clone)]
pub struct ReservationId(Key);

impl ReservationId {
    pub fn new(text: &str) -> Result<ReservationId, Rejection> {
        let printable = |b: u8| (0x20..=0x7e).contains(&b);
        if text.is_empty() || text.len() > RESERVATION_ID_LEN_MAX || !text.bytes().all(printable) {
            return Err(Rejection::ReservationIdInvalid);
        }
        Ok(ReservationId(Key::new(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// `hash::key_hash` of the text, computed once.
    pub fn key_hash(&self) -> u64 {
        self.0.hash
    }
}

/// Text plus its hash. Equality and order are the text's; the hash only
/// makes unequal keys cheap to tell apart.
#[derive(Clone)]
struct Key {
    text: SmolStr,
    hash: u64,
}

impl Key {
    fn new(text: &str) -> Key {
        Key { text: SmolStr::new(text), hash: key_hash(text) }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        self.text.cmp(&other.text)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

macro_rules! key_traits {
    ($($name:ident),*) => {$(
        impl PartialEq for $name {
            fn eq(&self, other: &$name) -> bool {
                self.0 == other.0
            }
        }
        impl Eq for $name {}
        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &$name) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $name {
            fn cmp(&self, other: &$name) -> Ordering {
                self.0.cmp(&other.0)
            }
        }
        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.0.hash(state)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.as_str())
            }
        }
    )*};
}
key_traits!(Sku, ReservationId);

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

    #[test]
    fn cached_hash_is_the_key_hash_of_the_text() {
        let sku = Sku::new("sku-1").unwrap();
        assert_eq!(sku.key_hash(), key_hash("sku-1"));
        let id = ReservationId::new("a long reservation id past the inline limit").unwrap();
        assert_eq!(id.key_hash(), key_hash(id.as_str()));
    }
}
