//! The query parameters that select blocked time, shared by `/stalls/folded`,
//! `/flamegraph.svg` and the page: `window`, `since`, `stall`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::stats::flame::Filter;

/// Which blocked time to show, from the query string, and how to say it to a person.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Selection {
    pub(crate) filter: Filter,
    /// `window=…`, as given (for links that keep it).
    pub(crate) window: Option<String>,
    /// "everything kept", "the last 5m", "since 2026-…", "stall #12".
    pub(crate) label: String,
}

/// A query parameter with a value it cannot use; the message names both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadParameter {
    pub(crate) name: &'static str,
    pub(crate) value: String,
    pub(crate) expected: &'static str,
}

impl std::fmt::Display for BadParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid query parameter {}={:?}: expected {}",
            self.name, self.value, self.expected
        )
    }
}

const WINDOW_EXPECTED: &str = "a duration like 30s, 5m, 1h or 2d, or a number of seconds";
const SINCE_EXPECTED: &str =
    "an RFC 3339 UTC time like 2026-11-22T02:30:00Z, or seconds since the Unix epoch";
const STALL_EXPECTED: &str = "a stall id, as in the `id` field of /stalls";

impl Selection {
    /// Reads `window`, `since` and `stall` from a query string; other parameters are ignored
    /// (the flamegraph's own script adds some when you zoom).
    pub(crate) fn from_query(query: Option<&str>, now: SystemTime) -> Result<Self, BadParameter> {
        let mut sel = Selection::default();
        let mut since = None;
        let mut labels = Vec::new();
        for (name, value) in query
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
        {
            let value = percent_decode(value);
            match name {
                "window" if !value.is_empty() => {
                    let d = parse_duration(&value).ok_or_else(|| BadParameter {
                        name: "window",
                        value: value.clone(),
                        expected: WINDOW_EXPECTED,
                    })?;
                    let from = now.checked_sub(d).unwrap_or(UNIX_EPOCH);
                    since = Some(since.map_or(from, |s: SystemTime| s.max(from)));
                    labels.push(format!("the last {value}"));
                    sel.window = Some(value);
                }
                "since" if !value.is_empty() => {
                    let t = parse_time(&value).ok_or_else(|| BadParameter {
                        name: "since",
                        value: value.clone(),
                        expected: SINCE_EXPECTED,
                    })?;
                    since = Some(since.map_or(t, |s: SystemTime| s.max(t)));
                    labels.push(format!("since {value}"));
                }
                "stall" if !value.is_empty() => {
                    let id = value.parse::<u64>().map_err(|_| BadParameter {
                        name: "stall",
                        value: value.clone(),
                        expected: STALL_EXPECTED,
                    })?;
                    sel.filter.stall = Some(id);
                    labels.push(format!("stall #{id}"));
                }
                _ => {}
            }
        }
        sel.filter.since_unix_ms = since.map(|t| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        });
        sel.label = if labels.is_empty() {
            "everything kept".to_owned()
        } else {
            labels.join(", ")
        };
        Ok(sel)
    }
}

/// `30s`, `5m`, `1h`, `2d`, `250ms` or a bare number of seconds.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return None,
    };
    let secs = n * scale;
    (secs.is_finite() && secs > 0.0 && secs < 1e10).then(|| Duration::from_secs_f64(secs))
}

/// RFC 3339 in UTC (`2026-11-22T02:30:00Z`, optional fraction, `+00:00` too) or a number
/// of seconds since the Unix epoch.
fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && (0.0..1e11).contains(&secs))
            .then(|| UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    let rest = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .or_else(|| s.strip_suffix('z'))?;
    let (date, time) = rest.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, m, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || m.len() != 2 || day.len() != 2 {
        return None;
    }
    let (y, m, day): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, day.parse().ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (hh, mm, ss) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() || [hh, mm, ss].iter().any(|p| p.len() != 2) {
        return None;
    }
    let (hh, mm, ss): (u64, u64, u64) = (hh.parse().ok()?, mm.parse().ok()?, ss.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    if !frac.is_empty() && !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = format!("{frac:0<9}").get(..9)?.parse::<u32>().ok()?;
    let days = days_from_civil(y, m, day);
    let secs = u64::try_from(days).ok()? * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `%XX` escapes and `+` for space, as browsers send query strings; invalid escapes stay.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn windows_and_times_parse() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "m", "5x", "-5m", "0", "1e400", "5 m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_time("2026-11-22T02:30:00Z"), Some(at(1_795_314_600)));
        assert_eq!(
            parse_time("2026-11-22T02:30:00.123Z"),
            Some(at(1_795_314_600) + Duration::from_millis(123))
        );
        assert_eq!(
            parse_time("2000-02-29T00:00:00+00:00"),
            Some(at(951_782_400))
        );
        assert_eq!(parse_time("1795314600"), Some(at(1_795_314_600)));
        for bad in [
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T02:30:00+01:00",
            "soon",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_query_selects_and_names_the_selection() {
        let now = at(10_000);
        let s = Selection::from_query(Some("window=5m&x=3&y=4"), now).unwrap();
        assert_eq!(s.filter.since_unix_ms, Some(9_700_000));
        assert_eq!(s.label, "the last 5m");
        assert_eq!(s.window.as_deref(), Some("5m"));
        let s = Selection::from_query(Some("since=1970-01-01T02%3A00%3A00Z&stall=7"), now).unwrap();
        assert_eq!(s.filter.since_unix_ms, Some(7_200_000));
        assert_eq!(s.filter.stall, Some(7));
        let s = Selection::from_query(None, now).unwrap();
        assert_eq!(s.filter, Filter::default());
        assert_eq!(s.label, "everything kept");
        let e = Selection::from_query(Some("window=soon"), now).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid query parameter window=\"soon\": expected a duration like 30s, 5m, 1h or 2d, or a number of seconds"
        );
        assert_eq!(
            Selection::from_query(Some("stall=x"), now)
                .unwrap_err()
                .name,
            "stall"
        );
        assert_eq!(
            Selection::from_query(Some("since=y"), now)
                .unwrap_err()
                .name,
            "since"
        );
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%3Ab+c"), "a:b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
