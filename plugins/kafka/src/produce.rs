//! Producing one partition's batches in order, as fast as the broker takes them: one batch
//! per request (a broker refuses a client's request with more), and up to [`IN_FLIGHT`]
//! requests (at most [`IN_FLIGHT_BYTES`]) sent before the oldest one's answer is read, so
//! reading the next segment overlaps the broker's append. The broker answers a
//! connection's requests in order; when the leader moves, the requests it refused are sent
//! again, in order, to the new one — and if one after a refused one was taken, the order is
//! lost and the restore fails.

use crate::client::{Cluster, check, topic};
use coffer_plugin_sdk::{self as sdk, Error};
use kafka_protocol::messages::{
    BrokerId, ProduceRequest, ProduceResponse,
    produce_request::{PartitionProduceData, TopicProduceData},
};
use std::collections::VecDeque;
use std::time::Duration;

/// Requests sent before the oldest one's answer is read...
const IN_FLIGHT: usize = 8;
/// ...and the bytes they may hold (one larger batch goes alone).
const IN_FLIGHT_BYTES: usize = 16 << 20;
/// Tries of a produce the partition's leader is not ready for yet.
const TRIES: u32 = 50;
const VERSION: i16 = 9;

/// A batch produced: its old offsets and how many records it holds.
pub struct Batch {
    pub old_first: i64,
    pub old_last: i64,
    /// The old offset of each record, when compaction left gaps.
    pub old_offsets: Option<Vec<i64>>,
    pub count: i64,
}

/// A request sent and not yet answered.
struct Sent {
    correlation: i32,
    leader: i32,
    records: bytes::Bytes,
    batch: Batch,
}

pub struct Producer<'a> {
    c: &'a mut Cluster,
    name: &'a str,
    partition: i32,
    leader: Option<i32>,
    in_flight: VecDeque<Sent>,
    /// Where each produced batch landed, in order: (batch, its new base offset).
    pub placed: Vec<(Batch, i64)>,
}

/// Leader moves and topics not ready yet: find the leader again and retry.
fn retriable(code: i16) -> bool {
    matches!(code, 3 | 5 | 6 | 19)
}

impl<'a> Producer<'a> {
    pub fn new(c: &'a mut Cluster, name: &'a str, partition: i32) -> Producer<'a> {
        Producer {
            c,
            name,
            partition,
            leader: None,
            in_flight: VecDeque::new(),
            placed: Vec::new(),
        }
    }

    /// Send one batch (its bytes as the producer sends them).
    pub fn push(&mut self, bytes: Vec<u8>, batch: Batch) -> Result<(), Error> {
        let records = bytes::Bytes::from(bytes);
        let Some(leader) = self.leader else {
            // The first request finds the leader (a topic just made may have none yet).
            let base = self.produce_now(records)?;
            self.place(batch, base);
            return Ok(());
        };
        while !self.in_flight.is_empty()
            && (self.in_flight.len() >= IN_FLIGHT
                || self.in_flight_bytes() + records.len() > IN_FLIGHT_BYTES)
        {
            self.answer()?;
        }
        let req = self.request(records.clone());
        let correlation = self.c.broker(BrokerId(leader))?.send(&req, VERSION)?;
        self.in_flight.push_back(Sent {
            correlation,
            leader,
            records,
            batch,
        });
        Ok(())
    }

    fn in_flight_bytes(&self) -> usize {
        self.in_flight.iter().map(|s| s.records.len()).sum()
    }

    /// Wait for every answer.
    pub fn finish(mut self) -> Result<Vec<(Batch, i64)>, Error> {
        while !self.in_flight.is_empty() {
            self.answer()?;
        }
        Ok(self.placed)
    }

    fn request(&self, records: bytes::Bytes) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic(self.name))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(self.partition)
                            .with_records(Some(records)),
                    ]),
            ])
    }

    fn what(&self) -> String {
        format!("produce to {}/{}", self.name, self.partition)
    }

    /// Read the oldest request's answer.
    fn answer(&mut self) -> Result<(), Error> {
        let sent = self.in_flight.pop_front().expect("a request in flight");
        let (code, message, base) = self.read(sent.leader, sent.correlation)?;
        if code == 0 {
            self.place(sent.batch, base);
            return Ok(());
        }
        if !retriable(code) {
            let what = match message {
                Some(m) => format!("{}: {m}", self.what()),
                None => self.what(),
            };
            check(code, &what)?;
        }
        // The leader moved: every later request was refused too (the same broker, in
        // order); send them all again, in order, to the new leader.
        let mut again = vec![sent];
        while let Some(next) = self.in_flight.pop_front() {
            let (code, _, _) = self.read(next.leader, next.correlation)?;
            if code == 0 {
                return Err(Error::Io(format!(
                    "{}: the broker refused one request and took the next, so their records would be out of order; restore again with params.purge: true",
                    self.what()
                )));
            }
            again.push(next);
        }
        self.leader = None;
        for s in again {
            let base = self.produce_now(s.records)?;
            self.place(s.batch, base);
        }
        Ok(())
    }

    /// The answer to the request sent to `leader` as `correlation`: (error code, message,
    /// base offset).
    fn read(&mut self, leader: i32, correlation: i32) -> Result<(i16, Option<String>, i64), Error> {
        let what = self.what();
        let resp: ProduceResponse = self
            .c
            .broker(BrokerId(leader))?
            .recv::<ProduceRequest>(VERSION, correlation)?;
        let r = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .find(|p| p.index == self.partition)
            .ok_or_else(|| sdk::internal(format!("{what}: no answer")))?;
        Ok((
            r.error_code,
            r.error_message.map(|m| m.to_string()),
            r.base_offset,
        ))
    }

    fn place(&mut self, batch: Batch, base: i64) {
        self.placed.push((batch, base));
    }

    /// Send `records` and wait for the answer, finding the leader (again) as needed; the
    /// base offset they got.
    fn produce_now(&mut self, records: bytes::Bytes) -> Result<i64, Error> {
        let mut last = None;
        for _ in 0..TRIES {
            if sdk::runtime::cancelled() {
                return Err(Error::Cancelled);
            }
            let id = match self.leader {
                Some(id) => id,
                None => match self.find_leader()? {
                    Some(id) => id,
                    None => {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                },
            };
            self.leader = Some(id);
            let req = self.request(records.clone());
            let correlation = self.c.broker(BrokerId(id))?.send(&req, VERSION)?;
            let (code, message, base) = self.read(id, correlation)?;
            if retriable(code) {
                self.leader = None;
                last = Some(code);
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            let what = match message {
                Some(m) => format!("{}: {m}", self.what()),
                None => self.what(),
            };
            check(code, &what)?;
            return Ok(base);
        }
        check(
            last.unwrap_or(-1),
            &format!("{}: no leader after {TRIES} tries", self.what()),
        )?;
        Err(sdk::internal(self.what()))
    }

    fn find_leader(&mut self) -> Result<Option<i32>, Error> {
        let meta = self.c.metadata(Some(&[self.name.to_string()]))?;
        Ok(meta
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == self.partition && p.leader_id.0 >= 0)
            .map(|p| p.leader_id.0))
    }
}
