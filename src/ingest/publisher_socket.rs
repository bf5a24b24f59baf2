//! `GET /ws/ingest`: a publisher's WebSocket. Each `publish` message is one batch,
//! answered by an `ack` with the same report as the HTTP route.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::{debug, Instrument};

use super::{Applied, IngestReport, Ingestor, PublisherId};
use crate::security::Admission;
use crate::transport::{Driver, Ending, Event, Transport};
use crate::wire::{peek_req_id, ErrorCode, ReqId};

/// `{"op":"publish","ticks":[…],"req_id":n}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest<'a> {
    op: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    ticks: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    req_id: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct Ack<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_id: Option<&'a ReqId>,
    #[serde(flatten)]
    report: &'a IngestReport,
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_id: Option<&'a ReqId>,
    code: ErrorCode,
    message: &'a str,
}

/// Runs an admitted publisher's socket until it ends: each text message is one batch,
/// answered in order once stored. The driver owns every write's deadline, the
/// pings, the idle timeout and stop; a publisher has no wake-ups of its own.
pub async fn run_publisher(
    mut driver: Driver,
    admission: Admission,
    publisher: PublisherId,
    ingestor: &Ingestor,
) {
    let Some(_slot) = admission.slot else {
        return driver.refuse_full().await;
    };
    let span = tracing::info_span!("ingest_socket", publisher = ?publisher);
    let ending = async {
        // Replies in the order their messages came: each batch is applied as soon as
        // it is read, and answered once stored, so a commit's fsync delays the
        // answers, never the next batches (a publisher that sends every 10 ms would
        // otherwise queue behind every commit).
        let mut in_flight: VecDeque<Reply> = VecDeque::new();
        loop {
            while in_flight
                .front()
                .is_some_and(|reply| reply.is_ready(ingestor))
            {
                if let Err(ending) = answer_oldest(&mut driver, &mut in_flight, ingestor).await {
                    return ending;
                }
            }
            if in_flight.len() >= MAX_IN_FLIGHT {
                // Backpressure: read no more until the oldest batch is answered (its
                // wait is bounded by the store's own deadline).
                if let Err(ending) = answer_oldest(&mut driver, &mut in_flight, ingestor).await {
                    return ending;
                }
                continue;
            }
            let oldest_stored = async {
                match in_flight.front() {
                    Some(Reply::Applied(_, applied)) => ingestor.stored(applied).await,
                    _ => std::future::pending().await,
                }
            };
            match driver.next(oldest_stored).await {
                Ok(Event::Text(text)) => {
                    in_flight.push_back(handle(&text, publisher, ingestor).await)
                }
                Ok(Event::Wake(())) => {
                    if let Err(ending) = answer_oldest(&mut driver, &mut in_flight, ingestor).await
                    {
                        return ending;
                    }
                }
                Err(ending) => return ending,
            }
        }
    }
    .instrument(span.clone())
    .await;
    span.in_scope(|| debug!(?ending, "ingest socket ended"));
    driver.close(&ending).await;
}

/// Batches applied and not yet answered, at the most: a publisher that sends faster
/// than the disk commits waits for its answers instead of growing this queue.
const MAX_IN_FLIGHT: usize = 64;

/// One message's reply: ready now (an error), or its batch's ack once stored.
enum Reply {
    Ready(String),
    Applied(Option<ReqId>, Applied),
}

impl Reply {
    fn is_ready(&self, ingestor: &Ingestor) -> bool {
        match self {
            Reply::Ready(_) => true,
            Reply::Applied(_, applied) => ingestor.is_stored(applied),
        }
    }
}

/// Sends the oldest message's reply, if any: its error, or its batch's `ack` once
/// stored (`storage_unavailable` when it could not be).
async fn answer_oldest(
    driver: &mut Driver,
    in_flight: &mut VecDeque<Reply>,
    ingestor: &Ingestor,
) -> Result<(), Ending> {
    let Some(reply) = in_flight.pop_front() else {
        return Ok(());
    };
    let text = match reply {
        Reply::Ready(text) => text,
        Reply::Applied(req_id, applied) => match ingestor.acknowledge(applied).await {
            Ok(report) => serde_json::to_string(&Ack {
                kind: "ack",
                req_id: req_id.as_ref(),
                report: &report,
            })
            .expect("acks always serialize"),
            Err(e) => error(
                req_id.as_ref(),
                ErrorCode::StorageUnavailable,
                &e.to_string(),
            ),
        },
    };
    driver.send_text("ack", None, text.as_bytes()).await
}

fn error(req_id: Option<&ReqId>, code: ErrorCode, message: &str) -> String {
    serde_json::to_string(&ErrorReply {
        kind: "error",
        req_id,
        code,
        message,
    })
    .expect("replies always serialize")
}

/// One `publish` message: its batch applied (answered once stored), or its error.
async fn handle(text: &str, publisher: PublisherId, ingestor: &Ingestor) -> Reply {
    let error = |req_id: Option<&ReqId>, code: ErrorCode, message: &str| {
        Reply::Ready(error(req_id, code, message))
    };
    let request: PublishRequest = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(e) => {
            // Echo req_id when the message is JSON enough to have one.
            let req_id = peek_req_id(text);
            let message = format!("expected {{\"op\":\"publish\",\"ticks\":[…]}}: {e}");
            return error(req_id.as_ref(), ErrorCode::BadRequest, &message);
        }
    };
    let req_id = match request.req_id.map(ReqId::from_raw) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            return error(
                None,
                ErrorCode::BadRequest,
                "req_id must be a number or a string",
            )
        }
    };
    let req_id = req_id.as_ref();
    match request.op.as_deref() {
        Some("publish") => {}
        Some(other) => {
            return error(
                req_id,
                ErrorCode::UnknownOp,
                &format!("unknown op {other:?}; expected publish"),
            )
        }
        None => return error(req_id, ErrorCode::BadRequest, "missing field `op`"),
    }
    let Some(ticks) = request.ticks else {
        return error(req_id, ErrorCode::BadRequest, "missing field `ticks`");
    };
    if ticks.len() > ingestor.max_batch_ticks {
        let message = format!(
            "{} ticks in one batch; ingest.max_batch_ticks is {}",
            ticks.len(),
            ingestor.max_batch_ticks
        );
        return error(req_id, ErrorCode::BadRequest, &message);
    }
    let applied = ingestor
        .apply(publisher, ticks.iter().map(|t| t.get()))
        .await;
    Reply::Applied(req_id.cloned(), applied)
}
