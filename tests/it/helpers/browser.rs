//! A real browser for end-to-end tests: Debian's Chromium, headless, driven through Debian's
//! ChromeDriver by a small W3C WebDriver client written over a plain TCP socket (one HTTP/1.1
//! request per connection, JSON both ways), and axe-core injected into the page for
//! accessibility checks. tests/run installs Chromium, ChromeDriver and axe-core.
//!
//! At most [`MAX_BROWSERS`] browsers live at once in the test process; [`Browser::start`] waits
//! for a slot. Every call panics with a sentence on failure: this is test code.

use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Where Debian's chromium package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's chromium-driver package puts the driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How many browsers may be alive at once: the suite runs tests in parallel on 2 cores.
pub const MAX_BROWSERS: usize = 2;

/// Key codepoints for [`Browser::press`] and [`Element::send_keys`], as WebDriver spells them.
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";
pub const SHIFT: &str = "\u{E008}";

/// How long [`Browser::find`] and [`wait_until`] wait.
const WAIT: Duration = Duration::from_secs(5);
/// How long one WebDriver command may take before the test gives up on the driver.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The key WebDriver names an element reference by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

static SLOTS: Semaphore = Semaphore::const_new(MAX_BROWSERS);

const INSTALL_HINT: &str = "Chromium and ChromeDriver are not installed: tests/run installs Debian's chromium and chromium-driver";

/// A WebDriver error answer: the W3C error code (`no such element`, say) and its message.
#[derive(Debug)]
struct WdError {
    status: u16,
    error: String,
    message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.error, self.status, self.message)
    }
}

/// One HTTP/1.1 request as it goes on the wire; POST sends `body` as JSON.
fn request_text(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> String {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    if let Some(body) = body {
        let body = body.to_string();
        request.push_str(&format!(
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    request
}

/// One HTTP/1.1 request to `addr` on a new connection; the status and the body. ChromeDriver
/// answers `Connection: close` but leaves the connection open, so the response ends where its
/// length says.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(request_text(addr, method, path, body).as_bytes())
        .await?;
    let mut response = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = stream.read(&mut buffer).await?;
        response.extend_from_slice(&buffer[..read]);
        if let Some(answer) = parse_response(&response, read == 0)? {
            return Ok(answer);
        }
    }
}

/// The status and body of an HTTP/1.1 response once `response` holds all of it (`None` while
/// more is to come); `eof` when the connection has closed.
fn parse_response(response: &[u8], eof: bool) -> std::io::Result<Option<(u16, Vec<u8>)>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let incomplete = || {
        if eof {
            Err(bad("the connection closed before the response was whole"))
        } else {
            Ok(None)
        }
    };
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return incomplete();
    };
    let head = std::str::from_utf8(&response[..end]).map_err(|_| bad("headers not UTF-8"))?;
    let body = &response[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let mut chunked = false;
    let mut length = None;
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.trim().eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| bad("bad Content-Length"))?,
            );
        }
    }
    if chunked {
        let mut rest = body;
        let mut out = Vec::new();
        loop {
            let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
                return incomplete();
            };
            let size = std::str::from_utf8(&rest[..line_end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| bad("bad chunk size"))?;
            if size == 0 {
                return Ok(Some((status, out)));
            }
            let Some(chunk) = rest.get(line_end + 2..line_end + 2 + size) else {
                return incomplete();
            };
            out.extend_from_slice(chunk);
            let Some(next) = rest.get(line_end + 4 + size..) else {
                return incomplete();
            };
            rest = next;
        }
    }
    match length {
        Some(length) if body.len() >= length => Ok(Some((status, body[..length].to_vec()))),
        Some(_) => incomplete(),
        None if eof => Ok(Some((status, body.to_vec()))),
        None => Ok(None),
    }
}

/// A WebDriver session at a driver's address: what browsers and elements send commands through.
#[derive(Clone)]
struct Session {
    addr: SocketAddr,
    id: String,
}

impl Session {
    /// Sends a command (`path` below `/session/{id}`) and returns its `value`, or the error.
    async fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        command(
            self.addr,
            method,
            &format!("/session/{}{path}", self.id),
            body,
        )
        .await
    }

    /// As [`Session::try_command`], panicking on an error.
    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver command {method} {path} failed: {e}"))
    }

    fn element(&self, value: &Value) -> Element {
        let id = value
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("WebDriver answered {value} where an element was expected"));
        Element {
            session: self.clone(),
            id: id.to_string(),
        }
    }
}

