//! A viewer's requests (contract §2, client -> server): `subscribe`, `unsubscribe`,
//! `snapshot`, `set`, `ping`, each checked against the connection's message budget and
//! answered on the viewer's own transport. The loop that calls these lives in
//! `super::viewer`.

use std::time::Duration;

use actix_http::ws::CloseCode;
use tracing::{debug, info};

use super::protocol::{
    begin_quotes_message, end_quotes_message, parse_request, ControlMessage, ErrorCode, Hz, ReqId,
    Request, RequestError,
};
use super::viewer::Viewer;
use crate::domain::{now_millis, Symbol, SymbolId};
use crate::limits::Verdict;
use crate::metrics::Counters;
use crate::store::SnapshotStore;
use crate::transport::{Ending, Transport};

impl<T: Transport> Viewer<T> {
    /// One client text message: budget, parse, act, answer.
    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), Ending> {
        if !self.within_budget()? {
            let limits = &self.ctx.limits;
            let error = RequestError::new(
                super::protocol::peek_req_id(text),
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages a second (burst {}); this one was dropped",
                    limits.messages_per_second, limits.message_burst
                ),
            );
            return self.send_error(&error).await;
        }
        match parse_request(text) {
            Err(error) => self.send_error(&error).await,
            Ok((req_id, Request::Subscribe { symbols })) => self.subscribe(req_id, symbols).await,
            Ok((req_id, Request::Unsubscribe { symbols })) => {
                self.unsubscribe(req_id, symbols).await
            }
            Ok((req_id, Request::Snapshot)) => self.send_snapshot(req_id.as_ref(), None).await,
            Ok((req_id, Request::Set { max_hz })) => {
                let config = &self.ctx.settings;
                self.max_hz = max_hz.clamp(config.min_hz, config.max_hz);
                self.flush_interval = Duration::from_secs_f64(1.0 / self.max_hz);
                self.send_control(&ControlMessage::Settings {
                    req_id: req_id.as_ref(),
                    max_hz: Hz(self.max_hz),
                })
                .await
            }
            Ok((req_id, Request::Ping)) => {
                self.send_control(&ControlMessage::Pong {
                    req_id: req_id.as_ref(),
                    t: now_millis(),
                })
                .await
            }
        }
    }

    /// Takes one message from the budget. Over budget is a refusal; too many refusals
    /// within the abuse window end the connection with 1008.
    fn within_budget(&mut self) -> Result<bool, Ending> {
        match self.budget.check(std::time::Instant::now()) {
            Verdict::Allowed => Ok(true),
            Verdict::Refused => {
                Counters::add(&self.ctx.security.counters.rate_limited, 1);
                Ok(false)
            }
            Verdict::Abuse => {
                Counters::add(&self.ctx.security.counters.rate_limited, 1);
                Counters::add(&self.ctx.security.counters.abuse_closes, 1);
                Err(Ending::Close(
                    CloseCode::Policy,
                    "repeated abuse: message rate limit exceeded".into(),
                ))
            }
        }
    }

    /// `subscribe`: count first (changing nothing on `too_many_symbols`; unknown names
    /// count too), then add the known symbols and report the invalid and unknown ones.
    pub(super) async fn subscribe(
        &mut self,
        req_id: Option<ReqId>,
        names: Vec<String>,
    ) -> Result<(), Ending> {
        let store = self.ctx.store.clone();
        let mut named = NamedSymbols::resolve(&store, &names);
        let subs = &self.subs;
        let (permitted, forbidden): (Vec<SymbolId>, Vec<SymbolId>) = named
            .known
            .iter()
            .partition(|&&id| subs.permits(&store, id));
        named.known = permitted;
        named.forbidden = forbidden
            .iter()
            .map(|&id| store.info(id).symbol.to_string())
            .collect();
        if named.wildcard {
            // "*" covers every entitled name in the request; the rest are reported.
            let added = self.subs.add_all(&store);
            self.send_subscriptions(req_id.as_ref()).await?;
            self.send_snapshot(req_id.as_ref(), Some(&added)).await?;
            return self.report_symbol_errors(req_id, named).await;
        }
        let max = self.ctx.settings.max_symbols_per_connection;
        if !self.subs.is_wildcard() {
            let already = named
                .known
                .iter()
                .filter(|&&id| self.subs.contains(id))
                .count();
            let new = named.known.len() - already + named.unknown.len();
            if names.len() > max || self.subs.len() + new > max {
                let error = RequestError::new(
                    req_id,
                    ErrorCode::TooManySymbols,
                    format!(
                        "at most {max} symbols per connection: {} subscribed, {} requested",
                        self.subs.len(),
                        names.len()
                    ),
                );
                return self.send_error(&error).await;
            }
        }
        if !named.known.is_empty() || !named.has_errors() {
            let added = self.subs.add(&named.known);
            self.send_subscriptions(req_id.as_ref()).await?;
            self.send_snapshot(req_id.as_ref(), Some(&added)).await?;
            info!(added = added.len(), total = self.subs.len(), "subscribed");
        }
        self.report_symbol_errors(req_id, named).await
    }

    async fn unsubscribe(
        &mut self,
        req_id: Option<ReqId>,
        names: Vec<String>,
    ) -> Result<(), Ending> {
        let store = self.ctx.store.clone();
        let named = NamedSymbols::resolve(&store, &names);
        if named.wildcard {
            self.subs.clear();
        } else {
            // Take in any symbols the wildcard has not yet seen, so ending it keeps them.
            self.subs.follow_new_symbols(&store);
            self.subs.remove(&named.known);
        }
        self.send_subscriptions(req_id.as_ref()).await?;
        self.report_symbol_errors(req_id, named).await
    }

    async fn report_symbol_errors(
        &mut self,
        req_id: Option<ReqId>,
        named: NamedSymbols,
    ) -> Result<(), Ending> {
        if !named.invalid.is_empty() {
            let error = RequestError::new(
                req_id.clone(),
                ErrorCode::InvalidSymbol,
                "symbols must be 1-16 characters of A-Z, 0-9, '.', '-', starting with a letter or digit",
            )
            .with_symbols(named.invalid);
            self.send_error(&error).await?;
        }
        if !named.unknown.is_empty() {
            let error =
                RequestError::new(req_id.clone(), ErrorCode::UnknownSymbol, "no such symbol")
                    .with_symbols(named.unknown);
            self.send_error(&error).await?;
        }
        if !named.forbidden.is_empty() {
            let error = RequestError::new(
                req_id,
                ErrorCode::Forbidden,
                "not in your token's entitlements",
            )
            .with_symbols(named.forbidden);
            self.send_error(&error).await?;
        }
        Ok(())
    }

    pub(super) async fn send_subscriptions(
        &mut self,
        req_id: Option<&ReqId>,
    ) -> Result<(), Ending> {
        self.entry
            .stats
            .symbols
            .store(self.subs.len(), std::sync::atomic::Ordering::Relaxed);
        // A one-way client (SSE) learns its set from snapshots and errors.
        if self.driver.is_one_way() {
            return Ok(());
        }
        let store = self.ctx.store.clone();
        let mut names: Vec<&str> = if self.subs.is_wildcard() {
            vec!["*"]
        } else {
            self.subs
                .ids()
                .map(|id| store.info(id).symbol.as_str())
                .collect()
        };
        names.sort_unstable();
        let message = ControlMessage::Subscriptions {
            req_id,
            symbols: &names,
        };
        self.send_control(&message).await
    }

    /// Full quotes of `ids` (or of every subscribed symbol); restarts their diff baseline.
    /// `req_id` is echoed when the snapshot answers a request.
    pub(super) async fn send_snapshot(
        &mut self,
        req_id: Option<&ReqId>,
        ids: Option<&[SymbolId]>,
    ) -> Result<(), Ending> {
        let seq = self.seq + 1;
        self.start("snapshot", Some(seq), |viewer, json| {
            begin_quotes_message("snapshot", seq, req_id, json);
            viewer.subs.write_snapshot(&viewer.ctx.store, ids, json);
            end_quotes_message(json);
            true
        })?;
        self.seq = seq;
        self.driver.flush().await
    }

    pub(super) async fn send_error(&mut self, error: &RequestError) -> Result<(), Ending> {
        Counters::add(&self.counters.client_errors, 1);
        debug!(code = ?error.code, message = %error.message, "request refused");
        self.send_control(&ControlMessage::from(error)).await
    }

    pub(super) async fn send_control(
        &mut self,
        message: &ControlMessage<'_>,
    ) -> Result<(), Ending> {
        self.start(message.kind(), None, |_, json| {
            message.write_to(json);
            true
        })?;
        self.driver.flush().await
    }
}

