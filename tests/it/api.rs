//! The HTTP API through the real router on a real socket.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use tender::store::Store;

use crate::helpers::{TestApp, both_backends};

/// One HTTP/1.1 request on a new connection; the whole response as text.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: tender\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

async fn the_health_check_answers_over_a_socket_and_the_server_stops_on_request<S: Store>(
    env: TestApp<S>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tender::api::serve(listener, env.app.clone(), async {
        let _ = stopped.await;
    }));
    let response = get(addr, "/v1/health").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");
    assert!(get(addr, "/v1/nothing").await.starts_with("HTTP/1.1 404"));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
both_backends!(
    api_health,
    the_health_check_answers_over_a_socket_and_the_server_stops_on_request
);
