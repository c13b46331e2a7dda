//! A one-file HTTP server on 127.0.0.1 for the download tests: the tests of code that
//! downloads serve the files themselves and never reach beyond loopback.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;

/// Serves `body` at `/good/NAME` on a fresh loopback port (404 for any other path), for as long
/// as the test runs; returns the base URL, `http://127.0.0.1:PORT/good/`.
pub fn serve(name: &str, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let wanted = format!("/good/{name}");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if header == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            if path == wanted {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            } else {
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    format!("http://127.0.0.1:{port}/good/")
}
