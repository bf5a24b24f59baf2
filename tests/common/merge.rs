//! The client-side merge rule, shared by the test binaries (`tests/api`,
//! `tests/scale`): what every client of the contract does with what it receives.

use serde_json::Value;

/// Merges one snapshot or update into a client's view, as the contract describes:
/// a snapshot replaces a symbol's quote, an update merges field by field.
pub fn merge(view: &mut std::collections::BTreeMap<String, Value>, message: &Value) {
    let kind = message["type"].as_str().unwrap_or("");
    if kind != "snapshot" && kind != "update" {
        return;
    }
    for quote in message["quotes"].as_array().expect("quotes array") {
        let symbol = quote["s"].as_str().expect("s").to_owned();
        if kind == "snapshot" {
            view.insert(symbol, quote.clone());
        } else {
            let entry = view
                .entry(symbol.clone())
                .or_insert_with(|| serde_json::json!({"s": symbol}));
            for (key, value) in quote.as_object().unwrap() {
                entry[key] = value.clone();
            }
        }
    }
}
