//! Signed GitHub webhook deliveries over plain HTTP, as GitHub sends them (shared by the test
//! binaries that drive the operator's webhook route).

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use serde_json::Value;

type HmacSha256 = Hmac<sha2::Sha256>;

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

pub async fn post_webhook(
    addr: SocketAddr,
    event: &str,
    delivery: &str,
    signature: &str,
    body: &[u8],
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: qms.example.com\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: GitHub-Hookshot/e2e\r\n\
         X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery}\r\nX-GitHub-Hook-ID: 77\r\n\
         X-GitHub-Hook-Installation-Target-ID: 1001\r\nX-Hub-Signature-256: {signature}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}
