//! What to do with a queued delivery after one attempt: commit, retry later, or dead-letter.
//!
//! Pure: the worker passes the attempt's result, the delivery's history and a jitter draw,
//! and gets a [`Settle`] back.
//!
//! | the app | what happens |
//! |---|---|
//! | 2xx | committed |
//! | 429 or 503 with `Retry-After: <seconds>` | retried after that long (1 s to 1 h), **no attempt spent**; the worker also holds this endpoint's deliveries that long |
//! | 408, 409, 425, 429, 3xx, 5xx | retried on the schedule, spending an attempt |
//! | any other 4xx (400, 401, 403, 404, 410, 413, 422, …) | dead-lettered at once: the app looked at it and refused it; retrying sends the same bytes |
//! | refused the connection | retried on the schedule |
//! | no answer within `upstream.timeout`, or the connection broke after sending | retried on the schedule, but not before the lease (2 × timeout + 5 s) has passed, so a copy the app may still be working on never overlaps the next |
//!
//! A retry is dead-lettered instead when the attempts reach `maxAttempts`, or when it would
//! start after the delivery is `maxAge` old. Delays get ±20 % jitter so that deliveries failed
//! together do not come back together.

use std::time::Duration;

use hookguard_api::validation::CheckedDelivery;
use http::StatusCode;

/// The most a `Retry-After` of the app is honoured for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Jitter applied to scheduled delays: ± this fraction.
pub const JITTER: f64 = 0.2;

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The app answered, with its `Retry-After` in whole seconds if it sent one.
    Answered {
        /// The app's status.
        status: StatusCode,
        /// Its `Retry-After` (delta-seconds form only).
        retry_after: Option<Duration>,
    },
    /// The app refused the connection: nothing was sent.
    Refused,
    /// No answer within the upstream time-out.
    TimedOut,
    /// The connection broke after the request was sent.
    Broken,
}

impl Attempt {
    /// A short description for logs and the dead-letter reason, e.g. `status 500`.
    pub fn describe(&self) -> String {
        match self {
            Attempt::Answered { status, .. } => format!("status {}", status.as_u16()),
            Attempt::Refused => "connection refused".to_owned(),
            Attempt::TimedOut => "timed out".to_owned(),
            Attempt::Broken => "connection broke".to_owned(),
        }
    }
}

/// What to do with the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Commit it: the app has it.
    Commit,
    /// Try again after `delay`, recording `attempts` made.
    Retry {
        /// How long from now.
        delay: Duration,
        /// Attempts made, counting this one if it was spent.
        attempts: u32,
        /// Whether this attempt counted (`false`: the app asked to wait).
        spent: bool,
    },
    /// Move it to the dead-letter queue.
    DeadLetter {
        /// Attempts made, counting this one.
        attempts: u32,
        /// Why, for the dead-letter entry.
        reason: String,
    },
}

/// Decides after one attempt. `attempts_before` are the attempts made before this one, `age`
/// the delivery's age now, `lease` the endpoint's lease, and `jitter` a draw in `[-1, 1]`.
pub fn settle(
    policy: &CheckedDelivery,
    attempt: Attempt,
    attempts_before: u32,
    age: Duration,
    lease: Duration,
    jitter: f64,
) -> Settle {
    let attempts = attempts_before.saturating_add(1);
    let (delay, spent) = match attempt {
        Attempt::Answered { status, .. } if status.is_success() => return Settle::Commit,
        Attempt::Answered {
            status,
            retry_after: Some(wait),
        } if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::SERVICE_UNAVAILABLE =>
        {
            (wait.clamp(Duration::from_secs(1), MAX_RETRY_AFTER), false)
        }
        Attempt::Answered { status, .. } if permanent(status) => {
            return Settle::DeadLetter {
                attempts,
                reason: format!("{} is a permanent refusal", attempt.describe()),
            };
        }
        Attempt::Answered { .. } | Attempt::Refused | Attempt::TimedOut | Attempt::Broken => {
            if attempts >= policy.max_attempts {
                return Settle::DeadLetter {
                    attempts,
                    reason: format!("{attempts} attempts made (last: {})", attempt.describe()),
                };
            }
            // The app may still be working on an ambiguous attempt: wait out the lease.
            let floor = match attempt {
                Attempt::TimedOut | Attempt::Broken => lease,
                _ => Duration::ZERO,
            };
            let delay = jittered(policy.delay_before_retry(attempts), jitter).max(floor);
            (delay, true)
        }
    };
    if age + delay > policy.max_age {
        return Settle::DeadLetter {
            attempts,
            reason: format!(
                "max age {} reached (last: {})",
                humantime(policy.max_age),
                attempt.describe()
            ),
        };
    }
    Settle::Retry {
        delay,
        attempts: if spent { attempts } else { attempts_before },
        spent,
    }
}

