//! The page at `/`, opened in headless Chromium (chromedriver over WebDriver, loopback only)
//! while one stall is still going on: the health tiles show it stalled now, the list shows
//! each stall with its kind, duration and the culprit function, expanding one shows the
//! application's frames first, and the flamegraph below is inferno's, drawn and working (its
//! script ran; clicking a frame zooms). A screenshot is saved under the test's temp dir (and
//! copied to `$POLLWATCH_SCREENSHOT_TO` when set, which is how `docs/stall-page.png` is made).

#![cfg(feature = "flamegraph")]

use crate::support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::browser::{self, Browser};
use support::scrape;

#[inline(never)]
fn verify_the_signature(d: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 1u64;
    while start.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

#[inline(never)]
fn read_the_config_file() {
    std::thread::sleep(Duration::from_millis(350));
}

#[inline(never)]
fn wait_for_the_cache_lock(lock: &Mutex<()>) {
    drop(lock.lock());
}

#[test]
fn stall_page_shows_the_stall_and_the_flamegraph_in_a_browser() {
    let _serial = support::serial();
    let (driver, chromium) = browser::installed();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .runtime_name("checkout")
            .stall_threshold(Duration::from_millis(100))
            .http_addr(scrape::any_port()),
    );
    let addr = agent.http_addr().unwrap();

    rt.block_on(async {
        tokio::spawn(async { verify_the_signature(Duration::from_millis(450)) })
            .await
            .unwrap();
        // Idle in between: attach mode tells two back-to-back long polls apart only when
        // the worker parks between them.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::spawn(async { read_the_config_file() })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    // Another thread holds the lock until the test is done (30 s at most).
    let lock = Arc::new(Mutex::new(()));
    let release = Arc::new(AtomicBool::new(false));
    let (held, holding) = (lock.clone(), release.clone());
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let _guard = held.lock().unwrap();
        locked_tx.send(()).unwrap();
        let start = Instant::now();
        while !holding.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    locked_rx.recv().unwrap();
    rt.spawn(async move { wait_for_the_cache_lock(&lock) });
    let reports = support::wait_for(&agent, Duration::from_secs(20), |s| {
        s.len() == 3 && s.iter().all(|r| !r.frames.is_empty()) && s[2].duration_ms > 400.0
    });
    assert_eq!(reports.len(), 3, "{reports:#?}");
    assert!(reports[2].ongoing, "{reports:#?}");

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("stall_page")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let b = Browser::start(&driver, &chromium, &dir, 1280, 1180);
    b.open(&format!("http://{addr}/"));

    assert!(
        b.eval("return document.title")
            .as_str()
            .unwrap()
            .contains("checkout"),
        "title names the runtime"
    );
    let tile = |name: &str| {
        b.eval(&format!(
            "for (const t of document.querySelectorAll('.tile')) \
             if (t.querySelector('.k').textContent === '{name}') return t.querySelector('.v').textContent; \
             return null;"
        ))
    };
    assert_eq!(tile("stalled now"), "1", "one worker is stuck right now");
    assert_eq!(tile("workers"), "2");
    assert_eq!(tile("stalls per minute"), "3");
    let rows = b.eval(
        "return [...document.querySelectorAll('details.stall > summary')].map(s => s.innerText)",
    );
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    eprintln!("stall rows: {rows:#?}");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows[0].contains("wait_for_the_cache_lock") && rows[0].contains("ongoing"),
        "newest first: {rows:?}"
    );
    assert!(rows[0].contains("off-cpu"), "a lock wait: {rows:?}");
    assert!(
        rows[1].contains("read_the_config_file") && rows[1].contains("off-cpu"),
        "{rows:?}"
    );
    assert!(
        rows[2].contains("verify_the_signature") && rows[2].contains("cpu"),
        "{rows:?}"
    );

    // Expanding a stall shows the application's frames first.
    let first = b.eval(
        "const d = document.querySelectorAll('details.stall')[2]; d.open = true; \
         return d.querySelector('ol.stack li').innerText",
    );
    assert!(
        first.as_str().unwrap().contains("verify_the_signature"),
        "{first}"
    );

    // The flamegraph: inferno's SVG in its frame, its script has run, and it zooms.
    let frames = b.wait_for(
        "const f = document.querySelector('iframe.flame'); \
         const d = f && f.contentDocument; const g = d && d.getElementById('frames'); \
         if (!g || !d.getElementById('unzoom')) return null; \
         return [...g.querySelectorAll('g > title')].map(t => t.textContent)",
        Duration::from_secs(10),
    );
    let frames: Vec<String> = serde_json::from_value(frames).expect("the flamegraph is drawn");
    assert!(
        frames.iter().any(|t| t.contains("verify_the_signature")),
        "{frames:#?}"
    );
    assert!(
        frames.iter().any(|t| t.contains("read_the_config_file")),
        "{frames:#?}"
    );
    assert!(
        frames.iter().any(|t| t.contains("wait_for_the_cache_lock")),
        "an ongoing stall is drawn too"
    );
    let height =
        b.eval("return document.querySelector('iframe.flame').getBoundingClientRect().height");
    assert!(
        height.as_f64().unwrap() > 100.0,
        "the frame fits the drawing: {height}"
    );
    let zoomed = b.eval(
        "const d = document.querySelector('iframe.flame').contentDocument; \
         const t = [...d.querySelectorAll('#frames g > title')].find(t => t.textContent.includes('read_the_config_file')); \
         t.parentNode.dispatchEvent(new MouseEvent('click', {bubbles: true})); \
         return !d.getElementById('unzoom').classList.contains('hide')",
    );
    assert_eq!(
        zoomed, true,
        "clicking a frame zooms (the reset button appears)"
    );
    b.eval(
        "const d = document.querySelector('iframe.flame').contentDocument; \
         d.getElementById('unzoom').dispatchEvent(new MouseEvent('click', {bubbles: true})); \
         document.querySelectorAll('details.stall')[2].open = false; \
         document.querySelectorAll('details.stall')[1].open = true; return true",
    );

    let png = b.screenshot();
    let size = browser::png_size(&png).expect("a PNG");
    assert!(size.0 >= 1000 && size.1 >= 800, "{size:?}");
    let shot = dir.join("stall-page.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!(
        "screenshot: {} ({} KiB, {}x{})",
        shot.display(),
        png.len() / 1024,
        size.0,
        size.1
    );
    if let Some(to) = std::env::var_os("POLLWATCH_SCREENSHOT_TO") {
        std::fs::copy(&shot, &to).unwrap();
    }
    drop(b);
    release.store(true, Ordering::SeqCst);
    holder.join().unwrap();
}
