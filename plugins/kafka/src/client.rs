//! A Kafka connection: framed requests and responses with `kafka-protocol`'s codecs (one
//! in flight with `call`; several with `send` and `recv`, answered in order), over a TCP
//! socket the host lets the plugin open (`net` grant).
//! [`Cluster`] keeps one connection per broker, since each partition is read from and
//! written to its leader.

use bytes::{Buf, BufMut, BytesMut};
use coffer_plugin_sdk::{Error, net};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The largest response accepted (a fetch asks for far less).
const MAX_FRAME: usize = 256 << 20;
/// How long one request may take before the broker is given up on.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Conn {
    peer: String,
    stream: TcpStream,
    correlation: i32,
}

pub fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn topic(s: &str) -> TopicName {
    TopicName(str(s))
}

/// `host:port` to connect to a broker at (`[v6]:port` for an IPv6 address).
pub fn address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A Kafka error code as an error naming what failed, or Ok for 0.
pub fn check(code: i16, what: &str) -> Result<(), Error> {
    match code.err() {
        None => Ok(()),
        Some(e) => Err(Error::Remote(coffer_plugin_sdk::RemoteError {
            system: "kafka".into(),
            code: Some(format!("{e:?}")),
            message: format!("{what}: {e:?} (Kafka error {code})"),
            retryable: false,
        })),
    }
}

fn io(peer: &str, what: &str, e: std::io::Error) -> Error {
    Error::Io(format!("Kafka broker {peer}: {what}: {e}"))
}

fn codec(peer: &str, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("Kafka broker {peer}: {e}"))
}

impl Conn {
    pub fn open(peer: &str) -> Result<Conn, Error> {
        let stream = net::connect_timeout(peer, Duration::from_secs(15))?;
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        stream.set_write_timeout(Some(IO_TIMEOUT)).ok();
        Ok(Conn {
            peer: peer.to_string(),
            stream,
            correlation: 0,
        })
    }

    /// Send `req` as API version `version` and read its response.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, Error> {
        let id = self.send(req, version)?;
        self.recv::<R>(version, id)
    }

    /// Send `req` without waiting for its response; its correlation id.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32, Error> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(str("coffer")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(|e| codec(&self.peer, e))?;
        req.encode(&mut buf, version)
            .map_err(|e| codec(&self.peer, e))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream
            .write_all(&buf)
            .map_err(|e| io(&self.peer, "sending a request", e))?;
        Ok(self.correlation)
    }

    /// Read the response to the request sent as `id` (the broker answers in order).
    pub fn recv<R: Request>(&mut self, version: i16, id: i32) -> Result<R::Response, Error> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| io(&self.peer, "reading a response", e))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > MAX_FRAME {
            return Err(codec(&self.peer, format!("a response of {size} bytes")));
        }
        let mut frame = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut frame)
            .map_err(|e| io(&self.peer, "reading a response", e))?;
        let mut body = bytes::Bytes::from(frame);
        let head = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| codec(&self.peer, e))?;
        if head.correlation_id != id {
            return Err(codec(&self.peer, "a response out of order"));
        }
        let resp = R::Response::decode(&mut body, version).map_err(|e| codec(&self.peer, e))?;
        if body.has_remaining() {
            return Err(codec(&self.peer, "trailing bytes after a response"));
        }
        Ok(resp)
    }
}

/// The brokers of one cluster, reached from a bootstrap address.
pub struct Cluster {
    brokers: BTreeMap<i32, String>,
    conns: BTreeMap<i32, Conn>,
    any: Conn,
}

pub const METADATA_VERSION: i16 = 12;

impl Cluster {
    pub fn connect(bootstrap: &str) -> Result<Cluster, Error> {
        let any = Conn::open(bootstrap)?;
        let mut c = Cluster {
            brokers: BTreeMap::new(),
            conns: BTreeMap::new(),
            any,
        };
        c.metadata(Some(&[]))?;
        Ok(c)
    }

    /// Metadata for `topics` (None: all); learns the brokers on the way.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse, Error> {
        // Never auto-created by asking (a broker's auto.create.topics.enable is on by
        // default): a topic that is not there must look absent, not appear with defaults.
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|t| {
                t.iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic(n))))
                    .collect()
            }));
        let resp = self.any.call(&req, METADATA_VERSION)?;
        for b in &resp.brokers {
            self.brokers.insert(b.node_id.0, address(&b.host, b.port));
        }
        Ok(resp)
    }

    /// The brokers the metadata named so far.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    /// Any broker (the bootstrap one): for cluster-wide requests.
    pub fn any(&mut self) -> &mut Conn {
        &mut self.any
    }

    /// The connection to broker `id` (opened on first use, at its advertised address).
    pub fn broker(&mut self, id: BrokerId) -> Result<&mut Conn, Error> {
        if !self.conns.contains_key(&id.0) {
            let addr = self.brokers.get(&id.0).cloned().ok_or_else(|| {
                Error::NotFound(format!("Kafka broker {} is not in the metadata", id.0))
            })?;
            let conn = Conn::open(&addr)?;
            self.conns.insert(id.0, conn);
        }
        Ok(self.conns.get_mut(&id.0).unwrap())
    }

    /// The connection to the broker at `addr` (a group coordinator).
    pub fn at(&mut self, id: i32, addr: String) -> Result<&mut Conn, Error> {
        self.brokers.entry(id).or_insert(addr);
        self.broker(BrokerId(id))
    }
}
