//! The symbol universe: which symbols exist, their names and reference prices.

use anyhow::{bail, Context};

use crate::domain::{Price, Symbol};

/// The default universe, embedded so the binary runs anywhere with no files beside it.
pub const DEFAULT_UNIVERSE_CSV: &str = include_str!("../../config/symbols.csv");

#[derive(Debug, Clone)]
pub struct UniverseEntry {
    pub symbol: Symbol,
    pub name: String,
    pub previous_close: Price,
}

/// Parses `symbol,name,prev_close` CSV (RFC 4180 quoting for names with commas).
pub fn load_universe(csv: &str) -> anyhow::Result<Vec<UniverseEntry>> {
    let mut lines = csv
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.trim() == "symbol,name,prev_close" => {}
        _ => bail!("the universe CSV must start with the header `symbol,name,prev_close`"),
    }
    let mut entries = Vec::new();
    for (index, line) in lines {
        let line_no = index + 1;
        let fields = split_csv_line(line).with_context(|| format!("line {line_no}"))?;
        let [symbol, name, prev_close] = fields.as_slice() else {
            bail!("line {line_no}: expected 3 fields, found {}", fields.len());
        };
        let symbol = Symbol::parse(symbol).with_context(|| format!("line {line_no}"))?;
        let previous_close = Price::parse(prev_close.trim())
            .ok()
            .filter(|p| p.micros() > 0)
            .with_context(|| format!("line {line_no}: bad prev_close {prev_close:?}"))?;
        entries.push(UniverseEntry {
            symbol,
            name: name.clone(),
            previous_close,
        });
    }
    Ok(entries)
}

pub(crate) fn split_csv_line(line: &str) -> anyhow::Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        bail!("unterminated quote");
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_universe_loads() {
        let entries = load_universe(DEFAULT_UNIVERSE_CSV).unwrap();
        assert!(entries.len() >= 98, "{} symbols", entries.len());
        assert!(entries.iter().any(|e| e.symbol.as_str() == "AAPL"));
    }

    #[test]
    fn parses_quoted_names_and_reports_bad_lines() {
        let csv = "symbol,name,prev_close\nabc,\"Foo, \"\"Bar\"\" Inc.\",12.5\n";
        let entries = load_universe(csv).unwrap();
        assert_eq!(entries[0].symbol.as_str(), "ABC");
        assert_eq!(entries[0].name, "Foo, \"Bar\" Inc.");
        let err = load_universe("symbol,name,prev_close\nA,B,-1\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
