use std::fmt;
use std::sync::Arc;

/// A validated ticker symbol: `^[A-Z0-9][A-Z0-9.\-]{0,15}$` after upper-casing.
///
/// Input is case-insensitive, output is upper case (the contract), so the only way to
/// build one is [`Symbol::parse`], which normalises. Cloning is a reference-count bump:
/// symbols are copied into every snapshot and REST reply.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(Arc<str>);

/// The longest symbol the contract allows.
pub const MAX_SYMBOL_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid symbol {0:?}: expected 1-16 characters of A-Z, 0-9, '.', '-', starting with a letter or digit")]
pub struct SymbolError(pub String);

impl Symbol {
    pub fn parse(raw: &str) -> Result<Symbol, SymbolError> {
        let bytes = raw.as_bytes();
        let valid_first = |b: u8| b.is_ascii_alphanumeric();
        let valid_rest = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_SYMBOL_LEN
            && valid_first(bytes[0])
            && bytes[1..].iter().all(|&b| valid_rest(b));
        if !ok {
            return Err(SymbolError(raw.to_owned()));
        }
        Ok(Symbol(Arc::from(raw.to_ascii_uppercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `Symbol` be searched with an upper-cased `&str` (the derived
/// `Hash`/`Eq` are those of the inner string, so this is consistent).
impl std::borrow::Borrow<str> for Symbol {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({})", self.0)
    }
}

impl serde::Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Dense index of a symbol in the snapshot store.
///
/// Symbols are interned once at the boundary; subscriptions and the flush loop work on
/// these small integers so the hot path never hashes a string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct SymbolId(pub u32);

impl SymbolId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_cases_and_accepts_dots_and_dashes() {
        assert_eq!(Symbol::parse("brk.b").unwrap().as_str(), "BRK.B");
        assert_eq!(Symbol::parse("A-1").unwrap().as_str(), "A-1");
        assert_eq!(
            Symbol::parse("0123456789ABCDEF").unwrap().as_str().len(),
            16
        );
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            "",
            ".A",
            "-A",
            "A B",
            "AAPL$",
            "ÄPFEL",
            "0123456789ABCDEFG",
            "*",
        ] {
            assert!(Symbol::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
