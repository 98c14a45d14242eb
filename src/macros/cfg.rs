//! `cfg` helpers in the style of tokio's `src/macros/cfg.rs`: each build condition is
//! spelled once, here, and the items it gates are wrapped in its macro, with the docs.rs
//! badge for the public ones. Only items can be wrapped: struct fields, statements and
//! match arms keep the plain attribute.

/// Hooked mode's build: tokio's task hooks exist (`--cfg tokio_unstable`).
macro_rules! cfg_hooked {
    ($($item:item)*) => {
        $(
            #[cfg(tokio_unstable)]
            #[cfg_attr(docsrs, doc(cfg(tokio_unstable)))]
            $item
        )*
    };
}

/// The tokio-console server: the `console` feature, in hooked mode's build.
macro_rules! cfg_console {
    ($($item:item)*) => {
        $(
            #[cfg(all(feature = "console", tokio_unstable))]
            #[cfg_attr(docsrs, doc(cfg(all(feature = "console", tokio_unstable))))]
            $item
        )*
    };
}

/// Where stacks can be captured: Linux on x86_64 or aarch64 (`capture::linux`).
macro_rules! cfg_capture {
    ($($item:item)*) => {
        $(
            #[cfg(all(
                target_os = "linux",
                any(target_arch = "x86_64", target_arch = "aarch64")
            ))]
            $item
        )*
    };
}

/// Everywhere else (`capture::unsupported`).
macro_rules! cfg_not_capture {
    ($($item:item)*) => {
        $(
            #[cfg(not(all(
                target_os = "linux",
                any(target_arch = "x86_64", target_arch = "aarch64")
            )))]
            $item
        )*
    };
}
