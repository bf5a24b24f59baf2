//! The trading day: once a day, at a configured local time, the store rolls over
//! (`pc` becomes the last price; `o/h/l/v` restart). Time comes from an injectable
//! clock so the schedule is testable without waiting for 09:30 in New York.

use std::sync::Arc;

use chrono::{
    DateTime, Duration as ChronoDuration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::broker::Broker;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The first rollover strictly after `now`: today's or tomorrow's `time` in `zone`.
/// On a daylight-saving gap the rollover happens at the first valid instant after it;
/// on an overlap, at the earlier of the two.
pub fn next_rollover(now: DateTime<Utc>, time: NaiveTime, zone: Tz) -> DateTime<Utc> {
    let local_today = now.with_timezone(&zone).date_naive();
    for days in 0..=2 {
        let date = local_today + ChronoDuration::days(days);
        let candidate = match zone.from_local_datetime(&date.and_time(time)) {
            LocalResult::Single(t) => t,
            LocalResult::Ambiguous(earlier, _) => earlier,
            // In a gap (clocks jumped forward): an hour later exists.
            LocalResult::None => {
                match zone.from_local_datetime(&(date.and_time(time) + ChronoDuration::hours(1))) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
                    LocalResult::None => continue,
                }
            }
        }
        .with_timezone(&Utc);
        if candidate > now {
            return candidate;
        }
    }
    // Unreachable for real zones; fall back to a day later rather than spin.
    now + ChronoDuration::days(1)
}

/// The latest rollover at or before `now`: when the current trading day began.
/// Rollovers are 23 to 25 hours apart, so one lies in the 26 hours before `now`;
/// walking forward with [`next_rollover`] keeps its daylight-saving rules.
pub fn last_rollover(now: DateTime<Utc>, time: NaiveTime, zone: Tz) -> DateTime<Utc> {
    let mut last = next_rollover(now - ChronoDuration::hours(26), time, zone);
    loop {
        let next = next_rollover(last, time, zone);
        if next > now {
            return last;
        }
        last = next;
    }
}

/// The trading day `now` is in: the local date of the latest rollover (before
/// today's rollover time, it is still yesterday's day).
pub fn current_day(now: DateTime<Utc>, time: NaiveTime, zone: Tz) -> NaiveDate {
    last_rollover(now, time, zone)
        .with_timezone(&zone)
        .date_naive()
}

/// Rolls the store over at every rollover time until shutdown (the current day was
/// named at start-up: [`Broker::start_trading_day`]).
pub async fn run_rollovers(
    broker: Broker,
    time: NaiveTime,
    zone: Tz,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    loop {
        let now = clock.now();
        let next = next_rollover(now, time, zone);
        let wait = (next - now).to_std().unwrap_or_default();
        info!(next = %next.with_timezone(&zone), "next trading-day rollover");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        // Sleeping may end a hair early against a different clock; never roll twice.
        if clock.now() < next {
            continue;
        }
        // Every instance of a cluster gets here; the day's name makes it once.
        broker
            .roll_over(next.with_timezone(&zone).date_naive())
            .await;
        info!("trading day rolled over: pc = last price, o/h/l/v restarted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn nine_thirty() -> NaiveTime {
        NaiveTime::from_hms_opt(9, 30, 0).unwrap()
    }

    #[test]
    fn rolls_over_at_the_next_local_nine_thirty() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 08:00 New York (EST, UTC-5) -> 09:30 the same day.
        assert_eq!(
            next_rollover(utc("2026-11-25T13:00:00Z"), nine_thirty(), ny),
            utc("2026-11-25T14:30:00Z")
        );
        // Exactly at 09:30 -> tomorrow's.
        assert_eq!(
            next_rollover(utc("2026-11-25T14:30:00Z"), nine_thirty(), ny),
            utc("2026-11-26T14:30:00Z")
        );
        // Summer time (EDT, UTC-4).
        assert_eq!(
            next_rollover(utc("2026-07-01T12:00:00Z"), nine_thirty(), ny),
            utc("2026-07-01T13:30:00Z")
        );
    }

    #[test]
    fn handles_daylight_saving_changes() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // The night before DST starts (2026-03-08), 09:30 is already EDT.
        assert_eq!(
            next_rollover(utc("2026-03-08T03:00:00Z"), nine_thirty(), ny),
            utc("2026-03-08T13:30:00Z")
        );
        // 02:30 does not exist that day: the rollover is at 03:30 EDT.
        let half_past_two = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        assert_eq!(
            next_rollover(utc("2026-03-08T05:00:00Z"), half_past_two, ny),
            utc("2026-03-08T07:30:00Z")
        );
        // 01:30 happens twice when DST ends (2026-11-01): the earlier one (EDT).
        let half_past_one = NaiveTime::from_hms_opt(1, 30, 0).unwrap();
        assert_eq!(
            next_rollover(utc("2026-11-01T04:00:00Z"), half_past_one, ny),
            utc("2026-11-01T05:30:00Z")
        );
    }

    #[test]
    fn the_trading_day_began_at_the_last_rollover() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // Before 09:30 the day that began yesterday at 09:30 is still current.
        assert_eq!(
            last_rollover(utc("2026-11-25T13:00:00Z"), nine_thirty(), ny),
            utc("2026-11-24T14:30:00Z")
        );
        // Exactly at 09:30 the new day has begun.
        assert_eq!(
            last_rollover(utc("2026-11-25T14:30:00Z"), nine_thirty(), ny),
            utc("2026-11-25T14:30:00Z")
        );
        // The first day of summer time (EDT) and the first of winter time (EST).
        assert_eq!(
            last_rollover(utc("2026-03-08T20:00:00Z"), nine_thirty(), ny),
            utc("2026-03-08T13:30:00Z")
        );
        assert_eq!(
            last_rollover(utc("2026-11-01T20:00:00Z"), nine_thirty(), ny),
            utc("2026-11-01T14:30:00Z")
        );
    }

    #[test]
    fn utc_is_a_zone_too() {
        let utc_zone: Tz = "UTC".parse().unwrap();
        assert_eq!(
            next_rollover(utc("2026-11-25T10:00:00Z"), nine_thirty(), utc_zone),
            utc("2026-11-26T09:30:00Z")
        );
    }
}
