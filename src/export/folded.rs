//! `/stalls/folded`: blocked time as folded stacks, one `frame;frame;… microseconds` line per
//! stack (the format of Brendan Gregg's `stackcollapse` scripts, which `flamegraph.pl`,
//! inferno and speedscope read).

use std::fmt::Write as _;

use crate::stats::flame::{Filter, FlameTable};

/// The `Content-Type` of the folded output.
#[cfg(feature = "http")]
pub const CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The folded lines of the selection, sorted; counts are microseconds of blocked time. Stacks
/// with less than half a microsecond are left out.
pub(crate) fn encode(table: &FlameTable, filter: &Filter) -> String {
    let mut out = String::new();
    for (stack, ns) in table.folded(filter) {
        let us = (ns + 500) / 1000;
        if us > 0 {
            let _ = writeln!(out, "{stack} {us}");
        }
    }
    out
}
