//! Signal settings are given by name relative to the real-time range or by number, and
//! anything outside the real-time signals is refused with the setting's name in the error.
//!
//! Linux only: real-time signals are a Linux API.
#![cfg(target_os = "linux")]

use crate::support;

use pollwatch::capture::{default_signal, parse_signal};
use pollwatch::Error;

#[test]
fn names_and_numbers_of_real_time_signals_are_accepted() {
    let _serial = support::serial();
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    assert_eq!(default_signal(), min + 3);
    assert_eq!(parse_signal("signal", "SIGRTMIN+3").unwrap(), min + 3);
    assert_eq!(parse_signal("signal", "RTMIN+3").unwrap(), min + 3);
    assert_eq!(parse_signal("signal", " sigrtmin+3 ").unwrap(), min + 3);
    assert_eq!(parse_signal("signal", "SIGRTMIN").unwrap(), min);
    assert_eq!(parse_signal("signal", "SIGRTMAX-2").unwrap(), max - 2);
    assert_eq!(
        parse_signal("signal", &(min + 5).to_string()).unwrap(),
        min + 5
    );
}

#[test]
fn other_signals_and_garbage_are_refused_naming_the_setting() {
    let _serial = support::serial();
    for bad in [
        "SIGUSR1",
        "9",
        "0",
        "-40",
        "",
        "SIGRTMIN+100",
        "SIGRTMAX+1",
        "SIGRTMIN-1",
        "RTMIN+x",
        "RTMIN++3",
        "RTMIN3",
    ] {
        match parse_signal("POLLWATCH_SIGNAL", bad) {
            Err(Error::InvalidConfig { field, value, .. }) => {
                assert_eq!(field, "POLLWATCH_SIGNAL");
                assert_eq!(value, bad);
            }
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}