/// One WebDriver command at `addr`: its `value`, or the error the driver answered.
async fn command(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, WdError> {
    // Every POST carries a JSON body, empty where the command takes no parameters.
    let body = match (method, body) {
        ("POST", None) => Some(json!({})),
        (_, body) => body,
    };
    let sent = tokio::time::timeout(COMMAND_TIMEOUT, http(addr, method, path, body.as_ref())).await;
    let (status, bytes) = match sent {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => panic!("ChromeDriver at {addr} did not answer {method} {path}: {e}"),
        Err(_) => panic!(
            "ChromeDriver at {addr} did not answer {method} {path} within {COMMAND_TIMEOUT:?}"
        ),
    };
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "ChromeDriver answered {method} {path} with something other than JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Err(WdError {
        status,
        error: text("error"),
        message: text("message"),
    })
}

/// A headless Chromium with its ChromeDriver, both killed when dropped.
pub struct Browser {
    session: Session,
    driver: Child,
    /// Holds the user data dir (and the driver's log) until the browser is gone.
    _profile: tempfile::TempDir,
    _slot: SemaphorePermit<'static>,
}

impl Browser {
    /// Starts ChromeDriver on a free port and a new headless Chromium session with an empty
    /// profile, waiting first for a free slot among [`MAX_BROWSERS`].
    pub async fn start() -> Browser {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            panic!("{INSTALL_HINT}");
        }
        let slot = SLOTS.acquire().await.unwrap();
        let profile = tempfile::Builder::new()
            .prefix("tender-browser-")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let log_path = profile.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so that dropping the browser can end Chromium too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {CHROMEDRIVER}: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = driver.try_wait() {
                panic!(
                    "ChromeDriver exited at start ({status}); its log:\n{}",
                    log_text()
                );
            }
            let ready =
                tokio::time::timeout(Duration::from_secs(2), http(addr, "GET", "/status", None))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|(_, body)| serde_json::from_slice::<Value>(&body).ok())
                    .is_some_and(|status| status["value"]["ready"] == true);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "ChromeDriver was not ready on {addr} after 20 s; its log:\n{}",
                    log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let user_data = profile.path().join("user-data");
        std::fs::create_dir(&user_data).unwrap();
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": {"script": 30_000, "pageLoad": 30_000, "implicit": 0},
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--window-size=1280,800",
                            format!("--user-data-dir={}", user_data.display()),
                        ],
                    },
                },
            },
        });
        let session = command(addr, "POST", "/session", Some(capabilities))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "ChromeDriver could not start Chromium: {e}; its log:\n{}",
                    log_text()
                )
            });
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("ChromeDriver answered a new session with {session}"))
            .to_string();
        Browser {
            session: Session { addr, id },
            driver,
            _profile: profile,
            _slot: slot,
        }
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.session
            .command("POST", "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn current_url(&self) -> String {
        string(self.session.command("GET", "/url", None).await)
    }

    pub async fn title(&self) -> String {
        string(self.session.command("GET", "/title", None).await)
    }

    /// The page's DOM serialised as HTML.
    pub async fn source(&self) -> String {
        string(self.session.command("GET", "/source", None).await)
    }

    /// The first element matching the CSS selector, waiting up to 5 s for one to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(element) = self.try_find(css).await {
                return element;
            }
            if Instant::now() > deadline {
                panic!(
                    "no element matches `{css}` after {WAIT:?} on {}",
                    self.current_url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching the CSS selector now, without waiting.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let body = json!({"using": "css selector", "value": css});
        match self
            .session
            .try_command("POST", "/element", Some(body))
            .await
        {
            Ok(value) => Some(self.session.element(&value)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding `{css}` failed: {e}"),
        }
    }

    /// Every element matching the CSS selector now, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let body = json!({"using": "css selector", "value": css});
        let found = self.session.command("POST", "/elements", Some(body)).await;
        found
            .as_array()
            .unwrap_or_else(|| panic!("WebDriver answered {found} where elements were expected"))
            .iter()
            .map(|value| self.session.element(value))
            .collect()
    }

    /// The element that has the focus (the body when none has).
    pub async fn active_element(&self) -> Element {
        let value = self.session.command("GET", "/element/active", None).await;
        self.session.element(&value)
    }

    /// Presses and releases one key on the focused element, through the Actions API.
    pub async fn press(&self, key: &str) {
        self.press_chord(&[key]).await;
    }

    /// Presses the keys in order and releases them in reverse: `[SHIFT, TAB]` is Shift+Tab.
    pub async fn press_chord(&self, keys: &[&str]) {
        let mut actions: Vec<Value> = keys
            .iter()
            .map(|key| json!({"type": "keyDown", "value": key}))
            .collect();
        actions.extend(
            keys.iter()
                .rev()
                .map(|key| json!({"type": "keyUp", "value": key})),
        );
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.session.command("POST", "/actions", Some(body)).await;
        self.session.command("DELETE", "/actions", None).await;
    }

    /// Resizes the window (its outer size) to `width` by `height` CSS pixels.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        let body = json!({"width": width, "height": height});
        self.session
            .command("POST", "/window/rect", Some(body))
            .await;
    }

    /// Saves a PNG of the viewport to `path`, creating its directories.
    pub async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let encoded = string(self.session.command("GET", "/screenshot", None).await);
        let png = base64_decode(&encoded)
            .unwrap_or_else(|| panic!("WebDriver's screenshot was not valid base64"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("could not write a screenshot to {}: {e}", path.display()));
    }

    /// Runs `script` as a function body in the page, `args` as `arguments`; what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let body = json!({"script": script, "args": args});
        self.session
            .try_command("POST", "/execute/sync", Some(body))
            .await
            .unwrap_or_else(|e| panic!("script failed in the page: {e}"))
    }

    /// Runs `script` in the page with a callback as its last argument; what it passes to the
    /// callback (within the script timeout, 30 s).
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        let body = json!({"script": script, "args": args});
        self.session
            .try_command("POST", "/execute/async", Some(body))
            .await
            .unwrap_or_else(|e| panic!("async script failed in the page: {e}"))
    }

    /// The cookies visible to the current page, as WebDriver describes them.
    pub async fn cookies(&self) -> Vec<Value> {
        match self.session.command("GET", "/cookie", None).await {
            Value::Array(cookies) => cookies,
            other => panic!("WebDriver answered {other} where cookies were expected"),
        }
    }

    /// axe-core's violations on the current page (every rule, every impact).
    pub async fn axe(&self) -> Vec<Value> {
        let path = axe_path();
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read axe-core at {} ({e}): tests/run installs it with npm ci",
                path.display()
            )
        });
        // Script execution through WebDriver is not bound by the page's Content-Security-Policy.
        let loaded = self
            .execute(&format!("{source}\n;return typeof window.axe;"), vec![])
            .await;
        assert_eq!(loaded, "object", "axe-core did not load into the page");
        let script = "const done = arguments[arguments.length - 1];\
            window.axe.run(document, {resultTypes: ['violations']})\
            .then(r => done({violations: r.violations}), e => done({error: String(e)}));";
        let result = self.execute_async(script, vec![]).await;
        match result.get("violations") {
            Some(Value::Array(violations)) => violations.clone(),
            _ => panic!("axe-core failed on the page: {result}"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (Chromium quits), blocking briefly: Drop cannot await.
        let _ = delete_session(self.session.addr, &self.session.id);
        // Then whatever is left of ChromeDriver's process group, Chromium's helpers included.
        if let Some(pid) = self
            .driver
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.driver.start_kill();
        let _ = self.driver.try_wait();
    }
}

