//! The customer's page, end to end in headless Chromium through ChromeDriver, against the real
//! router on a real socket:
//!
//! - a sign-in link followed from another site opens a session (HttpOnly, SameSite=Strict
//!   cookie) through the same-origin continue page; a used, expired or altered link gets a
//!   page that says so;
//! - a valid code, typed as digits or pasted with hyphens, adds the card's value; the balance
//!   and the history line (card masked but for its last 4) show it; the code is in no URL,
//!   title or history entry, and the form is empty again;
//! - each refusal shows its own help, the generic one where the operator chose it;
//! - a double click, or two posts of one form, redeem once;
//! - a post without the session's CSRF token, or from another site, changes nothing;
//! - the whole redemption works from the keyboard alone, in a sensible focus order;
//! - axe-core finds no serious or critical violation on the balance page or a failure;
//! - screenshots at phone and desktop widths are saved under `target/browser/`;
//! - no code typed in the browser reaches the server's log (a real `tender serve` process).

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::TimeDelta;
use serde_json::json;
use tender::app::App;
use tender::clock::Clock;
use tender::config::{PublicUrl, Settings};
use tender::domain::{Batch, Serial};
use tender::service::ledger::AdjustForm;
use tender::service::sessions::SIGN_IN_LINK_LIFETIME;
use tender::store::{SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::helpers::browser::{Browser, ENTER, SHIFT, TAB, serious_or_critical, wait_until};
use crate::helpers::{
    TestApp, TestDb, actor, both_backends, cards_on_sale, code_of, open_account, spend_and_refund,
};

/// Saves the current page at a phone's width and a desktop's, as `target/browser/{what}-phone.png`
/// and `…-desktop.png`.
async fn screenshots(browser: &Browser, what: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    for (name, width, height) in [("phone", 390, 844), ("desktop", 1280, 900)] {
        browser.set_window_size(width, height).await;
        browser
            .screenshot(dir.join(format!("{what}-{name}.png")))
            .await;
    }
}

/// A served app with a shelf of cards: `batch` holds 8 US cards of 25.00 USD, the first 6
/// sold.
struct Scene<S: Store> {
    env: TestApp<S>,
    app: App<S>,
    addr: SocketAddr,
    batch: Batch,
    _stop: oneshot::Sender<()>,
}

impl<S: Store> Scene<S> {
    async fn new(env: TestApp<S>) -> Scene<S> {
        Scene::with(env, |settings| settings).await
    }

    /// The scene, its app opened with `settings` changed by `change`.
    async fn with(env: TestApp<S>, change: impl FnOnce(Settings) -> Settings) -> Scene<S> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = change(Settings {
            public_url: PublicUrl::parse(&format!("http://{addr}")).unwrap(),
            ..env.db.settings()
        });
        let app = env.reopen(&settings).await;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(tender::api::serve(listener, app.clone(), async {
            let _ = stopped.await;
        }));
        let batch = cards_on_sale(&env, 8, 6).await;
        Scene {
            env,
            app,
            addr,
            batch,
            _stop: stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A new US account's id.
    async fn account(&self) -> String {
        open_account(&self.env, "US", "USD").await
    }

    /// A sign-in link to `account`.
    async fn link(&self, account: &str) -> String {
        self.app
            .services()
            .sessions()
            .mint(account, &actor())
            .await
            .unwrap()
            .url
    }

    fn serial(&self, n: u64) -> Serial {
        Serial::from_sequence(self.batch.first_serial.sequence() + n).unwrap()
    }

    /// The code the printer file holds for card `n`, as printed.
    fn code(&self, n: u64) -> String {
        code_of(&self.env, &self.batch, n)
    }

    async fn balance(&self, account: &str) -> String {
        let account = self.app.services().ledger().account(account).await.unwrap();
        account.balance.to_string()
    }
}

/// Follows `link` from a page of another site (a `data:` page, an opaque origin), as a
/// customer does from the store's site, and waits for the balance page.
async fn sign_in_from_elsewhere(browser: &Browser, link: &str) {
    let store_page = format!(
        "data:text/html,<title>Store</title><a id=go href=\"{}\">Your gift card balance</a>",
        link.replace('&', "%26")
    );
    browser.goto(&store_page).await;
    browser.find("#go").await.click().await;
    browser.find(".balance .amount").await;
}

/// The current page's redeem form id (new with every rendering), whatever page is loaded.
async fn form_id(browser: &Browser) -> serde_json::Value {
    browser
        .execute(
            "const f = document.querySelector('input[name=attempt]'); return f && f.value;",
            vec![],
        )
        .await
}

/// Waits for the page after `before` (a form id) to load.
async fn next_page(browser: &Browser, before: &serde_json::Value) {
    wait_until("the page after the form", || async {
        let now = form_id(browser).await;
        !now.is_null() && &now != before
    })
    .await;
}

/// A scene on SQLite, a new US account, and a browser signed in to it.
async fn signed_in() -> (Scene<SqliteStore>, String, Browser) {
    let scene = Scene::new(TestApp::<SqliteStore>::new(TestDb::sqlite()).await).await;
    let account = scene.account().await;
    let browser = Browser::start().await;
    sign_in_from_elsewhere(&browser, &scene.link(&account).await).await;
    (scene, account, browser)
}

/// Types `code` into the redeem field and submits with the button, then waits for the page
/// the form's answer leads to.
async fn redeem(browser: &Browser, code: &str) {
    let before = form_id(browser).await;
    type_code(browser, code).await;
    browser.find("#redeem-button").await.click().await;
    next_page(browser, &before).await;
}

/// Types `code` into the redeem field, as it was empty.
async fn type_code(browser: &Browser, code: &str) {
    let field = browser.find("#code").await;
    field.clear().await;
    field.send_keys(code).await;
}

/// The session cookie and the form's token and id, as the browser holds them.
async fn form_of(browser: &Browser) -> (String, String, String) {
    let cookie = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "tender_session")
        .and_then(|c| c["value"].as_str().map(str::to_string))
        .expect("the session cookie is set");
    let csrf = browser
        .find("input[name=csrf]")
        .await
        .attribute("value")
        .await
        .unwrap();
    let attempt = form_id(browser).await.as_str().unwrap().to_string();
    (cookie, csrf, attempt)
}

/// A form post as a browser sends it, on its own connection: its status.
async fn post_form(addr: SocketAddr, cookie: &str, body: &str) -> u16 {
    let request = format!(
        "POST /account/redeem HTTP/1.1\r\nHost: {addr}\r\nCookie: tender_session={cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    crate::helpers::http::send_raw(addr, request.as_bytes())
        .await
        .status
}

/// The text of the redeem form's error, once shown.
async fn field_error(browser: &Browser) -> String {
    let error = browser.find("#code-error").await;
    wait_until("the field's error to show", || async {
        error.is_displayed().await
    })
    .await;
    error.text().await
}

/// axe-core on the current page: no serious or critical violation.
async fn assert_accessible(browser: &Browser, what: &str) {
    let violations = browser.axe().await;
    let bad = serious_or_critical(&violations);
    assert!(bad.is_empty(), "{what}: {bad:#?}");
}

async fn signs_in_and_redeems<S: Store>(env: TestApp<S>) {
    let scene = Scene::new(env).await;
    let account = scene.account().await;
    let browser = Browser::start().await;
    sign_in_from_elsewhere(&browser, &scene.link(&account).await).await;
    assert_eq!(browser.current_url().await, scene.url("/account"));
    assert_eq!(browser.find(".balance .amount").await.text().await, "$0.00");
    assert!(browser.source().await.contains("No activity yet"));
    let cookie = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "tender_session")
        .expect("the session cookie is set");
    assert_eq!(cookie["httpOnly"], json!(true));
    assert_eq!(cookie["sameSite"], json!("Strict"));
    assert_eq!(cookie["path"], json!("/account"));
    assert_eq!(
        browser.execute("return document.cookie", vec![]).await,
        json!(""),
        "no script reads the session cookie"
    );

    // Typed as bare digits, the field groups them in fours.
    let code = scene.code(0);
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    let field = browser.find("#code").await;
    field.send_keys(&digits).await;
    let grouped = field.property("value").await;
    assert_eq!(
        grouped,
        json!(format!(
            "{} {} {} {}",
            &digits[..4],
            &digits[4..8],
            &digits[8..12],
            &digits[12..]
        ))
    );
    let before = form_id(&browser).await;
    browser.find("#redeem-button").await.click().await;
    next_page(&browser, &before).await;
    let notice = browser.find(".notice.ok").await.text().await;
    assert!(
        notice.contains("$25.00 was added to your account") && notice.contains("now $25.00"),
        "{notice}"
    );
    assert_eq!(
        browser.find(".balance .amount").await.text().await,
        "$25.00"
    );
    let line = browser.find(".lines li").await.text().await;
    let last4 = &scene.serial(0).to_string()[8..];
    assert!(
        line.contains(&format!("Gift card ••••••••{last4}")),
        "{line}"
    );
    assert!(
        line.contains("+$25.00") && line.contains("Balance $25.00"),
        "{line}"
    );
    assert_eq!(scene.balance(&account).await, "25.00 USD");

    // The code is nowhere the browser keeps or shows it.
    assert_eq!(browser.current_url().await, scene.url("/account"));
    assert!(!browser.title().await.contains(&digits[..4]));
    assert_eq!(
        browser.find("#code").await.property("value").await,
        json!("")
    );
    let source = browser.source().await;
    assert!(!source.contains(&digits) && !source.contains(&code));

    // The notice is shown once: a reload shows the balance without it, and redeems nothing.
    browser.goto(&scene.url("/account")).await;
    browser.find(".balance").await;
    assert!(browser.try_find(".notice").await.is_none());
    assert_eq!(scene.balance(&account).await, "25.00 USD");

    // A code pasted whole, with hyphens: one input event with all of it, grouped at once.
    let digits: String = scene.code(1).chars().filter(char::is_ascii_digit).collect();
    let grouped: Vec<&str> = (0..4).map(|i| &digits[i * 4..i * 4 + 4]).collect();
    let before = form_id(&browser).await;
    let pasted = browser
        .execute(
            "const f = document.getElementById('code');\
             f.focus(); f.value = arguments[0];\
             f.dispatchEvent(new InputEvent('input', {bubbles: true, inputType: 'insertFromPaste'}));\
             return f.value;",
            vec![json!(grouped.join("-"))],
        )
        .await;
    assert_eq!(pasted, json!(grouped.join(" ")));
    browser.find("#redeem-button").await.click().await;
    next_page(&browser, &before).await;
    let notice = browser.find(".notice.ok").await.text().await;
    assert!(notice.contains("now $50.00"), "{notice}");

    // A purchase and its partial refund name the service and the order.
    spend_and_refund(&scene.app, &account, "12.00", "2.50").await;
    browser.goto(&scene.url("/account")).await;
    let lines = browser.find_all(".lines li").await;
    assert_eq!(lines.len(), 4);
    let refund_line = lines[0].text().await;
    assert!(
        refund_line.contains("Refund · app-store") && refund_line.contains("Order A-1001"),
        "{refund_line}"
    );
    assert!(refund_line.contains("+$2.50") && refund_line.contains("Balance $40.50"));
    let spend_line = lines[1].text().await;
    assert!(spend_line.contains("Purchase · app-store") && spend_line.contains("−$12.00"));
    assert_eq!(
        browser.find(".balance .amount").await.text().await,
        "$40.50"
    );

    screenshots(&browser, "balance").await;
    assert_accessible(&browser, "the balance page").await;
    // Everything the page loaded came from tender itself.
    let loaded = browser
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await;
    let loaded: Vec<String> = serde_json::from_value(loaded).unwrap();
    assert!(!loaded.is_empty());
    for url in &loaded {
        assert!(url.starts_with(&scene.url("/account/assets/")), "{url}");
    }

    // Signing out ends the session: the page asks to sign in again.
    browser.find(".sign-out button").await.click().await;
    wait_until("the signed-out page", || async {
        browser.title().await.starts_with("Signed out")
    })
    .await;
    assert_eq!(browser.find("h1").await.text().await, "Signed out");
    browser.goto(&scene.url("/account")).await;
    assert_eq!(browser.find("h1").await.text().await, "You're signed out");
}
both_backends!(signs_in, signs_in_and_redeems);

/// Each refusal, with the help the page gives for it.
async fn each_failure_gets_its_help(env: TestApp<SqliteStore>) {
    let scene = Scene::new(env).await;
    let services = scene.app.services();
    // Card 1 goes to another account first; card 2's funds expire; card 7 was never sold.
    let other = scene.account().await;
    services
        .redemption()
        .redeem(&other, &scene.code(1), None, &actor())
        .await
        .unwrap();
    let now_ms = scene.env.clock.now().timestamp_millis();
    scene
        .env
        .exec(&format!(
            "UPDATE card SET funds_expire_ms = {} WHERE serial = {}",
            now_ms - 1,
            scene.serial(2).sequence()
        ))
        .await;

    let browser = Browser::start().await;
    let account = scene.account().await;
    sign_in_from_elsewhere(&browser, &scene.link(&account).await).await;

    // Checked in the browser before anything is sent: too few digits.
    type_code(&browser, "1234 5678 9012").await;
    browser.find("#redeem-button").await.click().await;
    let text = field_error(&browser).await;
    assert!(text.contains("16 digits; this has 12"), "{text}");
    assert_eq!(
        browser
            .find("#code")
            .await
            .attribute("aria-invalid")
            .await
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        scene.env.count("SELECT count(*) FROM redeem_attempt").await,
        0
    );

    let wrong = "1111 2222 3333 4444";
    let cases = [
        (wrong.to_string(), "doesn't match a gift card"),
        (scene.code(1), "already been redeemed"),
        (scene.code(7), "hasn't been activated yet"),
        (scene.code(2), "has expired"),
    ];
    for (code, help) in &cases {
        redeem(&browser, code).await;
        let text = field_error(&browser).await;
        assert!(text.contains(help), "{help}: {text}");
        // Not refilled, tied to the field for screen readers, and the focus is back in it.
        let field = browser.find("#code").await;
        wait_until("the focus in the field", || async {
            browser.active_element().await.same_as(&field)
        })
        .await;
        assert_eq!(field.property("value").await, json!(""));
        assert_eq!(
            field.attribute("aria-describedby").await.as_deref(),
            Some("code-hint code-error")
        );
        assert!(!browser.current_url().await.contains("code"));
    }
    screenshots(&browser, "failure").await;
    assert_accessible(&browser, "a failed redemption").await;

    // The account's fifth failure this hour was the last allowed: the next is paused, with
    // the time to come back.
    redeem(&browser, "5555 6666 7777 8888").await;
    field_error(&browser).await;
    redeem(&browser, &scene.code(3)).await;
    let text = field_error(&browser).await;
    assert!(
        text.contains("Too many attempts") && text.contains("Try again after 10:00 UTC"),
        "{text}"
    );
    assert_eq!(scene.balance(&account).await, "0.00 USD");

    // A card for another storefront: the help names the store it belongs to.
    let canada = open_account(&scene.env, "CA", "USD").await;
    sign_in_from_elsewhere(&browser, &scene.link(&canada).await).await;
    redeem(&browser, &scene.code(3)).await;
    let text = field_error(&browser).await;
    assert!(
        text.contains("for the United States store") && text.contains("in the Canada store"),
        "{text}"
    );

    // A frozen account sees why before it tries, and its refusal says whom to ask.
    let held = scene.account().await;
    services
        .ledger()
        .freeze(&held, true, "fraud", &actor())
        .await
        .unwrap();
    sign_in_from_elsewhere(&browser, &scene.link(&held).await).await;
    let banner = browser.find(".notice.held").await.text().await;
    assert!(banner.contains("on hold"), "{banner}");
    redeem(&browser, &scene.code(4)).await;
    let text = field_error(&browser).await;
    assert!(text.contains("can't receive credit"), "{text}");
    assert_eq!(scene.balance(&held).await, "0.00 USD");

    // The operator's generic mode: one message for every refusal about the card.
    let generic = Scene::with(
        TestApp::<SqliteStore>::new(TestDb::sqlite()).await,
        |settings| Settings {
            redeem_generic: true,
            ..settings
        },
    )
    .await;
    let account = generic.account().await;
    sign_in_from_elsewhere(&browser, &generic.link(&account).await).await;
    redeem(&browser, &generic.code(7)).await;
    let text = field_error(&browser).await;
    assert!(text.contains("This code can't be redeemed"), "{text}");
    assert!(!text.contains("activated"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_gets_its_own_help() {
    each_failure_gets_its_help(TestApp::new(TestDb::sqlite()).await).await;
}

/// A double click sends one form; two posts of the same form (a browser that sends both)
/// redeem once, and both are answered with the one success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_submit_redeems_once() {
    let (scene, account, browser) = signed_in().await;

    type_code(&browser, &scene.code(0)).await;
    let before = form_id(&browser).await;
    // Two clicks in one task: the second lands before any answer could.
    browser
        .execute(
            "const b = document.getElementById('redeem-button'); b.click(); b.click();",
            vec![],
        )
        .await;
    next_page(&browser, &before).await;
    browser.find(".notice.ok").await;
    assert_eq!(scene.balance(&account).await, "25.00 USD");

    // The same rendered form posted twice at once, as a browser without the script may.
    let (cookie, csrf, attempt) = form_of(&browser).await;
    let code = scene.code(1).replace(' ', "+");
    let body = format!("csrf={csrf}&attempt={attempt}&code={code}");
    let (first, second) = tokio::join!(
        post_form(scene.addr, &cookie, &body),
        post_form(scene.addr, &cookie, &body)
    );
    assert_eq!((first, second), (303, 303));
    assert_eq!(scene.balance(&account).await, "50.00 USD");
    browser.goto(&scene.url("/account")).await;
    let notice = browser.find(".notice.ok").await.text().await;
    assert!(notice.contains("now $50.00"), "{notice}");
    assert_eq!(browser.find_all(".lines li").await.len(), 2);
}

/// A link works once, for a few minutes, and only as tender made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_works_once_and_not_after_it_expires() {
    let scene = Scene::new(TestApp::<SqliteStore>::new(TestDb::sqlite()).await).await;
    let account = scene.account().await;
    let browser = Browser::start().await;
    let link = scene.link(&account).await;
    sign_in_from_elsewhere(&browser, &link).await;

    browser.goto(&link).await;
    assert_eq!(
        browser.find("h1").await.text().await,
        "This link was already used"
    );

    let late = scene.link(&account).await;
    let lifetime = TimeDelta::from_std(SIGN_IN_LINK_LIFETIME).unwrap();
    scene.env.clock.advance(lifetime + TimeDelta::seconds(1));
    browser.goto(&late).await;
    assert_eq!(
        browser.find("h1").await.text().await,
        "This link has expired"
    );

    let fresh = scene.link(&account).await;
    let last = fresh.chars().last().unwrap();
    let altered = format!(
        "{}{}",
        &fresh[..fresh.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    browser.goto(&altered).await;
    assert_eq!(
        browser.find("h1").await.text().await,
        "This link isn't valid"
    );
    browser
        .goto(&scene.url("/account/sign-in?token=nonsense"))
        .await;
    assert_eq!(
        browser.find("h1").await.text().await,
        "This link isn't valid"
    );
    // The fresh link, unaltered, still works: an altered copy did not use it up.
    browser.goto(&fresh).await;
    browser.find(".balance").await;

    // A session lasts its lifetime and no longer.
    scene.env.clock.advance(TimeDelta::minutes(31));
    browser.goto(&scene.url("/account")).await;
    assert_eq!(browser.find("h1").await.text().await, "You're signed out");
}

/// Forms need their session's token, and another site's form does not carry the cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_its_token_changes_nothing() {
    let (scene, account, browser) = signed_in().await;

    // The browser's own cookie, with no token or a made-up one.
    let (cookie, _, attempt) = form_of(&browser).await;
    let code = scene.code(0).replace(' ', "+");
    let without = format!("attempt={attempt}&code={code}");
    assert_eq!(post_form(scene.addr, &cookie, &without).await, 403);
    let forged = format!("csrf={}&{without}", "0".repeat(64));
    assert_eq!(post_form(scene.addr, &cookie, &forged).await, 403);

    // Another site's form, posted in the signed-in browser: no cookie goes with it.
    let csrf = browser
        .find("input[name=csrf]")
        .await
        .attribute("value")
        .await
        .unwrap();
    let page = format!(
        "data:text/html,<form id=f method=post action=\"{}\">\
         <input name=csrf value={csrf}><input name=attempt value=x3>\
         <input name=code value=\"{}\"></form>",
        scene.url("/account/redeem"),
        scene.code(0)
    );
    browser.goto(&page).await;
    browser
        .execute("document.getElementById('f').submit()", vec![])
        .await;
    wait_until("the cross-site post's answer", || async {
        browser.current_url().await.starts_with("http")
    })
    .await;
    assert_eq!(browser.find("h1").await.text().await, "You're signed out");
    assert_eq!(scene.balance(&account).await, "0.00 USD");
    assert_eq!(
        scene.env.count("SELECT count(*) FROM redeem_attempt").await,
        0
    );
}

/// The history pages by 20 lines, newest first, each with the balance after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_pages_by_twenty_newest_first() {
    let scene = Scene::new(TestApp::<SqliteStore>::new(TestDb::sqlite()).await).await;
    let account = scene.account().await;
    let ledger = scene.app.services().ledger();
    for n in 1..=25 {
        let form = AdjustForm {
            account: account.clone(),
            amount: format!("{n}.00"),
            currency: "USD".into(),
            reason: "goodwill".into(),
        };
        ledger.adjust(&form, &actor()).await.unwrap();
    }
    let browser = Browser::start().await;
    sign_in_from_elsewhere(&browser, &scene.link(&account).await).await;
    let lines = browser.find_all(".lines li").await;
    assert_eq!(lines.len(), 20);
    // 1 + 2 + … + 25 = 325.00; the newest line is the 25.00 credit.
    let newest = lines[0].text().await;
    assert!(
        newest.contains("+$25.00") && newest.contains("Balance $325.00"),
        "{newest}"
    );
    assert!(
        browser
            .try_find(".pager a[href='/account']")
            .await
            .is_none()
    );
    browser.find(".pager a").await.click().await;
    wait_until("the older page", || async {
        browser.current_url().await.contains("before=")
    })
    .await;
    let older = browser.find_all(".lines li").await;
    assert_eq!(older.len(), 5);
    let oldest = older[4].text().await;
    assert!(
        oldest.contains("+$1.00") && oldest.contains("Balance $1.00"),
        "{oldest}"
    );
    browser.find(".pager a[href='/account']").await;
    browser
        .goto(&scene.url("/account?before=not-a-number"))
        .await;
    assert_eq!(browser.find("h1").await.text().await, "Page not found");
}

/// From the page's top to a redeemed card with the keyboard alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_redeems_with_the_keyboard_alone() {
    let (scene, account, browser) = signed_in().await;
    browser.goto(&scene.url("/account")).await;
    browser.find("#code").await;

    // The focus order: the skip link, sign out, the code field, the button.
    let mut order = Vec::new();
    for _ in 0..4 {
        browser.press(TAB).await;
        let focused = browser.active_element().await;
        let label = match focused.attribute("id").await {
            Some(id) if !id.is_empty() => id,
            _ => focused.text().await,
        };
        order.push(label);
    }
    assert_eq!(
        order,
        ["Skip to content", "Sign out", "code", "redeem-button"]
    );
    browser.press_chord(&[SHIFT, TAB]).await;
    let field = browser.active_element().await;
    assert_eq!(field.attribute("id").await.as_deref(), Some("code"));
    field.send_keys(&scene.code(0)).await;
    browser.press(ENTER).await;
    let notice = browser.find(".notice.ok").await;
    assert!(notice.text().await.contains("$25.00 was added"));
    // The outcome takes the focus, so a screen reader reads it first.
    assert!(browser.active_element().await.same_as(&notice));
    assert_eq!(scene.balance(&account).await, "25.00 USD");
}

/// Codes typed in the browser never reach the log of a real `tender serve`, at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_typed_code_reaches_the_server_log() {
    let env = TestApp::<SqliteStore>::new(TestDb::sqlite()).await;
    let batch = cards_on_sale(&env, 8, 6).await;
    let scene_code = |n: u64| code_of(&env, &batch, n);
    let account = open_account(&env, "US", "USD").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let origin = format!("http://127.0.0.1:{port}");
    let log = env.db.path().join("serve.log");
    let _server = tokio::process::Command::from(crate::helpers::tender_command(
        &env,
        &[
            "serve",
            "--no-jobs",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
    ))
    .env("TENDER_LOG", "debug")
    .env("TENDER_PUBLIC_URL", &origin)
    .stdout(std::fs::File::create(env.db.path().join("serve.out")).unwrap())
    .stderr(std::fs::File::create(&log).unwrap())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let minted = crate::helpers::tender_command(&env, &["account", "link", &account])
        .env("TENDER_PUBLIC_URL", &origin)
        .output()
        .unwrap();
    assert!(minted.status.success(), "{minted:?}");
    let link = String::from_utf8(minted.stdout).unwrap();
    let link = link.lines().next().unwrap().to_string();
    assert!(link.starts_with(&format!("{origin}/account/sign-in?token=")));
    wait_until("tender serve to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;

    let browser = Browser::start().await;
    sign_in_from_elsewhere(&browser, &link).await;
    let typed = [
        scene_code(0),
        "9999 8888 7777 6666".to_string(),
        scene_code(7),
    ];
    for code in &typed {
        redeem(&browser, code).await;
        browser.find(".notice, #code-error:not([hidden])").await;
    }
    assert!(browser.find(".balance .amount").await.text().await == "$25.00");
    drop(browser);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("route=/account/redeem"),
        "the log is the server's: {text}"
    );
    for code in &typed {
        let digits: String = code.chars().filter(char::is_ascii_digit).collect();
        for form in [code.as_str(), digits.as_str(), &digits[..8], &digits[8..]] {
            assert!(!text.contains(form), "the log holds a typed code: {form}");
        }
    }
    // Nor the sign-in link's token, which the request line carried.
    let mac = link.rsplit('.').next().unwrap();
    assert!(!text.contains(mac), "the log holds the sign-in token");
}
