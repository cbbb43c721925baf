//! Go `net/rpc` client framing over the gob codec, and a client that makes one call per TCP
//! connection like the cf CLI's Go plugin library (`plugin/cli_connection.go`).
//!
//! A call is a gob `Request{ServiceMethod, Seq}` followed by the argument; the reply is a
//! `Response{ServiceMethod, Seq, Error}` followed by the result, or by an empty struct when
//! `Error` is set. [`ClientCodec`] does this without I/O; [`RpcClient`] adds the TCP
//! connection, connect retries (5 × 200 ms, like the library's ping) and a bounded wait.
//!
//! Depends on: `gob`, `tokio`. Must not: print.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::gob::{self, Decoder, Encoder, Type, Value};

/// Why an RPC call to the cf CLI failed. The messages name the method and the address.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing accepted the connection.
    #[error("could not connect to the cf CLI's plugin RPC server at {addr} ({attempts} attempts)")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// How many times it was tried.
        attempts: u32,
        /// The last connect error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the request failed.
    #[error("sending {method} to the cf CLI at {addr} failed")]
    Write {
        /// The RPC method.
        method: String,
        /// The peer.
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Reading the reply failed.
    #[error("reading the reply to {method} from the cf CLI at {addr} failed")]
    Read {
        /// The RPC method.
        method: String,
        /// The peer.
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The peer closed the connection before the reply was complete.
    #[error(
        "the cf CLI at {addr} closed the connection after {received} bytes, before the reply to {method} was complete"
    )]
    Closed {
        /// The RPC method.
        method: String,
        /// The peer.
        addr: SocketAddr,
        /// Bytes received before the close.
        received: u64,
    },
    /// No complete reply within the timeout.
    #[error("no reply to {method} from the cf CLI at {addr} within {timeout:?}")]
    Timeout {
        /// The RPC method.
        method: String,
        /// The peer.
        addr: SocketAddr,
        /// The bound.
        timeout: Duration,
    },
    /// The reply was not valid gob or not a net/rpc response.
    #[error("malformed reply to {method} from the cf CLI at {addr}")]
    Decode {
        /// The RPC method.
        method: String,
        /// The peer.
        addr: SocketAddr,
        /// What was wrong.
        #[source]
        source: gob::Error,
    },
    /// The reply was well-formed but not what the method returns.
    #[error("unexpected reply to {method} from the cf CLI: {detail}")]
    Unexpected {
        /// The RPC method.
        method: String,
        /// What was expected and found.
        detail: String,
    },
    /// The cf CLI answered with an error string.
    #[error("the cf CLI answered {method} with an error: {message}")]
    Remote {
        /// The RPC method.
        method: String,
        /// The `Response.Error` text.
        message: String,
    },
    /// The argument could not be encoded.
    #[error("could not encode the argument of {method}")]
    Encode {
        /// The RPC method.
        method: String,
        #[source]
        source: gob::Error,
    },
}

/// The Go type of `net/rpc.Request`.
pub fn request_type() -> Type {
    Type::structure(
        "Request",
        &[("ServiceMethod", Type::String), ("Seq", Type::Uint)],
    )
}

/// A decoded `net/rpc.Response` with its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Echo of the request's method.
    pub service_method: String,
    /// Echo of the request's sequence number.
    pub seq: u64,
    /// The reply value, or the `Error` string (its placeholder body already consumed).
    pub result: Result<Value, String>,
}

/// The client side of one net/rpc connection, without I/O: one gob stream per direction.
#[derive(Debug)]
pub struct ClientCodec {
    enc: Encoder,
    dec: Decoder,
    header: Option<(String, u64, String)>,
}

impl Default for ClientCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCodec {
    /// A codec for a fresh connection.
    pub fn new() -> Self {
        Self {
            enc: Encoder::new(),
            dec: Decoder::new(),
            header: None,
        }
    }

    /// The bytes of a call: request header then argument.
    ///
    /// # Errors
    /// When `arg` does not fit `arg_type`.
    pub fn encode_request(
        &mut self,
        seq: u64,
        method: &str,
        arg_type: &Type,
        arg: &Value,
    ) -> Result<Vec<u8>, gob::Error> {
        let mut out = Vec::new();
        let header = Value::structure([
            ("ServiceMethod", Value::string(method)),
            ("Seq", Value::Uint(seq)),
        ]);
        self.enc.encode(&request_type(), &header, &mut out)?;
        self.enc.encode(arg_type, arg, &mut out)?;
        Ok(out)
    }