/// `DELETE /session/{id}` on a blocking socket, for [`Drop`].
fn delete_session(addr: SocketAddr, id: &str) -> std::io::Result<()> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let request = request_text(addr, "DELETE", &format!("/session/{id}"), None);
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let read = stream.read(&mut buffer)?;
        response.extend_from_slice(&buffer[..read]);
        if parse_response(&response, read == 0)?.is_some() {
            return Ok(());
        }
    }
}

/// An element of the page, as WebDriver refers to it; equal to another when they are the
/// same element (same reference).
#[derive(Clone)]
pub struct Element {
    session: Session,
    id: String,
}

impl PartialEq for Element {
    fn eq(&self, other: &Element) -> bool {
        self.id == other.id
    }
}

impl Eq for Element {}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({})", self.id)
    }
}

impl Element {
    /// Whether `other` is this same element.
    pub fn same_as(&self, other: &Element) -> bool {
        self == other
    }

    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    /// Scrolls the element into view and clicks its centre.
    pub async fn click(&self) {
        self.session
            .command("POST", &self.path("/click"), None)
            .await;
    }

    /// Focuses the element and types `text` (which may hold key codepoints such as [`ENTER`]).
    pub async fn send_keys(&self, text: &str) {
        let body = json!({"text": text});
        self.session
            .command("POST", &self.path("/value"), Some(body))
            .await;
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) {
        self.session
            .command("POST", &self.path("/clear"), None)
            .await;
    }

