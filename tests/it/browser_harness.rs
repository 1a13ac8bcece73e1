//! The browser harness checks itself: a real headless Chromium through ChromeDriver types,
//! moves the focus with the keyboard, clicks, runs scripts, takes a screenshot and runs axe-core
//! on a small page, and axe-core finds what a broken page gets wrong.

use std::path::Path;
use std::time::Instant;

use serde_json::json;

use crate::helpers::browser::{Browser, ENTER, SHIFT, TAB, serious_or_critical, wait_until};

/// A `data:` URL of an HTML document.
fn data_url(html: &str) -> String {
    let mut url = String::from("data:text/html;charset=utf-8,");
    for byte in html.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~ ".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Harness</title></head>
<body>
<main>
  <h1>Gift card check</h1>
  <label for="code">Card code</label>
  <input id="code" type="text" autocomplete="off">
  <button id="check" type="button">Check</button>
  <a id="help" href="#help">Help</a>
  <p id="out" role="status"></p>
</main>
<script>
  const check = () => {
    document.getElementById('out').textContent = 'Checked ' + document.getElementById('code').value;
  };
  document.getElementById('check').addEventListener('click', check);
  document.getElementById('code').addEventListener('keydown', e => { if (e.key === 'Enter') check(); });
</script>
</body>
</html>"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_types_tabs_clicks_and_passes_axe() {
    let started = Instant::now();
    let browser = Browser::start().await;
    eprintln!("Browser::start took {:?}", started.elapsed());
    browser.set_window_size(1280, 800).await;

    browser.goto(&data_url(PAGE)).await;
    assert_eq!(browser.title().await, "Harness");
    assert!(browser.current_url().await.starts_with("data:text/html"));
    assert!(browser.source().await.contains("Gift card check"));
    assert_eq!(
        browser
            .find_all("main a, main button, main input")
            .await
            .len(),
        3
    );
    assert!(browser.try_find("#missing").await.is_none());

    let input = browser.find("#code").await;
    let button = browser.find("#check").await;
    assert!(input.is_displayed().await);
    assert_eq!(input.attribute("type").await.as_deref(), Some("text"));
    assert_eq!(input.attribute("placeholder").await, None);
    input.send_keys("typo").await;
    input.clear().await;
    input.send_keys("GIFT-1234").await;
    assert_eq!(input.property("value").await, "GIFT-1234");
    assert_eq!(browser.active_element().await, input);

    browser.press(TAB).await;
    let focused = browser.active_element().await;
    assert!(
        focused.same_as(&button),
        "Tab moved the focus to {focused:?}"
    );
    assert_ne!(focused, input);
    browser.press_chord(&[SHIFT, TAB]).await;
    assert_eq!(browser.active_element().await, input, "Shift+Tab goes back");

    input.send_keys(ENTER).await;
    let out = browser.find("#out").await;
    wait_until("Enter to check the code", || async {
        out.text().await == "Checked GIFT-1234"
    })
    .await;
    // (Focus that arrives by keyboard selects the input's text, so typing now would replace it.)
    input.clear().await;
    input.send_keys("GIFT-5678").await;
    button.click().await;
    wait_until("a click to check the code", || async {
        out.text().await == "Checked GIFT-5678"
    })
    .await;

    assert_eq!(
        browser
            .execute("return arguments[0] + 1;", vec![json!(41)])
            .await,
        42
    );
    let title = browser
        .execute_async("arguments[arguments.length - 1](document.title);", vec![])
        .await;
    assert_eq!(title, "Harness");
    assert!(
        browser.cookies().await.is_empty(),
        "a data: page has no cookies"
    );

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser/harness.png");
    browser.screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 1000, "a screenshot of {} bytes", png.len());

    let violations = browser.axe().await;
    assert_eq!(serious_or_critical(&violations), Vec::<String>::new());

    // axe-core does find problems: an unlabelled input and an image without text.
    browser
        .goto(&data_url(
            r#"<!doctype html><html lang="en"><head><title>Broken</title></head>
            <body><main><input id="nameless"><img src="x.png"></main></body></html>"#,
        ))
        .await;
    let found = serious_or_critical(&browser.axe().await);
    assert!(
        found.iter().any(|v| v.starts_with("label (critical)")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|v| v.starts_with("image-alt (critical)")),
        "{found:?}"
    );
}