    /// Consumes a response from the front of `buf`; `Ok(None)` until it is complete.
    ///
    /// # Errors
    /// Malformed gob, or a header that is not a net/rpc `Response`.
    pub fn decode_response(&mut self, buf: &mut BytesMut) -> Result<Option<Response>, gob::Error> {
        if self.header.is_none() {
            let at = self.dec.position();
            let Some(h) = self.dec.decode(buf)? else {
                return Ok(None);
            };
            let bad = |what: &str| gob::Error::Invalid {
                detail: format!("response header {what}"),
                offset: at,
            };
            if !matches!(h.value, Value::Struct(_)) {
                return Err(bad("is not a struct"));
            }
            let method = h
                .value
                .str_field("ServiceMethod")
                .ok_or_else(|| bad("has a non-string ServiceMethod"))?;
            let seq = match h.value.field("Seq") {
                None => 0,
                Some(v) => v.as_uint().ok_or_else(|| bad("has a non-uint Seq"))?,
            };
            let error = h
                .value
                .str_field("Error")
                .ok_or_else(|| bad("has a non-string Error"))?;
            self.header = Some((method.to_string(), seq, error.to_string()));
        }
        let Some(body) = self.dec.decode(buf)? else {
            return Ok(None);
        };
        let Some((service_method, seq, error)) = self.header.take() else {
            // Set just above when it was None.
            return Ok(None);
        };
        let result = if error.is_empty() {
            Ok(body.value)
        } else {
            Err(error)
        };
        Ok(Some(Response {
            service_method,
            seq,
            result,
        }))
    }
}

/// Calls methods of the cf CLI's RPC server on `127.0.0.1:<port>`, one TCP connection per
/// call.
#[derive(Debug, Clone)]
pub struct RpcClient {
    addr: SocketAddr,
    timeout: Duration,
    connect_attempts: u32,
    connect_delay: Duration,
}

