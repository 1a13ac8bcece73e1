//! The handlers and the HTML they render. Every value written into a page goes through
//! [`escape`]; the only markup is this file's own.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::Form;
use axum::extract::rejection::{ExtensionRejection, FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::format;
use crate::app::App;
use crate::domain::{
    Account, Actor, Currency, HistoryLine, Money, PageRows, Region, TransferId, TransferKind,
};
use crate::error::{Classify, Kind};
use crate::service::redemption::{Caller, RedeemError, Redeemed};
use crate::service::sessions::{Current, SessionError};
use crate::store::Store;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tender_session";

/// History lines per page: a phone screen or two.
pub const HISTORY_PAGE_ROWS: u32 = 20;

/// The longest history cursor read: a transfer id has at most 19 digits.
const CURSOR_MAX_CHARS: usize = 19;

/// `GET /account/assets/tender.css`
pub(super) async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/tender.css"))
}

/// `GET /account/assets/redeem.js`
pub(super) async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/redeem.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Public and small; an hour keeps a deploy's change from waiting long.
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The sign-in link's query.
#[derive(Deserialize)]
pub(super) struct SignInQuery {
    token: Option<String>,
}

/// `GET /account/sign-in?token=…`: uses the link up, sets the session cookie and renders a
/// page that continues to the account. Not a redirect: a SameSite=Strict cookie set while
/// following a link from another site is not sent on a redirect that link started, but is on
/// this same-origin page's own navigation.
pub(super) async fn sign_in<S: Store>(
    State(app): State<App<S>>,
    query: Result<Query<SignInQuery>, QueryRejection>,
) -> Response {
    // The service refuses a token too long before it reads it.
    let token = query.ok().and_then(|Query(q)| q.token).unwrap_or_default();
    match app.services().sessions().sign_in(&token).await {
        Ok(opened) => {
            let cookie = session_cookie(
                &opened.cookie,
                crate::service::sessions::SESSION_LIFETIME.as_secs(),
                app.settings().public_url.is_https(),
            );
            let body = page(
                "Signed in",
                None,
                "<meta http-equiv=\"refresh\" content=\"0;url=/account\">",
                "<h1>You're signed in</h1>\
                 <p><a class=\"button\" href=\"/account\">Continue to your balance</a></p>",
            );
            let mut response = html(StatusCode::OK, body);
            response.headers_mut().insert(SET_COOKIE, cookie);
            response
        }
        Err(error) => session_refused(&error),
    }
}

/// The history cursor.
#[derive(Deserialize)]
pub(super) struct AccountQuery {
    before: Option<String>,
}

/// `GET /account`: the balance, the redeem form (with the last form's outcome, once) and one
/// page of the history.
pub(super) async fn account<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    query: Result<Query<AccountQuery>, QueryRejection>,
) -> Response {
    let Some(cookie) = session_of(&headers) else {
        return session_refused(&SessionError::NoSession);
    };
    let before = match query.ok().and_then(|Query(q)| q.before) {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(id) if id > 0 && text.len() <= CURSOR_MAX_CHARS => Some(TransferId(id)),
            _ => {
                return message_page(
                    StatusCode::BAD_REQUEST,
                    "Page not found",
                    "That page of your activity doesn't exist.",
                    "<p><a href=\"/account\">Go to your balance</a></p>",
                );
            }
        },
    };
    let services = app.services();
    let current = match services.sessions().current(&cookie).await {
        Ok(current) => current,
        Err(error) => return session_refused(&error),
    };
    let rows = PageRows::new(u64::from(HISTORY_PAGE_ROWS)).expect("a page is within bounds");
    let lines = match services
        .ledger()
        .history(&current.account.id.to_string(), before, rows)
        .await
    {
        Ok(lines) => lines,
        Err(error) => return failure(&error),
    };
    let notice = current
        .notice
        .as_deref()
        .and_then(|text| serde_json::from_str::<Notice>(text).ok());
    let body = account_page(&current, notice.as_ref(), &lines, before.is_some());
    html(StatusCode::OK, body)
}