/// Whether the app's status refuses the delivery for good: a 4xx other than 408 (time-out),
/// 409 (conflict), 425 (too early) and 429 (too many requests).
pub fn permanent(status: StatusCode) -> bool {
    status.is_client_error() && !matches!(status.as_u16(), 408 | 409 | 425 | 429)
}

/// `delay` scaled by `1 + JITTER * jitter`, `jitter` in `[-1, 1]`.
pub fn jittered(delay: Duration, jitter: f64) -> Duration {
    delay.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0))
}

/// A jitter draw in `[-1, 1]` from the OS's randomness (0 without it).
pub fn draw_jitter() -> f64 {
    match getrandom::u32() {
        Ok(bits) => f64::from(bits) / f64::from(u32::MAX) * 2.0 - 1.0,
        Err(_) => 0.0,
    }
}

/// The app's `Retry-After` in the delta-seconds form; an HTTP date is not honoured (the
/// schedule applies).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn humantime(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(schedule: &[u64], max_attempts: u32, max_age: u64) -> CheckedDelivery {
        let config = hookguard_api::Delivery {
            retry_schedule: schedule.iter().map(|s| format!("{s}s")).collect(),
            max_attempts,
            max_age: format!("{max_age}s"),
            ..hookguard_api::Delivery::default()
        };
        let endpoint = hookguard_api::EndpointConfig {
            name: "n".into(),
            endpoint_id: "id".into(),
            path: "/h".into(),
            scheme: hookguard_api::Scheme::Generic,
            generic: None,
            public_url: None,
            upstream: hookguard_api::Upstream {
                port: 8080,
                path: None,
                timeout: "10s".into(),
            },
            secret_dir: "/s".into(),
            replay: hookguard_api::Replay::default(),
            idempotency_key: None,
            event_types: vec![],
            max_body_size: "1Mi".into(),
            store_unavailable: hookguard_api::StoreUnavailable::Reject,
            delivery: config,
        };
        hookguard_api::validation::check(&endpoint)
            .unwrap()
            .delivery
    }

    const LEASE: Duration = Duration::from_secs(25);

    fn answered(status: u16, retry_after: Option<u64>) -> Attempt {
        Attempt::Answered {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_2xx_commits() {
        let p = policy(&[5], 3, 3600);
        for status in [200, 201, 202, 204] {
            assert_eq!(
                settle(&p, answered(status, None), 0, Duration::ZERO, LEASE, 0.0),
                Settle::Commit
            );
        }
    }

    #[test]
    fn failures_follow_the_schedule_and_its_last_delay_repeats() {
        let p = policy(&[5, 300, 1800], 10, 1_000_000);
        let delays: Vec<Duration> = (0..5)
            .map(|before| {
                match settle(&p, answered(500, None), before, Duration::ZERO, LEASE, 0.0) {
                    Settle::Retry {
                        delay,
                        attempts,
                        spent: true,
                    } => {
                        assert_eq!(attempts, before + 1);
                        delay
                    }
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [5, 300, 1800, 1800, 1800]);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = policy(&[100], 10, 1_000_000);
        for (jitter, expected) in [(-1.0, 80), (1.0, 120), (0.5, 110), (7.0, 120)] {
            match settle(&p, Attempt::Refused, 0, Duration::ZERO, LEASE, jitter) {
                Settle::Retry { delay, .. } => assert_eq!(delay.as_secs(), expected, "{jitter}"),
                other => panic!("{other:?}"),
            }
        }
        for _ in 0..100 {
            let draw = draw_jitter();
            assert!((-1.0..=1.0).contains(&draw), "{draw}");
        }
    }

    #[test]
    fn the_last_attempt_dead_letters_with_the_last_result() {
        let p = policy(&[1], 3, 3600);
        assert!(matches!(
            settle(&p, answered(502, None), 1, Duration::ZERO, LEASE, 0.0),
            Settle::Retry { attempts: 2, .. }
        ));
        assert_eq!(
            settle(&p, answered(502, None), 2, Duration::ZERO, LEASE, 0.0),
            Settle::DeadLetter {
                attempts: 3,
                reason: "3 attempts made (last: status 502)".into()
            }
        );
        assert!(matches!(
            settle(
                &policy(&[1], 1, 3600),
                Attempt::Refused,
                0,
                Duration::ZERO,
                LEASE,
                0.0
            ),
            Settle::DeadLetter { attempts: 1, .. }
        ));
    }

    #[test]
    fn a_retry_past_the_max_age_dead_letters() {
        let p = policy(&[60], 100, 3600);
        assert!(matches!(
            settle(
                &p,
                answered(500, None),
                0,
                Duration::from_secs(3500),
                LEASE,
                0.0
            ),
            Settle::Retry { .. }
        ));
        match settle(
            &p,
            answered(500, None),
            0,
            Duration::from_secs(3550),
            LEASE,
            0.0,
        ) {
            Settle::DeadLetter { reason, .. } => {
                assert_eq!(reason, "max age 1h reached (last: status 500)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permanent_refusals_dead_letter_at_once() {
        let p = policy(&[1], 10, 3600);
        for status in [400, 401, 403, 404, 410, 413, 422] {
            assert!(
                matches!(
                    settle(&p, answered(status, None), 0, Duration::ZERO, LEASE, 0.0),
                    Settle::DeadLetter { attempts: 1, .. }
                ),
                "{status}"
            );
        }
        for status in [301, 408, 409, 425, 429, 500, 503, 504] {
            assert!(
                matches!(
                    settle(&p, answered(status, None), 0, Duration::ZERO, LEASE, 0.0),
                    Settle::Retry { spent: true, .. }
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_on_429_and_503_spends_no_attempt_and_is_clamped() {
        let p = policy(&[5], 2, 100_000);
        for status in [429, 503] {
            assert_eq!(
                settle(
                    &p,
                    answered(status, Some(30)),
                    1,
                    Duration::ZERO,
                    LEASE,
                    1.0
                ),
                Settle::Retry {
                    delay: Duration::from_secs(30),
                    attempts: 1,
                    spent: false
                }
            );
        }
        assert!(matches!(
            settle(&p, answered(503, Some(0)), 0, Duration::ZERO, LEASE, 0.0),
            Settle::Retry { delay, .. } if delay == Duration::from_secs(1)
        ));
        assert!(matches!(
            settle(&p, answered(429, Some(99_999)), 0, Duration::ZERO, LEASE, 0.0),
            Settle::Retry { delay, .. } if delay == MAX_RETRY_AFTER
        ));
        // Retry-After on a 500 is not a request to wait: the schedule applies.
        assert!(matches!(
            settle(&p, answered(500, Some(30)), 0, Duration::ZERO, LEASE, 0.0),
            Settle::Retry { spent: true, .. }
        ));
        // A wait past the max age ends it.
        assert!(matches!(
            settle(
                &policy(&[5], 2, 60),
                answered(503, Some(120)),
                0,
                Duration::ZERO,
                LEASE,
                0.0
            ),
            Settle::DeadLetter { .. }
        ));
    }

    #[test]
    fn an_ambiguous_attempt_waits_out_the_lease() {
        let p = policy(&[5], 10, 3600);
        for attempt in [Attempt::TimedOut, Attempt::Broken] {
            assert!(matches!(
                settle(&p, attempt, 0, Duration::ZERO, LEASE, -1.0),
                Settle::Retry { delay, .. } if delay == LEASE
            ));
        }
        assert!(matches!(
            settle(&p, Attempt::Refused, 0, Duration::ZERO, LEASE, 0.0),
            Settle::Retry { delay, .. } if delay == Duration::from_secs(5)
        ));
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
