//! HTTP through a real socket: a client that writes HTTP/1.1 by hand (so a test can send what
//! no well-behaved client would), a server on a free port, and the keys and cards most API
//! tests start from.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use tender::codegen::CodeGenerator;
use tender::service::api_keys::ApiKeyForm;
use tender::service::cards::{ActivateForm, PosForm, StoreForm};
use tender::store::Store;

use super::{TestApp, actor, usd_form};

/// A response as the client sees it.
pub struct Reply {
    pub status: u16,
    pub request_id: Option<String>,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as text, and as JSON where it is JSON.
    pub text: String,
    pub body: serde_json::Value,
}

/// One HTTP/1.1 GET on a new connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, path, None).await
}

/// One HTTP/1.1 GET on a new connection, with `Authorization: Bearer KEY` when given a key.
pub async fn get_with(addr: SocketAddr, path: &str, key: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = key.map_or(String::new(), |key| {
        format!("Authorization: Bearer {key}\r\n")
    });
    let request = format!("GET {path} HTTP/1.1\r\nHost: tender\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    parse_reply(&response)
}

/// A whole HTTP/1.1 response, as read off the socket.
pub fn parse_reply(response: &str) -> Reply {
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
        .collect();
    let request_id = headers
        .iter()
        .find(|(name, _)| name == "x-request-id")
        .map(|(_, value)| value.clone());
    Reply {
        status: status.parse().unwrap(),
        request_id,
        headers,
        text: text.to_string(),
        body: serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `env`'s API on a free loopback port, and the way to stop it.
pub async fn start<S: Store>(
    env: &TestApp<S>,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(tender::api::serve(listener, env.app.clone(), async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

/// The retailer every key and card here belongs to.
pub async fn acme<S: Store>(env: &TestApp<S>) {
    env.app
        .services()
        .retailers()
        .add("Acme", "2.5", &actor())
        .await
        .unwrap();
}

/// A new API key of `role`, as `tender api-key create` makes it.
pub async fn key<S: Store>(env: &TestApp<S>, name: &str, role: &str) -> String {
    let form = ApiKeyForm {
        name: name.into(),
        role: role.into(),
        retailer: (role == "pos").then(|| "Acme".to_string()),
        store: None,
    };
    let created = env
        .app
        .services()
        .api_keys()
        .create(&form, &actor())
        .await
        .unwrap();
    created.key.expose().to_string()
}

/// A new point-of-sale key of `retailer`, bound to `store` when given.
pub async fn pos_key<S: Store>(
    env: &TestApp<S>,
    name: &str,
    retailer: &str,
    store: Option<&str>,
) -> String {
    let form = ApiKeyForm {
        name: name.into(),
        role: "pos".into(),
        retailer: Some(retailer.into()),
        store: store.map(str::to_string),
    };
    let created = env
        .app
        .services()
        .api_keys()
        .create(&form, &actor())
        .await
        .unwrap();
    created.key.expose().to_string()
}

/// One HTTP/1.1 POST of `body` on a new connection, with a key and an idempotency key when
/// given.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    key: Option<&str>,
    idempotency_key: Option<&str>,
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: tender\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    if let Some(idempotency_key) = idempotency_key {
        head.push_str(&format!("Idempotency-Key: {idempotency_key}\r\n"));
    }
    stream
        .write_all(format!("{head}\r\n{body}").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    parse_reply(&response)
}

/// One sold 25.00 USD card of Acme's, and its code as printed.
pub async fn sold_card<S: Store>(env: &TestApp<S>) -> String {
    let services = env.app.services();
    let batch = services
        .batches()
        .request(&usd_form(1), &actor())
        .await
        .unwrap();
    let batch = env
        .generate(batch.id, &mut CodeGenerator::from_os_rng(), 1)
        .await;
    let store = StoreForm {
        retailer: "Acme".into(),
        store: "S1".into(),
        jurisdiction: "US-TX".into(),
    };
    services.cards().add_store(&store, &actor()).await.unwrap();
    let sale = ActivateForm {
        pos: PosForm {
            retailer: "Acme".into(),
            store: "S1".into(),
            terminal: "till-1".into(),
            pos_txn: "sale-1".into(),
            pos_time: None,
        },
        serial: batch.first_serial.to_string(),
        to_serial: None,
        value: None,
        purchaser_state: None,
    };
    services.cards().activate(&sale, &actor()).await.unwrap();
    let mut reader = csv::Reader::from_path(env.export_file(batch.id)).unwrap();
    reader.records().next().unwrap().unwrap()[1].to_string()
}

/// Writes `request` (a whole HTTP/1.1 request, as bytes) on a new connection and reads the
/// answer: for requests no well-behaved client would send.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    parse_reply(&String::from_utf8_lossy(&response))
}

/// One request of any method with a JSON body (`None`: no body), a key and an idempotency key.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    idempotency_key: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: tender\r\nConnection: close\r\n");
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    if let Some(idempotency_key) = idempotency_key {
        head.push_str(&format!("Idempotency-Key: {idempotency_key}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    send_raw(addr, head.as_bytes()).await
}
