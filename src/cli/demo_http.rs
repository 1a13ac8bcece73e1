//! The demo's HTTP part: `tender serve`'s router on a free loopback port, a point-of-sale key and
//! a redeem key, a card sold and redeemed over HTTP, and the metrics' redemption counter. Each
//! request is printed as the curl command that repeats it; keys and codes are printed as shell
//! variables, never as themselves.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::CliError;
use crate::api;
use crate::app::App;
use crate::domain::{AccountId, Actor, Serial};
use crate::service::api_keys::ApiKeyForm;
use crate::store::Store;

/// What the HTTP part needs from the rest of the demo.
pub(super) struct OverHttp<'a> {
    /// The retailer whose till sells the card.
    pub retailer: &'a str,
    /// The store the till is in.
    pub store: &'a str,
    /// A card of that retailer's, never sold.
    pub card: Serial,
    /// Its code, as typed.
    pub code: &'a str,
    /// The account it is redeemed into.
    pub account: AccountId,
    /// Who the keys are created by.
    pub actor: &'a Actor,
}

/// A reply: its status, whether it replays a first answer, and its body.
struct Reply {
    status: u16,
    replayed: bool,
    body: String,
}

impl OverHttp<'_> {
    /// Serves the API, runs the requests, prints them, and stops the server.
    pub(super) async fn run<S: Store>(&self, app: &App<S>) -> Result<(), CliError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| failed(format!("cannot listen on loopback: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| failed(format!("cannot listen on loopback: {e}")))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, app.clone(), async {
            let _ = stopped.await;
        }));
        println!("16. over HTTP: `tender serve` on http://{addr} (the same router, in-process)");
        let keys = app.services().api_keys();
        let key = |name: &str, role: &str, retailer: Option<&str>| ApiKeyForm {
            name: name.into(),
            role: role.into(),
            retailer: retailer.map(str::to_string),
            store: None,
        };
        let till = keys
            .create(&key("demo-till", "pos", Some(self.retailer)), self.actor)
            .await?;
        let web = keys
            .create(&key("demo-web", "redeem", None), self.actor)
            .await?;
        let ops = keys
            .create(&key("demo-ops", "admin", None), self.actor)
            .await?;
        println!(
            "     keys created, as `tender api-key create` does: demo-till (pos, {}), demo-web (redeem), demo-ops (admin); shown below as $POS_KEY, $REDEEM_KEY, $ADMIN_KEY",
            self.retailer
        );

        let sale = serde_json::json!({
            "store": self.store,
            "terminal": "web-till",
            "pos_txn": "http-sale-1",
            "serial": self.card.to_string(),
        })
        .to_string();
        let sold = request(
            addr,
            "POST",
            "/v1/activations",
            till.key.expose(),
            Some("http-sale-1"),
            &sale,
        )
        .await?;
        println!(
            "     curl -X POST http://{addr}/v1/activations -H \"Authorization: Bearer $POS_KEY\" -H 'Idempotency-Key: http-sale-1' -H 'Content-Type: application/json' -d '{sale}'"
        );
        expect(&sold, 201, "the activation")?;
        println!("       {} {}", sold.status, sold.body);

        let path = format!("/v1/accounts/{}/redemptions", self.account);
        let body = serde_json::json!({ "code": self.code }).to_string();
        let redeemed = request(
            addr,
            "POST",
            &path,
            web.key.expose(),
            Some("http-redeem-1"),
            &body,
        )
        .await?;
        println!(
            "     curl -X POST http://{addr}{path} -H \"Authorization: Bearer $REDEEM_KEY\" -H 'Idempotency-Key: http-redeem-1' -H 'Content-Type: application/json' -d \"{{\\\"code\\\": \\\"$CODE\\\"}}\""
        );
        expect(&redeemed, 201, "the redemption")?;
        println!("       {} {}", redeemed.status, redeemed.body);
        let again = request(
            addr,
            "POST",
            &path,
            web.key.expose(),
            Some("http-redeem-1"),
            &body,
        )
        .await?;
        expect(&again, 201, "the retried redemption")?;
        if !again.replayed || again.body != redeemed.body {
            return Err(failed(
                "the retried redemption was not the first answer".into(),
            ));
        }
        println!(
            "       the same request again: {} with the first answer and Idempotent-Replayed: true; nothing credited twice",
            again.status
        );

        let metrics = request(addr, "GET", "/metrics", ops.key.expose(), None, "").await?;
        expect(&metrics, 200, "the metrics")?;
        println!(
            "     curl http://{addr}/metrics -H \"Authorization: Bearer $ADMIN_KEY\"   (the redemption counter):"
        );
        for line in metrics
            .body
            .lines()
            .filter(|l| l.starts_with("tender_redemptions_total"))
        {
            println!("       {line}");
        }
        let _ = stop.send(());
        server
            .await
            .map_err(|e| failed(format!("the server task failed: {e}")))?
            .map_err(|e| failed(format!("the server failed: {e}")))?;
        Ok(())
    }
}

/// One HTTP/1.1 request on a new connection, read to its end.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    idempotency_key: Option<&str>,
    body: &str,
) -> Result<Reply, CliError> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(idempotency_key) = idempotency_key {
        head.push_str(&format!("Idempotency-Key: {idempotency_key}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    let io = |e: std::io::Error| failed(format!("{method} {path}: {e}"));
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    stream
        .write_all(format!("{head}\r\n{body}").as_bytes())
        .await
        .map_err(io)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.map_err(io)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| failed(format!("{method} {path}: no HTTP response")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| failed(format!("{method} {path}: no status")))?;
    let replayed = head
        .to_ascii_lowercase()
        .contains("\r\nidempotent-replayed: true");
    Ok(Reply {
        status,
        replayed,
        body: body.trim_end().to_string(),
    })
}

/// `Err` unless `reply` has `status`.
fn expect(reply: &Reply, status: u16, what: &str) -> Result<(), CliError> {
    if reply.status == status {
        Ok(())
    } else {
        Err(failed(format!(
            "{what} answered {} instead of {status}: {}",
            reply.status, reply.body
        )))
    }
}

fn failed(what: String) -> CliError {
    CliError::new(
        "demo.http",
        format!("the demo's HTTP part went wrong: {what}"),
    )
}
