//! Property tests of the vendor parsers: whatever arrives, decoding never panics, and
//! a tick never carries a price other than the exact decimal the vendor sent.

use proptest::prelude::*;

use super::{Decoded, Unmapped, Vendor};
use crate::config::{FeedKind, Settings};

fn vendor(kind: FeedKind) -> Vendor {
    let mut settings = Settings::from_sources(&[], Vec::<(String, String)>::new())
        .expect("defaults load")
        .feed;
    settings.kind = kind;
    settings.symbols = "AAPL".to_owned();
    Vendor::from_settings(&settings)
        .expect("valid settings")
        .expect("a vendor")
}

fn vendors() -> [Vendor; 3] {
    [
        vendor(FeedKind::Finnhub),
        vendor(FeedKind::Alpaca),
        vendor(FeedKind::Polygon),
    ]
}

/// A trade for AAPL at `price` (its JSON text) in each vendor's wire format.
fn trades(price: &str) -> [String; 3] {
    [
        format!(
            r#"{{"type":"trade","data":[{{"s":"AAPL","p":{price},"t":1796221800123,"v":100}}]}}"#
        ),
        format!(r#"[{{"T":"t","S":"AAPL","p":{price},"s":100,"t":"2026-12-02T14:30:00.123Z"}}]"#),
        format!(r#"[{{"ev":"T","sym":"AAPL","p":{price},"s":100,"t":1796221800123}}]"#),
    ]
}

/// Pieces of vendor messages, so random sequences are often nearly valid.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just(r#""type":"trade""#.to_owned()),
        Just(r#""type":"ping""#.to_owned()),
        Just(r#""data":"#.to_owned()),
        Just(r#""T":"t""#.to_owned()),
        Just(r#""T":"q""#.to_owned()),
        Just(r#""T":"error""#.to_owned()),
        Just(r#""ev":"T""#.to_owned()),
        Just(r#""ev":"Q""#.to_owned()),
        Just(r#""ev":"status""#.to_owned()),
        Just(r#""s":"AAPL""#.to_owned()),
        Just(r#""S":"AAPL""#.to_owned()),
        Just(r#""sym":"AAPL""#.to_owned()),
        Just(r#""p""#.to_owned()),
        Just(r#""bp""#.to_owned()),
        Just(r#""as""#.to_owned()),
        Just(r#""t""#.to_owned()),
        Just(r#""2026-12-02T14:30:00.123456789Z""#.to_owned()),
        Just("null".to_owned()),
        "-?[0-9]{1,20}(\\.[0-9]{0,10})?(e-?[0-9]{1,3})?",
        "\"[ -~]{0,8}\"",
    ]
}

proptest! {
    #[test]
    fn feed_parsers_never_panic_on_arbitrary_text(text in "\\PC{0,200}") {
        let mut out = Decoded::default();
        for vendor in vendors() {
            vendor.decode(&text, &mut out);
            prop_assert!(out.messages >= 1);
        }
    }

    #[test]
    fn feed_parsers_never_panic_on_near_json(parts in prop::collection::vec(fragment(), 0..40)) {
        let text = parts.concat();
        let mut out = Decoded::default();
        for vendor in vendors() {
            vendor.decode(&text, &mut out);
            for tick in &out.ticks {
                // Whatever was accepted is a valid tick: positive prices, sizes in range.
                for price in [tick.price, tick.bid, tick.ask].into_iter().flatten() {
                    prop_assert!(price.micros() > 0);
                }
                for size in [tick.size, tick.bid_size, tick.ask_size].into_iter().flatten() {
                    prop_assert!(size <= crate::domain::MAX_SIZE);
                }
                prop_assert!(tick.ts.is_some_and(|ts| ts >= 0));
            }
        }
    }

    /// A price with up to 6 significant decimals arrives exactly; one with more is
    /// never applied (rounded or truncated), only counted.
    #[test]
    fn feed_prices_are_exact_or_refused(
        units in 0u64..1_000_000_000,
        decimals in "[0-9]{0,9}",
    ) {
        let text = if decimals.is_empty() { units.to_string() } else { format!("{units}.{decimals}") };
        let trimmed = decimals.trim_end_matches('0');
        let micros = (trimmed.len() <= 6).then(|| {
            let padded = format!("{trimmed:0<6}");
            units as i64 * 1_000_000 + padded.parse::<i64>().unwrap_or(0)
        });
        let mut out = Decoded::default();
        for (vendor, message) in vendors().iter().zip(trades(&text)) {
            vendor.decode(&message, &mut out);
            match micros {
                Some(m) if m > 0 => {
                    prop_assert_eq!(out.ticks.len(), 1, "{}", message);
                    prop_assert_eq!(out.ticks[0].price.map(|p| p.micros()), Some(m));
                }
                _ => {
                    prop_assert!(out.ticks.is_empty(), "{} gave {:?}", message, out.ticks);
                    prop_assert_eq!(&out.unmapped, &vec![Unmapped::BadPrice]);
                }
            }
        }
    }
}
