//! `/flamegraph.svg`: the folded blocked-time stacks drawn by inferno, as a self-contained
//! interactive SVG (its script zooms on click, searches with Ctrl-F, shows each frame's
//! time on hover). Nothing external is loaded.

use super::html::escape;
use crate::stats::flame::{Filter, FlameTable};

/// The `Content-Type` of the SVG.
pub const CONTENT_TYPE: &str = "image/svg+xml";

/// What the picture says above itself.
pub(crate) struct Labels<'a> {
    pub(crate) runtime: &'a str,
    /// Which time is shown, e.g. "the last 5m".
    pub(crate) selection: &'a str,
}

/// The flamegraph of the selected blocked time, or a small SVG that says there is none.
pub(crate) fn render(table: &FlameTable, filter: &Filter, labels: &Labels<'_>) -> Vec<u8> {
    let folded = super::folded::encode(table, filter);
    let totals = table.totals(filter);
    if folded.is_empty() {
        return empty(labels);
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = format!("Blocked time, runtime {}", labels.runtime);
    options.subtitle = Some(format!(
        "{}: {:.1} ms in {} stall{}, {} stack sample{}; width is time a worker was stuck",
        labels.selection,
        totals.weight_ns as f64 / 1e6,
        totals.stalls,
        plural(totals.stalls as u64),
        totals.samples,
        plural(totals.samples),
    ));
    options.count_name = "µs".to_owned();
    // Colors follow function names, so a function keeps its color from one view to the next.
    options.hash = true;
    let mut svg = Vec::with_capacity(folded.len() * 2 + 32 * 1024);
    match inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg) {
        Ok(()) => svg,
        Err(e) => message(
            labels,
            &format!("the flamegraph could not be drawn: {e}; /stalls/folded has the data"),
        ),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn empty(labels: &Labels<'_>) -> Vec<u8> {
    message(
        labels,
        &format!(
            "No blocked time recorded in {}: no poll has stalled the runtime.",
            labels.selection
        ),
    )
}

/// A one-line SVG: inferno draws nothing without data, and says so as an error.
fn message(labels: &Labels<'_>, text: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"60\" viewBox=\"0 0 1200 60\">\
         <title>Blocked time, runtime {}</title>\
         <text x=\"600\" y=\"34\" text-anchor=\"middle\" font-family=\"Verdana, sans-serif\" font-size=\"14\" fill=\"#555\">{}</text>\
         </svg>\n",
        escape(labels.runtime),
        escape(text)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::flame::Weight;
    use std::time::Duration;

    #[test]
    fn renders_the_frames_and_a_message_when_empty() {
        let t = FlameTable::new();
        let labels = Labels {
            runtime: "main",
            selection: "everything kept",
        };
        let svg = String::from_utf8(render(&t, &Filter::default(), &labels)).unwrap();
        assert!(svg.contains("No blocked time recorded"), "{svg}");
        t.add(Weight {
            stall: 1,
            at_unix_ms: 1,
            folded: "spawned at src/a.rs:1:1;app::<T as app::Tr>::culprit",
            weight: Duration::from_millis(120),
            sample: true,
            paused: Duration::ZERO,
        });
        let svg = String::from_utf8(render(&t, &Filter::default(), &labels)).unwrap();
        assert!(svg.contains("app::&lt;T as app::Tr&gt;::culprit"), "{svg}");
        assert!(svg.contains("120,000 µs"), "{svg}");
        assert!(svg.contains("1 stall, 1 stack sample"), "{svg}");
    }
}