/// The names of a subscribe or unsubscribe request, sorted out once.
struct NamedSymbols {
    /// The request named `*`.
    wildcard: bool,
    /// Ids of the valid, known names (deduplicated, in request order).
    known: Vec<SymbolId>,
    /// Valid names that are not in the universe (upper-cased).
    unknown: Vec<String>,
    /// Names that are not symbols at all, as sent.
    invalid: Vec<String>,
    /// Known names outside the viewer's entitlements (filled by `subscribe`).
    forbidden: Vec<String>,
}

impl NamedSymbols {
    fn resolve(store: &SnapshotStore, names: &[String]) -> NamedSymbols {
        let mut named = NamedSymbols {
            wildcard: false,
            known: Vec::with_capacity(names.len()),
            unknown: Vec::new(),
            invalid: Vec::new(),
            forbidden: Vec::new(),
        };
        for name in names {
            if name == "*" {
                named.wildcard = true;
                continue;
            }
            match Symbol::parse(name) {
                Ok(symbol) => match store.lookup(&symbol) {
                    Some(id) if !named.known.contains(&id) => named.known.push(id),
                    Some(_) => {}
                    None if !named.unknown.iter().any(|u| u == symbol.as_str()) => {
                        named.unknown.push(symbol.to_string())
                    }
                    None => {}
                },
                Err(_) => named.invalid.push(name.clone()),
            }
        }
        named
    }

    fn has_errors(&self) -> bool {
        !self.invalid.is_empty() || !self.unknown.is_empty() || !self.forbidden.is_empty()
    }
}
