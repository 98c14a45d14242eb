//! Keeps the README's tables (also the crate docs) true to the code. The configuration
//! table is the one configuration reference: one row per [`Config`] field, naming a builder
//! method that exists, the field's real default, and only environment variables that
//! [`Config::apply_vars`] reads. The feature table lists exactly the cargo features of
//! `Cargo.toml`, with the right defaults. A field or feature added without a row fails here.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::config::{Config, ENV_VARS};

const README: &str = include_str!("../README.md");
const BUILDER: &str = include_str!("agent.rs");
const MANIFEST: &str = include_str!("../Cargo.toml");

/// One row of the table: `| method(args) | env | default | meaning |`.
struct Row {
    method: String,
    env: String,
    default: String,
}

fn table() -> Vec<Row> {
    let start = README
        .find("| builder method | env variable | default | meaning |")
        .expect("README has the configuration table");
    README[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 4, "a table row has four cells: {line}");
            let method = cells[0].trim().trim_matches('`');
            Row {
                method: method.split('(').next().unwrap_or(method).to_string(),
                env: cells[1].trim().to_string(),
                default: cells[2].trim().to_string(),
            }
        })
        .collect()
}

/// `(field, default as Debug)` for every field of `Config`, from its pretty Debug output.
fn fields() -> Vec<(String, String)> {
    format!("{:#?}", Config::default())
        .lines()
        .filter(|line| line.starts_with("    ") && !line.starts_with("     "))
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(": ")?;
            Some((name.to_string(), value.trim_end_matches(',').to_string()))
        })
        .collect()
}

/// The builder method that sets `field` (a list field is set one item at a time).
fn method_for(field: &str) -> &str {
    match field {
        "otlp_resource_attributes" => "otlp_resource_attribute",
        other => other,
    }
}

/// The README's way to write a default, for the defaults that are plain values; `None` for
/// the ones it describes in words (an unset option, an empty list).
fn shown(debug: &str) -> Option<String> {
    match debug {
        "None" | "[]" => None,
        "true" => Some("on".into()),
        "false" => Some("off".into()),
        value => Some(value.replace('_', "")),
    }
}

#[test]
fn every_config_field_has_one_row_with_its_real_default() {
    let rows = table();
    let fields = fields();
    assert!(fields.len() > 20, "parsed the fields of Config: {fields:?}");
    for (field, default) in &fields {
        let method = method_for(field);
        let matching: Vec<&Row> = rows.iter().filter(|r| r.method == method).collect();
        assert_eq!(
            matching.len(),
            1,
            "one README row for `{method}` (field {field})"
        );
        if let Some(expected) = shown(default) {
            // "100 ms" and "10 000" in the README; "100ms" and "10000" from Debug.
            let written = matching[0].default.replace([' ', '\u{a0}'], "");
            assert_eq!(written, expected, "README default of `{method}`");
        }
    }
    for row in &rows {
        assert!(
            fields.iter().any(|(f, _)| method_for(f) == row.method),
            "README row `{}` sets no Config field",
            row.method
        );
        assert!(
            BUILDER.contains(&format!("pub fn {}(", row.method))
                || BUILDER.contains(&format!("        {}: ", row.method)),
            "README row `{}` names no builder method",
            row.method
        );
    }
}

#[test]
fn the_table_names_only_variables_the_config_reads_and_env_vars_lists_all_it_reads() {
    // Every variable apply_vars looks up: once with none set, once with an OTEL_ endpoint
    // set (only then does it read the protocol variables).
    let asked = RefCell::new(BTreeSet::new());
    for set in [None, Some("OTEL_EXPORTER_OTLP_ENDPOINT")] {
        let mut config = Config::default();
        let _ = config.apply_vars(|name| {
            asked.borrow_mut().insert(name.to_string());
            (Some(name) == set).then(|| "http://127.0.0.1:4317".to_string())
        });
    }
    let asked = asked.into_inner();
    let listed: BTreeSet<String> = ENV_VARS.iter().map(|(n, _)| n.to_string()).collect();
    if cfg!(feature = "opentelemetry") {
        assert_eq!(asked, listed, "ENV_VARS is what apply_vars reads");
    } else {
        assert!(
            asked.is_subset(&listed),
            "ENV_VARS lists all apply_vars reads"
        );
    }

    for row in table() {
        for word in row
            .env
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        {
            let is_var = word.len() > 5
                && (word.starts_with("POLLWATCH_") || word.starts_with("OTEL_"))
                && !word.ends_with('_');
            if is_var {
                assert!(listed.contains(word), "README row `{}`: {word}", row.method);
            }
        }
    }
    for name in &listed {
        assert!(README.contains(name.as_str()), "README never names {name}");
    }
}

/// `(feature, on by default)` from the manifest's `[features]` table.
fn manifest_features() -> BTreeSet<(String, bool)> {
    let section = MANIFEST
        .split("\n[features]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("Cargo.toml has a [features] table");
    let names = |line: &str| -> Vec<String> {
        line.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let default = section
        .lines()
        .find(|l| l.starts_with("default = "))
        .map(names)
        .unwrap_or_default();
    section
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("default ") && l.contains(" = ["))
        .filter_map(|l| l.split(" = ").next())
        .map(|f| (f.to_string(), default.iter().any(|d| d == f)))
        .collect()
}

#[test]
fn the_feature_table_lists_every_cargo_feature_with_its_default() {
    let start = README
        .find("| feature | default | what it adds | brings in |")
        .expect("README has the feature table");
    let rows: BTreeSet<(String, bool)> = README[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            let on = match cells[1].trim() {
                "yes" => true,
                "no" => false,
                other => panic!("default is yes or no, not {other:?}: {line}"),
            };
            (cells[0].trim().trim_matches('`').to_string(), on)
        })
        .collect();
    let features = manifest_features();
    assert!(
        features.len() >= 6,
        "parsed Cargo.toml's features: {features:?}"
    );
    assert_eq!(rows, features, "README feature table vs Cargo.toml");
}