    /// The rendered text, as a user sees it.
    pub async fn text(&self) -> String {
        string(self.session.command("GET", &self.path("/text"), None).await)
    }

    /// The attribute as written in the markup, if present.
    pub async fn attribute(&self, name: &str) -> Option<String> {
        let value = self
            .session
            .command("GET", &self.path(&format!("/attribute/{name}")), None)
            .await;
        value.as_str().map(str::to_string)
    }

    /// The DOM property (`value`, `checked`...), as JSON.
    pub async fn property(&self, name: &str) -> Value {
        self.session
            .command("GET", &self.path(&format!("/property/{name}")), None)
            .await
    }

    pub async fn is_displayed(&self) -> bool {
        let value = self
            .session
            .command("GET", &self.path("/displayed"), None)
            .await;
        value
            .as_bool()
            .unwrap_or_else(|| panic!("WebDriver answered {value} to `displayed`"))
    }
}

/// Polls `condition` every 50 ms until it holds, panicking after 5 s with `description` (what
/// was awaited).
pub async fn wait_until<F, Fut>(description: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        if Instant::now() > deadline {
            panic!("waited {WAIT:?} for {description}, in vain");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The serious and critical violations of an axe-core run, one line each: the rule, its impact,
/// what it asks for and the selectors of the failing elements.
pub fn serious_or_critical(violations: &[Value]) -> Vec<String> {
    violations
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| {
            let targets: Vec<String> = v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|node| match &node["target"] {
                    Value::Array(parts) => parts
                        .iter()
                        .map(|part| part.as_str().map_or(part.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(" >>> "),
                    other => other.to_string(),
                })
                .collect();
            format!(
                "{} ({}): {} at {}",
                v["id"].as_str().unwrap_or("?"),
                v["impact"].as_str().unwrap_or("?"),
                v["help"].as_str().unwrap_or(""),
                targets.join(", ")
            )
        })
        .collect()
}

/// Where tests/run installs axe-core.
pub fn axe_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/axe-core/axe.min.js")
}

fn string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => panic!("WebDriver answered {other} where a string was expected"),
    }
}

/// Standard base64 (RFC 4648, padding optional, whitespace ignored); `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("").unwrap(), b"");
    assert_eq!(base64_decode("Zg==").unwrap(), b"f");
    assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
    assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
    assert_eq!(base64_decode("Zm9vYmFy\n").unwrap(), b"foobar");
    assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
    assert!(base64_decode("Zm9v!").is_none());
}

#[test]
fn responses_end_where_their_length_says() {
    let whole = b"HTTP/1.1 200 OK\r\nContent-Length:4\r\nConnection:close\r\n\r\n{}{}";
    assert_eq!(parse_response(&whole[..20], false).unwrap(), None);
    assert_eq!(
        parse_response(&whole[..whole.len() - 1], false).unwrap(),
        None
    );
    assert!(parse_response(&whole[..whole.len() - 1], true).is_err());
    assert_eq!(
        parse_response(whole, false).unwrap(),
        Some((200, b"{}{}".to_vec()))
    );
    let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n1\r\n \r\n0\r\n\r\n";
    assert_eq!(parse_response(&chunked[..60], false).unwrap(), None);
    assert_eq!(
        parse_response(chunked, false).unwrap(),
        Some((404, b"{} ".to_vec()))
    );
    let no_length = b"HTTP/1.1 200 OK\r\n\r\nabc";
    assert_eq!(parse_response(no_length, false).unwrap(), None);
    assert_eq!(
        parse_response(no_length, true).unwrap(),
        Some((200, b"abc".to_vec()))
    );
}
