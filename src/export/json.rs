//! The `/stalls` JSON of DESIGN §5: `{"stalls_total", "dropped", "stalls": [...]}`, newest last.

use crate::stats::stall_log::StallsView;

/// The `Content-Type` of the output.
#[cfg(feature = "http")]
pub const CONTENT_TYPE: &str = "application/json";

/// Serializes the view. Plain data with string keys cannot fail to serialize; if it ever
/// did, the endpoint still answers valid JSON that says so.
pub(crate) fn encode(view: &StallsView) -> String {
    serde_json::to_string(view).unwrap_or_else(|e| {
        serde_json::json!({ "error": e.to_string(), "stalls_total": view.stalls_total }).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_view_has_the_contract_keys() {
        let v = StallsView {
            stalls_total: 0,
            dropped: 0,
            stalls: Vec::new(),
        };
        let parsed: serde_json::Value = serde_json::from_str(&encode(&v)).unwrap();
        assert_eq!(parsed["stalls_total"], 0);
        assert_eq!(parsed["dropped"], 0);
        assert!(parsed["stalls"].as_array().unwrap().is_empty());
    }
}
