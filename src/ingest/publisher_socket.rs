//! `GET /ws/ingest`: a publisher's WebSocket. Each `publish` message is one batch,
//! answered by an `ack` with the same report as the HTTP route.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::{debug, Instrument};

use super::{IngestReport, Ingestor, PublisherId};
use crate::security::Admission;
use crate::transport::{Driver, Event, Transport};
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
/// answered before the next is read. The driver owns every write's deadline, the
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
        loop {
            let text = match driver.next(std::future::pending::<()>()).await {
                Ok(Event::Text(text)) => text,
                Ok(Event::Wake(())) => continue,
                Err(ending) => return ending,
            };
            let reply = handle(&text, publisher, ingestor).await;
            if let Err(ending) = driver.send_text("ack", None, reply.as_bytes()).await {
                return ending;
            }
        }
    }
    .instrument(span.clone())
    .await;
    span.in_scope(|| debug!(?ending, "ingest socket ended"));
    driver.close(&ending).await;
}

/// One `publish` message to its reply text (`ack` or `error`).
async fn handle(text: &str, publisher: PublisherId, ingestor: &Ingestor) -> String {
    let error = |req_id: Option<&ReqId>, code: ErrorCode, message: &str| {
        serde_json::to_string(&ErrorReply {
            kind: "error",
            req_id,
            code,
            message,
        })
        .expect("replies always serialize")
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
    let report = match ingestor
        .ingest(publisher, ticks.iter().map(|t| t.get()))
        .await
    {
        Ok(report) => report,
        Err(e) => return error(req_id, ErrorCode::StorageUnavailable, &e.to_string()),
    };
    serde_json::to_string(&Ack {
        kind: "ack",
        req_id,
        report: &report,
    })
    .expect("acks always serialize")
}