/// The redeem form as posted. The code is wiped when the request ends.
#[derive(Deserialize)]
pub(super) struct RedeemForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    attempt: String,
}

impl Drop for RedeemForm {
    fn drop(&mut self) {
        self.code.zeroize();
    }
}

/// `POST /account/redeem`: redeems the code into the signed-in account, keeps the outcome for
/// the page and answers 303 to it. The form's `attempt` (new with every rendering) is the
/// idempotency key, so a double submit redeems once and both answers tell the same success.
pub(super) async fn redeem<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    form: Result<Form<RedeemForm>, FormRejection>,
) -> Response {
    if let Some(refused) = too_large(&form) {
        return refused;
    }
    let form = form.ok().map(|Form(form)| form);
    let (cookie, current) =
        match posted_in(&app, &headers, form.as_ref().map(|f| f.csrf.as_str())).await {
            Ok(session) => session,
            Err(refused) => return refused,
        };
    let Some(form) = form else {
        return session_refused(&SessionError::Csrf);
    };
    let services = app.services();
    let header = app.settings().client_address_header.as_ref();
    let Some(address) = super::client_address(&headers, peer.as_ref().ok(), header) else {
        tracing::warn!("a redemption came without the client address header the settings name");
        return message_page(
            StatusCode::BAD_REQUEST,
            "Something went wrong",
            "We couldn't check this request, so nothing was redeemed. Try again in a moment.",
            "<p><a href=\"/account\">Back to your balance</a></p>",
        );
    };
    let account = current.account.id;
    let outcome = services
        .redemption()
        .redeem_as(
            &account.to_string(),
            &form.code,
            Some(&form.attempt),
            &Actor::customer(account),
            Caller::Address(address),
        )
        .await;
    let notice = match outcome {
        Ok(redeemed) => Notice::redeemed(&redeemed),
        Err(error) => Notice::refused(&error),
    };
    let text = serde_json::to_string(&notice).expect("a notice serialises");
    if let Err(error) = services.sessions().leave_notice(&cookie, &text).await {
        return failure(&error);
    }
    see_other("/account")
}