impl RpcClient {
    /// Default bound on one call (connect excluded). cf may refresh the token against UAA
    /// while answering `AccessToken`, so this is generous.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// A client for the server on `127.0.0.1:port`.
    pub fn new(port: u16) -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            timeout: Self::DEFAULT_TIMEOUT,
            connect_attempts: 5,
            connect_delay: Duration::from_millis(200),
        }
    }

    /// Sets the bound on one call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls `method` (e.g. `"CliRpcCmd.ApiEndpoint"`) with `arg` of Go type `arg_type` and
    /// returns the reply value.
    ///
    /// # Errors
    /// Connection, timeout, malformed reply, or the server's error string ([`Error::Remote`]).
    pub async fn call(&self, method: &str, arg_type: &Type, arg: &Value) -> Result<Value, Error> {
        let mut codec = ClientCodec::new();
        let request = codec
            .encode_request(0, method, arg_type, arg)
            .map_err(|source| Error::Encode {
                method: method.to_string(),
                source,
            })?;
        let mut stream = self.connect().await?;
        let exchange = async {
            stream
                .write_all(&request)
                .await
                .map_err(|source| Error::Write {
                    method: method.to_string(),
                    addr: self.addr,
                    source,
                })?;
            self.read_response(&mut stream, &mut codec, method).await
        };
        let response = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::Timeout {
                method: method.to_string(),
                addr: self.addr,
                timeout: self.timeout,
            })??;
        if response.seq != 0 || response.service_method != method {
            return Err(Error::Unexpected {
                method: method.to_string(),
                detail: format!(
                    "the response is for {} (seq {})",
                    response.service_method, response.seq
                ),
            });
        }
        response.result.map_err(|message| Error::Remote {
            method: method.to_string(),
            message,
        })
    }

    async fn connect(&self) -> Result<TcpStream, Error> {
        let mut attempt = 1;
        loop {
            match tokio::time::timeout(self.timeout, TcpStream::connect(self.addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(source)) if attempt >= self.connect_attempts => {
                    return Err(Error::Connect {
                        addr: self.addr,
                        attempts: attempt,
                        source,
                    });
                }
                Err(_) if attempt >= self.connect_attempts => {
                    return Err(Error::Connect {
                        addr: self.addr,
                        attempts: attempt,
                        source: std::io::ErrorKind::TimedOut.into(),
                    });
                }
                _ => {}
            }
            attempt += 1;
            tokio::time::sleep(self.connect_delay).await;
        }
    }

    async fn read_response(
        &self,
        stream: &mut TcpStream,
        codec: &mut ClientCodec,
        method: &str,
    ) -> Result<Response, Error> {
        let mut buf = BytesMut::with_capacity(4096);
        let mut received = 0u64;
        loop {
            let decoded = codec
                .decode_response(&mut buf)
                .map_err(|source| Error::Decode {
                    method: method.to_string(),
                    addr: self.addr,
                    source,
                })?;
            if let Some(response) = decoded {
                return Ok(response);
            }
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|source| Error::Read {
                    method: method.to_string(),
                    addr: self.addr,
                    source,
                })?;
            if n == 0 {
                return Err(Error::Closed {
                    method: method.to_string(),
                    addr: self.addr,
                    received,
                });
            }
            received += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    #[test]
    fn request_bytes_match_go_for_username() {
        // Scenario "username", plugin -> cf.
        let want = unhex(
            "2fff81030101075265717565737401ff82000102010d536572766963654d6574686f64010c000103536571010600000017ff820112436c69527063436d642e557365726e616d6500030c0000",
        );
        let got = ClientCodec::new()
            .encode_request(0, "CliRpcCmd.Username", &Type::String, &Value::string(""))
            .expect("encodes");
        assert_eq!(hex::encode(got), hex::encode(want));
    }

    #[test]
    fn request_bytes_match_go_for_seq_and_slice_args() {
        // Scenario "clicommand": Seq 1 request with a []string argument, on a stream that
        // already carried the Request definition.
        let mut codec = ClientCodec::new();
        let _ = codec
            .encode_request(
                0,
                "CliRpcCmd.DisableTerminalOutput",
                &Type::Bool,
                &Value::Bool(true),
            )
            .expect("encodes");
        let got = codec
            .encode_request(
                1,
                "CliRpcCmd.CallCoreCommand",
                &Type::slice("", Type::String),
                &Value::List(vec![Value::string("apps")]),
            )
            .expect("encodes");
        assert_eq!(
            hex::encode(got),
            "20ff820119436c69527063436d642e43616c6c436f7265436f6d6d616e640101000cff83020102ff8400010c000009ff8400010461707073"
        );
    }

    #[test]
    fn responses_decode_with_results_and_errors() {
        // Scenario "clicommand-fail", cf -> plugin: ok, error + struct{}, ok []string.
        let raw = unhex(
            "3aff8103010108526573706f6e736501ff82000103010d536572766963654d6574686f64010c00010353657101060001054572726f72010c00000024ff82011f436c69527063436d642e44697361626c655465726d696e616c4f7574707574000302000130ff820119436c69527063436d642e43616c6c436f7265436f6d6d616e640101010e436f6d6d616e64206661696c6564000aff83030102ff8400000003ff840022ff82011b436c69527063436d642e4765744f7574707574416e6452657365740102000cff85020102ff8600010c00003aff8600023247657474696e67206170707320696e206f7267206d792d6f7267202f207370616365206465762061732061646d696e2e2e2e024f4b",
        );
        let mut buf = BytesMut::from(&raw[..]);
        let mut codec = ClientCodec::new();
        let r0 = codec
            .decode_response(&mut buf)
            .expect("ok")
            .expect("complete");
        assert_eq!(r0.service_method, "CliRpcCmd.DisableTerminalOutput");
        assert_eq!(r0.result, Ok(Value::Bool(true)));
        let r1 = codec
            .decode_response(&mut buf)
            .expect("ok")
            .expect("complete");
        assert_eq!(r1.seq, 1);
        assert_eq!(r1.result, Err("Command failed".to_string()));
        let r2 = codec
            .decode_response(&mut buf)
            .expect("ok")
            .expect("complete");
        assert_eq!(r2.seq, 2);
        assert_eq!(
            r2.result.expect("ok").as_list().map(<[Value]>::len),
            Some(2)
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn responses_decode_the_same_when_bytes_trickle_in() {
        // Scenario "metadata", cf -> plugin: Response definition, header, bool.
        let raw = unhex(
            "3aff8103010108526573706f6e736501ff82000103010d536572766963654d6574686f64010c00010353657101060001054572726f72010c00000020ff82011b436c69527063436d642e536574506c7567696e4d657461646174610003020001",
        );
        let mut codec = ClientCodec::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in raw {
            buf.extend_from_slice(&[b]);
            if let Some(r) = codec.decode_response(&mut buf).expect("ok") {
                got.push(r);
            }
        }
        assert_eq!(
            got,
            vec![Response {
                service_method: "CliRpcCmd.SetPluginMetadata".into(),
                seq: 0,
                result: Ok(Value::Bool(true)),
            }]
        );
    }

    #[test]
    fn a_header_that_is_not_a_response_is_an_error() {
        // A bare string where the Response struct belongs.
        let mut buf = BytesMut::from(&unhex("080c0005362e372e30")[..]);
        assert!(ClientCodec::new().decode_response(&mut buf).is_err());
    }
}