/// The sign-out form.
#[derive(Deserialize)]
pub(super) struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /account/sign-out`: ends the session and clears the cookie.
pub(super) async fn sign_out<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Response {
    if let Some(refused) = too_large(&form) {
        return refused;
    }
    let csrf = form.ok().map(|Form(form)| form.csrf);
    let cookie = match posted_in(&app, &headers, csrf.as_deref()).await {
        Ok((cookie, _)) => cookie,
        Err(refused) => return refused,
    };
    if let Err(error) = app.services().sessions().sign_out(&cookie).await {
        return failure(&error);
    }
    let mut response = message_page(
        StatusCode::OK,
        "Signed out",
        "You're signed out. To see your balance again, open it from the store.",
        "",
    );
    let cleared = session_cookie("", 0, app.settings().public_url.is_https());
    response.headers_mut().insert(SET_COOKIE, cleared);
    response
}

/// The page for a form body over [`super::FORM_BODY_MAX_BYTES`]: none of ours is, so nothing
/// of it is read.
fn too_large<T>(form: &Result<Form<T>, FormRejection>) -> Option<Response> {
    let rejection = form.as_ref().err()?;
    if rejection.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return None;
    }
    let mut response = message_page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "This form is too large",
        "Nothing was changed. Go back to your balance page and try again.",
        "<p><a href=\"/account\">Back to your balance</a></p>",
    );
    response
        .extensions_mut()
        .insert(super::PageRefusal("page.form_too_large"));
    Some(response)
}

/// The session a form was posted in, with its cookie: the post must carry the cookie, come
/// from this site and hold the session's own token (`csrf`, `None` when the form did not
/// parse); otherwise the page that refuses it.
async fn posted_in<S: Store>(
    app: &App<S>,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<(String, Current), Response> {
    let cookie = session_of(headers).ok_or_else(|| session_refused(&SessionError::NoSession))?;
    let csrf = csrf
        .filter(|_| !cross_site(headers))
        .ok_or_else(|| session_refused(&SessionError::Csrf))?;
    match app.services().sessions().for_form(&cookie, csrf).await {
        Ok(current) => Ok((cookie, current)),
        Err(error) => Err(session_refused(&error)),
    }
}

/// Whether the browser says the request came from another site (`Sec-Fetch-Site`): refused
/// before the token is even compared. Browsers that do not send the header still need the
/// token.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none")
}

/// The session cookie's value, if the request carries one.
fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_string())
        })
}

/// The `Set-Cookie` value: HttpOnly (no script reads it), SameSite=Strict (no other site's
/// request carries it), on `/account` only (the API never sees it), Secure behind https.
fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{SESSION_COOKIE}={value}; Path=/account; Max-Age={max_age_secs}; HttpOnly; \
         SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).expect("a cookie of hex digits is a valid header")
}

fn see_other(to: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_static(to))],
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// A refused link, session or form, as a page that says what to do.
fn session_refused(error: &SessionError) -> Response {
    let (status, title, text) = match error {
        SessionError::LinkInvalid => (
            StatusCode::BAD_REQUEST,
            "This link isn't valid",
            "This sign-in link isn't complete or was changed. Go back to the store and open your \
             gift card balance again to get a new link.",
        ),
        SessionError::LinkUsed => (
            StatusCode::GONE,
            "This link was already used",
            "For your security, each sign-in link works once. Go back to the store and open your \
             gift card balance again to get a new link.",
        ),
        SessionError::LinkExpired => (
            StatusCode::GONE,
            "This link has expired",
            "Sign-in links work for a few minutes. Go back to the store and open your gift card \
             balance again to get a new link.",
        ),
        SessionError::NoSession | SessionError::SessionEnded | SessionError::SessionExpired => (
            StatusCode::UNAUTHORIZED,
            "You're signed out",
            "To see your balance or redeem a gift card, open your gift card balance from the \
             store's website; it signs you in here.",
        ),
        SessionError::Csrf => (
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Nothing was changed. Go back to your balance page, reload it, and try again.",
        ),
        other => return failure(other),
    };
    let more = match error {
        SessionError::Csrf => "<p><a href=\"/account\">Back to your balance</a></p>",
        _ => "",
    };
    let mut response = message_page(status, title, text, more);
    response
        .extensions_mut()
        .insert(super::PageRefusal(error.code()));
    response
}

/// A failure of ours: logged with its cause, shown as one calm sentence.
fn failure(error: &(impl Classify + std::fmt::Display)) -> Response {
    let status = match error.kind() {
        Kind::Transient => StatusCode::SERVICE_UNAVAILABLE,
        Kind::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::error!(code = error.code(), error = %error, "page failed");
    let mut response = message_page(
        status,
        "Something went wrong",
        "Something went wrong on our side, and nothing was changed. Try again in a moment.",
        "<p><a href=\"/account\">Back to your balance</a></p>",
    );
    response
        .extensions_mut()
        .insert(super::PageRefusal(error.code()));
    response
}

fn message_page(status: StatusCode, title: &str, text: &str, more: &str) -> Response {
    let main = format!("<h1>{}</h1><p>{}</p>{more}", escape(title), escape(text));
    html(status, page(title, None, "", &main))
}

/// The outcome of a redeem form, kept with the session for the page it redirects to. Never
/// holds the code.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Notice {
    /// The card's value was added.
    Redeemed {
        amount_minor: i64,
        balance_minor: i64,
        currency: Currency,
    },
    /// Refused, with the stable code and what its help needs.
    Refused {
        code: String,
        card_region: Option<Region>,
        card_currency: Option<Currency>,
        retry_at: Option<DateTime<Utc>>,
        /// Seconds from the refusal to `retry_at`, for "in about N minutes".
        retry_after_secs: Option<i64>,
    },
}

impl Notice {
    fn redeemed(redeemed: &Redeemed) -> Notice {
        Notice::Redeemed {
            amount_minor: redeemed.amount.minor(),
            balance_minor: redeemed.balance_after.minor(),
            currency: redeemed.amount.currency(),
        }
    }

    fn refused(error: &RedeemError) -> Notice {
        if matches!(error.kind(), Kind::Internal | Kind::Transient) {
            tracing::error!(code = error.code(), error = %error, "a page redemption failed");
        }
        let (card_region, card_currency, retry_at, retry_after_secs) = match error {
            RedeemError::RegionMismatch { card, .. } => (Some(*card), None, None, None),
            RedeemError::CurrencyMismatch { card, .. } => (None, Some(*card), None, None),
            RedeemError::RateLimited {
                retry_at,
                retry_after_secs,
            } => (None, None, Some(*retry_at), Some(*retry_after_secs)),
            _ => (None, None, None, None),
        };
        Notice::Refused {
            code: error.code().to_string(),
            card_region,
            card_currency,
            retry_at,
            retry_after_secs,
        }
    }
}

/// The help a refusal gets, in plain words: what happened, then what to do.
fn help(code: &str, account: &Account, notice: &Notice) -> String {
    let (card_region, card_currency, retry_at, wait_secs) = match notice {
        Notice::Refused {
            card_region,
            card_currency,
            retry_at,
            retry_after_secs,
            ..
        } => (*card_region, *card_currency, *retry_at, *retry_after_secs),
        Notice::Redeemed { .. } => (None, None, None, None),
    };
    let store = |region: Region| format!("{} store", format::country_name(region));
    match code {
        "redeem.invalid_format" => "Enter the 16-digit code from the back of your card. It's \
            under the scratch-off strip; the serial number printed near the barcode won't work."
            .to_string(),
        "redeem.not_found" => "That code doesn't match a gift card. Check each digit, and make \
            sure you entered the 16-digit code under the scratch-off strip, not the card's serial \
            number."
            .to_string(),
        "redeem.already_redeemed" => "This gift card has already been redeemed. Each card can be \
            redeemed once; if it wasn't you, contact the store that sold it."
            .to_string(),
        "redeem.not_activated" => "This gift card hasn't been activated yet. Take it, with your \
            receipt, back to the store that sold it, and ask them to activate it."
            .to_string(),
        "redeem.expired" => "This gift card has expired, so it can't be redeemed. If you think \
            that's a mistake, contact the store that sold it."
            .to_string(),
        "redeem.region_mismatch" => match card_region {
            Some(card) => format!(
                "This gift card is for the {}, and your account is in the {}. Redeem it with an \
                 account in the {}.",
                store(card),
                store(account.region),
                store(card),
            ),
            None => "This gift card is for another country's store.".to_string(),
        },
        "redeem.currency_mismatch" => format!(
            "This gift card is in {}, and your account holds {}, so it can't be added here. \
             Redeem it with an account in that currency.",
            card_currency.map_or("another currency", |c| c.code()),
            account.currency.code(),
        ),
        "redeem.blocked" => "This gift card can't be used right now. Contact the store that sold \
            it for help."
            .to_string(),
        "redeem.account_frozen" => "Your account can't receive credit right now. Contact \
            customer support."
            .to_string(),
        "redeem.rate_limited" => match retry_at {
            Some(at) => format!(
                "Too many attempts. For your security, redeeming is paused for this account or \
                 network. Try again after {} UTC ({}).",
                at.format("%H:%M"),
                in_words(chrono::TimeDelta::seconds(wait_secs.unwrap_or(60))),
            ),
            None => "Too many attempts. Try again later.".to_string(),
        },
        "redeem.not_redeemable" => "This code can't be redeemed. Check it, or ask the store that \
            sold the card for help."
            .to_string(),
        "redeem.key_conflict" => "This form was already used. Enter the code again.".to_string(),
        _ => "Something went wrong on our side, and nothing was redeemed. Try again in a moment."
            .to_string(),
    }
}

fn in_words(left: chrono::TimeDelta) -> String {
    let minutes = (left.num_seconds() + 59) / 60;
    match minutes {
        ..=1 => "in about a minute".to_string(),
        2..=119 => format!("in about {minutes} minutes"),
        _ => format!("in about {} hours", (minutes + 59) / 60),
    }
}

/// The account page.
fn account_page(
    current: &Current,
    notice: Option<&Notice>,
    lines: &[HistoryLine],
    paged: bool,
) -> String {
    let account = &current.account;
    let region = account.region;
    let csrf = escape(&current.csrf);
    let mut main = String::new();
    let _ = write!(
        main,
        "<section class=\"balance\" aria-labelledby=\"balance-title\">\
         <h1 id=\"balance-title\">Your balance</h1>\
         <p class=\"amount\">{}</p>\
         <p class=\"muted\">{} store · account {}</p></section>",
        escape(&format::money(account.balance, region)),
        escape(&format::country_name(region)),
        account.id,
    );
    let (status, error) = match notice {
        Some(Notice::Redeemed {
            amount_minor,
            balance_minor,
            currency,
        }) => (
            format!(
                "<div class=\"notice ok\" role=\"status\" tabindex=\"-1\" id=\"outcome\">\
                 <strong>{} was added to your account.</strong> Your balance is now {}.</div>",
                escape(&format::money(
                    Money::from_minor(*amount_minor, *currency),
                    region
                )),
                escape(&format::money(
                    Money::from_minor(*balance_minor, *currency),
                    region
                )),
            ),
            None,
        ),
        Some(refused @ Notice::Refused { code, .. }) => {
            (String::new(), Some(help(code, account, refused)))
        }
        None => (String::new(), None),
    };
    main.push_str(&status);
    if account.frozen_reason.is_some() {
        main.push_str(
            "<div class=\"notice held\" role=\"status\">Your account is on hold, so gift cards \
             can't be added to it right now. Contact customer support for help.</div>",
        );
    }
    let attempt = hex::encode(random_attempt());
    let (invalid, described, error_html) = match &error {
        Some(text) => (
            " aria-invalid=\"true\"",
            "code-hint code-error",
            format!(
                "<p class=\"field-error\" id=\"code-error\" role=\"alert\">{}</p>",
                escape(text)
            ),
        ),
        None => (
            "",
            "code-hint",
            "<p class=\"field-error\" id=\"code-error\" role=\"alert\" hidden></p>".to_string(),
        ),
    };
    let _ = write!(
        main,
        "<section class=\"redeem\" aria-labelledby=\"redeem-title\">\
         <h2 id=\"redeem-title\">Redeem a gift card</h2>\
         <form method=\"post\" action=\"/account/redeem\" id=\"redeem-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"attempt\" value=\"{attempt}\">\
         <label for=\"code\">Gift card code</label>\
         <p class=\"hint\" id=\"code-hint\">The 16 digits under the scratch-off strip on the back \
         of the card.</p>\
         {error_html}\
         <input id=\"code\" name=\"code\" type=\"text\" inputmode=\"numeric\" \
         autocomplete=\"off\" autocorrect=\"off\" autocapitalize=\"off\" spellcheck=\"false\" \
         maxlength=\"23\" placeholder=\"0000 0000 0000 0000\" aria-describedby=\"{described}\"\
         {invalid} required>\
         <button type=\"submit\" id=\"redeem-button\">Redeem</button>\
         </form></section>"
    );
    main.push_str("<section class=\"history\" aria-labelledby=\"history-title\">");
    main.push_str("<h2 id=\"history-title\">Activity</h2>");
    if lines.is_empty() && !paged {
        main.push_str(
            "<p class=\"empty\">No activity yet. When you redeem a gift card, it shows here \
             with your new balance.</p>",
        );
    } else {
        main.push_str("<ol class=\"lines\">");
        for line in lines {
            let amount_class = if line.amount.is_negative() {
                "out"
            } else {
                "in"
            };
            let _ = write!(
                main,
                "<li><div class=\"what\"><span class=\"title\">{}</span>\
                 <span class=\"muted\">{}</span>{}</div>\
                 <div class=\"figures\"><span class=\"{amount_class}\">{}</span>\
                 <span class=\"muted\">Balance {}</span></div></li>",
                escape(&describe(line)),
                escape(&format::date(line.recorded_at, region)),
                // On its own line: an order id must not break at its hyphens beside the date.
                detail(line).map_or(String::new(), |d| {
                    format!("<span class=\"muted\">{}</span>", escape(&d))
                }),
                escape(&format::signed_money(line.amount, region)),
                escape(&format::money(line.balance_after, region)),
            );
        }
        main.push_str("</ol>");
        main.push_str("<nav class=\"pager\" aria-label=\"Activity pages\">");
        if paged {
            main.push_str("<a href=\"/account\">Newest activity</a>");
        }
        if lines.len() == HISTORY_PAGE_ROWS as usize
            && let Some(last) = lines.last()
        {
            let _ = write!(
                main,
                "<a href=\"/account?before={}\">Older activity</a>",
                last.transfer_id.0
            );
        }
        main.push_str("</nav>");
    }
    main.push_str("</section>");
    let header = format!(
        "<form method=\"post\" action=\"/account/sign-out\" class=\"sign-out\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" class=\"link\">Sign out</button></form>"
    );
    page("Your balance", Some(&header), "", &main)
}

/// What a history line was, as the customer knows it.
fn describe(line: &HistoryLine) -> String {
    match line.kind {
        TransferKind::Redemption => match line.card {
            Some(serial) => format!("Gift card {}", serial.masked()),
            None => "Gift card".to_string(),
        },
        TransferKind::TradeIn => {
            match line.trade_in.as_ref().and_then(|t| t.device_model.clone()) {
                Some(model) => format!("Trade-in: {model}"),
                None => "Trade-in credit".to_string(),
            }
        }
        TransferKind::Clawback => "Trade-in correction".to_string(),
        TransferKind::Spend => match &line.service {
            Some(service) => format!("Purchase · {service}"),
            None => "Purchase".to_string(),
        },
        TransferKind::Refund => match &line.service {
            Some(service) => format!("Refund · {service}"),
            None => "Refund".to_string(),
        },
        TransferKind::Adjustment => "Adjustment by customer support".to_string(),
        _ => "Balance change".to_string(),
    }
}

/// The line's second detail beside its date: the order a purchase or refund was for.
fn detail(line: &HistoryLine) -> Option<String> {
    line.order.as_ref().map(|order| format!("Order {order}"))
}

fn random_attempt() -> [u8; 16] {
    use rand_core::{OsRng, TryRngCore};
    let mut bytes = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source failed");
    bytes
}

/// The page around `main`: one stylesheet, one deferred script, nothing inline.
fn page(title: &str, header: Option<&str>, head: &str, main: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Gift Cards</title>{head}\
         <link rel=\"stylesheet\" href=\"/account/assets/tender.css\">\
         <script src=\"/account/assets/redeem.js\" defer></script></head>\
         <body><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><span class=\"brand\">Gift Cards</span>{}</header>\
         <main id=\"main\">{main}</main></body></html>",
        escape(title),
        header.unwrap_or(""),
    )
}

/// Text made safe inside HTML elements and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_behind_https() {
        let plain = session_cookie("ab", 1800, false);
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(plain.contains("Path=/account") && plain.contains("Max-Age=1800"));
        assert!(!plain.contains("Secure"));
        assert!(
            session_cookie("ab", 1800, true)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; tender_session=ff; b=2"),
        );
        assert_eq!(session_of(&headers).as_deref(), Some("ff"));
        headers.insert(COOKIE, HeaderValue::from_static("tender_sessionx=1"));
        assert_eq!(session_of(&headers), None);
    }

    #[test]
    fn a_wait_reads_in_minutes_or_hours() {
        assert_eq!(
            in_words(chrono::TimeDelta::seconds(30)),
            "in about a minute"
        );
        assert_eq!(
            in_words(chrono::TimeDelta::seconds(23 * 60)),
            "in about 23 minutes"
        );
        assert_eq!(in_words(chrono::TimeDelta::hours(5)), "in about 5 hours");
    }
}
